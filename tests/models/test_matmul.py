"""The CPU-fast products and softmax differentiate to the same values as JAX's own rules.

`matmul` (custom VJP), `product`, `dense_dot_general` (what `nn.Dense` uses on a CPU) and
the attention softmax (custom JVP) are checked against plain ``lax.dot_general`` /
`jax.nn.softmax` on values and gradients; a model built with them (on this CPU) gives the
gradients of one built with XLA's default products.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from time_jax import models
from time_jax.models import matmul as mm
from time_jax.models import resnet
from time_jax.models import videomae as vm


def _rand(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _einsum(x, w):
  return jnp.einsum("...i,io->...o", x, w)


# Up to mm._FEW_ROWS rows the weight gradient takes another form: both are checked.
@pytest.mark.parametrize("shape", [(7, 5), (2, 9, 5), (2, 3, 4, 5), (130, 5), (2, 40, 5)])
def test_matmul_values_and_gradients_match_autodiff(shape):
  x, w = _rand(shape, 0), _rand((5, 6), 1)
  upstream = _rand(shape[:-1] + (6,), 2)

  def loss(fn):
    # A nonlinearity between the product and the loss, as in a network.
    return jax.jit(jax.value_and_grad(
        lambda x, w: jnp.sum(jnp.tanh(fn(x, w)) * upstream), argnums=(0, 1)))

  (ours, (dx, dw)), (ref, (rdx, rdw)) = loss(mm.matmul)(x, w), loss(_einsum)(x, w)
  np.testing.assert_allclose(ours, ref, rtol=1e-6)
  np.testing.assert_allclose(dx, rdx, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dw, rdw, rtol=1e-5, atol=1e-6)
  assert dx.shape == x.shape and dw.shape == w.shape
  np.testing.assert_allclose(mm.product(x, w), _einsum(x, w), rtol=1e-6)


def test_matmul_keeps_a_16_bit_dtype():
  x, w = _rand((4, 8), 0).astype(jnp.bfloat16), _rand((8, 3), 1).astype(jnp.bfloat16)
  dx, dw = jax.grad(lambda x, w: jnp.sum(mm.matmul(x, w).astype(jnp.float32)),
                    argnums=(0, 1))(x, w)
  assert mm.matmul(x, w).dtype == dx.dtype == dw.dtype == jnp.bfloat16


def test_dense_dot_general_is_used_on_cpu_and_matches_default_dense():
  assert mm.dense_dot_general() is mm._dense_dot_general  # this suite runs on a CPU
  x = _rand((2, 5, 8), 0)
  ours = nn.Dense(4, dot_general=mm.dense_dot_general())
  default = nn.Dense(4)
  params = default.init(jax.random.key(0), x)

  def grads(module):
    return jax.grad(lambda p, x: jnp.sum(jnp.sin(module.apply(p, x))), argnums=(0, 1))(
        params, x)

  (gp, gx), (rp, rx) = grads(ours), grads(default)
  np.testing.assert_allclose(ours.apply(params, x), default.apply(params, x), rtol=1e-6)
  np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(rp)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dense_dot_general_passes_other_products_to_lax():
  # A batched product or an explicit precision is not Dense's plain case: lax computes it.
  lhs, rhs = _rand((3, 4, 5), 0), _rand((3, 5, 2), 1)
  dims = (((2,), (1,)), ((0,), (0,)))
  np.testing.assert_allclose(mm._dense_dot_general(lhs, rhs, dims),
                             jax.lax.dot_general(lhs, rhs, dims), rtol=1e-6)
  x, w = _rand((4, 5), 2), _rand((5, 2), 3)
  plain = (((1,), (0,)), ((), ()))
  np.testing.assert_allclose(
      mm._dense_dot_general(x, w, plain, precision=jax.lax.Precision.HIGHEST),
      x @ w, rtol=1e-6)


def test_attention_softmax_matches_jax_in_value_forward_and_reverse_mode():
  logits = 3 * _rand((2, 3, 5, 7), 0)
  tangent = _rand((2, 3, 5, 7), 1)
  np.testing.assert_allclose(vm._softmax(logits), jax.nn.softmax(logits, -1), rtol=1e-6)
  _, ours = jax.jvp(vm._softmax, (logits,), (tangent,))
  _, ref = jax.jvp(lambda l: jax.nn.softmax(l, -1), (logits,), (tangent,))
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
  g_ours = jax.grad(lambda l: jnp.sum(vm._softmax(l) * tangent))(logits)
  g_ref = jax.grad(lambda l: jnp.sum(jax.nn.softmax(l, -1) * tangent))(logits)
  np.testing.assert_allclose(g_ours, g_ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, kw", [
    ("resnet50", dict(stages=(1, 1))),
    ("videomae_b", dict(embed_dim=32, depth=1, num_heads=2, patch_size=8)),
])
def test_model_gradients_equal_those_with_xla_default_products(name, kw, monkeypatch,
                                                                 perturbed):
  model = models.create(name, num_classes=3, image_size=32, num_frames=2, **kw)
  x = _rand((2, 2, 32, 32, 3), 0)
  variables = jax.jit(model.init)(jax.random.key(0), x)
  params = perturbed(variables["params"])
  mutable = [k for k in variables if k != "params"] or False

  def grads():
    def loss(params):
      out = model.apply({**variables, "params": params}, x, train=True, mutable=mutable)
      logits = out[0] if mutable else out
      return jnp.sum(logits ** 2)
    return jax.jit(jax.grad(loss))(params)

  ours = grads()
  monkeypatch.setattr(resnet, "matmul", mm._product)
  monkeypatch.setattr(vm, "product", mm._product)
  monkeypatch.setattr(vm, "dense_dot_general", lambda: None)
  ref = grads()
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
