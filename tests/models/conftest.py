"""Shared helpers for the model tests."""

import jax
import pytest


@pytest.fixture
def perturbed():
  """``perturb(params) -> params``: every leaf plus 0.05·N(0, 1), in its own dtype.

  Zero-initialised heads, biases and layer scales would hide differences between two
  computations of the same model; the noise is the same for the same tree (key 1).
  """
  def perturb(params):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    return jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape, p.dtype)
                                     for p, k in zip(leaves, keys)])
  return perturb
