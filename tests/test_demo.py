"""The demo: TIME (N=2) beats the N=1 baseline on the synthetic temporal dataset.

The full demo (``configs/demo.py``, `time_jax.recipes.demo`) trains longer; this runs a
shortened schedule. The data layer generates the dataset in ``dataset.root`` when the
first run reads it.
"""

import pytest

from time_jax import config as config_lib
from time_jax import recipes
from time_jax.train import loop


@pytest.mark.slow
def test_time_beats_single_frames(tmp_path, monkeypatch):
  monkeypatch.setenv("TIME_JAX_DEMO_DATA", str(tmp_path / "synthetic"))
  results = {}
  for n in (2, 1):
    config = recipes.demo(n)
    config.train.num_epochs = 25.0
    config_lib.validate(config)
    results[n] = loop.train_and_evaluate(config, str(tmp_path / f"n{n}"))["eval/top1"]
  assert results[2] > results[1] + 0.2, results
