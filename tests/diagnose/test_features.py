"""ResNet feature maps: torchvision names, the stem against a direct convolution, PNGs."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from time_jax.diagnose import __main__ as cli
from time_jax import checkpoints
from time_jax.diagnose import features

from diagnose_helpers import FRAMES, IMAGE, init, non_empty_png, save_workdir, tiny_config  # pylint: disable=g-bad-import-order

STAGES = (1, 1, 1, 1)


def test_torchvision_names_map_to_module_paths():
  assert features.module_path("conv1") == ("conv1",)
  assert features.module_path("layer1.0") == ("layer1_0",)
  assert features.module_path("layer3.5.conv2") == ("layer3_5", "conv2")
  with pytest.raises(ValueError, match="torchvision names"):
    features.module_path("layer1/0")


class _Block(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.Conv(4, (3, 3), name="conv1")(x)) + 1.0


class _Net(nn.Module):
  """Torchvision-named modules, frames as images, like the ResNet."""

  @nn.compact
  def __call__(self, x, train=False):
    h = x.reshape(-1, *x.shape[2:])
    h = nn.Conv(4, (3, 3), strides=(2, 2), name="conv1")(h)
    h = _Block(name="layer1_0")(h)
    return h.mean(axis=(1, 2, 3))


def test_outputs_of_the_named_modules_are_captured():
  model = _Net()
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 2, 8, 8, 3)), jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), x)
  maps = features.feature_maps(model, variables, x, ["conv1", "layer1.0.conv1", "layer1.0"])
  p = variables["params"]
  imgs = x[0]
  stem = nn.Conv(4, (3, 3), strides=(2, 2)).apply({"params": p["conv1"]}, imgs)
  inner = nn.Conv(4, (3, 3)).apply({"params": p["layer1_0"]["conv1"]}, stem)
  np.testing.assert_allclose(maps["conv1"], stem, atol=1e-6)
  np.testing.assert_allclose(maps["layer1.0.conv1"], inner, atol=1e-6)
  np.testing.assert_allclose(maps["layer1.0"], nn.relu(inner) + 1.0, atol=1e-6)
  with pytest.raises(ValueError, match="'layer2.0' is not a feature map.*layer1.0"):
    features.feature_maps(model, variables, x, ["layer2.0"])


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory):
  _, variables = init("resnet50", stages=STAGES)
  config = tiny_config("resnet50")
  config.model.kwargs = dict(stages=STAGES)
  return save_workdir(tmp_path_factory.mktemp("ckpt") / "resnet", config, variables,
                      ["left", "right", "still"])


def test_maps_have_torchvision_shapes_and_the_stem_is_the_convolution(tiny_resnet):
  ckpt = checkpoints.load(tiny_resnet)
  assert "batch_stats" in ckpt.variables
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, FRAMES, IMAGE, IMAGE, 3)),
                  jnp.float32)
  layers = ["conv1", "layer1.0.conv1", "layer1.0", "layer2.0.conv2", "layer4.0"]
  maps = features.feature_maps(ckpt.build_model(), ckpt.variables, x, layers)
  s = IMAGE // 4  # after the stem and the max pool
  assert maps["conv1"].shape == (FRAMES, IMAGE // 2, IMAGE // 2, 64)
  assert maps["layer1.0.conv1"].shape == (FRAMES, s, s, 64)
  assert maps["layer1.0"].shape == (FRAMES, s, s, 256)
  assert maps["layer2.0.conv2"].shape == (FRAMES, s // 2, s // 2, 128)  # stride on the 3x3
  assert maps["layer4.0"].shape == (FRAMES, s // 8, s // 8, 2048)
  kernel = ckpt.variables["params"]["conv1"]["kernel"]  # [7, 7, 3, 64]
  stem = jax.lax.conv_general_dilated(x[0], kernel, (2, 2), ((3, 3), (3, 3)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(maps["conv1"], stem, atol=1e-4)
  with pytest.raises(ValueError, match="'layer9.0' is not a feature map"):
    features.feature_maps(ckpt.build_model(), ckpt.variables, x, ["layer9.0"])


def test_cli_writes_a_png_per_layer(tiny_resnet, video, tmp_path):
  assert cli.main(["features", "--checkpoint", tiny_resnet, "--video", video,
                   "--layers", "conv1,layer1.0.conv1,layer3.0", "--channels", "4",
                   "--out", str(tmp_path)]) == 0
  for name in ("conv1", "layer1_0_conv1", "layer3_0"):
    non_empty_png(tmp_path / f"features_{name}.png")
  with open(tmp_path / "features.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["module"] for r in rows] == ["conv1", "layer1_0/conv1", "layer3_0"]
  assert all(len(r["channels"].split()) == 4 for r in rows)


def test_transformer_checkpoint_is_a_clear_error(tiny_videomae, video, tmp_path, capsys):
  assert cli.main(["features", "--checkpoint", tiny_videomae, "--video", video,
                   "--out", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  # What the model is, what features draws, and the tool that works for this model.
  assert err.count("\n") == 1 and err.startswith(
      f"error: {tiny_videomae} holds 'videomae_s', a VideoMAE: features draws the "
      "convolution feature maps of a ResNet (resnet50); for this model use `attention`"), err
