"""The TIME layer: frame sampling, the N x N block arrangement, on-device preprocessing.

TIME (Temporal Integration and Motion Enhancement) turns a video of T frames into
T* frames of H* x W*: it takes T*·N² frames in temporal order, shrinks each to
(H*/N, W*/N) and lays them out in N x N grids.

* `frame_indices` chooses the T*·N² source frames (host side, in the input pipeline).
* `arrange` lays `[..., T*·N², h, w, c]` out as `[..., T*, N·h, N·w, c]` (pure `jnp`).
* `preprocess` is the fused on-device step the training loop calls on the uint8 batch
  from the input pipeline: arrangement, cast, per-channel normalisation and, when N does
  not divide the model's input size, a resize to it.

Two arrangements (paper Sec. 3):

* ``"spatial"`` (Eq. 1-2): N² blocks of T* consecutive frames; block i fills grid cell i
  (row-major) of every output frame. Output frame t, cell i holds input frame i·T* + t.
* ``"temporal"`` (Eq. 3-5): T* blocks of N² consecutive frames; block j is laid
  row-major into output frame j. Output frame j, cell i holds input frame j·N² + i.

N = 1 is plain frame sampling for either arrangement.
"""

from __future__ import annotations

import functools
from typing import Sequence

import einops
import jax
import jax.numpy as jnp
import numpy as np

ARRANGEMENTS = ("spatial", "temporal")

# ImageNet statistics on the [0, 1] scale, as torchvision/timm use them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def frame_indices(
    num_frames: int, t_out: int, n: int, *, rng: np.random.Generator | None = None
) -> np.ndarray:
  """The T*·N² source frame indices of a video, in temporal order.

  Args:
    num_frames: frames in the video, T (>= 1).
    t_out: output frames, T*.
    n: grid side, N.
    rng: a numpy Generator for training-time jitter; None for evaluation.

  Returns:
    int64 array of length ``t_out * n * n``, non-decreasing, within ``[0, num_frames)``.
    When T < T*·N² frames are repeated evenly in order: every frame appears and none is
    skipped. Otherwise the video is cut into T*·N² contiguous integer segments that
    cover it exactly; the centre frame of each is taken, or with ``rng`` a uniformly
    drawn frame inside it.
  """
  if num_frames < 1:
    raise ValueError(f"frame_indices: the video has {num_frames} frames; it needs at least 1.")
  if t_out < 1 or n < 1:
    raise ValueError(f"frame_indices: t_out={t_out} and n={n} must both be >= 1.")
  total = t_out * n * n
  k = np.arange(total, dtype=np.int64)
  if num_frames < total:
    # floor(k·T / total) steps by T/total < 1: each frame appears once or more.
    return (k * num_frames) // total
  start = (k * num_frames) // total
  end = ((k + 1) * num_frames) // total  # exclusive; end - start >= 1 since T >= total
  if rng is None:
    return start + (end - start - 1) // 2
  return rng.integers(start, end)


def _check(num_frames: int, n: int, arrangement: str) -> int:
  if arrangement not in ARRANGEMENTS:
    raise ValueError(
        f"arrange: unknown arrangement {arrangement!r}; use one of {ARRANGEMENTS}.")
  if n < 1:
    raise ValueError(f"arrange: n={n} must be >= 1.")
  if num_frames % (n * n):
    raise ValueError(
        f"arrange: {num_frames} frames is not a multiple of n*n={n * n}; "
        f"sample t_out*n*n frames with frame_indices(num_frames, t_out, n={n}).")
  return num_frames // (n * n)


def arrange(frames: jax.Array, n: int, arrangement: str) -> jax.Array:
  """Lays frames out in N x N grids.

  Args:
    frames: ``[..., t_out·n·n, h, w, c]``, any leading batch dims, any dtype.
    n: grid side N.
    arrangement: ``"spatial"`` (Eq. 1-2) or ``"temporal"`` (Eq. 3-5).

  Returns:
    ``[..., t_out, n·h, n·w, c]`` of the same dtype.
  """
  _check(frames.shape[-4], n, arrangement)
  if arrangement == "spatial":
    pattern = "... (r q t) h w c -> ... t (r h) (q w) c"
  else:
    pattern = "... (t r q) h w c -> ... t (r h) (q w) c"
  return einops.rearrange(frames, pattern, r=n, q=n)


def preprocess(
    frames: jax.Array,
    *,
    n: int,
    arrangement: str,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    size: tuple[int, int] | None = None,
    dtype=jnp.float32,
) -> jax.Array:
  """The on-device input step: arrange, cast and normalise, in one fused pass.

  Args:
    frames: uint8 ``[batch, t_out·n·n, h, w, c]`` from the input pipeline, where
      ``h, w`` are the cell size H*/N, W*/N.
    n, arrangement: as in `arrange`.
    mean, std: per-channel statistics on the [0, 1] scale (ImageNet for RGB; the
      config's values for depth).
    size: the model's input ``(H, W)``. When the grid ``(n·h, n·w)`` differs (N does
      not divide the model size) the grid is resized to it, bilinearly.
    dtype: the output dtype (the model's compute dtype).

  Returns:
    ``[batch, t_out, H, W, c]`` in ``dtype``, ``(x / 255 - mean) / std``.
  """
  x = arrange(frames, n, arrangement)
  channels = x.shape[-1]
  mean = np.broadcast_to(np.asarray(mean, np.float32), (channels,))
  std = np.broadcast_to(np.asarray(std, np.float32), (channels,))
  # One multiply-add per element; XLA fuses it with the transpose and the cast.
  scale = 1.0 / (255.0 * std)
  offset = -mean / std
  x = x.astype(jnp.float32) * scale + offset
  if size is not None and tuple(size) != tuple(x.shape[-3:-1]):
    x = jax.image.resize(x, x.shape[:-3] + tuple(size) + (channels,), method="bilinear")
  return x.astype(dtype)


@functools.partial(
    jax.jit, static_argnames=("n", "arrangement", "mean", "std", "size", "dtype"))
def preprocess_jit(frames, *, n, arrangement, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   size=None, dtype=jnp.float32):
  """`preprocess` jitted on its own (mean/std/size must be hashable tuples)."""
  return preprocess(frames, n=n, arrangement=arrangement, mean=mean, std=std,
                    size=size, dtype=dtype)
