"""Pure train / eval steps: ``train_step(state, batch, rng) -> (state, metrics)``.

Each step takes the uint8 batch of the input pipeline and runs, on device, the TIME
arrangement and normalisation (`time_layer.preprocess`), then mixup/cutmix
(fine-tuning) or tube masking (pretraining), the forward and backward pass and the
optimizer update. With ``optimizer.accum_steps = a`` the batch is cut into ``a``
micro-batches whose gradients are averaged by a ``lax.scan`` (one optimizer update per
step, memory of one micro-batch). `jit_train_step` / `jit_eval_step` jit them once with
explicit shardings and the state donated.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding

from time_jax import models
from time_jax.models import ops
from time_jax import time_layer
from time_jax.models import videomae
from time_jax.train import augment
from time_jax.train import sharding
from time_jax.train.state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

def compute_dtype(config: ml_collections.ConfigDict):
  """The model's compute dtype, ``config.model.dtype``."""
  return models.COMPUTE_DTYPES[config.model.dtype]


def _stats(config) -> dict[str, tuple[float, ...]]:
  """The per-channel normalisation statistics, ``config.input.{mean, std}``."""
  return dict(mean=tuple(config.input.mean), std=tuple(config.input.std))


def _inputs(config, frames: jax.Array) -> jax.Array:
  """uint8 ``[b, t_out·n·n, h, w, 3]`` -> normalised ``[b, t_out, H, W, 3]``."""
  size = (config.image_size, config.image_size)
  return time_layer.preprocess(frames, n=config.time.n, arrangement=config.time.arrangement,
                               size=size, dtype=compute_dtype(config), **_stats(config))


def _micro_batches(tree: Any, accum: int) -> Any:
  """``[B, ...]`` -> ``[accum, B/accum, ...]``; each micro-batch keeps the batch sharding."""
  def split(x):
    x = x.reshape(x.shape[0] // accum, accum, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(split, tree)


def _accumulate(loss_and_aux: Callable, params, batch_stats, batch: Batch, rng: jax.Array,
                accum: int):
  """Mean gradients and metrics over ``accum`` micro-batches (a scan when > 1).

  ``loss_and_aux(params, batch_stats, micro_batch, rng) -> (loss, (batch_stats, metrics))``.
  """
  grad_fn = jax.value_and_grad(loss_and_aux, has_aux=True)
  if accum == 1:
    (_, (batch_stats, metrics)), grads = grad_fn(params, batch_stats, batch, rng)
    return grads, batch_stats, metrics

  def body(carry, xs):
    grads_sum, stats = carry
    micro, i = xs
    (_, (stats, metrics)), grads = grad_fn(params, stats, micro, jax.random.fold_in(rng, i))
    return (jax.tree.map(jnp.add, grads_sum, grads), stats), metrics

  zeros = jax.tree.map(jnp.zeros_like, params)
  (grads, batch_stats), metrics = jax.lax.scan(
      body, (zeros, batch_stats), (_micro_batches(batch, accum), jnp.arange(accum)))
  grads = jax.tree.map(lambda g: g / accum, grads)
  return grads, batch_stats, jax.tree.map(jnp.mean, metrics)


def _apply_update(state: TrainState, tx: optax.GradientTransformation, grads, batch_stats,
                  metrics: Metrics, ema_decay: float = 0.0) -> tuple[TrainState, Metrics]:
  """One optimizer update, then the parameters' EMA (``train.ema_decay`` > 0).

  The EMA is timm's ``ModelEma.update`` as VideoMAE's ``--model_ema`` calls it, once per
  optimizer step (after all micro-batches): ``ema = decay · ema + (1 - decay) ·
  params`` with the updated params and a constant decay (no warm-up). BatchNorm
  statistics are not averaged (timm's ModelEma also averages buffers).
  """
  if bool(ema_decay) != bool(state.ema_params):
    raise ValueError(
        f"config.train.ema_decay={ema_decay} but the state has "
        f"{'an' if state.ema_params else 'no'} EMA; create it with "
        f"state.create(..., ema={bool(ema_decay)}).")
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = dict(metrics, grad_norm=optax.global_norm(grads),
                 param_norm=optax.global_norm(params))
  ema_params = state.ema_params
  if ema_decay:
    ema_params = jax.tree.map(lambda e, p: e * ema_decay + (1.0 - ema_decay) * p,
                              ema_params, params)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                       batch_stats=batch_stats, ema_params=ema_params), metrics


def make_finetune_step(model: nn.Module, config: ml_collections.ConfigDict,
                       tx: optax.GradientTransformation, num_classes: int):
  """The classification step (random erasing, mixup/cutmix, label smoothing, drop path,
  dropout)."""
  t = config.train
  erase_prob = float(config.input.get("random_erase_prob", 0.0))

  def loss_and_aux(params, batch_stats, batch, rng):
    k_mix, k_drop, k_path = jax.random.split(rng, 3)
    x = _inputs(config, batch["frames"])
    # Per clip, as the data transform of timm / VideoMAE, before the batch is mixed.
    x = augment.random_erase(jax.random.fold_in(rng, 1), x, prob=erase_prob)
    x, targets = augment.mix_groups(
        k_mix, x, batch["label"], group=int(t.get("mixup_group", 0)),
        num_classes=num_classes, mixup_alpha=t.mixup_alpha, cutmix_alpha=t.cutmix_alpha,
        prob=t.mixup_prob, switch_prob=t.mixup_switch_prob, smoothing=t.label_smoothing)
    variables = {"params": params}
    mutable = False
    if batch_stats:
      variables["batch_stats"] = batch_stats
      mutable = ["batch_stats"]
    out = model.apply(variables, x, train=True, rngs={"dropout": k_drop, "drop_path": k_path},
                      mutable=mutable)
    logits, new_vars = out if mutable else (out, {})
    logits = logits.astype(jnp.float32)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, (new_vars.get("batch_stats", batch_stats), dict(loss=loss, accuracy=accuracy))

  def train_step(state: TrainState, batch: Batch, rng: jax.Array):
    """``batch``: ``frames`` uint8 ``[B, t_out·n·n, h, w, 3]``, ``label`` int ``[B]``."""
    batch = {"frames": batch["frames"], "label": batch["label"]}
    grads, batch_stats, metrics = _accumulate(
        loss_and_aux, state.params, state.batch_stats, batch, rng,
        config.optimizer.accum_steps)
    return _apply_update(state, tx, grads, batch_stats, metrics, config.train.ema_decay)

  return train_step


