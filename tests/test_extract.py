"""Feature extraction: rows equal `predict`'s pre-logits; merged and per-view shapes; the
index names undecodable files with their reasons; a rerun resumes (and refuses other
settings); a run killed mid-way and rerun equals an uninterrupted one; two processes
(2 × 4 CPU devices, gloo) write what one process writes; window mode's rows."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from time_jax import extract
from time_jax import models
from time_jax import predict
from time_jax.data import video
from time_jax.data.base import Record
from time_jax.diagnose import inputs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "diagnose"))
import diagnose_helpers as h  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["left", "right", "still"]
# video, label in the list file (None: no label), decodes
VIDEOS = [("a.mp4", 0, True), ("sub/b.mp4", 2, True), ("broken.mp4", 1, False),
          ("gone.mp4", None, False), ("c.mp4", 1, True)]
# Reads slowly, so that a test can kill the extraction between two batches.
SLOW_DRIVER = (
    "import sys, time\n"
    "from time_jax.data import video\n"
    "read = video.VideoReader.read\n"
    "def slow(self, record, choose):\n"
    "  time.sleep(0.4)\n"
    "  return read(self, record, choose)\n"
    "video.VideoReader.read = slow\n"
    "from time_jax import extract\n"
    "sys.exit(extract.main(sys.argv[1:]))\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A tiny VideoMAE workdir, a list of five videos (two unreadable) and the reference
  extraction of them: 2 clips × 3 crops, features, logits and probabilities."""
  root = tmp_path_factory.mktemp("extract")
  _, variables = h.init("videomae_s", **h.TINY)
  workdir = h.save_workdir(root / "run", h.tiny_config(), variables, NAMES)
  os.makedirs(root / "videos" / "sub")
  lines = []
  for seed, (name, label, readable) in enumerate(VIDEOS):
    if readable:
      h.write_video(root / "videos" / name, num_frames=12 + 4 * seed, seed=seed)
    elif name == "broken.mp4":
      (root / "videos" / name).write_bytes(b"not a video at all")
    lines.append(name if label is None else f"{name} {label}")
  listing = root / "videos" / "list.txt"
  listing.write_text("# name label\n" + "\n".join(lines) + "\n")
  ref = root / "ref"
  assert extract.main(_args(workdir, listing, ref)) == 0
  return dict(root=root, workdir=workdir, list=str(listing), ref=ref,
              videos=[str(root / "videos" / n) for n, _, _ in VIDEOS])


def _args(workdir, listing, out, *extra):
  return ["--checkpoint", str(workdir), "--videos", str(listing), "--out", str(out),
          "--views", "2x3", "--logits", "--probabilities", "--batch-size", "8", *extra]


def _index(out):
  with open(os.path.join(out, "index.csv"), newline="") as f:
    return list(csv.DictReader(f))


