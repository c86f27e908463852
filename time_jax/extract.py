r"""Features of a whole dataset, or of windows along long videos, from a trained model.

  python -m time_jax.extract --checkpoint CKPT --out DIR --config FILE[:ARG] [--split eval]
  python -m time_jax.extract --checkpoint CKPT --out DIR --videos FOLDER_OR_LIST
      [--views KxC] [--per-view] [--logits] [--probabilities] [--every S [--window S]]
      [--ema | --no-ema] [--batch-size B] [--config.FIELD=VALUE ...]

CKPT is a training workdir (its newest step; raw or EMA parameters, chosen as
`time_jax.predict` chooses them) or a ported-weights folder holding a classifier.
The videos are a config's split (``--config`` as `time_jax.main` takes it, ``--split
train|eval``) or video files: ``--videos`` names a folder (its video files, in its
subfolders too, sorted) or a list file (one path a line, optionally followed by an
integer label; relative paths start at the list's folder; ``#`` comments).

Every video is read through the evaluation pipeline (`pipeline.build(config, 'eval')`:
its views, crops, sampling, read threads, workers, packed caches) and the model runs
data-parallel over every device of every process. The config says how to read and
present the videos: ``--config``, or without it the checkpoint's own config; either
way ``--config.FIELD=VALUE`` overrides a field (``--config.input.eval_batch_size=64``,
``--config.input.num_workers=4``). The checkpoint supplies the model and its weights;
where a workdir's config presents clips otherwise (TIME layer, clip size, sampling,
normalisation), one warning names the fields.

DIR receives, readable without time_jax::

  features.npy       float32 [rows, D]      the pooled pre-logits features (``--per-view``:
                     [rows, views, D]); merged: the mean over the views that decoded
  logits.npy         float32 [rows, C]      with --logits (merged: the views' mean)
  probabilities.npy  float32 [rows, C]      with --probabilities (merged as evaluation
                     merges, ``input.eval_merge``: `metrics.merge_views`)
  index.csv          video, label, row, status, reason (window mode: + window, start, end)
  meta.json          checkpoint, step, feature size, views, merge, TIME n and t_out,
                     sampling, the arrays' shapes, counts of ok / partial / failed rows

    import csv, json, numpy as np
    features = np.load("DIR/features.npy", mmap_mode="r")       # [rows, D]
    index = list(csv.DictReader(open("DIR/index.csv")))         # index[i]["video"] ...

A row per video, in the split's (or the list's) order; ``--every S`` instead gives a
row per window of every video (windows starting every S seconds, each the span of one
clip or ``--window`` seconds: `time_jax.timeline`), with its start and end in seconds.
``status`` is ``ok``, ``partial`` (some views did not decode: merged over those that
did; per view, the others are NaN) or ``failed`` (nothing decoded: a NaN row), with the
reader's ``reason``. Labels are the split's class indices (empty for files without
one); ``meta.json`` lists the model's class names and the split's.

Resumable: rows are written to the memory-mapped arrays as batches finish, and each
process appends the rows it wrote to ``parts/process_<i>-of-<n>.csv`` after they are on
disk. Rerunning a killed extraction with the same settings skips those rows (losing at
most the batches in flight); other settings on the same DIR are an error naming the
first difference. At the end process 0 writes ``index.csv`` from the parts and
``meta.json`` says ``complete``.

Several processes (``--coordinator_address --num_processes --process_id``, SLURM or Open
MPI, as `time_jax.main`): each reads its share of the videos, the outputs are gathered
as evaluation gathers them, and each process writes the rows of the videos it read;
DIR must be on a file system every process sees.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sys
import time
from typing import Any, Iterator, Sequence

from absl import flags
from absl import logging as absl_logging
import flax
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from time_jax import checkpoints
from time_jax import console
from time_jax import models
from time_jax import predict
from time_jax import timeline
from time_jax.data import config as data_config
from time_jax.data import pipeline
from time_jax.data import protocols
from time_jax.data import sources
from time_jax.data import transforms
from time_jax.data import video as video_lib
from time_jax.data.base import ClipReader, DecodeError, ProtocolError, Record, Splits
from time_jax.diagnose import inputs
from time_jax.train import metrics
from time_jax.train import multihost
from time_jax.train import sharding
from time_jax.train import steps
from time_jax.train import tasks

FORMAT = "time_jax.extract/1"
META_FILE, INDEX_FILE, PARTS_DIR = "meta.json", "index.csv", "parts"
OUTPUTS = ("features", "logits", "probabilities")
STATUSES = ("ok", "partial", "failed")
INDEX_COLUMNS = ("video", "label", "row", "status", "reason")
WINDOW_COLUMNS = ("window", "start", "end")
# Fields of a config that decide what the model sees, compared with a workdir's own.
_INPUT_FIELDS = ("time.n", "time.t_out", "time.arrangement", "time.sampling",
                 "time.dense_stride", "image_size", "input.mean", "input.std")
# The meta.json entries a rerun on the same DIR must share to resume it.
_SETTINGS = ("checkpoint", "step", "ema", "model", "outputs", "views", "n", "t_out",
             "image_size", "arrangement", "sampling", "mean", "std", "windows", "items",
             "arrays")
LOG_EVERY_S = 30.0  # progress lines when the console is not a terminal


@dataclasses.dataclass(frozen=True)
class Item:
  """One row of the output: a video, or one window of it.

  Attributes:
    record: what the pipeline reads (a `timeline.window_record` in window mode).
    video: the video's name in the index.
    label: its class index (-1: none).
    source: its position in the list of videos.
    window: the window (window mode).
    error: why the video could not be read before extraction (window mode's probe);
      such an item is a failed row without being read again.
  """
  record: Record
  video: str
  label: int
  source: int
  window: timeline.Window | None = None
  error: str = ""


@dataclasses.dataclass
class Views:
  """One item's views as the model saw them.

  Attributes:
    position: the item's position in the records given to `Extractor.run`.
    features: float32 ``[views, D]``.
    logits: float32 ``[views, C]`` (None for a model without head).
    valid: bool ``[views]``: the view decoded.
    process: the process that read its first view (it writes the row).
    seen: views received so far.
  """
  position: int
  features: np.ndarray
  logits: np.ndarray | None
  valid: np.ndarray
  process: int
  seen: int = 0


@dataclasses.dataclass
class Row:
  """What is written for one item: ``arrays`` by output name, ``status``, ``reason``."""
  arrays: dict[str, np.ndarray]
  status: str
  reason: str = ""


# ----------------------------------------------------------------------------------
# The model over every device.
# ----------------------------------------------------------------------------------

class Extractor:
  """A checkpoint's classifier run data-parallel over every device on eval batches.

  Args:
    ckpt: the loaded checkpoint (its model and weights).
    config: how to read and present the videos (``dataset``, ``input``, ``time``,
      ``image_size``); its ``model`` is replaced by the checkpoint's.
    clips, crops: views per item (default: ``input.eval_clips`` × ``input.eval_crops``).
    batch_size: views per global batch (default ``input.eval_batch_size``), rounded up
      to a multiple of the device count.

  Raises:
    ValueError: the checkpoint holds no classifier, or its weights do not fit the model
      the config describes (another clip size or T*).
  """

  def __init__(self, ckpt: checkpoints.Checkpoint, config: ml_collections.ConfigDict, *,
               clips: int | None = None, crops: int | None = None,
               batch_size: int | None = None):
    if ckpt.is_pretrainer:
      raise ValueError(f"{ckpt.path} holds {ckpt.model_name!r}, a masked autoencoder "
                       "without pooled features; extract reads a classifier (a "
                       "fine-tuned or ported one).")
    c = config.copy_and_resolve_references()
    c.unlock()
    c.model = ckpt.config.model.copy_and_resolve_references()
    c.input.eval_clips = int(clips or c.input.eval_clips)
    c.input.eval_crops = int(crops or c.input.eval_crops)
    predict.parse_views(f"{c.input.eval_clips}x{c.input.eval_crops}")
    c.dataset.max_bad_fraction = 1.0  # an undecodable video is a row, never a stop
    devices = jax.device_count()
    batch = int(batch_size or c.input.eval_batch_size)
    c.input.eval_batch_size = -(-batch // devices) * devices
    self.config, self.ckpt = c, ckpt
    self.num_views = c.input.eval_clips * c.input.eval_crops
    self.num_classes = len(ckpt.class_names)
    self.merge = str(c.input.get("eval_merge", "logits"))
    self.sampling = transforms.sampling(c)
    model = models.from_config(c, self.num_classes, dtype=jnp.float32)

    def infer(variables, frames):
      return models.logits_and_features(model, variables, inputs.model_input(frames, c))

    self.mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=-1, fsdp=1,
                                                                 model=1)))
    rep, data = sharding.replicated(self.mesh), sharding.batch_sharding(self.mesh)
    cell = c.image_size // c.time.n
    spec = jax.ShapeDtypeStruct((1, c.time.t_out * c.time.n ** 2, cell, cell, 3), jnp.uint8)
    try:
      _, features = jax.eval_shape(infer, ckpt.variables, spec)
    except (flax.errors.FlaxError, TypeError, ValueError) as e:
      raise ValueError(f"{ckpt.path}: its weights do not fit {c.model.name!r} at "
                       f"image_size={c.image_size}, time.t_out={c.time.t_out} (the "
                       f"config's clip): {str(e).splitlines()[0]}") from e
    self.feature_size = int(features.shape[-1])
    self.variables = jax.device_put(ckpt.variables, rep)
    # (variables, uint8 frames [batch, t_out·n², cell, cell, 3] over the devices) ->
    # (logits [batch, C], features [batch, D]), batch-sharded.
    self.step = jax.jit(infer, in_shardings=(rep, data), out_shardings=(data, data))

  def run(self, records: Sequence[Record], reader: ClipReader) -> Iterator[list[Views]]:
    """Reads ``records`` through the eval pipeline; yields, per batch, the items whose
    views are all in (every process yields the same: the outputs are gathered)."""
    ds, info = pipeline.build(self.config, "eval", seed=0, reader=reader,
                              splits=Splits([], list(records), []))
    pending: dict[int, Views] = {}
    previous = None
    batches = iter(ds)
    try:
      for batch in batches:  # the next batch decodes while the device runs the last one
        frames = steps.global_batch(batch, self.mesh, keys=("frames",))["frames"]
        current = (self.step(self.variables, frames),
                   {k: batch[k] for k in ("index", "view", "valid")})
        if previous is not None:
          yield self._collect(*previous, pending, info.local_batch_size)
        previous = current
    finally:
      batches.close()  # Grain's worker processes and their shared memory
    if previous is not None:
      yield self._collect(*previous, pending, info.local_batch_size)
    if pending:  # every (record, view) is in the eval stream once
      raise RuntimeError(f"extract: {len(pending)} items lack views at the end.")

  def _collect(self, outputs, meta, pending: dict[int, Views], local_batch: int
               ) -> list[Views]:
    logits, features = (tasks.gather(x) for x in outputs)
    index, view, valid = (tasks.gather(meta[k]) for k in ("index", "view", "valid"))
    done = []
    for i in np.flatnonzero(index >= 0).tolist():
      position = int(index[i])
      item = pending.get(position)
      if item is None:
        v = self.num_views
        item = pending[position] = Views(
            position, np.zeros((v, self.feature_size), np.float32),
            np.zeros((v, self.num_classes), np.float32) if self.num_classes else None,
            np.zeros(v, bool), i // local_batch)
      item.features[view[i]] = features[i]
      if item.logits is not None:
        item.logits[view[i]] = logits[i]
      item.valid[view[i]] = valid[i]
      item.seen += 1
      if item.seen == self.num_views:
        done.append(pending.pop(position))
    return done

  def combine(self, views: Views, outputs: Sequence[str], per_view: bool) -> Row:
    """The arrays of one item: per view (failed views NaN) or merged over the views
    that decoded (features and logits: their mean; probabilities: `merge_views`)."""
    valid = views.valid
    status = "ok" if valid.all() else "partial" if valid.any() else "failed"
    out = {}
    for name in outputs:
      if name == "features":
        x = views.features
      elif name == "logits":
        x = views.logits
      else:  # each view's probabilities
        x = metrics.softmax(views.logits)
      x = x.astype(np.float32)
      if per_view:
        out[name] = np.where(valid[:, None], x, np.nan).astype(np.float32)
      elif not valid.any():
        out[name] = np.full(x.shape[1:], np.nan, np.float32)
      elif name == "probabilities":
        out[name] = metrics.merge_views(views.logits[valid], self.merge).astype(np.float32)
      else:
        out[name] = x[valid].mean(0)
    return Row(out, status)

  def reason(self, reader: ClipReader, record: Record, valid: np.ndarray) -> str:
    """Why an item's views failed: the reader's error for its first failed view."""
    failed = np.flatnonzero(~valid)
    clip = int(failed[0]) // self.config.input.eval_crops
    choose = functools.partial(self.sampling.eval, clip=clip,
                               num_clips=self.config.input.eval_clips)
    try:
      reader.read(record, choose)
      text = "it failed to decode during extraction and decoded when read again"
    except DecodeError as e:
      text = str(e)
    if len(failed) < len(valid):
      text = f"{len(failed)} of {len(valid)} views failed: {text}"
    return text


# ----------------------------------------------------------------------------------
# What to extract: videos, or windows of them.
# ----------------------------------------------------------------------------------

def video_records(spec: str) -> list[Record]:
  """The videos of ``--videos``: a folder's video files (recursively, sorted; named by
  their path in the folder) or a list file's lines (``path [label]``).

  Raises:
    ValueError: no such folder or file, no video in the folder, a malformed line.
  """
  if os.path.isdir(spec):
    root = os.path.abspath(spec)
    names = sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, files in os.walk(root) for f in files
        if os.path.splitext(f)[1].lower() in protocols.VIDEO_EXTENSIONS)
    if not names:
      raise ValueError(f"--videos {spec}: the folder holds no video files "
                       f"({' '.join(protocols.VIDEO_EXTENSIONS)}).")
    return [Record(os.path.join(root, n), -1, video_id=n) for n in names]
  if not os.path.isfile(spec):
    raise ValueError(f"--videos {spec}: no such folder or list file.")
  root = os.path.dirname(os.path.abspath(spec))
  out = []
  with open(spec) as f:
    for number, line in enumerate(f, 1):
      parts = line.split("#", 1)[0].split()
      if not parts:
        continue
      if len(parts) > 2 or (len(parts) == 2 and not re.fullmatch(r"-?\d+", parts[1])):
        raise ValueError(f"--videos {spec} line {number}: write 'path' or 'path label' "
                         f"(an integer), not {line.strip()!r}.")
      label = int(parts[1]) if len(parts) == 2 else -1
      out.append(Record(os.path.join(root, parts[0]), label, video_id=parts[0]))
  if not out:
    raise ValueError(f"--videos {spec}: the list names no video.")
  return out


def window_items(records: Sequence[Record], reader: ClipReader, *, every: float,
                 span: float | None, sampling: transforms.Sampling,
                 fps: float | None = None, threads: int = 4) -> list[Item]:
  """The windows of every record (`timeline.windows`), in order; a record that cannot
  be probed is one item with its ``error``. Each process probes ``records[i::count]``
  and the counts are gathered."""
  pi, pc = jax.process_index(), jax.process_count()
  share = list(range(pi, len(records), pc))

  def one(i):
    try:
      return timeline.probe(reader, records[i], fps) + ("",)
    except DecodeError as e:
      return -1, 0.0, str(e)

  with _thread_pool(threads) as pool:
    probed = dict(zip(share, pool.map(one, share)))
  table = np.full((len(records), 2), -1.0)
  for i, (count, rate, _) in probed.items():
    table[i] = count, rate
  if pc > 1:  # each row was probed by one process; -1 elsewhere
    table = np.asarray(multihost_utils.process_allgather(table)).max(0)
  items = []
  for i, r in enumerate(records):
    count, rate = int(table[i, 0]), float(table[i, 1])
    if count < 0:
      error = probed[i][2] if i in probed else f"process {i % pc} could not read it"
      items.append(Item(r, r.name, r.label, i, error=error))
      continue
    length = span if span else timeline.default_span(sampling, rate, every)
    items += [Item(timeline.window_record(r, w), r.name, r.label, i, w)
              for w in timeline.windows(count, rate, every, length)]
  return items


def _thread_pool(threads: int):
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  return concurrent.futures.ThreadPoolExecutor(max(int(threads), 1))


# ----------------------------------------------------------------------------------
# The output folder.
# ----------------------------------------------------------------------------------

def _short(value: Any) -> str:
  text = json.dumps(value)
  return text if len(text) <= 80 else text[:77] + "..."


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _write_atomic(path: str, text: str) -> None:
  with open(path + ".tmp", "w", newline="") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def _digest(items: Sequence[Item]) -> str:
  h = hashlib.sha1()
  for it in items:
    w = it.window
    h.update(f"{it.video}\t{it.label}\t{w.start_frame if w else ''}-"
             f"{w.end_frame if w else ''}\n".encode())
  return h.hexdigest()


class Store:
  """The output folder of one extraction (module docstring): arrays, parts, index.

  Args:
    out: the folder.
    meta: the settings `meta.json` records (`_SETTINGS` must match to resume).
    shapes: ``{output name: array shape}``, rows first.
  """

  def __init__(self, out: str, meta: dict[str, Any], shapes: dict[str, tuple[int, ...]]):
    self.out, self.meta, self.shapes = os.path.abspath(out), meta, shapes
    self.arrays: dict[str, np.ndarray] = {}
    self._log = None

  def path(self, name: str) -> str:
    return os.path.join(self.out, name)

  def open(self) -> dict[int, tuple[str, str]]:
    """Creates the folder or checks it holds this extraction; opens the arrays; returns
    the rows already written, ``{row: (status, reason)}``. A collective."""
    _barrier("extract:open")
    old = self._read_meta()
    if old is not None:
      for key in _SETTINGS:
        if old.get(key) != self.meta.get(key):
          raise ValueError(
              f"--out {self.out} holds an extraction with other settings ({key}: "
              f"{_short(old.get(key))} there, {_short(self.meta.get(key))} now); choose "
              "another --out, or delete it to start over.")
    elif jax.process_index() == 0:
      os.makedirs(self.out, exist_ok=True)
      for name, shape in self.shapes.items():
        np.lib.format.open_memmap(self.path(f"{name}.npy"), mode="w+", dtype=np.float32,
                                  shape=shape).flush()
      self._write_meta(dict(self.meta, complete=False))
    _barrier("extract:created")
    self.arrays = {name: np.load(self.path(f"{name}.npy"), mmap_mode="r+")
                   for name in self.shapes}
    done = self.written()
    _barrier("extract:planned")  # nobody writes before every process has read
    return done

  def _read_meta(self) -> dict[str, Any] | None:
    path = self.path(META_FILE)
    if not os.path.exists(path):
      ours = {f"{name}.npy" for name in OUTPUTS} | {META_FILE + ".tmp"}
      others = set(os.listdir(self.out)) - ours if os.path.isdir(self.out) else set()
      if others:  # (ours alone: a run killed before it wrote meta.json)
        raise ValueError(f"--out {self.out} holds other files ({sorted(others)[0]}, ...) "
                         f"and no {META_FILE}; choose an empty or new folder.")
      return None
    with open(path) as f:
      return json.load(f)

  def _write_meta(self, meta: dict[str, Any]) -> None:
    _write_atomic(self.path(META_FILE), json.dumps(meta, indent=1, ensure_ascii=False))

  def written(self) -> dict[int, tuple[str, str]]:
    """``{row: (status, reason)}`` of the rows on disk: ``index.csv`` and the parts."""
    done = {}
    files = [self.path(INDEX_FILE)] if os.path.isfile(self.path(INDEX_FILE)) else []
    parts = self.path(PARTS_DIR)
    if os.path.isdir(parts):
      files += [os.path.join(parts, n) for n in sorted(os.listdir(parts))
                if n.endswith(".csv")]
    for path in files:
      with open(path, newline="") as f:
        text = f.read()
      if not text.endswith("\n"):  # a line cut short by a kill: not written
        text = text[:text.rfind("\n") + 1]
      for row in csv.DictReader(io.StringIO(text)):
        if row.get("status") in STATUSES and (row.get("row") or "").isdigit():
          done[int(row["row"])] = (row["status"], row.get("reason") or "")
    return done

  def write(self, rows: Sequence[tuple[int, Row]]) -> None:
    """Writes rows to the arrays, flushes them, then records them in this process's
    part (so a recorded row is on disk)."""
    if not rows:
      return
    for row, r in rows:
      for name, value in r.arrays.items():
        self.arrays[name][row] = value
    for array in self.arrays.values():
      array.flush()
    if self._log is None:
      os.makedirs(self.path(PARTS_DIR), exist_ok=True)
      name = f"process_{jax.process_index()}-of-{jax.process_count()}.csv"
      self._log = os.open(os.path.join(self.path(PARTS_DIR), name),
                          os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
      if os.fstat(self._log).st_size == 0:
        os.write(self._log, b"row,status,reason\n")
      else:  # a killed run may have left half a line
        os.write(self._log, b"\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row, r in rows:
      writer.writerow([row, r.status, r.reason])
    os.write(self._log, buffer.getvalue().encode())  # one write: whole lines

  def finish(self, items: Sequence[Item]) -> dict[str, int]:
    """Process 0: ``index.csv`` from the parts, ``meta.json`` complete; returns the
    counts per status. A collective."""
    if self._log is not None:
      os.close(self._log)
      self._log = None
    _barrier("extract:written")
    done = self.written()
    counts = {s: sum(1 for st, _ in done.values() if st == s) for s in STATUSES}
    if jax.process_index() == 0:
      missing = [r for r in range(len(items)) if r not in done]
      if missing:
        raise RuntimeError(f"extract: {len(missing)} rows were not written (the first: "
                           f"{missing[0]}); rerun to complete them.")
      windows = any(it.window is not None for it in items)
      buffer = io.StringIO()
      writer = csv.writer(buffer, lineterminator="\n")
      writer.writerow(INDEX_COLUMNS + (WINDOW_COLUMNS if windows else ()))
      for row, it in enumerate(items):
        status, reason = done[row]
        line = [it.video, "" if it.label < 0 else it.label, row, status, reason]
        if windows:
          w = it.window
          line += ["", "", ""] if w is None else [w.index, f"{w.start:.3f}", f"{w.end:.3f}"]
        writer.writerow(line)
      _write_atomic(self.path(INDEX_FILE), buffer.getvalue())
      self._write_meta(dict(self.meta, complete=True, counts=counts))
      shutil.rmtree(self.path(PARTS_DIR), ignore_errors=True)
    _barrier("extract:finished")
    return counts


# ----------------------------------------------------------------------------------
# Progress.
# ----------------------------------------------------------------------------------

class _Progress:
  """Items done of ``total`` with items/s and the ETA: a tqdm bar on a terminal (from
  the first batch, so its rate leaves out compiling), else a log line every
  `LOG_EVERY_S` seconds and at the end; shown by process 0 only."""

  def __init__(self, total: int, unit: str, views: int):
    self.total, self.unit, self.views, self.done = total, unit, views, 0
    enabled = jax.process_index() == 0
    self.live = enabled and sys.stderr.isatty()
    self.log = enabled and not self.live
    self.bar = None
    self.start = self.last = time.monotonic()

  def update(self, count: int) -> None:
    if not count:
      return
    self.done += count
    if self.live:
      if self.bar is None:
        self.bar = console.bar(sys.stderr, total=self.total, unit=self.unit,
                               desc="extract")
      self.bar.update(count)
    elif self.log and (time.monotonic() - self.last > LOG_EVERY_S or
                       self.done == self.total):
      self.last = time.monotonic()
      rate = self.done / max(self.last - self.start, 1e-9)
      eta = (self.total - self.done) / max(rate, 1e-9)
      logging.info("extract: %d/%d %ss | %.1f %ss/s (%.1f clips/s) | ETA %s",
                   self.done, self.total, self.unit, rate, self.unit, rate * self.views,
                   console.duration(eta))

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


# ----------------------------------------------------------------------------------
# Running an extraction.
# ----------------------------------------------------------------------------------

def _meta(extractor: Extractor, items: Sequence[Item], shapes, *, per_view: bool,
          windows: dict | None, source: dict, label_names: Sequence[str]) -> dict:
  ckpt, c = extractor.ckpt, extractor.config
  return {
      "format": FORMAT,
      "checkpoint": ckpt.path, "checkpoint_kind": ckpt.kind, "step": ckpt.step,
      "ema": ckpt.ema, "model": c.model.name,
      "feature_size": extractor.feature_size, "num_classes": extractor.num_classes,
      "class_names": list(ckpt.class_names), "label_names": list(label_names),
      "rows": len(items), "outputs": list(shapes),
      "arrays": {name: {"file": f"{name}.npy", "shape": list(shape), "dtype": "float32"}
                 for name, shape in shapes.items()},
      "views": {"clips": c.input.eval_clips, "crops": c.input.eval_crops,
                "per_view": per_view,
                "crop_fraction": float(c.input.get("eval_crop_fraction", 0.875)),
                "merge": {"features": "mean", "logits": "mean", "probabilities": extractor.merge}},
      "n": int(c.time.n), "t_out": int(c.time.t_out), "image_size": int(c.image_size),
      "arrangement": str(c.time.arrangement),
      "sampling": {"rule": extractor.sampling.rule, "dense_stride": extractor.sampling.stride},
      "mean": list(inputs.stats(c)["mean"]), "std": list(inputs.stats(c)["std"]),
      "windows": windows, "source": source, "items": _digest(items),
      "jax_version": jax.__version__,
  }


@dataclasses.dataclass
class Summary:
  """What an extraction did: rows in all, written before this run, per status."""
  rows: int
  resumed: int
  counts: dict[str, int]
  meta: dict[str, Any]


def extract(extractor: Extractor, items: Sequence[Item], reader: ClipReader, out: str, *,
            outputs: Sequence[str] = ("features",), per_view: bool = False,
            windows: dict | None = None, source: dict | None = None,
            label_names: Sequence[str] = ()) -> Summary:
  """Extracts ``items`` into ``out`` (module docstring), resuming what is written there.

  Args:
    extractor: the model.
    items: the rows, in order (`video_items` or `window_items`).
    reader: reads the items' records (a `timeline.WindowReader` for windows).
    out: the output folder.
    outputs: some of `OUTPUTS` (features first).
    per_view: keep each view's row instead of merging them.
    windows: window mode's settings, for ``meta.json``.
    source: where the videos came from, for ``meta.json``.
    label_names: the split's class names, for ``meta.json``.

  Raises:
    ValueError: ``out`` holds another extraction, or logits are asked of a model
      without head.
  """
  if extractor.num_classes == 0 and set(outputs) - {"features"}:
    raise ValueError(f"{extractor.ckpt.path} has no classification head: it gives "
                     "features only (drop --logits / --probabilities).")
  v, rows = extractor.num_views, len(items)
  sizes = dict(features=extractor.feature_size, logits=extractor.num_classes,
               probabilities=extractor.num_classes)
  shapes = {name: (rows, v, sizes[name]) if per_view else (rows, sizes[name])
            for name in outputs}
  store = Store(out, _meta(extractor, items, shapes, per_view=per_view, windows=windows,
                           source=source or {}, label_names=label_names), shapes)
  done = store.open()
  todo = [i for i in range(rows) if i not in done]
  pi, pc = jax.process_index(), jax.process_count()
  if done:
    logging.info("extract: %d of %d rows already in %s; extracting the other %d.",
                 len(done), rows, store.out, len(todo))
  unreadable = [i for i in todo if items[i].error]
  store.write([(i, _failed_row(extractor, outputs, per_view, items[i].error))
               for i in unreadable if items[i].source % pc == pi])
  readable = [i for i in todo if not items[i].error]
  unit = "window" if windows else "video"
  progress = _Progress(len(todo), unit, v)
  progress.update(len(unreadable))
  try:
    if readable:
      for finished in extractor.run([items[i].record for i in readable], reader):
        batch = []
        for views in finished:
          row = extractor.combine(views, outputs, per_view)
          i = readable[views.position]
          if views.process == pi:
            if row.status != "ok":
              row.reason = extractor.reason(reader, items[i].record, views.valid)
            batch.append((i, row))
        store.write(batch)
        progress.update(len(finished))
  finally:
    progress.close()
  counts = store.finish(items)
  return Summary(rows, len(done), counts, store.meta)


def _failed_row(extractor: Extractor, outputs: Sequence[str], per_view: bool,
                reason: str) -> Row:
  nan = Views(0, np.zeros((extractor.num_views, extractor.feature_size), np.float32),
              np.zeros((extractor.num_views, extractor.num_classes), np.float32),
              np.zeros(extractor.num_views, bool), 0)
  row = extractor.combine(nan, outputs, per_view)
  row.reason = reason
  return row


# ----------------------------------------------------------------------------------
# Windows of a few videos for `time_jax.predict --every`.
# ----------------------------------------------------------------------------------

def classify_windows(extractor: Extractor, video: str, *, every: float,
                     span: float | None = None
                     ) -> tuple[list[timeline.Window], np.ndarray]:
  """``(windows, probabilities [windows, classes])`` of one video file, merged over
  each window's views as evaluation merges; NaN for a window that did not decode.

  Raises:
    DecodeError: the video cannot be read.
  """
  reader = video_lib.VideoReader()
  record = Record(video, -1)
  count, rate = timeline.probe(reader, record)
  length = span if span else timeline.default_span(extractor.sampling, rate, every)
  wins = timeline.windows(count, rate, every, length)
  probs = np.full((len(wins), extractor.num_classes), np.nan, np.float32)
  records = [timeline.window_record(record, w) for w in wins]
  for finished in extractor.run(records, timeline.WindowReader(reader)):
    for views in finished:
      probs[views.position] = extractor.combine(views, ["probabilities"], False).arrays[
          "probabilities"]
  return wins, probs


def timelines(predictor: predict.Predictor, videos: Sequence[str], *, every: float,
              span: float | None = None, views: tuple[int, int] | None = None,
              top: int = 5, out: str = ".", as_json: bool = False) -> int:
  """``predict --every``: per video, ``OUT/<name>.timeline.csv`` and ``.png``
  (`time_jax.timeline`); prints one line per video (``--json``: the timeline). Returns
  predict's exit status: 1 when a video or some of its windows could not be read."""
  clips, crops = views if views else (1, predictor.crops)
  try:
    extractor = Extractor(predictor.ckpt, predictor.ckpt.config, clips=clips, crops=crops)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return console.USAGE_ERROR
  predictor.clips, predictor.crops = clips, crops  # as each window is read
  if not as_json:
    print(predictor.describe())
  os.makedirs(out, exist_ok=True)
  failed, names = 0, set()
  for video in videos:
    try:
      wins, probs = classify_windows(extractor, video, every=every, span=span)
    except (DecodeError, OSError, ValueError) as e:
      text = str(e) or type(e).__name__
      print(f"error: {text}" if text.startswith(video) else f"error: {video}: {text}",
            file=sys.stderr, flush=True)
      failed += 1
      continue
    stem = os.path.splitext(os.path.basename(video))[0]
    name, k = stem, 1
    while name in names:
      k += 1
      name = f"{stem}_{k}"
    names.add(name)
    base = os.path.join(out, f"{name}.timeline")
    timeline.write_csv(base + ".csv", wins, probs, predictor.class_names, top)
    timeline.plot(base + ".png", wins, probs, predictor.class_names, top,
                  title=f"{video}: windows every {every:g} s")
    bad = int(np.isnan(probs).any(1).sum())
    if as_json:
      print(json.dumps(timeline.to_json(video, wins, probs, predictor.class_names, top)))
    else:
      print(f"{video}: {len(wins)} windows every {every:g} s "
            f"({wins[0].end - wins[0].start:g} s each) -> {base}.csv, {base}.png")
    if bad:
      print(f"error: {video}: {bad} of {len(wins)} windows could not be decoded (blank "
            "in the timeline).", file=sys.stderr)
      failed += 1
    sys.stdout.flush()
  return 1 if failed else 0


