"""UWA3D Multiview II (RGB or depth, 12 cross-view splits), VideoMAE ViT-B/16 with TIME
(time_jax.recipes.videomae; phases pretrain|finetune|k400)."""

from time_jax import recipes


def get_config(arg=None):
  return recipes.videomae("uwa3d_multiview", arg, default_phase="k400")
