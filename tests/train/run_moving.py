"""Runs the loop on the moving-square source in a subprocess (kill / SIGTERM tests).

    python run_moving.py WORKDIR MODE [key=value ...]   # config overrides, Python literals

``MOVING_READ_SLEEP`` (seconds per clip) slows reading so a test can signal mid-run.
"""

import importlib.util
import os
import sys

from absl import logging

spec = importlib.util.spec_from_file_location(
    "moving_square_data", os.path.join(os.path.dirname(__file__), "moving.py"))
moving = importlib.util.module_from_spec(spec)
spec.loader.exec_module(moving)

from time_jax.train import loop  # pylint: disable=g-import-not-at-top


def main():
  workdir, mode, *overrides = sys.argv[1:]
  config = moving.config_with(mode, overrides)
  logging.set_verbosity(logging.WARNING)
  result = loop.train_and_evaluate(config, workdir, splits=moving.splits(),
                                   reader=moving.SlowReader())
  print("RESULT", result, flush=True)


if __name__ == "__main__":
  main()
