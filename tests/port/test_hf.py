"""Hugging Face VideoMAE -> time_jax: random transformers models, saved, ported, compared.

Outputs are compared with the stock transformers model (its own LayerNorm eps), on the
same clip and, for pretraining, the same tube mask.
"""

import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
import transformers

from time_jax import models
from time_jax.models import videomae as vm
from time_jax.port import common
from time_jax.port import hf

TINY = dict(embed_dim=64, depth=2, num_heads=4, patch_size=8)
TINY_PT = dict(TINY, decoder_embed_dim=32, decoder_num_heads=2, decoder_depth=2)


def _config(pretrain, mean_pooling=True, **kw):
  base = dict(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=64,
              num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
              layer_norm_eps=1e-6, num_labels=7, decoder_hidden_size=32,
              decoder_num_hidden_layers=2, decoder_num_attention_heads=2,
              decoder_intermediate_size=128, use_mean_pooling=mean_pooling and not pretrain)
  base.update(kw)
  return transformers.VideoMAEConfig(**base)


def _hf_model(pretrain, seed=0, **kw):
  torch.manual_seed(seed)
  cls = (transformers.VideoMAEForPreTraining if pretrain
         else transformers.VideoMAEForVideoClassification)
  model = cls(_config(pretrain, **kw)).eval()
  # transformers initialises biases and LayerNorms to constants; randomise everything
  # so that a swapped or transposed tensor cannot go unnoticed.
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model


def compare(hf_model, variables, ours, *, frames=4, size=32, patch=8, ratio=0.5, seed=0):
  """Relative max difference of logits / reconstructions of the same clip and mask."""
  x = np.random.default_rng(seed).standard_normal((2, frames, size, size, 3))
  x = x.astype(np.float32)
  xt = torch.from_numpy(x.transpose(0, 1, 4, 2, 3).copy())
  with torch.no_grad():
    if isinstance(hf_model, transformers.VideoMAEForPreTraining):
      ours = ours.clone(mask_ratio=ratio)
      mask = np.array(vm.tube_mask(jax.random.key(seed), 2, frames, size, patch, 2, ratio))
      theirs = hf_model(xt, bool_masked_pos=torch.from_numpy(mask)).logits.numpy()
      got = np.asarray(ours.apply(variables, x, mask))
    else:
      theirs = hf_model(xt).logits.numpy()
      got = np.asarray(ours.apply(variables, x))
  assert got.shape == theirs.shape
  return float(np.abs(got - theirs).max() / np.abs(theirs).max())


def _save(model, path, fmt):
  if fmt == "safetensors":
    model.save_pretrained(path)
  elif fmt == "bin":
    # transformers >= 5 writes safetensors even with safe_serialization=False; a
    # pytorch_model.bin is what older releases and many hub repositories have.
    model.save_pretrained(path)
    (path / "model.safetensors").unlink()
    torch.save(model.state_dict(), path / "pytorch_model.bin")
  return str(path)


@pytest.mark.parametrize("pretrain,mean_pooling,fmt", [
    (True, False, "safetensors"), (True, False, "bin"),
    (False, True, "safetensors"), (False, True, "bin"), (False, False, "safetensors"),
])
def test_port_matches_transformers(tmp_path, pretrain, mean_pooling, fmt):
  model = _hf_model(pretrain, mean_pooling=mean_pooling)
  state = common.load_weights(_save(model, tmp_path / "hf", fmt))
  if fmt == "safetensors":  # saved files use the q_bias / v_bias names
    assert any(k.endswith("attention.attention.q_bias") for k in state)
  name = "videomae_s_pretrain" if pretrain else "videomae_s"
  kw = TINY_PT if pretrain else TINY
  variables, num_classes = hf.convert(state, name, None, **kw)
  assert num_classes == (0 if pretrain else 7)
  ours = models.create(name, num_classes=num_classes, **kw)
  if not pretrain and not mean_pooling:
    ours = ours.clone(use_mean_pooling=False)
  for ratio in (0.5, 0.75):
    assert compare(model, variables, ours, ratio=ratio) <= 1e-4
  report = hf.verify(state, variables, name, num_classes, **kw)
  assert report.ok, report.summary()
  assert [l.name for l in report.layers][:2] == ["blocks_0", "blocks_1"]


