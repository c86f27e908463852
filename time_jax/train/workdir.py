"""A run's workdir: one run at a time, and what each start of a run ran with.

* `hold(workdir)` takes the workdir's lock file ``run.lock`` for the run (process 0 of a
  multi-process job takes it once, for all). The file names the owner's host, pid and
  start time and is touched every `HEARTBEAT_S` seconds while the run lives. A second
  run finds it and stops with `WorkdirError` naming the owner. A lock whose owner is
  gone is taken over with one warning: on the same host when its pid is no longer the
  process that wrote it; from another host when its heartbeat has not moved for
  `STALE_S` seconds (a run that sees a recent heartbeat of another host waits until it
  either moves, the owner is alive, or goes stale).
* `check_resume(config, workdir)` compares a config with the one the workdir's run was
  started with (``config.json``) before anything is built. Fields that define what the
  checkpoint means (`FROZEN`: the mode, the model, the clip size, the TIME layer, the
  dataset and the normalisation) may not change: `WorkdirError` names the first such
  field and both values. Every other field may (epochs, logging, evaluation cadence,
  data location, learning rate, ...); the changes are returned to be logged in one line.
* `record_start` appends what each start ran with to ``runs.jsonl`` (time, host, pid,
  processes, mode, the step it resumed from, the changed fields and the whole config).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import threading
import time
from typing import Any, Iterator

import jax
import ml_collections

from time_jax import checkpoints
from time_jax import config as config_lib
from time_jax.train import multihost

LOCK_FILE = "run.lock"
HISTORY_FILE = "runs.jsonl"
HEARTBEAT_S = 10.0
STALE_S = 60.0

# Config fields (dotted prefixes) a resumed or evaluating run must keep: they define the
# model, what it sees and what its outputs mean. Everything else may change.
FROZEN = ("mode", "model.name", "model.kwargs", "image_size", "time", "dataset.name",
          "dataset.split", "dataset.modality", "dataset.num_classes",
          "dataset.label_base", "dataset.train_annotations", "dataset.eval_annotations",
          "dataset.classes_file", "dataset.tfds_name", "dataset.depth_max", "input.mean",
          "input.std")


class WorkdirError(RuntimeError):
  """A workdir cannot take this run: another run holds it, or the config changed a
  field the run's checkpoints depend on, or there is nothing to evaluate."""


# ----------------------------------------------------------------------------------
# One run at a time.
# ----------------------------------------------------------------------------------

def _start_ticks(pid: int) -> str | None:
  """The start time of process ``pid`` in clock ticks (Linux), None when unknown; a
  pid reused by another process has another start time."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive_here(owner: dict[str, Any]) -> bool:
  """Whether the lock's owner, on this host, is still the process that wrote it."""
  pid = int(owner.get("pid", -1))
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's live process
    return True
  ticks = _start_ticks(pid)
  return ticks is None or owner.get("start_ticks") in (None, ticks)


def _describe(owner: dict[str, Any]) -> str:
  return (f"host {owner.get('host', '?')}, pid {owner.get('pid', '?')}, started "
          f"{owner.get('started', '?')}")


class Lock:
  """The lock file of one workdir, held by this process (see the module docstring)."""

  def __init__(self, workdir: str, heartbeat_s: float = HEARTBEAT_S,
               stale_s: float = STALE_S):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None
    pid = os.getpid()
    self.owner = dict(host=socket.gethostname(), pid=pid, start_ticks=_start_ticks(pid),
                      started=datetime.datetime.now().isoformat(timespec="seconds"))

  def _create(self) -> bool:
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      json.dump(self.owner, f)
    return True

  def _read(self) -> tuple[dict[str, Any], float] | None:
    """``(owner, mtime)`` of the lock file; None when it is gone."""
    try:
      with open(self.path) as f:
        text = f.read()
      mtime = os.stat(self.path).st_mtime
    except FileNotFoundError:
      return None
    try:
      owner = json.loads(text)
    except ValueError:  # cut short by a crash while writing it
      owner = {}
    return (owner if isinstance(owner, dict) else {}), mtime

  def _busy(self, owner: dict[str, Any]) -> WorkdirError:
    workdir = os.path.dirname(self.path)
    return WorkdirError(
        f"--workdir {workdir} is in use by another run ({_describe(owner)}); a workdir "
        "holds one run at a time. Wait for that run to end or stop it, or choose "
        f"another --workdir. If no such run exists any more, delete {self.path}.")

  def acquire(self) -> None:
    """Takes the lock, or raises `WorkdirError` naming the run that holds it."""
    while not self._create():
      found = self._read()
      if found is None:
        continue  # released meanwhile
      owner, mtime = found
      if owner.get("host") == self.owner["host"]:
        if _alive_here(owner):
          raise self._busy(owner)
        why = "its process is not running"
      else:  # another host: only its heartbeat tells
        deadline = time.time() + self.stale_s
        while time.time() - mtime < self.stale_s:
          if time.time() > deadline:
            break
          time.sleep(min(1.0, self.heartbeat_s / 2))
          again = self._read()
          if again is None or again[1] != mtime:
            raise self._busy(owner)  # its heartbeat moved: alive
        why = f"its heartbeat stopped {time.time() - mtime:.0f} s ago"
      logging.warning("%s: taking over the lock of a run that is gone (%s; %s).",
                      self.path, _describe(owner), why)
      with contextlib.suppress(FileNotFoundError):
        os.remove(self.path)
    self._thread = threading.Thread(target=self._beat, daemon=True,
                                    name="time_jax-workdir-heartbeat")
    self._thread.start()

  def _beat(self) -> None:
    while not self._stop.wait(self.heartbeat_s):
      with contextlib.suppress(OSError):
        os.utime(self.path)

  def release(self) -> None:
    """Gives the lock back (only while this process holds it)."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
      found = self._read()
      if found is not None and found[0].get("pid") == self.owner["pid"] and (
          found[0].get("host") == self.owner["host"]):
        with contextlib.suppress(FileNotFoundError):
          os.remove(self.path)


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds ``workdir``'s lock for the block; with several processes, process 0 takes
  it for the job and every process raises `WorkdirError` when it cannot."""
  lock = Lock(workdir) if jax.process_index() == 0 else None
  error = None
  if lock is not None:
    try:
      lock.acquire()
    except WorkdirError as e:
      error = e
  if not multihost.on_every_process(error is None):
    raise error or WorkdirError(f"--workdir {workdir} is in use by another run; see "
                                "process 0's log.")
  try:
    yield
  finally:
    if lock is not None:
      lock.release()


