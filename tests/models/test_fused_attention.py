"""The fused attention path (cuDNN flash attention on a GPU) computes the same function.

On CPU the fused branch is exercised with XLA's `jax.nn.dot_product_attention` in its
place, which checks the wiring (head split, scale, output layout) exactly; on a GPU the
cuDNN kernel itself is compared with the explicit softmax in bfloat16.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from time_jax import models
from time_jax.models import ops

CONFIGS = [("videomae_b", dict(embed_dim=64, depth=1, num_heads=4, patch_size=8)),
           ("vit_s16", dict(embed_dim=64, depth=1, num_heads=4, patch_size=8))]


def _outputs_and_grads(name, kw, dtype, explicit, perturb):
  model = models.create(name, num_classes=5, image_size=32, num_frames=4, dtype=dtype, **kw)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 32, 32, 3)), dtype)
  variables = jax.jit(model.init)(jax.random.key(0), x)
  variables = {**variables, "params": perturb(variables["params"])}
  # A mutable 'intermediates' collection makes the model take the explicit softmax.
  mutable = ["intermediates"] if explicit else False

  def loss(params):
    out = model.apply({**variables, "params": params}, x, train=False, mutable=mutable)
    logits = out[0] if mutable else out
    return jnp.sum(logits.astype(jnp.float32) ** 2), logits

  (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
  return np.asarray(logits, np.float32), jax.tree.map(lambda g: np.asarray(g, np.float32), grads)


def _rel(a, b):
  return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("name,kw", CONFIGS)
def test_fused_branch_wiring_equals_explicit_softmax(name, kw, monkeypatch, perturbed):
  explicit = _outputs_and_grads(name, kw, jnp.float32, explicit=True, perturb=perturbed)
  monkeypatch.setattr(ops, "fused_kernel", lambda impl, dtype, head_dim: "xla")
  fused = _outputs_and_grads(name, kw, jnp.float32, explicit=False, perturb=perturbed)
  assert _rel(fused[0], explicit[0]) < 1e-5
  for f, e in zip(jax.tree.leaves(fused[1]), jax.tree.leaves(explicit[1])):
    assert _rel(f, e) < 1e-4


def test_fused_only_where_cudnn_can_run():
  gpu = jax.default_backend() == "gpu"
  assert ops.fused_kernel("auto", jnp.bfloat16, 64) == ("cudnn" if gpu else None)
  assert ops.fused_kernel("gpu", jnp.bfloat16, 64) == "cudnn"
  assert ops.fused_kernel("gpu", jnp.float16, 128) == "cudnn"
  for impl in ("cpu", "xla"):
    assert ops.fused_kernel(impl, jnp.bfloat16, 64) is None
  assert ops.fused_kernel("gpu", jnp.float32, 64) is None
  assert ops.fused_kernel("gpu", jnp.bfloat16, 12) is None
  assert ops.fused_kernel("gpu", jnp.bfloat16, 256) is None


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN attention needs a GPU")
@pytest.mark.parametrize("name,kw", CONFIGS)
def test_cudnn_attention_matches_explicit_softmax_in_bf16(name, kw, perturbed):
  explicit = _outputs_and_grads(name, kw, jnp.bfloat16, explicit=True, perturb=perturbed)
  fused = _outputs_and_grads(name, kw, jnp.bfloat16, explicit=False, perturb=perturbed)
  assert _rel(fused[0], explicit[0]) < 2e-2
  for f, e in zip(jax.tree.leaves(fused[1]), jax.tree.leaves(explicit[1])):
    assert _rel(f, e) < 5e-2
