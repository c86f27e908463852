"""Gradient checkpointing of the transformer blocks (``config.model.remat``).

Remat changes what the backward pass keeps, never the function: the parameters, the
gradients (with drop path drawing the same masks), the sown attention maps must equal
those of ``remat='none'``, and XLA's memory analysis of the compiled gradient must show
less temporary memory.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from time_jax import config as config_lib
from time_jax import models
from time_jax.diagnose import attention
from time_jax.models import ops
from time_jax.models import transformer

TINY = dict(embed_dim=32, depth=2, num_heads=4, patch_size=8, drop_path_rate=0.3)
TINY_PT = dict(TINY, decoder_embed_dim=16, decoder_num_heads=2, decoder_depth=2)
# name -> (constructor kwargs, frames): the three models over `transformer.blocks`
MODELS = {
    "vit_ti16": (dict(TINY, dropout_rate=0.2), 2),
    "videomae_s": (dict(TINY, dropout_rate=0.2), 4),
    "videomae_s_pretrain": (TINY_PT, 4),
}


def _model(name, remat, **kw):
  kwargs, frames = MODELS[name]
  return models.create(name, image_size=32, num_frames=frames, remat=remat,
                       **dict(kwargs, **kw)), frames


def _inputs(model, name, frames, batch=2):
  x = jax.random.normal(jax.random.key(0), (batch, frames, 32, 32, 3))
  if not models.is_pretrainer(name):
    return (x,)
  from time_jax.models import videomae  # pylint: disable=g-import-not-at-top
  return x, videomae.tube_mask(jax.random.key(1), batch, frames, 32, 8, 2, model.mask_ratio)


def _grad_fn(model, inputs):
  def loss(params):
    out = model.apply({"params": params}, *inputs, train=True,
                      rngs={"drop_path": jax.random.key(2), "dropout": jax.random.key(3)})
    return jnp.sum(jnp.sin(out.astype(jnp.float32)))  # every output matters, unevenly
  return jax.grad(loss)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_and_parameters_equal_no_remat(name, perturbed):
  reference, frames = _model(name, "none")
  inputs = _inputs(reference, name, frames)
  variables = jax.jit(reference.init)(jax.random.key(0), *inputs)
  params = perturbed(variables["params"])
  want = jax.jit(_grad_fn(reference, inputs))(params)
  for remat in ("block", "full"):
    model, _ = _model(name, remat)
    # the same parameter tree: ports, checkpoints and layer decay are unaffected
    shapes = jax.eval_shape(model.init, jax.random.key(0), *inputs)
    assert jax.tree.structure(shapes) == jax.tree.structure(variables)
    assert jax.tree.leaves(jax.tree.map(jnp.shape, shapes)) == jax.tree.leaves(
        jax.tree.map(jnp.shape, variables))
    # compiled as where remat recomputes (on CPU: with the barriers kept)
    got = jax.jit(_grad_fn(model, inputs)).lower(params).compile(
        compiler_options=ops.CPU_REMAT_COMPILER_OPTIONS)(params)
    for (path, w), g in zip(jax.tree_util.tree_flatten_with_path(want)[0],
                            jax.tree.leaves(got)):
      scale = float(np.max(np.abs(w)))
      assert scale > 0, jax.tree_util.keystr(path)
      np.testing.assert_allclose(g, w, rtol=0, atol=1e-6 * scale,
                                 err_msg=f"{remat} {jax.tree_util.keystr(path)}")


def _temp_bytes(remat: str) -> int:
  # Big enough that the activations of the blocks outweigh everything else: 256 tokens
  # of width 64, [8, 4, 256, 256] attention per block.
  model = models.create("videomae_s", num_classes=10, image_size=64, num_frames=8,
                        embed_dim=64, depth=4, num_heads=4, patch_size=8, remat=remat)
  x = jax.ShapeDtypeStruct((8, 8, 64, 64, 3), jnp.float32)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape))["params"])
  def loss(params, x):
    return model.apply({"params": params}, x, train=True).mean()
  compiled = jax.jit(jax.grad(loss)).lower(params, x).compile(
      compiler_options=ops.CPU_REMAT_COMPILER_OPTIONS)
  return compiled.memory_analysis().temp_size_in_bytes


def test_remat_lowers_temp_memory():
  none, block, full = (_temp_bytes(r) for r in ("none", "block", "full"))
  assert block < 0.7 * none, (none, block)
  assert full < block, (block, full)


@pytest.mark.parametrize("name", ["vit_ti16", "videomae_s"])
def test_attention_maps_with_remat(name):
  # diagnose's forward pass sows the same maps and features with remat on
  reference, frames = _model(name, "none", num_classes=3)
  inputs = _inputs(reference, name, frames)
  variables = jax.jit(reference.init)(jax.random.key(0), *inputs)
  want_logits, want = attention.run_model(reference, variables, *inputs)
  for remat in ("block", "full"):
    model, _ = _model(name, remat, num_classes=3)
    logits, got = attention.run_model(model, variables, *inputs)
    np.testing.assert_array_equal(logits, want_logits)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    maps = attention.attention_weights(got)
    assert len(maps) == 2 and maps[0].shape[1:] == (4,) + maps[0].shape[-2:]


def test_from_config_passes_remat():
  c = config_lib.base_config()
  c.model.name = "vit_b16"
  assert models.from_config(c, 5).remat == "none"
  c.model.remat = "full"
  assert models.from_config(c, 5).remat == "full"
  c.mode, c.model.name = "pretrain", "videomae_s_pretrain"
  assert models.from_config(c, 0).remat == "full"
  # a run saved before the field existed
  c.model = ml_collections.ConfigDict(dict(name="vit_b16", dtype="float32", kwargs={}))
  assert models.from_config(c, 5).remat == "none"


@pytest.mark.parametrize("name,remat,match", [
    ("videomae_b", "blocks", "config.model.remat.*'none', 'block', 'full'"),
    ("resnet50", "block", "config.model.remat.*resnet50.*remat='none'"),
])
def test_validate_remat(name, remat, match):
  c = config_lib.base_config()
  c.model.name, c.model.remat = name, remat
  with pytest.raises(ValueError, match=match):
    config_lib.validate(c, num_devices=1)


def test_bad_remat_names_the_field():
  with pytest.raises(ValueError, match="config.model.remat='x'"):
    transformer.remat_block("x")
