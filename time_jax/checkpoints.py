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
when pretraining). A step saved by another process count restores its state resharded
and restarts the data iterator at that step of this process count's order, with one
warning (the data position cannot carry over). `kind` tells the two folders apart,
`latest_step` finds a workdir's newest saved step, `read_variables` reads either
folder's variables as numpy trees, or straight into a target's shardings on any mesh
and process count (``init_from``), and `load` opens either as a `Checkpoint` that
rebuilds its model (inference and diagnostics). Both read a workdir's raw parameters,
or with ``ema=True`` its EMA parameters; `evaluates_ema` says which ones the run itself
evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import linen as nn
from flax import traverse_util
from orbax.checkpoint import checkpoint_managers as policies

from time_jax import config as config_lib
from time_jax import models
from time_jax.data import pipeline
from time_jax.port import common

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


# ----------------------------------------------------------------------------------
# Writing (the training loop).
# ----------------------------------------------------------------------------------

def _abstract(state: Any) -> Any:
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


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
    saved by another process count (or none) is not restored: ``data_iter`` starts at
    batch ``step`` of this process count's order, with one warning.

    Raises:
      CheckpointError: the checkpoint holds arrays for a field that is empty in
        ``state``, or the reverse: the config changed since it was saved.
    """
    target = _abstract(state)
    fields = {f.name: getattr(target, f.name) for f in dataclasses.fields(target)}
    saved = self.manager.item_metadata(step)["state"]
    if saved is None:  # no tree metadata: let orbax compare the trees
      saved = fields
    for name, value in fields.items():
      on_disk = name in saved and bool(jax.tree.leaves(saved[name]))
      if bool(jax.tree.leaves(value)) != on_disk:
        setting = _FIELD_SETTINGS.get(name, "the model")
        raise CheckpointError(
            f"{self.directory}/{step}: the checkpoint {'holds' if on_disk else 'has no'} "
            f"{name} but this run {'keeps none' if on_disk else 'needs them'}; {setting} "
            "changed since it was saved. Resume with the config it was saved with, or "
            "start a new workdir with checkpoint.init_from set to this one.")
    missing = [name for name in fields if name not in saved]
    item = {k: v for k, v in fields.items() if k in saved} if missing else target
    items = {"state": ocp.args.StandardRestore(item)}
    saved_by = self._data_processes(step)
    if data_iter is not None and saved_by == jax.process_count():
      items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))["state"]
    if data_iter is not None and saved_by != jax.process_count():
      _restart_data(data_iter, step, saved_by)
    logging.info("Restored step %d from %s.", step, self.directory)
    return state.replace(**restored) if missing else restored

  def _data_processes(self, step: int) -> int:
    """How many processes saved ``step``'s data iterator (one file each; 0: none)."""
    folder = os.path.join(self.directory, str(step), "data")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    counts = {n.rsplit("-of-", 1)[1].split(".")[0] for n in names
              if n.startswith("process_") and "-of-" in n}
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
  """The newest step of a workdir that has a saved ``state``.

  Raises:
    CheckpointError: the workdir has none.
  """
  directory = os.path.join(workdir, CHECKPOINTS_DIR)
  steps = [int(s) for s in os.listdir(directory) if s.isdigit()
           and os.path.isdir(os.path.join(directory, s, "state"))]
  if not steps:
    raise CheckpointError(f"{workdir}: the workdir has no saved checkpoint in {directory}.")
  return max(steps)


def read_state(workdir: str, step: int | None = None) -> dict[str, Any]:
  """The ``state`` tree of a workdir's step (default: `latest_step`) as numpy arrays.

  Read without a target, as host arrays, so the run's model, mesh and device count
  need not exist here.
  """
  step = latest_step(workdir) if step is None else step
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

  A workdir gives its latest step's variables and metadata ``{}``; a ported folder its
  variables and ``metadata.json``. Without ``target`` the arrays are numpy (read
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
      item = os.path.join(path, CHECKPOINTS_DIR, str(latest_step(path)), "state")
      variables = _read_sharded(item, {"params": "ema_params" if ema else "params",
                                       "batch_stats": "batch_stats"}, target)
      if ema and not variables.get("params"):
        raise _no_ema(path)
      return variables, {}
    state = read_state(path)
    params = state["params"]
    if ema:
      params = state.get("ema_params")
      if not params:
        raise _no_ema(path)
    variables = {"params": _as_numpy(params)}
    if state.get("batch_stats"):
      variables["batch_stats"] = _as_numpy(state["batch_stats"])
    return variables, {}
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
    step = latest_step(path)  # the step read_variables reads
    variables, _ = read_variables(path, ema=ema)
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
  count = head_classes(variables["params"])
  if count is None and metadata.get("num_classes"):
    count = int(metadata["num_classes"])
  return Checkpoint(path, "ported", variables, _overridden(config, overrides),
                    _names(metadata.get("class_names", []), count))
