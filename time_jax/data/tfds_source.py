"""TFDS video datasets (``dataset.name='tfds'`` or ``source='tfds'``), without TensorFlow.

`splits(config.dataset)` lists the train and eval splits of a prepared TFDS builder
(``dataset.tfds_name``, ``tfds_data_dir``, ``tfds_train_split``, ``tfds_eval_split``) as
`Record`s with paths ``"tfds://<name>/<split>/<i>"``; `reader(config)` returns the
`TfdsReader` that reads them back by random access (``tfds.data_source``, the
ArrayRecord files of a builder prepared with ``file_format='array_record'``).

The builder must have one ``tfds.features.Video`` feature (the frames) and a
``ClassLabel`` feature (named ``'label'`` when there are several), whose names become
the class names.

Reading: elements are fetched as serialized examples and parsed with TFDS's NumPy example
parser, so a video's frames stay encoded (PNG / JPEG bytes, one per frame) and only the
chosen ones are decoded (PIL). Sources that hand over decoded frames (an array
``[T, h, w, c]`` or a list of frames, as ``tfds.testing.mock_data`` does) work too.
Listing the records reads each element's label once (a pass over the split's bytes,
no frame decoded).

TensorFlow: TFDS 4.9's ``Video.__init__`` normalises its dtype with
``tf.dtypes.as_dtype`` (the one TensorFlow call on this read path), so no builder with
a video feature can even be constructed without TensorFlow. When TensorFlow is not
installed, `_video_feature_without_tensorflow` gives that module ``np.dtype`` in its
place; the Image feature inside converts the dtype to NumPy anyway.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import threading
import time
import types
from typing import Any

import numpy as np
from PIL import Image

from time_jax.data.base import Chooser, DecodeError, Record, Splits

_PREFIX = "tfds://"
_patched = False


def _video_feature_without_tensorflow() -> None:
  """Lets ``tfds.features.Video`` be built with TensorFlow absent (module docstring)."""
  global _patched
  if _patched or importlib.util.find_spec("tensorflow") is not None:
    return
  from tensorflow_datasets.core.features import video_feature  # pylint: disable=g-import-not-at-top
  video_feature.tf = types.SimpleNamespace(
      dtypes=types.SimpleNamespace(as_dtype=np.dtype))
  _patched = True


def _tfds():
  _video_feature_without_tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def _open(name: str, split: str, data_dir: str):
  """The ``tfds.data_source`` of a split (its ``.data_source`` gives raw bytes)."""
  tfds = _tfds()
  # Registers TFDS's own builders (e.g. tensorflow_datasets.video.ucf101), which the
  # TensorFlow-free import of tensorflow_datasets leaves unregistered.
  # A prepared data_dir also loads without them (TFDS reads its features.json).
  try:
    importlib.import_module("tensorflow_datasets.video")
  except ImportError as e:
    logging.debug("tensorflow_datasets.video not importable: %s", e)
  return tfds.data_source(name, split=split, data_dir=data_dir or None)


def _feature_keys(features) -> tuple[str, str]:
  """``(video key, label key)`` of a builder's top-level FeaturesDict."""
  tfds = _tfds()
  videos = [k for k, f in features.items() if isinstance(f, tfds.features.Video)]
  labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
  if len(videos) != 1:
    raise ValueError(f"config.dataset.tfds_name: the builder has video features "
                     f"{videos}; time_jax needs exactly one tfds.features.Video.")
  if not labels:
    raise ValueError("config.dataset.tfds_name: the builder has no ClassLabel feature "
                     "to train on.")
  return videos[0], ("label" if "label" in labels else labels[0])


class _Split:
  """One opened split: its data source, feature keys and a parser for raw bytes."""

  def __init__(self, name: str, split: str, data_dir: str):
    self.source = _open(name, split, data_dir)
    self.features = self.source.dataset_info.features
    self.video_key, self.label_key = _feature_keys(self.features)
    self._parser = None

  def element(self, i: int) -> dict[str, Any]:
    """Element ``i``: parsed, its frames still encoded when the source gives bytes."""
    # TFDS's data source decodes every frame; its underlying ArrayRecord source (the
    # documented `data_source` field) gives the serialized example instead. (Asking
    # for DeserializeMethod.RAW_BYTES would do the same, but mock_data then encodes
    # its fake videos, which needs TensorFlow.)
    inner = getattr(self.source, "data_source", None)
    raw = inner[i] if inner is not None else self.source[i]
    if isinstance(raw, dict):  # decoded already (e.g. tfds.testing.mock_data)
      return raw
    if self._parser is None:
      from tensorflow_datasets.core import example_parser  # pylint: disable=g-import-not-at-top
      self._parser = example_parser.ExampleParserNp(self.features.get_serialized_info())
    return self._parser.parse_example(raw)

  def frames(self, i: int) -> list:
    """The video of element ``i``: a ``[T, h, w, c]`` array or T frames / encodings."""
    video = self.element(i)[self.video_key]
    if isinstance(video, np.ndarray) and video.dtype.kind not in "OSV":
      return video  # decoded pixels
    return list(video)  # one encoded image (or decoded frame) per frame


