"""Model FLOPs of the transformer backbones, for MFU.

Counts the multiply-adds of the matrix products (2 FLOPs each) of one forward pass per
clip, as MFU is defined (Chowdhery et al., 2022): model FLOPs, not the FLOPs the hardware
happens to execute (recomputation, fused kernels and elementwise ops are not counted),
so the figure does not depend on which attention kernel ran. A training step is
``3 × forward`` (the backward pass costs two forwards).

    flops.forward_flops(model, num_frames=16, image_size=224)   # per clip
"""

from __future__ import annotations

from flax import linen as nn

from time_jax.models import videomae, vit


def _encoder(tokens: int, dim: int, depth: int, mlp_ratio: float) -> float:
  """``depth`` pre-norm blocks over ``tokens``: qkv, proj, two MLP layers, attention."""
  mlp = int(dim * mlp_ratio)
  linear = 2 * tokens * (4 * dim * dim + 2 * dim * mlp)
  attention = 2 * 2 * tokens * tokens * dim  # q·kᵀ and weights·v
  return depth * (linear + attention)


def forward_flops(model: nn.Module, num_frames: int, image_size: int) -> float:
  """Forward FLOPs per clip of ``num_frames`` frames of ``image_size``².

  ``model``: `videomae.VideoMAE`, `videomae.VideoMAEPretrain` (at its mask ratio) or
  `vit.ViT` (frame by frame); other models raise a ``ValueError``.
  """
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
                   "VideoMAEPretrain and ViT.")
