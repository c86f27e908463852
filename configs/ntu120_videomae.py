"""NTU RGB+D 120 (RGB or depth; xsub or xset), VideoMAE ViT-B/16 with TIME
(time_jax.recipes.videomae; phases pretrain|finetune|k400)."""

from time_jax import recipes


def get_config(arg=None):
  return recipes.videomae("ntu120", arg, default_phase="finetune")