def test_in_memory_names_and_pretrain_encoder_into_classifier():
  # transformers >= 5 names the biases query.bias / value.bias in memory
  model = _hf_model(True)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  assert "videomae.encoder.layer.0.attention.attention.query.bias" in state
  variables, _ = hf.convert(state, "videomae_s_pretrain", None, **TINY_PT)
  ours = models.create("videomae_s_pretrain", **TINY_PT)
  assert compare(model, variables, ours) <= 1e-4
  np.testing.assert_array_equal(
      variables["params"]["blocks_1"]["attn"]["q_bias"],
      state["videomae.encoder.layer.1.attention.attention.query.bias"])


def test_mismatched_files_are_reported(tmp_path):
  model = _hf_model(False)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  del state["fc_norm.bias"]
  state["videomae.encoder.layer.0.extra.weight"] = np.zeros(3, np.float32)
  state["classifier.weight"] = state["classifier.weight"][:, :10]
  with pytest.raises(common.WeightMismatchError) as e:
    hf.convert(state, "videomae_s", None, **TINY)
  msg = str(e.value)
  assert "missing keys (1)" in msg and "fc_norm.bias" in msg
  assert "unexpected keys (1)" in msg and "extra.weight" in msg
  assert "mis-shaped keys (1)" in msg and "head.weight" in msg
  with pytest.raises(common.WeightMismatchError, match="not a Hugging Face VideoMAE"):
    hf.convert({"conv.weight": np.zeros(3)}, "videomae_s", None)
  # a pretraining model without videomae.layernorm (use_mean_pooling=True)
  torch.manual_seed(0)
  bare = transformers.VideoMAEForPreTraining(_config(True, use_mean_pooling=True))
  with pytest.raises(common.WeightMismatchError, match="use_mean_pooling"):
    hf.convert({k: v.numpy() for k, v in bare.state_dict().items()},
               "videomae_s_pretrain", None, **TINY_PT)


def test_model_and_class_mismatch_errors():
  state = {k: v.numpy() for k, v in _hf_model(False).state_dict().items()}
  with pytest.raises(ValueError, match="num-classes 5"):
    hf.convert(state, "videomae_s", 5, **TINY)
  with pytest.raises(ValueError, match="use --model videomae_s_pretrain"):
    hf.convert({k: v.numpy() for k, v in _hf_model(True).state_dict().items()},
               "videomae_s", None, **TINY)
  with pytest.raises(ValueError, match="embed_dim: checkpoint 64, videomae_b 768"):
    hf.convert(state, "videomae_b", None)


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "time_jax.port", *args],
                        capture_output=True, text=True, timeout=600)


def test_cli_s_pretrain(tmp_path):
  """The real command on a full-width ViT-S pretraining model (small clips)."""
  cfg = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
             intermediate_size=1536, decoder_hidden_size=192,
             decoder_num_attention_heads=3, decoder_intermediate_size=768,
             decoder_num_hidden_layers=4, patch_size=16)
  model = _hf_model(True, **cfg)
  path = _save(model, tmp_path / "hf", "safetensors")
  r = _cli("--from", "hf", "--checkpoint", path, "--model", "videomae_s_pretrain",
           "--out", str(tmp_path / "out"), "--verify")
  assert r.returncode == 0, r.stderr
  assert "verify: ok:" in r.stdout and "wrote" in r.stdout
  variables, meta = common.restore(str(tmp_path / "out"))
  assert meta["model"] == "videomae_s_pretrain" and meta["source"] == "hf"
  ours = models.create("videomae_s_pretrain")
  assert compare(model, variables, ours, patch=16) <= 1e-4
  r = _cli("--from", "hf", "--checkpoint", path, "--model", "videomae_b_pretrain",
           "--out", str(tmp_path / "bad"))
  assert r.returncode == 2
  assert "VideoMAE-S" in r.stderr and "embed_dim: checkpoint 384" in r.stderr