# ----------------------------------------------------------------------------------
# What a run may change when it resumes.
# ----------------------------------------------------------------------------------

def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flat(value, f"{prefix}{key}."))
    return out if out or not prefix else {prefix[:-1]: {}}
  return {prefix[:-1]: tree}


def as_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as ``config.json`` stores it (tuples as lists)."""
  return json.loads(config.to_json_best_effort())


def _frozen(field: str) -> bool:
  return any(field == f or field.startswith(f + ".") for f in FROZEN)


def saved_config(workdir: str) -> dict[str, Any] | None:
  """The config the workdir's run was started with (``config.json``), None without one."""
  path = os.path.join(workdir, checkpoints.CONFIG_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def changes(saved: dict[str, Any], config: ml_collections.ConfigDict
            ) -> dict[str, tuple[Any, Any]]:
  """``{field: (saved value, new value)}`` of the fields that differ, in the config's
  order. A field the saved config lacks (written before the field existed) counts as
  its `base_config` default."""
  old = _flat(as_json(config_lib.base_config()))
  old.update(_flat(saved))
  new = _flat(as_json(config))
  return {k: (old.get(k), v) for k, v in new.items() if old.get(k, v) != v}


def _show(value: Any) -> str:
  return json.dumps(value) if isinstance(value, (str, dict)) else str(value)


def check_resume(config: ml_collections.ConfigDict, workdir: str
                 ) -> dict[str, tuple[Any, Any]]:
  """The fields ``config`` changes from the run the workdir holds ({} for a new run).

  Only a workdir with a saved step holds a run. An evaluation (``mode='eval'``) may
  evaluate any run, so its mode differs on purpose.

  Raises:
    WorkdirError: a `FROZEN` field differs (named, with both values).
  """
  saved = saved_config(workdir)
  if saved is None or not checkpoints.saved_steps(workdir):
    return {}
  changed = changes(saved, config)
  if config.mode == "eval":
    changed.pop("mode", None)
  frozen = [k for k in changed if _frozen(k)]
  if frozen:
    field = frozen[0]
    old, new = changed[field]
    more = f" (and {', '.join(frozen[1:])})" if frozen[1:] else ""
    raise WorkdirError(
        f"config.{field}: {_show(new)} here but {_show(old)} in the run {workdir} holds"
        f"{more}; a run keeps its mode, model, clip size, TIME layer, dataset and "
        "normalisation when it resumes or is evaluated. Keep the saved value, or start "
        f"a new workdir with --config.checkpoint.init_from={workdir}.")
  return changed


def describe_changes(changed: dict[str, tuple[Any, Any]]) -> str:
  """``'train.num_epochs 40.0 -> 80.0, train.log_every 20 -> 10'``."""
  return ", ".join(f"{k} {_show(a)} -> {_show(b)}" for k, (a, b) in changed.items())


def record_start(config: ml_collections.ConfigDict, workdir: str, *, from_step: int,
                 changed: dict[str, tuple[Any, Any]]) -> None:
  """Appends this start to ``runs.jsonl`` and, unless this only evaluates a run that
  has a config, writes ``config.json`` (process 0)."""
  if jax.process_index() != 0:
    return
  as_dict = as_json(config)
  entry = dict(started=datetime.datetime.now().isoformat(timespec="seconds"),
               host=socket.gethostname(), pid=os.getpid(),
               processes=jax.process_count(), mode=config.mode, from_step=from_step,
               changed={k: [a, b] for k, (a, b) in changed.items()}, config=as_dict)
  with open(os.path.join(workdir, HISTORY_FILE), "a") as f:
    f.write(json.dumps(entry) + "\n")
  if config.mode != "eval" or saved_config(workdir) is None:
    with open(os.path.join(workdir, checkpoints.CONFIG_FILE), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def check_evaluable(config: ml_collections.ConfigDict, workdir: str) -> None:
  """For ``mode='eval'``: the workdir has a saved step, or ``checkpoint.init_from``
  names weights; else `WorkdirError` (an evaluation of random weights helps nobody)."""
  if config.mode != "eval" or config.checkpoint.init_from:
    return
  if not checkpoints.saved_steps(workdir):
    raise WorkdirError(
        f"--config.mode=eval: {workdir} has no saved checkpoint to evaluate (no "
        f"{os.path.join(workdir, checkpoints.CHECKPOINTS_DIR, '<step>')}). Give the "
        "workdir of a training run, or name weights with "
        "--config.checkpoint.init_from=DIR (a workdir or a ported folder).")
