"""Test-wide setup: eight virtual CPU devices, so sharded code paths run on CPU.

XLA reads the flag once, when JAX first initialises its backend, so it is set here
before any test imports jax. Single-device tests use ``jax.devices()[:1]``.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
