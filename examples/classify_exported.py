"""Classifies videos with a model exported by ``python -m time_jax.export``, without time_jax.

  python examples/classify_exported.py MODEL VIDEO [VIDEO ...] [--views KxC] [--top 5]

MODEL is the artifact; ``MODEL.json`` next to it is its sidecar. Needs jax, numpy,
flatbuffers (jax's deserialiser), av (PyAV) and opencv-python-headless; a GPU build of
jax runs the CUDA lowering the artifact carries.

What a service does, in four steps (each a function below):

1. `read_views`: decode the frames the sidecar's sampling rule picks (`segment_indices`
   or `dense_indices`) with PyAV, and crop and resize every view as evaluation does
   (`eval_box`, `warp`): uint8 ``[views, frames_per_clip, cell_h, cell_w, 3]``.
2. `Model.__call__`: the exported function (TIME arrangement, normalisation and the
   network inside) -> float32 ``logits [views, classes]``, ``features [views, embed]``;
   any number of views (the batch size is symbolic).
3. `merge`: one probability vector from the views (the sidecar's ``views.merge``).
4. print the top-k class names.

A mistake (cells of the wrong shape, a sidecar that does not belong to the artifact, an
unreadable video) is one ``error:`` line; exit status 0 when every video was classified,
1 when some failed, 2 when nothing could run.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys

import av
import cv2
import jax
import numpy as np


class ExportError(ValueError):
  """A one-line mistake: a wrong input, a mismatched sidecar, an unreadable video."""


# ----------------------------------------------------------------------------------
# The model and its sidecar.
# ----------------------------------------------------------------------------------

class Model:
  """An exported classifier and its sidecar.

  Attributes:
    meta: the sidecar (``MODEL.json``) as a dict.
    exported: the deserialised `jax.export.Exported`.
  """

  def __init__(self, path: str):
    try:
      with open(path + ".json", encoding="utf-8") as f:
        self.meta = json.load(f)
      with open(path, "rb") as f:
        self.exported = jax.export.deserialize(bytearray(f.read()))
    except (OSError, ValueError) as e:
      raise ExportError(f"{path}: cannot read the exported model or its sidecar ({e})") from e
    m = self.meta
    self.cells_shape = (m["frames_per_clip"], *m["cell_size"], 3)
    want = tuple(self.exported.in_avals[0].shape[1:])
    if want != self.cells_shape:
      raise ExportError(
          f"{path}.json does not belong to {path}: the sidecar says {self.cells_shape[0]} "
          f"frames of {self.cells_shape[1]}x{self.cells_shape[2]} per view, the artifact "
          f"takes {want[0]} of {want[1]}x{want[2]}; export them again together.")
    here = jax.export.default_export_platform()  # 'cuda' on an NVIDIA GPU, not 'gpu'
    if here not in self.exported.platforms:
      raise ExportError(f"{path} is lowered for {', '.join(self.exported.platforms)}, not "
                        f"for this {here}; export it with --platforms.")
    self._call = jax.jit(self.exported.call)

  def __call__(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[views, frames, cell_h, cell_w, 3]`` -> float32 ``(logits, features)``."""
    cells = np.asarray(cells)
    if cells.dtype != np.uint8 or cells.shape[1:] != self.cells_shape or not len(cells):
      raise ExportError(
          f"the model takes uint8 [views, {', '.join(map(str, self.cells_shape))}] "
          f"({self.cells_shape[0]} frames of {self.cells_shape[1]}x{self.cells_shape[2]} "
          f"per view); got {cells.dtype} {list(cells.shape)}.")
    logits, features = self._call(cells)
    return np.asarray(logits), np.asarray(features)


# ----------------------------------------------------------------------------------
# Temporal sampling: which frames make clip k of K (``sampling.rule``).
# ----------------------------------------------------------------------------------

def segment_indices(num_frames: int, length: int, clip: int = 0,
                    num_clips: int = 1) -> np.ndarray:
  """``'segments'``: one frame in each of ``length`` equal segments of the video."""
  i = np.arange(length, dtype=np.int64)
  if num_frames < length:  # every frame, repeated evenly
    return (i * num_frames) // length
  start, end = (i * num_frames) // length, ((i + 1) * num_frames) // length
  if num_clips == 1:
    return start + (end - start - 1) // 2
  return start + ((end - start) * (2 * clip + 1)) // (2 * num_clips)


