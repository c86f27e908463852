"""Tests of the VideoMAE model: masking, position table, targets, shapes, behaviour.

References are literal readings of the official code (MCG-NJU/VideoMAE) in numpy, and
transformers' VideoMAE on the ``meta`` device for parameter counts.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from time_jax import models
from time_jax.models import videomae as vm
from time_jax.time_layer import IMAGENET_MEAN, IMAGENET_STD

TINY = dict(embed_dim=32, depth=2, num_heads=4, patch_size=8)
TINY_PT = dict(TINY, decoder_embed_dim=16, decoder_num_heads=2, decoder_depth=2)


# ----------------------------------------------------------------------------- masking

@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9, 0.95, 0.98])
def test_tube_mask_count_and_tubes(ratio):
  batch, frames, size, patch, tubelet = 6, 16, 224, 16, 2
  mask = np.asarray(vm.tube_mask(jax.random.key(1), batch, frames, size, patch,
                                 tubelet, ratio))
  t, p = frames // tubelet, (size // patch) ** 2
  assert mask.shape == (batch, t * p) and mask.dtype == bool
  per_slice = round(ratio * p)
  grid = mask.reshape(batch, t, p)
  # the same spatial mask at every temporal position: tubes through time
  assert (grid == grid[:, :1]).all()
  assert (grid.sum(-1) == per_slice).all()
  assert (mask.sum(-1) == t * per_slice).all()
  # clips of one batch differ
  assert len({row.tobytes() for row in grid[:, 0]}) == batch


def test_tube_mask_keys_and_jit():
  f = jax.jit(vm.tube_mask, static_argnums=(1, 2, 3, 4, 5, 6))
  a = np.asarray(f(jax.random.key(0), 2, 4, 32, 8, 2, 0.5))
  b = np.asarray(f(jax.random.key(1), 2, 4, 32, 8, 2, 0.5))
  c = np.asarray(vm.tube_mask(jax.random.key(0), 2, 4, 32, 8, 2, 0.5))
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(a, c)


def test_tube_mask_is_uniform():
  # every spatial position is masked with probability ratio
  mask = np.asarray(vm.tube_mask(jax.random.key(3), 4000, 2, 32, 8, 2, 0.75))
  freq = mask.mean(0)
  assert np.abs(freq - 0.75).max() < 0.04


def test_bad_mask_ratios():
  for ratio in (0.0, 1.0, 0.99):  # 0.99 of 16 patches masks all of them
    with pytest.raises(ValueError, match="mask ratio"):
      vm.tube_mask(jax.random.key(0), 1, 4, 32, 8, 2, ratio)
  with pytest.raises(ValueError, match="tubelet_size"):
    vm.tube_mask(jax.random.key(0), 1, 5, 32, 8, 2, 0.5)


# ----------------------------------------------------------------------- position table

def _official_sinusoid(n_position, d_hid):
  # modeling_finetune.get_sinusoid_encoding_table, verbatim apart from torch.
  def get_position_angle_vec(position):
    return [position / np.power(10000, 2 * (hid_j // 2) / d_hid) for hid_j in range(d_hid)]
  sinusoid_table = np.array([get_position_angle_vec(pos_i) for pos_i in range(n_position)])
  sinusoid_table[:, 0::2] = np.sin(sinusoid_table[:, 0::2])
  sinusoid_table[:, 1::2] = np.cos(sinusoid_table[:, 1::2])
  return sinusoid_table.astype(np.float32)


@pytest.mark.parametrize("n,d", [(1568, 768), (8, 64), (98, 384)])
def test_sinusoid_table_matches_official(n, d):
  np.testing.assert_array_equal(vm.sinusoid_table(n, d), _official_sinusoid(n, d))


# ------------------------------------------------------------------------------ targets

def _official_targets(x, mask, patch, tubelet, norm_pix_loss):
  """run_mae_pretraining engine, read literally: x [b, c, t, h, w] normalised."""
  mean = np.asarray(IMAGENET_MEAN, np.float64)[None, :, None, None, None]
  std = np.asarray(IMAGENET_STD, np.float64)[None, :, None, None, None]
  unnorm = x.astype(np.float64) * std + mean
  b, c, t, h, w = unnorm.shape
  # rearrange(unnorm, 'b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c')
  v = unnorm.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
  v = v.transpose(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, -1, tubelet * patch * patch, c)
  if norm_pix_loss:
    v = (v - v.mean(axis=-2, keepdims=True)) / (
        np.sqrt(v.var(axis=-2, ddof=1, keepdims=True)) + 1e-6)
  v = v.reshape(b, v.shape[1], -1)  # 'b n p c -> b n (p c)'
  return v[mask].reshape(b, -1, v.shape[-1])  # labels = videos_patch[bool_masked_pos]


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_targets_match_official_reading(norm_pix_loss):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 4, 32, 24, 3)).astype(np.float32)  # non-square frames
  mask = np.zeros((2, 2 * 4 * 3), bool)
  for i in range(2):
    mask[i, rng.choice(mask.shape[1], 10, replace=False)] = True
  got = vm.pretrain_targets(jnp.asarray(x), mask, patch_size=8, tubelet_size=2,
                            norm_pix_loss=norm_pix_loss)
  want = _official_targets(x.transpose(0, 4, 1, 2, 3), mask, 8, 2, norm_pix_loss)
  assert got.shape == want.shape == (2, 10, 2 * 8 * 8 * 3)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_loss_is_mse_of_masked_targets():
  model = vm.videomae_s_pretrain(mask_ratio=0.5, **TINY_PT)
  x = jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))
  mask = vm.tube_mask(jax.random.key(1), 2, 4, 32, 8, 2, 0.5)
  v = model.init(jax.random.key(2), x, mask)
  pred = model.apply(v, x, mask)
  want = np.mean((np.asarray(pred) - np.asarray(
      vm.pretrain_targets(x, mask, patch_size=8))) ** 2)
  got = vm.pretrain_loss(pred, x, mask, patch_size=8)
  np.testing.assert_allclose(float(got), want, rtol=1e-6)
  # jitted with a traced mask gives the same
  f = jax.jit(lambda p, x, m: vm.pretrain_loss(model.apply(p, x, m), x, m, patch_size=8))
  np.testing.assert_allclose(float(f(v, x, mask)), want, rtol=1e-5)


def _patch_grid(frames, patch, tubelet):
  """``[b, t, h, w, c]`` -> ``[b, t/tubelet, h/patch, w/patch, tubelet, patch, patch, c]``."""
  b, t, h, w, c = frames.shape
  v = frames.reshape(b, t // tubelet, tubelet, h // patch, patch, w // patch, patch, c)
  return v.transpose(0, 1, 3, 5, 2, 4, 6, 7)


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_reconstruct_loss_per_clip_and_images(norm_pix_loss):
  model = vm.videomae_s_pretrain(mask_ratio=0.5, **TINY_PT)
  x = 1.5 * jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))  # some pixels clip
  mask = vm.tube_mask(jax.random.key(1), 2, 4, 32, 8, 2, 0.5)
  pred = model.apply(model.init(jax.random.key(2), x, mask), x, mask)
  kw = dict(patch_size=8, tubelet_size=2, norm_pix_loss=norm_pix_loss)
  loss, original, masked, recon = vm.reconstruct(pred, x, mask, **kw)
  assert loss.shape == (2,) and original.shape == masked.shape == recon.shape == x.shape
  for i in range(2):
    np.testing.assert_allclose(
        loss[i], vm.pretrain_loss(pred[i:i + 1], x[i:i + 1], mask[i:i + 1], **kw), rtol=1e-6)
  frames = np.clip(np.asarray(x) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN), 0, 1)
  np.testing.assert_allclose(original, frames, atol=1e-6)
  # Token order (t, h, w): masked patches grey in `masked`, visible ones the input in both.
  tokens = mask.reshape(2, 2, 4, 4)[..., None, None, None, None]
  grid, src = _patch_grid(np.asarray(masked), 8, 2), _patch_grid(frames, 8, 2)
  rec = _patch_grid(np.asarray(recon), 8, 2)
  np.testing.assert_array_equal(np.where(tokens, grid, 0.5), 0.5)
  np.testing.assert_allclose(np.where(tokens, 0, grid), np.where(tokens, 0, src), atol=1e-6)
  np.testing.assert_allclose(np.where(tokens, 0, rec), np.where(tokens, 0, src), atol=1e-6)
  # Masked patches: the predictions in increasing token order, un-normalised with the
  # (clipped) input patch's mean and unbiased std per channel under norm_pix_loss.
  src = src.reshape(2, 32, 128, 3)
  want = np.asarray(pred, np.float64).reshape(2, -1, 128, 3)
  for i in range(2):
    idx = np.flatnonzero(np.asarray(mask[i]))
    if norm_pix_loss:
      p = src[i, idx]
      want[i] = want[i] * (p.std(1, ddof=1, keepdims=True) + 1e-6) + p.mean(1, keepdims=True)
    got = rec.reshape(2, 32, 128, 3)[i, idx]
    np.testing.assert_allclose(got, np.clip(want[i], 0, 1), atol=1e-5)


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_reconstruct_from_the_targets_is_the_input(norm_pix_loss):
  # Frames inside [0, 1] (nothing clipped): predicting the targets reconstructs the clip.
  frames = jax.random.uniform(jax.random.key(0), (2, 4, 16, 16, 3))
  x = (frames - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
  mask = vm.tube_mask(jax.random.key(1), 2, 4, 16, 8, 2, 0.75)
  kw = dict(patch_size=8, tubelet_size=2, norm_pix_loss=norm_pix_loss)
  target = vm.pretrain_targets(x, mask, **kw)
  loss, original, _, recon = vm.reconstruct(target, x, mask, **kw)
  np.testing.assert_allclose(loss, 0, atol=1e-12)
  np.testing.assert_allclose(original, frames, atol=1e-6)
  np.testing.assert_allclose(recon, frames, atol=1e-5)


# ------------------------------------------------------------------------------- shapes

def _count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _hf_count(pretrain, size):
  import torch
  import transformers
  embed, depth, heads, dec, dec_heads = vm.SIZES[size]
  cfg = transformers.VideoMAEConfig(
      hidden_size=embed, num_hidden_layers=depth, num_attention_heads=heads,
      intermediate_size=4 * embed, decoder_hidden_size=dec,
      decoder_num_attention_heads=dec_heads, decoder_intermediate_size=4 * dec,
      decoder_num_hidden_layers=4, use_mean_pooling=not pretrain, num_labels=400)
  cls = (transformers.VideoMAEForPreTraining if pretrain
         else transformers.VideoMAEForVideoClassification)
  with torch.device("meta"):
    return sum(p.numel() for p in cls(cfg).parameters())


@pytest.mark.parametrize("size", ["s", "b", "l"])
def test_official_sizes_shapes(size):
  x = jax.ShapeDtypeStruct((2, 16, 224, 224, 3), jnp.float32)
  clf = models.create(f"videomae_{size}", num_classes=400)
  v = nn.unbox(jax.eval_shape(clf.init, jax.random.key(0), x))
  out = jax.eval_shape(clf.apply, v, x)
  assert out.shape == (2, 400)
  assert _count(v) == _hf_count(False, size)
  pt = models.create(f"videomae_{size}_pretrain")
  mask = jax.ShapeDtypeStruct((2, 1568), jnp.bool_)
  v = nn.unbox(jax.eval_shape(pt.init, jax.random.key(0), x, mask))
  out = jax.eval_shape(pt.apply, v, x, mask)
  assert out.shape == (2, 8 * round(0.9 * 196), 1536)
  assert _count(v) == _hf_count(True, size)
  assert v["params"]["decoder"]["norm"]["scale"].shape == (vm.SIZES[size][3],)
  assert len([k for k in v["params"]["decoder"] if k.startswith("blocks_")]) == 4


# ---------------------------------------------------------------------------- behaviour

def test_encoder_sees_only_visible_tokens():
  model = vm.videomae_b_pretrain(mask_ratio=0.75, **TINY_PT)
  x = np.asarray(jax.random.normal(jax.random.key(0), (1, 4, 32, 32, 3)))
  mask = np.asarray(vm.tube_mask(jax.random.key(1), 1, 4, 32, 8, 2, 0.75))
  v = model.init(jax.random.key(2), x, mask)
  pred = model.apply(v, x, mask)
  # overwrite the pixels of every masked token: the reconstruction must not change
  grid = mask.reshape(2, 4, 4)
  y = x.copy()
  for t, i, j in zip(*np.nonzero(grid)):
    y[0, 2 * t:2 * t + 2, 8 * i:8 * i + 8, 8 * j:8 * j + 8] = 7.0
  np.testing.assert_array_equal(np.asarray(model.apply(v, y, mask)), pred)
  # ... and changing a visible token does change it
  t, i, j = [a[0] for a in np.nonzero(~grid)]
  y[0, 2 * t, 8 * i, 8 * j] += 1.0
  assert not np.allclose(np.asarray(model.apply(v, y, mask)), pred)


def test_mask_with_wrong_count_is_an_error():
  model = vm.videomae_b_pretrain(mask_ratio=0.75, **TINY_PT)
  x = jnp.zeros((1, 4, 32, 32, 3))
  mask = vm.tube_mask(jax.random.key(1), 1, 4, 32, 8, 2, 0.5)
  with pytest.raises(ValueError, match="masked tokens per clip"):
    model.init(jax.random.key(2), x, mask)


def test_dtype_intermediates_and_axes():
  model = vm.videomae_b(num_classes=5, dtype=jnp.bfloat16, **TINY)
  x = jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))
  v = model.init(jax.random.key(1), x)
  params = nn.unbox(v)["params"]
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
  logits, state = model.apply(v, x, mutable=["intermediates"])
  assert logits.dtype == jnp.bfloat16 and logits.shape == (2, 5)
  inter = state["intermediates"]
  assert inter["blocks_1"]["attn"]["attention_weights"][0].shape == (2, 4, 32, 32)
  assert inter["blocks_0"]["features"][0].shape == (2, 32, 32)
  assert inter["pre_logits"][0].shape == (2, 32)
  specs = nn.get_partition_spec(v)["params"]
  assert tuple(specs["blocks_0"]["mlp"]["fc1"]["kernel"]) == ("embed", "mlp")
  assert tuple(specs["head"]["kernel"]) == ("embed", "classes")
  assert tuple(specs["blocks_0"]["attn"]["qkv"]["kernel"]) == ("embed", "heads")


def test_train_mode_randomness_and_init_scale():
  model = vm.videomae_b(num_classes=5, drop_path_rate=0.5, dropout_rate=0.5,
                        init_scale=1.0, **TINY)
  x = jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))
  v = model.init(jax.random.key(1), x)
  ev = model.apply(v, x, train=False)
  def run(k):
    return model.apply(v, x, train=True, rngs={"dropout": k, "drop_path": k})
  assert not np.allclose(run(jax.random.key(2)), ev)
  assert not np.allclose(run(jax.random.key(2)), run(jax.random.key(3)))
  np.testing.assert_array_equal(run(jax.random.key(2)), run(jax.random.key(2)))
  small = vm.videomae_b(num_classes=5, **TINY).init(jax.random.key(1), x)
  ratio = (np.abs(nn.unbox(small)["params"]["head"]["kernel"]).mean()
           / np.abs(nn.unbox(v)["params"]["head"]["kernel"]).mean())
  np.testing.assert_allclose(ratio, 0.001, rtol=1e-3)  # the default init_scale


def test_layer_scale_and_pooling_options():
  x = jax.random.normal(jax.random.key(0), (1, 4, 32, 32, 3))
  v = vm.videomae_b(num_classes=3, init_values=0.1, use_mean_pooling=False,
                    **TINY).init(jax.random.key(1), x)
  p = nn.unbox(v)["params"]
  np.testing.assert_allclose(p["blocks_0"]["gamma_1"], 0.1)
  assert "norm" in p and "fc_norm" not in p
  assert "gamma_1" not in nn.unbox(vm.videomae_b(
      num_classes=3, **TINY).init(jax.random.key(1), x))["params"]["blocks_0"]


def test_constructor_errors():
  with pytest.raises(ValueError, match="tubelet_size"):
    models.create("videomae_b", num_frames=15)
  with pytest.raises(ValueError, match="num_classes"):
    models.create("videomae_b_pretrain", num_classes=400)
