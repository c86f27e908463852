"""timm / torchvision / big_vision ResNet-50 and ViT -> time_jax, compared with timm itself.

Random-initialised timm models (no downloads) are saved in each supported format, ported
by the API and the CLI, and their logits compared with timm's in eval mode. timm runs
with torchvision stubbed (`time_jax.port.reference`): its ResNet/ViT forward is timm's.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from time_jax.port import big_vision
from time_jax.port import common
from time_jax.port import reference
from time_jax.port import timm as timm_port

timm = reference.timm()
TOL = 1e-4


def _randomise(net, seed=0):
  """Perturbs every parameter and BN statistic: a swapped tensor cannot go unnoticed."""
  torch.manual_seed(seed)
  with torch.no_grad():
    for _, p in net.named_parameters():
      p.add_(0.05 * torch.randn_like(p))
    for name, b in net.named_buffers():
      if name.endswith("running_mean"):
        b.copy_(0.1 * torch.randn_like(b))
      elif name.endswith("running_var"):
        b.copy_(0.5 + torch.rand_like(b))
  return net.eval()


def _save(net, path):
  state = net.state_dict()
  if path.endswith(".safetensors"):
    from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top
    save_file({k: v.contiguous() for k, v in state.items()}, path)
  elif path.endswith(".pth"):
    torch.save({"model": state}, path)  # wrapped, as many training scripts save
  else:
    torch.save(state, path)
  return path


@pytest.fixture(scope="module")
def resnet():
  return _randomise(timm.create_model("resnet50", pretrained=False, num_classes=11))


@pytest.fixture(scope="module")
def vit_small():
  return _randomise(timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=7))


def test_reference_is_timms_own_code_and_torchvision_is_never_faked():
  assert type(timm.create_model("resnet50", pretrained=False)).__module__ == "timm.models.resnet"
  import torchvision  # pylint: disable=g-import-not-at-top
  if isinstance(torchvision, reference._StubModule):  # pylint: disable=protected-access
    with pytest.raises(reference.MissingTorchvision, match="FrozenBatchNorm2d"):
      torchvision.ops.misc.FrozenBatchNorm2d(8)


@pytest.mark.parametrize("fmt", ["safetensors", "pth", "bin"])
def test_resnet50_logits_match_timm(resnet, tmp_path, fmt):
  path = _save(resnet, str(tmp_path / f"resnet50.{fmt}"))
  state = common.load_weights(path)
  variables, k = timm_port.convert(state, "resnet50", None)
  assert k == 11 and set(variables) == {"params", "batch_stats"}
  report = timm_port.verify(state, variables, "resnet50", k, image_size=64)
  assert report.ok and report.max_relative < TOL, report.summary()
  # every bottleneck (3 + 4 + 6 + 3), the pooled features and the logits
  assert len(report.layers) == 18 and report.layers[0].name == "layer1_0"


def test_torchvision_layout_resnet50_via_cli(resnet, tmp_path):
  path = _save(resnet, str(tmp_path / "resnet50.pth"))
  out = tmp_path / "ported"
  proc = subprocess.run(
      [sys.executable, "-m", "time_jax.port", "--from", "torchvision", "--checkpoint", path,
       "--model", "resnet50", "--out", str(out)], capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr
  variables, meta = common.restore(str(out))
  assert meta["model"] == "resnet50" and meta["num_classes"] == 11
  net_logits_err = timm_port.compare(resnet, timm_port.models.create("resnet50", num_classes=11),
                                     variables, 64)
  assert net_logits_err < TOL


def test_vit_small_logits_match_timm_via_cli_verify(vit_small, tmp_path):
  path = _save(vit_small, str(tmp_path / "vit_s16.safetensors"))
  proc = subprocess.run(
      [sys.executable, "-m", "time_jax.port", "--from", "timm", "--checkpoint", path,
       "--model", "vit_s16", "--out", str(tmp_path / "out"), "--verify"],
      capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "verify: ok: 14 layers compared" in proc.stdout, proc.stdout
  err = float(proc.stdout.split("output max relative difference ")[1].split(";")[0])
  assert err < TOL


@pytest.mark.parametrize("kw", [dict(global_pool="avg", img_size=64),
                                dict(init_values=1e-5, img_size=48, patch_size=16)])
def test_vit_variants_match_timm(tmp_path, kw):
  net = _randomise(timm.models.vision_transformer.VisionTransformer(
      embed_dim=64, depth=2, num_heads=4, num_classes=5, **kw))
  state = common.load_weights(_save(net, str(tmp_path / "v.bin")))
  over = dict(embed_dim=64, depth=2, num_heads=4)
  variables, k = timm_port.convert(state, "vit_ti16", None, **over)
  assert timm_port.verify(state, variables, "vit_ti16", k, **over).ok


@pytest.mark.slow
def test_vit_base_logits_match_timm(tmp_path):
  net = _randomise(timm.create_model("vit_base_patch16_224", pretrained=False))
  state = common.load_weights(_save(net, str(tmp_path / "vit_b16.safetensors")))
  variables, k = timm_port.convert(state, "vit_b16", None)
  assert k == 1000
  assert timm_port.verify(state, variables, "vit_b16", k).ok


def test_wrong_files_get_one_message_listing_keys(resnet, tmp_path):
  state = {k: v.numpy() for k, v in resnet.state_dict().items()}
  broken = dict(state)
  del broken["layer2.1.conv2.weight"]
  broken["extra.weight"] = np.zeros(3, np.float32)
  broken["layer3.0.bn1.weight"] = np.zeros(7, np.float32)
  with pytest.raises(common.WeightMismatchError) as e:
    timm_port.convert(broken, "resnet50", None)
  msg = str(e.value)
  assert "missing keys (1)" in msg and "layer2.1.conv2.weight" in msg
  assert "unexpected keys (1)" in msg and "extra.weight" in msg
  assert "mis-shaped keys (1)" in msg and "layer3.0.bn1.weight: file (7,)" in msg
  with pytest.raises(ValueError, match="--num-classes 10 but the checkpoint's fc has 11"):
    timm_port.convert(state, "resnet50", 10)
  with pytest.raises(common.WeightMismatchError, match="not a timm ViT"):
    timm_port.convert(state, "vit_b16", None)
  path = _save(resnet, str(tmp_path / "r.pth"))
  proc = subprocess.run(
      [sys.executable, "-m", "time_jax.port", "--from", "timm", "--checkpoint", path,
       "--model", "vit_b16", "--out", str(tmp_path / "o")], capture_output=True, text=True,
      check=False)
  assert proc.returncode == 2 and "not a timm ViT" in proc.stderr


def test_vit_checkpoint_that_does_not_fit_the_model_name_says_why(vit_small):
  state = {k: v.numpy() for k, v in vit_small.state_dict().items()}
  with pytest.raises(ValueError, match="embed_dim: checkpoint 384, vit_b16 768"):
    timm_port.convert(state, "vit_b16", None)


# ----------------------------------------------------------------------------------
# big_vision / AugReg .npz, checked against timm's own AugReg loader.
# ----------------------------------------------------------------------------------

def _augreg_npz(depth=2, dim=64, heads=4, mlp=256, patch=16, grid=4, classes=5, seed=0):
  """A random ViT in the vit_jax / AugReg .npz naming, written literally."""
  hd = dim // heads
  shapes = {"embedding/kernel": (patch, patch, 3, dim), "embedding/bias": (dim,),
            "cls": (1, 1, dim), "Transformer/posembed_input/pos_embedding": (1, 1 + grid ** 2, dim),
            "Transformer/encoder_norm/scale": (dim,), "Transformer/encoder_norm/bias": (dim,),
            "head/kernel": (dim, classes), "head/bias": (classes,)}
  for i in range(depth):
    b = f"Transformer/encoderblock_{i}/"
    for ln in ("LayerNorm_0", "LayerNorm_2"):
      shapes[f"{b}{ln}/scale"], shapes[f"{b}{ln}/bias"] = (dim,), (dim,)
    att = b + "MultiHeadDotProductAttention_1/"
    for n in ("query", "key", "value"):
      shapes[f"{att}{n}/kernel"], shapes[f"{att}{n}/bias"] = (dim, heads, hd), (heads, hd)
    shapes[att + "out/kernel"], shapes[att + "out/bias"] = (heads, hd, dim), (dim,)
    shapes[b + "MlpBlock_3/Dense_0/kernel"], shapes[b + "MlpBlock_3/Dense_0/bias"] = (dim, mlp), (mlp,)
    shapes[b + "MlpBlock_3/Dense_1/kernel"], shapes[b + "MlpBlock_3/Dense_1/bias"] = (mlp, dim), (dim,)
  rng = np.random.default_rng(seed)
  return {k: (0.2 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}


def _big_vision_names(state):
  out = {}
  for k, v in state.items():
    k = (k.replace("Transformer/posembed_input/", "")
         .replace("MultiHeadDotProductAttention_1", "MultiHeadDotProductAttention_0")
         .replace("LayerNorm_2", "LayerNorm_1").replace("MlpBlock_3", "MlpBlock_0"))
    out["params/img/" + k] = v
  return out


TINY = dict(embed_dim=64, depth=2, num_heads=4)


@pytest.mark.parametrize("naming", ["augreg", "big_vision"])
def test_big_vision_npz_matches_timms_augreg_loader(tmp_path, naming):
  state = _augreg_npz()
  if naming == "big_vision":
    state = _big_vision_names(state)
  path = str(tmp_path / "vit.npz")
  np.savez(path, **state)
  loaded = common.load_weights(path)
  variables, k = big_vision.convert(loaded, "vit_ti16", None, **TINY)
  assert k == 5
  assert big_vision.verify(loaded, variables, "vit_ti16", k, **TINY).ok


def test_big_vision_without_class_token_is_refused():
  state = _augreg_npz()
  del state["cls"]
  with pytest.raises(common.WeightMismatchError, match="no class token"):
    big_vision.convert(state, "vit_ti16", None, **TINY)


def test_cli_refuses_a_pickle_that_would_run_code(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, (f"touch {tmp_path / 'pwned'}",))
  path = str(tmp_path / "evil.pth")
  torch.save({"x": Evil()}, path)
  proc = subprocess.run(
      [sys.executable, "-m", "time_jax.port", "--from", "timm", "--checkpoint", path,
       "--model", "resnet50", "--out", str(tmp_path / "o")], capture_output=True, text=True,
      check=False)
  assert proc.returncode != 0
  assert not (tmp_path / "pwned").exists()
