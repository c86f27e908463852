"""A video file or frame folder -> the model input of a checkpoint, exactly as
evaluation builds it.

A folder is read as ``dataset.source='frames'`` reads it (`time_jax.data.frames`:
images in natural order; 16-bit PNGs as depth, scaled as the pipeline scales it), so a
model trained on frame folders is asked about frame folders.

The frames come from the config's sampling (`transforms.Sampling.eval`: temporal clip
k of K of TIME's segments or of VideoMAE's dense windows), the view from `transforms.eval_view` (short
side resized, centre or one of 3 crops) at the cell size ``image_size // n``, and the
on-device step is `time_layer.preprocess` with the config's normalisation.
"""

from __future__ import annotations

import functools
import os

import jax.numpy as jnp
import ml_collections
import numpy as np

from time_jax import time_layer
from time_jax.data import frames as frames_lib
from time_jax.data import transforms
from time_jax.data import video as video_lib
from time_jax.data.base import Record


def read_frames(path: str, choose) -> np.ndarray:
  """The frames ``choose(T)`` of a video file or a frame folder, ``[k, h, w, c]``
  (uint8 RGB; a folder of depth images: raw depth, c = 1).

  Raises:
    DecodeError: missing, unreadable or undecodable.
  """
  if os.path.isdir(path):
    return frames_lib.FrameFolderReader().read(Record(path, 0), choose)
  return video_lib.read_video(path, choose)[0]


def num_frames(path: str) -> int:
  """The frame count of a video file or a frame folder (its images)."""
  if os.path.isdir(path):
    return len(frames_lib.list_frames(path))
  return video_lib.num_frames(path)


def read_views(path: str, config: ml_collections.ConfigDict, *, clips: int = 1,
               crops: int = 1) -> np.ndarray:
  """The evaluation views of one video, before the TIME arrangement.

  Args:
    path: a video file or a frame folder.
    config: the checkpoint's config (``time``, ``image_size``, ``input``).
    clips, crops: K temporal clips times 1 or 3 spatial crops, ordered
      ``clip · crops + crop`` as the eval pipeline's ``view``.

  Returns:
    uint8 ``[clips·crops, t_out·n·n, cell, cell, 3]``, ``cell = image_size // n``.

  Raises:
    DecodeError: the file or folder is missing or cannot be decoded.
  """
  cell = (int(config.image_size) // config.time.n,) * 2
  fraction = float(config.input.get("eval_crop_fraction", 0.875))
  sampling = transforms.sampling(config)
  depth_max = float(config.dataset.get("depth_max", 0.0)) if "dataset" in config else 0.0
  views = []
  for clip in range(clips):
    choose = functools.partial(sampling.eval, clip=clip, num_clips=clips)
    frames = read_frames(path, choose)
    depth = frames.shape[-1] == 1  # depth images, scaled as the pipeline does
    for crop in range(crops):
      view = transforms.eval_view(frames.shape[1], frames.shape[2], cell,
                                  crop_fraction=fraction, crop=crop, num_crops=crops)
      views.append(transforms.prepare(frames, view, cell, depth=depth,
                                      depth_max=depth_max))
  return np.stack(views)


def stats(config) -> dict[str, tuple[float, ...]]:
  """``{'mean', 'std'}``: the config's per-channel normalisation on the [0, 1] scale."""
  mean = config.input.get("mean", time_layer.IMAGENET_MEAN)
  std = config.input.get("std", time_layer.IMAGENET_STD)
  return dict(mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))


def model_input(cells: np.ndarray, config: ml_collections.ConfigDict) -> jnp.ndarray:
  """``uint8 [views, t_out·n·n, cell, cell, 3]`` -> float32 ``[views, t_out, H, W, 3]``
  (TIME arrangement, normalisation and resize of `time_layer.preprocess`)."""
  size = (int(config.image_size),) * 2
  return time_layer.preprocess_jit(jnp.asarray(cells), n=int(config.time.n),
                                   arrangement=str(config.time.arrangement), size=size,
                                   **stats(config))


def to_uint8(x: np.ndarray, config: ml_collections.ConfigDict) -> np.ndarray:
  """Normalised ``[..., H, W, 3]`` -> uint8 frames (``x · std + mean``, clipped)."""
  s = stats(config)
  x = np.asarray(x, np.float32) * np.asarray(s["std"]) + np.asarray(s["mean"])
  return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
