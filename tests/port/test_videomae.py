"""Official VideoMAE layout -> time_jax: random transformers models renamed to the
official keys by a literal table written here, saved as .pth, ported, compared."""

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
from time_jax.port import videomae as official

TINY = dict(embed_dim=64, depth=2, num_heads=4, patch_size=8)
TINY_PT = dict(TINY, decoder_embed_dim=32, decoder_num_heads=2, decoder_depth=2)

# HF suffix within a layer -> official suffix within a block (modeling_finetune.Block).
_LAYER = {
    "layernorm_before.weight": "norm1.weight",
    "layernorm_before.bias": "norm1.bias",
    "attention.attention.q_bias": "attn.q_bias",
    "attention.attention.v_bias": "attn.v_bias",
    "attention.output.dense.weight": "attn.proj.weight",
    "attention.output.dense.bias": "attn.proj.bias",
    "layernorm_after.weight": "norm2.weight",
    "layernorm_after.bias": "norm2.bias",
    "intermediate.dense.weight": "mlp.fc1.weight",
    "intermediate.dense.bias": "mlp.fc1.bias",
    "output.dense.weight": "mlp.fc2.weight",
    "output.dense.bias": "mlp.fc2.bias",
}


def hf_to_official(hf_state, pretrain, depth, decoder_depth=0):
  """Literal renaming: HF VideoMAE state dict (as saved) -> official state dict."""
  s = {k.replace("attention.attention.query.bias", "attention.attention.q_bias")
        .replace("attention.attention.value.bias", "attention.attention.v_bias"): v
       for k, v in hf_state.items()}
  e = "encoder." if pretrain else ""
  out = {
      f"{e}patch_embed.proj.weight": s.pop("videomae.embeddings.patch_embeddings.projection.weight"),
      f"{e}patch_embed.proj.bias": s.pop("videomae.embeddings.patch_embeddings.projection.bias"),
  }
  stacks = [("videomae.encoder.layer", f"{e}blocks", depth),
            ("decoder.decoder_layers", "decoder.blocks", decoder_depth)]
  for hf_pre, off_pre, n in stacks:
    for i in range(n):
      a = f"{hf_pre}.{i}."
      out[f"{off_pre}.{i}.attn.qkv.weight"] = torch.cat([
          s.pop(a + "attention.attention.query.weight"),
          s.pop(a + "attention.attention.key.weight"),
          s.pop(a + "attention.attention.value.weight")], dim=0)
      for hf_name, off_name in _LAYER.items():
        out[f"{off_pre}.{i}.{off_name}"] = s.pop(a + hf_name)
  if "videomae.layernorm.weight" in s:
    out[f"{e}norm.weight"] = s.pop("videomae.layernorm.weight")
    out[f"{e}norm.bias"] = s.pop("videomae.layernorm.bias")
  if "classifier.weight" in s:
    out["head.weight"] = s.pop("classifier.weight")
    out["head.bias"] = s.pop("classifier.bias")
  for same in ("fc_norm.weight", "fc_norm.bias", "encoder_to_decoder.weight", "mask_token",
               "decoder.norm.weight", "decoder.norm.bias", "decoder.head.weight",
               "decoder.head.bias"):
    if same in s:
      out[same] = s.pop(same)
  assert not s, f"unrenamed HF keys: {sorted(s)}"
  return out


def _hf_model(pretrain, seed=0, mean_pooling=True, **kw):
  base = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=64,
              num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
              layer_norm_eps=1e-6, num_labels=5, decoder_hidden_size=32,
              decoder_num_hidden_layers=2, decoder_num_attention_heads=2,
              decoder_intermediate_size=128,
              use_mean_pooling=mean_pooling and not pretrain)
  base.update(kw)
  torch.manual_seed(seed)
  cls = (transformers.VideoMAEForPreTraining if pretrain
         else transformers.VideoMAEForVideoClassification)
  model = cls(transformers.VideoMAEConfig(**base)).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model


def _official_file(model, pretrain, path):
  cfg = model.config
  state = hf_to_official(model.state_dict(), pretrain, cfg.num_hidden_layers,
                         cfg.decoder_num_hidden_layers if pretrain else 0)
  # As run_mae_pretraining / run_class_finetuning save: {'model': ..., 'epoch': ...}
  torch.save({"model": state, "epoch": 799}, path)
  return str(path)


