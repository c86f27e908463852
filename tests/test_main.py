"""The command line: a user's mistake ends the run at start with one line naming it.

Each case runs the real ``python -m time_jax.main`` and expects exit status 2, one
``error: ...`` line on stderr (no traceback, no ``--help`` text) and no work done.
"""

import os
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