def _mask(model, config, key: jax.Array, batch: int) -> jax.Array:
  return videomae.tube_mask(key, batch, config.time.t_out, config.image_size,
                            model.patch_size, model.tubelet_size, model.mask_ratio)


def _pretrain_loss(model, config, pred, x, mask):
  return videomae.pretrain_loss(pred, x, mask, patch_size=model.patch_size,
                                tubelet_size=model.tubelet_size,
                                norm_pix_loss=config.pretrain.norm_pix_loss, **_stats(config))


def make_pretrain_step(model: nn.Module, config: ml_collections.ConfigDict,
                       tx: optax.GradientTransformation):
  """The VideoMAE masked-autoencoding step: tube mask drawn on device, MSE on masked."""

  def loss_and_aux(params, batch_stats, batch, rng):
    k_mask, k_path = jax.random.split(rng)
    x = _inputs(config, batch["frames"])
    mask = _mask(model, config, k_mask, x.shape[0])
    pred = model.apply({"params": params}, x, mask, train=True, rngs={"drop_path": k_path})
    loss = _pretrain_loss(model, config, pred, x, mask)
    return loss, (batch_stats, dict(loss=loss))

  def train_step(state: TrainState, batch: Batch, rng: jax.Array):
    """``batch``: ``frames`` uint8 ``[B, t_out·n·n, h, w, 3]``."""
    grads, batch_stats, metrics = _accumulate(
        loss_and_aux, state.params, state.batch_stats, {"frames": batch["frames"]}, rng,
        config.optimizer.accum_steps)
    return _apply_update(state, tx, grads, batch_stats, metrics, config.train.ema_decay)

  return train_step


def make_eval_step(model: nn.Module, config: ml_collections.ConfigDict):
  """Classification: ``eval_step(state, batch) -> logits [B, classes]`` float32."""

  def eval_step(state: TrainState, batch: Batch) -> jax.Array:
    variables = {"params": state.params}
    if state.batch_stats:
      variables["batch_stats"] = state.batch_stats
    logits = model.apply(variables, _inputs(config, batch["frames"]), train=False)
    return logits.astype(jnp.float32)

  return eval_step


def make_pretrain_eval_step(model: nn.Module, config: ml_collections.ConfigDict):
  """Pretraining eval: ``(state, batch, rng) -> (loss [B], original, masked, recon)``.

  A tube mask drawn from ``rng``, the model, and `videomae.reconstruct`: the images are
  ``[B, t_out, H, W, 3]`` in [0, 1], the input, the input with masked patches greyed
  out, and the reconstruction (visible patches from the input).
  """

  def eval_step(state: TrainState, batch: Batch, rng: jax.Array):
    x = _inputs(config, batch["frames"])
    mask = _mask(model, config, rng, x.shape[0])
    pred = model.apply({"params": state.params}, x, mask, train=False)
    return videomae.reconstruct(
        pred, x, mask, patch_size=model.patch_size, tubelet_size=model.tubelet_size,
        norm_pix_loss=config.pretrain.norm_pix_loss, **_stats(config))

  return eval_step


def jit_train_step(step_fn, state_shardings: Any, mesh: Mesh, *, remat: str = "none"):
  """``jax.jit`` with the state donated; batch over ``data × fsdp``; metrics replicated.

  ``remat``: ``config.model.remat``, for the compiler options it needs on this backend
  (`time_jax.models.ops.compiler_options`).
  """
  data = sharding.batch_sharding(mesh)
  rep = sharding.replicated(mesh)
  options = ops.compiler_options(remat)
  extra = {} if options is None else {"compiler_options": options}
  return jax.jit(step_fn, in_shardings=(state_shardings, data, rep),
                 out_shardings=(state_shardings, rep), donate_argnums=(0,), **extra)


def jit_eval_step(step_fn, state_shardings: Any, mesh: Mesh, with_rng: bool = False):
  """``jax.jit`` of an eval step; outputs keep the batch sharding."""
  data = sharding.batch_sharding(mesh)
  ins = (state_shardings, data) + ((sharding.replicated(mesh),) if with_rng else ())
  return jax.jit(step_fn, in_shardings=ins, out_shardings=data)


def global_batch(batch: dict[str, Any], mesh: Mesh, keys=None) -> Batch:
  """This process's numpy batch -> global ``jax.Array``s sharded over ``data × fsdp``."""
  s: NamedSharding = sharding.batch_sharding(mesh)
  keys = keys or batch.keys()
  return {k: jax.make_array_from_process_local_data(s, batch[k]) for k in keys}
