"""Starting a multi-process job, and ending all of it promptly when one process fails.

`initialize` calls ``jax.distributed.initialize`` (explicit coordinator flags, or SLURM /
Open MPI detection) with a heartbeat timeout (``HEARTBEAT_TIMEOUT_S``, 30 s, not JAX's
default 100 s) and JAX's recoverability on, so that a process that dies does not make
the coordination service abort every other one from C++ (a native stack dump, exit
134) with no line of ours.

`run_or_exit` runs the job's work. In a multi-process job an exception on any process
must not leave the others waiting in a collective or a barrier until a coordination
timeout (minutes), nor leave this process waiting in JAX's shutdown barrier: it logs
the error, records it (the whole message) in the coordination service's key-value
store, and ends the process at once with exit code 1. Every process runs a watcher
thread (no device work) that, about once a second,

* looks for another process's recorded failure: it logs ``Process i stops because
  process j: <error>`` and exits with code 1;
* asks the coordination service which processes are alive: a process that left without
  a word (killed, out of memory, its host gone: it stopped answering, or its heartbeats
  stopped for the heartbeat timeout) is named, ``Process i stops because process j was
  lost ...``, and this one exits with code 1 too.

A collective that fails in this process because a peer vanished (gloo's "connection
reset") is reported as that peer's loss or failure, not as this process's own error.
When the work returns (or ends with a ``sys.exit`` code all processes share, such as a
stop with its checkpoint saved), the processes wait for each other and leave together,
process 0 last: with recoverability on JAX no longer holds process 0 at exit, and a
process whose coordination service is gone when it disconnects aborts.
The one loss no process can report is that of process 0, which hosts the coordination
service: JAX then ends the others itself ("the JAX distributed service detected fatal
errors", exit 134); `launch/local_multiprocess.sh` names the lost process in every
log.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from typing import Any, Callable

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax._src import distributed  # the coordination service client (no public API)

_CLUSTER_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
_FAILED_KEY = "time_jax/failed"
_ALIVE_KEY = "time_jax/alive/"  # + process index: its watcher's beat count
_DONE_BARRIER = "time_jax/done"
_DONE_TIMEOUT_MS = 10 * 60 * 1000  # how long a finished process waits for the others
_POLL_S = 1.0
_MAX_MESSAGE = 8000  # characters of a failure's message sent to the other processes
HEARTBEAT_TIMEOUT_S = 30


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None,
               heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S) -> bool:
  """Joins the job: explicit flags, or SLURM / Open MPI auto-detection.

  Returns:
    whether ``jax.distributed`` was initialised (False for a single process).
  """
  kwargs = dict(heartbeat_timeout_seconds=int(heartbeat_timeout_s))
  explicit = bool(coordinator_address)
  if not explicit and not any(int(os.environ.get(k, "1")) > 1 for k in _CLUSTER_ENV):
    return False
  # A lost process leaves the live set instead of aborting every other process from
  # C++; `run_or_exit`'s watcher names it and ends the job.
  try:
    jax.config.update("jax_enable_recoverability", True)
  except AttributeError:  # a JAX without it: a lost process aborts the others in C++
    logging.warning("This JAX has no jax_enable_recoverability: a process that dies "
                    "without a word ends the others with a native abort (exit 134).")
  if explicit:
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)
  else:
    jax.distributed.initialize(**kwargs)
  return True


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


def _flush_and_exit(code: int = 1) -> None:
  for stream in (sys.stdout, sys.stderr):
    stream.flush()
  for handler in logging.getLogger().handlers:
    handler.flush()
  os._exit(code)  # pylint: disable=protected-access  # skips JAX's shutdown barrier


def _recorded_failure(client) -> str | None:
  """The first failure a process recorded, ``'process j: ...'``, or None."""
  try:
    return client.key_value_try_get(_FAILED_KEY)
  except Exception:  # pylint: disable=broad-except  # none yet (NOT_FOUND), or no service
    return None


class _Heartbeats:
  """This process's beat and the others', through the coordination service's store.

  Each `beat` writes this process's count and reads every process's; a process whose
  count has not moved for ``timeout_s`` seconds (of this process's clock) is lost.
  (JAX's own heartbeats decide liveness too, but with recoverability on they end no
  process, and the one way to ask them, ``get_live_nodes``, is a barrier.)
  """

  def __init__(self, client, pid: int, count: int, timeout_s: float):
    self.client, self.pid, self.timeout_s = client, pid, float(timeout_s)
    self.count = 0
    now = time.monotonic()
    self.seen = {i: (None, now) for i in range(count) if i != pid}  # value, since

  def beat(self) -> list[int]:
    """Beats once; returns the processes lost so far (none when the store is gone)."""
    self.count += 1
    try:
      self.client.key_value_set(f"{_ALIVE_KEY}{self.pid}", str(self.count),
                                allow_overwrite=True)
      values = dict(self.client.key_value_dir_get(_ALIVE_KEY))
    except Exception:  # pylint: disable=broad-except  # the service is gone: JAX ends us
      return []
    now, lost = time.monotonic(), []
    for i, (value, since) in self.seen.items():
      current = values.get(f"{_ALIVE_KEY}{i}")
      if current != value:
        self.seen[i] = (current, now)
      elif now - since > self.timeout_s:
        lost.append(i)
    return lost


def _stop_for(pid: int, cause: str) -> None:
  logging.error("Process %d stops (exit code 1) because %s", pid, cause.rstrip())
  _flush_and_exit()


def _watch(client, pid: int, heartbeats: _Heartbeats, done: threading.Event) -> None:
  """Ends this process, naming the cause, when another one failed or was lost."""
  while not done.is_set():
    failure = _recorded_failure(client)
    if failure is not None:
      if not failure.startswith(f"process {pid}:"):
        _stop_for(pid, failure)
      return
    lost = heartbeats.beat()
    if lost and not done.is_set():
      failure = _recorded_failure(client)  # a failing process records, then exits
      if failure is not None and not failure.startswith(f"process {pid}:"):
        _stop_for(pid, failure)
      many = len(lost) > 1
      _stop_for(pid, f"process{'es' if many else ''} {', '.join(map(str, lost))} "
                f"{'were' if many else 'was'} lost: no sign of life for "
                f"{heartbeats.timeout_s:g} s (--heartbeat_timeout); killed, out of "
                f"memory, or its host failed? See {'their logs' if many else 'its log'}.")
    done.wait(_POLL_S)


def _leave_together(client, pid: int, count: int, stop_watching: Callable[[], None]
                    ) -> None:
  """Waits for every process to finish (still watching them), then disconnects: the
  others first, process 0 (which hosts the coordination service they need until then)
  last."""
  try:
    client.wait_at_barrier(_DONE_BARRIER, _DONE_TIMEOUT_MS)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Process %d finished; the other processes did not (%s).", pid,
                    str(e).splitlines()[0] if str(e) else type(e).__name__)
    return
  finally:
    stop_watching()
  if pid:
    jax.distributed.shutdown()
    return
  try:  # a barrier of the live processes: returns once the others have disconnected
    client.get_live_nodes(list(range(count)))
  except Exception:  # pylint: disable=broad-except
    pass


def _describe(error: BaseException) -> str:
  """``'Type: message'``, the whole message (its first `_MAX_MESSAGE` characters)."""
  text = f"{type(error).__name__}: {error}".rstrip()
  return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + " [...]"


def run_or_exit(fn: Callable[[], Any], *, user_errors: tuple[type, ...] = (),
                heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S,
                together: tuple[int, ...] = (0,)) -> Any:
  """``fn()``; in a multi-process job an exception on any process ends all (exit 1).

  Args:
    fn: the work.
    user_errors: exception types a user causes (a wrong config field): logged as their
      message, without a traceback.
    heartbeat_timeout_s: what `initialize` was given: a collective that fails here
      waits this long (and a little more) for the watcher to name a lost process.
    together: ``sys.exit`` codes that end every process at the same point (a stop with
      its checkpoint saved): the processes then leave together, as when ``fn`` returns.
      Any other ``sys.exit`` code is a failure: the others stop, naming it, and this
      process exits with that code at once.
  """
  client = _client()
  if jax.process_count() == 1 or client is None:
    return fn()
  pid, count = jax.process_index(), jax.process_count()
  done = threading.Event()
  heartbeats = _Heartbeats(client, pid, count, heartbeat_timeout_s)
  watcher = threading.Thread(target=_watch, args=(client, pid, heartbeats, done),
                             daemon=True, name="time_jax-failure-watch")
  watcher.start()

  def stop_watching():
    # A thread left inside the client's call at interpreter exit aborts the process.
    done.set()
    watcher.join()

  try:
    result = fn()
  except SystemExit as e:
    code = 0 if e.code is None else e.code
    if code in together:
      _leave_together(client, pid, count, stop_watching)
      raise
    try:  # a mistake found on this process (its one line is in its log)
      client.key_value_set(_FAILED_KEY, f"process {pid}: exited with status {code}; "
                                        "its log says why.")
    except Exception:  # pylint: disable=broad-except  # already set, or service gone
      pass
    _flush_and_exit(code if isinstance(code, int) else 1)
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, jax.errors.JaxRuntimeError):
      # A collective fails here when a peer failed or vanished: let the watcher name
      # that cause (it ends the process) before calling the error this process's own.
      done.wait(heartbeat_timeout_s + 2 * _POLL_S)
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
  else:
    _leave_together(client, pid, count, stop_watching)
  finally:
    stop_watching()
  return result
