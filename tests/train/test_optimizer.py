"""Optimizer: lr scaling and schedule, layer-wise decay, weight-decay mask."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from time_jax import config as config_lib
from time_jax.models import videomae
from time_jax.train import optimizer as optimizer_lib


def _params():
  model = videomae.videomae_s_pretrain(image_size=16, num_frames=2, patch_size=8,
                                       embed_dim=16, depth=3, num_heads=2,
                                       decoder_embed_dim=8, decoder_depth=1,
                                       decoder_num_heads=2, mask_ratio=0.5)
  x = jnp.zeros((1, 2, 16, 16, 3))
  mask = videomae.tube_mask(jax.random.PRNGKey(0), 1, 2, 16, 8, 2, 0.5)
  return jax.tree.map(np.asarray, nn.unbox(model.init(jax.random.PRNGKey(0), x, mask)["params"]))


def test_peak_lr_follows_the_videomae_rule():
  c = config_lib.base_config()
  c.optimizer.base_lr, c.optimizer.lr_batch_divisor, c.input.batch_size = 1e-3, 256, 64
  assert optimizer_lib.peak_lr(c) == 1e-3 * 64 / 256
  c.optimizer.lr_batch_divisor = 0
  assert optimizer_lib.peak_lr(c) == 1e-3


def test_schedule_warms_up_linearly_then_cosine_to_min_lr():
  c = config_lib.base_config()
  c.optimizer.update(base_lr=1.0, lr_batch_divisor=0, warmup_epochs=2.0, min_lr=0.1)
  s = optimizer_lib.schedule(c, steps_per_epoch=5, total_steps=30)
  np.testing.assert_allclose([s(0), s(5), s(10)], [0.0, 0.5, 1.0], rtol=1e-6)
  # half-way through the cosine part: min + (peak - min) / 2
  np.testing.assert_allclose(s(20), 0.1 + 0.45, rtol=1e-5)
  np.testing.assert_allclose(s(30), 0.1, rtol=1e-5)


def test_decay_mask_skips_biases_norms_and_tokens():
  mask = optimizer_lib.decay_mask(_params())
  assert mask["blocks_0"]["mlp"]["fc1"]["kernel"]
  assert not mask["blocks_0"]["mlp"]["fc1"]["bias"]
  assert not mask["blocks_0"]["norm1"]["scale"]
  assert not mask["mask_token"]
  assert mask["patch_embed"]["kernel"]


def test_layer_decay_scales_each_block_update():
  params = _params()
  c = config_lib.base_config()
  c.optimizer.update(base_lr=1e-2, lr_batch_divisor=0, warmup_steps=0, warmup_epochs=0,
                     min_lr=1e-2, weight_decay=0.0, layer_decay=0.5, clip_norm=0.0,
                     eps=1e-12)
  tx = optimizer_lib.create(c, params, 1, 10)
  grads = jax.tree.map(np.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first update is lr·sign(g); layer i of depth 3 is scaled 0.5^(4 - i).
  def mag(x):
    return float(np.abs(np.asarray(x)).max())
  np.testing.assert_allclose(mag(updates["patch_embed"]["kernel"]), 1e-2 * 0.5 ** 4, rtol=1e-4)
  for i in range(3):
    np.testing.assert_allclose(mag(updates[f"blocks_{i}"]["mlp"]["fc1"]["kernel"]),
                               1e-2 * 0.5 ** (3 - i), rtol=1e-4)
  np.testing.assert_allclose(mag(updates["decoder"]["head"]["kernel"]), 1e-2, rtol=1e-4)


def test_weight_decay_is_decoupled_and_masked():
  params = _params()
  c = config_lib.base_config()
  c.optimizer.update(base_lr=1.0, lr_batch_divisor=0, warmup_steps=0, warmup_epochs=0,
                     min_lr=1.0, weight_decay=0.1, layer_decay=1.0, clip_norm=0.0)
  tx = optimizer_lib.create(c, params, 1, 10)
  zeros = jax.tree.map(np.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  k = params["blocks_0"]["mlp"]["fc1"]["kernel"]
  np.testing.assert_allclose(updates["blocks_0"]["mlp"]["fc1"]["kernel"], -0.1 * k, rtol=1e-5)
  assert not np.any(updates["blocks_0"]["mlp"]["fc1"]["bias"])
  assert not np.any(updates["mask_token"])
  assert optax.global_norm(updates) > 0
