"""AdamW with warmup + cosine, layer-wise lr decay and no decay on biases/norms/tokens.

The VideoMAE recipe (``optim_factory.py`` of MCG-NJU/VideoMAE), expressed in optax:

* ``lr = base_lr · videos / lr_batch_divisor`` (``base_lr × batch / 256``) where
  ``videos = batch_size / input.repeats`` (VideoMAE scales by the samples of a step,
  not by their ``num_sample`` repeated views), linear warmup from 0 for
  ``warmup_epochs`` then cosine to ``min_lr``, scaled the same way (VideoMAE's
  ``min_lr × batch / 256``), per step.
* weight decay ``wd`` on every parameter except 1-D ones (biases, norm scales) and
  position embeddings / tokens (``pos_embed``, ``cls_token``, ``mask_token``).
* layer-wise lr decay: parameter group ``i`` (0 = ``patch_embed`` and tokens,
  ``i + 1`` = ``blocks_{i}``, ``depth + 1`` = everything after the blocks) has its
  update scaled by ``layer_decay^(depth + 1 - i)``, decay term included, as the
  official per-group ``lr_scale``.
* global-norm gradient clipping first when ``clip_norm`` > 0.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import ml_collections
import optax

_NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token", "dist_token")
_BLOCK = re.compile(r"^blocks_(\d+)$")


def _scaled(config: ml_collections.ConfigDict, rate: float) -> float:
  """``rate · (batch_size / repeats) / lr_batch_divisor`` (``rate`` when the divisor is
  0): rates scale with the videos of a step, not their repeated views."""
  o = config.optimizer
  if o.lr_batch_divisor:
    videos = config.input.batch_size / config.input.get("repeats", 1)
    return rate * videos / o.lr_batch_divisor
  return rate


def peak_lr(config: ml_collections.ConfigDict) -> float:
  """``base_lr`` scaled by the batch: ``base_lr · videos / lr_batch_divisor``."""
  return _scaled(config, config.optimizer.base_lr)


def final_lr(config: ml_collections.ConfigDict) -> float:
  """``min_lr`` scaled like ``base_lr`` (VideoMAE's ``min_lr × batch / 256``)."""
  return _scaled(config, config.optimizer.min_lr)


def schedule(config: ml_collections.ConfigDict, steps_per_epoch: int,
             total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 to `peak_lr`, then cosine to `final_lr` at ``total_steps``."""
  o = config.optimizer
  warmup = int(o.warmup_steps or round(o.warmup_epochs * steps_per_epoch))
  warmup = min(warmup, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_lr(config), warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=final_lr(config))


def _names(path) -> list[str]:
  return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def decay_mask(params: Any) -> Any:
  """True where weight decay applies: >= 2-D and not a position embedding / token."""
  def fn(path, x):
    names = _names(path)
    return x.ndim >= 2 and not any(n in _NO_DECAY_NAMES for n in names)
  return jax.tree_util.tree_map_with_path(fn, params)


def num_layers(params: Any) -> int:
  """The number of top-level ``blocks_{i}`` (0 for models without them, e.g. ResNet)."""
  return sum(1 for k in params if _BLOCK.match(str(k)))


def layer_ids(params: Any) -> Any:
  """The layer-decay group of each parameter (see the module docstring)."""
  depth = num_layers(params)

  def fn(path, _):
    top = _names(path)[0]
    m = _BLOCK.match(top)
    if m:
      return int(m.group(1)) + 1
    if top in ("patch_embed", "stem") or top in _NO_DECAY_NAMES:
      return 0
    return depth + 1
  return jax.tree_util.tree_map_with_path(fn, params)


def create(config: ml_collections.ConfigDict, params: Any, steps_per_epoch: int,
           total_steps: int) -> optax.GradientTransformation:
  """The optimizer of ``config.optimizer``.

  ``params`` (arrays or ``ShapeDtypeStruct``s) fixes the decay mask and the layer
  groups as trees, not callables, so `optax.tree_map_params` can map the state.
  """
  o = config.optimizer
  parts = []
  if o.clip_norm:
    parts.append(optax.clip_by_global_norm(o.clip_norm))
  parts.append(optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps))
  if o.weight_decay:
    parts.append(optax.add_decayed_weights(o.weight_decay, mask=decay_mask(params)))
  depth = num_layers(params)
  if o.layer_decay < 1.0 and depth:
    scales = {i: o.layer_decay ** (depth + 1 - i) for i in range(depth + 2)}
    parts.append(optax.multi_transform(
        {i: optax.scale(s) for i, s in scales.items()}, layer_ids(params)))
  parts.append(optax.scale_by_learning_rate(schedule(config, steps_per_epoch, total_steps)))
  return optax.chain(*parts)
