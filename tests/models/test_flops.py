"""Model FLOPs (for MFU) against XLA's count of the same forward pass on CPU."""

import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn

from time_jax import models
from time_jax.models import flops

# Wide enough that elementwise work is a few percent, with enough tokens (256 per frame)
# that attention is a fifth of the total: leaving out any term fails the 10 % bound.
SMALL = dict(embed_dim=256, depth=2, num_heads=4, patch_size=8)
SIZE = 128


def _xla_flops(model, *inputs):
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs))
  compiled = jax.jit(lambda v, *a: model.apply(v, *a)).lower(variables, *inputs).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


@pytest.mark.parametrize("name,kw,frames", [
    ("videomae_b", SMALL, 4),
    ("vit_s16", SMALL, 2),
    ("vit_s16", dict(SMALL, pool="gap"), 2),
])
def test_classifier_flops_match_xla(name, kw, frames):
  model = models.create(name, num_classes=10, image_size=SIZE, num_frames=frames, **kw)
  x = jnp.zeros((1, frames, SIZE, SIZE, 3))
  ours = flops.forward_flops(model, frames, SIZE)
  # XLA also counts elementwise work (norms, softmax, GELU): a few percent here.
  assert ours <= _xla_flops(model, x) <= 1.1 * ours


def test_pretrain_flops_match_xla():
  model = models.create("videomae_b_pretrain", image_size=SIZE, num_frames=4, mask_ratio=0.75,
                        decoder_embed_dim=128, decoder_num_heads=2, **SMALL)
  x = jnp.zeros((1, 4, SIZE, SIZE, 3))
  mask = models.videomae.tube_mask(jax.random.key(0), 1, 4, SIZE, 8, 2, 0.75)
  ours = flops.forward_flops(model, 4, SIZE)
  assert ours <= _xla_flops(model, x, mask) <= 1.1 * ours


@pytest.mark.parametrize("stages,size", [((1, 1, 1, 1), 64), ((1, 2), 47)])
def test_resnet_flops_match_xla(stages, size):
  # An odd size checks the stride-2 layers' ceil(size / 2).
  model = models.create("resnet50", num_classes=10, stages=stages, impl="xla")
  x = jnp.zeros((1, 2, size, size, 3))
  ours = flops.forward_flops(model, 2, size)
  # XLA counts BatchNorm, ReLU and pooling too, but leaves out the kernel taps that
  # fall on zero padding, many at these small sizes: within 10 % either way.
  assert 0.9 * ours <= _xla_flops(model, x) <= 1.1 * ours


def test_resnet50_is_four_gigamacs_a_frame():
  # torchvision's published count for ResNet-50 at 224²: 4.09 GMACs (every term of the
  # count is a few tenths of a percent of it, or more).
  model = models.create("resnet50", num_classes=1000)
  assert flops.forward_flops(model, 1, 224) / 2e9 == pytest.approx(4.09, abs=0.01)


def test_other_models_are_refused():
  with pytest.raises(ValueError, match="No FLOP count for Dense"):
    flops.forward_flops(nn.Dense(3), 1, 224)
