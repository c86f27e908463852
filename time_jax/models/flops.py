"""Model FLOPs of the backbones (VideoMAE, ViT, ResNet), for MFU.

Counts the multiply-adds of the matrix products (2 FLOPs each) of one forward pass per
clip, as MFU is defined (Chowdhery et al., 2022): model FLOPs, not the FLOPs the hardware
happens to execute (recomputation, fused kernels and elementwise ops are not counted),
so the figure does not depend on which attention kernel ran. A training step is
``3 × forward`` (the backward pass costs two forwards).

    flops.forward_flops(model, num_frames=16, image_size=224)   # per clip
"""

from __future__ import annotations

from flax import linen as nn

from time_jax.models import resnet, videomae, vit


def _encoder(tokens: int, dim: int, depth: int, mlp_ratio: float) -> float:
  """``depth`` pre-norm blocks over ``tokens``: qkv, proj, two MLP layers, attention."""
  mlp = int(dim * mlp_ratio)
  linear = 2 * tokens * (4 * dim * dim + 2 * dim * mlp)
  attention = 2 * 2 * tokens * tokens * dim  # q·kᵀ and weights·v
  return depth * (linear + attention)


def _resnet_frame(model: resnet.ResNet, size: int) -> float:
  """One ``size``² frame through `resnet.ResNet`: its convolutions and ``fc`` (every
  stride-2 layer, pooling included, gives ``ceil(size / 2)``)."""
  def half(h):
    return -(-h // 2)

  h = half(size)
  total = 2 * h * h * 7 * 7 * 3 * 64  # conv1
  h, channels = half(h), 64  # max pool
  for s, blocks in enumerate(model.stages):
    width = 64 * 2 ** s
    for b in range(blocks):
      stride = 2 if b == 0 and s > 0 else 1
      out = half(h) if stride == 2 else h
      total += 2 * h * h * channels * width          # 1×1
      total += 2 * out * out * 9 * width * width     # 3×3, the block's stride
      total += 2 * out * out * width * 4 * width     # 1×1, ×4
      if stride != 1 or channels != 4 * width:       # projection shortcut
        total += 2 * out * out * channels * 4 * width
      h, channels = out, 4 * width
  return total + 2 * channels * model.num_classes


def forward_flops(model: nn.Module, num_frames: int, image_size: int) -> float:
  """Forward FLOPs per clip of ``num_frames`` frames of ``image_size``².

  ``model``: `videomae.VideoMAE`, `videomae.VideoMAEPretrain` (at its mask ratio),
  `vit.ViT` or `resnet.ResNet` (both frame by frame); other models raise a
  ``ValueError``.
  """
  if isinstance(model, resnet.ResNet):
    return num_frames * _resnet_frame(model, image_size)
  if isinstance(model, (videomae.VideoMAE, videomae.VideoMAEPretrain)):
    t, p = videomae.token_grid(num_frames, image_size, model.patch_size, model.tubelet_size)
    tokens = t * p
    patch_in = model.tubelet_size * model.patch_size ** 2 * 3
    embed = 2 * tokens * patch_in * model.embed_dim
    if isinstance(model, videomae.VideoMAE):
      return (embed + _encoder(tokens, model.embed_dim, model.depth, model.mlp_ratio)
              + 2 * model.embed_dim * model.num_classes)
    masked = model.num_masked(num_frames, image_size)
    visible = tokens - masked
    dec = model.decoder_embed_dim
    return (embed  # the patch embedding sees every token; the encoder the visible ones
            + _encoder(visible, model.embed_dim, model.depth, model.mlp_ratio)
            + 2 * visible * model.embed_dim * dec
            + _encoder(tokens, dec, model.decoder_depth, model.mlp_ratio)
            + 2 * masked * dec * patch_in)
  if isinstance(model, vit.ViT):
    patches = (image_size // model.patch_size) ** 2
    tokens = patches + (1 if model.pool == "token" else 0)
    per_frame = (2 * patches * model.patch_size ** 2 * 3 * model.embed_dim
                 + _encoder(tokens, model.embed_dim, model.depth, model.mlp_ratio)
                 + 2 * model.embed_dim * model.num_classes)
    return num_frames * per_frame
  raise ValueError(f"No FLOP count for {type(model).__name__}: time_jax counts VideoMAE, "
                   "VideoMAEPretrain, ViT and ResNet.")
