"""HMDB51 (official splits 1-3), VideoMAE ViT-B/16 with TIME (time_jax.recipes.videomae;
phases pretrain|finetune|k400)."""

from time_jax import recipes


def get_config(arg=None):
  return recipes.videomae("hmdb51", arg, default_phase="finetune")
