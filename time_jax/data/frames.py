"""Frame folders: one image file per frame, decode only the frames a sampler chooses.

`FrameFolderReader` is the `ClipReader` of ``dataset.source='frames'``. A record's path
is a folder of images (``.jpg .jpeg .png .bmp .tif .tiff .webp``) with any names that
sort into frame order when compared naturally (digit runs as numbers, so ``img_2`` comes
before ``img_10``); other files (``Thumbs.db``, hidden files) are ignored.

What comes back depends on the images, so the reader needs no arguments:

* RGB, grayscale, palette or RGBA images -> uint8 ``[k, h, w, 3]`` (alpha dropped).
* 16-bit grayscale PNGs (PIL modes ``I;16*`` / ``I``, e.g. NTU RGB+D depth maps) ->
  ``[k, h, w, 1]`` uint16 raw depth (int32 if a mode-``I`` image holds values outside
  16 bits); 32-bit float images (mode ``F``) -> float32 ``[k, h, w, 1]``. The
  pipeline's depth transform scales them to uint8 later.

The frame count T given to ``choose`` is the number of images in the folder; when the
annotation's ``record.num_frames`` disagrees, the smaller of the two is used (frames past
the end of the folder do not exist, and frames past the annotation's count may be
padding), and the disagreement is logged once per folder.

`write_frames` writes a clip in this layout, for tests and tools.
"""

from __future__ import annotations

import io
import logging
import os
import re

import numpy as np
from PIL import Image
import simplejpeg

from time_jax.data.base import Chooser, DecodeError, Record

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# PIL modes of single-channel images with more than 8 bits: decoded as depth.
_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")

_DIGITS = re.compile(r"(\d+)")
_mismatch_logged: set[str] = set()


def natural_key(name: str) -> tuple:
  """Sort key comparing digit runs as numbers: ``img_2`` < ``img_10``.

  Text parts compare case-insensitively; the name itself breaks ties so the order is
  total (``a01`` and ``a1`` keep a fixed order).
  """
  parts = _DIGITS.split(name)
  key = tuple((0, int(p), "") if i % 2 else (1, 0, p.lower())
              for i, p in enumerate(parts) if p)
  return key, name


def list_frames(folder: str) -> list[str]:
  """The image file names of a frame folder, in natural order.

  Raises:
    DecodeError: the folder does not exist, is not a folder, cannot be listed, or
      holds no image files.
  """
  if not os.path.isdir(folder):
    what = "is not a folder" if os.path.exists(folder) else "does not exist"
    raise DecodeError(f"{folder}: frame folder {what}.")
  try:
    with os.scandir(folder) as it:
      names = [e.name for e in it
               if not e.name.startswith(".")
               and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
               and e.is_file()]
  except OSError as e:
    raise DecodeError(f"{folder}: cannot list the frame folder ({e}).") from e
  if not names:
    raise DecodeError(f"{folder}: frame folder holds no images "
                      f"({'/'.join(IMAGE_EXTENSIONS)}).")
  return sorted(names, key=natural_key)


def decode_image_bytes(data: bytes, name: str = "image") -> np.ndarray:
  """One encoded frame: uint8 ``[h, w, 3]`` RGB, or depth ``[h, w, 1]``.

  JPEG (the usual RGB frame) decodes with libjpeg-turbo (``simplejpeg``, GIL released);
  other formats and modes (16-bit depth PNG, palettes, CMYK) with Pillow.

  Raises:
    DecodeError: the bytes are not a decodable image.
  """
  if data[:2] == b"\xff\xd8":  # a JPEG
    try:
      colorspace = simplejpeg.decode_jpeg_header(data)[2]
      if colorspace in ("Gray", "YCbCr", "RGB"):
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
      pass  # let Pillow try (and name the problem)
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      if img.mode in _DEPTH_MODES:
        arr = np.asarray(img)
        if img.mode == "I" and arr.size and 0 <= arr.min() and arr.max() <= 65535:
          arr = arr.astype(np.uint16)
        elif img.mode.startswith("I;16"):
          arr = arr.astype(np.uint16)  # native byte order whatever the file's
        return arr[..., None]
      if img.mode != "RGB":
        img = img.convert("RGB")
      return np.asarray(img, dtype=np.uint8)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DecodeError(f"{name}: cannot decode the image ({e}).") from e


