"""The choice of source: the reader of each ``dataset.source``, and the synthetic set."""

import os

import ml_collections
import numpy as np
import pytest

from time_jax.data import config as data_config
from time_jax.data import frame_cache
from time_jax.data import frames
from time_jax.data import msr_bin
from time_jax.data import protocols
from time_jax.data import sources
from time_jax.data import synthetic
from time_jax.data import tfds_source
from time_jax.data import video
from time_jax.data.base import ProtocolError, Record, Splits


def _config(**dataset):
  c = ml_collections.ConfigDict(dict(
      dataset=data_config.dataset_defaults(), input=data_config.input_defaults(),
      time=dict(n=2, t_out=4, arrangement="spatial"), image_size=32))
  c.dataset.update(dataset)
  return c


def test_make_reader_per_source(tmp_path):
  assert type(sources.make_reader(_config(source="video"))) is video.VideoReader
  assert type(sources.make_reader(_config(source="frames"))) is frames.FrameFolderReader
  assert type(sources.make_reader(_config(source="msr_bin"))) is msr_bin.MsrBinReader
  assert type(sources.make_reader(_config(source="tfds"))) is tfds_source.TfdsReader
  c = _config(source="packed", packed_dir=str(tmp_path))
  reader = sources.make_reader(c)
  assert type(reader) is frame_cache.PackedReader
  # cell 16: the train crop may cover a quarter of the area, so decode >= 16 / 0.5.
  assert reader.packed_dir == str(tmp_path) and reader.draft_size == 32
  with pytest.raises(ValueError, match="config.dataset.source: 'mp3'"):
    sources.make_reader(_config(source="mp3"))


def test_synthetic_is_generated_once_and_read_as_its_annotations(tmp_path, monkeypatch):
  root = str(tmp_path / "synthetic")
  generated = []
  real_generate = synthetic.generate

  def generate(out, **kw):
    generated.append(kw["videos_per_class"])
    return real_generate(out, **kw)

  monkeypatch.setattr(synthetic, "generate", generate)
  c = _config(name="synthetic", root=root, synthetic_videos_per_class=2)
  data_config.validate(c)  # the root need not exist yet
  first = sources.load_splits(c)
  again = sources.load_splits(c)
  assert generated == [2]
  assert first == again

  annotations = data_config.dataset_defaults()
  annotations.update(name="annotations", root=root,
                     train_annotations=os.path.join(root, "train.txt"),
                     eval_annotations=os.path.join(root, "test.txt"),
                     classes_file=os.path.join(root, "classes.txt"))
  assert first == protocols.load(annotations)
  # 2 clips per class: one trains, one tests.
  assert first.class_names == list(synthetic.CLASSES)
  assert sorted(r.label for r in first.train) == list(range(len(synthetic.CLASSES)))
  assert sorted(r.label for r in first.eval) == list(range(len(synthetic.CLASSES)))
  assert all(os.path.isfile(r.path) for r in first.train + first.eval)


def test_validate_synthetic_needs_only_a_root_name(tmp_path):
  data_config.validate(_config(name="synthetic", root=str(tmp_path / "not" / "yet")))
  with pytest.raises(ValueError, match="config.dataset.root"):
    data_config.validate(_config(name="synthetic", root=""))
  with pytest.raises(ValueError, match="config.dataset.source"):
    data_config.validate(_config(name="synthetic", root=str(tmp_path), source="frames"))
  with pytest.raises(ValueError, match="config.dataset.split"):
    data_config.validate(_config(name="synthetic", root=str(tmp_path), split="1"))


class _Flat:
  """A `ClipReader` of 4 flat 8x8 frames for any record (for packing, no decoding)."""

  def read(self, record, choose):
    return np.full((len(choose(4)), 8, 8, 3), 10 * record.label, np.uint8)


def test_packed_cache_class_names_must_agree_with_num_classes(tmp_path):
  out = str(tmp_path / "packed")
  records = [Record(f"v{i}", i % 2) for i in range(4)]
  frame_cache.write_cache(Splits(records, records, ["wave", "clap"]), _Flat(), out)
  c = _config(source="packed", packed_dir=out)
  assert sources.load_splits(c).class_names == ["wave", "clap"]
  c.dataset.num_classes = 2
  sources.load_splits(c)
  c.dataset.num_classes = 8
  with pytest.raises(ProtocolError, match=r"dataset.num_classes=8 but the cache .* has 2 "
                     "class names"):
    sources.load_splits(c)


def test_synthetic_refuses_fields_it_would_ignore_and_a_foreign_root(tmp_path):
  # The demo's protocol reads root/train.txt, test.txt, classes.txt: annotation files
  # given for one's own clips would be ignored, so they are an error naming the field.
  with pytest.raises(ValueError, match="config.dataset.train_annotations: 'train.txt' "
                     "would be ignored.*dataset.name='annotations'"):
    data_config.validate(_config(name="synthetic", root=str(tmp_path),
                                 train_annotations="train.txt"))
  # A folder of one's own clips is not where the demo's set can be generated.
  (tmp_path / "clips").mkdir()
  with pytest.raises(ValueError, match="config.dataset.root: .* holds no synthetic"):
    data_config.validate(_config(name="synthetic", root=str(tmp_path)))
