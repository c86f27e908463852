"""Inference: top-5 from a checkpoint, view averaging, errors; a trained demo model names
the right class of held-out synthetic clips."""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from time_jax import predict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "diagnose"))
import diagnose_helpers as h  # pylint: disable=g-import-not-at-top,wrong-import-position

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  _, variables = h.init("videomae_s", **h.TINY)
  return h.save_workdir(tmp_path_factory.mktemp("ckpt") / "w", h.tiny_config(), variables,
                        ["left", "right", "still"])


@pytest.fixture(scope="module")
def ema_workdirs(tmp_path_factory):
  """``(run, ema_only)``: a ``train.ema_decay > 0`` run whose raw parameters are those
  of `workdir` and whose EMA parameters are another draw; and a run without EMA whose
  parameters are that draw."""
  _, variables = h.init("videomae_s", **h.TINY)
  _, other = h.init("videomae_s", seed=1, **h.TINY)
  root = tmp_path_factory.mktemp("ema")
  config = h.tiny_config()
  config.train.ema_decay = 0.99
  names = ["left", "right", "still"]
  run = h.save_workdir(root / "run", config, variables, names, ema_params=other["params"])
  return run, h.save_workdir(root / "ema_only", h.tiny_config(), other, names)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  return h.write_video(tmp_path_factory.mktemp("v") / "clip.mp4")


def test_views_parse():
  assert predict.parse_views("2x3") == (2, 3)
  assert predict.parse_views("4×1") == (4, 1)
  assert predict.parse_views("5") == (5, 1)
  for bad in ("2x2", "0x3", "two"):
    with pytest.raises(ValueError, match="--views"):
      predict.parse_views(bad)


def test_probabilities_average_the_views_logits(workdir, clip):
  p = predict.Predictor(workdir, clips=2, crops=3)
  logits = p.logits(clip)
  assert logits.shape == (6, 3)
  [result] = p(clip)
  mean = logits.astype(np.float64).mean(0)
  want = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
  np.testing.assert_allclose(result.probabilities, want, rtol=1e-5)
  assert [name for name, _ in result.top] == [
      ["left", "right", "still"][i] for i in np.argsort(-want)]
  assert result.views == 6