def compare(hf_model, variables, ours, *, size=32, patch=8, ratio=0.5, seed=0):
  x = np.random.default_rng(seed).standard_normal((2, 4, size, size, 3)).astype(np.float32)
  xt = torch.from_numpy(x.transpose(0, 1, 4, 2, 3).copy())
  with torch.no_grad():
    if isinstance(hf_model, transformers.VideoMAEForPreTraining):
      ours = ours.clone(mask_ratio=ratio)
      mask = np.array(vm.tube_mask(jax.random.key(seed), 2, 4, size, patch, 2, ratio))
      theirs = hf_model(xt, bool_masked_pos=torch.from_numpy(mask)).logits.numpy()
      got = np.asarray(ours.apply(variables, x, mask))
    else:
      theirs = hf_model(xt).logits.numpy()
      got = np.asarray(ours.apply(variables, x))
  assert got.shape == theirs.shape
  return float(np.abs(got - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize("pretrain,mean_pooling", [(True, False), (False, True),
                                                   (False, False)])
def test_official_port_matches_transformers(tmp_path, pretrain, mean_pooling):
  model = _hf_model(pretrain, mean_pooling=mean_pooling)
  state = common.load_weights(_official_file(model, pretrain, tmp_path / "ckpt.pth"))
  if pretrain:
    assert "encoder.blocks.1.attn.qkv.weight" in state and "decoder.head.weight" in state
  name = "videomae_s_pretrain" if pretrain else "videomae_s"
  kw = TINY_PT if pretrain else TINY
  variables, num_classes = official.convert(state, name, None, **kw)
  assert num_classes == (0 if pretrain else 5)
  ours = models.create(name, num_classes=num_classes, **kw)
  if not pretrain:
    ours = ours.clone(use_mean_pooling=mean_pooling)
  for ratio in (0.5, 0.75):
    assert compare(model, variables, ours, ratio=ratio) <= 1e-4
  report = official.verify(state, variables, name, num_classes, **kw)
  assert report.ok, report.summary()
  want = ["blocks_0", "blocks_1"] + (["decoder/blocks_0", "decoder/blocks_1"] if pretrain
                                     else ["pre_logits"]) + ["output"]
  assert [l.name for l in report.layers] == want
  # official -> HF renaming used by verify inverts our literal table
  back = official.to_hf(state)
  theirs = {k: v.numpy() for k, v in model.state_dict().items()}
  assert sorted(back) == sorted(theirs)
  for k in theirs:
    np.testing.assert_array_equal(back[k], theirs[k])


def test_layer_scale_checkpoint(tmp_path):
  """gamma_1/gamma_2 (init_values > 0) are read; transformers cannot verify them."""
  model = _hf_model(False)
  state = {k: v.numpy() for k, v in hf_to_official(
      model.state_dict(), False, 2).items()}
  plain, _ = official.convert(state, "videomae_s", None, **TINY)
  ones = {f"blocks.{i}.gamma_{j}": np.ones(64, np.float32) for i in range(2) for j in (1, 2)}
  scaled, _ = official.convert({**state, **ones}, "videomae_s", None, **TINY)
  x = np.random.default_rng(0).standard_normal((1, 4, 32, 32, 3)).astype(np.float32)
  ours = models.create("videomae_s", num_classes=5, **TINY)
  # gamma = 1 is the identity: the same logits as without layer scale
  np.testing.assert_allclose(ours.clone(init_values=0.1).apply(scaled, x),
                             ours.apply(plain, x), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="layer scale"):
    official.verify({**state, **ones}, scaled, "videomae_s", 5, **TINY)


def test_mismatches_are_reported():
  model = _hf_model(True)
  state = {k: v.numpy() for k, v in hf_to_official(model.state_dict(), True, 2, 2).items()}
  bad = dict(state)
  del bad["decoder.blocks.1.attn.v_bias"]
  bad["encoder.pos_embed"] = np.zeros((1, 8, 64), np.float32)
  with pytest.raises(common.WeightMismatchError) as e:
    official.convert(bad, "videomae_s_pretrain", None, **TINY_PT)
  assert "missing keys (1)" in str(e.value) and "decoder.blocks.1.attn.v_bias" in str(e.value)
  assert "unexpected keys (1)" in str(e.value) and "encoder.pos_embed" in str(e.value)
  with pytest.raises(ValueError, match="use --model videomae_s_pretrain"):
    official.convert(state, "videomae_s", None, **TINY)
  with pytest.raises(ValueError, match="no classes"):
    official.convert(state, "videomae_s_pretrain", 400, **TINY_PT)
  with pytest.raises(ValueError, match="decoder_depth: checkpoint 2"):
    official.convert(state, "videomae_s_pretrain", None, **TINY)
  with pytest.raises(common.WeightMismatchError, match="--from hf"):
    official.convert({k: v.numpy() for k, v in model.state_dict().items()},
                     "videomae_s_pretrain", None)


def test_cli_s_classifier(tmp_path):
  """The real command on a full-width ViT-S fine-tuned .pth (small clips)."""
  model = _hf_model(False, patch_size=16, hidden_size=384, num_hidden_layers=12,
                    num_attention_heads=6, intermediate_size=1536, num_labels=400)
  path = _official_file(model, False, tmp_path / "vit_s_k400.pth")
  r = subprocess.run([sys.executable, "-m", "time_jax.port", "--from", "videomae",
                      "--checkpoint", path, "--model", "videomae_s", "--out",
                      str(tmp_path / "out"), "--verify"],
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr
  assert "wrote" in r.stdout and "400 classes" in r.stdout and "verify: ok:" in r.stdout
  variables, meta = common.restore(str(tmp_path / "out"))
  assert meta["num_classes"] == 400
  ours = models.create("videomae_s", num_classes=400)
  assert compare(model, variables, ours, patch=16) <= 1e-4


@pytest.mark.parametrize("block", [0, 1])
def test_verify_catches_a_one_percent_q_bias_change_in_a_pretrainer(block):
  """The output-only check (max relative difference <= 1e-4) passed this; the
  element-wise per-layer comparison names the block."""
  model = _hf_model(True)
  state = {k: v.numpy() for k, v in hf_to_official(model.state_dict(), True, 2, 2).items()}
  variables, _ = official.convert(state, "videomae_s_pretrain", None, **TINY_PT)
  assert official.verify(state, variables, "videomae_s_pretrain", 0, **TINY_PT).ok
  bad = jax.tree.map(np.copy, variables)
  bad["params"][f"blocks_{block}"]["attn"]["q_bias"] *= 1.01
  report = official.verify(state, bad, "videomae_s_pretrain", 0, **TINY_PT)
  assert not report.ok
  assert report.first_failure.name == f"blocks_{block}"
  assert report.max_relative < 1e-4  # what --verify used to compare, and accept
  assert "FAILED" in report.summary() and f"blocks_{block}" in report.summary()
