"""The jitted steps: an 8-device mesh equals one device (parameters and their EMA);
accumulation equals one batch."""

import jax
import ml_collections
import numpy as np
import pytest

from time_jax import models
from time_jax.data import pipeline
from time_jax.train import optimizer as optimizer_lib
from time_jax.train import sharding
from time_jax.train import state as state_lib
from time_jax.train import steps as steps_lib
from time_jax.train import tasks


def _run(config, devices, batches, num_steps=3, history=None):
  """``(params, losses, state)`` after ``num_steps`` steps; ``history`` (a list) gets the
  host ``(params, ema_params)`` at the start and after every step."""
  mesh = sharding.make_mesh(config.mesh, devices)
  model = models.from_config(config, 2)
  task = tasks.for_config(config, model, 2)
  state, shardings, tx = state_lib.create(
      task.init_fn(), lambda p: optimizer_lib.create(config, p, 4, 10),
      jax.random.PRNGKey(0), mesh, ema=config.train.ema_decay > 0)
  step = steps_lib.jit_train_step(task.train_step(tx), shardings, mesh)
  losses = []
  for i in range(num_steps):
    if history is not None:
      history.append(jax.device_get((state.params, state.ema_params)))
    gb = steps_lib.global_batch(batches[i], mesh, keys=task.batch_keys)
    state, m = step(state, gb, jax.random.fold_in(jax.random.PRNGKey(1), i))
    losses.append(float(m["loss"]))
  if history is not None:
    history.append(jax.device_get((state.params, state.ema_params)))
  return jax.device_get(state.params), losses, state


def _batches(moving, config, n=3):
  ds, _ = pipeline.build(config, "train", splits=moving.splits(),
                         reader=moving.MovingSquareReader())
  it = iter(ds)
  return [next(it) for _ in range(n)]


def _assert_same(a, b, rtol=1e-5, atol=1e-6):
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0],
                          jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(y, x, rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("mode", ["finetune", "pretrain"])
def test_eight_device_mesh_matches_one_device(moving, mode):
  config = moving.tiny_config(mode)
  if mode == "finetune":
    # mixup/cutmix (two groups of 4 clips, each with its own draws) and drop path on:
    # randomness must not depend on the sharding
    config.train.mixup_alpha, config.train.cutmix_alpha = 0.8, 1.0
    config.train.mixup_group = 4
    config.model.kwargs.drop_path_rate = 0.1
  config.train.ema_decay = 0.5
  batches = _batches(moving, config)
  config.mesh = ml_collections.ConfigDict(dict(data=4, fsdp=2, model=1))
  p8, l8, state = _run(config, jax.devices()[:8], batches)
  # the state really is spread over the mesh, the EMA as its parameters
  kernel = state.params["blocks_0"]["mlp"]["fc1"]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "model")
  assert len(kernel.sharding.device_set) == 8
  for (path, p), e in zip(jax.tree_util.tree_flatten_with_path(state.params)[0],
                          jax.tree_util.tree_leaves(state.ema_params)):
    assert e.sharding == p.sharding, jax.tree_util.keystr(path)
  config.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=1, model=1))
  p1, l1, state1 = _run(config, jax.devices()[:1], batches)
  np.testing.assert_allclose(l8, l1, rtol=1e-5)
  _assert_same(p1, p8)
  _assert_same(jax.device_get(state1.ema_params), jax.device_get(state.ema_params))
  assert l1[0] != l1[-1]


def test_gradient_accumulation_matches_the_full_batch(moving):
  config = moving.tiny_config("finetune")
  batches = _batches(moving, config)
  config.mesh = ml_collections.ConfigDict(dict(data=2, fsdp=2, model=1))
  p1, l1, _ = _run(config, jax.devices()[:4], batches)
  config.optimizer.accum_steps = 2
  p2, l2, _ = _run(config, jax.devices()[:4], batches)
  np.testing.assert_allclose(l2, l1, rtol=1e-5)
  _assert_same(p1, p2)


