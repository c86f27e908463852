"""Model FLOPs (for MFU) against XLA's count of the same forward pass on CPU."""

import jax
import jax.numpy as jnp
import pytest

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


def test_resnet_is_refused():
  with pytest.raises(ValueError, match="No FLOP count for ResNet"):
    flops.forward_flops(models.create("resnet50", num_classes=10), 1, 224)
