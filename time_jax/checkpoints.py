"""Checkpoints: what a training run writes, and reading runs and ported weights back.

One module serves the training loop, ``checkpoint.init_from``, `time_jax.predict` and
`time_jax.diagnose`. Two kinds of folder hold weights:

* a training **workdir**: ``checkpoints/<step>/state`` (the sharded `TrainState`:
  params, batch_stats, optimizer state, step, RNG, and the parameters' EMA when
  ``train.ema_decay > 0``) and ``checkpoints/<step>/data`` (the
  train iterator's Grain state, one file per process), written by `Checkpointer`, plus
  the run's ``config.json`` and ``class_names.json``;
* a **ported** folder from ``python -m time_jax.port``: ``variables/`` and
  ``metadata.json`` (`time_jax.port.common`).

`Checkpointer` keeps the last ``checkpoint.keep`` steps of a run and the
``checkpoint.keep_best`` best by ``score`` (top-1 when fine-tuning, minus the eval loss
when pretraining). `Checkpointer.restore_latest` resumes from the newest step that
restores: a damaged newer step (a missing or truncated file, an empty folder) is named
in a warning and moved aside to ``checkpoints/<step>.damaged`` (kept, not deleted;
Orbax ignores the name), while a checkpoint of a different model is an error. A step
saved by another process count restores its state resharded and restarts the data
iterator at that step of this process count's order, with one warning (the data
position cannot carry over). `kind` tells the two folders apart, `latest_step` finds a
workdir's newest step that restores (readers skip damaged steps with a warning and move
nothing), `read_variables` reads either folder's variables as numpy trees, or straight
into a target's shardings on any mesh and process count (``init_from``), and `load`
opens either as a `Checkpoint` that rebuilds its model (inference and diagnostics).
Both read a workdir's raw parameters, or with ``ema=True`` its EMA parameters;
`evaluates_ema` says which ones the run itself evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Callable

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import linen as nn
from flax import traverse_util
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from time_jax import config as config_lib
from time_jax import models
from time_jax.data import pipeline
from time_jax.port import common
from time_jax.train import multihost

CHECKPOINTS_DIR = "checkpoints"
CONFIG_FILE = "config.json"
CLASS_NAMES_FILE = "class_names.json"
PORTED_METADATA_FILE = "metadata.json"

# Top-level modules whose kernel's last axis is the class count.
_HEADS = ("head", "fc", "classifier")

# The config field that decides whether a `TrainState` field holds arrays.
_FIELD_SETTINGS = {"ema_params": "train.ema_decay"}


class CheckpointError(FileNotFoundError):
  """A path is not a readable training workdir or ported-weights folder."""


class ModelMismatchError(CheckpointError):
  """A readable checkpoint holds arrays of another model than the run's."""


class DamagedCheckpointError(CheckpointError):
  """A step folder cannot be restored: files are missing, truncated or unreadable."""


DAMAGED_SUFFIX = ".damaged"


# ----------------------------------------------------------------------------------
# Writing (the training loop).
# ----------------------------------------------------------------------------------

def _abstract(state: Any) -> Any:
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def _short(error: Exception) -> str:
  """An error's first line without TensorStore's spec, at most 300 characters
  (orbax's errors run to pages)."""
  lines = str(error).strip().splitlines()
  text = lines[0] if lines else ""
  for spec in (" [tensorstore_spec", " See full TensorStore details"):
    text = text.split(spec)[0]
  text = text.rstrip(". ")
  return text[:300] + "..." if len(text) > 300 else text


def _first_line(error: Exception) -> str:
  return f"{type(error).__name__}: {_short(error)}"


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """``'params/blocks_0/mlp/fc1/kernel' -> shape`` of a tree's array leaves."""
  def name(key):
    return str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(name(k) for k in path): tuple(leaf.shape)
          for path, leaf in leaves if hasattr(leaf, "shape")}


