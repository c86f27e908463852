"""NTU RGB+D 60 (RGB or depth; xsub or xview), VideoMAE ViT-B/16 with TIME
(time_jax.recipes.videomae; phases pretrain|finetune|k400)."""

from time_jax import recipes


def get_config(arg=None):
  return recipes.videomae("ntu60", arg, default_phase="finetune")
