"""Export: the artifact, run by the examples/ client in a process without time_jax, equals
`time_jax.predict` for batch 1 and 7 from one artifact; it carries a CUDA lowering; a
mismatched sidecar or input is one clear line; EMA and ported checkpoints export."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import linen as nn

from time_jax import export
from time_jax import models
from time_jax import predict
from time_jax.data import scenes
from time_jax.data import synthetic
from time_jax.data import transforms
from time_jax.diagnose import inputs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "diagnose"))
import diagnose_helpers as h  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "examples", "classify_exported.py")
NAMES = ["left", "right", "still"]


def _client():
  spec = importlib.util.spec_from_file_location("classify_exported", CLIENT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


client = _client()


def _video(path, rng, frames, height, width):
  """A panning scene with a keyframe every 6 frames (the reader seeks; the client does
  not)."""
  synthetic.write_mp4(str(path), scenes.scene_clip(rng, num_frames=frames, height=height,
                                                   width=width), gop=6)
  return str(path)


def _random_variables(model, x):
  """Normal(0, 0.2) values of the model's variable shapes (BatchNorm variances > 0):
  compiling the initialisers would take seconds, and these give logits of order 1, so
  that 1e-5 is a real tolerance (the heads' tiny or zero init gives ~1e-4 or 0)."""
  shapes = jax.eval_shape(lambda: nn.unbox(model.init(jax.random.PRNGKey(0), x)))
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32) * 0.2,
                           dict(shapes))
  if "batch_stats" in variables:
    variables["batch_stats"] = jax.tree.map(np.abs, variables["batch_stats"])
  return variables


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A tiny VideoMAE run with an EMA (evaluated by default), its export, three videos."""
  root = tmp_path_factory.mktemp("export")
  model = models.create("videomae_s", num_classes=3, image_size=h.IMAGE,
                        num_frames=h.FRAMES, **h.TINY)
  variables = _random_variables(model, np.zeros((1, h.FRAMES, h.IMAGE, h.IMAGE, 3)))
  variables["params"]["head"]["bias"][:] = 0
  ema = jax.tree.map(np.copy, variables["params"])
  ema["head"]["kernel"] = -ema["head"]["kernel"]  # bias 0: EMA logits = -raw logits
  config = h.tiny_config()
  config.train.ema_decay = 0.99
  workdir = h.save_workdir(root / "run", config, variables, NAMES, ema_params=ema)
  artifact = str(root / "model.jaxexport")
  assert export.main(["--checkpoint", workdir, "--out", artifact]) == 0
  rng = np.random.default_rng(0)
  return dict(root=root, workdir=workdir, artifact=artifact, variables=variables, ema=ema,
              tall=_video(root / "tall.mp4", rng, 12, 64, 40),  # 3 crops along y
              wide=_video(root / "wide.mp4", rng, 48, 90, 160),  # 3 crops along x
              short=_video(root / "short.mp4", rng, 5, 48, 48))  # fewer frames than 8


# Runs in a fresh interpreter: the client with jax, numpy, PyAV and OpenCV only.
_DRIVER = """
import contextlib, io, json, sys
import numpy as np
client_path, artifact, tall, wide, short, broken, mismatched, out = sys.argv[1:]
sys.path.insert(0, client_path.rsplit("/", 1)[0])
import classify_exported as client
model = client.Model(artifact)
a = client.read_views(tall, model.meta, clips=2, crops=3)
b = client.read_views(wide, model.meta)
logits7, features7 = model(np.concatenate([a, b]))
logits1, features1 = model(b)
report = {}
try:
  model(a[:, :-1])
except client.ExportError as e:
  report["wrong_frames"] = str(e)
for name, argv in (("cli", [artifact, wide, broken, short, "--views", "1x3", "--top", "3"]),
                   ("mismatched", [mismatched, wide])):
  stdout, stderr = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    report[name] = [client.main(argv), stdout.getvalue(), stderr.getvalue()]
np.savez(out, a=a, b=b, logits7=logits7, features7=features7, logits1=logits1,
         features1=features1)
report["imported_time_jax"] = sorted(m for m in sys.modules if m.startswith("time_jax"))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def run(setup):
  """What the client computed and printed, in a process that never imports time_jax."""
  root = setup["root"]
  mismatched = str(root / "mismatched.jaxexport")
  shutil.copy(setup["artifact"], mismatched)
  with open(export.sidecar_path(setup["artifact"])) as f:
    meta = json.load(f)
  meta["frames_per_clip"] = 16  # a sidecar of another export
  with open(export.sidecar_path(mismatched), "w") as f:
    json.dump(meta, f)
  out = str(root / "client.npz")
  broken = root / "broken.mp4"
  broken.write_bytes(b"not a video")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, "-c", _DRIVER, CLIENT, setup["artifact"],
                         setup["tall"], setup["wide"], setup["short"], broken, mismatched,
                         out],
                        capture_output=True, text=True, env=env, cwd=str(root), check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(done.stdout.strip().splitlines()[-1])
  return report, dict(np.load(out))