def _first_mismatch(saved: Any, target: Any) -> str | None:
  """The first array (parameters first) named or shaped differently in the saved
  metadata tree and the target tree, described in words; None when they match."""
  on_disk, here = _flat_shapes(saved), _flat_shapes(target)
  problems = []
  for path, shape in here.items():
    if path not in on_disk:
      problems.append((path, f"{path} {shape} is not in the checkpoint"))
    elif on_disk[path] != shape:
      problems.append((path, f"{path} is {on_disk[path]} there and {shape} here"))
  for path, shape in on_disk.items():
    if path not in here:
      problems.append((path, f"{path} {shape} is in the checkpoint but not in this model"))
  if not problems:
    return None
  problems.sort(key=lambda p: not p[0].startswith("params/"))  # stable: tree order
  return problems[0][1]


def _data_files(step_dir: str) -> list[str]:
  """The ``process_<i>-of-<n>.json`` files of a step's saved data iterator."""
  data = os.path.join(step_dir, "data")
  return [n for n in (os.listdir(data) if os.path.isdir(data) else [])
          if n.startswith("process_") and "-of-" in n]


class Checkpointer:
  """An Orbax ``CheckpointManager`` of a run's (state, data iterator), asynchronous."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict):
    c = config.checkpoint
    keep = [policies.LatestN(n=int(c.keep))]
    if c.keep_best:
      keep.append(policies.BestN(get_metric_fn=lambda m: m["score"], n=int(c.keep_best),
                                 keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep),
        enable_async_checkpointing=bool(c.async_save), create=True)
    self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINTS_DIR)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler()})

  def latest_step(self) -> int | None:
    """The newest step this run has saved or is saving."""
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_iter: Any,
           score: float | None = None) -> None:
    """Starts saving ``step`` (returns while writing continues in the background)."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    metrics = None if score is None else {"score": float(score)}
    self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
    logging.info("Checkpoint of step %d started (%s).", step, self.directory)

  def restore(self, step: int, state: Any, data_iter: Any) -> Any:
    """Restores ``step`` into ``state``'s shardings and ``data_iter`` in place.

    ``state`` is a `TrainState`. A checkpoint saved before one of its fields existed
    (``ema_params``) restores when that field is empty here (EMA off). A data position
    saved by another process count is not restored: ``data_iter`` starts at
    batch ``step`` of this process count's order, with one warning.

    Raises:
      ModelMismatchError: the checkpoint's arrays have other names or shapes than
        ``state``'s (another model), or it holds arrays for a field that is empty in
        ``state``, or the reverse (the config changed since it was saved).
      DamagedCheckpointError: the step's files cannot be read.
    """
    item, missing = self._target(step, state, data_iter)
    items = {"state": ocp.args.StandardRestore(item)}
    saved_by = self._data_processes(step)
    if data_iter is not None and saved_by == jax.process_count():
      items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**items))["state"]
    except Exception as e:  # the trees match: a failing read is a damaged folder
      raise DamagedCheckpointError(
          f"{self.directory}/{step}: cannot restore it ({_first_line(e)})") from e
    if data_iter is not None and saved_by != jax.process_count():
      _restart_data(data_iter, step, saved_by)
    logging.info("Restored step %d from %s.", step, self.directory)
    return state.replace(**restored) if missing else restored

  def _target(self, step: int, state: Any, data_iter: Any) -> tuple[Any, list[str]]:
    """``(restore target, state fields the checkpoint lacks)`` after checking, without
    collectives, that ``step``'s files are there and hold ``state``'s arrays.

    Raises:
      ModelMismatchError, DamagedCheckpointError: as `restore`.
    """
    target = _abstract(state)
    fields = {f.name: getattr(target, f.name) for f in dataclasses.fields(target)}
    folder = os.path.join(self.directory, str(step))
    missing = _missing_state_file(folder)
    if missing:
      raise DamagedCheckpointError(f"{folder}: {missing} is missing")
    if data_iter is not None:
      names = _data_files(folder)
      count = f"-of-{jax.process_count()}.json"
      mine = f"process_{jax.process_index()}{count}"
      # Files of another process count are a changed job, not damage: restore decides.
      if mine not in names and (not names or any(n.endswith(count) for n in names)):
        raise DamagedCheckpointError(f"{folder}: data/{mine} is missing")
    try:
      saved = self.manager.item_metadata(step)["state"]
    except Exception as e:  # an empty folder, a missing or unreadable _METADATA
      raise DamagedCheckpointError(f"{self.directory}/{step}: cannot read the state's "
                                   f"metadata ({_first_line(e)})") from e
    if saved is None:  # no tree metadata: let orbax compare the trees
      saved = fields
    for name, value in fields.items():
      on_disk = name in saved and bool(jax.tree.leaves(saved[name]))
      if bool(jax.tree.leaves(value)) != on_disk:
        setting = _FIELD_SETTINGS.get(name, "the model")
        raise ModelMismatchError(
            f"{self.directory}/{step}: the checkpoint {'holds' if on_disk else 'has no'} "
            f"{name} but this run {'keeps none' if on_disk else 'needs them'}; {setting} "
            "changed since it was saved. Resume with the config it was saved with, or "
            "start a new workdir with checkpoint.init_from set to this one.")
    missing = [name for name in fields if name not in saved]
    item = {k: v for k, v in fields.items() if k in saved} if missing else target
    if saved is not fields:
      mismatch = _first_mismatch(saved, item)
      if mismatch:
        workdir = os.path.dirname(self.directory)
        raise ModelMismatchError(
            f"the checkpoint in {workdir} was written by a different model: {mismatch}. "
            "Resume with the config it was saved with, or start a new workdir "
            f"(checkpoint.init_from={workdir} loads the weights that fit).")
    return item, missing

  def restore_latest(self, state: Any, data_iter: Any) -> tuple[int | None, Any]:
    """``(step, state)`` of the newest step that restores; ``(None, state)`` if none.

    A step that does not restore (`DamagedCheckpointError`) is named in one warning
    and moved aside to ``<step>.damaged`` next to the others, so this and later runs
    resume from the step before it. ``data_iter`` is left where it was when no step
    restores.

    Raises:
      ModelMismatchError: a readable step was written by another model or config
        (nothing is moved).
    """
    initial = data_iter.get_state() if data_iter is not None else None
    moved = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      error = None
      try:  # first without collectives, so processes stay in step when one fails
        self._target(step, state, data_iter)
      except DamagedCheckpointError as e:
        error = e
      if multihost.on_every_process(error is None):
        try:  # a truncated file shows only here (on one process of several: a hang)
          restored = self.restore(step, state, data_iter)
        except DamagedCheckpointError as e:
          error = e
        if multihost.on_every_process(error is None):
          self._warn_moved(moved, f"resuming from step {step}")
          return step, restored
      if not multihost.on_every_process(
          os.path.isdir(os.path.join(self.directory, str(step)))):
        # Gone, not damaged: something else deleted it while it was read. Only a step
        # that is there and fails to restore is moved aside.
        logging.warning("%s/%d disappeared while it was being restored; skipping it.",
                        self.directory, step)
        self.manager.reload()
        continue
      moved.append((error, self._move_aside(step)))
    if data_iter is not None:
      data_iter.set_state(initial)
    self._warn_moved(moved, "no older step: starting from scratch")
    return None, state

  def _move_aside(self, step: int) -> str:
    """Renames a step folder to ``<step>.damaged`` (process 0); returns the new path."""
    source = os.path.join(self.directory, str(step))
    target, n = source + DAMAGED_SUFFIX, 1
    while os.path.exists(target):
      n += 1
      target = f"{source}{DAMAGED_SUFFIX}{n}"
    if jax.process_index() == 0:
      os.rename(source, target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"checkpoint {step} moved aside")
    self.manager.reload()
    return target

  @staticmethod
  def _warn_moved(moved: list[tuple[Exception | None, str]], then: str) -> None:
    for error, target in moved:  # each process names its own reason
      if error is not None or jax.process_index() == 0:
        reason = error if error is not None else "another process cannot restore it"
        logging.warning("%s; moved it aside to %s, %s.", reason, target, then)

  def _data_processes(self, step: int) -> int:
    """How many processes saved ``step``'s data iterator (one file each; 0: none)."""
    counts = {n.rsplit("-of-", 1)[1].split(".")[0]
              for n in _data_files(os.path.join(self.directory, str(step)))}
    return int(counts.pop()) if len(counts) == 1 else 0

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _restart_data(data_iter: Any, step: int, saved_by: int) -> None:
  """Starts ``data_iter`` at batch ``step`` of this process count's order (one warning).

  A data position saved by another process count does not map onto this one (each
  process reads its own shard of the records), so the order is the one a run with
  this process count has at ``step``: any later resume with it reproduces it exactly.
  """
  pipeline.seek(data_iter, step)
  if jax.process_index() == 0:
    saved = (f"saved by {saved_by} process(es)" if saved_by else
             "saved without the data iterator's position")
    logging.warning(
        "Resuming step %d %s with %d: the parameters and optimizer state are "
        "resharded and restored exactly, but the data position cannot be; training "
        "continues deterministically from batch %d of the %d-process order (not the "
        "batches an uninterrupted run would have seen).", step, saved,
        jax.process_count(), step, jax.process_count())


