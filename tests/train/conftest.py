"""Fixtures of the loop tests: the moving-square source of ``moving.py``."""

import importlib.util
import os

import pytest

MOVING_PATH = os.path.join(os.path.dirname(__file__), "moving.py")


def load_moving():
  spec = importlib.util.spec_from_file_location("moving_square_data", MOVING_PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="session")
def moving():
  return load_moving()
