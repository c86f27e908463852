"""A tiny in-memory video source for loop tests: a square moving left or right.

Class 0 moves left to right, class 1 right to left; the start row, colour and
background differ per clip. Only the direction of motion tells the classes apart, so a
single frame cannot. Loaded by path (``load()``) because tests import in importlib mode.
"""

import ast
import os
import time
import zlib

import ml_collections
import numpy as np

from time_jax import config as config_lib
from time_jax.data import base

FRAMES, SIZE, SQUARE = 16, 32, 10


class MovingSquareReader:
  """`ClipReader`: renders the chosen frames of ``record``."""

  def read(self, record: base.Record, choose) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(record.path.encode()))
    idx = np.asarray(choose(FRAMES))
    row = int(rng.integers(0, SIZE - SQUARE))
    colour = rng.integers(128, 256, size=3)
    background = rng.integers(0, 64, size=3)
    out = np.empty((len(idx), SIZE, SIZE, 3), np.uint8)
    out[:] = background
    for j, f in enumerate(idx):
      x = int(round(f * (SIZE - SQUARE) / (FRAMES - 1)))
      if record.label == 1:
        x = SIZE - SQUARE - x
      out[j, row:row + SQUARE, x:x + SQUARE] = colour
    return out


def splits(num_train: int = 32, num_eval: int = 16) -> base.Splits:
  def records(prefix, count):
    return [base.Record(path=f"{prefix}_{i}", label=i % 2, num_frames=FRAMES)
            for i in range(count)]
  return base.Splits(records("train", num_train), records("eval", num_eval),
                          ["left_to_right", "right_to_left"])


def tiny_config(mode: str = "finetune") -> ml_collections.ConfigDict:
  """A few-second config: a 2-block VideoMAE on 32² TIME grids (N=2, T*=2)."""
  c = config_lib.base_config()
  c.mode = mode
  c.image_size = SIZE
  c.time.n, c.time.t_out = 2, 2
  c.dataset.num_classes = 2
  c.input.batch_size = 8
  c.input.eval_batch_size = 8
  c.input.flip = False  # flipping swaps the classes
  c.input.crop_scale = (0.8, 1.0)
  c.input.read_threads = 1
  c.model.name = "videomae_s_pretrain" if mode == "pretrain" else "videomae_s"
  c.model.dtype = "float32"
  c.model.kwargs = ml_collections.ConfigDict(dict(
      patch_size=8, tubelet_size=2, embed_dim=32, depth=2, num_heads=2))
  if mode == "pretrain":
    c.model.kwargs.decoder_embed_dim = 16
    c.model.kwargs.decoder_depth = 1
    c.model.kwargs.decoder_num_heads = 2
    c.pretrain.mask_ratio = 0.75
  c.optimizer.base_lr = 1e-3
  c.optimizer.lr_batch_divisor = 0
  c.optimizer.warmup_steps = 2
  c.optimizer.layer_decay = 0.75
  c.optimizer.clip_norm = 1.0
  c.train.num_steps = 6
  c.train.mixup_alpha = 0.0
  c.train.cutmix_alpha = 0.0
  c.train.label_smoothing = 0.0
  c.train.log_every = 1
  c.checkpoint.every_steps = 3
  c.checkpoint.async_save = False
  c.mesh.data = -1
  return c


class SlowReader(MovingSquareReader):
  """`MovingSquareReader` that sleeps ``MOVING_READ_SLEEP`` seconds per clip (eval clips:
  ``MOVING_EVAL_SLEEP`` when set), so a test driving a run in a subprocess can signal it
  mid-run, or mid-evaluation."""

  def read(self, record, choose):
    sleep = os.environ.get("MOVING_READ_SLEEP", "0")
    if record.path.startswith("eval_"):
      sleep = os.environ.get("MOVING_EVAL_SLEEP", sleep)
    time.sleep(float(sleep))
    return super().read(record, choose)


def config_with(mode: str, overrides) -> ml_collections.ConfigDict:
  """`tiny_config` with ``key.path=value`` overrides (values are Python literals), as
  the subprocess drivers take them on their command line."""
  config = tiny_config(mode)
  for item in overrides:
    key, value = item.split("=", 1)
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = ast.literal_eval(value)
  return config
