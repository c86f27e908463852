"""Clip transforms on the host: temporal sampling, augmentation, cell-size resize, depth.

Pure functions on numpy clips ``[T, H, W, C]`` (the ORIGINAL decoded frames). One
random draw per clip is applied to every frame, and the geometry (crop, flip, rotation,
resize to the TIME cell size ``H*/N x W*/N``) is a single bilinear affine warp per
frame, so frames are resampled once. Large downscales first box-reduce by an integer
factor so the bilinear warp does not alias. Both run in OpenCV's SIMD kernels, which
release the GIL (the pipeline's read threads run them in parallel), on the window of
the frame that the view samples, written straight into the output clip. `plan_view`
plans that warp once per clip and `warp_windows` runs it on each frame's window
(`randaugment.RandAugment.apply_view` feeds it augmented windows).

* Training (`train_view`): random resized crop (area fraction and aspect ranges) or
  VideoMAE's multi-scale crop, horizontal flip, rotation, then resize to the cell size.
* Evaluation (`eval_view`): short side resized to ``cell / crop_fraction``, then a
  centre crop, or one of 3 crops along the long side (both ends and centre).
* `clip_indices`: the frames of temporal clip k of K, through `time_layer.frame_indices`;
  `Sampling` chooses between those segments and VideoMAE's dense windows
  (``config.time.sampling``).
* `depth_to_uint8`: raw depth -> [0, 255] uint8 by a fixed maximum or the clip's range.

Randomness comes only from the ``np.random.Generator`` passed in, which the pipeline
seeds per element, so results do not depend on worker count or order.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from time_jax import time_layer

# The pipeline runs clips in parallel (read threads, worker processes); OpenCV's own
# threads would only add synchronisation to warps of a few thousand pixels each.
cv2.setNumThreads(1)


@dataclasses.dataclass(frozen=True)
class View:
  """The geometry of one clip's view, in original-frame pixels.

  Attributes:
    box: ``(x0, y0, width, height)`` of the crop, floats, edges in pixels.
    flip: mirror left-right.
    angle: rotation in degrees (counter-clockwise in the image) about the box centre.
  """
  box: tuple[float, float, float, float]
  flip: bool = False
  angle: float = 0.0


# ----------------------------------------------------------------------------------
# Temporal sampling.
# ----------------------------------------------------------------------------------

class _SegmentPosition:
  """Stands in for the rng of `frame_indices`: picks a fixed point in each segment.

  `frame_indices` draws ``rng.integers(start, end)`` per segment; this returns the
  frame at fraction ``(clip + 0.5) / num_clips`` of each segment instead, so the K
  evaluation clips use THE sampler's segments and are spread evenly inside them.
  """

  def __init__(self, clip: int, num_clips: int):
    self.clip, self.num_clips = clip, num_clips

  def integers(self, start, end):
    start, end = np.asarray(start), np.asarray(end)
    return start + ((end - start) * (2 * self.clip + 1)) // (2 * self.num_clips)


def clip_indices(num_frames: int, t_out: int, n: int, *, clip: int = 0,
                 num_clips: int = 1, rng: np.random.Generator | None = None) -> np.ndarray:
  """The ``t_out·n·n`` frame indices of a clip, from `time_layer.frame_indices`.

  Args:
    num_frames: frames in the video.
    t_out, n: T* and N.
    clip, num_clips: temporal clip ``clip`` of ``num_clips`` for multi-view testing;
      with one clip this is exactly ``frame_indices(num_frames, t_out, n)``.
    rng: training jitter (then ``clip``/``num_clips`` are ignored).

  Returns:
    int64 ``[t_out·n·n]``, non-decreasing, in ``[0, num_frames)``.
  """
  if rng is not None or num_clips == 1:
    return time_layer.frame_indices(num_frames, t_out, n, rng=rng)
  return time_layer.frame_indices(num_frames, t_out, n,
                                  rng=_SegmentPosition(clip, num_clips))


SAMPLINGS = ("segments", "dense")
DENSE_STRIDE = 4  # VideoMAE's --sampling_rate


def dense_train_indices(num_frames: int, length: int, stride: int,
                        rng: np.random.Generator) -> np.ndarray:
  """VideoMAE fine-tuning's training frames (``VideoClsDataset.loadvideo_decord``).

  A window of ``length · stride`` frames ends at ``end ~ U{length·stride, ...,
  num_frames - 1}``; ``length`` frames are spread over it by
  ``linspace(end - length·stride, end, length)``, clipped to ``end - 1`` and truncated.
  A video no longer than the window takes ``num_frames // stride`` frames spread over
  it, then repeats its last frame.

  Returns:
    int64 ``[length]``, non-decreasing, in ``[0, num_frames)``.
  """
  window = length * stride
  if num_frames <= window:
    idx = np.linspace(0, num_frames, num=num_frames // stride)
    idx = np.concatenate([idx, np.full(length - num_frames // stride, num_frames)])
    return np.clip(idx, 0, num_frames - 1).astype(np.int64)
  end = int(rng.integers(window, num_frames))
  idx = np.linspace(end - window, end, num=length)
  return np.clip(idx, end - window, end - 1).astype(np.int64)


def dense_pretrain_indices(num_frames: int, length: int, stride: int,
                           rng: np.random.Generator) -> np.ndarray:
  """VideoMAE pretraining's frames (``VideoMAE._sample_train_indices`` and its loader).

  The window of ``length · stride`` frames starts at ``U{0, ..., num_frames -
  length·stride}`` (0 when it does not fit) and takes every ``stride``-th frame; a step
  that would pass the video's second-last frame repeats the frame instead.

  Returns:
    int64 ``[length]``, non-decreasing, in ``[0, num_frames)``.
  """
  window = length * stride
  room = num_frames - window + 1
  offset = int(rng.integers(room)) + 1 if room > 0 else 1  # 1-based, as the original
  out = []
  for _ in range(length):
    out.append(offset - 1)
    if offset + stride < num_frames:
      offset += stride
  return np.asarray(out, np.int64)


def dense_eval_indices(num_frames: int, length: int, stride: int, clip: int,
                       num_clips: int) -> np.ndarray:
  """VideoMAE's test frames (``VideoClsDataset`` in ``'test'`` mode): every
  ``stride``-th frame, padded with the last to ``length``; clip ``k`` of ``K`` starts
  ``int(k · (len - length) / (K - 1))`` into them. One clip (VideoMAE divides by
  ``K - 1``, so it has none) takes the middle window.

  Returns:
    int64 ``[length]``, non-decreasing, in ``[0, num_frames)``.
  """
  idx = list(range(0, num_frames, stride))
  idx += [idx[-1]] * max(length - len(idx), 0)
  if num_clips > 1:
    start = int(clip * max((len(idx) - length) / (num_clips - 1), 0))
  else:
    start = (len(idx) - length) // 2
  return np.asarray(idx[start:start + length], np.int64)


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Which frames of a video a clip takes: ``config.time.sampling``.

  * ``'segments'`` (TIME's, `time_layer.frame_indices`): ``t_out·n²`` uniform
    segments over the whole video; training draws a frame in each (``jitter``, else
    their starts), evaluation clip k of K takes the point ``(k + 1/2) / K`` of each.
  * ``'dense'`` (VideoMAE's): ``t_out·n²`` frames at ``stride`` from a window of
    ``t_out·n²·stride`` frames: `dense_train_indices` when fine-tuning,
    `dense_pretrain_indices` when pretraining, `dense_eval_indices` for evaluation.

  Attributes:
    rule, t_out, n, stride: as above.
    pretrain: the run pretrains (the dense training rule).
    jitter: the segments' training jitter (``input.temporal_jitter``).
  """
  rule: str = "segments"
  t_out: int = 16
  n: int = 2
  stride: int = DENSE_STRIDE
  pretrain: bool = False
  jitter: bool = True

  @property
  def length(self) -> int:
    return self.t_out * self.n * self.n

  def train(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """int64 ``[t_out·n²]`` training frames, drawn with ``rng``."""
    if self.rule == "dense":
      fn = dense_pretrain_indices if self.pretrain else dense_train_indices
      return fn(num_frames, self.length, self.stride, rng)
    return clip_indices(num_frames, self.t_out, self.n, rng=rng if self.jitter else None)

  def eval(self, num_frames: int, clip: int = 0, num_clips: int = 1) -> np.ndarray:
    """int64 ``[t_out·n²]`` frames of evaluation clip ``clip`` of ``num_clips``."""
    if self.rule == "dense":
      return dense_eval_indices(num_frames, self.length, self.stride, clip, num_clips)
    return clip_indices(num_frames, self.t_out, self.n, clip=clip, num_clips=num_clips)


def sampling(config) -> Sampling:
  """The `Sampling` of a config (``time.{sampling, dense_stride, t_out, n}``, ``mode``,
  ``input.temporal_jitter``); configs written before the field existed: segments."""
  t = config.time
  return Sampling(rule=str(t.get("sampling", "segments")), t_out=int(t.t_out), n=int(t.n),
                  stride=int(t.get("dense_stride", DENSE_STRIDE)),
                  pretrain=config.get("mode") == "pretrain",
                  jitter=bool(config.input.get("temporal_jitter", True)))


# ----------------------------------------------------------------------------------
# View geometry.
# ----------------------------------------------------------------------------------

def random_resized_crop_box(rng: np.random.Generator, height: int, width: int,
                            scale: tuple[float, float], ratio: tuple[float, float]
                            ) -> tuple[float, float, float, float]:
  """A crop of area ``scale`` of the frame and aspect ``ratio`` (w/h), as torchvision.

  Ten tries to fit a drawn box inside the frame, then the largest centred box with
  the ratio clamped to the range.

  Returns:
    ``(x0, y0, w, h)`` in pixels (floats).
  """
  area = height * width
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  for _ in range(10):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(log_lo, log_hi))
    w, h = math.sqrt(target * aspect), math.sqrt(target / aspect)
    if 0 < w <= width and 0 < h <= height:
      return (float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), w, h)
  aspect = min(max(width / height, ratio[0]), ratio[1])
  w, h = (width, width / aspect) if width / height <= aspect else (height * aspect, height)
  return ((width - w) / 2, (height - h) / 2, float(w), float(h))


