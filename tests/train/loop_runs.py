"""Shared by the loop tests that run training in subprocesses: starting the moving-square
driver, waiting for a logged step, and reading back what a run wrote."""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MOVING_DRIVER = os.path.join(HERE, "run_moving.py")


def moving_env(sleep=0.0, **extra):
  """The driver's environment: ``sleep`` seconds per clip read, eight CPU devices."""
  env = dict(os.environ, MOVING_READ_SLEEP=str(sleep), PYTHONPATH=REPO,
             XLA_FLAGS="--xla_force_host_platform_device_count=8")
  env.update(extra)
  return env


def start_moving(workdir, *overrides, sleep=0.0, **popen_kwargs):
  """``run_moving.py WORKDIR finetune OVERRIDES`` as a process, output in ``stdout``."""
  kwargs = dict(env=moving_env(sleep), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)
  kwargs.update(popen_kwargs)
  return subprocess.Popen([sys.executable, MOVING_DRIVER, str(workdir), "finetune",
                           *overrides], **kwargs)


def records(workdir):
  """The objects of ``metrics.jsonl``, in order ([] before the first)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f]


def losses(workdir):
  """step -> train loss, the last logged value of each step."""
  return {r["step"]: r["train/loss"] for r in records(workdir) if "train/loss" in r}


def wait_for_step(procs, workdir, step, timeout=240):
  """Waits until ``workdir`` has logged the train loss of ``step``; fails if any of
  ``procs`` (one process or a list) ends first."""
  procs = procs if isinstance(procs, (list, tuple)) else [procs]
  start = time.time()
  while max(losses(workdir), default=0) < step:
    for p in procs:
      assert p.poll() is None, p.stdout.read()[-4000:]
    assert time.time() - start < timeout
    time.sleep(0.05)


def flat(tree):
  """``{key path: numpy array}`` of a tree's leaves (None leaves are left out)."""
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
