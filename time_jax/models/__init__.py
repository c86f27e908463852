"""Backbones: ResNet-50, ViT and VideoMAE, in Flax linen, and the name -> constructor table.

`from_config` builds ``config.model`` for a run or a saved checkpoint. Every constructor
takes keyword arguments ``num_classes``, ``image_size`` (H = W of the
model input), ``num_frames`` (T* frames per clip), ``dtype`` (compute dtype; parameters
stay float32) and model-specific options from ``config.model``; the transformers (ViT,
VideoMAE) also take ``remat`` (`transformer.remat_block`). Classifiers map
``x: [batch, time, H, W, c]`` to ``logits: [batch, num_classes]``; `logits_and_features`
adds the pooled pre-logits features every model sows.
"""

from __future__ import annotations

import importlib

import jax.numpy as jnp
import ml_collections
import jax
from flax import linen as nn

# name -> (module, constructor). A small explicit table: names come from configs.
MODELS: dict[str, tuple[str, str]] = {
    "resnet50": ("time_jax.models.resnet", "resnet50"),
    "vit_ti16": ("time_jax.models.vit", "vit_ti16"),
    "vit_s16": ("time_jax.models.vit", "vit_s16"),
    "vit_b16": ("time_jax.models.vit", "vit_b16"),
    "vit_l16": ("time_jax.models.vit", "vit_l16"),
    "vit_b32": ("time_jax.models.vit", "vit_b32"),
    "videomae_s": ("time_jax.models.videomae", "videomae_s"),
    "videomae_b": ("time_jax.models.videomae", "videomae_b"),
    "videomae_l": ("time_jax.models.videomae", "videomae_l"),
    "videomae_s_pretrain": ("time_jax.models.videomae", "videomae_s_pretrain"),
    "videomae_b_pretrain": ("time_jax.models.videomae", "videomae_b_pretrain"),
    "videomae_l_pretrain": ("time_jax.models.videomae", "videomae_l_pretrain"),
}


# config.model.dtype -> the compute dtype (parameters stay float32).
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def is_pretrainer(name: str) -> bool:
  """Whether ``name`` is a VideoMAE masked autoencoder (no classification head)."""
  return name.endswith("_pretrain")


def is_transformer(name: str) -> bool:
  """Whether ``name`` (a key of `MODELS`) is built from `transformer` blocks, and so
  takes ``remat``."""
  return MODELS[name][0] in ("time_jax.models.vit", "time_jax.models.videomae")


def create(name: str, **kwargs) -> nn.Module:
  """Builds the model called ``name`` (a key of `MODELS`) with constructor kwargs."""
  if name not in MODELS:
    raise ValueError(f"config.model.name={name!r} is not a model; choose one of {sorted(MODELS)}.")
  module, fn = MODELS[name]
  return getattr(importlib.import_module(module), fn)(**kwargs)


def from_config(config: ml_collections.ConfigDict, num_classes: int, *, dtype=None,
                **overrides) -> nn.Module:
  """The model of ``config.model`` for the TIME output clip ``[t_out, H*, W*]``.

  Args:
    config: a full config (or a run's saved one): ``model.{name, dtype, remat,
      kwargs}``, ``image_size``, ``time.t_out`` and, for pretrainers,
      ``pretrain.mask_ratio``.
    num_classes: the head size (ignored by pretrainers, which have none).
    dtype: the compute dtype (default: ``config.model.dtype``).
    **overrides: constructor kwargs replacing ``config.model.kwargs`` (``mask_ratio``).
  """
  name = config.model.name
  kwargs = dict(config.model.get("kwargs", {}) or {})
  kwargs.pop("dtype", None)
  remat = config.model.get("remat", "none")  # configs saved before the field: 'none'
  if remat != "none":  # ResNet takes no remat
    kwargs["remat"] = remat
  if is_pretrainer(name):
    kwargs["mask_ratio"] = float(config.pretrain.mask_ratio)
    num_classes = 0
  kwargs.update(overrides)
  if dtype is None:
    dtype = COMPUTE_DTYPES[config.model.dtype]
  return create(name, num_classes=num_classes, image_size=int(config.image_size),
                num_frames=int(config.time.t_out), dtype=dtype, **kwargs)


def logits_and_features(model: nn.Module, variables, x: jax.Array
                        ) -> tuple[jax.Array, jax.Array]:
  """``(logits [batch, num_classes], features [batch, embed])`` of a classifier at eval.

  ``features`` are the pooled pre-logits features the model sows as ``pre_logits`` (the
  input of its head, averaged over time: ``logits = features @ head.kernel + head.bias``).
  Capturing them makes ``'intermediates'`` mutable, so attention takes the explicit
  softmax (`ops.attention`); cuDNN's fused kernel, for 16-bit compute only, is not used.

  Args:
    model: a classifier of `MODELS` (``num_classes > 0``).
    variables: its ``{'params', 'batch_stats'?}``.
    x: ``[batch, time, H, W, c]``, normalised.
  """
  logits, state = model.apply(variables, x, train=False, mutable="intermediates")
  return logits, state["intermediates"]["pre_logits"][0]
