"""VideoMAE (Tong et al., 2022) in Flax linen: the classifier and the masked autoencoder.

A faithful port of the official code (``modeling_finetune.py`` / ``modeling_pretrain.py``
of MCG-NJU/VideoMAE): tubelet patch embedding, the fixed sine-cosine position table and
`time_jax.models.transformer`'s pre-norm blocks, whose attention has no key bias
(``q_bias``/``v_bias`` only); tube masking, the pretraining targets and loss, and the
images of a reconstruction (`reconstruct`).

Inputs are float clips ``x: [batch, time, H, W, c]`` normalised with the ImageNet mean/std
(`time_jax.time_layer.preprocess`). Tokens are ordered ``(time/tubelet, H/patch, W/patch)``
row-major, as the official ``Conv3d(...).flatten(2)``.

Classifier (``videomae_s|b|l``)::

    model = videomae_b(num_classes=400, num_frames=16)
    logits = model.apply(variables, x, train=False)                   # [batch, classes]
    logits = model.apply(variables, x, train=True,
                         rngs={"dropout": k1, "drop_path": k2})

Masked autoencoder (``videomae_s|b|l_pretrain``)::

    model = videomae_b_pretrain(num_frames=16, mask_ratio=0.9)
    mask = tube_mask(key, batch, 16, 224, 16, 2, 0.9)                 # bool [batch, tokens]
    pred = model.apply(variables, x, mask, train=True, rngs={"drop_path": k})
    loss = pretrain_loss(pred, x, mask)                                # scalar, float32
    loss, original, masked, recon = reconstruct(pred, x, mask)        # [batch], images

``pred`` is ``[batch, num_masked, tubelet·patch²·c]``: the reconstruction of the masked
tokens in increasing token order. The number masked is static: ``model.num_masked`` (from
``mask_ratio``, exactly ``round(ratio · patches)`` per frame-slice); a mask with another
count is an error when it is concrete and silently wrong under ``jit``, so draw masks with
`tube_mask` at the model's ratio. `pretrain_targets` gives the targets alone; its options,
`pretrain_loss`'s and `reconstruct`'s (``patch_size``, ``tubelet_size``, ``norm_pix_loss``,
``mean``, ``std``) must match the model's and the input's.

Both models ``sow`` into the ``'intermediates'`` collection when it is mutable
(``mutable=['intermediates']``): every block's attention weights
(``.../attn/attention_weights``, ``[batch, heads, tokens, tokens]``) and output features
(``.../features``), and the pooled features of the classifier (``pre_logits``).
Parameters are float32 and carry logical axis names (``embed``, ``mlp``, ``heads``,
``kv``, ``classes``, ``patch``, ``decoder_embed``); ``dtype`` sets the compute dtype and
``impl`` the kernels (`time_jax.models.ops`). Losses and targets are computed in float32.
"""

from __future__ import annotations

from typing import Any, Sequence

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from time_jax.models import ops
from time_jax.models import transformer
from time_jax.time_layer import IMAGENET_MEAN, IMAGENET_STD

Dtype = Any

# Official sizes: (embed_dim, depth, num_heads, decoder_embed_dim, decoder_num_heads).
SIZES = {
    "s": (384, 12, 6, 192, 3),
    "b": (768, 12, 12, 384, 6),
    "l": (1024, 24, 16, 512, 8),
}
DECODER_DEPTH = 4


