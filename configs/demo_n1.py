"""The N=1 baseline of ``configs/demo.py``: one plain 64² frame per clip, same budget.

    python -m time_jax.main --config configs/demo_n1.py --workdir /tmp/demo_n1
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "demo_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.py"))
_demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_demo)


def get_config(arg: str = ""):
  del arg
  return _demo.get_config("1")
