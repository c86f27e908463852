"""Backbones: ResNet-50, ViT and VideoMAE, in Flax linen, and the name -> constructor table.

Every constructor takes keyword arguments ``num_classes``, ``image_size`` (H = W of the
model input), ``num_frames`` (T* frames per clip), ``dtype`` (compute dtype; parameters
stay float32) and model-specific options from ``config.model``. Classifiers map
``x: [batch, time, H, W, c]`` to ``logits: [batch, num_classes]``.
"""

from __future__ import annotations

import importlib

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


def create(name: str, **kwargs) -> nn.Module:
  """Builds the model called ``name`` (a key of `MODELS`) with constructor kwargs."""
  if name not in MODELS:
    raise ValueError(f"config.model.name={name!r} is not a model; choose one of {sorted(MODELS)}.")
  module, fn = MODELS[name]
  return getattr(importlib.import_module(module), fn)(**kwargs)