# ----------------------------------------------------------------------------------
# The command line.
# ----------------------------------------------------------------------------------

def _split_overrides(rest: Sequence[str]) -> tuple[list[str], list[str]]:
  """``(--config.* overrides, anything else)`` among argparse's leftovers."""
  overrides, stray, i = [], [], 0
  while i < len(rest):
    arg = rest[i]
    if re.match(r"^--?(?:no)?config\.", arg):
      overrides.append(arg)
      if "=" not in arg and i + 1 < len(rest) and not rest[i + 1].startswith("-"):
        overrides.append(rest[i + 1])  # --config.x VALUE
        i += 1
    else:
      stray.append(arg)
    i += 1
  return overrides, stray


def _get(config, dotted: str):
  for key in dotted.split("."):
    config = config.get(key) if hasattr(config, "get") else None
  return list(config) if isinstance(config, (tuple, list)) else config


def _warn_input_differences(config, ckpt: checkpoints.Checkpoint) -> None:
  if ckpt.kind != "workdir":
    return
  diffs = [f"{f}={_get(config, f)!r} (trained with {_get(ckpt.config, f)!r})"
           for f in _INPUT_FIELDS if _get(config, f) != _get(ckpt.config, f)]
  if diffs:
    logging.warning("extract: the config presents clips otherwise than %s was trained: "
                    "%s.", ckpt.path, "; ".join(diffs))


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m time_jax.extract", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              allow_abbrev=False)
  p.add_argument("--checkpoint", required=True, help="training workdir or ported folder")
  p.add_argument("--out", required=True, help="output folder (created; resumed if it "
                 "holds this extraction)")
  p.add_argument("--config", default=None, help="config FILE[:ARG]: its split's videos "
                 "and how to read them (default: the checkpoint's config)")
  p.add_argument("--split", choices=("train", "eval"), default=None,
                 help="the config's split to extract (default: eval)")
  p.add_argument("--videos", default=None, help="a folder of video files or a list file")
  p.add_argument("--views", default=None, help="clips x crops per video, e.g. 2x3 "
                 "(default: the config's eval views; with --every 1 x its crops)")
  p.add_argument("--per-view", action="store_true", help="a row per view, not merged")
  p.add_argument("--logits", action="store_true", help="also write logits.npy")
  p.add_argument("--probabilities", action="store_true",
                 help="also write probabilities.npy")
  p.add_argument("--every", type=float, default=None,
                 help="window mode: a row per window starting every SECONDS")
  p.add_argument("--window", type=float, default=None, help="seconds a window spans "
                 "(default: one clip's span; for 'segments' sampling --every)")
  p.add_argument("--fps", type=float, default=None, help="frame rate of the videos in "
                 "window mode when their files do not state one (frame folders, caches)")
  p.add_argument("--batch-size", type=int, default=None,
                 help="views per batch (default: the config's input.eval_batch_size)")
  p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                 help="the run's parameter EMA, or (--no-ema) its raw parameters "
                 "(default: those its evaluation used)")
  p.add_argument("--coordinator_address", default=None, help="host:port of process 0")
  p.add_argument("--num_processes", type=int, default=None, help="processes in the job")
  p.add_argument("--process_id", type=int, default=None, help="this process's index")
  return p


