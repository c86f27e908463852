"""The demo: TIME (N=2) beats the N=1 baseline on the synthetic temporal dataset.

The full demo (``configs/demo.py``) trains longer; this runs a shortened schedule.
"""

import importlib.util
import os

import pytest

from time_jax import config as config_lib  # pylint: disable=g-import-not-at-top
from time_jax.train import loop  # pylint: disable=g-import-not-at-top

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _demo(n, tmp_path):
  spec = importlib.util.spec_from_file_location("demo", os.path.join(CONFIGS, "demo.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(str(n))


@pytest.mark.slow
def test_time_beats_single_frames(tmp_path, monkeypatch):
  monkeypatch.setenv("TIME_JAX_DEMO_DATA", str(tmp_path / "synthetic"))
  results = {}
  for n in (2, 1):
    config = _demo(n, tmp_path)
    config.train.num_epochs = 25.0
    config_lib.validate(config)
    results[n] = loop.train_and_evaluate(config, str(tmp_path / f"n{n}"))["eval/top1"]
  assert results[2] > results[1] + 0.2, results
