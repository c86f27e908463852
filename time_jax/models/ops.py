"""The hardware-specific kernels of the models, and the one function that chooses them.

Every model takes ``impl: str = 'auto'`` (``config.model.kwargs.impl``) and passes it to
the functions here; `resolve` turns it into one kernel set:

* ``'cpu'``: matrix products through `matmul` (a custom VJP whose weight gradient
  XLA:CPU computes without recomputing the input's producer), convolutions up to 3×3 as
  im2col products (`im2col_conv`; larger ones, the ResNet stem, stay XLA convolutions),
  attention with an explicit softmax (`explicit_attention`);
* ``'gpu'``: XLA's products and convolutions, and cuDNN's fused (flash) attention
  (`fused_attention`) where the compute dtype is 16-bit, the head size allows it and the
  attention weights are not being captured; the explicit softmax otherwise;
* ``'xla'``: XLA's products and convolutions and the explicit softmax everywhere: a
  portable reference, and what TPUs get;
* ``'auto'``: ``'cpu'`` on a CPU, ``'gpu'`` on a GPU, ``'xla'`` elsewhere.

All sets compute the same function with the same parameters (to float rounding); they
differ in speed only. Measured effects: README.md, Benchmarks; ``bench/models.py --impl``.

A custom VJP supports reverse mode (``grad``, ``vjp``, ``jax.checkpoint``) but not forward
mode (``jvp``, ``jacfwd``): take forward-mode derivatives of a model with ``impl='xla'``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

IMPLS = ("auto", "cpu", "gpu", "xla")
_AUTO = {"cpu": "cpu", "gpu": "gpu"}  # jax.default_backend() -> set; anything else: xla


def resolve(impl: str) -> str:
  """The kernel set ``'cpu'``, ``'gpu'`` or ``'xla'`` that ``impl`` selects here.

  Args:
    impl: one of `IMPLS`; ``'auto'`` picks the set of ``jax.default_backend()``.

  Raises:
    ValueError: for any other name.
  """
  if impl not in IMPLS:
    raise ValueError(f"config.model.kwargs.impl={impl!r} is not a kernel set; use one of "
                     f"{IMPLS} ('auto': the set of this backend).")
  if impl == "auto":
    return _AUTO.get(jax.default_backend(), "xla")
  return impl


# XLA:CPU removes optimisation barriers early (its ``cse_barrier_expander`` pass) and runs
# CSE again after layout assignment, which merges the recomputation `jax.checkpoint`
# guards with those barriers back into the forward pass: on CPU, remat then saves no
# memory. Compiling with these options keeps the barriers, as XLA:GPU does until after
# scheduling.
CPU_REMAT_COMPILER_OPTIONS = {"xla_disable_hlo_passes": "cse_barrier_expander"}


def compiler_options(remat: str) -> dict[str, str] | None:
  """XLA options a step with ``model.remat`` needs on this backend (``jax.jit(...,
  compiler_options=...)``), or None: `CPU_REMAT_COMPILER_OPTIONS` on a CPU."""
  if remat != "none" and jax.default_backend() == "cpu":
    return dict(CPU_REMAT_COMPILER_OPTIONS)
  return None


# ----------------------------------------------------------------------------------------
# Matrix products.


def _product(x: jax.Array, w: jax.Array) -> jax.Array:
  return jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """``x: [..., in] @ w: [in, out]`` -> ``[..., out]``, with a CPU-friendly weight gradient.

  JAX differentiates ``dot_general`` with respect to its right operand as a product giving
  ``[out, in]`` followed by a transpose. XLA:CPU's products want their contraction on the
  minor axis, so it moves the transpose into an operand and fuses that operand's producer
  (BatchNorm and ReLU, GELU, their gradients) into the transposed copy: an elementwise
  computation done a second time with strided writes. Here ``dx = g @ wᵀ`` and the weight
  gradient is one product over the flattened leading axes of ``x`` and ``g`` giving
  ``[in, out]`` directly, with ``x`` behind an optimisation barrier, so that the transposed
  copy XLA still makes is a plain copy of the saved input, not a recomputation. Same
  values as ``lax.dot_general`` (to float rounding), in the operands' common dtype.
  """
  return _product(x, w)


def _matmul_fwd(x, w):
  return _product(x, w), (x, w)


# Up to this many rows (tokens x batch) the weight gradient multiplies an explicitly
# transposed input instead: XLA:CPU's product contracting the leading axes of both
# operands is slow on few rows (the 90 %-masked VideoMAE encoder at batch 1 sees 20).
_FEW_ROWS = 64


def _matmul_bwd(residuals, g):
  x, w = residuals
  dx = jax.lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())))  # [..., in]
  x2 = x.reshape(-1, x.shape[-1])  # [n, in]
  g2 = g.reshape(-1, g.shape[-1])  # [n, out]
  if x2.shape[0] <= _FEW_ROWS:
    dw = jax.lax.optimization_barrier(x2.T) @ g2  # [in, n] @ [n, out]
  else:
    # The barrier keeps XLA from fusing the producer of x (a BatchNorm, a GELU) into the
    # transposed copy the product needs: a plain transpose instead of a strided recompute.
    x2 = jax.lax.optimization_barrier(x2)
    dw = jax.lax.dot_general(x2, g2, (((0,), (0,)), ((), ())))  # [in, out]
  return dx.astype(x.dtype), dw.astype(w.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def matmul_dot_general(lhs, rhs, dimension_numbers, precision=None,
                       preferred_element_type=None, **kwargs):
  """`lax.dot_general`'s signature: `matmul` for the plain product `nn.Dense` asks for,
  ``lax.dot_general`` for anything else (batched, explicit precision, mixed dtypes)."""
  contracting, batch = dimension_numbers
  if (rhs.ndim == 2 and tuple(map(tuple, contracting)) == ((lhs.ndim - 1,), (0,))
      and not any(batch) and precision is None
      and preferred_element_type is None and not kwargs and lhs.dtype == rhs.dtype):
    return matmul(lhs, rhs)
  return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                             preferred_element_type=preferred_element_type, **kwargs)


def product(x: jax.Array, w: jax.Array, impl: str) -> jax.Array:
  """``x: [..., in] @ w: [in, out]`` -> ``[..., out]``: `matmul` for ``'cpu'``, else XLA's."""
  return matmul(x, w) if resolve(impl) == "cpu" else _product(x, w)