# Raised once running, caused by the user: one line, exit status 2.
_USER_ERRORS = (checkpoints.CheckpointError, ProtocolError, ValueError)


def _run(args, overrides: Sequence[str]) -> Summary:
  if args.videos and args.split:
    console.usage_error("--videos and --split: extract a config's split or video files, "
                        "not both.")
  if not args.videos and not args.config:
    console.usage_error("name the videos: --config FILE [--split eval|train], or "
                        "--videos FOLDER_OR_LIST.")
  if args.every is None and (args.window is not None or args.fps is not None):
    console.usage_error("--window and --fps are for window mode (--every SECONDS).")
  ckpt = checkpoints.load(args.checkpoint, ema=args.ema)
  argv = ["extract"] + (["--config", args.config] if args.config else []) + list(overrides)
  with console.config_errors(argv):  # as time_jax.main parses them: one-line mistakes
    config = console.load_config(args.config, overrides, default=ckpt.config)
  if args.videos:
    records, label_names = video_records(args.videos), []
    config.dataset.source = "video"
    source = {"videos": os.path.abspath(args.videos)}
  else:
    data_config.validate(config)
    splits = sources.load_splits(config)
    split = args.split or "eval"
    records, label_names = getattr(splits, split), splits.class_names
    source = {"config": args.config, "overrides": list(overrides), "split": split}
    if not records:
      raise ValueError(f"--split {split}: the config's {split} split has no videos.")
  _warn_input_differences(config, ckpt)
  clips, crops = predict.parse_views(args.views) if args.views else (None, None)
  if args.every is not None and clips is None:
    clips = 1  # a window is one clip's span: one clip of it
  extractor = Extractor(ckpt, config, clips=clips, crops=crops, batch_size=args.batch_size)
  reader = sources.make_reader(extractor.config)
  windows = None
  if args.every is not None:
    if extractor.config.dataset.source != "video" and not args.fps:
      raise ValueError(f"--every: dataset.source={extractor.config.dataset.source!r} "
                       "states no frame rate; give the videos' --fps.")
    items = window_items(records, reader, every=args.every, span=args.window,
                         sampling=extractor.sampling, fps=args.fps,
                         threads=extractor.config.input.read_threads)
    reader = timeline.WindowReader(reader)
    windows = dict(every=args.every, window=args.window, fps=args.fps)
  else:
    items = [Item(r, r.name, r.label, i) for i, r in enumerate(records)]
  outputs = ["features"] + [o for o in OUTPUTS[1:] if getattr(args, o)]
  summary = extract(extractor, items, reader, args.out, outputs=outputs,
                    per_view=args.per_view, windows=windows, source=source,
                    label_names=label_names)
  if jax.process_index() == 0:
    c, m = summary.counts, summary.meta
    step = f"step {m['step']}" if m["step"] is not None else "ported weights"
    shapes = ", ".join(f"{a['file']} {a['shape']}" for a in m["arrays"].values())
    print(f"extracted {summary.rows} {'windows' if windows else 'videos'} "
          f"({c['ok']} ok, {c['partial']} partial, {c['failed']} failed"
          f"{'; see index.csv' if c['partial'] + c['failed'] else ''}"
          f"{f'; {summary.resumed} from an earlier run' if summary.resumed else ''}) "
          f"with {m['checkpoint']} ({step}, {'EMA' if m['ema'] else 'raw'} parameters, "
          f"{m['views']['clips']}x{m['views']['crops']} views) into "
          f"{os.path.abspath(args.out)}: {shapes}", flush=True)
  return summary


def main(argv: Sequence[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  args, rest = _parser().parse_known_args(argv)
  overrides, stray = _split_overrides(rest)
  if stray:
    _parser().error(f"unrecognized arguments: {' '.join(stray)}")
  multihost.initialize(args.coordinator_address, args.num_processes, args.process_id)

  def run():
    try:
      return _run(args, overrides)
    except _USER_ERRORS as e:
      if jax.process_count() > 1:
        raise  # run_or_exit names it and ends every process
      console.usage_error(str(e))

  multihost.run_or_exit(run, user_errors=_USER_ERRORS)
  return 0


def _console() -> None:
  """The command's log: time_jax's INFO lines (progress) and every warning."""
  if not flags.FLAGS.is_parsed():  # absl's handler warns about unparsed flags otherwise
    flags.FLAGS.mark_as_parsed()
  absl_logging.use_absl_handler()
  absl_logging.set_verbosity(absl_logging.INFO)
  console.quiet_libraries()


if __name__ == "__main__":
  _console()
  sys.exit(main())
