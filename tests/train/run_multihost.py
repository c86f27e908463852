"""One process of a multi-process run on the moving-square source (multi-host tests).

    python run_multihost.py PORT NUM_PROCESSES PROCESS_ID WORKDIR MODE [key=value ...]

Joins the job as `time_jax.main` does (`multihost.initialize`, `multihost.run_or_exit`)
and runs the loop; overrides as in ``run_moving.py``. Environment:

* ``MOVING_READ_SLEEP``: seconds per clip read (so a test can signal mid-run);
* ``MULTIHOST_FAIL=PID:STEP``: process PID raises at its STEP-th train step;

A process other than 0 prints ``SHARED WRITE <path>`` for every file or folder it
creates or opens for writing in the workdir outside ``checkpoints/`` (only process 0
may write the shared files).
"""

import importlib.util
import os
import sys

from absl import logging

_HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("moving_square_data",
                                              os.path.join(_HERE, "moving.py"))
moving = importlib.util.module_from_spec(spec)
spec.loader.exec_module(moving)

from time_jax.train import loop  # pylint: disable=g-import-not-at-top
from time_jax.train import multihost  # pylint: disable=g-import-not-at-top


def _watch_writes(workdir: str) -> None:
  root = os.path.realpath(workdir) + os.sep
  checkpoints = os.path.join(root, "checkpoints")

  def hook(event, args):
    if event == "open":
      path, mode, flags = args
      writes = (mode is not None and any(c in str(mode) for c in "wax+")) or (
          mode is None and isinstance(flags, int)
          and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    elif event in ("os.mkdir", "os.rename", "os.remove"):
      path, writes = args[0], True
    else:
      return
    if not writes or not isinstance(path, (str, bytes, os.PathLike)):
      return
    path = os.path.realpath(os.fsdecode(path))
    if path.startswith(root) and not path.startswith(checkpoints):
      print("SHARED WRITE", path, flush=True)

  sys.addaudithook(hook)


def _fail_at(trainer, step: int) -> None:
  step_fn, calls = trainer.train_step, [0]

  def failing(*args):
    calls[0] += 1
    if calls[0] == step:
      # Two lines: the whole message must reach the other processes.
      raise RuntimeError(f"injected failure at step {step}\n  its second line: a.mp4")
    return step_fn(*args)

  trainer.train_step = failing


def main():
  port, num, pid, workdir, mode, *overrides = sys.argv[1:]
  multihost.initialize(f"localhost:{port}", int(num), int(pid), heartbeat_timeout_s=10)
  config = moving.config_with(mode, overrides)
  logging.set_verbosity(logging.WARNING)
  if int(pid) != 0:
    os.makedirs(workdir, exist_ok=True)
    _watch_writes(workdir)

  def run():
    trainer = loop.Trainer(config, workdir, splits=moving.splits(),
                           reader=moving.SlowReader())
    fail = os.environ.get("MULTIHOST_FAIL")
    if fail and int(fail.split(":")[0]) == int(pid):
      _fail_at(trainer, int(fail.split(":")[1]))
    return trainer.run()

  result = multihost.run_or_exit(run, heartbeat_timeout_s=10)
  print("RESULT", result, flush=True)


if __name__ == "__main__":
  main()
