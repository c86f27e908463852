"""Fixtures of the loop tests: the moving-square source of ``moving.py``; helpers for
runs in subprocesses live in ``loop_runs.py``."""

import importlib.util
import os
import sys

import pytest

MOVING_PATH = os.path.join(os.path.dirname(__file__), "moving.py")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # loop_runs


def load_moving():
  spec = importlib.util.spec_from_file_location("moving_square_data", MOVING_PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="session")
def moving():
  return load_moving()