def test_rows_equal_predicts_pre_logits(setup):
  p = predict.Predictor(setup["workdir"], clips=2, crops=3)
  model = p.ckpt.build_model()
  features = np.load(setup["ref"] / "features.npy", mmap_mode="r")
  logits = np.load(setup["ref"] / "logits.npy")
  probs = np.load(setup["ref"] / "probabilities.npy")
  assert features.shape == (5, 32) and logits.shape == probs.shape == (5, 3)
  for row, (path, (_, _, readable)) in enumerate(zip(setup["videos"], VIDEOS)):
    if not readable:
      assert np.isnan(features[row]).all() and np.isnan(probs[row]).all()
      continue
    x = inputs.model_input(inputs.read_views(path, p.ckpt.config, clips=2, crops=3),
                           p.ckpt.config)
    want_logits, want = (np.asarray(a) for a in models.logits_and_features(
        model, p.variables, x))
    assert want.shape == (6, 32)
    np.testing.assert_allclose(features[row], want.mean(0), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(logits[row], want_logits.mean(0), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(probs[row], p.predict_one(path).probabilities, atol=1e-6)


def test_index_names_the_undecodable_files_and_meta_says_what_was_run(setup):
  rows = _index(setup["ref"])
  assert [r["video"] for r in rows] == [n for n, _, _ in VIDEOS]
  assert [r["label"] for r in rows] == ["" if l is None else str(l) for _, l, _ in VIDEOS]
  assert [r["row"] for r in rows] == ["0", "1", "2", "3", "4"]
  assert [r["status"] for r in rows] == ["ok", "ok", "failed", "failed", "ok"]
  assert "broken.mp4: cannot open as a video" in rows[2]["reason"]
  assert rows[3]["reason"].endswith("gone.mp4: no such file.")
  meta = json.loads((setup["ref"] / "meta.json").read_text())
  assert meta["complete"] and meta["counts"] == {"ok": 3, "partial": 0, "failed": 2}
  assert meta["step"] == 1 and meta["feature_size"] == 32 and meta["class_names"] == NAMES
  assert meta["views"]["clips"] == 2 and meta["views"]["crops"] == 3
  assert (meta["n"], meta["t_out"], meta["sampling"]["rule"]) == (2, 2, "segments")
  assert meta["arrays"]["features"]["shape"] == [5, 32]
  assert not os.path.exists(setup["ref"] / "parts")


def test_per_view_rows_keep_each_view(setup, tmp_path):
  out = tmp_path / "per_view"
  assert extract.main(_args(setup["workdir"], setup["list"], out, "--per-view")) == 0
  per_view = np.load(out / "features.npy")
  probs = np.load(out / "probabilities.npy")
  assert per_view.shape == (5, 6, 32) and probs.shape == (5, 6, 3)
  merged = np.load(setup["ref"] / "features.npy")
  np.testing.assert_allclose(per_view.mean(1), merged, atol=1e-5)  # NaN rows alike
  np.testing.assert_allclose(probs[[0, 1, 4]].sum(-1), 1.0, atol=1e-5)
  assert json.loads((out / "meta.json").read_text())["views"]["per_view"]


def test_views_that_failed_leave_the_merge_and_are_named(setup):
  ckpt = predict.Predictor(setup["workdir"]).ckpt
  ex = extract.Extractor(ckpt, ckpt.config, clips=1, crops=3)
  rng = np.random.default_rng(0)
  views = extract.Views(0, rng.normal(size=(3, 32)).astype(np.float32),
                        rng.normal(size=(3, 3)).astype(np.float32),
                        np.array([True, False, True]), 0)
  merged = ex.combine(views, extract.OUTPUTS, per_view=False)
  assert merged.status == "partial"
  np.testing.assert_allclose(merged.arrays["features"], views.features[[0, 2]].mean(0))
  p = np.exp(views.logits[[0, 2]].mean(0))
  np.testing.assert_allclose(merged.arrays["probabilities"], p / p.sum(), rtol=1e-6)
  per_view = ex.combine(views, ["features"], per_view=True).arrays["features"]
  assert np.isnan(per_view[1]).all() and not np.isnan(per_view[[0, 2]]).any()
  broken = Record(setup["videos"][2], 1)
  assert ex.reason(video.VideoReader(), broken, views.valid).startswith(
      f"1 of 3 views failed: {broken.path}: cannot open as a video")


def test_rerun_resumes_and_other_settings_are_one_clear_error(setup, capsys):
  before = np.load(setup["ref"] / "features.npy")
  assert extract.main(_args(setup["workdir"], setup["list"], setup["ref"])) == 0
  assert "5 from an earlier run" in capsys.readouterr().out
  np.testing.assert_array_equal(np.load(setup["ref"] / "features.npy"), before)
  args = _args(setup["workdir"], setup["list"], setup["ref"])
  args[args.index("2x3")] = "1x1"
  with pytest.raises(SystemExit) as e:
    extract.main(args)
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count("\n") == 1, err
  assert err.startswith(f"error: --out {setup['ref']} holds an extraction with other "
                        "settings (views:")


CONFIG = """
import diagnose_helpers as h
def get_config():
  c = h.tiny_config()
  c.dataset.update(name="annotations", source="video", root={root!r}, num_classes=3,
                   train_annotations="train.txt", eval_annotations="eval.txt")
  return c
"""


def test_a_configs_split_and_a_mistyped_override(setup, tmp_path, capsys):
  videos = setup["root"] / "videos"
  (videos / "train.txt").write_text("a.mp4 0\n")
  (videos / "eval.txt").write_text("a.mp4 0\nsub/b.mp4 2\nbroken.mp4 1\n")
  config = tmp_path / "config.py"
  config.write_text(CONFIG.format(root=str(videos)))
  out = tmp_path / "split"
  args = ["--checkpoint", setup["workdir"], "--config", str(config), "--split", "eval",
          "--out", str(out), "--views", "2x3", "--batch-size", "8"]
  assert extract.main(args) == 0
  assert [(r["video"], r["label"], r["status"]) for r in _index(out)] == [
      ("a.mp4", "0", "ok"), ("sub/b.mp4", "2", "ok"), ("broken.mp4", "1", "failed")]
  np.testing.assert_allclose(np.load(out / "features.npy"),
                             np.load(setup["ref"] / "features.npy")[:3], atol=1e-6)
  with pytest.raises(SystemExit) as e:
    extract.main(args + ["--config.input.eval_batch_sise=8"])
  assert e.value.code == 2
  assert capsys.readouterr().err == (
      "error: --config.input.eval_batch_sise: config.input has no field "
      "'eval_batch_sise'; did you mean 'eval_batch_size'?\n")


def test_window_mode_rows_are_the_windows(setup, tmp_path):
  out = tmp_path / "windows"
  a = setup["videos"][0]  # 12 frames at 8 frames/s
  listing = tmp_path / "one.txt"
  listing.write_text(f"{a} 0\n")
  assert extract.main(["--checkpoint", setup["workdir"], "--videos", str(listing),
                       "--out", str(out), "--every", "0.5", "--probabilities"]) == 0
  rows = _index(out)
  assert [(r["window"], r["start"], r["end"]) for r in rows] == [
      ("0", "0.000", "0.500"), ("1", "0.500", "1.000"), ("2", "1.000", "1.500")]
  assert np.load(out / "features.npy").shape == (3, 32)
  meta = json.loads((out / "meta.json").read_text())
  assert meta["views"]["clips"] == 1 and meta["windows"]["every"] == 0.5


@pytest.mark.slow
def test_killed_extraction_rerun_equals_an_uninterrupted_one(setup, tmp_path, capsys):
  out = tmp_path / "killed"
  env = dict(os.environ, PYTHONPATH=REPO)
  proc = subprocess.Popen(
      [sys.executable, "-c", SLOW_DRIVER,
       *_args(setup["workdir"], setup["list"], out, "--config.input.read_threads=1")],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  part = out / "parts" / "process_0-of-1.csv"
  deadline = time.monotonic() + 120
  while not (part.exists() and part.read_text().count("\n") > 1):
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    assert time.monotonic() < deadline
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  written = part.read_text().count("\n") - 1
  assert 0 < written < 5 and not (out / "index.csv").exists()
  assert extract.main(_args(setup["workdir"], setup["list"], out)) == 0
  assert f"{written} from an earlier run" in capsys.readouterr().out
  assert _index(out) == _index(setup["ref"])
  for name in extract.OUTPUTS:
    np.testing.assert_allclose(np.load(out / f"{name}.npy"),
                               np.load(setup["ref"] / f"{name}.npy"), atol=1e-6)


def _port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(setup, tmp_path):
  out, port = tmp_path / "two", _port()
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")
  procs = [subprocess.Popen(
      [sys.executable, "-m", "time_jax.extract",
       *_args(setup["workdir"], setup["list"], out), "--coordinator_address",
       f"localhost:{port}", "--num_processes", "2", "--process_id", str(i)],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  logs = [p.communicate(timeout=240)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  assert "extracted 5 videos (3 ok, 0 partial, 2 failed" in logs[0]
  assert "extracted" not in logs[1]  # process 0 reports
  assert _index(out) == _index(setup["ref"])
  for name in extract.OUTPUTS:
    np.testing.assert_allclose(np.load(out / f"{name}.npy"),
                               np.load(setup["ref"] / f"{name}.npy"), atol=1e-6)


def test_video_lists_and_folders(tmp_path):
  (tmp_path / "d" / "x").mkdir(parents=True)
  for name in ("d/x/b.avi", "d/a.mp4", "d/notes.txt"):
    (tmp_path / name).write_bytes(b"")
  records = extract.video_records(str(tmp_path / "d"))
  assert [r.name for r in records] == ["a.mp4", os.path.join("x", "b.avi")]
  assert records[0].path == str(tmp_path / "d" / "a.mp4") and records[0].label == -1
  bad = tmp_path / "bad.txt"
  bad.write_text("a.mp4 zero\n")
  with pytest.raises(ValueError, match="line 1: write 'path' or 'path label'"):
    extract.video_records(str(bad))
  with pytest.raises(ValueError, match="no such folder or list file"):
    extract.video_records(str(tmp_path / "nowhere"))