# ----------------------------------------------------------------------------------
# Reading workdirs and ported folders.
# ----------------------------------------------------------------------------------

def kind(path: str) -> str:
  """``'workdir'`` or ``'ported'``: which kind of weights folder ``path`` is.

  Raises:
    CheckpointError: ``path`` is missing or is neither.
  """
  if not os.path.isdir(path):
    raise CheckpointError(
        f"{path}: no such checkpoint folder; pass a training workdir (with "
        f"{CHECKPOINTS_DIR}/) or a folder written by `python -m time_jax.port`.")
  if os.path.isdir(os.path.join(path, CHECKPOINTS_DIR)):
    return "workdir"
  if os.path.isfile(os.path.join(path, PORTED_METADATA_FILE)):
    return "ported"
  raise CheckpointError(
      f"{path}: not a checkpoint; expected a training workdir ({CHECKPOINTS_DIR}/ and "
      f"{CONFIG_FILE}) or a ported-weights folder ({PORTED_METADATA_FILE}).")


def latest_step(workdir: str) -> int:
  """The newest step of a workdir that restores (read to find out; see `read_state`).

  Raises:
    CheckpointError: the workdir has none.
  """
  return _newest_good_state(workdir)[0]


def saved_steps(workdir: str) -> list[int]:
  """The workdir's numbered step folders, newest first (``<step>.damaged`` is not);
  [] when it has none. Nothing is read: a step listed may not restore."""
  directory = os.path.join(workdir, CHECKPOINTS_DIR)
  if not os.path.isdir(directory):
    return []
  return sorted((int(s) for s in os.listdir(directory)
                 if s.isdigit() and os.path.isdir(os.path.join(directory, s))), reverse=True)


