"""MSRAction3D depth ``.bin`` files: read only the frames a sampler chooses.

`MsrBinReader` is the `ClipReader` of ``dataset.source='msr_bin'`` (MSRAction3D and the
datasets published in the same format, e.g. ``a01_s01_e01_sdepth.bin``). The format, all
little-endian::

    int32 frames, int32 width, int32 height          # 12-byte header
    int32 depth[frames][height][width]               # row-major, frame after frame

so a file is exactly ``12 + 4 * frames * height * width`` bytes. Depth values are raw
(millimetres in MSRAction3D; 0 where there is no reading) and are returned unscaled as
``[k, height, width, 1]`` int32; the pipeline's depth transform scales them later.

A file whose length or header does not fit this layout (truncated download, another
format) raises `DecodeError` naming the file and what is wrong. `write_msr_bin` and
`read_msr_bin` write and read whole files, for tests and tools.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from time_jax.data.base import Chooser, DecodeError, Record

HEADER = struct.Struct("<iii")  # frames, width, height
_DTYPE = np.dtype("<i4")
# Larger sizes mean the file is not in this format (MSRAction3D frames are 320x240).
MAX_SIDE = 8192
MAX_FRAMES = 1_000_000


def read_header(path: str) -> tuple[int, int, int]:
  """``(frames, height, width)`` of a .bin file, checked against its length.

  Raises:
    DecodeError: missing or unreadable file, file shorter than the header, sizes
      that are not positive or absurdly large, or a length that differs from
      ``12 + 4 * frames * height * width``.
  """
  if not os.path.isfile(path):
    what = "is not a file" if os.path.exists(path) else "does not exist"
    raise DecodeError(f"{path}: depth .bin file {what}.")
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      head = f.read(HEADER.size)
  except OSError as e:
    raise DecodeError(f"{path}: cannot read the depth .bin file ({e}).") from e
  if len(head) < HEADER.size:
    raise DecodeError(f"{path}: {size} bytes, too short for the 12-byte MSR depth "
                      "header (frames, width, height).")
  frames, width, height = HEADER.unpack(head)
  if not (0 < frames <= MAX_FRAMES and 0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
    raise DecodeError(
        f"{path}: header says {frames} frames of width {width} x height {height}; "
        f"expected positive sizes (frames <= {MAX_FRAMES}, sides <= {MAX_SIDE}). Not an "
        "MSRAction3D depth .bin file?")
  want = HEADER.size + _DTYPE.itemsize * frames * height * width
  if size != want:
    problem = "truncated" if size < want else "longer than the header says"
    raise DecodeError(
        f"{path}: {size} bytes but the header ({frames} frames of {width}x{height} "
        f"int32) needs {want}; the file is {problem}.")
  return frames, height, width


def read_msr_bin(path: str) -> np.ndarray:
  """A whole .bin file: int32 ``[T, H, W]`` raw depth.

  Raises:
    DecodeError: see `read_header`.
  """
  frames, height, width = read_header(path)
  try:
    data = np.fromfile(path, dtype=_DTYPE, offset=HEADER.size)
  except OSError as e:
    raise DecodeError(f"{path}: cannot read the depth values ({e}).") from e
  if data.size != frames * height * width:  # the file changed since the header check
    raise DecodeError(f"{path}: read {data.size} depth values, expected "
                      f"{frames * height * width}.")
  return data.reshape(frames, height, width).astype(np.int32)


def write_msr_bin(path: str, depth: np.ndarray) -> None:
  """Writes int32 ``[T, H, W]`` depth in the MSRAction3D .bin format (module docstring).

  Args:
    path: the file to write (its folder is created if needed).
    depth: integer ``[T, H, W]``; values must fit in int32.
  """
  depth = np.asarray(depth)
  if depth.ndim != 3 or not np.issubdtype(depth.dtype, np.integer) or 0 in depth.shape:
    raise ValueError(f"write_msr_bin: depth must be a non-empty integer [T, H, W] "
                     f"array, got {depth.dtype}{list(depth.shape)}.")
  info = np.iinfo(np.int32)
  if depth.min() < info.min or depth.max() > info.max:
    raise ValueError("write_msr_bin: depth values do not fit in int32.")
  frames, height, width = depth.shape
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:
    f.write(HEADER.pack(frames, width, height))
    f.write(np.ascontiguousarray(depth, dtype=_DTYPE).tobytes())


class MsrBinReader:
  """`ClipReader` for MSRAction3D depth .bin files (``dataset.source='msr_bin'``).

  Stateless and picklable. Reads the header, then seeks to and reads only the chosen
  frames, each distinct index once.
  """
  # Raw depth frames: reading one more is a copy, not a decode.
  extra_frames_free = True

  def read(self, record: Record, choose: Chooser) -> np.ndarray:
    """The frames ``choose(T)`` of ``record.path``, T the header's frame count.

    When ``record.num_frames`` is given and smaller than the header's count, T is the
    smaller count.

    Returns:
      int32 ``[len(indices), height, width, 1]`` raw depth.

    Raises:
      DecodeError: see `read_header`.
    """
    path = record.path
    frames, height, width = read_header(path)
    if record.num_frames is not None and 0 < record.num_frames < frames:
      frames = record.num_frames
    indices = np.asarray(choose(frames), dtype=np.int64).reshape(-1)
    if indices.size == 0:
      raise DecodeError(f"{path}: the sampler chose no frames of {frames}.")
    if indices.min() < 0 or indices.max() >= frames:
      raise ValueError(f"{path}: chosen frame indices {indices.tolist()} are outside "
                       f"[0, {frames}); the chooser must respect the frame count.")
    unique, inverse = np.unique(indices, return_inverse=True)
    per_frame = height * width
    out = np.empty((len(unique), height, width), np.int32)
    try:
      with open(path, "rb") as f:
        for j, i in enumerate(unique):
          f.seek(HEADER.size + _DTYPE.itemsize * per_frame * int(i))
          data = np.fromfile(f, dtype=_DTYPE, count=per_frame)
          if data.size != per_frame:
            raise DecodeError(f"{path}: frame {i} is cut short ({data.size} of "
                              f"{per_frame} values).")
          out[j] = data.reshape(height, width)
    except OSError as e:
      raise DecodeError(f"{path}: cannot read the depth values ({e}).") from e
    return out[inverse.reshape(-1), ..., None]
