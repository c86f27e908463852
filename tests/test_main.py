"""The command line: a user's mistake ends the run at start with one line naming it.

Each case runs the real ``python -m time_jax.main`` and expects exit status 2, one
``error: ...`` line on stderr (no traceback, no ``--help`` text) and no work done.
"""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELP_TEXT = "Checkpoints, logs and reports go here."  # --workdir's help line


def _main(*args, env=None):
  return subprocess.run([sys.executable, "-m", "time_jax.main", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, PYTHONPATH=REPO, **(env or {})))


def _error_line(r) -> str:
  """The run's one-line error; fails on a traceback, help text or a second error line."""
  assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
  assert "Traceback" not in r.stderr and HELP_TEXT not in r.stderr, r.stderr[-3000:]
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  errors = [l for l in lines if l.startswith("error: ")]
  assert len(errors) == 1 and lines[-1] == errors[0], r.stderr[-3000:]
  return errors[0]


def _demo(tmp_path, *args):
  return _main("--config", "configs/demo.py", "--workdir", str(tmp_path / "w"), *args,
               env={"TIME_JAX_DEMO_DATA": str(tmp_path / "data")})


def test_bad_field_fails_at_start_with_the_field_named(tmp_path):
  r = _main("--config", "configs/ucf101_videomae.py:finetune", "--workdir", str(tmp_path),
            "--config.dataset.root=/no/such/UCF101")
  assert "config.dataset.root" in _error_line(r)
  assert not os.path.exists(tmp_path / "checkpoints")


def test_unknown_model_is_named(tmp_path):
  r = _main("--config", "configs/ucf101_videomae.py:pretrain", "--workdir", str(tmp_path),
            "--config.model.name=videomae_q")
  assert "config.model.name" in _error_line(r)


def test_config_override_flag_type_is_checked(tmp_path):
  r = _main("--config", "configs/ucf101_videomae.py:finetune", "--workdir", str(tmp_path),
            "--config.optimizer.base_lr=fast")
  assert "--config.optimizer.base_lr=fast" in _error_line(r)


@pytest.mark.parametrize("flag, want", [
    ("--config.optimizer.base_lrr=1",
     "--config.optimizer.base_lrr: config.optimizer has no field 'base_lrr'; "
     "did you mean 'base_lr'?"),
    ("--config.optimiser.base_lr=1", "config has no field 'optimiser'; did you mean "
     "'optimizer'?"),
    # Too short for ml_collections' suggestion: the fields it begins are named.
    ("--config.train.ema=0.9", "--config.train.ema: config.train has no field 'ema'; "
     "did you mean 'ema_decay' or 'ema_eval'?"),
])
def test_an_unknown_override_is_one_line_with_did_you_mean(tmp_path, flag, want):
  assert want in _error_line(_demo(tmp_path, flag))
  assert not os.path.exists(tmp_path / "w")


def test_a_missing_config_file_is_named(tmp_path):
  r = _main("--config", "configs/no_such_recipe.py", "--workdir", str(tmp_path / "w"))
  assert _error_line(r) == "error: --config: 'configs/no_such_recipe.py' is not a file."


def test_a_config_argument_the_recipe_rejects_is_one_line(tmp_path):
  r = _main("--config", "configs/ucf101_videomae.py:distill", "--workdir", str(tmp_path))
  line = _error_line(r)
  assert "configs/ucf101_videomae.py:distill" in line and "'distill'" in line


def test_a_missing_flag_is_one_line(tmp_path):
  assert "--workdir" in _error_line(_main("--config", "configs/demo.py"))


def test_a_tuple_field_given_one_number_is_named(tmp_path):
  line = _error_line(_demo(tmp_path, "--config.input.crop_scale=0.5"))
  assert "config.input.crop_scale" in line and "two numbers" in line


def test_image_size_off_the_patch_grid_fails_before_the_workdir_is_made(tmp_path):
  line = _error_line(_demo(tmp_path, "--config.image_size=60"))
  assert line.startswith("error: config.image_size: 60") and "patch_size=8" in line
  assert not os.path.exists(tmp_path / "w")


def test_a_workdir_that_cannot_be_created_is_named(tmp_path):
  (tmp_path / "a_file").write_text("")
  workdir = tmp_path / "a_file" / "run"
  r = _main("--config", "configs/demo.py", "--workdir", str(workdir),
            env={"TIME_JAX_DEMO_DATA": str(tmp_path / "data")})
  assert f"--workdir: cannot create or write {workdir}" in _error_line(r)
  assert not os.path.exists(tmp_path / "data")  # nothing was built


def test_a_workdir_orbax_cannot_write_is_refused(tmp_path):
  # Orbax globs a checkpoint's folder to find its files: 'run[1]' would save
  # checkpoints that never read back.
  r = _main("--config", "configs/demo.py", "--workdir", str(tmp_path / "run[1]"),
            env={"TIME_JAX_DEMO_DATA": str(tmp_path / "data")})
  assert "Orbax" in _error_line(r)
  assert not os.path.exists(tmp_path / "run[1]")


def test_listed_videos_that_do_not_exist_are_one_line(tmp_path):
  # Found when the run builds its data, after validation: still one line, no traceback.
  root = tmp_path / "clips"
  root.mkdir()
  (root / "train.txt").write_text("a.mp4 0\nb.mp4 1\n")
  (root / "eval.txt").write_text("a.mp4 0\n")
  r = _main("--config", "configs/demo.py", "--workdir", str(tmp_path / "w"),
            "--config.dataset.name=annotations", f"--config.dataset.root={root}",
            "--config.dataset.train_annotations=train.txt",
            "--config.dataset.eval_annotations=eval.txt")
  line = _error_line(r)
  assert "a.mp4" in line and "missing_files" in line, line


