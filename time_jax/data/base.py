"""The contract between data sources and the Grain pipeline.

A dataset is a list of `Record`s (from a protocol / split parser or an annotation file)
and a `ClipReader` that decodes the frames of one record that a sampler chooses. Every
source (video files, frame folders, MSRAction3D .bin, TFDS, the packed frame cache) ends
in this form, so transforms and the pipeline never know where frames came from.
`Splits` holds a dataset's train and eval records and class names, whichever source
listed them (`time_jax.data.sources.load_splits`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Protocol

import numpy as np


class DecodeError(Exception):
  """A clip could not be read (unreadable, empty, truncated or undecodable file).

  The pipeline catches it, replaces the element, logs the file once and counts it.
  """


class ProtocolError(ValueError):
  """An annotation or split file is missing or malformed, a split is invalid, or class
  names, ``dataset.num_classes`` and labels disagree. The message is one line."""


@dataclasses.dataclass(frozen=True)
class Record:
  """One video of a dataset.

  Attributes:
    path: where the video is: a file or folder path (absolute, the config's root
      already joined), or a key for TFDS / packed sources.
    label: the class index in ``[0, num_classes)``.
    num_frames: the frame count when an annotation gives it; None to probe it.
    video_id: a stable name for reports and multi-view averaging (defaults to path).
  """
  path: str
  label: int
  num_frames: int | None = None
  video_id: str = ""

  @property
  def name(self) -> str:
    return self.video_id or self.path


class Splits(NamedTuple):
  """A dataset's records: ``train, eval, class_names = sources.load_splits(config)``."""
  train: list[Record]
  eval: list[Record]
  class_names: list[str]


# choose(num_frames) -> indices: int array of frame indices to decode, non-decreasing,
# each in [0, num_frames) (e.g. functools.partial(time_layer.frame_indices, t_out=.., n=..)).
Chooser = Callable[[int], np.ndarray]


class ClipReader(Protocol):
  """Decodes chosen frames of a record.

  A reader may set ``extra_frames_free = True`` when reading more frames of a clip
  costs little beyond the chosen ones (video files decode runs of frames anyway; raw
  depth files copy them); repeated training views then each draw their own frames
  from one read. Readers that decode every frame separately leave it unset.
  """

  def read(self, record: Record, choose: Chooser) -> np.ndarray:
    """Returns the frames ``choose(T)`` of the record, T its true frame count.

    Returns:
      ``[len(indices), h, w, c]``: uint8 with c = 3 for RGB; for depth c = 1 and the
      raw depth values (uint16 / int32 / float32), scaled later by the depth transform.

    Raises:
      DecodeError: the file is missing, unreadable, empty or undecodable.
    """
    ...
