"""The N=1 baseline of configs/demo.py: one plain 64² frame per clip, same budget
(time_jax.recipes.demo)."""

from time_jax import recipes


def get_config(arg=None):
  del arg  # N is 1
  return recipes.demo(1)
