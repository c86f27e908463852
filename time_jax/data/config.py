"""Config sections of the input side: ``config.dataset`` and ``config.input``.

`time_jax.config.base_config` composes these with the model and training sections.
"""

from __future__ import annotations

import ml_collections


def dataset_defaults() -> ml_collections.ConfigDict:
  """``config.dataset``: where the data is and which protocol splits it."""
  return ml_collections.ConfigDict(dict(
      # Protocol: 'annotations' (plain annotation files), 'ucf101', 'hmdb51',
      # 'ntu60', 'ntu120', 'msr_action3d', 'action_pairs', 'uwa3d_activity',
      # 'uwa3d_multiview', 'tfds'.
      name="annotations",
      split="",            # protocol-specific, e.g. '1' (UCF101 split 1), 'xsub', 'xview'
      source="video",      # 'video' | 'frames' | 'msr_bin' | 'tfds' | 'packed'
      root="",             # data root; annotation paths are relative to it
      train_annotations="",
      eval_annotations="",
      modality="rgb",      # 'rgb' | 'depth'
      num_classes=0,       # 0: take it from the protocol / annotations
      depth_max=0.0,       # depth scaled to [0, 255] by this maximum; 0 = per clip range
  ))


def input_defaults() -> ml_collections.ConfigDict:
  """``config.input``: batching, workers and augmentation of the Grain pipeline."""
  return ml_collections.ConfigDict(dict(
      batch_size=8,         # global batch, over all processes
      eval_batch_size=8,
      num_workers=0,        # Grain worker processes per host (0: in-process)
      shuffle_seed=0,
  ))