def dense_dot_general(impl: str):
  """The ``dot_general`` of `flax.linen.Dense` layers: `matmul_dot_general` for ``'cpu'``,
  else None (Dense's default, ``lax.dot_general``)."""
  return matmul_dot_general if resolve(impl) == "cpu" else None


# ----------------------------------------------------------------------------------------
# Convolutions.


def xla_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """XLA's convolution with PyTorch's symmetric padding ``(k - 1) // 2``.

  Args:
    x: ``[images, h, w, in]``.
    kernel: ``[k, k, in, out]`` in ``x``'s dtype.
    stride: the same along both axes.

  Returns:
    ``[images, ceil(h/stride), ceil(w/stride), out]`` for odd ``k``.
  """
  pad = (kernel.shape[0] - 1) // 2
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def im2col_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """`xla_conv` computed as one `matmul` (same arguments and result).

  A 1×1 convolution is a product over channels after striding; a k×k one a product with
  the ``k·k`` shifted views of the padded input stacked along channels (im2col), which
  multiplies the activation memory by ``k²``. The point is `matmul`'s weight gradient,
  which XLA:CPU computes without the transposed recomputations of its convolution's.
  """
  k, s, pad = kernel.shape[0], stride, (kernel.shape[0] - 1) // 2
  if k == 1:
    return matmul(x[:, ::s, ::s], kernel[0, 0])
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  h = (x.shape[1] + 2 * pad - k) // s + 1
  w = (x.shape[2] + 2 * pad - k) // s + 1
  views = [xp[:, i:i + s * (h - 1) + 1:s, j:j + s * (w - 1) + 1:s]
           for i in range(k) for j in range(k)]
  return matmul(jnp.concatenate(views, axis=-1), kernel.reshape(-1, kernel.shape[-1]))


_IM2COL_MAX_KERNEL = 3  # larger kernels (the 7×7 stem) stay XLA convolutions on 'cpu'


def conv(x: jax.Array, kernel: jax.Array, stride: int, impl: str) -> jax.Array:
  """A bias-free convolution, `xla_conv`'s arguments and result: `im2col_conv` for
  ``'cpu'`` and kernels up to 3×3, `xla_conv` otherwise."""
  if resolve(impl) == "cpu" and kernel.shape[0] <= _IM2COL_MAX_KERNEL:
    return im2col_conv(x, kernel, stride)
  return xla_conv(x, kernel, stride)


