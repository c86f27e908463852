"""What differs between the modes of a run: classification and VideoMAE pretraining.

The loop (`time_jax.train.loop`) is the same for every ``config.mode``; a task supplies
the mode's pieces around the pure step factories of `time_jax.train.steps`:

* `Classification` (``finetune`` and ``eval``): cross-entropy with mixup/cutmix;
  evaluation averages the logits of every view of a video and reports top-1 (top-5
  with more than 5 classes), per-class accuracy and the confusion matrix; the score is
  top-1.
* `Pretraining` (``pretrain``): masked autoencoding with tube masks drawn on device;
  evaluation averages the reconstruction loss over the eval set with fixed masks and
  logs reconstructions of the first clips; the score is minus that loss.

Both leave out views that could not be decoded (``valid`` False) and report, over all
processes (the batches' ``index`` and ``valid`` are gathered): ``eval/num_videos``
scored, ``eval/excluded`` (videos with no decodable view, in no metric),
``eval/partial`` (videos scored on the views that decoded) and ``eval/failed_views``
(`metrics.ViewTally`). The final classification evaluation lists the excluded and
partial videos' paths in ``eval_results.json``.

``task = tasks.for_config(config, model, num_classes)``; the loop then calls
``task.init_fn()``, ``task.train_step(tx)``, ``task.eval_step(shardings, mesh)``,
``task.evaluate(...)``, ``task.write_reports(...)`` and ``task.score(...)``.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from time_jax.data import pipeline
from time_jax.models import videomae
from time_jax.train import metrics as metrics_lib
from time_jax.train import steps as steps_lib

EVAL_RESULTS_FILE = "eval_results.json"


def gather(x) -> np.ndarray:
  """A process-local or global batch-sharded array -> the global numpy batch."""
  if jax.process_count() == 1:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


class Classification:
  """Fine-tuning and evaluating a classifier."""
  batch_keys = ("frames", "label")

  def __init__(self, config: ml_collections.ConfigDict, model: nn.Module,
               num_classes: int):
    self.config, self.model, self.num_classes = config, model, num_classes

  def _dummy_inputs(self, rng: jax.Array) -> tuple[jax.Array, ...]:
    del rng
    c = self.config
    return (jnp.zeros((1, c.time.t_out, c.image_size, c.image_size, 3),
                      steps_lib.compute_dtype(c)),)

  def init_fn(self) -> Callable[[jax.Array], dict[str, Any]]:
    """``rng -> {'params', 'batch_stats'?}`` on a one-clip dummy input."""
    def init(rng):
      variables = self.model.init({"params": rng}, *self._dummy_inputs(rng), train=False)
      return {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    return init

  def train_step(self, tx: optax.GradientTransformation):
    """The pure ``(state, batch, rng) -> (state, metrics)`` step."""
    return steps_lib.make_finetune_step(self.model, self.config, tx, self.num_classes)

  def eval_step(self, state_shardings: Any, mesh: Mesh):
    """The jitted ``(state, batch) -> logits [B, classes]``."""
    return steps_lib.jit_eval_step(steps_lib.make_eval_step(self.model, self.config),
                                   state_shardings, mesh)

  def evaluate(self, eval_step, state, batches: Iterable[dict[str, np.ndarray]],
               mesh: Mesh) -> tuple[dict[str, float], dict[str, Any]]:
    """``(scalars, result)``: multi-view top-1 (and top-5 with more than 5 classes),
    the `ViewTally` counts, and `EvalAccumulator.result`."""
    acc = metrics_lib.EvalAccumulator(self.num_classes,
                                      self.config.input.get("eval_merge", "logits"))
    for batch in batches:
      gb = steps_lib.global_batch(batch, mesh, keys=("frames",))
      logits = gather(eval_step(state, gb))
      acc.add(logits, *(gather(batch[k]) for k in ("label", "index", "valid")))
    res = acc.result()
    scalars = {"eval/top1": res["top1"]}
    if "top5" in res:
      scalars["eval/top5"] = res["top5"]
    scalars.update(acc.tally.scalars())
    return scalars, res

  def write_reports(self, result: dict[str, Any], step: int, *, final: bool,
                    writer: metrics_lib.Writer, workdir: str,
                    info: pipeline.PipelineInfo) -> None:
    """At the final evaluation, on process 0: the confusion matrix and
    ``eval_results.json``: ``step``, ``top1``, ``views`` per video and how they were
    merged (``merge``, ``input.eval_merge``), ``top5`` (more than 5 classes only),
    ``num_videos`` scored, ``mean_class_accuracy``, and the paths of the eval split's
    (``info.records``) ``excluded`` videos (no view decoded; in no metric) and
    ``partial`` ones (scored on the views that decoded), with ``failed_views``."""
    del writer
    if not final or jax.process_index() != 0:
      return
    metrics_lib.write_confusion(result, info.class_names, workdir)
    report = dict(step=step, top1=result["top1"],
                  views=info.num_views,
                  merge=self.config.input.get("eval_merge", "logits"))
    if "top5" in result:
      report["top5"] = result["top5"]
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # all NaN: no video scored
      report["mean_class_accuracy"] = float(np.nanmean(result["per_class"]))
    report.update(num_videos=result["num_videos"],
                  excluded=[info.records[i].path for i in result["excluded"]],
                  partial=[info.records[i].path for i in result["partial"]],
                  failed_views=result["failed_views"])
    with open(os.path.join(workdir, EVAL_RESULTS_FILE), "w") as f:
      json.dump(report, f, indent=2)

  def score(self, scalars: dict[str, float]) -> float:
    """Higher is better: top-1."""
    return scalars["eval/top1"]


class Pretraining(Classification):
  """VideoMAE masked autoencoding (no labels, no head)."""
  batch_keys = ("frames",)

  def _dummy_inputs(self, rng: jax.Array) -> tuple[jax.Array, ...]:
    c, m = self.config, self.model
    mask = videomae.tube_mask(rng, 1, c.time.t_out, c.image_size, m.patch_size,
                              m.tubelet_size, m.mask_ratio)
    return super()._dummy_inputs(rng) + (mask,)

  def train_step(self, tx: optax.GradientTransformation):
    return steps_lib.make_pretrain_step(self.model, self.config, tx)

  def eval_step(self, state_shardings: Any, mesh: Mesh):
    """The jitted ``(state, batch, rng) -> (loss [B], original, masked, recon)``."""
    return steps_lib.jit_eval_step(
        steps_lib.make_pretrain_eval_step(self.model, self.config), state_shardings, mesh,
        with_rng=True)

  def evaluate(self, eval_step, state, batches: Iterable[dict[str, np.ndarray]],
               mesh: Mesh) -> tuple[dict[str, float], dict[str, Any]]:
    """``(scalars, {'images'})``: the mean reconstruction loss over valid clips with
    the `ViewTally` counts, and ``[input, masked, reconstruction]`` of the first
    ``pretrain.recon_images`` clips."""
    total, count, images = 0.0, 0, None
    tally = metrics_lib.ViewTally()
    base = jax.random.PRNGKey(self.config.seed + 1)  # the same masks at every eval
    for i, batch in enumerate(batches):
      gb = steps_lib.global_batch(batch, mesh, keys=("frames",))
      loss, orig, masked, recon = eval_step(state, gb, jax.random.fold_in(base, i))
      loss, valid = gather(loss), gather(batch["valid"])
      tally.add(gather(batch["index"]), valid)
      total += float(loss[valid].sum())
      count += int(valid.sum())
      if i == 0:
        k = self.config.pretrain.recon_images
        images = [gather(a)[:k] for a in (orig, masked, recon)]
    return {"eval/loss": total / max(count, 1), **tally.scalars()}, {"images": images}

  def write_reports(self, result: dict[str, Any], step: int, *, final: bool,
                    writer: metrics_lib.Writer, workdir: str,
                    info: pipeline.PipelineInfo) -> None:
    """Logs the reconstructions as one image per clip: rows input / masked /
    reconstruction, frames left to right."""
    del final, workdir, info
    images = result["images"]
    if images is not None and len(images[0]):
      rows = [np.concatenate(list(a), axis=-2) for a in images]  # [k, H, t·W, 3] each
      writer.images(step, {"reconstruction": np.concatenate(rows, axis=-3)})

  def score(self, scalars: dict[str, float]) -> float:
    """Higher is better: minus the reconstruction loss."""
    return -scalars["eval/loss"]


def for_config(config: ml_collections.ConfigDict, model: nn.Module,
               num_classes: int) -> Classification:
  """The task of ``config.mode``: `Pretraining` for ``'pretrain'``, else `Classification`."""
  cls = Pretraining if config.mode == "pretrain" else Classification
  return cls(config, model, num_classes)
