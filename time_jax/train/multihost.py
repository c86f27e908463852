"""Starting a multi-process job, and ending all of it promptly when one process fails.

`initialize` calls ``jax.distributed.initialize`` (explicit coordinator flags, or SLURM /
Open MPI detection) with a heartbeat timeout short enough that a process that died
without a word is noticed within ``HEARTBEAT_TIMEOUT_S`` (30 s), not JAX's default 100 s.

`run_or_exit` runs the job's work. In a multi-process job an exception on any process
must not leave the others waiting in a collective or a barrier until a coordination
timeout (minutes), nor leave this process waiting in JAX's shutdown barrier: it logs
the error, records it in the coordination service's key-value store, and ends the
process at once with exit code 1. Every process watches that key (a thread waiting on
the coordination service, no device work): when another process's failure appears, it
logs ``Process i stops because process j: <error>`` and exits with code 1 too, within
about a second. A process that dies without a word (killed, out of memory) is noticed
when its heartbeats stop.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from typing import Any, Callable

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax._src import distributed  # the coordination service client (no public API)

_CLUSTER_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
_FAILED_KEY = "time_jax/failed"
_POLL_MS = 1000
HEARTBEAT_TIMEOUT_S = 30


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None,
               heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S) -> bool:
  """Joins the job: explicit flags, or SLURM / Open MPI auto-detection.

  Returns:
    whether ``jax.distributed`` was initialised (False for a single process).
  """
  kwargs = dict(heartbeat_timeout_seconds=int(heartbeat_timeout_s))
  if coordinator_address:
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)
    return True
  if any(int(os.environ.get(k, "1")) > 1 for k in _CLUSTER_ENV):
    jax.distributed.initialize(**kwargs)
    return True
  return False


def _flags(flag: bool) -> np.ndarray:
  """``flag`` of every process, ``[process_count]`` (a collective: all must call it)."""
  return np.asarray(multihost_utils.process_allgather(np.asarray([flag], np.int32)))


def on_every_process(ok: bool) -> bool:
  """Whether ``ok`` holds on every process; the same answer everywhere (a collective
  with several processes: every process must call it at the same point)."""
  return ok if jax.process_count() == 1 else bool(np.all(_flags(ok)))


def on_any_process(flag: bool) -> bool:
  """Whether ``flag`` holds on some process; the same answer everywhere (a collective
  with several processes: every process must call it at the same point)."""
  return flag if jax.process_count() == 1 else bool(np.any(_flags(flag)))


def _client():
  return getattr(distributed.global_state, "client", None)


def _flush_and_exit() -> None:
  for stream in (sys.stdout, sys.stderr):
    stream.flush()
  for handler in logging.getLogger().handlers:
    handler.flush()
  os._exit(1)  # pylint: disable=protected-access  # skips JAX's shutdown barrier


def _watch(client, pid: int, done: threading.Event) -> None:
  """Waits for another process's recorded failure; then ends this one, naming it."""
  while not done.is_set():
    try:
      failure = client.blocking_key_value_get(_FAILED_KEY, _POLL_MS)
    except Exception:  # pylint: disable=broad-except  # no failure yet
      done.wait(0.1)  # a call can fail at once (the service gone): do not spin
      continue
    if not failure.startswith(f"process {pid}:"):
      logging.error("Process %d stops because %s.", pid, failure.rstrip("."))
      _flush_and_exit()
    return


def _describe(error: BaseException) -> str:
  return f"{type(error).__name__}: {error}".splitlines()[0][:500]


def run_or_exit(fn: Callable[[], Any], *, user_errors: tuple[type, ...] = ()) -> Any:
  """``fn()``; in a multi-process job an exception on any process ends all (exit 1).

  Args:
    fn: the work.
    user_errors: exception types a user causes (a wrong config field): logged as their
      one-line message, without a traceback.
  """
  client = _client()
  if jax.process_count() == 1 or client is None:
    return fn()
  pid = jax.process_index()
  done = threading.Event()
  watcher = threading.Thread(target=_watch, args=(client, pid, done), daemon=True,
                             name="time_jax-failure-watch")
  watcher.start()
  try:
    result = fn()
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, user_errors):
      logging.error("Process %d failed: %s", pid, e)
    else:
      logging.error("Process %d failed:\n%s", pid, traceback.format_exc())
    try:  # the first failure is the one every process names
      client.key_value_set(_FAILED_KEY, f"process {pid}: {_describe(e)}")
    except Exception:  # pylint: disable=broad-except  # already set, or service gone
      pass
    logging.error("Process %d exits (code 1) without waiting for the other processes.",
                  pid)
    _flush_and_exit()
  finally:
    # A thread left inside the client's call at interpreter exit aborts the process.
    done.set()
    watcher.join()
  return result