def _step_folders(workdir: str) -> list[int]:
  """`saved_steps`, or `CheckpointError` when there are none."""
  steps = saved_steps(workdir)
  if not steps:
    raise CheckpointError(f"{workdir}: the workdir has no saved checkpoint in "
                          f"{os.path.join(workdir, CHECKPOINTS_DIR)}.")
  return steps


def _missing_state_file(step_dir: str) -> str | None:
  """The first file a step's ``state/`` must have and lacks, e.g. ``state/_METADATA``;
  None when all are there (its arrays may still be damaged)."""
  state = os.path.join(step_dir, "state")
  if not os.path.isdir(state):
    return "state/"
  required = ["_METADATA"]
  if any(n.startswith("ocdbt.process_") for n in os.listdir(state)):
    required.append("manifest.ocdbt")  # the OCDBT root the per-process databases join
  for name in required:
    if not os.path.isfile(os.path.join(state, name)):
      return f"state/{name}"
  return None


def _newest_restoring(workdir: str, read: Callable[[str], Any]) -> tuple[int, Any]:
  """``(step, read(step's folder))`` of the newest step of ``workdir`` that ``read``
  restores (`CheckpointError` otherwise).

  Readers move nothing: newer steps that fail are named in one warning with the step
  used instead (the training loop moves them aside when it resumes).
  """
  skipped = []
  for step in _step_folders(workdir):
    folder = os.path.join(workdir, CHECKPOINTS_DIR, str(step))
    missing = _missing_state_file(folder)
    if missing:  # known damage: no orbax read (its failures print pages at exit)
      skipped.append(f"step {step} ({missing} is missing)")
      continue
    try:
      result = read(folder)
    except CheckpointError as e:
      skipped.append(f"step {step} ({_short(e)})")
      continue
    if skipped:
      logging.warning("%s: %s does not restore; using step %d.", workdir,
                      "; ".join(skipped), step)
    return step, result
  raise CheckpointError(f"{workdir}: no saved step restores: {'; '.join(skipped)}.")


