"""The input pipeline's earlier host path, kept as a reference for the fast one.

Before the fast path, clips were decoded and warped with Pillow: packed JPEG frames
through ``Image.draft`` + ``Image.open``, views through ``Image.reduce`` + an AFFINE
``Image.transform`` per frame (after converting each frame to and from a PIL image),
and video frames converted to RGB with a new converter per frame. These functions do
exactly that, with the signatures of the functions they stand in for, so that

* tests check the fast path against them (`transforms.apply_view` within a grey
  level on real-looking frames), and
* ``bench/input_pipeline.py`` times the pipeline with them swapped in ("before")
  against the fast path ("after") in one run.

Nothing in training uses them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from time_jax.data import transforms


def apply_view(frames: np.ndarray, view: transforms.View, out_size: tuple[int, int], *,
               indices: np.ndarray | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
  """`transforms.apply_view` computed by Pillow (same window and reduce factor)."""
  oh, ow = out_size
  kx, ky = max(1, int(view.box[2] / ow)), max(1, int(view.box[3] / oh))
  rx0, ry0, rx1, ry1 = transforms._source_region(  # pylint: disable=protected-access
      view, frames.shape[1], frames.shape[2], kx, ky)
  m = transforms.affine_matrix(view, ow, oh, kx, ky, (rx0, ry0))
  # OpenCV's convention (pixel centres at integers) back to PIL's (pixel edges).
  m[:, 2] -= 0.5 * (m[:, 0] + m[:, 1]) - 0.5
  sources = range(frames.shape[0]) if indices is None else np.asarray(indices).tolist()
  channels = frames.shape[-1]
  if out is None:
    out = np.empty((len(sources), oh, ow, channels), np.uint8)
  for t, source in enumerate(sources):
    window = frames[source, ry0:ry1, rx0:rx1]
    img = Image.fromarray(np.ascontiguousarray(window[..., 0] if channels == 1 else window))
    if kx > 1 or ky > 1:
      img = img.reduce((kx, ky))
    img = img.transform((ow, oh), Image.Transform.AFFINE, tuple(m.ravel()),
                        resample=Image.Resampling.BILINEAR)
    arr = np.asarray(img)
    out[t] = arr[..., None] if channels == 1 else arr
  return out


def decode_jpegs(payloads: list[bytes], header: dict, draft_size: int | None) -> np.ndarray:
  """`frame_cache`'s JPEG decoding by Pillow: ``Image.draft`` picks the DCT scale."""
  decoded = []
  for payload in payloads:
    img = Image.open(io.BytesIO(payload))
    if draft_size:
      img.draft(img.mode, (draft_size, draft_size))
    arr = np.asarray(img)
    decoded.append(arr[..., None] if arr.ndim == 2 else arr)
  return np.stack(decoded)


class Rgb:
  """`video`'s RGB conversion with a new converter (scaling context) per frame."""

  def __call__(self, frame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")
