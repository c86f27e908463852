"""The pre-norm transformer that ViT and VideoMAE share: attention, MLP, blocks, builders.

The official VideoMAE / timm layout: ``Block`` holds ``norm1``, ``attn/{qkv, proj}``
(with ``q_bias``/``v_bias``, or timm's one ``qkv`` bias), ``norm2``, ``mlp/{fc1, fc2}``
with exact (erf) GELU and optional layer scale ``gamma_1``/``gamma_2``; LayerNorm eps
1e-6. `blocks` creates ``blocks_{i}`` directly in the calling module, so the parameter
trees of the models (and their ports and checkpoints) name the blocks at their top level.

Tokens are ``x: [batch, tokens, embed]``. Blocks sow ``attn/attention_weights``
(``[batch, heads, tokens, tokens]``) and ``features`` (their output) into
``'intermediates'`` when that collection is mutable. Parameters are float32 with logical
axis names (``embed``, ``mlp``, ``heads``); ``dtype`` is the compute dtype; ``impl``
chooses the kernels (`time_jax.models.ops.resolve`); ``remat`` the gradient
checkpointing of the blocks (`remat_block`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from time_jax.models import ops

Dtype = Any

LN_EPS = 1e-6  # official: partial(nn.LayerNorm, eps=1e-6) everywhere
trunc_normal = nn.initializers.truncated_normal(0.02)  # timm's trunc_normal_(std=.02)


def layer_norm(dtype: Dtype, name: str, axis_name: str = "embed") -> nn.LayerNorm:
  """LayerNorm (eps `LN_EPS`), float32 ``scale``/``bias`` on the logical axis ``axis_name``."""
  return nn.LayerNorm(
      epsilon=LN_EPS, dtype=dtype, param_dtype=jnp.float32, name=name,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones, (axis_name,)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axis_name,)))


def dense(features: int, dtype: Dtype, kernel_init, axes: tuple[str, str], *,
          impl: str, use_bias: bool = True, name: str | None = None) -> nn.Dense:
  """`nn.Dense` with float32 parameters on logical ``axes`` (in, out), a zero bias, and
  the product of ``impl`` (`ops.dense_dot_general`)."""
  return nn.Dense(
      features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name,
      dot_general=ops.dense_dot_general(impl),
      kernel_init=nn.with_logical_partitioning(kernel_init, axes),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[-1:]))


def head(num_classes: int, dtype: Dtype, init_scale: float, out_axis: str, kernel_init,
         name: str, *, impl: str) -> nn.Dense:
  """The output layer ``[embed] -> [num_classes]``, its initial kernel times ``init_scale``."""
  def init(key, shape, dtype=jnp.float32):
    return kernel_init(key, shape, dtype) * init_scale
  return dense(num_classes, dtype, init, ("embed", out_axis), impl=impl, name=name)


class Attention(nn.Module):
  """Official VideoMAE attention: ``qkv`` without bias plus ``q_bias`` and ``v_bias``.

  Sows the softmax weights ``attention_weights: [batch, heads, q, k]`` into
  ``'intermediates'`` when that collection is mutable; the softmax is then computed
  explicitly. Otherwise the kernel is ``impl``'s (`ops.attention`): with ``'gpu'`` in
  bfloat16/float16, cuDNN's fused kernel, never materialising ``[q, k]`` (same function,
  float32 softmax accumulation, 16-bit rounding in other places).
  """
  num_heads: int
  dtype: Dtype = jnp.float32
  kernel_init: Any = trunc_normal
  qkv_bias: bool = False  # True: one ``qkv`` bias (timm's ViT) instead of q/v biases
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """``x: [batch, tokens, embed]`` -> ``[batch, tokens, embed]``."""
    dim = x.shape[-1]
    if dim % self.num_heads:
      raise ValueError(f"embed_dim={dim} is not a multiple of num_heads={self.num_heads}.")
    head_dim = dim // self.num_heads
    qkv = dense(3 * dim, self.dtype, self.kernel_init, ("embed", "heads"), impl=self.impl,
                use_bias=self.qkv_bias, name="qkv")(x)
    if not self.qkv_bias:
      zeros = nn.initializers.zeros
      q_bias = self.param("q_bias", nn.with_logical_partitioning(zeros, ("heads",)),
                          (dim,), jnp.float32)
      v_bias = self.param("v_bias", nn.with_logical_partitioning(zeros, ("heads",)),
                          (dim,), jnp.float32)
      qkv = qkv + jnp.concatenate([q_bias, jnp.zeros_like(q_bias), v_bias]).astype(self.dtype)
    qkv = qkv.reshape(*x.shape[:-1], 3, self.num_heads, head_dim)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    capture = self.is_mutable_collection("intermediates")
    out, weights = ops.attention(q, k, v, head_dim ** -0.5, impl=self.impl,
                                 need_weights=capture)
    if weights is not None:
      self.sow("intermediates", "attention_weights", weights)
    return dense(dim, self.dtype, self.kernel_init, ("heads", "embed"), impl=self.impl,
                 name="proj")(out.reshape(x.shape))


class Mlp(nn.Module):
  """``fc1`` -> exact (erf) GELU, as torch ``nn.GELU`` -> ``fc2``."""
  hidden: int
  dtype: Dtype = jnp.float32
  kernel_init: Any = trunc_normal
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """``x: [..., embed]`` -> ``[..., embed]``."""
    y = dense(self.hidden, self.dtype, self.kernel_init, ("embed", "mlp"), impl=self.impl,
              name="fc1")(x)
    y = nn.gelu(y, approximate=False)
    return dense(x.shape[-1], self.dtype, self.kernel_init, ("mlp", "embed"),
                 impl=self.impl, name="fc2")(y)


class Block(nn.Module):
  """Official pre-norm block: ``x + γ1·attn(norm1(x))``, then ``+ γ2·mlp(norm2(x))``.

  ``gamma_1``/``gamma_2`` (layer scale) exist only when ``init_values > 0``. Drop path
  (stochastic depth per sample) uses the rng ``'drop_path'`` when training. Sows the
  block output as ``features``.
  """
  num_heads: int
  mlp_dim: int
  drop_path: float = 0.0
  init_values: float = 0.0
  dtype: Dtype = jnp.float32
  kernel_init: Any = trunc_normal
  qkv_bias: bool = False
  impl: str = "auto"

  def _drop_path(self, y: jax.Array, train: bool) -> jax.Array:
    if not train or self.drop_path == 0.0:
      return y
    keep = 1.0 - self.drop_path
    mask = jax.random.bernoulli(self.make_rng("drop_path"), keep,
                                (y.shape[0],) + (1,) * (y.ndim - 1))
    return jnp.where(mask, y / keep, 0).astype(y.dtype)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """``x: [batch, tokens, embed]`` -> same shape.

    ``train`` is positional so that `nn.remat` can take it as a static argument.
    """
    dim = x.shape[-1]
    y = Attention(self.num_heads, self.dtype, self.kernel_init, self.qkv_bias, self.impl,
                  name="attn")(layer_norm(self.dtype, "norm1")(x))
    if self.init_values:
      y = y * self.param("gamma_1", nn.with_logical_partitioning(
          nn.initializers.constant(self.init_values), ("embed",)), (dim,), jnp.float32)
    x = x + self._drop_path(y.astype(x.dtype), train)
    y = Mlp(self.mlp_dim, self.dtype, self.kernel_init, self.impl, name="mlp")(
        layer_norm(self.dtype, "norm2")(x))
    if self.init_values:
      y = y * self.param("gamma_2", nn.with_logical_partitioning(
          nn.initializers.constant(self.init_values), ("embed",)), (dim,), jnp.float32)
    x = x + self._drop_path(y.astype(x.dtype), train)
    self.sow("intermediates", "features", x)
    return x


# config.model.remat -> the jax.checkpoint policy of each Block (see `remat_block`).
REMAT_POLICIES = {
    "block": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,
}
REMATS = ("none",) + tuple(REMAT_POLICIES)



def remat_block(remat: str) -> type[Block]:
  """`Block`, or `Block` under `nn.remat` (gradient checkpointing): same parameters.

  What the backward pass of a block finds saved from the forward pass:

  * ``'none'``: everything it needs.
  * ``'block'``: the outputs of the products with the weights (``qkv``, ``proj``,
    ``fc1``, ``fc2``; ``jax.checkpoint_policies.dots_with_no_batch_dims_saveable``),
    ``[batch, tokens, features]``, linear in the tokens; the attention (its two batched
    products and the softmax), the GELU and the LayerNorms are recomputed. Saving the
    attention products too (``checkpoint_dots``) would recompute only elementwise
    operations but keep ``[batch, heads, tokens, tokens]`` logits per block, quadratic
    in the tokens (1568 for a 16×224² VideoMAE clip); ``bench/memory.py --policies``
    compares the two.
  * ``'full'``: only the block's input; the whole block is computed twice.

  Drop path recomputes the same masks (its rng is an input of the block). Without
  differentiation nothing is recomputed, and the blocks sow into ``'intermediates'``
  as without remat. On CPU the step must compile with `ops.compiler_options`.

  Raises:
    ValueError: ``remat`` is not one of `REMATS`.
  """
  if remat == "none":
    return Block
  if remat not in REMAT_POLICIES:
    raise ValueError(f"config.model.remat={remat!r}; use one of {REMATS}.")
  return nn.remat(Block, policy=REMAT_POLICIES[remat], static_argnums=(2,))


def blocks(x: jax.Array, *, depth: int, num_heads: int, mlp_ratio: float,
           drop_path_rate: float, init_values: float, dtype: Dtype, kernel_init,
           train: bool, impl: str, qkv_bias: bool = False,
           remat: str = "none") -> jax.Array:
  """``depth`` `Block` s named ``blocks_{i}`` in the calling module.

  Must be called inside a compact method (the blocks become the caller's submodules).
  Drop path rises linearly from 0 to ``drop_path_rate`` (official
  ``linspace(0, r, depth)``).

  Args:
    x: ``[batch, tokens, embed]``.
    depth, num_heads, init_values, dtype, kernel_init, qkv_bias, impl: as `Block`.
    mlp_ratio: MLP width over ``embed``.
    drop_path_rate: drop path of the last block.
    train: enables drop path (rng ``'drop_path'``).
    remat: ``'none'``, ``'block'`` or ``'full'``: `remat_block`.

  Returns:
    ``[batch, tokens, embed]``.
  """
  block = remat_block(remat)
  rates = np.linspace(0, drop_path_rate, depth)
  for i in range(depth):
    x = block(num_heads=num_heads, mlp_dim=int(x.shape[-1] * mlp_ratio),
              drop_path=float(rates[i]), init_values=init_values, dtype=dtype,
              kernel_init=kernel_init, qkv_bias=qkv_bias, impl=impl,
              name=f"blocks_{i}")(x, train)
  return x