def test_client_equals_predict_for_batch_1_and_7_without_time_jax(setup, run):
  report, arrays = run
  assert report["imported_time_jax"] == []
  six = predict.Predictor(setup["workdir"], clips=2, crops=3)
  one = predict.Predictor(setup["workdir"], clips=1, crops=1)
  want_a, want_b = six.logits(setup["tall"]), one.logits(setup["wide"])
  assert np.abs(want_a).max() > 0.3  # the tolerance below is far below the logits
  # The client's frames and crops are the evaluation pipeline's, pixel for pixel.
  np.testing.assert_array_equal(arrays["a"], inputs.read_views(
      setup["tall"], six.ckpt.config, clips=2, crops=3))
  np.testing.assert_array_equal(arrays["b"], inputs.read_views(
      setup["wide"], six.ckpt.config))
  # One artifact, two batch sizes (the batch is symbolic).
  np.testing.assert_allclose(arrays["logits7"], np.concatenate([want_a, want_b]),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(arrays["logits1"], want_b, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(arrays["features1"], arrays["features7"][6:], rtol=1e-5,
                             atol=1e-5)


def test_features_are_the_heads_input(setup, run):
  _, arrays = run
  head = setup["ema"]["head"]  # the run evaluates its EMA, so the export holds it
  np.testing.assert_allclose(arrays["features7"] @ head["kernel"] + head["bias"],
                             arrays["logits7"], rtol=1e-5, atol=1e-5)
  assert arrays["features7"].shape == (7, h.TINY["embed_dim"])


def test_client_cli_prints_the_top_classes_of_predict(setup, run):
  report, _ = run
  status, out, err = report["cli"]
  assert status == 1  # one video failed, with one line; the others are classified
  assert err.startswith("error: ") and err.count("\n") == 1 and "broken.mp4" in err
  lines = out.splitlines()
  assert len(lines) == 8
  results = predict.predict(setup["workdir"], [setup["wide"], setup["short"]],
                            views=(1, 3), top_k=3)
  for result, printed in zip(results, (lines[:4], lines[4:])):
    assert printed[0] == f"{result.video} (3 views)"
    for (name, prob), line in zip(result.top, printed[1:]):
      assert line.split()[1:] == [name, f"{prob:.4f}"]


def test_mismatched_sidecar_and_wrong_input_are_one_clear_line(run):
  report, _ = run
  status, out, err = report["mismatched"]
  assert status == 2 and out == ""
  assert err.count("\n") == 1 and err.startswith("error: ")
  assert "the sidecar says 16 frames of 16x16 per view, the artifact takes 8" in err
  assert report["wrong_frames"] == ("the model takes uint8 [views, 8, 16, 16, 3] (8 frames "
                                    "of 16x16 per view); got uint8 [6, 7, 16, 16, 3].")


def test_artifact_is_lowered_for_cpu_and_cuda_with_a_symbolic_batch(setup):
  with open(setup["artifact"], "rb") as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  assert exported.platforms == ("cpu", "cuda")
  batch = exported.in_avals[0].shape[0]
  assert jax.export.is_symbolic_dim(batch) and str(batch) == "batch"
  with open(export.sidecar_path(setup["artifact"])) as f:
    meta = json.load(f)
  assert meta["inputs"]["cells"] == {"shape": ["batch", 8, 16, 16, 3], "dtype": "uint8"}
  assert meta["outputs"]["logits"] == {"shape": ["batch", 3], "dtype": "float32"}
  assert (meta["frames_per_clip"], meta["cell_size"], meta["n"], meta["t_out"]) == (
      8, [16, 16], 2, 2)
  assert meta["class_names"] == NAMES and meta["step"] == 1 and meta["ema"] is True
  assert meta["sampling"]["rule"] == "segments" and meta["views"]["merge"] == "logits"
  assert meta["jax_version"] == jax.__version__


def _call(artifact, cells):
  with open(artifact, "rb") as f:
    logits, _ = jax.export.deserialize(bytearray(f.read())).call(cells)
  return np.asarray(logits)


def test_raw_parameters_and_ported_folders_export(setup, run, tmp_path, capsys):
  _, arrays = run
  raw = str(tmp_path / "raw.jaxexport")
  assert export.main(["--checkpoint", setup["workdir"], "--out", raw, "--no-ema",
                      "--platforms", "cpu"]) == 0
  assert "(step 1, raw parameters)" in capsys.readouterr().out
  np.testing.assert_allclose(_call(raw, arrays["b"]), -arrays["logits1"], rtol=1e-5,
                             atol=1e-5)
  ported = h.save_ported(tmp_path / "ported", "videomae_s", setup["variables"], 3,
                         image_size=h.IMAGE, model_kwargs=h.TINY)
  out = str(tmp_path / "ported.jaxexport")
  assert export.main(["--checkpoint", ported, "--out", out, "--t-out", "2",
                      "--platforms", "cpu"]) == 0
  np.testing.assert_allclose(_call(out, arrays["b"]), -arrays["logits1"], rtol=1e-5,
                             atol=1e-5)
  with open(export.sidecar_path(out)) as f:
    meta = json.load(f)
  assert meta["checkpoint_kind"] == "ported" and meta["step"] is None


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "nowhere"], "nowhere: no such checkpoint folder"),
    (["--platforms", "gpu"], "--platforms gpu: lower for some of cpu, cuda"),
])
def test_export_mistakes_are_one_line(setup, tmp_path, capsys, args, message):
  argv = ["--checkpoint", setup["workdir"], "--out", str(tmp_path / "m")] + args
  with pytest.raises(SystemExit) as exit_info:
    export.main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1 and message in err
  assert not os.path.exists(tmp_path / "m")


