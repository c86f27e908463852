"""ResNet-50 and ViT: sizes, clip handling (TSN consensus), BatchNorm modes, intermediates,
logical axes, and initialising from other weights (`pretrained.load_into`)."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from time_jax import models
from time_jax.models import pretrained
from time_jax.models import transformer

# timm's parameter counts of the same models (1000 classes).
COUNTS = {"resnet50": 25_557_032, "vit_ti16": 5_717_416, "vit_s16": 22_050_664,
          "vit_b16": 86_567_656, "vit_l16": 304_326_632, "vit_b32": 88_224_232}
TINY_VIT = dict(embed_dim=32, depth=2, num_heads=4)


def _shapes(model, x_shape):
  return nn.meta.unbox(jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(x_shape))))


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_every_size_has_timms_parameter_count_and_output_shape(name):
  model = models.create(name, num_classes=1000, image_size=224, num_frames=2)
  variables = _shapes(model, (1, 2, 224, 224, 3))
  assert sum(x.size for x in jax.tree.leaves(variables["params"])) == COUNTS[name]
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((3, 2, 224, 224, 3))), variables)
  assert out.shape == (3, 1000)


@pytest.mark.parametrize("name,kw", [("resnet50", {}), ("vit_ti16", TINY_VIT),
                                     ("vit_ti16", dict(TINY_VIT, pool="gap"))])
def test_clip_logits_are_the_mean_of_frame_logits(name, kw):
  model = models.create(name, num_classes=5, image_size=32, **kw)
  x = jax.random.normal(jax.random.key(1), (2, 3, 32, 32, 3))
  variables = model.init(jax.random.key(0), x)
  if name.startswith("vit"):  # the head starts at zero: give it weights
    head = variables["params"]["head"]["kernel"]
    variables["params"]["head"]["kernel"] = head.replace_boxed(
        jax.random.normal(jax.random.key(2), head.value.shape))
  clip = model.apply(variables, x)
  frames = jnp.stack([model.apply(variables, x[:, t:t + 1]) for t in range(3)], axis=1)
  np.testing.assert_allclose(clip, frames.mean(axis=1), rtol=1e-5, atol=1e-5)
  assert not np.allclose(frames[:, 0], frames[:, 1])


def test_resnet_batchnorm_trains_on_batch_statistics_unless_frozen():
  x = 3.0 + jax.random.normal(jax.random.key(1), (4, 1, 32, 32, 3))
  model = models.create("resnet50", num_classes=3)
  variables = model.init(jax.random.key(0), x)
  _, new = model.apply(variables, x, train=True, mutable=["batch_stats"])
  before = variables["batch_stats"]["bn1"]["mean"]
  after = new["batch_stats"]["bn1"]["mean"]
  assert not np.allclose(before, after)
  frozen = model.clone(frozen_bn=True)
  out, new = frozen.apply(variables, x, train=True, mutable=["batch_stats"])
  jax.tree.map(np.testing.assert_array_equal, new["batch_stats"], variables["batch_stats"])
  np.testing.assert_allclose(out, model.apply(variables, x, train=False), rtol=1e-5, atol=1e-5)


def test_resnet_feature_maps_under_torchvision_names():
  from time_jax.models import resnet  # pylint: disable=g-import-not-at-top
  model = models.create("resnet50", num_classes=3)
  x = jnp.ones((1, 2, 64, 64, 3))
  variables = model.init(jax.random.key(0), x)
  _, inter = model.apply(variables, x, mutable=["intermediates"],
                         capture_intermediates=lambda mdl, _: isinstance(mdl, resnet.Conv))
  inter = inter["intermediates"]
  assert inter["conv1"]["__call__"][0].shape == (2, 32, 32, 64)
  assert inter["layer1_0"]["conv1"]["__call__"][0].shape == (2, 16, 16, 64)
  assert inter["layer4_2"]["out"][0].shape == (2, 2, 2, 2048)
  assert inter["layer2_0"]["conv1"]["__call__"][0].shape == (2, 16, 16, 128)
  assert inter["layer2_0"]["conv2"]["__call__"][0].shape == (2, 8, 8, 128)  # v1.5


def test_vit_attention_rows_sum_to_one_over_class_and_patch_tokens():
  model = models.create("vit_ti16", num_classes=3, image_size=32, **TINY_VIT)
  x = jax.random.normal(jax.random.key(0), (2, 3, 32, 32, 3))
  variables = model.init(jax.random.key(0), x)
  _, inter = model.apply(variables, x, mutable=["intermediates"])
  w = inter["intermediates"]["blocks_1"]["attn"]["attention_weights"][0]
  assert w.shape == (6, 4, 5, 5)  # batch·time, heads, 1 + (32/16)², same
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)


def test_parameters_carry_logical_axes():
  for name, kw in (("resnet50", {}), ("vit_ti16", TINY_VIT)):
    model = models.create(name, num_classes=3, image_size=32, **kw)
    boxed = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), jnp.zeros((1, 1, 32, 32, 3))))
    names = {tuple(b.names) for b in jax.tree.leaves(
        boxed["params"], is_leaf=lambda v: isinstance(v, nn.Partitioned))
        if isinstance(b, nn.Partitioned)}
    leaves = jax.tree.leaves(boxed["params"], is_leaf=lambda v: isinstance(v, nn.Partitioned))
    assert all(isinstance(b, nn.Partitioned) for b in leaves), name
    assert ("classes",) in names


def test_bf16_compute_keeps_float32_parameters():
  model = models.create("vit_ti16", num_classes=3, image_size=32, dtype=jnp.bfloat16, **TINY_VIT)
  x = jnp.ones((1, 1, 32, 32, 3))
  variables = model.init(jax.random.key(0), x)
  assert {v.dtype for v in jax.tree.leaves(nn.meta.unbox(variables))} == {jnp.dtype("float32")}
  assert model.apply(variables, x).dtype == jnp.bfloat16


# ----------------------------------------------------------------------------------
# Initialising from other weights.
# ----------------------------------------------------------------------------------

def test_pos_embed_resize_is_identity_at_the_original_size_and_keeps_the_class_token():
  pos = np.random.default_rng(0).standard_normal((1, 1 + 14 * 14, 8)).astype(np.float32)
  assert pretrained.resize_pos_embed(pos, (14, 14)) is pos
  big = pretrained.resize_pos_embed(pos, (28, 28))
  assert big.shape == (1, 1 + 28 * 28, 8)
  np.testing.assert_array_equal(big[:, 0], pos[:, 0])
  # A smooth (linear) embedding is resampled to the same function of position.
  yy, xx = np.meshgrid(np.linspace(0, 1, 14), np.linspace(0, 1, 14), indexing="ij")
  lin = np.concatenate([np.zeros((1, 1, 1)), (yy + 2 * xx).reshape(1, -1, 1)], 1)
  small = pretrained.resize_pos_embed(lin.astype(np.float32), (7, 7))[0, 1:, 0].reshape(7, 7)
  assert np.all(np.diff(small, axis=1) > 0) and np.all(np.diff(small, axis=0) > 0)


def _init(model, shape):
  return flax.core.unfreeze(nn.meta.unbox(model.init(jax.random.key(1), jnp.zeros(shape))))


def test_load_into_adapts_image_size_and_reinitialises_a_different_head():
  src_model = models.create("vit_ti16", num_classes=10, image_size=32, **TINY_VIT)
  source = _init(src_model, (1, 1, 32, 32, 3))
  source = jax.tree.map(lambda v: np.asarray(v) + 1.0, source)
  dst_model = models.create("vit_ti16", num_classes=4, image_size=64, **TINY_VIT)
  target = _init(dst_model, (1, 1, 64, 64, 3))
  merged = pretrained.load_into(target, source, model_name="vit_ti16")
  p, s = merged["params"], source["params"]
  np.testing.assert_array_equal(p["blocks_1"]["mlp"]["fc1"]["kernel"],
                                s["blocks_1"]["mlp"]["fc1"]["kernel"])
  assert p["pos_embed"].shape == (1, 17, 32)
  np.testing.assert_array_equal(p["pos_embed"][:, 0], s["pos_embed"][:, 0])
  np.testing.assert_array_equal(p["head"]["kernel"], target["params"]["head"]["kernel"])
  out = dst_model.apply(merged, jnp.ones((1, 1, 64, 64, 3)))
  assert out.shape == (1, 4) and np.all(np.isfinite(out))


def test_image_vit_initialises_videomae_exactly_on_a_static_clip():
  """Inflated patch kernel + split qkv bias: a clip of one repeated frame gives the
  same block-0 attention as the image ViT (the position tables differ, so compare
  without them by zeroing the ViT's and the cls token path is not in VideoMAE)."""
  vit = models.create("vit_ti16", num_classes=3, image_size=32, **TINY_VIT)
  source = jax.tree.map(lambda v: np.asarray(v) + 0.05 * np.random.default_rng(0).standard_normal(
      np.shape(v)).astype(np.float32), _init(vit, (1, 1, 32, 32, 3)))
  mae = models.create("videomae_s", num_classes=3, image_size=32, num_frames=2,
                      embed_dim=32, depth=2, num_heads=4)
  target = _init(mae, (1, 2, 32, 32, 3))
  merged = pretrained.load_into(target, source, model_name="videomae_s")["params"]
  k_img = source["params"]["patch_embed"]["kernel"]
  np.testing.assert_allclose(merged["patch_embed"]["kernel"].sum(0), k_img, rtol=1e-6)
  qkv_b = source["params"]["blocks_0"]["attn"]["qkv"]["bias"]
  np.testing.assert_array_equal(merged["blocks_0"]["attn"]["q_bias"], qkv_b[:32])
  np.testing.assert_array_equal(merged["blocks_0"]["attn"]["v_bias"], qkv_b[64:])
  # The attention functions agree: the key bias never changes softmax weights.
  tokens = jax.random.normal(jax.random.key(3), (1, 5, 32))
  a_vit = transformer.Attention(4, qkv_bias=True).apply(
      {"params": source["params"]["blocks_0"]["attn"]}, tokens)
  a_mae = transformer.Attention(4).apply({"params": merged["blocks_0"]["attn"]}, tokens)
  np.testing.assert_allclose(a_vit, a_mae, rtol=1e-5, atol=1e-6)


def test_load_into_refuses_weights_of_another_model():
  vit = _init(models.create("vit_ti16", num_classes=3, image_size=32, **TINY_VIT),
              (1, 1, 32, 32, 3))
  resnet = {"params": {"conv1": {"kernel": np.zeros((7, 7, 3, 64))}}}
  with pytest.raises(ValueError, match="none of the checkpoint's variables fit"):
    pretrained.load_into(vit, resnet, model_name="vit_ti16")


def test_resnet_gives_the_same_logits_and_gradients_with_either_convolution():
  # impl='cpu': im2col products up to 3x3 (tests/models/test_ops.py); 'xla': XLA's.
  model = models.create("resnet50", num_classes=4, impl="xla", zero_init_last=False)
  x = jax.random.normal(jax.random.key(0), (2, 1, 40, 40, 3))
  variables = model.init(jax.random.key(1), x)

  def loss(params, m):
    # Eval-mode BatchNorm: batch statistics of 2 tiny images would amplify rounding.
    return jnp.sum(m.apply({**variables, "params": params}, x) ** 2)
  l1, g1 = jax.value_and_grad(loss)(variables["params"], model)
  l2, g2 = jax.value_and_grad(loss)(variables["params"], model.clone(impl="cpu"))
  np.testing.assert_allclose(l1, l2, rtol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4), g1, g2)
