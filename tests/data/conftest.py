"""Shared checks for the data tests."""

import numpy as np
import pytest

from time_jax.data import pipeline


@pytest.fixture
def first_batches():
  """``check(cfg, shape) -> eval batch``: both splits build and give a first uint8 batch.

  For "train" and "eval", builds the pipeline from ``cfg``, takes its first batch and
  asserts its ``frames`` shape and dtype and that no file was reported bad; returns the
  eval batch for the caller's own checks of its cells.
  """
  def check(cfg, shape):
    for split in ("train", "eval"):
      ds, info = pipeline.build(cfg, split, seed=0)
      it = iter(ds)
      batch = next(it)
      it.close()
      assert batch["frames"].shape == shape
      assert batch["frames"].dtype == np.uint8
      assert info.monitor.metrics()["input/bad_files"] == 0
    return batch
  return check
