"""Orbax checkpoints of the train state and the Grain iterator, asynchronous.

``workdir/checkpoints/<step>/`` holds ``state`` (the sharded `TrainState`: params,
optimizer state, step, RNG) and ``data`` (the train iterator's Grain state, one file per
process). Kept: the last ``checkpoint.keep`` and the ``checkpoint.keep_best`` best by
``score`` (top-1 when fine-tuning, minus the eval loss when pretraining), saved with
their eval metrics.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


def _abstract(state: Any) -> Any:
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


class Checkpointer:
  """An Orbax ``CheckpointManager`` for (state, data iterator)."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict):
    c = config.checkpoint
    keep = [policies.LatestN(n=int(c.keep))]
    if c.keep_best:
      keep.append(policies.BestN(get_metric_fn=lambda m: m["score"], n=int(c.keep_best),
                                 keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep),
        enable_async_checkpointing=bool(c.async_save), create=True)
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler()})

  def latest_step(self) -> int | None:
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
    """Restores ``step`` into ``state``'s shardings and ``data_iter`` in place."""
    items = {"state": ocp.args.StandardRestore(_abstract(state))}
    if data_iter is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    logging.info("Restored step %d from %s.", step, self.directory)
    return restored["state"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def restore_params(workdir: str) -> Any:
  """The ``params`` of the latest checkpoint of another run's workdir (``init_from``).

  Args:
    workdir: a previous run's workdir (with ``checkpoints/``), e.g. the pretraining
      phase; read without a target, so any model's tree works.

  Returns:
    the stored ``params`` tree, as numpy arrays.
  """
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  with ocp.CheckpointManager(directory, item_handlers={
      "state": ocp.StandardCheckpointHandler()}) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"config.checkpoint.init_from: {workdir} has no checkpoints.")
    path = os.path.join(directory, str(step), "state")
  with ocp.PyTreeCheckpointer() as ckptr:
    tree = ckptr.restore(path)
  logging.info("init_from: read params of step %d of %s.", step, workdir)
  return tree["params"]