MULTISCALE_SCALES = (1.0, 0.875, 0.75, 0.66)  # VideoMAE's GroupMultiScaleCrop


def multiscale_crop_box(rng: np.random.Generator, height: int, width: int,
                        out_size: tuple[int, int],
                        scales: tuple[float, ...] = MULTISCALE_SCALES,
                        max_distort: int = 1) -> tuple[float, float, float, float]:
  """A crop as VideoMAE's pretraining draws it (TSN's ``GroupMultiScaleCrop``).

  Crop sides are ``int(scale · short side)`` for the given scales (a side within 3
  pixels of the output side snaps to it); width and height take scales at most
  ``max_distort`` apart in the list; the crop sits at one of 13 fixed positions (the
  corners, centre and edge midpoints, and the quarter points of a 4×4 step grid; TSN's
  ``more_fix_crop``). Choices are uniform over the allowed (w, h) pairs and positions.

  Args:
    rng: the element's generator.
    height, width: the original frame size.
    out_size: ``(h, w)`` the crop is resized to (the TIME cell size).
    scales, max_distort: the official values by default.

  Returns:
    ``(x0, y0, w, h)`` in pixels.
  """
  base = min(height, width)
  sides = [int(base * s) for s in scales]
  crop_h = [out_size[0] if abs(x - out_size[0]) < 3 else x for x in sides]
  crop_w = [out_size[1] if abs(x - out_size[1]) < 3 else x for x in sides]
  pairs = [(w, h) for i, h in enumerate(crop_h) for j, w in enumerate(crop_w)
           if abs(i - j) <= max_distort]
  w, h = pairs[int(rng.integers(len(pairs)))]
  ws, hs = (width - w) // 4, (height - h) // 4
  offsets = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0),
             (1, 1), (3, 1), (1, 3), (3, 3)]
  ox, oy = offsets[int(rng.integers(len(offsets)))]
  return float(ox * ws), float(oy * hs), float(w), float(h)


