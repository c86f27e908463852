"""Opens a checkpoint for diagnostics and inference: variables, model, config, class names.

A checkpoint ``CKPT`` is either

* a training workdir (``checkpoints/<step>/state`` from `time_jax.train.checkpoint`,
  ``config.json``, ``class_names.json``): the latest step's ``params`` and
  ``batch_stats``, the run's config (model, TIME layer, normalisation), its class names;
* a ported-weights folder (``variables/`` and ``metadata.json`` from
  ``python -m time_jax.port``): the model named in the metadata with the defaults of
  `time_jax.config.base_config` for everything else (override the TIME layer with
  ``n``, ``t_out``, ``image_size``, ``arrangement``).

Class names fall back to ``class_{i}`` when the checkpoint has none.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

from time_jax import config as config_lib
from time_jax import models

# Top-level modules whose kernel's last axis is the class count.
_HEADS = ("head", "fc", "classifier")


class CheckpointError(FileNotFoundError):
  """A path is not a readable training workdir or ported-weights folder."""


@dataclasses.dataclass
class Checkpoint:
  """A loaded checkpoint.

  Attributes:
    path: the folder it came from.
    kind: ``'workdir'`` or ``'ported'``.
    variables: ``{'params': ..., 'batch_stats'?: ...}`` as numpy trees.
    config: the run's config (ported: `base_config` with the model's name).
    class_names: one name per class (``class_{i}`` when unknown); empty without a head.
  """
  path: str
  kind: str
  variables: dict[str, Any]
  config: ml_collections.ConfigDict
  class_names: list[str]

  @property
  def model_name(self) -> str:
    return self.config.model.name

  @property
  def is_pretrainer(self) -> bool:
    return self.model_name.endswith("_pretrain")

  def build_model(self, **overrides) -> nn.Module:
    """The checkpoint's model in float32 for its config's clip size; ``overrides``
    replace constructor kwargs (e.g. ``mask_ratio``)."""
    kwargs = dict(self.config.model.get("kwargs", {}) or {})
    kwargs.pop("dtype", None)
    if self.is_pretrainer:
      kwargs["mask_ratio"] = float(self.config.pretrain.mask_ratio)
      num_classes = 0
    else:
      num_classes = len(self.class_names)
    kwargs.update(overrides)
    return models.create(self.model_name, num_classes=num_classes,
                         image_size=int(self.config.image_size),
                         num_frames=int(self.config.time.t_out), dtype=jnp.float32,
                         **kwargs)


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


def _latest_state(workdir: str) -> dict[str, Any]:
  """The latest step's ``state`` tree of a workdir, read without a target."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = os.path.join(workdir, "checkpoints")
  steps = [int(s) for s in os.listdir(directory) if s.isdigit()
           and os.path.isdir(os.path.join(directory, s, "state"))]
  if not steps:
    raise CheckpointError(f"{workdir}: the workdir has no saved checkpoint in {directory}.")
  path = os.path.join(directory, str(max(steps)), "state")
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  # The loop keeps _CHECKPOINT_METADATA at the step level, not in state/: orbax warns.
  absl_logger.setLevel(logging.ERROR)
  try:
    with ocp.PyTreeCheckpointer() as ckptr:
      # Host numpy arrays: the run's device layout need not exist here.
      meta = ckptr.metadata(path)
      meta = getattr(meta, "item_metadata", meta)
      as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                              getattr(meta, "tree", meta))
      tree = ckptr.restore(path, restore_args=as_numpy)
  except Exception as e:  # orbax raises many types for damaged folders
    raise CheckpointError(f"{path}: cannot restore the checkpoint ({e}).") from e
  finally:
    absl_logger.setLevel(level)
  return tree


def _as_numpy(tree):
  if isinstance(tree, dict):
    return {k: _as_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)


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


def load(path: str, *, n: int | None = None, t_out: int | None = None,
         image_size: int | None = None, arrangement: str | None = None) -> Checkpoint:
  """Opens a training workdir or a ported-weights folder.

  Args:
    path: the folder.
    n, t_out, image_size, arrangement: override the TIME layer / clip size the
      checkpoint's config has (a ported folder has only the defaults: N=2, T*=16, 224²).

  Raises:
    CheckpointError: ``path`` is missing or is neither kind of checkpoint, or its files
      cannot be read.
  """
  overrides = dict(n=n, t_out=t_out, image_size=image_size, arrangement=arrangement)
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CheckpointError(
        f"{path}: no such checkpoint folder; pass a training workdir (with "
        "checkpoints/) or a folder written by `python -m time_jax.port`.")
  if os.path.isdir(os.path.join(path, "checkpoints")):
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
      raise CheckpointError(f"{path}: the workdir has no config.json to rebuild its model.")
    config = ml_collections.ConfigDict(_read_json(config_path))
    state = _latest_state(path)
    variables = {"params": _as_numpy(state["params"])}
    if state.get("batch_stats"):
      variables["batch_stats"] = _as_numpy(state["batch_stats"])
    names_path = os.path.join(path, "class_names.json")
    names = _read_json(names_path) if os.path.isfile(names_path) else []
    count = head_classes(variables["params"])
    if count is None and not config.model.name.endswith("_pretrain"):
      count = len(names) or int(config.dataset.get("num_classes", 0) or 0) or None
    return Checkpoint(path, "workdir", variables, _overridden(config, overrides),
                      _names(names, count))
  if os.path.isfile(os.path.join(path, "metadata.json")):
    from time_jax.port import common  # pylint: disable=g-import-not-at-top
    try:
      variables, metadata = common.restore(path)
    except Exception as e:  # orbax raises many types for damaged folders
      raise CheckpointError(f"{path}: cannot restore the ported weights ({e}).") from e
    config = config_lib.base_config()
    config.model.name = metadata["model"]
    config.model.kwargs = ml_collections.ConfigDict()
    count = head_classes(variables["params"])
    if count is None and metadata.get("num_classes"):
      count = int(metadata["num_classes"])
    return Checkpoint(path, "ported", dict(variables), _overridden(config, overrides),
                      _names(metadata.get("class_names", []), count))
  raise CheckpointError(
      f"{path}: not a checkpoint; expected a training workdir (checkpoints/ and "
      "config.json) or a ported-weights folder (metadata.json).")