def dense_indices(num_frames: int, length: int, clip: int = 0, num_clips: int = 1,
                  stride: int = 4) -> np.ndarray:
  """``'dense'``: ``length`` frames ``stride`` apart; the K clips spread over the video."""
  idx = list(range(0, num_frames, stride))
  idx += [idx[-1]] * (length - len(idx))
  if num_clips > 1:
    start = int(clip * max((len(idx) - length) / (num_clips - 1), 0))
  else:  # one clip: the middle window
    start = (len(idx) - length) // 2
  return np.asarray(idx[start:start + length], np.int64)


def clip_indices(meta: dict, num_frames: int, clip: int, num_clips: int) -> np.ndarray:
  rule, length = meta["sampling"]["rule"], meta["frames_per_clip"]
  if rule == "segments":
    return segment_indices(num_frames, length, clip, num_clips)
  if rule == "dense":
    return dense_indices(num_frames, length, clip, num_clips,
                         meta["sampling"]["dense_stride"])
  raise ExportError(f"sidecar sampling.rule={rule!r}: this client knows 'segments' and "
                    "'dense'.")


# ----------------------------------------------------------------------------------
# Decoding and the evaluation crops.
# ----------------------------------------------------------------------------------

def decode(path: str, indices: np.ndarray | None = None,
           count_only: bool = False) -> np.ndarray | int:
  """uint8 RGB ``[len(indices), H, W, 3]`` of frames ``indices`` (presentation order),
  or with ``count_only`` the frame count (from the packets, without decoding)."""
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise ExportError(f"{path}: the file has no video stream.")
      stream = container.streams.video[0]
      stream.thread_type = "AUTO"  # the codec's threads: the same pixels, sooner
      if count_only:
        return sum(1 for packet in container.demux(stream) if packet.size)
      wanted, got = set(indices.tolist()), {}
      for i, frame in enumerate(container.decode(stream)):
        if i in wanted:
          got[i] = frame.to_ndarray(format="rgb24")
        if i >= indices.max():
          break
  except (av.error.FFmpegError, OSError) as e:
    raise ExportError(f"{path}: cannot read it as a video ({e}).") from e
  if len(got) < len(wanted):
    raise ExportError(f"{path}: only {len(got)} of the {len(wanted)} wanted frames decode.")
  return np.stack([got[i] for i in indices.tolist()])


def eval_box(height: int, width: int, cell: tuple[int, int], crop_fraction: float,
             crop: int = 0, num_crops: int = 1) -> tuple[float, float, float, float]:
  """``(x0, y0, w, h)`` of evaluation crop ``crop`` of ``num_crops`` (1 or 3), in frame
  pixels: a short side resized to ``max(cell) / crop_fraction`` and a cell-sized crop."""
  oh, ow = cell
  f = max(oh, ow) / crop_fraction / min(height, width)
  bw, bh = ow / f, oh / f
  t = crop / 2 if num_crops == 3 else 0.5
  px, py = (t, 0.5) if width >= height else (0.5, t)
  return ((width - bw) * px, (height - bh) * py, bw, bh)