def test_bfloat16_compute_keeps_float32_params_and_state(moving):
  config = moving.tiny_config("finetune")
  config.model.dtype = "bfloat16"
  batches = _batches(moving, config, 1)
  params, losses, state = _run(config, jax.devices()[:1], batches, num_steps=1)
  assert np.isfinite(losses[0])
  for leaf in jax.tree_util.tree_leaves((params, state.opt_state)):
    assert leaf.dtype in (np.float32, np.int32), leaf.dtype


@pytest.mark.parametrize("accum", [1, 2])
def test_ema_averages_the_params_after_every_optimizer_step(moving, accum):
  """timm's ModelEma as VideoMAE calls it: starts at the params, then after every
  optimizer step (not every micro-batch) ema = decay·ema + (1-decay)·params."""
  config = moving.tiny_config("finetune")
  config.train.ema_decay = decay = 0.6
  config.optimizer.accum_steps = accum
  batches = _batches(moving, config)
  history = []
  _run(config, jax.devices()[:1], batches, history=history)
  params0, ema0 = history[0]
  _assert_same(params0, ema0, rtol=0)
  want = jax.tree.map(np.asarray, params0)
  for params, ema in history[1:]:
    want = jax.tree.map(lambda e, p: np.float32(decay) * e + np.float32(1 - decay) * p,
                        want, params)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-9),
                 ema, want)
  gap = max(np.abs(e - p).max() for e, p in zip(jax.tree_util.tree_leaves(ema),
                                                jax.tree_util.tree_leaves(params)))
  assert gap > 1e-5  # the EMA lags the params: the comparison above can fail


def test_ema_off_keeps_no_ema_arrays_and_the_same_step(moving):
  config = moving.tiny_config("finetune")
  batches = _batches(moving, config)
  p_off, l_off, off = _run(config, jax.devices()[:1], batches)
  config.train.ema_decay = 0.9
  p_on, l_on, on = _run(config, jax.devices()[:1], batches)
  assert off.ema_params == {}
  assert (len(jax.tree_util.tree_leaves(off)) == len(jax.tree_util.tree_leaves(on))
          - len(jax.tree_util.tree_leaves(on.params)))
  # the EMA only watches: training is bit-identical with or without it
  assert l_off == l_on
  jax.tree.map(np.testing.assert_array_equal, p_off, p_on)


def test_mesh_shape_fills_minus_one_and_names_the_field():
  cfg = ml_collections.ConfigDict(dict(data=-1, fsdp=2, model=1))
  assert sharding.mesh_shape(cfg, 8) == (4, 2, 1)
  cfg.fsdp = 3
  with pytest.raises(ValueError, match="config.mesh"):
    sharding.mesh_shape(cfg, 8)


def test_resnet_batchnorm_statistics_span_the_global_batch(moving):
  """BatchNorm in training on an 8-device mesh: the statistics are those of the whole
  batch (synchronised), so parameters and running statistics equal one device's."""
  config = moving.tiny_config("finetune")
  config.model.name = "resnet50"
  config.model.kwargs = ml_collections.ConfigDict(dict(stages=(1,)))
  config.optimizer.layer_decay = 1.0
  batches = _batches(moving, config)
  config.mesh = ml_collections.ConfigDict(dict(data=8, fsdp=1, model=1))
  p8, l8, s8 = _run(config, jax.devices()[:8], batches)
  config.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=1, model=1))
  p1, l1, s1 = _run(config, jax.devices()[:1], batches)
  np.testing.assert_allclose(l8, l1, rtol=1e-5)
  # Adam divides each update by its gradient's running RMS, so a weight whose gradient
  # is nearly zero turns the float reduction-order noise of 8 devices into update noise
  # of a few 1e-6 (seen: 3.9e-6 on one of 2 M kernel weights). Unsynchronised
  # statistics would show in the losses and the batch statistics, compared tightly.
  _assert_same(p1, p8, rtol=1e-4, atol=1e-5)
  _assert_same(jax.device_get(s1.batch_stats), jax.device_get(s8.batch_stats), rtol=1e-4)
  # the statistics moved away from their initial values
  assert not np.allclose(jax.device_get(s1.batch_stats)["bn1"]["var"], 1.0)