CROP_MODES = ("random_resized", "multiscale")


def train_view(rng: np.random.Generator, height: int, width: int, *,
               scale: tuple[float, float] = (0.25, 1.0),
               ratio: tuple[float, float] = (3 / 4, 4 / 3),
               flip: bool = True, rotation: float = 0.0,
               crop_mode: str = "random_resized", out_size: tuple[int, int] = (0, 0),
               scales: tuple[float, ...] = MULTISCALE_SCALES,
               max_distort: int = 1) -> View:
  """Draws one training view: a crop, flip with p = 1/2, rotation.

  Args:
    rng: the element's generator.
    height, width: the original frame size.
    scale, ratio: ``'random_resized'`` crops: area fraction and aspect (w/h) ranges.
    flip: allow horizontal flips.
    rotation: the angle is uniform in ``[-rotation, rotation]`` degrees.
    crop_mode: ``'random_resized'`` (`random_resized_crop_box`, fine-tuning) or
      ``'multiscale'`` (`multiscale_crop_box`, VideoMAE pretraining).
    out_size, scales, max_distort: ``'multiscale'`` crops (see there).
  """
  if crop_mode == "multiscale":
    box = multiscale_crop_box(rng, height, width, out_size, scales, max_distort)
  elif crop_mode == "random_resized":
    box = random_resized_crop_box(rng, height, width, scale, ratio)
  else:
    raise ValueError(f"train_view: crop_mode {crop_mode!r}; use one of {CROP_MODES}.")
  do_flip = bool(flip and rng.random() < 0.5)
  angle = float(rng.uniform(-rotation, rotation)) if rotation > 0 else 0.0
  return View(box, do_flip, angle)