def _newest_good_state(workdir: str) -> tuple[int, dict[str, Any]]:
  """``(step, state tree)`` of the newest step that restores (`read_state`)."""
  return _newest_restoring(
      workdir, lambda folder: read_state(workdir, int(os.path.basename(folder))))


def read_state(workdir: str, step: int | None = None) -> dict[str, Any]:
  """The ``state`` tree of a workdir's step (default: the newest that restores,
  `latest_step`) as numpy arrays.

  Read without a target, as host arrays, so the run's model, mesh and device count
  need not exist here.
  """
  if step is None:  # the newest step that restores
    return _newest_good_state(workdir)[1]
  path = os.path.join(workdir, CHECKPOINTS_DIR, str(step), "state")
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  # The loop keeps _CHECKPOINT_METADATA at the step level, not in state/: orbax warns.
  absl_logger.setLevel(logging.ERROR)
  try:
    with ocp.PyTreeCheckpointer() as ckptr:
      meta = ckptr.metadata(path)
      meta = getattr(meta, "item_metadata", meta)
      as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                              getattr(meta, "tree", meta))
      tree = ckptr.restore(path, restore_args=as_numpy)
  except Exception as e:  # orbax raises many types for damaged folders
    raise CheckpointError(f"{path}: cannot restore the checkpoint ({e}).") from e
  finally:
    absl_logger.setLevel(level)
  logging.info("Read step %d of %s.", step, workdir)
  return tree


def _as_numpy(tree):
  if isinstance(tree, dict):
    return {k: _as_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)


def evaluates_ema(config: ml_collections.ConfigDict) -> bool:
  """Whether a run of ``config`` evaluates its EMA parameters.

  True when ``train.ema_decay > 0`` and ``train.ema_eval``: the training loop then
  evaluates, and `time_jax.predict` by default predicts with, ``ema_params``. Configs
  saved before EMA existed have neither field: False.
  """
  train = config.get("train") or {}
  return float(train.get("ema_decay", 0.0)) > 0 and bool(train.get("ema_eval", True))


