"""Vision Transformer (Dosovitskiy et al., 2021) in Flax linen, as timm's ``vit_*_patch16_224``.

The image model of the paper, applied to video frame by frame: a clip
``x: [batch, time, H, W, c]`` (normalised, `time_jax.time_layer.preprocess`) is
flattened to ``batch·time`` images, and the logits are averaged over time (TSN
consensus). With ``time = 1`` the input is a single TIME grid image.

Layout (timm's ``VisionTransformer``, so ported ImageNet weights map one to one):
``patch_embed`` (a stride-``patch`` convolution with bias), a learned class token
``cls_token`` and learned position embedding ``pos_embed`` (``[1, 1 + P, embed]``,
P = (H/patch)²), pre-norm blocks ``blocks_{i}`` (``norm1``, ``attn/{qkv, proj}`` with a
qkv bias, ``norm2``, ``mlp/{fc1, fc2}``, exact GELU, LayerNorm eps 1e-6, optional layer
scale ``gamma_1/2``), then ``pool='token'``: ``norm`` and token 0, or ``pool='gap'``:
the mean of the patch tokens and ``fc_norm`` (timm ``global_pool='avg'``), then ``head``.

Blocks sow ``attention_weights: [batch·time, heads, tokens, tokens]`` (token 0 is the
class token) and ``features`` into ``'intermediates'`` when that collection is mutable;
the model sows ``pre_logits: [batch, embed]``. Parameters are float32 with logical axis
names; ``dtype`` is the compute dtype and ``impl`` chooses the kernels
(`time_jax.models.ops`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from time_jax.models import ops
from time_jax.models import transformer
from time_jax.models import videomae

Dtype = Any

# timm's sizes: (embed_dim, depth, num_heads).
SIZES = {
    "ti": (192, 12, 3),
    "s": (384, 12, 6),
    "b": (768, 12, 12),
    "l": (1024, 24, 16),
}
POOLS = ("token", "gap")


class PatchEmbed(nn.Module):
  """Non-overlapping ``patch × patch`` projection (timm's ``patch_embed.proj``)."""
  embed_dim: int
  patch_size: int = 16
  dtype: Dtype = jnp.float32
  # PyTorch's Conv2d default init, as timm leaves it for the patch projection.
  kernel_init: Any = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """``x: [images, H, W, c]`` -> ``[images, (H/p)·(W/p), embed]``, row-major."""
    p = self.patch_size
    if x.shape[1] % p or x.shape[2] % p:
      raise ValueError(f"image size {x.shape[1]}x{x.shape[2]} is not a multiple of the "
                       f"patch size {p}.")
    kernel = self.param("kernel", nn.with_logical_partitioning(
        self.kernel_init, (None, None, None, "embed")),
        (p, p, x.shape[-1], self.embed_dim), jnp.float32)
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
                      (self.embed_dim,), jnp.float32)
    patches = videomae.patchify(x[:, None].astype(self.dtype), p, 1)
    y = ops.product(patches, kernel.reshape(-1, self.embed_dim).astype(self.dtype),
                    self.impl)
    return y + bias.astype(self.dtype)


