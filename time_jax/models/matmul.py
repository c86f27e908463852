"""``x[..., in] @ w[in, out]`` with a weight gradient XLA:CPU computes cheaply.

JAX differentiates ``dot_general`` with respect to its right operand as a product giving
``[out, in]`` followed by a transpose. XLA:CPU's matrix products (YNNPACK) want their
contraction on the minor axis, so it moves the transpose into an operand, and fuses that
operand's producer (BatchNorm and ReLU, GELU, their gradients) into the transposed copy:
an elementwise computation done a second time with strided writes. In a ResNet-50
training step on two cores those copies took about a fifth of the time.

`matmul`'s custom VJP gives the same values (to float rounding): ``dx = g @ wᵀ`` and the
weight gradient as one product over the flattened leading axes of ``x`` and ``g`` giving
``[in, out]`` directly, with ``x`` behind an optimisation barrier so that the transposed
copy XLA still makes is a plain copy of the saved input, not a recomputation. Measured
on the ``bench/models.py --small`` steps (2 cores, old and new code alternated in one
process), together with the attention softmax of `videomae._softmax`: ResNet-50 -18 %,
ViT-B/16 -8 %, VideoMAE-B fine-tuning -11 %, pretraining -6 % per training step. On at
most `_FEW_ROWS` rows the weight gradient is instead a product with an explicitly
transposed input: the 90 %-masked VideoMAE-B pretraining step at batch 1 (20 visible
tokens) another -7 %, measured the same way.

A custom VJP supports reverse mode (``grad``, ``vjp``, ``jax.checkpoint``) but not forward
mode (``jvp``, ``jacfwd``). The models use it on a CPU only (`product`,
`dense_dot_general`; the ResNet convolutions' matrix-product form, which is the CPU's);
on GPUs they keep ``lax.dot_general``.
"""

from __future__ import annotations

import jax


def _product(x: jax.Array, w: jax.Array) -> jax.Array:
  return jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """``x: [..., in]``, ``w: [in, out]`` -> ``[..., out]`` in their (common) dtype."""
  return _product(x, w)


def _matmul_fwd(x, w):
  return _product(x, w), (x, w)


# Up to this many rows (tokens x batch), the weight gradient multiplies an explicitly
# transposed input: XLA:CPU's product contracting the leading axes of both operands is
# slow on few rows (0.44-1.01x the time for 8-64 rows of 768/3072-wide layers, 2 cores;
# mixed above). The 90 %-masked VideoMAE encoder at batch 1 sees 20 rows.
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


def _dense_dot_general(lhs, rhs, dimension_numbers, precision=None,
                       preferred_element_type=None, **kwargs):
  """`lax.dot_general`'s signature, `matmul` for the product `nn.Dense` asks for."""
  contracting, batch = dimension_numbers
  if (rhs.ndim == 2 and tuple(map(tuple, contracting)) == ((lhs.ndim - 1,), (0,))
      and not any(batch) and precision is None
      and preferred_element_type is None and not kwargs and lhs.dtype == rhs.dtype):
    return matmul(lhs, rhs)
  return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                             preferred_element_type=preferred_element_type, **kwargs)


def product(x: jax.Array, w: jax.Array) -> jax.Array:
  """``x: [..., in] @ w: [in, out]``: `matmul` on a CPU, ``lax.dot_general`` elsewhere."""
  return matmul(x, w) if jax.default_backend() == "cpu" else _product(x, w)


def dense_dot_general():
  """The ``dot_general`` for `flax.linen.Dense` on this backend: `matmul` on a CPU, else None

  (None: Dense's default, ``lax.dot_general``).
  """
  return _dense_dot_general if jax.default_backend() == "cpu" else None
