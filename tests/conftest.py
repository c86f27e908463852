"""Test-wide setup: eight virtual CPU devices, so sharded code paths run on CPU; and the
root logger as each test found it.

XLA reads the flag once, when JAX first initialises its backend, so it is set here
before any test imports jax. Single-device tests use ``jax.devices()[:1]``.
"""

import logging
import os

import pytest

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()


@pytest.fixture(autouse=True)
def _root_logger_as_found():
  """A command run in-process (``pack.main``, ``sweep.main``) sets up its console on the
  root logger (`time_jax.console.cli_logging`); later tests must not see its lines."""
  root = logging.getLogger()
  handlers, level = list(root.handlers), root.level
  yield
  for handler in list(root.handlers):
    if handler not in handlers:
      root.removeHandler(handler)
  root.setLevel(level)
