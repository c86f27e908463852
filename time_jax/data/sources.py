"""Where a config's records and frames come from: protocol files, TFDS, packed cache.

The one place that chooses between the sources of ``config.dataset``:

* `load_splits(config)`: the train / eval `Record`s and class names.
  ``dataset.source='packed'`` lists the cache in ``dataset.packed_dir``
  (`frame_cache.load_splits`, whatever protocol was packed); ``dataset.name='tfds'``
  asks TFDS (`tfds_source.splits`); ``dataset.name='synthetic'`` first generates the
  temporal dataset of `time_jax.data.synthetic` into ``dataset.root`` unless it is
  there (``dataset.synthetic_videos_per_class`` clips per class); then the protocol
  ``dataset.name`` parses its files (`protocols.load`).
* `make_reader(config)`: the `ClipReader` of ``dataset.source`` that decodes the
  frames of those records.
"""

from __future__ import annotations

import ml_collections

from time_jax.data import frame_cache
from time_jax.data import frames
from time_jax.data import msr_bin
from time_jax.data import protocols
from time_jax.data import synthetic
from time_jax.data import tfds_source
from time_jax.data import video
from time_jax.data.base import ClipReader, Splits

# The readers built with no arguments; 'packed' and 'tfds' need the config.
_READERS = {
    "video": video.VideoReader,
    "frames": frames.FrameFolderReader,
    "msr_bin": msr_bin.MsrBinReader,
}


def make_reader(config: ml_collections.ConfigDict) -> ClipReader:
  """The `ClipReader` of ``config.dataset.source``."""
  d = config.dataset
  if d.source == "packed":
    frame_cache.check_size(d.packed_dir, config)
    # Packed JPEGs decode at reduced size; frame_cache.short_side_for says why it is safe.
    return frame_cache.PackedReader(d.packed_dir,
                                    draft_size=frame_cache.short_side_for(config))
  if d.source == "tfds":
    return tfds_source.reader(config)
  if d.source not in _READERS:
    raise ValueError(f"config.dataset.source: {d.source!r} is unknown; use one of "
                     f"{sorted(_READERS) + ['packed', 'tfds']}.")
  return _READERS[d.source]()


def load_splits(config: ml_collections.ConfigDict) -> Splits:
  """The train / eval records and class names of a full config (module docstring).

  Whatever the source, the class names, ``dataset.num_classes`` (the head size; 0
  takes the names' count) and the labels agree (`protocols.check_agreement`), or this
  raises naming which disagree.

  Raises:
    ProtocolError: the protocol's files (or the cache's ``splits.json``) are missing
      or malformed, the split is invalid, or class names, head size and labels
      disagree (see `protocols.load`).
  """
  d = config.dataset
  if d.source == "packed" or d.name == "tfds":
    if d.source == "packed":
      splits, what = frame_cache.load_splits(d.packed_dir), f"the cache {d.packed_dir!r}"
    else:
      splits, what = tfds_source.splits(d), f"TFDS {d.tfds_name!r}"
    protocols.check_agreement(splits, d.num_classes, what)
    return splits
  if d.name == "synthetic":
    # Safe when several processes start at once (see ensure_synthetic).
    synthetic.ensure_synthetic(d.root, videos_per_class=d.synthetic_videos_per_class)
  return protocols.load(d)