def sinusoid_table(num_positions: int, dim: int) -> np.ndarray:
  """The official fixed sine-cosine position table (``get_sinusoid_encoding_table``).

  Position ``p``, channel ``j``: ``p / 10000^(2·(j//2) / dim)``, sine on even ``j``,
  cosine on odd ``j``, computed in float64 as the original does, returned as float32.

  Returns:
    ``[num_positions, dim]`` float32 numpy array: a constant, never a parameter, so any
    frame count or image size gets its own table.
  """
  pos = np.arange(num_positions, dtype=np.float64)[:, None]
  j = np.arange(dim)
  angles = pos / np.power(10000, 2 * (j // 2) / dim)
  table = np.empty_like(angles)
  table[:, 0::2] = np.sin(angles[:, 0::2])
  table[:, 1::2] = np.cos(angles[:, 1::2])
  return table.astype(np.float32)


def token_grid(num_frames: int, image_size: int, patch_size: int,
               tubelet_size: int) -> tuple[int, int]:
  """``(temporal positions, patches per frame-slice)`` of the token grid.

  Raises:
    ValueError: when the tubelet does not divide the frames or the patch the image.
  """
  if num_frames % tubelet_size:
    raise ValueError(
        f"num_frames={num_frames} is not a multiple of tubelet_size={tubelet_size}; "
        "use a frame count the tubelet divides (e.g. 16).")
  if image_size % patch_size:
    raise ValueError(
        f"image_size={image_size} is not a multiple of patch_size={patch_size}.")
  return num_frames // tubelet_size, (image_size // patch_size) ** 2


def masked_per_slice(patches: int, ratio: float) -> int:
  """Masked patches per frame-slice: ``round(ratio · patches)``.

  (The official ``TubeMaskingGenerator`` truncates, ``int(ratio · patches)``; the two
  agree for the paper's ratios at 224² / 16² = 196 patches except where ``ratio·196``
  has a fractional part >= 0.5, e.g. 0.6 → 118 here, 117 there.)
  """
  if not 0.0 < ratio < 1.0:
    raise ValueError(f"mask ratio {ratio} must be in (0, 1).")
  k = int(round(ratio * patches))
  if not 0 < k < patches:
    raise ValueError(
        f"mask ratio {ratio} masks {k} of the {patches} patches of a frame-slice; "
        "at least one must be masked and one visible.")
  return k


def tube_mask(key: jax.Array, batch: int, num_frames: int, image_size: int,
              patch_size: int = 16, tubelet_size: int = 2,
              ratio: float = 0.9) -> jax.Array:
  """Tube masking (VideoMAE Sec. 3.3), drawn on device.

  For each clip, ``round(ratio · patches)`` of the ``(image_size / patch_size)²``
  spatial positions are drawn uniformly without replacement and masked at every
  temporal position (tubes through time).

  Args:
    key: a JAX PRNG key; different keys give different masks.
    batch, num_frames, image_size, patch_size, tubelet_size: the clip and token grid.
    ratio: the masking ratio, in (0, 1).

  Returns:
    bool ``[batch, tokens]`` with tokens ``= (num_frames / tubelet) · patches`` ordered as
    the model's tokens; True = masked. Every clip has exactly ``T · round(ratio·patches)``
    masked tokens.
  """
  t, p = token_grid(num_frames, image_size, patch_size, tubelet_size)
  k = masked_per_slice(p, ratio)
  noise = jax.random.uniform(key, (batch, p))
  # rank of each position in a random order: the k lowest are masked, exactly k.
  ranks = jnp.argsort(jnp.argsort(noise, axis=-1), axis=-1)
  spatial = ranks < k
  return jnp.broadcast_to(spatial[:, None, :], (batch, t, p)).reshape(batch, t * p)


def _split_indices(mask: jax.Array, num_masked: int) -> tuple[jax.Array, jax.Array]:
  """Visible and masked token indices, each in increasing order, with static shapes.

  Args:
    mask: bool ``[batch, tokens]``, exactly ``num_masked`` True per row.
    num_masked: the static count.

  Returns:
    ``(visible [batch, tokens - num_masked], masked [batch, num_masked])`` int32.
  """
  tokens = mask.shape[-1]
  if not isinstance(mask, jax.core.Tracer):
    counts = np.asarray(mask).sum(-1)
    if np.any(counts != num_masked):
      raise ValueError(
          f"mask has {sorted(set(counts.tolist()))} masked tokens per clip, the model "
          f"expects exactly {num_masked} (mask_ratio); draw it with tube_mask at the "
          "model's mask_ratio.")
  # A stable sort of the booleans puts visible tokens first, each group in token order,
  # which is the order the official x[~mask] / x[mask] indexing produces.
  order = jnp.argsort(mask.astype(jnp.int32), axis=-1, stable=True)
  return order[:, :tokens - num_masked], order[:, tokens - num_masked:]


def _gather(x: jax.Array, idx: jax.Array) -> jax.Array:
  """``x[b, idx[b]]``: ``[batch, tokens, ...]``, ``[batch, k]`` -> ``[batch, k, ...]``."""
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def patchify(frames: jax.Array, patch_size: int, tubelet_size: int) -> jax.Array:
  """``[batch, time, H, W, c]`` -> ``[batch, tokens, tubelet·patch²·c]``.

  Token order ``(t, h, w)``; within a token ``(tubelet, patch_h, patch_w, c)``: the
  official ``'b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2 c)'``.
  """
  return einops.rearrange(
      frames, "b (t p0) (h p1) (w p2) c -> b (t h w) (p0 p1 p2 c)",
      p0=tubelet_size, p1=patch_size, p2=patch_size)


def unpatchify(patches: jax.Array, clip_shape: Sequence[int], patch_size: int,
               tubelet_size: int) -> jax.Array:
  """The inverse of `patchify`: ``[batch, tokens, tubelet·patch²·c]`` ->
  ``[batch, time, H, W, c]`` for ``clip_shape = (time, H, W)``."""
  t, h, w = clip_shape
  return einops.rearrange(
      patches, "b (t h w) (p0 p1 p2 c) -> b (t p0) (h p1) (w p2) c",
      t=t // tubelet_size, h=h // patch_size, w=w // patch_size,
      p0=tubelet_size, p1=patch_size, p2=patch_size)


def _unnormalize(x: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """Normalised clips ``[..., c]`` -> float32 ``x · std + mean`` (the [0, 1] scale)."""
  c = x.shape[-1]
  mean = jnp.asarray(np.broadcast_to(np.asarray(mean, np.float32), (c,)))
  std = jnp.asarray(np.broadcast_to(np.asarray(std, np.float32), (c,)))
  return x.astype(jnp.float32) * std + mean


def _patch_stats(patches: jax.Array, channels: int) -> tuple[jax.Array, jax.Array]:
  """The ``norm_pix_loss`` statistics of each patch, per channel.

  Args:
    patches: ``[batch, tokens, tubelet·patch²·c]`` from `patchify`.
    channels: ``c``.

  Returns:
    ``(mean, scale)``, each ``[batch, tokens, 1, c]``: the mean over the patch's
    ``tubelet·patch²`` pixels and ``sqrt(var_unbiased) + 1e-6``; a target is
    ``(v - mean) / scale`` with ``v = patches.reshape(batch, tokens, -1, c)``.
  """
  v = patches.reshape(*patches.shape[:2], -1, channels)
  return (v.mean(axis=-2, keepdims=True),
          jnp.sqrt(v.var(axis=-2, keepdims=True, ddof=1)) + 1e-6)


def pretrain_targets(
    x: jax.Array, mask: jax.Array, *, num_masked: int | None = None,
    patch_size: int = 16, tubelet_size: int = 2, norm_pix_loss: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
) -> jax.Array:
  """The reconstruction targets of the masked tokens, as the official pretraining loop.

  The clip is un-normalised to [0, 1] (``x · std + mean``) and cut into tubelet patches;
  with ``norm_pix_loss`` each patch is normalised per channel over its
  ``tubelet·patch²`` pixels: ``(v - mean) / (sqrt(var_unbiased) + 1e-6)``.

  Args:
    x: normalised clips ``[batch, time, H, W, c]`` (any float dtype).
    mask: bool ``[batch, tokens]``, True = masked.
    num_masked: masked tokens per clip (static); default: counted from a concrete mask.
    patch_size, tubelet_size: the model's.
    norm_pix_loss: normalise each target patch (the official default).
    mean, std: the statistics ``x`` was normalised with.

  Returns:
    float32 ``[batch, num_masked, tubelet·patch²·c]`` in increasing token order, the
    order of the pretrainer's predictions.
  """
  if num_masked is None:
    if isinstance(mask, jax.core.Tracer):
      raise ValueError("pretrain_targets under jit needs num_masked= (static).")
    num_masked = int(np.asarray(mask).sum(-1).max())
  c = x.shape[-1]
  patches = patchify(_unnormalize(x, mean, std), patch_size, tubelet_size)
  if norm_pix_loss:
    mu, scale = _patch_stats(patches, c)
    v = patches.reshape(*patches.shape[:2], -1, c)
    patches = ((v - mu) / scale).reshape(patches.shape)
  _, masked = _split_indices(mask, num_masked)
  return _gather(patches, masked)


def pretrain_loss(
    pred: jax.Array, x: jax.Array, mask: jax.Array, *, patch_size: int = 16,
    tubelet_size: int = 2, norm_pix_loss: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
) -> jax.Array:
  """Mean squared error between ``pred`` and `pretrain_targets` (masked tokens only).

  Args:
    pred: the pretrainer's output ``[batch, num_masked, tubelet·patch²·c]``.
    x, mask, patch_size, tubelet_size, norm_pix_loss, mean, std: as `pretrain_targets`.

  Returns:
    float32 scalar, the mean over batch, tokens and values (official ``nn.MSELoss()``).
  """
  target = pretrain_targets(
      x, mask, num_masked=pred.shape[1], patch_size=patch_size,
      tubelet_size=tubelet_size, norm_pix_loss=norm_pix_loss, mean=mean, std=std)
  return jnp.mean(jnp.square(pred.astype(jnp.float32) - target))


def reconstruct(
    pred: jax.Array, x: jax.Array, mask: jax.Array, *, patch_size: int = 16,
    tubelet_size: int = 2, norm_pix_loss: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """The per-clip loss and the images of a reconstruction, as the official visualisation.

  Args:
    pred: the pretrainer's output ``[batch, num_masked, tubelet·patch²·c]``.
    x, mask, patch_size, tubelet_size, norm_pix_loss, mean, std: as `pretrain_targets`.

  Returns:
    ``(loss, original, masked, reconstruction)``: ``loss`` float32 ``[batch]``, the
    `pretrain_loss` of each clip; the images float32 ``[batch, time, H, W, c]`` in
    [0, 1]: the input (un-normalised, clipped), the input with masked patches grey (0.5),
    and the input with masked patches replaced by ``pred`` (with ``norm_pix_loss``
    un-normalised with the input patch's `_patch_stats`, computed on the clipped input).
  """
  pred = pred.astype(jnp.float32)
  num_masked, c = pred.shape[1], x.shape[-1]
  targets = pretrain_targets(
      x, mask, num_masked=num_masked, patch_size=patch_size, tubelet_size=tubelet_size,
      norm_pix_loss=norm_pix_loss, mean=mean, std=std)
  loss = jnp.mean(jnp.square(pred - targets), axis=(1, 2))
  frames = jnp.clip(_unnormalize(x, mean, std), 0.0, 1.0)
  patches = patchify(frames, patch_size, tubelet_size)  # [b, tokens, (p0 p1 p2 c)]
  _, masked = _split_indices(mask, num_masked)  # the order of pred
  if norm_pix_loss:
    mu, scale = (_gather(s, masked) for s in _patch_stats(patches, c))
    pred = (pred.reshape(*pred.shape[:2], -1, c) * scale + mu).reshape(pred.shape)
  rows = jnp.arange(x.shape[0])[:, None]
  recon_patches = jnp.zeros_like(patches).at[rows, masked].set(pred)
  m = mask[..., None]
  recon = jnp.where(m, recon_patches, patches)
  masked_in = jnp.where(m, 0.5, patches)
  images = [jnp.clip(unpatchify(p, x.shape[1:4], patch_size, tubelet_size), 0, 1)
            for p in (masked_in, recon)]
  return loss, frames, images[0], images[1]


class TubeletEmbed(nn.Module):
  """Non-overlapping ``tubelet × patch × patch`` embedding (the official Conv3d).

  Attributes:
    embed_dim, patch_size, tubelet_size: the projection.
    kernel_init: initialiser of the ``[tubelet, patch, patch, c, embed]`` kernel.
    impl: the kernel set of the product (`ops.resolve`).
  """
  embed_dim: int
  patch_size: int = 16
  tubelet_size: int = 2
  dtype: Dtype = jnp.float32
  # PyTorch's Conv3d default, kaiming_uniform(a=sqrt(5)): U(±1/sqrt(fan_in)).
  kernel_init: Any = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """``x: [batch, time, H, W, c]`` -> ``[batch, tokens, embed]``, tokens ``(t, h, w)``."""
    token_grid(x.shape[1], x.shape[2], self.patch_size, self.tubelet_size)
    if x.shape[2] != x.shape[3]:
      token_grid(x.shape[1], x.shape[3], self.patch_size, self.tubelet_size)
    c = x.shape[-1]
    kshape = (self.tubelet_size, self.patch_size, self.patch_size, c, self.embed_dim)
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(
            self.kernel_init, (None, None, None, None, "embed")), kshape, jnp.float32)
    bias = self.param(
        "bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        (self.embed_dim,), jnp.float32)
    # A stride-equal-to-kernel convolution is a matmul over non-overlapping tubelets.
    patches = patchify(x.astype(self.dtype), self.patch_size, self.tubelet_size)
    y = ops.product(patches, kernel.reshape(-1, self.embed_dim).astype(self.dtype),
                    self.impl)
    return y + bias.astype(self.dtype)


_xavier = nn.initializers.xavier_uniform()


def _sincos(tokens: int, dim: int, dtype: Dtype) -> jax.Array:
  return jnp.asarray(sinusoid_table(tokens, dim), dtype)[None]


class VideoMAE(nn.Module):
  """The VideoMAE classifier (official ``VisionTransformer`` of ``modeling_finetune``).

  Attributes:
    num_classes: head outputs; 0 returns the pooled features.
    patch_size, tubelet_size, embed_dim, depth, num_heads, mlp_ratio: the backbone.
    drop_path_rate: stochastic depth of the last block (official ``linspace(0, r, depth)``).
    dropout_rate: dropout before the head (official ``fc_drop_rate``); rng ``'dropout'``.
    init_values: layer scale (official ``init_values``; 0 = none, the released models).
    use_mean_pooling: mean over tokens then ``fc_norm`` (True, official default);
      False applies ``norm`` to every token and takes token 0, as the official code.
    init_scale: the head's initial weights are multiplied by it (official
      ``init_scale``, 0.001 in the fine-tuning scripts; its bias starts at 0).
    dtype: compute dtype; parameters are float32.
    impl: the kernel set, ``'auto'``, ``'cpu'``, ``'gpu'`` or ``'xla'`` (`ops.resolve`).
    remat: gradient checkpointing of the blocks, ``'none'``, ``'block'`` or ``'full'``
      (`transformer.remat_block`).
  """
  num_classes: int = 400
  patch_size: int = 16
  tubelet_size: int = 2
  embed_dim: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_ratio: float = 4.0
  drop_path_rate: float = 0.0
  dropout_rate: float = 0.0
  init_values: float = 0.0
  use_mean_pooling: bool = True
  init_scale: float = 0.001
  dtype: Dtype = jnp.float32
  impl: str = "auto"
  remat: str = "none"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """``x: [batch, time, H, W, c]`` normalised -> logits ``[batch, num_classes]``."""
    x = TubeletEmbed(self.embed_dim, self.patch_size, self.tubelet_size,
                     dtype=self.dtype, impl=self.impl, name="patch_embed")(x)
    x = x + _sincos(x.shape[1], self.embed_dim, self.dtype)
    x = transformer.blocks(
        x, depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
        drop_path_rate=self.drop_path_rate, init_values=self.init_values, dtype=self.dtype,
        kernel_init=transformer.trunc_normal, train=train, impl=self.impl,
        remat=self.remat)
    if self.use_mean_pooling:
      x = transformer.layer_norm(self.dtype, "fc_norm")(x.mean(axis=1))
    else:
      x = transformer.layer_norm(self.dtype, "norm")(x)[:, 0]
    self.sow("intermediates", "pre_logits", x)
    if not self.num_classes:
      return x
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return transformer.head(self.num_classes, self.dtype, self.init_scale, "classes",
                            transformer.trunc_normal, "head", impl=self.impl)(x)


class PretrainDecoder(nn.Module):
  """The pretraining decoder: blocks on all tokens, ``norm`` and ``head`` on the last k."""
  depth: int
  num_heads: int
  mlp_ratio: float
  out_dim: int
  drop_path_rate: float
  init_values: float
  dtype: Dtype
  impl: str = "auto"
  remat: str = "none"

  @nn.compact
  def __call__(self, h: jax.Array, k: int, *, train: bool) -> jax.Array:
    """``h: [batch, tokens, decoder_embed]`` -> ``[batch, k, out_dim]``."""
    h = transformer.blocks(
        h, depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
        drop_path_rate=self.drop_path_rate, init_values=self.init_values, dtype=self.dtype,
        kernel_init=_xavier, train=train, impl=self.impl, remat=self.remat)
    h = transformer.layer_norm(self.dtype, "norm")(h[:, -k:])
    return transformer.head(self.out_dim, self.dtype, 1.0, "patch", _xavier, "head",
                            impl=self.impl)(h)


class VideoMAEPretrain(nn.Module):
  """The VideoMAE masked autoencoder (official ``PretrainVisionTransformer``).

  The encoder (``patch_embed``, ``blocks_{i}``, ``norm``; the official ``encoder.*``)
  sees only the visible tokens; ``encoder_to_decoder`` (no bias) maps them to
  the decoder width, the decoder's sine-cosine table is added to them and to
  ``mask_token`` copies at the masked positions, ``[visible; masked]`` goes through the
  decoder, and the masked part through ``decoder/norm`` and ``decoder/head``.

  Attributes:
    mask_ratio: the tube-masking ratio masks are drawn with; fixes the static number of
      masked tokens, ``num_masked(num_frames, image_size)``.
    patch_size, tubelet_size, embed_dim, depth, num_heads, mlp_ratio: the encoder.
    decoder_embed_dim, decoder_depth, decoder_num_heads: the decoder.
    drop_path_rate: stochastic depth of the last block of the encoder and of the decoder.
    init_values: layer scale (0 = none).
    dtype: compute dtype; parameters are float32.
    impl: the kernel set, ``'auto'``, ``'cpu'``, ``'gpu'`` or ``'xla'`` (`ops.resolve`).
    remat: gradient checkpointing of the encoder and decoder blocks, ``'none'``,
      ``'block'`` or ``'full'`` (`transformer.remat_block`).
  """
  mask_ratio: float = 0.9
  patch_size: int = 16
  tubelet_size: int = 2
  embed_dim: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_ratio: float = 4.0
  decoder_embed_dim: int = 384
  decoder_depth: int = DECODER_DEPTH
  decoder_num_heads: int = 6
  drop_path_rate: float = 0.0
  init_values: float = 0.0
  dtype: Dtype = jnp.float32
  impl: str = "auto"
  remat: str = "none"

  def num_masked(self, num_frames: int, image_size: int) -> int:
    """Masked tokens per clip of ``num_frames`` frames of ``image_size``²."""
    t, p = token_grid(num_frames, image_size, self.patch_size, self.tubelet_size)
    return t * masked_per_slice(p, self.mask_ratio)

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool = False) -> jax.Array:
    """Reconstructs the masked tokens.

    Args:
      x: normalised clips ``[batch, time, H, W, c]``, H = W.
      mask: bool ``[batch, tokens]``, True = masked, from `tube_mask` at ``mask_ratio``.
      train: enables drop path (rng ``'drop_path'``).

    Returns:
      ``[batch, num_masked, tubelet·patch²·c]`` predicted pixels (normalised patches
      for ``norm_pix_loss``) of the masked tokens, in increasing token order.
    """
    if x.ndim != 5 or x.shape[2] != x.shape[3]:
      raise ValueError(
          f"VideoMAEPretrain needs clips [batch, time, H, W, c] with H = W, got {x.shape}.")
    batch, frames, size = x.shape[0], x.shape[1], x.shape[2]
    t, p = token_grid(frames, size, self.patch_size, self.tubelet_size)
    if mask.shape != (batch, t * p):
      raise ValueError(
          f"mask shape {mask.shape} should be (batch, tokens) = {(batch, t * p)}.")
    k = self.num_masked(frames, size)
    visible, masked = _split_indices(mask, k)

    # Encoder parameters sit at the top level (official: under ``encoder.``), named as
    # the classifier's, so a pretrained tree initialises a classifier by name.
    h = TubeletEmbed(self.embed_dim, self.patch_size, self.tubelet_size,
                     dtype=self.dtype, impl=self.impl, name="patch_embed")(x)
    h = h + _sincos(t * p, self.embed_dim, self.dtype)
    h = _gather(h, visible)
    h = transformer.blocks(
        h, depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
        drop_path_rate=self.drop_path_rate, init_values=self.init_values, dtype=self.dtype,
        kernel_init=_xavier, train=train, impl=self.impl, remat=self.remat)
    h = transformer.layer_norm(self.dtype, "norm")(h)
    h = transformer.dense(
        self.decoder_embed_dim, self.dtype,
        # official: not re-initialised, PyTorch's Linear default U(±1/sqrt(fan_in))
        nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
        ("embed", "decoder_embed"), impl=self.impl, use_bias=False,
        name="encoder_to_decoder")(h)
    mask_token = self.param(
        "mask_token", nn.with_logical_partitioning(
            transformer.trunc_normal, (None, None, "embed")),
        (1, 1, self.decoder_embed_dim), jnp.float32)
    pos = jnp.broadcast_to(_sincos(t * p, self.decoder_embed_dim, self.dtype),
                           (batch, t * p, self.decoder_embed_dim))
    h = jnp.concatenate(
        [h + _gather(pos, visible), mask_token.astype(self.dtype) + _gather(pos, masked)],
        axis=1)
    out_dim = self.tubelet_size * self.patch_size ** 2 * x.shape[-1]
    return PretrainDecoder(self.decoder_depth, self.decoder_num_heads, self.mlp_ratio,
                           out_dim, self.drop_path_rate, self.init_values, self.dtype,
                           self.impl, self.remat, name="decoder")(h, k, train=train)


def _classifier(size: str, num_classes: int = 400, image_size: int = 224,
                num_frames: int = 16, dtype: Dtype = jnp.float32, **kwargs) -> VideoMAE:
  """A classifier of official ``size``; ``kwargs`` override `VideoMAE` attributes.

  ``image_size`` and ``num_frames`` are checked against the patch and tubelet; the
  sine-cosine table follows whatever token grid the input has.
  """
  token_grid(num_frames, image_size, kwargs.get("patch_size", 16),
             kwargs.get("tubelet_size", 2))
  embed_dim, depth, num_heads, _, _ = SIZES[size]
  kw = dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads)
  kw.update(kwargs)
  return VideoMAE(num_classes=num_classes, dtype=dtype, **kw)


def _pretrainer(size: str, num_classes: int = 0, image_size: int = 224,
                num_frames: int = 16, dtype: Dtype = jnp.float32,
                dropout_rate: float = 0.0, **kwargs) -> VideoMAEPretrain:
  """A masked autoencoder of official ``size``; ``kwargs`` override `VideoMAEPretrain`."""
  token_grid(num_frames, image_size, kwargs.get("patch_size", 16),
             kwargs.get("tubelet_size", 2))
  if num_classes:
    raise ValueError(
        f"videomae_{size}_pretrain has no classification head; num_classes={num_classes} "
        "must be 0 (fine-tune with videomae_{size}).")
  if dropout_rate:
    raise ValueError("the VideoMAE pretrainer has no dropout; set dropout_rate=0.")
  embed_dim, depth, num_heads, dec_dim, dec_heads = SIZES[size]
  kw = dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            decoder_embed_dim=dec_dim, decoder_num_heads=dec_heads)
  kw.update(kwargs)
  return VideoMAEPretrain(dtype=dtype, **kw)


def videomae_s(**kwargs) -> VideoMAE:
  """VideoMAE ViT-S/16 classifier (384 wide, 12 blocks, 6 heads); kwargs as `_classifier`."""
  return _classifier("s", **kwargs)


def videomae_b(**kwargs) -> VideoMAE:
  """VideoMAE ViT-B/16 classifier (768 wide, 12 blocks, 12 heads)."""
  return _classifier("b", **kwargs)


def videomae_l(**kwargs) -> VideoMAE:
  """VideoMAE ViT-L/16 classifier (1024 wide, 24 blocks, 16 heads)."""
  return _classifier("l", **kwargs)


def videomae_s_pretrain(**kwargs) -> VideoMAEPretrain:
  """VideoMAE ViT-S/16 masked autoencoder, decoder 192 wide, 3 heads, 4 blocks."""
  return _pretrainer("s", **kwargs)


def videomae_b_pretrain(**kwargs) -> VideoMAEPretrain:
  """VideoMAE ViT-B/16 masked autoencoder, decoder 384 wide, 6 heads, 4 blocks."""
  return _pretrainer("b", **kwargs)


def videomae_l_pretrain(**kwargs) -> VideoMAEPretrain:
  """VideoMAE ViT-L/16 masked autoencoder, decoder 512 wide, 8 heads, 4 blocks."""
  return _pretrainer("l", **kwargs)
