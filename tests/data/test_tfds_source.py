"""The TFDS source without TensorFlow: mock UCF101 through the pipeline, and raw bytes.

``tfds.testing.mock_data`` hands over decoded videos (random ``[T, 256, 256, 3]``);
a prepared builder hands over serialized examples whose frames are encoded images,
which `test_serialized_examples_decode_only_chosen_frames` builds with TFDS's own
serializer (frame k uniform grey 10 k, PNG, so the check is exact).
"""

import io
import pickle

import ml_collections
import numpy as np
import pytest
from PIL import Image

from time_jax.data import config as data_config
from time_jax.data import pipeline
from time_jax.data import sources
from time_jax.data import tfds_source
from time_jax.data.base import DecodeError, Record

tfds = tfds_source._tfds()  # with the TensorFlow-free Video feature


def _config(**dataset):
  cfg = ml_collections.ConfigDict(dict(
      dataset=data_config.dataset_defaults(), input=data_config.input_defaults(),
      time=dict(n=2, t_out=2, arrangement="spatial"), image_size=32))
  cfg.dataset.update({"name": "tfds", "source": "tfds", "tfds_name": "ucf101",
                      **dataset})
  cfg.input.update(batch_size=2, eval_batch_size=2)
  return cfg


def test_mock_ucf101_records_and_frames():
  with tfds.testing.mock_data(num_examples=3):
    train, evl, names = tfds_source.splits(_config().dataset)
    assert len(train) == len(evl) == 3 and len(names) == 101
    assert names[:2] == ["ApplyEyeMakeup", "ApplyLipstick"]
    plain = tfds.data_source("ucf101", split="train")  # TFDS's own decoding
    assert [r.label for r in train] == [int(plain[i]["label"]) for i in range(3)]
    assert train[1].path == "tfds://ucf101/train/1" and evl[0].path.endswith("test/0")
    reader = tfds_source.reader(_config())
    for rec, i in zip(train, range(3)):
      video = plain[i]["video"]
      frames = reader.read(rec, lambda t: np.array([0, 0, t // 2, t - 1]))
      t = len(video)
      np.testing.assert_array_equal(frames, video[[0, 0, t // 2, t - 1]])
    clone = pickle.loads(pickle.dumps(reader))
    assert not clone._splits
    np.testing.assert_array_equal(clone.read(train[0], lambda t: np.array([1])),
                                  plain[0]["video"][[1]])


def test_mock_ucf101_through_the_pipeline():
  cfg = _config()
  with tfds.testing.mock_data(num_examples=4):
    ds, info = pipeline.build(cfg, "train", seed=0)
    it = iter(ds)
    b = next(it)
    it.close()
    assert b["frames"].shape == (2, 8, 16, 16, 3) and b["frames"].dtype == np.uint8
    assert info.num_classes == 101 and info.num_examples == 4
    ds, info = pipeline.build(cfg, "eval")
    batches = list(ds)
    assert len(batches) == 2 and all(b["valid"].all() for b in batches)
    assert [int(x) for b in batches for x in b["label"]] == [r.label for r in info.records]


def _png(value, h=6, w=8):
  buf = io.BytesIO()
  Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


class _SerializedSource:
  """Like ``tfds.data_source`` of a prepared builder: ``.data_source[i]`` is bytes."""

  def __init__(self, lengths, labels):
    self.features = tfds.features.FeaturesDict({
        "video": tfds.features.Video(shape=(None, 6, 8, 3)),
        "label": tfds.features.ClassLabel(names=["run", "jump", "sit"]),
    })
    self.dataset_info = type("Info", (), {"features": self.features})()
    self.items = [self.features.serialize_example(
        {"video": [_png(10 * k) for k in range(t)], "label": label})
        for t, label in zip(lengths, labels)]

    self.data_source = self.items  # the underlying ArrayRecord source

  def __len__(self):
    return len(self.items)

  def __getitem__(self, i):
    raise AssertionError("TFDS's own decoding decodes every frame; not wanted here")


def test_serialized_examples_decode_only_chosen_frames(monkeypatch):
  by_split = {"train": _SerializedSource([12, 5], [2, 0]),
              "test": _SerializedSource([7], [1])}
  monkeypatch.setattr(tfds_source, "_open", lambda name, split, data_dir: by_split[split])
  train, evl, names = tfds_source.splits(_config(tfds_name="mine").dataset)
  assert names == ["run", "jump", "sit"]
  assert [(r.label, r.path) for r in train] == [(2, "tfds://mine/train/0"),
                                                (0, "tfds://mine/train/1")]
  assert [r.label for r in evl] == [1]
  reader = tfds_source.TfdsReader()
  opened = []
  real_open = Image.open
  monkeypatch.setattr(Image, "open", lambda f: (opened.append(1), real_open(f))[1])
  frames = reader.read(train[0], lambda t: np.array([0, 3, 3, 11]) if t == 12 else None)
  assert frames.shape == (4, 6, 8, 3) and frames.dtype == np.uint8
  assert frames[:, 0, 0, 0].tolist() == [0, 30, 30, 110]
  assert len(opened) == 3  # distinct chosen frames only
  # Through the sources entry point and the pipeline.
  cfg = _config(tfds_name="mine")
  splits = sources.load_splits(cfg)
  ds, _ = pipeline.build(cfg, "eval", splits=splits)
  (b,) = list(ds)
  assert b["frames"].shape == (2, 8, 16, 16, 3) and b["valid"].tolist() == [True, False]


def test_errors_name_the_problem(monkeypatch):
  empty = _SerializedSource([1], [0])
  empty.data_source = [empty.features.serialize_example({"video": [], "label": 0})]
  monkeypatch.setattr(tfds_source, "_open", lambda *a: empty)
  with pytest.raises(DecodeError, match="no frames"):
    tfds_source.TfdsReader().read(Record("tfds://x/train/0", 0), np.arange)
  with pytest.raises(ValueError, match="tfds://"):
    tfds_source.TfdsReader().read(Record("/a/video.mp4", 0), np.arange)
  no_video = _SerializedSource([1], [0])
  no_video.dataset_info.features = tfds.features.FeaturesDict(
      {"label": tfds.features.ClassLabel(names=["a"])})
  monkeypatch.setattr(tfds_source, "_open", lambda *a: no_video)
  with pytest.raises(ValueError, match="tfds.features.Video"):
    tfds_source.splits(_config().dataset)