def read_variables(path: str, *, ema: bool = False, target: Any = None
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
  """``({'params', 'batch_stats'?}, metadata)`` of a workdir or a ported folder.

  A workdir gives the variables of its newest step that restores and metadata
  ``{'step': step}``; a ported folder its variables and ``metadata.json``. Without ``target`` the arrays are numpy (read
  whole by this process: `load`, `time_jax.predict`).

  With ``target`` (the model's variables, ``{'params', 'batch_stats'?}`` of sharded
  ``jax.Array``s or ``jax.ShapeDtypeStruct``s with shardings, any mesh and process
  count), only ``params`` / ``batch_stats`` are read, as ``jax.Array``s: a variable
  whose path and shape match the target's is restored straight into the target's
  sharding, so each process reads only the shards its devices hold; any other (a
  class head of another size, a ``pos_embed`` to resize, ...) replicated over the
  target's mesh, where `time_jax.models.pretrained.merge` adapts it.

  Args:
    path: the folder.
    ema: a workdir's ``params`` are its EMA parameters (``ema_params``, kept with
      ``train.ema_decay > 0``); ``batch_stats`` are the same either way.
    target: see above; None: numpy.

  Raises:
    CheckpointError: ``path`` is not a readable checkpoint of either kind, or ``ema``
      and it holds no EMA parameters.
  """
  if kind(path) == "workdir":
    if target is not None:
      step, variables = _newest_sharded_variables(path, ema, target)
      if ema and not variables.get("params"):
        raise _no_ema(path)
      return variables, {"step": step}
    step, state = _newest_good_state(path)
    params = state["params"]
    if ema:
      params = state.get("ema_params")
      if not params:
        raise _no_ema(path)
    variables = {"params": _as_numpy(params)}
    if state.get("batch_stats"):
      variables["batch_stats"] = _as_numpy(state["batch_stats"])
    return variables, {"step": step}
  if ema:
    raise CheckpointError(f"{path}: ported weights have no EMA parameters; read them "
                          "without ema (no --ema).")
  if target is not None:
    metadata = _read_json(os.path.join(path, PORTED_METADATA_FILE))
    return _read_sharded(os.path.join(path, "variables"),
                         {"params": "params", "batch_stats": "batch_stats"}, target), metadata
  try:
    variables, metadata = common.restore(path)
  except Exception as e:  # orbax raises many types for damaged folders
    raise CheckpointError(f"{path}: cannot restore the ported weights ({e}).") from e
  return dict(variables), metadata


def _newest_sharded_variables(workdir: str, ema: bool, target: Any
                              ) -> tuple[int, dict[str, Any]]:
  """``(step, variables)`` of the newest step of ``workdir`` whose variables restore
  into ``target`` (`_read_sharded`)."""
  wanted = {"params": "ema_params" if ema else "params", "batch_stats": "batch_stats"}
  return _newest_restoring(
      workdir, lambda folder: _read_sharded(os.path.join(folder, "state"), wanted, target))


def _no_ema(path: str) -> CheckpointError:
  return CheckpointError(
      f"{path}: the checkpoint has no EMA parameters (its run had "
      "train.ema_decay=0); read its raw parameters instead (no --ema).")


def _read_sharded(item: str, wanted: dict[str, str], target: Any) -> dict[str, Any]:
  """``{collection: tree of jax.Array}`` of the Orbax pytree at ``item``.

  ``wanted`` maps a target collection to the key that holds it on disk; collections
  absent or empty on disk are left out. See `read_variables` for the shardings.
  """
  leaves = jax.tree.leaves(target)
  if not leaves:
    raise ValueError("read_variables: the target has no arrays.")
  replicated = jax.sharding.NamedSharding(leaves[0].sharding.mesh, jax.sharding.PartitionSpec())
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)  # _CHECKPOINT_METADATA sits one level up (above)
  try:
    with ocp.PyTreeCheckpointer() as ckptr:
      meta = ckptr.metadata(item)
      meta = getattr(meta, "item_metadata", meta)
      tree = getattr(meta, "tree", meta)
      abstract = {}
      for collection, key in wanted.items():
        on_disk = tree.get(key) if isinstance(tree, dict) else None
        if not isinstance(on_disk, dict) or not jax.tree.leaves(on_disk):
          continue
        want = traverse_util.flatten_dict(dict(target.get(collection) or {}))
        flat = {}
        for leaf_path, m in traverse_util.flatten_dict(on_disk).items():
          shape = tuple(m.shape)
          goal = want.get(leaf_path)
          fits = goal is not None and tuple(goal.shape) == shape
          flat[leaf_path] = jax.ShapeDtypeStruct(
              shape, m.dtype, sharding=goal.sharding if fits else replicated)
        abstract[key] = traverse_util.unflatten_dict(flat)
      restored = ckptr.restore(item, args=ocp.args.PyTreeRestore(
          item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
          partial_restore=True))
  except Exception as e:  # orbax raises many types for damaged folders
    raise CheckpointError(f"{item}: cannot restore the checkpoint ({e}).") from e
  finally:
    absl_logger.setLevel(level)
  logging.info("Read %s into the target shardings.", item)
  return {collection: restored[key] for collection, key in wanted.items()
          if key in restored}


# ----------------------------------------------------------------------------------
# A loaded checkpoint (inference, diagnostics).
# ----------------------------------------------------------------------------------