def _split_path(path: str) -> tuple[str, str, int]:
  if not path.startswith(_PREFIX):
    raise ValueError(f"TfdsReader: {path!r} is not a 'tfds://name/split/index' path; "
                     "use the records of tfds_source.splits().")
  name, split, index = path[len(_PREFIX):].rsplit("/", 2)
  return name, split, int(index)


def splits(cfg) -> Splits:
  """The train / eval records and class names of a TFDS builder.

  Args:
    cfg: ``config.dataset`` (``tfds_name``, ``tfds_data_dir``, ``tfds_train_split``,
      ``tfds_eval_split``).

  Returns:
    ``Splits(train, eval, class_names)``; paths ``"tfds://<name>/<split>/<i>"``, labels the
    ClassLabel values, ``num_frames`` None (the reader sees the true count).
  """
  name = cfg.tfds_name
  if not name:
    raise ValueError("config.dataset.tfds_name is empty; name the TFDS builder.")
  out, names = [], None
  for split in (cfg.tfds_train_split, cfg.tfds_eval_split):
    start = time.time()
    s = _Split(name, split, cfg.tfds_data_dir)
    names = list(s.features[s.label_key].names)
    records = []
    for i in range(len(s.source)):
      path = f"{_PREFIX}{name}/{split}/{i}"
      records.append(Record(path, int(s.element(i)[s.label_key]), None,
                            f"{name}/{split}/{i}"))
    logging.info("tfds %s: %d %s records (labels read in %.1fs).", name, len(records),
                 split, time.time() - start)
    out.append(records)
  return Splits(out[0], out[1], names)


def _decode(frame) -> np.ndarray:
  """One frame: an array ``[h, w, c]`` or its PNG / JPEG bytes."""
  if isinstance(frame, (bytes, bytearray, memoryview, np.bytes_)):
    arr = np.asarray(Image.open(io.BytesIO(bytes(frame))))
    return arr[..., None] if arr.ndim == 2 else arr
  return np.asarray(frame)


class TfdsReader:
  """The `ClipReader` of ``tfds://`` records. Opens splits lazily, once per process;
  pickles without the open data sources (Grain workers reopen them)."""

  def __init__(self, data_dir: str = ""):
    self.data_dir = data_dir
    self._reset()

  def _reset(self):
    self._lock = threading.Lock()
    self._splits: dict[tuple[str, str], _Split] = {}

  def __getstate__(self):
    return {"data_dir": self.data_dir}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._reset()

  def _split(self, name: str, split: str) -> _Split:
    s = self._splits.get((name, split))
    if s is None:
      with self._lock:
        s = self._splits.get((name, split))
        if s is None:
          s = self._splits[(name, split)] = _Split(name, split, self.data_dir)
    return s

  def read(self, record: Record, choose: Chooser) -> np.ndarray:
    """``[k, h, w, c]`` uint8: the frames ``choose(T)`` of the element's video."""
    name, split, i = _split_path(record.path)
    video = self._split(name, split).frames(i)
    if len(video) == 0:
      raise DecodeError(f"{record.path}: the video has no frames")
    idx = np.asarray(choose(len(video)), np.int64)
    if isinstance(video, np.ndarray):
      return video[idx]
    unique, inverse = np.unique(idx, return_inverse=True)
    try:
      frames = np.stack([_decode(video[j]) for j in unique.tolist()])
    except (OSError, ValueError) as e:  # PIL: unidentified or truncated image
      raise DecodeError(f"{record.path}: {e}") from e
    return frames[inverse.reshape(-1)]


def reader(config) -> TfdsReader:
  """The reader of a full config with ``dataset.source='tfds'``."""
  return TfdsReader(config.dataset.tfds_data_dir)
