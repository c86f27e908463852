"""Demo: a tiny VideoMAE with TIME (N=2) on the synthetic temporal dataset, on a CPU
(time_jax.recipes.demo; the argument is N, e.g. configs/demo.py:3)."""

from time_jax import recipes


def get_config(arg=None):
  return recipes.demo(int(arg or 2))
