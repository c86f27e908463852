"""On-device clip augmentation: mixup / cutmix with label smoothing, random erasing.

Runs inside the jitted train step on the arranged, normalised clips. As timm's
``Mixup(mode='batch')`` used by the VideoMAE fine-tuning scripts: with probability
``prob`` the batch is mixed with its reverse (``x.flip(0)``), by cutmix with
probability ``switch_prob`` (when both alphas are > 0) or else by mixup;
``lam ~ Beta(alpha, alpha)``; the cutmix box (area ``1 - lam``, the same in every
frame) is clipped to the image and ``lam`` corrected to the pasted area; targets are
``lam · smooth(y) + (1 - lam) · smooth(y.flip(0))`` with smoothing ``ε``:
``1 - ε + ε/C`` on the class, ``ε/C`` elsewhere.

`mix_groups` mixes groups of ``train.mixup_group`` clips independently, each with its
own draws, as each GPU of the official 8-GPU run mixes its own 16 videos (32 views): the
mixing then depends on the batch size and the group, not on how many devices share the
batch.

`random_erase` is timm's ``RandomErasing`` in pixel mode with VideoMAE's ``cube=True``,
after normalisation (its noise is N(0, 1) in the normalised space): one box per clip
through all its frames, fresh noise in every frame.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def smooth_one_hot(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
  """``[batch]`` int -> ``[batch, num_classes]`` float32 smoothed one-hot targets."""
  off = smoothing / num_classes
  return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * (1.0 - smoothing) + off


def _cutmix_box(key: jax.Array, lam: jax.Array, height: int, width: int) -> jax.Array:
  """bool ``[H, W]``, True inside a box of area ≈ ``(1 - lam)·H·W`` (clipped)."""
  cut = jnp.sqrt(1.0 - lam)
  ch, cw = (cut * height).astype(jnp.int32), (cut * width).astype(jnp.int32)
  ky, kx = jax.random.split(key)
  cy = jax.random.randint(ky, (), 0, height)
  cx = jax.random.randint(kx, (), 0, width)
  y0, y1 = jnp.clip(cy - ch // 2, 0, height), jnp.clip(cy + ch // 2, 0, height)
  x0, x1 = jnp.clip(cx - cw // 2, 0, width), jnp.clip(cx + cw // 2, 0, width)
  ys = jnp.arange(height)[:, None]
  xs = jnp.arange(width)[None, :]
  return (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)


def mix(key: jax.Array, x: jax.Array, labels: jax.Array, *, num_classes: int,
        mixup_alpha: float, cutmix_alpha: float, prob: float, switch_prob: float,
        smoothing: float) -> tuple[jax.Array, jax.Array]:
  """Mixes a batch of clips and their targets.

  Args:
    key: PRNG key.
    x: ``[batch, time, H, W, c]`` clips.
    labels: int ``[batch]``.
    num_classes, smoothing: targets.
    mixup_alpha, cutmix_alpha: Beta parameters; 0 disables that kind.
    prob: probability of mixing this batch at all; switch_prob: of cutmix over mixup.

  Returns:
    ``(x mixed, targets [batch, num_classes] float32)``.
  """
  targets = smooth_one_hot(labels, num_classes, smoothing)
  if prob <= 0 or (mixup_alpha <= 0 and cutmix_alpha <= 0):
    return x, targets
  k_apply, k_switch, k_mix, k_cut, k_box = jax.random.split(key, 5)
  apply = jax.random.uniform(k_apply) < prob
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = jax.random.uniform(k_switch) < switch_prob
  else:
    use_cutmix = jnp.asarray(cutmix_alpha > 0)
  lam_mix = jax.random.beta(k_mix, max(mixup_alpha, 1e-3), max(mixup_alpha, 1e-3))
  lam_cut = jax.random.beta(k_cut, max(cutmix_alpha, 1e-3), max(cutmix_alpha, 1e-3))
  height, width = x.shape[-3], x.shape[-2]
  box = _cutmix_box(k_box, lam_cut, height, width)
  lam_cut = 1.0 - box.mean()  # the area actually pasted
  lam = jnp.where(apply, jnp.where(use_cutmix, lam_cut, lam_mix), 1.0)
  flipped = x[::-1]
  mixed_up = lam.astype(x.dtype) * x + (1.0 - lam).astype(x.dtype) * flipped
  cut = jnp.where(box[None, None, :, :, None], flipped, x)
  x = jnp.where(apply, jnp.where(use_cutmix, cut, mixed_up), x)
  targets = lam * targets + (1.0 - lam) * targets[::-1]
  return x, targets


def mix_groups(key: jax.Array, x: jax.Array, labels: jax.Array, *, group: int = 0,
               **kwargs) -> tuple[jax.Array, jax.Array]:
  """`mix` of each group of ``group`` consecutive clips on its own (0: the whole batch).

  Group ``g`` mixes with its own reverse, with its own draws (key ``split(key)[g]``):
  whether to mix, mixup or cutmix, ``lam`` and the box.

  Args:
    key: PRNG key.
    x: ``[batch, time, H, W, c]`` clips; ``batch`` a multiple of ``group``.
    labels: int ``[batch]``.
    group: clips per group (``train.mixup_group``); 0, or at least ``batch``: one
      group.
    **kwargs: `mix`'s.

  Returns:
    ``(x mixed, targets [batch, num_classes] float32)``.
  """
  batch = x.shape[0]
  if not group or group >= batch:
    return mix(key, x, labels, **kwargs)
  if batch % group:
    raise ValueError(f"mix_groups: a batch of {batch} clips is not a multiple of the "
                     f"mixup group {group} (config.train.mixup_group).")
  groups = batch // group
  x, targets = jax.vmap(lambda k, xs, ls: mix(k, xs, ls, **kwargs))(
      jax.random.split(key, groups), x.reshape(groups, group, *x.shape[1:]),
      labels.reshape(groups, group))
  return x.reshape(batch, *x.shape[2:]), targets.reshape(batch, -1)


def random_erase(key: jax.Array, x: jax.Array, *, prob: float,
                 min_area: float = 0.02, max_area: float = 1 / 3,
                 min_aspect: float = 0.3, attempts: int = 100) -> jax.Array:
  """Random erasing as VideoMAE's ``RandomErasing(mode='pixel', cube=True)``.

  Each clip is erased with probability ``prob``: a box of area ``U(min_area,
  max_area)`` of the frame and aspect ``exp(U(log a, -log a))`` (``a = min_aspect``),
  placed uniformly, the first of ``attempts`` draws that fits (none fits: no erasing),
  filled with N(0, 1) noise per pixel, channel and frame: the clip is normalised, so
  the noise is in the normalised space as timm's. The box is the same in every frame of
  the clip (VideoMAE's ``_erase_cube``, its default, with its 100 attempts); the noise
  is drawn afresh for every frame, as ``_erase_cube`` draws it per frame.

  Args:
    key: PRNG key.
    x: normalised clips ``[batch, time, H, W, c]``.
    prob: probability that a clip is erased.
    min_area, max_area, min_aspect, attempts: timm's defaults.

  Returns:
    ``x`` with the erased boxes, same shape and dtype.
  """
  if prob <= 0:
    return x
  batch, _, height, width, _ = x.shape
  k_apply, k_area, k_aspect, k_y, k_x, k_noise = jax.random.split(key, 6)
  area = jax.random.uniform(k_area, (batch, attempts), minval=min_area,
                            maxval=max_area) * height * width
  log_a = jnp.log(min_aspect)
  aspect = jnp.exp(jax.random.uniform(k_aspect, (batch, attempts), minval=log_a,
                                      maxval=-log_a))
  h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  fits = (h < height) & (w < width)
  first = jnp.argmax(fits, axis=1)  # the first attempt that fits
  rows = jnp.arange(batch)
  h, w, any_fit = h[rows, first], w[rows, first], fits[rows, first]
  top = (jax.random.uniform(k_y, (batch,)) * (height - h + 1)).astype(jnp.int32)
  left = (jax.random.uniform(k_x, (batch,)) * (width - w + 1)).astype(jnp.int32)
  erase = any_fit & (jax.random.uniform(k_apply, (batch,)) < prob)
  ys = jnp.arange(height)[None, :, None]
  xs = jnp.arange(width)[None, None, :]
  box = ((ys >= top[:, None, None]) & (ys < (top + h)[:, None, None])
         & (xs >= left[:, None, None]) & (xs < (left + w)[:, None, None])
         & erase[:, None, None])  # [batch, H, W]
  noise = jax.random.normal(k_noise, x.shape, jnp.float32).astype(x.dtype)
  return jnp.where(box[:, None, :, :, None], noise, x)