# ----------------------------------------------------------------------------------------
# Attention.


@jax.custom_jvp
def softmax(logits: jax.Array) -> jax.Array:
  """Softmax over the last axis, differentiated as ``y * (dx - sum(y * dx))``.

  `jax.nn.softmax` differentiates through its exp and division unless the global
  ``jax_softmax_custom_jvp`` flag is set, which costs several more passes over
  ``[batch, heads, q, k]`` in the backward pass. Used by every kernel set.
  """
  unnormalized = jnp.exp(logits - logits.max(-1, keepdims=True))  # never differentiated
  return unnormalized / unnormalized.sum(-1, keepdims=True)


@softmax.defjvp
def _softmax_jvp(primals, tangents):
  (logits,), (logits_dot,) = primals, tangents
  y = softmax(logits)
  return y, y * (logits_dot - jnp.sum(y * logits_dot, -1, keepdims=True))


def explicit_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                       scale: float) -> tuple[jax.Array, jax.Array]:
  """``q, k, v: [batch, tokens, heads, head_dim]`` -> (out like ``q``, weights).

  ``weights: [batch, heads, q, k]``, the softmax in float32 cast back to ``q``'s dtype.
  Heads are moved before tokens first: XLA:CPU's batched products run faster over a
  leading batch of ``batch x heads`` than with heads between the token axes.
  """
  q, k, v = (jnp.swapaxes(a, -3, -2) for a in (q, k, v))  # [batch, heads, tokens, d]
  logits = jnp.einsum("...qd,...kd->...qk", q * jnp.asarray(scale, q.dtype), k)
  weights = softmax(logits.astype(jnp.float32)).astype(q.dtype)
  out = jnp.einsum("...qk,...kd->...qd", weights, v)
  return jnp.swapaxes(out, -3, -2), weights


def fused_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float,
                    implementation: str) -> jax.Array:
  """`jax.nn.dot_product_attention`: ``q, k, v: [batch, tokens, heads, head_dim]`` -> same.

  cuDNN trains only on even token counts: an odd count (a class token plus an even number
  of patches) gets one zero token appended that the sequence lengths mask out of every key,
  and its output row is dropped.

  Args:
    implementation: ``'cudnn'`` (`fused_kernel`), or ``'xla'`` to run the same wiring
      anywhere (tests).
  """
  tokens = q.shape[1]
  if tokens % 2 == 0:
    return jax.nn.dot_product_attention(q, k, v, scale=scale, implementation=implementation)
  q, k, v = (jnp.pad(a, ((0, 0), (0, 1), (0, 0), (0, 0))) for a in (q, k, v))
  lengths = jnp.full((q.shape[0],), tokens, jnp.int32)
  out = jax.nn.dot_product_attention(q, k, v, scale=scale, query_seq_lengths=lengths,
                                     key_value_seq_lengths=lengths,
                                     implementation=implementation)
  return out[:, :tokens]


def fused_kernel(impl: str, dtype: Any, head_dim: int) -> str | None:
  """The `fused_attention` implementation for a layer, or None for `explicit_attention`.

  cuDNN's fused (flash) attention, for ``'gpu'`` only, needs a 16-bit compute dtype and a
  head size that is a multiple of 8 up to 128.
  """
  if (resolve(impl) == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)
      and head_dim % 8 == 0 and head_dim <= 128):
    return "cudnn"
  return None


def attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float, *, impl: str,
              need_weights: bool) -> tuple[jax.Array, jax.Array | None]:
  """Multi-head attention with the kernel of ``impl``.

  Args:
    q, k, v: ``[batch, tokens, heads, head_dim]``.
    scale: multiplies the logits (``head_dim ** -0.5``).
    impl: one of `IMPLS`.
    need_weights: the caller captures the weights: always the explicit softmax.

  Returns:
    ``(out [batch, tokens, heads, head_dim], weights [batch, heads, q, k] or None)``;
    the weights are None where the fused kernel ran.
  """
  fused = None if need_weights else fused_kernel(impl, q.dtype, q.shape[-1])
  if fused:
    return fused_attention(q, k, v, scale, fused), None
  return explicit_attention(q, k, v, scale)
