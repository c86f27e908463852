"""The training / evaluation loop: data, model, sharded state, steps, checkpoints, logs.

`train_and_evaluate(config, workdir)` runs ``config.mode``:

* ``finetune``: classification with mixup/cutmix; evaluates (multi-view, top-1, top-5
  with more than 5 classes, per-class accuracy, confusion matrix, the videos left out
  as undecodable) every ``train.eval_every`` steps and at the end.
* ``pretrain``: VideoMAE masked autoencoding; evaluates the reconstruction loss and
  logs reconstructions of a fixed eval batch as images.
* ``eval``: evaluates the workdir's latest checkpoint, or ``checkpoint.init_from``.

With ``train.ema_decay > 0`` the state keeps an EMA of the parameters, started from
the weights training starts from (initialisation or ``checkpoint.init_from``); every
evaluation uses it when ``train.ema_eval`` (`checkpoints.evaluates_ema`), else the raw
parameters. VideoMAE itself evaluates the raw model and only saves its EMA: that is
``ema_eval=False``.

A workdir with a checkpoint resumes from it (state, RNG and the data iterator), so a
run killed at any point and started again with the same command ends as an
uninterrupted one; a newest step that does not restore (a missing or truncated file)
is moved aside and the step before it resumes. SIGTERM or Ctrl-C (SIGINT) saves the
current step and returns ``{'preempted_at': step}`` (``time_jax.main`` then exits with
status 75); a second Ctrl-C exits at once without saving. A non-finite loss stops
the run naming the step, before anything non-finite is saved.

The console gets one line for the parameters (the table goes to ``parameters.txt``) and
the progress of training (`time_jax.console.Progress`), whose rate and ETA start after
the first step of the run, which compiles. ``metrics.jsonl`` holds each step once, also
across resumes (`metrics.Writer.rewind`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import os
import signal
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from clu import parameter_overview

from time_jax import checkpoints
from time_jax import console
from time_jax import models
from time_jax.data import base
from time_jax.data import pipeline
from time_jax.data import sources
from time_jax.models import pretrained
from time_jax.train import metrics as metrics_lib
from time_jax.train import multihost
from time_jax.train import optimizer as optimizer_lib
from time_jax.train import sharding
from time_jax.train import state as state_lib
from time_jax.train import steps as steps_lib
from time_jax.train import tasks
from time_jax.train import workdir as workdir_lib


PARAMETERS_FILE = "parameters.txt"  # the parameter table (name, shape, dtype, size)


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


# The signals that stop a run at the next step boundary with a checkpoint.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclasses.dataclass
class _Preemption:
  """Set by SIGTERM or a first SIGINT (Ctrl-C); the loop saves and returns at the next
  step boundary. A second SIGINT exits at once with status 130 (128 + SIGINT) without
  saving, after killing this process's Grain workers. During the final evaluation
  (``final_step`` set) training is over: a first signal only says that the evaluation
  finishes and the run then ends as usual."""
  requested: bool = False
  previous: dict = dataclasses.field(default_factory=dict)
  final_step: int | None = None  # set while the final evaluation runs

  def install(self) -> None:
    """Handles `_STOP_SIGNALS` until `uninstall` (main thread only)."""
    for signum in _STOP_SIGNALS:
      self.previous[signum] = signal.signal(signum, self)

  def uninstall(self) -> None:
    for signum, handler in self.previous.items():
      signal.signal(signum, handler)
    self.previous.clear()

  def __call__(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    # Set before logging: a second signal can run this handler inside the first one.
    first, self.requested = not self.requested, True
    if not first and signum == signal.SIGINT:
      logging.warning("%s again: exiting now without saving; the run resumes from its "
                      "last checkpoint.", name)
      for child in multiprocessing.active_children():  # Grain workers
        child.kill()
      os._exit(128 + signal.SIGINT)  # pylint: disable=protected-access
    if first and self.final_step is not None:  # training is over: nothing to stop
      logging.warning("%s during the final evaluation: training has finished, so the "
                      "evaluation runs to its end, then step %d is saved and the run "
                      "ends%s.", name, self.final_step,
                      " (Ctrl-C again exits at once, without step %d: the same command "
                      "then trains it again and evaluates)" % self.final_step
                      if signum == signal.SIGINT else "")
    elif first:
      logging.warning("%s: saving a checkpoint after this step and stopping%s.", name,
                      " (Ctrl-C again exits at once without saving)"
                      if signum == signal.SIGINT else "")

  def check(self, step: int, every: int = 1) -> bool:
    """Whether to save and stop after ``step``; the same answer on every process.

    With several processes, whether any of them was signalled is all-gathered every
    ``every`` steps (the loop passes ``train.log_every``, where it waits for the
    device anyway to log), so all stop at the same step even when the signals arrive at
    different steps, or reach one process only; gathering at every step would make the
    host wait for each step before it prepares the next. (JAX's own preemption sync
    point never fires here: it listens for SIGTERM in C++, and this Python handler
    replaces it.)
    """
    if jax.process_count() == 1:
      return self.requested
    return step % every == 0 and multihost.on_any_process(self.requested)


def total_steps(config, steps_per_epoch: int) -> int:
  """The step a run of ``config`` ends at: ``train.num_steps``, else
  ``ceil(num_epochs · steps_per_epoch)``."""
  if config.train.num_steps > 0:
    return int(config.train.num_steps)
  return max(1, int(math.ceil(config.train.num_epochs * steps_per_epoch)))


def _init_from(config, workdir: str, state, state_shardings):
  """Loads ``checkpoint.init_from`` (a previous run's workdir or a ported checkpoint).

  A workdir gives its raw parameters (as VideoMAE's ``--finetune`` reads ``model``, not
  ``model_ema``); the EMA, when on, restarts from the loaded weights. Any mesh and
  process count: the weights are read straight into the state's shardings and merged
  with the initialisation on the devices (`checkpoints.read_variables` with a target).
  """
  path = config.checkpoint.init_from
  if not os.path.isabs(path):
    path = os.path.normpath(os.path.join(workdir, path))
  target = {"params": state.params}
  if state.batch_stats:
    target["batch_stats"] = state.batch_stats
  source, _ = checkpoints.read_variables(path, target=target)
  merged, loaded, kept = pretrained.merge(target, source, model_name=config.model.name)
  logging.info("init_from %s: %d arrays loaded, %d kept from init: %s", path, len(loaded),
               len(kept), kept[:20])
  state = state.replace(params=_place(merged["params"], state_shardings.params))
  if "batch_stats" in merged:
    state = state.replace(batch_stats=_place(merged["batch_stats"],
                                             state_shardings.batch_stats))
  return state_lib.start_ema(state) if state.ema_params else state


def _place(tree, shardings):
  """``tree`` on ``shardings``: device arrays are resharded on the devices; host (numpy)
  arrays, the same on every process, give each device its slice."""
  def place(x, s):
    if isinstance(x, jax.Array):
      return x if x.sharding == s else jax.device_put(x, s)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, s, lambda index: x[index])
  return jax.tree.map(place, tree, shardings)


class Trainer:
  """Holds what one run needs; `run` executes ``config.mode``."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, devices=None,
               splits: base.Splits | None = None, reader=None):
    self.config, self.workdir = config, os.path.abspath(workdir)
    os.makedirs(self.workdir, exist_ok=True)
    # Before anything is built or written: what the workdir holds decides.
    workdir_lib.check_evaluable(config, self.workdir)
    changed = workdir_lib.check_resume(config, self.workdir)
    if changed:
      logging.info("%s %s with changed settings: %s (each start's settings: %s).",
                   "Evaluating" if config.mode == "eval" else "Resuming", self.workdir,
                   workdir_lib.describe_changes(changed),
                   os.path.join(self.workdir, workdir_lib.HISTORY_FILE))
    self.mesh = sharding.make_mesh(config.mesh, devices)
    logging.info("%s", sharding.describe(self.mesh))

    splits = splits if splits is not None else sources.load_splits(config)
    self.train_ds, self.train_info = pipeline.build(config, "train", splits=splits,
                                                    reader=reader)
    self.eval_ds, self.eval_info = pipeline.build(config, "eval", splits=splits,
                                                  reader=reader)
    self.num_classes = self.train_info.num_classes
    self.changed = changed
    self.writer: metrics_lib.Writer | None = None  # opened once the start is known good
    self.model = models.from_config(config, self.num_classes)
    self.task = tasks.for_config(config, self.model, self.num_classes)
    self.steps_per_epoch = max(1, self.train_info.steps_per_epoch)
    self.total_steps = total_steps(config, self.steps_per_epoch)
    self.schedule = optimizer_lib.schedule(config, self.steps_per_epoch, self.total_steps)

    # Shardings are explicit (jit in/out shardings); no mesh context is needed.
    self.state, self.shardings, self.tx = state_lib.create(
        self.task.init_fn(),
        lambda p: optimizer_lib.create(config, p, self.steps_per_epoch, self.total_steps),
        jax.random.PRNGKey(config.seed), self.mesh, ema=config.train.ema_decay > 0)
    self.eval_ema = checkpoints.evaluates_ema(config)
    if config.train.ema_decay > 0:
      logging.info("Parameter EMA with decay %g; evaluation uses the %s parameters.",
                   config.train.ema_decay, "EMA" if self.eval_ema else "raw")
    self.ckpt = checkpoints.Checkpointer(self.workdir, config)
    self.train_step = steps_lib.jit_train_step(
        self.task.train_step(self.tx), self.shardings, self.mesh,
        remat=config.model.get("remat", "none"))
    self.eval_step = self.task.eval_step(self.shardings, self.mesh)

  def _open(self, step: int) -> None:
    """Writes what the run's start leaves in the workdir, once the checkpoint it starts
    from restored (a start that fails before writes nothing): ``config.json`` and the
    ``runs.jsonl`` entry (`workdir.record_start`), ``class_names.json``,
    ``parameters.txt``, and opens the metrics writer."""
    workdir_lib.record_start(self.config, self.workdir, from_step=step,
                             changed=self.changed)
    if jax.process_index() == 0:  # label names for `time_jax.predict` and diagnostics
      with open(os.path.join(self.workdir, checkpoints.CLASS_NAMES_FILE), "w") as f:
        json.dump([str(c) for c in self.train_info.class_names], f, indent=2)
    self._log_parameters()
    self.writer = metrics_lib.Writer(self.workdir)
    self.writer.text("config", f"<pre>{self.config}</pre>")

  def _log_parameters(self) -> None:
    """The parameter table goes to ``parameters.txt``, its total to the log."""
    leaves = jax.tree_util.tree_leaves(self.state.params)
    count = sum(int(np.prod(x.shape)) for x in leaves)
    nbytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves)
    path = os.path.join(self.workdir, PARAMETERS_FILE)
    if jax.process_index() == 0:
      with open(path, "w") as f:
        f.write(parameter_overview.get_parameter_overview(self.state.params,
                                                          include_stats=False) + "\n")
    logging.info("Parameters: %s in %d arrays (%.1f MiB); the table is in %s.",
                 f"{count:,}", len(leaves), nbytes / 2**20, path)

  # --------------------------------------------------------------------------- eval
  def evaluate(self, step: int, final: bool = False) -> dict[str, float]:
    """Runs the eval split once with the EMA or raw parameters (`evaluates_ema`); logs,
    reports and returns the scalars."""
    start = time.time()
    if self.writer is None:  # called on its own (tests, notebooks)
      self._open(step)
    state = self.state
    if self.eval_ema:
      state = state.replace(params=state.ema_params)
    logging.info("Evaluating step %d with the %s parameters.", step,
                 "EMA" if self.eval_ema else "raw")
    out, result = self.task.evaluate(self.eval_step, state, iter(self.eval_ds), self.mesh)
    self.task.write_reports(result, step, final=final, writer=self.writer,
                            workdir=self.workdir, info=self.eval_info)
    out["eval/seconds"] = time.time() - start
    self.writer.scalars(step, out)
    return out

  # -------------------------------------------------------------------------- train
  def _restore_or_init(self, train_iter) -> int:
    # Damaged newer steps are moved aside; a checkpoint of another model raises.
    latest, self.state = self.ckpt.restore_latest(self.state, train_iter)
    if latest is not None:
      return int(latest)
    if self.config.checkpoint.init_from:
      self.state = _init_from(self.config, self.workdir, self.state, self.shardings)
    return 0

  def _evaluate_only(self) -> dict[str, Any]:
    """``mode='eval'``: the workdir's newest step that restores, else ``init_from``
    (`workdir.check_evaluable` made sure there is one of them), named in the log."""
    step = self._restore_or_init(None)
    self._open(step)
    init_from = self.config.checkpoint.init_from
    if step:
      logging.info("Evaluating step %d of %s%s.", step, self.workdir,
                   f" (its own checkpoint; checkpoint.init_from={init_from} is not used)"
                   if init_from else "")
    elif init_from:
      logging.info("Evaluating the weights of checkpoint.init_from=%s (%s has no "
                   "checkpoint of its own).", init_from, self.workdir)
    else:  # every saved step was damaged and moved aside
      raise workdir_lib.WorkdirError(
          f"--config.mode=eval: no saved step of {self.workdir} restores (see the "
          "warnings above); nothing to evaluate.")
    return self.evaluate(step, final=True)

  def _flush(self, window: list, step: int, since: tuple[int, float]) -> None:
    """Checks the window's losses are finite, then writes their means and shows them.

    Args:
      window: ``(step, metrics)`` of the steps since the last flush.
      step: the last step of the window.
      since: ``(step, time)`` the window's timing starts at: the end of the previous
        window, of an evaluation, or of this run's first step (compilation excluded).
    """
    if not window:
      return
    fetched = jax.device_get(window)
    for s, m in fetched:
      if not np.isfinite(m["loss"]):
        raise NonFiniteLossError(
            f"The training loss is {m['loss']} at step {s}; stopping. The last good "
            f"checkpoint in {self.ckpt.directory} is step {self.ckpt.latest_step()}. "
            "Lower optimizer.base_lr, raise warmup or set optimizer.clip_norm.")
    collection = metrics_lib.train_collection(list(fetched[0][1]))
    agg = collection.empty()
    for _, m in fetched:
      agg = agg.merge(collection.single_from_model_output(**m))
    out = {f"train/{k}": float(v) for k, v in agg.compute().items()}
    out["train/lr"] = float(self.schedule(step - 1))
    timed = step - since[0]
    if timed > 0:  # the window holds more than the compiling step
      rate = timed / max(time.time() - since[1], 1e-9)
      out["train/steps_per_sec"] = rate
      out["train/clips_per_sec"] = rate * self.config.input.batch_size
      out["train/eta_minutes"] = (self.total_steps - step) / rate / 60
    out["train/epoch"] = step / self.steps_per_epoch
    # What the row averages: fewer than train.log_every steps after a resume, a save or
    # an evaluation between logging steps.
    out["train/window_steps"] = len(fetched)
    out.update(self.train_info.monitor.metrics())
    self.writer.scalars(step, out, log=False)
    self.progress.report(step, out)
    window.clear()

  def train(self) -> dict[str, Any]:
    """Trains to ``total_steps``; returns the final eval scalars, or
    ``{'preempted_at': step}`` when SIGTERM or Ctrl-C stopped it at ``step`` with
    that step's checkpoint saved."""
    config = self.config
    train_iter = iter(self.train_ds)
    step = self._restore_or_init(train_iter)
    self._open(step)
    self.writer.rewind(step)
    first = step + 1  # this run's first step compiles the train step
    if step >= self.total_steps:
      logging.info("This run has finished: step %d of %d is saved in %s; %s", step,
                   self.total_steps, self.ckpt.directory,
                   "evaluating it again (train.eval_at_end). Raise train.num_epochs "
                   "(or num_steps) to train on." if config.train.eval_at_end else
                   "nothing to do (train.eval_at_end is off).")
    else:
      logging.info("%s %s: step %d to %d (%d steps/epoch); step %d compiles first.",
                   "Resuming" if step else "Training", config.mode, first,
                   self.total_steps, self.steps_per_epoch, first)
    self.progress = console.Progress(self.total_steps, enabled=jax.process_index() == 0,
                                     log_every=config.train.log_every)
    base_rng = jax.device_get(self.state.rng)  # the state (and its rng) is donated
    preempt = _Preemption()
    preempt.install()
    t = config.train
    window, since, last_eval = [], (step, time.time()), {}
    try:
      while step < self.total_steps:
        batch = next(train_iter)
        gb = steps_lib.global_batch(batch, self.mesh, keys=self.task.batch_keys)
        self.state, m = self.train_step(self.state, gb, jax.random.fold_in(base_rng, step))
        step += 1
        window.append((step, m))
        if step == first:  # time (and ETA) from here: without the compilation
          jax.block_until_ready(m)
          since = (step, time.time())
          self.progress.start(step)
        self.progress.advance(step)
        stop = preempt.check(step, every=t.log_every)
        save = step % config.checkpoint.every_steps == 0 or step == self.total_steps or stop
        do_eval = bool(t.eval_every) and step % t.eval_every == 0 and step < self.total_steps
        if step % t.log_every == 0 or save or do_eval:
          self._flush(window, step, since)
          since = (step, time.time())
        score = None
        if do_eval:
          last_eval = self.evaluate(step)
          score = self.task.score(last_eval)
          since = (step, time.time())
        if save and (stop or not (step == self.total_steps and t.eval_at_end)):
          self.ckpt.save(step, self.state, train_iter, score=score)
        if stop:
          self.ckpt.wait()
          logging.warning("Stopped at step %d of %d; its checkpoint is saved in %s. Run "
                          "the same command to resume.", step, self.total_steps,
                          self.ckpt.directory)
          return {"preempted_at": step}
      self.progress.close()
      if t.eval_at_end:
        preempt.final_step = step
        last_eval = self.evaluate(step, final=True)
        if self.ckpt.latest_step() != step:
          self.ckpt.save(step, self.state, train_iter, score=self.task.score(last_eval))
      return last_eval
    finally:
      self.progress.close()
      preempt.uninstall()
      self.ckpt.wait()

  def run(self) -> dict[str, Any]:
    try:
      if self.config.mode == "eval":
        return self._evaluate_only()
      return self.train()
    finally:
      self.ckpt.close()
      if self.writer is not None:
        self.writer.close()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, devices=None,
                       splits: base.Splits | None = None,
                       reader=None) -> dict[str, Any]:
  """Runs ``config.mode`` in ``workdir``; returns the last eval scalars.

  Args:
    config: a validated config (`time_jax.config.validate`).
    workdir: where checkpoints, logs, ``config.json`` and eval reports go.
    devices: the mesh's devices (default: all devices of all processes).
    splits, reader: records and a clip reader instead of ``config.dataset``'s
      (tests, or callers with their own source); see `pipeline.build`.
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  with workdir_lib.hold(workdir):  # one run per workdir
    return Trainer(config, workdir, devices, splits=splits, reader=reader).run()
