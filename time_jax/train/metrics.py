"""Metric aggregation, multi-view evaluation and the writers (TensorBoard, console, JSONL).

* Training metrics are aggregated over a log window with ``clu.metrics`` (`train_collection`).
* Evaluation averages the logits of every view of a video (same ``index``), then
  computes top-1 (top-5 with more than 5 classes), per-class accuracy and the confusion
  matrix (`EvalAccumulator`), written as CSV and a matplotlib plot (`write_confusion`).
  Views that could not be decoded are tallied per video (`ViewTally`): a video with no
  decodable view is excluded from every metric and listed.
* `Writer` writes scalars and images to TensorBoard event files with tensorboardX, to the
  log and to ``metrics.jsonl`` (one JSON object a line, read by tests and scripts);
  only process 0 writes.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from typing import Any, Sequence

import jax
import numpy as np
from clu import metrics as clu_metrics


def train_collection(names: Sequence[str]) -> type[clu_metrics.Collection]:
  """A ``clu.metrics.Collection`` averaging each named scalar step output."""
  return clu_metrics.Collection.create(
      **{n: clu_metrics.Average.from_output(n) for n in names})


class ViewTally:
  """Which videos of an evaluation were read: valid and failed views per record index.

  Fed with the gathered ``index`` and ``valid`` of every eval batch (all processes'
  shares), so its lists cover the whole eval split. Padding (``index < 0``) is ignored;
  a view with ``index >= 0`` and ``valid`` False is one whose video could not be decoded.
  """

  def __init__(self):
    self.valid: dict[int, int] = {}   # record index -> views scored
    self.failed: dict[int, int] = {}  # record index -> views that could not be decoded

  def add(self, index: np.ndarray, valid: np.ndarray) -> None:
    """One gathered batch: ``index, valid [B]``."""
    for idx, ok in zip(np.asarray(index).tolist(), np.asarray(valid).tolist()):
      if idx < 0:
        continue
      counts = self.valid if ok else self.failed
      counts[idx] = counts.get(idx, 0) + 1

  def excluded(self) -> list[int]:
    """Record indices with no decodable view: left out of every metric, sorted."""
    return sorted(i for i in self.failed if i not in self.valid)

  def partial(self) -> list[int]:
    """Record indices scored on fewer views than asked (some failed), sorted."""
    return sorted(i for i in self.failed if i in self.valid)

  def scalars(self, prefix: str = "eval") -> dict[str, int]:
    """``{prefix}/num_videos`` scored, ``{prefix}/excluded`` (no view decoded),
    ``{prefix}/partial`` (some views failed), ``{prefix}/failed_views``."""
    return {f"{prefix}/num_videos": len(self.valid),
            f"{prefix}/excluded": len(self.excluded()),
            f"{prefix}/partial": len(self.partial()),
            f"{prefix}/failed_views": sum(self.failed.values())}


MERGES = ("logits", "softmax")


def softmax(logits: np.ndarray) -> np.ndarray:
  """float64 softmax over the last axis."""
  z = np.asarray(logits, np.float64)
  z = np.exp(z - z.max(-1, keepdims=True))
  return z / z.sum(-1, keepdims=True)


def merge_views(logits: np.ndarray, merge: str = "logits") -> np.ndarray:
  """One video's class probabilities from its views' logits (``input.eval_merge``).

  ``'softmax'``: the mean of the views' softmaxes (VideoMAE's test merge);
  ``'logits'``: the softmax of the mean logits.

  Args:
    logits: ``[views, num_classes]``.
    merge: one of `MERGES`.

  Returns:
    float64 ``[num_classes]``, summing to 1.
  """
  if merge == "softmax":
    return softmax(logits).mean(0)
  if merge == "logits":
    return softmax(np.asarray(logits, np.float64).mean(0))
  raise ValueError(f"merge_views: merge {merge!r}; use one of {MERGES}.")


class EvalAccumulator:
  """Merges each video's views (`merge_views`'s rules); reports accuracy after all
  batches.

  Views that failed to decode (``valid`` False) are left out of the sums and tallied
  (`ViewTally`); a video none of whose views decoded is excluded from every metric and
  listed by `result`.
  """

  def __init__(self, num_classes: int, merge: str = "logits"):
    if merge not in MERGES:
      raise ValueError(f"EvalAccumulator: merge {merge!r}; use one of {MERGES}.")
    self.num_classes, self.merge = num_classes, merge
    self.sums: dict[int, np.ndarray] = {}  # per video: summed logits or probabilities
    self.views: dict[int, int] = {}
    self.labels: dict[int, int] = {}
    self.tally = ViewTally()

  def add(self, logits: np.ndarray, label: np.ndarray, index: np.ndarray,
          valid: np.ndarray) -> None:
    """One gathered batch: ``logits [B, C]``, ``label, index, valid [B]``."""
    self.tally.add(index, valid)
    scores = np.asarray(logits, np.float64)
    if self.merge == "softmax":  # the mean of the views' probabilities
      scores = softmax(scores)
    for row, lab, idx, ok in zip(scores, label, index, valid):
      if not ok:
        continue
      idx = int(idx)
      self.sums[idx] = self.sums.get(idx, 0.0) + row
      self.views[idx] = self.views.get(idx, 0) + 1
      self.labels[idx] = int(lab)

  def result(self) -> dict[str, Any]:
    """The evaluation of the videos scored.

    Returns:
      ``top1`` (a fraction); ``top5`` only with more than 5 classes (with 5 or fewer
      every video would count); ``num_videos`` scored; ``excluded`` and ``partial``:
      sorted record indices of the videos with no decodable view (left out) and of
      those scored on only the views that decoded; ``failed_views``; ``per_class``
      ``[C]`` (NaN for classes without videos) and ``confusion`` ``[C, C]`` (rows: true,
      columns: predicted).
    """
    c = self.num_classes
    out = dict(num_videos=len(self.sums), excluded=self.tally.excluded(),
               partial=self.tally.partial(),
               failed_views=sum(self.tally.failed.values()))
    if not self.sums:
      out.update(top1=float("nan"), per_class=np.full(c, np.nan),
                 confusion=np.zeros((c, c), np.int64))
      if c > 5:
        out["top5"] = float("nan")
      return out
    idx = sorted(self.sums)
    scores = np.stack([self.sums[i] / self.views[i] for i in idx])  # [videos, C]
    labels = np.asarray([self.labels[i] for i in idx])
    pred = scores.argmax(-1)
    confusion = np.zeros((c, c), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    totals = confusion.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
      per_class = np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)
    out.update(top1=float(np.mean(pred == labels)), per_class=per_class,
               confusion=confusion)
    if c > 5:
      top5 = np.argsort(-scores, axis=-1)[:, :5]
      out["top5"] = float(np.mean((top5 == labels[:, None]).any(-1)))
    return out


def write_confusion(result: dict[str, Any], class_names: Sequence[str], out_dir: str,
                    prefix: str = "eval") -> None:
    """Writes ``{prefix}_confusion.csv``, ``{prefix}_per_class.csv`` and a PNG plot."""
    os.makedirs(out_dir, exist_ok=True)
    conf, names = result["confusion"], list(class_names)
    if len(names) != len(conf):
      names = [f"class_{i:03d}" for i in range(len(conf))]
    with open(os.path.join(out_dir, f"{prefix}_confusion.csv"), "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["true \\ predicted"] + names)
      for name, row in zip(names, conf):
        w.writerow([name] + row.tolist())
    with open(os.path.join(out_dir, f"{prefix}_per_class.csv"), "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["class", "videos", "accuracy"])
      for name, total, acc in zip(names, conf.sum(1), result["per_class"]):
        w.writerow([name, int(total), f"{acc:.4f}"])
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
    size = max(4.0, min(0.25 * len(names), 40.0))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    if len(names) <= 60:
      ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
      ax.set_yticks(range(len(names)), names, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    excluded = len(result.get("excluded", ()))
    ax.set_title(f"top-1 {100 * result['top1']:.2f}% ({result['num_videos']} videos"
                 + (f", {excluded} excluded as undecodable)" if excluded else ")"))
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, f"{prefix}_confusion.png"), dpi=120)
    plt.close(fig)


class Writer:
  """Scalars and images to TensorBoard (tensorboardX), the log and ``metrics.jsonl``.

  A resumed run calls `rewind` with the step it restarts from: the records of later
  steps, which the interrupted run wrote and the resumed one computes again, leave
  ``metrics.jsonl`` (and TensorBoard shows them no more), and a record that the
  resumed run writes again at that step (the final evaluation of a finished run
  started again) replaces the earlier one. Each step's train and eval records are then
  in the file once. Only process 0 writes.
  """

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    self._tb = None
    self._jsonl = None
    self._tb_dir = os.path.join(workdir, "tensorboard")
    self._path = os.path.join(workdir, "metrics.jsonl")
    self._replaceable: set[tuple[int, frozenset[str]]] = set()
    if self.active:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(self._tb_dir)
      self._jsonl = open(self._path, "a")

  @staticmethod
  def _sections(values) -> frozenset[str]:
    """The prefixes of a record's keys: ``{'train', 'input'}``, ``{'eval'}``."""
    return frozenset(k.split("/")[0] for k in values if k != "step")

  def _read(self) -> list[dict]:
    """The records of ``metrics.jsonl``; a line cut short by a kill is dropped, counted."""
    self._jsonl.flush()
    records, bad = [], 0
    with open(self._path) as f:
      for line in f:
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          bad += 1
    if bad:
      logging.warning("%s: dropped %d unreadable line(s) (a write cut short).",
                      self._path, bad)
    return records

  def _rewrite(self, records: list[dict]) -> None:
    self._jsonl.close()
    tmp = self._path + ".tmp"
    with open(tmp, "w") as f:
      for rec in records:
        f.write(json.dumps(rec) + "\n")
    os.replace(tmp, self._path)
    self._jsonl = open(self._path, "a")

  def rewind(self, step: int) -> None:
    """The run restarts from ``step``: forgets what was logged after it (class doc)."""
    if not self.active:
      return
    records = self._read()
    keep = [r for r in records if int(r.get("step", 0)) <= step]
    if len(keep) < len(records):
      logging.info("metrics.jsonl: %d record(s) after step %d dropped; the resumed run "
                   "logs those steps again.", len(records) - len(keep), step)
      self._rewrite(keep)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb.close()  # TensorBoard hides the events of steps >= purge_step
      self._tb = SummaryWriter(self._tb_dir, purge_step=step + 1)
    self._replaceable = {(step, self._sections(r)) for r in keep if int(r["step"]) == step}

  def scalars(self, step: int, values: dict[str, float], log: bool = True) -> None:
    """Writes ``values`` at ``step`` to TensorBoard and ``metrics.jsonl``; with ``log``
    also one log line (the training loop shows its windows as `console.Progress`)."""
    if not self.active:
      return
    values = {k: float(v) for k, v in values.items()}
    key = (int(step), self._sections(values))
    if key in self._replaceable:  # written at the restart step by the previous run
      self._replaceable.discard(key)
      self._rewrite([r for r in self._read()
                     if (int(r["step"]), self._sections(r)) != key])
    for k, v in values.items():
      self._tb.add_scalar(k, v, step)
    self._jsonl.write(json.dumps(dict(step=int(step), **values)) + "\n")
    self._jsonl.flush()
    if log:
      logging.info("[%d] %s", step, ", ".join(f"{k}={v:.5g}" for k, v in values.items()))

  def images(self, step: int, images: dict[str, np.ndarray]) -> None:
    """``images``: name -> ``[N, H, W, 3]`` float in [0, 1]."""
    if not self.active:
      return
    for k, v in images.items():
      self._tb.add_images(k, np.asarray(v, np.float32), step, dataformats="NHWC")

  def text(self, tag: str, text: str) -> None:
    if self.active:
      self._tb.add_text(tag, text, 0)

  def flush(self) -> None:
    if self.active:
      self._tb.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.active:
      self._tb.close()
      self._jsonl.close()