def warp(frames: np.ndarray, box: tuple[float, float, float, float],
         cell: tuple[int, int]) -> np.ndarray:
  """``frames[:, box]`` resized to ``cell``: uint8 ``[T, cell_h, cell_w, 3]``.

  As the training pipeline resizes: the window the box samples (plus two pixels) is
  first averaged over whole ``k x k`` blocks (so a large downscale does not alias), then
  sampled bilinearly at the output pixel centres.
  """
  oh, ow = cell
  x0, y0, bw, bh = box
  kx, ky = max(1, int(bw / ow)), max(1, int(bh / oh))
  cx, cy = x0 + bw / 2, y0 + bh / 2
  height, width = frames.shape[1:3]
  rx0 = max(0, math.floor(cx - bw / 2) - 2 * kx)
  ry0 = max(0, math.floor(cy - bh / 2) - 2 * ky)
  rx1 = max(min(width, math.ceil(cx + bw / 2) + 2 * kx), rx0 + 1)
  ry1 = max(min(height, math.ceil(cy + bh / 2) + 2 * ky), ry0 + 1)
  # Output pixel centre (x + 1/2) / ow of the box, in block-reduced window pixels.
  m = np.array([[bw / ow / kx, 0.0, (cx - bw / 2 - rx0) / kx],
                [0.0, bh / oh / ky, (cy - bh / 2 - ry0) / ky]])
  m[:, 2] += 0.5 * (m[:, 0] + m[:, 1]) - 0.5
  out = np.empty((len(frames), oh, ow, 3), np.uint8)
  for t, frame in enumerate(frames):
    window = frame[ry0:ry1, rx0:rx1]
    if kx > 1 or ky > 1:
      h, w = window.shape[:2]
      window = cv2.copyMakeBorder(window, 0, -h % ky, 0, -w % kx, cv2.BORDER_REPLICATE)
      window = cv2.resize(window, (window.shape[1] // kx, window.shape[0] // ky),
                          interpolation=cv2.INTER_AREA)
    cv2.warpAffine(window, m, (ow, oh), dst=out[t],
                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                   borderMode=cv2.BORDER_REPLICATE)
  return out


def read_views(path: str, meta: dict, clips: int | None = None,
               crops: int | None = None) -> np.ndarray:
  """uint8 ``[clips·crops, frames_per_clip, cell_h, cell_w, 3]``, ordered
  ``clip·crops + crop`` (default: the sidecar's evaluation views)."""
  if meta["modality"] != "rgb":
    raise ExportError(f"the model takes {meta['modality']} clips; this client reads RGB "
                      "videos (give the model uint8 cells of your own).")
  clips = clips or meta["views"]["clips"]
  crops = crops or meta["views"]["crops"]
  count = decode(path, count_only=True)
  if count == 0:
    raise ExportError(f"{path}: the video has no frames.")
  chosen = [clip_indices(meta, count, k, clips) for k in range(clips)]
  every = np.unique(np.concatenate(chosen))
  frames = decode(path, every)
  cell = tuple(meta["cell_size"])
  views = []
  for indices in chosen:
    clip = frames[np.searchsorted(every, indices)]
    for crop in range(crops):
      box = eval_box(*clip.shape[1:3], cell, meta["views"]["crop_fraction"], crop, crops)
      views.append(warp(clip, box, cell))
  return np.stack(views)


def merge(logits: np.ndarray, rule: str = "logits") -> np.ndarray:
  """``[views, classes]`` logits -> ``[classes]`` probabilities: ``'logits'`` takes the
  softmax of the mean logits, ``'softmax'`` the mean of the views' softmaxes."""
  def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
  logits = np.asarray(logits, np.float64)
  if rule == "logits":
    return softmax(logits.mean(0))
  if rule == "softmax":
    return softmax(logits).mean(0)
  raise ExportError(f"sidecar views.merge={rule!r}: this client knows 'logits' and 'softmax'.")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("model", help="the exported artifact (its sidecar is MODEL.json)")
  p.add_argument("video", nargs="+")
  p.add_argument("--views", default=None, help="clips x crops, e.g. 2x3 (default: sidecar)")
  p.add_argument("--top", type=int, default=5)
  args = p.parse_args(argv)
  try:
    model = Model(args.model)
    clips, crops = None, None
    if args.views:
      m = re.fullmatch(r"(\d+)(?:x(\d))?", args.views)
      if not m or int(m.group(1)) < 1 or (m.group(2) or "1") not in "13":
        raise ExportError(f"--views {args.views!r}: write clips x crops, crops 1 or 3.")
      clips, crops = int(m.group(1)), int(m.group(2) or 1)
  except ExportError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  names, failed = model.meta["class_names"], 0
  for video in args.video:
    try:
      cells = read_views(video, model.meta, clips, crops)
      probs = merge(model(cells)[0], model.meta["views"]["merge"])
    except ExportError as e:
      print(f"error: {e}", file=sys.stderr)
      failed += 1
      continue
    print(f"{video} ({len(cells)} views)")
    for rank, k in enumerate(np.argsort(-probs, kind="stable")[:args.top], 1):
      print(f"  {rank}. {names[k]:<30s} {probs[k]:.4f}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
