"""The generated temporal dataset: real mp4 files whose motion names the class."""

import os

import numpy as np
import pytest

from time_jax.data import protocols
from time_jax.data import synthetic
from time_jax.data import video


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("synthetic"))
  info = synthetic.generate(out, videos_per_class=4, frames=(12, 20), size=48, seed=3)
  return out, info


def _object_stats(frames):
  """Per frame: object pixel count, centroid (y, x), and its contrast.

  The background varies along y only, so subtracting each row's median leaves the
  object: where the residual is large, and how large it is overall (the contrast).
  """
  frames = frames.astype(np.float32)
  residual = np.abs(frames - np.median(frames, axis=2, keepdims=True)).sum(-1)  # [t, h, w]
  stats = []
  for d in residual:
    mask = d > 40
    ys, xs = np.nonzero(mask)
    stats.append((mask.sum(), ys.mean() if len(ys) else np.nan,
                  xs.mean() if len(xs) else np.nan, d.mean()))
  return np.array(stats)


def _trend(values):
  ok = ~np.isnan(values)
  return np.polyfit(np.arange(len(values))[ok], values[ok], 1)[0]


def test_annotation_files_list_every_clip_once_in_the_protocol_format(dataset):
  out, info = dataset
  assert info == {"train": 24, "test": 8, "classes": list(synthetic.CLASSES)}
  cfg = protocols_cfg(out)
  train, evl, names = protocols.load(cfg)
  assert names == list(synthetic.CLASSES)
  assert len(train) == 24 and len(evl) == 8
  assert not {r.path for r in train} & {r.path for r in evl}
  for r in train + evl:
    assert os.path.isfile(r.path)
    assert os.path.basename(os.path.dirname(r.path)) == names[r.label]
  assert sorted(np.bincount([r.label for r in evl])) == [1] * 8


def protocols_cfg(out):
  from time_jax.data import config as data_config  # pylint: disable=g-import-not-at-top
  cfg = data_config.dataset_defaults()
  cfg.update(name="annotations", root=out, train_annotations=os.path.join(out, "train.txt"),
             eval_annotations=os.path.join(out, "test.txt"),
             classes_file=os.path.join(out, "classes.txt"))
  return cfg


@pytest.mark.parametrize("name", synthetic.CLASSES)
def test_decoded_motion_matches_the_class(dataset, name):
  out, _ = dataset
  folder = os.path.join(out, "videos", name)
  for file in sorted(os.listdir(folder)):
    frames, _ = video.read_video(os.path.join(folder, file), np.arange)
    assert frames.shape[1:] == (48, 48, 3) and 12 <= len(frames) <= 20
    area, cy, cx, contrast = _object_stats(frames).T
    trend = {"right": _trend(cx), "left": -_trend(cx), "down": _trend(cy),
             "up": -_trend(cy), "grow": _trend(area), "shrink": -_trend(area),
             "appear": _trend(contrast), "vanish": -_trend(contrast)}[name]
    assert trend > 0, (file, name)


def test_a_reversed_class_is_its_pair_played_backwards():
  a = synthetic.clip("grow", np.random.default_rng(5), num_frames=10, size=32)
  b = synthetic.clip("grow", np.random.default_rng(5), num_frames=10, size=32)
  np.testing.assert_array_equal(a, b)  # a clip is a function of its generator state
  # Frame sets of a pair are identical: only the order differs.
  assert sorted(map(bytes, a)) == sorted(map(bytes, a[::-1]))


def test_same_seed_same_files(tmp_path):
  for d in ("a", "b"):
    synthetic.generate(str(tmp_path / d), videos_per_class=2, frames=(8, 8), size=32, seed=1)
  for rel in open(tmp_path / "a" / "train.txt").read().split("\n"):
    if rel:
      path = rel.split()[0]
      assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes(), path
      fa, _ = video.read_video(str(tmp_path / "a" / path), np.arange)
      fb, _ = video.read_video(str(tmp_path / "b" / path), np.arange)
      np.testing.assert_array_equal(fa, fb)


def test_ensure_synthetic_writes_once(tmp_path):
  root = str(tmp_path / "data")
  synthetic.ensure_synthetic(root, videos_per_class=2)
  stamp = os.path.getmtime(os.path.join(root, "train.txt"))
  synthetic.ensure_synthetic(root, videos_per_class=2)
  assert os.path.getmtime(os.path.join(root, "train.txt")) == stamp
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".synthetic-")]


def test_cli(tmp_path, capsys):
  assert synthetic.main(["--out", str(tmp_path / "d"), "--videos-per-class", "2",
                         "--size", "32", "--min-frames", "8", "--max-frames", "9"]) == 0
  assert "8 train and 8 test clips of 8 classes" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    synthetic.main(["--out", str(tmp_path / "e"), "--videos-per-class", "1"])
  assert "at least 2" in capsys.readouterr().err
