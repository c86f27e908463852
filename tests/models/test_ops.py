"""The kernels of `time_jax.models.ops` compute JAX's functions, and ``impl`` picks them.

`matmul` (custom VJP), `product`, `matmul_dot_general` (what `nn.Dense` uses for
``impl='cpu'``), `im2col_conv` and the attention softmax (custom JVP) are checked against
plain ``lax.dot_general`` / ``lax.conv_general_dilated`` / `jax.nn.softmax` on values and
gradients; every model gives the outputs and gradients of ``impl='xla'`` (XLA's own
products, convolutions and autodiff) with ``impl='cpu'``; ``'auto'`` is ``'cpu'`` here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from time_jax import models
from time_jax.models import ops
from time_jax.models import resnet
from time_jax.models import videomae as vm


def _rand(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _einsum(x, w):
  return jnp.einsum("...i,io->...o", x, w)


def test_resolve_auto_is_this_backends_set_and_names_are_checked():
  assert jax.default_backend() == "cpu"  # this suite runs on a CPU
  assert ops.resolve("auto") == "cpu"
  for impl in ("cpu", "gpu", "xla"):
    assert ops.resolve(impl) == impl
  with pytest.raises(ValueError, match=r"config\.model\.kwargs\.impl='matmul'.*'xla'"):
    ops.resolve("matmul")


@pytest.mark.parametrize("name", ["resnet50", "vit_ti16", "videomae_s", "videomae_s_pretrain"])
def test_an_unknown_impl_is_a_clear_error(name):
  kw = dict(stages=(1,)) if name == "resnet50" else dict(patch_size=8, depth=1)
  if name.endswith("pretrain"):
    kw.update(decoder_depth=1, mask_ratio=0.5)
  model = models.create(name, num_classes=0, image_size=16, num_frames=2, impl="fast", **kw)
  x = jnp.zeros((1, 2, 16, 16, 3))
  args = (x, vm.tube_mask(jax.random.key(0), 1, 2, 16, 8, 2, 0.5)) if "pretrain" in name else (x,)
  with pytest.raises(ValueError, match=r"config\.model\.kwargs\.impl='fast'"):
    model.init(jax.random.key(0), *args)


# Up to ops._FEW_ROWS rows the weight gradient takes another form: both are checked.
@pytest.mark.parametrize("shape", [(7, 5), (2, 9, 5), (2, 3, 4, 5), (130, 5), (2, 40, 5)])
def test_matmul_values_and_gradients_match_autodiff(shape):
  x, w = _rand(shape, 0), _rand((5, 6), 1)
  upstream = _rand(shape[:-1] + (6,), 2)

  def loss(fn):
    # A nonlinearity between the product and the loss, as in a network.
    return jax.jit(jax.value_and_grad(
        lambda x, w: jnp.sum(jnp.tanh(fn(x, w)) * upstream), argnums=(0, 1)))

  (ours, (dx, dw)), (ref, (rdx, rdw)) = loss(ops.matmul)(x, w), loss(_einsum)(x, w)
  np.testing.assert_allclose(ours, ref, rtol=1e-6)
  np.testing.assert_allclose(dx, rdx, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dw, rdw, rtol=1e-5, atol=1e-6)
  assert dx.shape == x.shape and dw.shape == w.shape
  for impl in ops.IMPLS:
    np.testing.assert_allclose(ops.product(x, w, impl), _einsum(x, w), rtol=1e-6)


def test_matmul_keeps_a_16_bit_dtype():
  x, w = _rand((4, 8), 0).astype(jnp.bfloat16), _rand((8, 3), 1).astype(jnp.bfloat16)
  dx, dw = jax.grad(lambda x, w: jnp.sum(ops.matmul(x, w).astype(jnp.float32)),
                    argnums=(0, 1))(x, w)
  assert ops.matmul(x, w).dtype == dx.dtype == dw.dtype == jnp.bfloat16


def test_dense_dot_general_is_matmul_for_cpu_and_matches_default_dense():
  assert ops.dense_dot_general("auto") is ops.matmul_dot_general  # on this CPU
  assert ops.dense_dot_general("cpu") is ops.matmul_dot_general
  assert ops.dense_dot_general("xla") is None and ops.dense_dot_general("gpu") is None
  x = _rand((2, 5, 8), 0)
  ours = nn.Dense(4, dot_general=ops.dense_dot_general("cpu"))
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


def test_matmul_dot_general_passes_other_products_to_lax():
  # A batched product or an explicit precision is not Dense's plain case: lax computes it.
  lhs, rhs = _rand((3, 4, 5), 0), _rand((3, 5, 2), 1)
  dims = (((2,), (1,)), ((0,), (0,)))
  np.testing.assert_allclose(ops.matmul_dot_general(lhs, rhs, dims),
                             jax.lax.dot_general(lhs, rhs, dims), rtol=1e-6)
  x, w = _rand((4, 5), 2), _rand((5, 2), 3)
  plain = (((1,), (0,)), ((), ()))
  np.testing.assert_allclose(
      ops.matmul_dot_general(x, w, plain, precision=jax.lax.Precision.HIGHEST),
      x @ w, rtol=1e-6)


@pytest.mark.parametrize("kernel,stride,size", [(1, 1, 9), (1, 2, 9), (3, 1, 8), (3, 2, 9),
                                                (7, 2, 11)])
def test_im2col_conv_equals_xla_convolution(kernel, stride, size):
  x, k = _rand((2, size, size, 5), 0), _rand((kernel, kernel, 5, 6), 1)
  pad = (kernel - 1) // 2
  want = jax.lax.conv_general_dilated(x, k, (stride, stride), ((pad, pad), (pad, pad)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = ops.im2col_conv(x, k, stride)
  assert got.shape == want.shape == (2, -(-size // stride), -(-size // stride), 6)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(ops.xla_conv(x, k, stride), want)
  # 'cpu' takes the products up to 3x3 only; every set computes the same convolution.
  for impl in ops.IMPLS:
    np.testing.assert_allclose(ops.conv(x, k, stride, impl), want, rtol=1e-5, atol=1e-5)


def test_resnet_conv_module_takes_the_kernel_of_its_impl():
  x = _rand((2, 9, 9, 5), 0)
  conv = resnet.Conv(6, 3, 2, impl="xla")
  variables = conv.init(jax.random.key(1), x)
  kernel = variables["params"]["kernel"].value
  np.testing.assert_array_equal(conv.apply(variables, x), ops.xla_conv(x, kernel, 2))
  np.testing.assert_array_equal(conv.clone(impl="cpu").apply(variables, x),
                                ops.im2col_conv(x, kernel, 2))


def test_attention_softmax_matches_jax_in_value_forward_and_reverse_mode():
  logits = 3 * _rand((2, 3, 5, 7), 0)
  tangent = _rand((2, 3, 5, 7), 1)
  np.testing.assert_allclose(ops.softmax(logits), jax.nn.softmax(logits, -1), rtol=1e-6)
  _, ours = jax.jvp(ops.softmax, (logits,), (tangent,))
  _, ref = jax.jvp(lambda l: jax.nn.softmax(l, -1), (logits,), (tangent,))
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
  g_ours = jax.grad(lambda l: jnp.sum(ops.softmax(l) * tangent))(logits)
  g_ref = jax.grad(lambda l: jnp.sum(jax.nn.softmax(l, -1) * tangent))(logits)
  np.testing.assert_allclose(g_ours, g_ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, kw", [
    ("resnet50", dict(stages=(1, 1))),
    ("vit_ti16", dict(embed_dim=32, depth=1, num_heads=2, patch_size=8)),
    ("videomae_b", dict(embed_dim=32, depth=1, num_heads=2, patch_size=8)),
    ("videomae_b_pretrain", dict(embed_dim=32, depth=1, num_heads=2, patch_size=8,
                                 decoder_embed_dim=16, decoder_num_heads=2, num_classes=0)),
])
def test_model_outputs_and_gradients_equal_those_of_impl_xla(name, kw, perturbed):
  kw = dict(dict(num_classes=3), **kw)
  x = _rand((2, 2, 32, 32, 3), 0)
  args = (x,)
  if "pretrain" in name:
    kw["mask_ratio"] = 0.75
    args = (x, vm.tube_mask(jax.random.key(2), 2, 2, 32, 8, 2, 0.75))
  model = models.create(name, image_size=32, num_frames=2, impl="cpu", **kw)
  variables = jax.jit(model.init)(jax.random.key(0), *args)
  params = perturbed(variables["params"])
  mutable = [k for k in variables if k != "params"] or False

  def run(model):
    def loss(params):
      out = model.apply({**variables, "params": params}, *args, train=True, mutable=mutable)
      out = out[0] if mutable else out
      return jnp.sum(out ** 2), out
    return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

  (_, ours), g_ours = run(model)
  (_, ref), g_ref = run(model.clone(impl="xla"))
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