class ViT(nn.Module):
  """ViT classifier on clips; see the module docstring.

  Attributes:
    num_classes: head outputs; 0 returns the pooled features ``[batch, embed]``.
    image_size: H = W of the input; sets the ``pos_embed`` length.
    patch_size, embed_dim, depth, num_heads, mlp_ratio: the backbone.
    pool: ``'token'`` (class token, timm's default) or ``'gap'`` (mean of patch tokens).
    drop_path_rate: stochastic depth of the last block, rising linearly (rng ``'drop_path'``).
    dropout_rate: dropout before the head (rng ``'dropout'``).
    init_values: layer scale (0 = none, as the ImageNet models).
    dtype: compute dtype.
    impl: the kernel set, ``'auto'``, ``'cpu'``, ``'gpu'`` or ``'xla'`` (`ops.resolve`).
    remat: gradient checkpointing of the blocks, ``'none'``, ``'block'`` or ``'full'``
      (`transformer.remat_block`).
  """
  num_classes: int = 1000
  image_size: int = 224
  patch_size: int = 16
  embed_dim: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_ratio: float = 4.0
  pool: str = "token"
  drop_path_rate: float = 0.0
  dropout_rate: float = 0.0
  init_values: float = 0.0
  dtype: Dtype = jnp.float32
  impl: str = "auto"
  remat: str = "none"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """``x: [batch, time, H, W, c]`` -> logits ``[batch, num_classes]`` (time-averaged)."""
    if self.pool not in POOLS:
      raise ValueError(f"pool={self.pool!r}; use one of {POOLS}.")
    if x.ndim != 5:
      raise ValueError(f"ViT takes clips [batch, time, H, W, c]; got shape {x.shape}.")
    if x.shape[2:4] != (self.image_size, self.image_size):
      raise ValueError(f"input frames are {x.shape[2]}x{x.shape[3]} but the model was built "
                       f"for image_size={self.image_size}.")
    batch, time = x.shape[:2]
    h = PatchEmbed(self.embed_dim, self.patch_size, self.dtype, impl=self.impl,
                   name="patch_embed")(x.reshape(batch * time, *x.shape[2:]))
    tokens = (self.image_size // self.patch_size) ** 2
    cls = self.param("cls_token", nn.with_logical_partitioning(
        nn.initializers.normal(1e-6), (None, None, "embed")), (1, 1, self.embed_dim),
        jnp.float32)
    pos = self.param("pos_embed", nn.with_logical_partitioning(
        transformer.trunc_normal, (None, None, "embed")),
        (1, 1 + tokens, self.embed_dim), jnp.float32)
    h = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (h.shape[0], 1, h.shape[2])),
                         h], axis=1)
    h = h + pos.astype(self.dtype)
    h = transformer.blocks(
        h, depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
        drop_path_rate=self.drop_path_rate, init_values=self.init_values, dtype=self.dtype,
        kernel_init=transformer.trunc_normal, train=train, impl=self.impl, qkv_bias=True,
        remat=self.remat)
    if self.pool == "token":
      h = transformer.layer_norm(self.dtype, "norm")(h)[:, 0]
    else:
      h = transformer.layer_norm(self.dtype, "fc_norm")(h[:, 1:].mean(axis=1))
    h = h.reshape(batch, time, -1)
    pooled = h.mean(axis=1)
    self.sow("intermediates", "pre_logits", pooled)
    if not self.num_classes:
      return pooled
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    logits = transformer.head(self.num_classes, self.dtype, 1.0, "classes",
                              nn.initializers.zeros, "head", impl=self.impl)(h)
    return logits.mean(axis=1)  # TSN consensus over the T* frames


def _vit(size: str, default_patch: int, *, num_classes: int = 1000, image_size: int = 224,
         num_frames: int = 1, dtype: Dtype = jnp.float32, **kwargs) -> ViT:
  """A ViT of timm ``size``; ``kwargs`` override `ViT` attributes.

  ``num_frames`` (T*) is accepted for the common constructor signature: frames are
  independent images, so any T* works with the same parameters.
  """
  del num_frames
  embed_dim, depth, num_heads = SIZES[size]
  kw = dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads, patch_size=default_patch)
  kw.update(kwargs)
  if image_size % kw["patch_size"]:
    raise ValueError(f"image_size={image_size} is not a multiple of "
                     f"patch_size={kw['patch_size']}.")
  return ViT(num_classes=num_classes, image_size=image_size, dtype=dtype, **kw)


def vit_ti16(**kwargs) -> ViT:
  """ViT-Ti/16 (192 wide, 12 blocks, 3 heads), timm ``vit_tiny_patch16_224``."""
  return _vit("ti", 16, **kwargs)


def vit_s16(**kwargs) -> ViT:
  """ViT-S/16 (384 wide, 12 blocks, 6 heads), timm ``vit_small_patch16_224``."""
  return _vit("s", 16, **kwargs)


def vit_b16(**kwargs) -> ViT:
  """ViT-B/16 (768 wide, 12 blocks, 12 heads), timm ``vit_base_patch16_224``."""
  return _vit("b", 16, **kwargs)


def vit_l16(**kwargs) -> ViT:
  """ViT-L/16 (1024 wide, 24 blocks, 16 heads), timm ``vit_large_patch16_224``."""
  return _vit("l", 16, **kwargs)


def vit_b32(**kwargs) -> ViT:
  """ViT-B/32 (768 wide, 12 blocks, 12 heads), timm ``vit_base_patch32_224``."""
  return _vit("b", 32, **kwargs)