# ----------------------------------------------------------------------------------
# Data a user can fix: one line, exit 2, before anything compiles.
# ----------------------------------------------------------------------------------

def _clips(root, good, bad=()):
  """``root/clips/c<i>.mp4`` (``good`` small mp4s) and the named ``bad`` files (an empty
  file and a renamed text file); returns their annotation names."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from time_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  (root / "clips").mkdir(parents=True)
  names = []
  for i in range(good):
    frames = synthetic.clip("right", np.random.default_rng(i), num_frames=8, size=32)
    synthetic.write_mp4(str(root / "clips" / f"c{i}.mp4"), frames)
    names.append(f"clips/c{i}.mp4")
  for name, data in bad:
    (root / "clips" / name).write_bytes(data)
    names.append(f"clips/{name}")
  return names


def _annotations(root):
  return [f"--config.dataset.root={root}", "--config.dataset.name=annotations",
          "--config.dataset.train_annotations=train.txt",
          "--config.dataset.eval_annotations=eval.txt"]


@pytest.mark.slow
def test_a_packs_bad_videos_stop_a_run_before_it_compiles_naming_them(tmp_path):
  root = tmp_path / "set"
  names = _clips(root, 5, bad=[("empty.mp4", b""), ("notes.avi", b"not a video\n")])
  (root / "train.txt").write_text("".join(f"{n} {i % 2}\n" for i, n in
                                          enumerate(names[:3] + names[5:])))
  (root / "eval.txt").write_text(f"{names[3]} 0\n{names[4]} 1\n")
  pack = subprocess.run(
      [sys.executable, "-m", "time_jax.data.pack", "--config", "configs/demo.py",
       "--out", str(tmp_path / "pack"), *_annotations(root)], cwd=REPO,
      capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
  assert pack.returncode == 0, pack.stderr[-3000:]
  # The summary counts what was written, and says a run on it will stop.
  assert (f"Packed 3 of 5 train and 2 eval videos into {tmp_path / 'pack'}. 2 train "
          "videos did not decode (clips/empty.mp4, clips/notes.avi): a run on it stops "
          "at start: more than dataset.max_bad_fraction=0.01 allows (1)") in pack.stderr

  r = _main("--config", "configs/demo.py", "--workdir", str(tmp_path / "w"),
            *_annotations(root), "--config.dataset.source=packed",
            f"--config.dataset.packed_dir={tmp_path / 'pack'}")
  line = _error_line(r)
  assert line.startswith("error: 2 of 5 train files failed to decode, more than "
                         "dataset.max_bad_fraction=0.01 allows (1): clips/empty.mp4 "
                         f"(packed as {tmp_path / 'pack' / 'train'}#3): "), line
  assert "clips/notes.avi (packed as" in line and "cannot open as a video" in line
  assert "compiles" not in r.stderr  # found before training started
  assert os.listdir(tmp_path / "w") == []


@pytest.mark.slow
def test_annotation_mistakes_and_a_batch_larger_than_the_set_on_a_terminal(tmp_path):
  import pty  # pylint: disable=g-import-not-at-top
  root = tmp_path / "set"
  names = _clips(root, 3)
  bom = "\ufeff"  # Notepad / Excel start a UTF-8 file with a byte-order mark
  (root / "train.txt").write_text(bom + "".join(f"{n} {i % 2}\n" for i, n in
                                                enumerate(names)), encoding="utf-8")
  (root / "eval.txt").write_text(bom + f"{names[0]} 0\n", encoding="utf-8")
  workdir = tmp_path / "w"
  args = ("--config", "configs/demo.py", "--workdir", str(workdir), *_annotations(root))
  # 0-based labels read as 1-based: the message says which way to fix it.
  line = _error_line(_main(*args, "--config.dataset.label_base=1"))
  assert line == (f"error: {root}/train.txt:1: label 0 is below dataset.label_base=1; the "
                  "file's labels look 0-based: set dataset.label_base=0."), line

  # On a terminal our lines read 'HH:MM:SS message'; the batch mistake is one line and
  # nothing is left in the workdir (the BOM files parsed, or no batch would be built).
  leader, follower = pty.openpty()
  proc = subprocess.Popen([sys.executable, "-m", "time_jax.main", *args,
                           "--config.input.batch_size=8"], cwd=REPO, stdin=follower,
                          stdout=follower, stderr=follower, close_fds=True,
                          env=dict(os.environ, PYTHONPATH=REPO))
  os.close(follower)
  chunks = []
  while True:
    try:
      chunk = os.read(leader, 4096)
    except OSError:  # the terminal closed: the run ended
      break
    if not chunk:
      break
    chunks.append(chunk)
  os.close(leader)
  assert proc.wait(timeout=120) == 2
  lines = [l for l in b"".join(chunks).decode().splitlines() if l.strip()]
  assert lines[-1] == ("error: config.input.batch_size=8: the train split has 3 videos, "
                       "fewer than the 8 a batch takes; lower input.batch_size."), lines
  ours = [l for l in lines if "Process 0 of 1" in l]
  assert len(ours) == 1 and re.fullmatch(r"\d\d:\d\d:\d\d Process 0 of 1, .*", ours[0]), lines
  assert os.listdir(workdir) == []