def eval_view(height: int, width: int, out_size: tuple[int, int], *,
              crop_fraction: float = 0.875, crop: int = 1, num_crops: int = 1) -> View:
  """An evaluation view: short side to ``out / crop_fraction``, then a crop.

  Args:
    height, width: the original frame size.
    out_size: the cell size ``(h, w)``.
    crop_fraction: the crop's share of the resized short side.
    crop: with ``num_crops=3``, 0, 1, 2 take the start, centre, end of the long
      side (the centre along the short side); with ``num_crops=1`` the centre.
    num_crops: 1 or 3.
  """
  oh, ow = out_size
  # The resized frame's short side is max(oh, ow) / crop_fraction.
  f = max(oh, ow) / crop_fraction / min(height, width)
  bw, bh = ow / f, oh / f
  pos = (0.5, 0.5)
  if num_crops == 3:
    t = crop / 2
    pos = (t, 0.5) if width >= height else (0.5, t)
  elif num_crops != 1:
    raise ValueError(f"eval_view: num_crops={num_crops}; use 1 or 3.")
  return View(((width - bw) * pos[0], (height - bh) * pos[1], bw, bh))


def _source_region(view: View, height: int, width: int, kx: int, ky: int):
  """The integer window ``(x0, y0, x1, y1)`` of the frame that the view samples.

  The rotated box's bounding box plus a margin of two reduced pixels for the
  bilinear neighbours, clipped to the frame; pixels outside it are never read.
  """
  x0, y0, bw, bh = view.box
  cx, cy = x0 + bw / 2, y0 + bh / 2
  theta = math.radians(view.angle)
  hw = (abs(math.cos(theta)) * bw + abs(math.sin(theta)) * bh) / 2
  hh = (abs(math.sin(theta)) * bw + abs(math.cos(theta)) * bh) / 2
  rx0 = max(0, math.floor(cx - hw) - 2 * kx)
  ry0 = max(0, math.floor(cy - hh) - 2 * ky)
  rx1 = min(width, math.ceil(cx + hw) + 2 * kx)
  ry1 = min(height, math.ceil(cy + hh) + 2 * ky)
  return rx0, ry0, max(rx1, rx0 + 1), max(ry1, ry0 + 1)