def decode_image(path: str) -> np.ndarray:
  """One frame file: uint8 ``[h, w, 3]`` RGB, or depth ``[h, w, 1]`` (module docstring).

  Raises:
    DecodeError: the file cannot be opened or decoded (missing, truncated, not an
      image).
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise DecodeError(f"{path}: cannot read the image ({e}).") from e
  return decode_image_bytes(data, path)


class FrameFolderReader:
  """`ClipReader` for folders of frame images (``dataset.source='frames'``).

  Stateless and picklable; lists the folder on every read and opens only the chosen
  frames, each distinct index once.
  """

  def read(self, record: Record, choose: Chooser) -> np.ndarray:
    """The frames ``choose(T)`` of ``record.path``; see the module docstring.

    Returns:
      ``[len(indices), h, w, 3]`` uint8 for RGB images, ``[len(indices), h, w, 1]``
      raw depth (uint16 for 16-bit PNGs) for depth images.

    Raises:
      DecodeError: missing or empty folder, an undecodable chosen frame, or chosen
        frames of different sizes or kinds (RGB and depth mixed).
    """
    folder = record.path
    names = list_frames(folder)
    count = len(names)
    if record.num_frames is not None and record.num_frames != count:
      use = min(count, record.num_frames) if record.num_frames > 0 else count
      if folder not in _mismatch_logged:
        _mismatch_logged.add(folder)
        logging.warning("%s: the annotation says %d frames but the folder holds %d "
                        "images; using %d.", folder, record.num_frames, count, use)
      count = use
    indices = np.asarray(choose(count), dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= count):
      raise ValueError(f"{folder}: chosen frame indices {indices.tolist()} are outside "
                       f"[0, {count}); the chooser must respect the frame count.")
    unique, inverse = np.unique(indices, return_inverse=True)
    frames = [decode_image(os.path.join(folder, names[i])) for i in unique]
    if not frames:
      raise DecodeError(f"{folder}: the sampler chose no frames of {count}.")
    first = frames[0]
    for i, f in zip(unique, frames):
      if f.shape != first.shape or (f.dtype == np.uint8) != (first.dtype == np.uint8):
        raise DecodeError(
            f"{folder}: frame {names[i]} is {f.dtype}{list(f.shape)} but frame "
            f"{names[unique[0]]} is {first.dtype}{list(first.shape)}; all frames of a "
            "folder must have one size and kind (RGB or depth).")
    return np.stack(frames)[inverse.reshape(-1)]


def write_frames(folder: str, frames: np.ndarray, *, ext: str = "") -> list[str]:
  """Writes a clip as a frame folder (created if needed); returns the file paths.

  Args:
    folder: the frame folder.
    frames: uint8 ``[T, h, w, 3]`` RGB, written as ``img_00001.jpg`` ... (JPEG
      quality 95); or uint16 depth ``[T, h, w]`` / ``[T, h, w, 1]``, written as
      16-bit PNGs ``00001.png`` ....
    ext: override the RGB file type, e.g. ``'.png'`` for lossless RGB frames
      (``img_00001.png``). Depth is always PNG.

  Returns:
    The written paths, in frame order.
  """
  frames = np.asarray(frames)
  depth = frames.dtype == np.uint16
  if depth:
    if frames.ndim == 4 and frames.shape[-1] == 1:
      frames = frames[..., 0]
    if frames.ndim != 3:
      raise ValueError(f"write_frames: depth must be [T, h, w] or [T, h, w, 1], got "
                       f"{list(frames.shape)}.")
  elif frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"write_frames: frames must be uint8 [T, h, w, 3] (RGB) or uint16 "
                     f"[T, h, w(, 1)] (depth), got {frames.dtype}{list(frames.shape)}.")
  os.makedirs(folder, exist_ok=True)
  suffix = ".png" if depth else (ext or ".jpg")
  if not suffix.startswith("."):
    suffix = "." + suffix
  paths = []
  for t, frame in enumerate(frames, 1):
    path = os.path.join(folder, f"{t:05d}.png" if depth else f"img_{t:05d}{suffix}")
    if depth:
      # 'I;16' (little-endian 16-bit); PNG stores it as 16-bit grayscale.
      Image.fromarray(np.ascontiguousarray(frame.astype("<u2"))).save(path)
    elif suffix.lower() in (".jpg", ".jpeg"):
      Image.fromarray(frame).save(path, quality=95)
    else:
      Image.fromarray(frame).save(path)
    paths.append(path)
  return paths


def read_folder(folder: str) -> np.ndarray:
  """Every frame of a folder: ``[T, h, w, c]`` as `FrameFolderReader` returns them."""
  return FrameFolderReader().read(Record(folder, 0), np.arange)

