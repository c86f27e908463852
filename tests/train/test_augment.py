"""Mixup / cutmix targets against a direct reading of timm's definitions."""

import jax
import jax.numpy as jnp
import numpy as np

from time_jax.train import augment


def _clips(batch=4):
  # clip i is constant i + 1, so any output pixel tells which clip it came from
  return jnp.broadcast_to(jnp.arange(1, batch + 1, dtype=jnp.float32)[:, None, None, None, None],
                          (batch, 2, 8, 8, 3))


def test_smooth_one_hot():
  t = augment.smooth_one_hot(jnp.array([1]), 4, 0.1)
  np.testing.assert_allclose(t, [[0.025, 0.925, 0.025, 0.025]], rtol=1e-6)


def test_mixup_mixes_with_the_reversed_batch_and_matches_targets():
  x, labels = _clips(), jnp.array([0, 1, 2, 3])
  out, t = augment.mix(jax.random.PRNGKey(3), x, labels, num_classes=4, mixup_alpha=0.8,
                       cutmix_alpha=0.0, prob=1.0, switch_prob=0.0, smoothing=0.0)
  lam = float(t[0, 0])
  np.testing.assert_allclose(t[0, 3], 1 - lam, rtol=1e-6)
  np.testing.assert_allclose(out[0], lam * 1 + (1 - lam) * 4, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(t).sum(-1), 1.0, rtol=1e-6)


def test_cutmix_lambda_is_the_kept_area_in_every_frame():
  x, labels = _clips(), jnp.array([0, 1, 2, 3])
  for seed in range(5):
    out, t = augment.mix(jax.random.PRNGKey(seed), x, labels, num_classes=4,
                         mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, switch_prob=1.0,
                         smoothing=0.1)
    kept = float(np.mean(np.asarray(out[0]) == 1.0))
    pasted = float(np.mean(np.asarray(out[0]) == 4.0))
    np.testing.assert_allclose(kept + pasted, 1.0)
    # the same box in both frames
    np.testing.assert_array_equal(out[0, 0], out[0, 1])
    lam = kept
    want = lam * (0.9 + 0.025) + (1 - lam) * 0.025
    np.testing.assert_allclose(t[0, 0], want, rtol=1e-5)


def test_prob_zero_leaves_the_batch_alone():
  x, labels = _clips(), jnp.array([0, 1, 2, 3])
  out, t = augment.mix(jax.random.PRNGKey(0), x, labels, num_classes=4, mixup_alpha=0.8,
                       cutmix_alpha=1.0, prob=0.0, switch_prob=0.5, smoothing=0.0)
  np.testing.assert_array_equal(out, x)
  np.testing.assert_array_equal(t, np.eye(4))