def reduced_matrix(edge: np.ndarray, kx: int = 1, ky: int = 1,
                   origin: tuple[int, int] = (0, 0)) -> np.ndarray:
  """float64 ``[2, 3]``: an output-edge -> frame-edge map in OpenCV's convention.

  Pixel centres sit at integer coordinates on both sides; source coordinates are in
  pixels of the frame box-reduced by ``(kx, ky)``, relative to ``origin`` (a window's
  top-left corner in frame pixels).
  """
  (a, b, off_x), (d, e, off_y) = edge
  off_x, off_y = off_x - origin[0], off_y - origin[1]
  # Edge coordinates -> centre coordinates on both sides: u = x + 1/2, and the
  # reduced source pixel i covers [i, i + 1), its centre i + 1/2.
  m = np.array([[a / kx, b / kx, off_x / kx], [d / ky, e / ky, off_y / ky]])
  m[:, 2] += 0.5 * (m[:, 0] + m[:, 1]) - 0.5
  return m


def affine_matrix(view: View, out_w: int, out_h: int, kx: int = 1, ky: int = 1,
                  origin: tuple[int, int] = (0, 0)) -> np.ndarray:
  """float64 ``[2, 3]``: output pixel ``(x, y)`` -> source pixel, OpenCV's convention.

  Pixel centres sit at integer coordinates; box edges map to the output's edges, so
  output pixel centre ``x + 1/2`` (in edge coordinates) samples the box at
  ``(x + 1/2) / out_w`` of its width. Source coordinates are in pixels of the frame
  box-reduced by ``(kx, ky)``, relative to ``origin`` (the window's top-left corner in
  frame pixels).
  """
  x0, y0, bw, bh = view.box
  cx, cy = x0 + bw / 2, y0 + bh / 2
  theta = math.radians(view.angle)
  # Sampling the source at R(theta)·(dx, dy) with y pointing down turns the content
  # counter-clockwise on screen, as np.rot90 does.
  c, s = math.cos(theta), math.sin(theta)
  fx = -1.0 if view.flip else 1.0
  # In edge coordinates: dx = fx·bw·(u/out_w - 1/2), dy = bh·(v/out_h - 1/2) for
  # output edge coordinates (u, v); source = centre + R·(dx, dy).
  a, b = c * fx * bw / out_w, -s * bh / out_h
  d, e = s * fx * bw / out_w, c * bh / out_h
  off_x = cx - c * fx * bw / 2 + s * bh / 2
  off_y = cy - s * fx * bw / 2 - c * bh / 2
  return reduced_matrix(np.array([[a, b, off_x], [d, e, off_y]]), kx, ky, origin)


