"""UWA3D Activity (depth, cross-subject), VideoMAE ViT-B/16 with TIME
(time_jax.recipes.videomae; phases pretrain|finetune|k400)."""

from time_jax import recipes


def get_config(arg=None):
  return recipes.videomae("uwa3d_activity", arg, default_phase="finetune")