def test_client_sampling_rules():
  # 'segments' is time_layer.frame_indices / transforms.clip_indices: 8 of 16 frames.
  np.testing.assert_array_equal(client.segment_indices(16, 8), [0, 2, 4, 6, 8, 10, 12, 14])
  np.testing.assert_array_equal(client.segment_indices(16, 8, 1, 2), [1, 3, 5, 7, 9, 11, 13,
                                                                     15])
  np.testing.assert_array_equal(client.segment_indices(5, 8), [0, 0, 1, 1, 2, 3, 3, 4])
  # 'dense', VideoMAE's test rule: every 4th frame, clips spread by the leftover.
  np.testing.assert_array_equal(client.dense_indices(100, 8, 0, 2), np.arange(0, 32, 4))
  np.testing.assert_array_equal(client.dense_indices(100, 8, 1, 2), np.arange(68, 100, 4))
  np.testing.assert_array_equal(client.dense_indices(100, 8, 1, 3), np.arange(32, 64, 4))
  np.testing.assert_array_equal(client.dense_indices(10, 8, 1, 2), [0, 4, 8, 8, 8, 8, 8, 8])
  # Both rules are the pipeline's, clip by clip (one clip: the middle window).
  for frames in (5, 31, 100, 250):
    for clips in (1, 2, 5):
      for k in range(clips):
        np.testing.assert_array_equal(client.dense_indices(frames, 16, k, clips, 4),
                                      transforms.dense_eval_indices(frames, 16, 4, k, clips))
        np.testing.assert_array_equal(client.segment_indices(frames, 16, k, clips),
                                      transforms.clip_indices(frames, 4, 2, clip=k,
                                                              num_clips=clips))


def test_client_merges():
  logits = np.log([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]])
  np.testing.assert_allclose(client.merge(logits, "softmax"), [0.375, 0.25, 0.375])
  # the mean log-probabilities of class 0 and 2 are equal, class 1's is lower
  np.testing.assert_allclose(client.merge(logits, "logits"),
                             np.array([1, 2 ** -0.5, 1]) / (2 + 2 ** -0.5))


@pytest.mark.parametrize("name, kwargs", [
    ("vit_ti16", dict(patch_size=8, embed_dim=32, depth=1, num_heads=2)),
    ("resnet50", dict(stages=(1, 1, 1, 1))),
])
def test_logits_and_features_of_vit_and_resnet(name, kwargs):
  model = models.create(name, num_classes=3, image_size=32, num_frames=2, impl="xla",
                        **kwargs)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 2, 32, 32, 3))
  variables = _random_variables(model, x)
  logits, features = jax.jit(lambda v: models.logits_and_features(model, v, x))(variables)
  head = variables["params"]["head" if name.startswith("vit") else "fc"]
  assert features.shape == (2, 32 if name.startswith("vit") else 2048)
  np.testing.assert_allclose(features @ head["kernel"] + head["bias"], logits, rtol=1e-4,
                             atol=1e-4)
  assert np.abs(logits).max() > 0.1