def _box_reduce(window: np.ndarray, kx: int, ky: int) -> np.ndarray:
  """``[h, w, c]`` -> ``[ceil(h/ky), ceil(w/kx), c]`` block means; the last partial
  blocks repeat the edge pixels."""
  h, w = window.shape[:2]
  pad_y, pad_x = -h % ky, -w % kx
  if pad_y or pad_x:
    window = cv2.copyMakeBorder(window, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
  return cv2.resize(window, ((w + pad_x) // kx, (h + pad_y) // ky),
                    interpolation=cv2.INTER_AREA)


def _outside(matrix: np.ndarray, out_h: int, out_w: int, src_h: int,
             src_w: int) -> np.ndarray | None:
  """bool ``[out_h, out_w]``: output pixels whose sample lies outside the source by more
  than half a pixel (they become 0); None when there are none (a crop inside the frame).

  Samples within half a pixel of the source repeat its edge pixels, so the frame's
  border keeps a hard edge against the 0 fill of a rotation.
  """
  corners = np.array([[0, 0, 1], [out_w - 1, 0, 1], [0, out_h - 1, 1],
                      [out_w - 1, out_h - 1, 1]], np.float64) @ matrix.T
  lo, hi_x, hi_y = -0.5, src_w - 0.5, src_h - 0.5
  if (corners[:, 0].min() >= lo and corners[:, 0].max() <= hi_x
      and corners[:, 1].min() >= lo and corners[:, 1].max() <= hi_y):
    return None
  ys, xs = np.mgrid[:out_h, :out_w]
  sx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
  sy = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
  return (sx < lo) | (sx > hi_x) | (sy < lo) | (sy > hi_y)


@dataclasses.dataclass(frozen=True)
class Warp:
  """One resampling of a clip's frames to the output size, planned once per clip.

  Attributes:
    window: ``(x0, y0, x1, y1)``, the frame pixels the warp reads (no others are read).
    kx, ky: the whole factors the window is box-reduced by first.
    matrix: float64 ``[2, 3]``: output pixel -> pixel of the reduced window (OpenCV's
      convention, `reduced_matrix`).
    size: the output ``(h, w)``.
    outside: bool ``[h, w]``: output pixels that are set to 0, or None.
  """
  window: tuple[int, int, int, int]
  kx: int
  ky: int
  matrix: np.ndarray
  size: tuple[int, int]
  outside: np.ndarray | None = None


def plan_view(view: View, height: int, width: int, out_size: tuple[int, int]) -> Warp:
  """The `Warp` of `apply_view`: a ``height x width`` frame's view at ``out_size``.

  Pixels that the view's rotation brings in from outside the frame are `Warp.outside`.
  """
  oh, ow = out_size
  bw, bh = view.box[2], view.box[3]
  # Box-reduce by whole factors first so the bilinear warp scales by less than 2x.
  kx, ky = max(1, int(bw / ow)), max(1, int(bh / oh))
  # Only the window the view samples is read and reduced (crops are small).
  rx0, ry0, rx1, ry1 = _source_region(view, height, width, kx, ky)
  matrix = affine_matrix(view, ow, oh, kx, ky, (rx0, ry0))
  reduced_h = -(-(ry1 - ry0) // ky)
  reduced_w = -(-(rx1 - rx0) // kx)
  return Warp((rx0, ry0, rx1, ry1), kx, ky, matrix, (oh, ow),
              _outside(matrix, oh, ow, reduced_h, reduced_w))


def affine_window(edge: np.ndarray, out_size: tuple[int, int], height: int, width: int,
                  margin: int = 2) -> tuple[int, int, int, int]:
  """``(x0, y0, x1, y1)``: the frame pixels an affine warp to ``out_size`` reads.

  ``edge`` maps output edge coordinates to frame edge coordinates (float ``[2, 3]``);
  the window is the bounding box of where the output rectangle lands, ``margin``
  pixels wider for the interpolation's neighbours, clipped to the frame and never
  empty (samples beyond the frame repeat its edge pixels).
  """
  oh, ow = out_size
  corners = np.array([[0, 0, 1], [ow, 0, 1], [0, oh, 1], [ow, oh, 1]], np.float64) @ edge.T
  x0 = min(max(0, math.floor(corners[:, 0].min()) - margin), width - 1)
  y0 = min(max(0, math.floor(corners[:, 1].min()) - margin), height - 1)
  x1 = max(min(width, math.ceil(corners[:, 0].max()) + margin), x0 + 1)
  y1 = max(min(height, math.ceil(corners[:, 1].max()) + margin), y0 + 1)
  return x0, y0, x1, y1


def warp_windows(windows, warp: Warp, out: np.ndarray) -> np.ndarray:
  """Box-reduces and warps each window (the frames' `Warp.window`) into ``out``.

  Args:
    windows: iterable of uint8 ``[y1 - y0, x1 - x0, C]``, C = 1 or 3, one per frame.
    warp: from `plan_view`.
    out: uint8 ``[K, h, w, C]``, one per window.

  Returns:
    ``out``, with `Warp.outside` set to 0.
  """
  oh, ow = warp.size
  flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
  channels = out.shape[-1]
  for t, window in enumerate(windows):
    if warp.kx > 1 or warp.ky > 1:
      window = _box_reduce(window, warp.kx, warp.ky)
    warped = cv2.warpAffine(window, warp.matrix, (ow, oh),
                            dst=out[t] if channels == 3 else None,
                            flags=flags, borderMode=cv2.BORDER_REPLICATE)
    if channels == 1:
      out[t, ..., 0] = warped
    if warp.outside is not None:
      out[t][warp.outside] = 0
  return out


def apply_view(frames: np.ndarray, view: View, out_size: tuple[int, int], *,
               indices: np.ndarray | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
  """Warps every frame of a clip by the same view to the output size.

  Args:
    frames: uint8 ``[T, H, W, C]``, C = 1 or 3.
    view: the crop / flip / rotation, in the frames' pixels.
    out_size: ``(h, w)``, the TIME cell size.
    indices: int ``[K]``: warp ``frames[indices]`` (in that order) without copying
      them first; default all T frames.
    out: optional uint8 ``[K, h, w, C]`` to write into.

  Returns:
    uint8 ``[K, h, w, C]`` (``out`` when given). Pixels that a rotation brings in
    from outside the frame are 0.
  """
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (1, 3):
    raise ValueError(f"apply_view: expected uint8 [T, H, W, 1|3], got {frames.dtype} "
                     f"{frames.shape}.")
  oh, ow = out_size
  sources = range(frames.shape[0]) if indices is None else np.asarray(indices).tolist()
  if out is None:
    out = np.empty((len(sources), oh, ow, frames.shape[-1]), np.uint8)
  warp = plan_view(view, frames.shape[1], frames.shape[2], out_size)
  x0, y0, x1, y1 = warp.window
  return warp_windows((frames[source, y0:y1, x0:x1] for source in sources), warp, out)


# ----------------------------------------------------------------------------------
# Depth and channels.
# ----------------------------------------------------------------------------------

def depth_to_uint8(frames: np.ndarray, depth_max: float = 0.0) -> np.ndarray:
  """Scales raw depth to uint8 ``[0, 255]``.

  Args:
    frames: ``[T, H, W, 1]`` raw depth (uint16 / int32 / float32; e.g. millimetres).
    depth_max: depth mapped to 255 (larger values clip); 0 maps the clip's own
      ``[min, max]`` range to ``[0, 255]`` (one range for all frames of the clip).

  Returns:
    uint8 ``[T, H, W, 1]``.
  """
  x = frames.astype(np.float32)
  if depth_max > 0:
    lo, hi = 0.0, float(depth_max)
  else:
    lo, hi = float(x.min()), float(x.max())
  if hi <= lo:
    return np.zeros(frames.shape, np.uint8)
  y = (x - lo) * (255.0 / (hi - lo))
  return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def to_rgb(frames: np.ndarray) -> np.ndarray:
  """``[..., 1]`` -> ``[..., 3]`` by repetition (depth as in the paper); RGB unchanged."""
  return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def to_uint8(frames: np.ndarray, *, depth: bool = False,
             depth_max: float = 0.0) -> np.ndarray:
  """Decoded frames -> uint8: depth scaled by `depth_to_uint8`, RGB checked."""
  if depth:
    return depth_to_uint8(frames, depth_max)
  if frames.dtype != np.uint8:
    raise ValueError(f"prepare: RGB frames must be uint8, got {frames.dtype}; set "
                     "dataset.modality='depth' for depth data.")
  return frames


def prepare(frames: np.ndarray, view: View, out_size: tuple[int, int], *,
            depth: bool = False, depth_max: float = 0.0,
            indices: np.ndarray | None = None,
            out: np.ndarray | None = None) -> np.ndarray:
  """Depth scaling, the view warp and 3 channels: decoded clip -> pipeline frames.

  Args:
    frames: ``[T, H, W, C]``: uint8 RGB, or raw depth with C = 1 when ``depth``.
    view: from `train_view` or `eval_view` on ``(H, W)``.
    out_size: the cell size ``(h, w)``.
    depth: scale with `depth_to_uint8` first.
    depth_max: see `depth_to_uint8`.
    indices: the clip is ``frames[indices]`` (see `apply_view`); default all frames.
    out: optional uint8 ``[K, h, w, 3]`` to write into.

  Returns:
    uint8 ``[K, h, w, 3]`` (``out`` when given).
  """
  frames = to_uint8(frames, depth=depth, depth_max=depth_max)
  if frames.shape[-1] == 3:
    return apply_view(frames, view, out_size, indices=indices, out=out)
  rgb = to_rgb(apply_view(frames, view, out_size, indices=indices))
  if out is None:
    return rgb
  out[...] = rgb
  return out