@dataclasses.dataclass
class Checkpoint:
  """A loaded checkpoint.

  Attributes:
    path: the folder it came from.
    kind: ``'workdir'`` or ``'ported'``.
    variables: ``{'params': ..., 'batch_stats'?: ...}`` as numpy trees.
    config: the run's config (ported: `base_config` with the model's name).
    class_names: one name per class (``class_{i}`` when unknown); empty without a head.
    ema: ``variables['params']`` are the run's EMA parameters.
    step: the training step read (a workdir's newest saved step); None when ported.
  """
  path: str
  kind: str
  variables: dict[str, Any]
  config: ml_collections.ConfigDict
  class_names: list[str]
  ema: bool = False
  step: int | None = None

  @property
  def model_name(self) -> str:
    return self.config.model.name

  @property
  def is_pretrainer(self) -> bool:
    return models.is_pretrainer(self.model_name)

  def build_model(self, **overrides) -> nn.Module:
    """The checkpoint's model in float32 for its config's clip size; ``overrides``
    replace constructor kwargs (e.g. ``mask_ratio``)."""
    return models.from_config(self.config, len(self.class_names), dtype=jnp.float32,
                              **overrides)


def head_classes(params: dict[str, Any]) -> int | None:
  """The class count read from a classifier head's kernel, None without one."""
  for name in _HEADS:
    head = params.get(name)
    if isinstance(head, dict) and "kernel" in head:
      return int(np.shape(head["kernel"])[-1])
  return None


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{path}: cannot read it as JSON ({e}).") from e


def _overridden(config: ml_collections.ConfigDict, overrides: dict[str, Any]):
  for key, value in overrides.items():
    if value is None:
      continue
    if key == "image_size":
      config.image_size = int(value)
    else:
      config.time[key] = value
  return config


def _names(names: Any, count: int | None) -> list[str]:
  names = [str(n) for n in names] if names else []
  if count is None:
    return names
  if len(names) != count:
    names = [f"class_{i}" for i in range(count)]
  return names


def load(path: str, *, ema: bool | None = False, n: int | None = None,
         t_out: int | None = None, image_size: int | None = None,
         arrangement: str | None = None) -> Checkpoint:
  """Opens a training workdir or a ported-weights folder.

  A workdir gives its latest step's ``params`` (or EMA parameters) and
  ``batch_stats``, the run's config (model, TIME layer, normalisation) and class
  names; a ported folder the model named in its metadata with the defaults of
  `time_jax.config.base_config` for everything else. Class names fall back to
  ``class_{i}`` when the checkpoint has none.

  Args:
    path: the folder.
    ema: True: a workdir's EMA parameters (``train.ema_decay > 0``); False: its raw
      parameters; None: those its run evaluated (`evaluates_ema`; raw for a ported
      folder).
    n, t_out, image_size, arrangement: override the TIME layer / clip size the
      checkpoint's config has (a ported folder has only the defaults: N=2, T*=16, 224²).

  Raises:
    CheckpointError: ``path`` is missing or is neither kind of checkpoint, its files
      cannot be read, or ``ema`` is True and it has no EMA parameters.
  """
  overrides = dict(n=n, t_out=t_out, image_size=image_size, arrangement=arrangement)
  path = os.path.abspath(path)
  if kind(path) == "workdir":
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
      raise CheckpointError(f"{path}: the workdir has no {CONFIG_FILE} to rebuild its model.")
    config = ml_collections.ConfigDict(_read_json(config_path))
    ema = evaluates_ema(config) if ema is None else bool(ema)
    variables, read = read_variables(path, ema=ema)
    step = read["step"]
    names_path = os.path.join(path, CLASS_NAMES_FILE)
    names = _read_json(names_path) if os.path.isfile(names_path) else []
    count = head_classes(variables["params"])
    if count is None and not models.is_pretrainer(config.model.name):
      count = len(names) or int(config.dataset.get("num_classes", 0) or 0) or None
    return Checkpoint(path, "workdir", variables, _overridden(config, overrides),
                      _names(names, count), ema, step)
  variables, metadata = read_variables(path, ema=bool(ema))
  config = config_lib.base_config()
  config.model.name = metadata["model"]
  # The constructor options the port recorded (pooling, layer scale, sizes).
  config.model.kwargs = ml_collections.ConfigDict(metadata.get("model_kwargs", {}))
  if metadata.get("image_size"):  # a ViT's position embedding fixes its input size
    config.image_size = int(metadata["image_size"])
  count = head_classes(variables["params"])
  if count is None and metadata.get("num_classes"):
    count = int(metadata["num_classes"])
  return Checkpoint(path, "ported", variables, _overridden(config, overrides),
                    _names(metadata.get("class_names", []), count))