def test_cli_prints_top_classes_and_json(workdir, clip, capsys):
  assert predict.main(["--checkpoint", workdir, "--video", clip, clip, "--json"]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 2
  out = json.loads(lines[0])
  assert {t["label"] for t in out["top"]} == {"left", "right", "still"}
  assert sum(t["probability"] for t in out["top"]) == pytest.approx(1.0, abs=1e-5)
  assert predict.main(["--checkpoint", workdir, "--video", clip, "--views", "1x3"]) == 0
  text = capsys.readouterr().out
  assert "(3 views)" in text and "1. " in text


def test_a_frame_folder_is_read_as_the_frames_source_reads_it(workdir, clip, tmp_path,
                                                              capsys):
  # The clip's frames as lossless images: a model trained on frame folders is asked
  # about them, with the clip's own answer.
  from time_jax.data import frames  # pylint: disable=g-import-not-at-top
  from time_jax.data import video  # pylint: disable=g-import-not-at-top
  frames.write_frames(str(tmp_path / "clip_frames"), video.read_video(clip, np.arange)[0],
                      ext=".png")
  assert predict.main(["--checkpoint", workdir, "--video", clip,
                       str(tmp_path / "clip_frames"), "--views", "2x3", "--json"]) == 0
  from_video, from_folder = map(json.loads, capsys.readouterr().out.strip().splitlines())
  assert from_folder["video"] == str(tmp_path / "clip_frames")
  assert [t["label"] for t in from_folder["top"]] == [t["label"] for t in from_video["top"]]
  np.testing.assert_allclose([t["probability"] for t in from_folder["top"]],
                             [t["probability"] for t in from_video["top"]], rtol=1e-5)


def test_top_below_one_is_one_clear_error(workdir, clip, capsys):
  assert predict.main(["--checkpoint", workdir, "--video", clip, "--top", "0"]) == 2
  captured = capsys.readouterr()
  assert captured.err == "error: --top 0: list at least one class.\n" and captured.out == ""


def test_unreadable_checkpoint_is_one_clear_error(tmp_path, clip, capsys):
  assert predict.main(["--checkpoint", str(tmp_path / "nowhere"), "--video", clip]) == 2
  captured = capsys.readouterr()
  assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
  assert "nowhere" in captured.err and "Traceback" not in captured.err
  assert captured.out == ""


def test_bad_videos_are_reported_and_the_rest_classified(workdir, clip, tmp_path, capsys):
  broken = tmp_path / "broken.mp4"
  broken.write_bytes(b"not a video at all")
  gone = str(tmp_path / "gone.mp4")
  args = ["--checkpoint", workdir, "--video", str(broken), clip, gone, clip, "--json"]
  assert predict.main(args) == 1
  captured = capsys.readouterr()
  done = [json.loads(line) for line in captured.out.strip().splitlines()]
  assert [d["video"] for d in done] == [clip, clip]
  errors = captured.err.strip().splitlines()
  assert len(errors) == 3 and "Traceback" not in captured.err
  assert errors[0].startswith(f"error: {broken}") and errors[1].startswith(f"error: {gone}")
  assert errors[2] == "error: 2 of 4 videos failed (listed above)."


def _renumbered(workdir, root, step):
  """A copy of ``workdir`` whose one saved step is ``step``."""
  import shutil  # pylint: disable=g-import-not-at-top
  copy = shutil.copytree(workdir, root / "copy")
  os.rename(copy / "checkpoints" / "1", copy / "checkpoints" / str(step))
  return str(copy)


def test_cli_names_the_checkpoint_and_step_it_used(workdir, clip, tmp_path, capsys):
  copy = _renumbered(workdir, tmp_path, 7)
  assert predict.main(["--checkpoint", copy, "--video", clip, "--views", "1x3"]) == 0
  first = capsys.readouterr().out.splitlines()[0]
  assert first == f"checkpoint {copy} (step 7, raw parameters, 1x3 views)"
  assert predict.main(["--checkpoint", copy, "--video", clip, "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["step"] == 7 and out["checkpoint"] == copy


def test_ema_predicts_with_the_ema_params(workdir, ema_workdirs, clip):
  run, ema_only = ema_workdirs
  raw = predict.Predictor(workdir, clips=1).logits(clip)
  ema = predict.Predictor(ema_only, clips=1).logits(clip)
  # the EMA differs from the raw params (the head's tiny init keeps logits ~1e-4)
  assert np.abs(raw - ema).max() > 0.1 * np.abs(raw).max()
  np.testing.assert_allclose(predict.Predictor(run, clips=1, ema=True).logits(clip), ema,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(predict.Predictor(run, clips=1, ema=False).logits(clip), raw,
                             rtol=1e-5, atol=1e-6)
  # without a choice: what the run evaluated (ema_decay > 0, ema_eval True: the EMA)
  default = predict.Predictor(run, clips=1)
  assert default.ckpt.ema
  np.testing.assert_allclose(default.logits(clip), ema, rtol=1e-5, atol=1e-6)


def test_cli_ema_flags(workdir, ema_workdirs, clip, capsys):
  run, _ = ema_workdirs
  for flag, want in (("--ema", True), ("--no-ema", False), (None, True)):
    args = ["--checkpoint", run, "--video", clip, "--views", "1", "--json"]
    assert predict.main(args + ([flag] if flag else [])) == 0
    assert json.loads(capsys.readouterr().out)["ema"] is want, flag
  assert predict.main(["--checkpoint", workdir, "--video", clip, "--ema"]) == 2
  assert "no EMA parameters" in capsys.readouterr().err


def _demo_config():
  spec = importlib.util.spec_from_file_location("demo", os.path.join(CONFIGS, "demo.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.mark.slow
def test_trained_demo_model_names_the_class_of_its_clips(tmp_path, monkeypatch):
  from time_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from time_jax.data import sources  # pylint: disable=g-import-not-at-top
  from time_jax.train import loop  # pylint: disable=g-import-not-at-top

  monkeypatch.setenv("TIME_JAX_DEMO_DATA", str(tmp_path / "synthetic"))
  config = _demo_config().get_config("2")
  config.train.num_epochs = 30.0
  config.mesh.data = 1
  config_lib.validate(config, num_devices=1)
  import jax  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  top1 = loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])["eval/top1"]

  splits = sources.load_splits(config)
  names = splits.class_names
  results = predict.predict(workdir, [r.path for r in splits.eval])
  hits = [r.top[0][0] == names[rec.label] for r, rec in zip(results, splits.eval)]
  # predict reads, arranges and averages views as evaluation does: the same accuracy.
  assert np.mean(hits) == pytest.approx(top1, abs=0.03), (np.mean(hits), top1)
  assert np.mean(hits) >= 0.75, (np.mean(hits), len(hits))
