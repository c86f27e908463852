"""The choice of source: the reader of each ``dataset.source``."""

import ml_collections
import pytest

from time_jax.data import config as data_config
from time_jax.data import frame_cache
from time_jax.data import frames
from time_jax.data import msr_bin
from time_jax.data import sources
from time_jax.data import tfds_source
from time_jax.data import video


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
