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


def _erase_stats(prob, batch=4000, size=32):
  x = jnp.full((batch, 3, size, size, 3), 100.0)  # far from N(0, 1) noise
  out = np.asarray(jax.jit(lambda k, v: augment.random_erase(k, v, prob=prob))(
      jax.random.PRNGKey(0), x))
  return out, np.abs(out - 100.0) > 1e-6


def test_random_erase_boxes_follow_timm_statistics_and_hold_through_time():
  out, erased = _erase_stats(0.25)
  # The same box in every frame of a clip, and every channel.
  assert (erased == erased[:, :1]).all() and (erased == erased[..., :1]).all()
  per_clip = erased[:, 0, :, :, 0]
  hit = per_clip.any(axis=(1, 2))
  assert abs(hit.mean() - 0.25) < 0.03  # erased with probability 0.25
  rows, cols = per_clip.any(axis=2), per_clip.any(axis=1)
  h, w = rows.sum(1)[hit], cols.sum(1)[hit]
  area = per_clip.sum(axis=(1, 2))[hit]
  assert (area == h * w).all()  # one rectangle
  # timm: area U(0.02, 1/3) of 32² before rounding, aspect in [0.3, 1/0.3].
  frac = area / 32 ** 2
  assert frac.min() > 0.01 and frac.max() < 0.37 and abs(frac.mean() - 0.177) < 0.02
  assert (h / w).min() >= 0.25 and (h / w).max() <= 4.0
  # Pixel mode: the box holds N(0, 1) noise, different per frame.
  noise = out[erased]
  assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1.0) < 0.05
  first = np.flatnonzero(hit)[0]
  assert not np.array_equal(out[first, 0][erased[first, 0]], out[first, 1][erased[first, 1]])


def test_random_erase_off_is_the_identity():
  x = jnp.arange(2 * 2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 2, 4, 4, 3)
  assert augment.random_erase(jax.random.PRNGKey(0), x, prob=0.0) is x
  out, erased = _erase_stats(1.0, batch=500)
  assert erased[:, 0, :, :, 0].any(axis=(1, 2)).mean() > 0.97  # nearly always fits


def test_mixup_groups_draw_their_own_lambda_and_mix_within_themselves():
  """Each group of ``mixup_group`` clips mixes with its own reverse, with its own λ
  (as each GPU of the official run mixes its own videos)."""
  x, labels = _clips(8), jnp.arange(8) % 4
  kw = dict(num_classes=4, mixup_alpha=0.8, cutmix_alpha=0.0, prob=1.0, switch_prob=0.0,
            smoothing=0.0)
  out, t = augment.mix_groups(jax.random.PRNGKey(3), x, labels, group=4, **kw)
  lams = []
  for g in range(2):
    lo = 4 * g
    lam = float(out[lo, 0, 0, 0, 0] - (lo + 4)) / float((lo + 1) - (lo + 4))
    for i in range(4):  # clip lo + i mixes with clip lo + 3 - i of its own group
      want = lam * (lo + i + 1) + (1 - lam) * (lo + 4 - i)
      np.testing.assert_allclose(out[lo + i, 0, 0, 0, 0], want, rtol=1e-5)
    lams.append(lam)
  assert abs(lams[0] - lams[1]) > 1e-3
  np.testing.assert_allclose(np.asarray(t).sum(-1), 1.0, rtol=1e-6)
  # The group's draws are the same wherever it sits: a lone group equals its slice.
  keys = jax.random.split(jax.random.PRNGKey(3), 2)
  alone, _ = augment.mix(keys[1], x[4:], labels[4:], **kw)
  np.testing.assert_allclose(out[4:], alone, rtol=1e-6)
  # 0, or a group as large as the batch: one group.
  whole, _ = augment.mix(jax.random.PRNGKey(3), x, labels, **kw)
  for group in (0, 8, 32):
    np.testing.assert_array_equal(
        augment.mix_groups(jax.random.PRNGKey(3), x, labels, group=group, **kw)[0], whole)
