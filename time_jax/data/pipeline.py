"""The Grain input pipeline: records -> decoded, augmented uint8 batches for TIME.

Entry point::

    ds, info = pipeline.build(config, "train", seed=0)   # or "eval"
    it = iter(ds)                  # a grain DatasetIterator
    batch = next(it)               # dict of numpy arrays, this process's share
    state = it.get_state()         # JSON-able dict; store it in the Orbax checkpoint
    it.set_state(state)            # resume exactly where `state` was taken
    info.monitor.metrics()         # {'input/bad_files': .., 'input/replaced': ..}
                                   # (eval: 'input/failed_views' for 'input/replaced')

``ds`` is a ``grain.IterDataset``; its iterators also work with
``grain.checkpoint.CheckpointHandler`` (Orbax). Batches hold this process's share
``B = global_batch // jax.process_count()`` clips (``input.batch_size`` or
``input.eval_batch_size``), each process reading its own shard of the records
(training: ``[i::count]``; evaluation: the i-th contiguous block of views):

* ``frames``: uint8 ``[B, t_out·n·n, H*/N, W*/N, 3]``, the frames the config's
  sampling chose (`transforms.Sampling`: TIME's segments or VideoMAE's dense window),
  in temporal order, each resized to the cell size
  ``image_size // n`` (square); `time_layer.preprocess` arranges them on device.
* ``label``: int32 ``[B]``, the class index.
* ``index``: int32 ``[B]``, the record index in ``info.records`` (after a bad-file
  replacement: the record the frames came from; -1 for eval padding).
* eval only: ``view`` int32 ``[B]`` = ``clip · eval_crops + crop``, and ``valid``
  bool ``[B]``: False for padding that fills the last batch and for videos that failed
  to decode (reported by the monitor). Merge the views with the same index
  (``input.eval_merge``: `time_jax.train.metrics.merge_views`).

Repeated views (``input.repeats = k``, VideoMAE's ``num_sample``): each video is read
and decoded ONCE per visit and gives k training views, each with its own crop, flip and
rotation; with ``input.repeat_frames='own'`` also its own frames where the reader
decodes runs of frames anyway (see `_ViewFrames`), with ``'shared'`` (VideoMAE's) the
same frames. The k views sit next to each other in the batch, so a batch of B
clips holds B / k videos. An epoch is one visit of every video, i.e. k views of each:
``steps_per_epoch = k · num_examples // batch_size``. (The learning rate scales with
the videos per step, B / k: `time_jax.train.optimizer`.)

Training repeats epochs forever (reshuffled each epoch, seeded shuffle and per-element
random maps via ``ds.seed``), so ``info.steps_per_epoch`` only sets the schedule;
batches never carry a partial epoch tail because the stream is continuous. Evaluation
covers every (record, view) once and then stops; iterate ``iter(ds)`` anew each time.
The batches are the same for any ``input.num_workers`` and any thread count, because
batching happens on the index-addressed MapDataset before Grain's workers split it.

Bad input: a record whose reader raises `DecodeError` is replaced (training) by a
record drawn with the element's generator, so the replacement is deterministic; in eval
the view keeps its ``index`` and becomes ``valid=False``, so evaluation leaves it out
and reports the video (`time_jax.train.metrics.ViewTally`: excluded when none of its
views decoded). Each bad file is logged once with its path (its error on the worker)
and counted by ``info.monitor`` (this process's share, since it was built); when more
of them have failed than ``dataset.max_bad_fraction`` allows (`allowed_bad_files`: that
fraction of the split, rounded down, but at least one) the iterator raises
`TooManyBadFiles` naming them. Files the reader knows to be bad without reading them
(the packed cache's ``known_bad``: those that failed when packed) count from the start:
too many stop `build` itself, before a run compiles anything. Messages name packed
records by their original video (`display_name`). A batch larger than the split is
`InputError`, also from `build`.

``info`` (`PipelineInfo`): ``num_classes``, ``class_names``, ``num_examples`` (records
of the split, all processes), ``num_views`` (train: ``repeats``; eval: clips × crops),
``steps_per_epoch`` (train: ``repeats · num_examples // batch_size``; eval: batches
per process to see every view once),
``global_batch_size``, ``local_batch_size``, ``records``, ``monitor``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import math
import os
import signal
import threading
from typing import Any, Sequence

from absl import flags
import grain
import jax
import ml_collections
import numpy as np

from time_jax.data import config as data_config
from time_jax.data import randaugment
from time_jax.data import sources
from time_jax.data import transforms
from time_jax.data.base import ClipReader, DecodeError, Record, Splits

_FAILED_KEY = "_failed"  # per-element record indices that failed; popped by the monitor
_logged_here: set[str] = set()  # files whose error this process has logged


class InputError(ValueError):
  """The data cannot give what the config asks (a batch larger than the split, too
  many files that do not decode): a mistake the user fixes, said in one line."""


class TooManyBadFiles(InputError, RuntimeError):
  """More files of a split failed to decode than ``dataset.max_bad_fraction`` allows
  (`allowed_bad_files`)."""


def allowed_bad_files(max_fraction: float, num_files: int) -> int:
  """How many of ``num_files`` may fail to decode before a run stops.

  ``max_fraction`` of them, rounded down, but at least one unless it is 0: a set of
  fewer than ``1 / max_fraction`` clips does not stop at its first bad file.
  """
  allowed = math.floor(max_fraction * num_files + 1e-9)
  return max(allowed, 1) if max_fraction > 0 else 0


def train_steps_per_epoch(num_videos: int, repeats: int, batch_size: int) -> int:
  """Training steps of one epoch, a visit of every video as ``repeats`` views:
  ``repeats · num_videos // batch_size`` (batches never hold a partial epoch tail)."""
  return num_videos * repeats // batch_size


def display_name(record: Record) -> str:
  """What messages call a record: its path, or for the packed cache (whose paths are
  ``<split_dir>#<i>``) the original video, with where the pack holds it."""
  split_dir, sep, num = record.path.rpartition("#")
  if sep and num.isdigit() and record.video_id and os.path.isdir(split_dir):
    return f"{record.video_id} (packed as {record.path})"
  return record.path


@dataclasses.dataclass(frozen=True)
class _Spec:
  """What the element functions need from the config (small and picklable)."""
  t_out: int
  n: int
  cell: tuple[int, int]
  depth: bool
  depth_max: float
  scale: tuple[float, float]
  ratio: tuple[float, float]
  flip: bool
  rotation: float
  crop_fraction: float
  clips: int
  crops: int
  max_retries: int
  repeats: int = 1
  randaugment: str = ""
  randaugment_on: str = "frames"
  crop_mode: str = "random_resized"
  multiscale_scales: tuple[float, ...] = transforms.MULTISCALE_SCALES
  multiscale_max_distort: int = 1
  sampling: transforms.Sampling = transforms.Sampling()
  repeat_frames: str = "own"

  @property
  def frames_shape(self) -> tuple[int, ...]:
    return (self.t_out * self.n * self.n, *self.cell, 3)


def _spec(config) -> _Spec:
  i, d, t = config.input, config.dataset, config.time
  cell = config.image_size // t.n
  return _Spec(
      t_out=t.t_out, n=t.n, cell=(cell, cell), depth=d.modality == "depth",
      depth_max=float(d.depth_max),
      scale=tuple(i.crop_scale), ratio=tuple(i.crop_ratio), flip=bool(i.flip),
      rotation=float(i.rotation), crop_fraction=float(i.eval_crop_fraction),
      clips=int(i.eval_clips), crops=int(i.eval_crops), max_retries=int(i.max_retries),
      repeats=int(i.repeats), randaugment=str(i.randaugment),
      randaugment_on=str(i.randaugment_on), crop_mode=str(i.crop_mode),
      multiscale_scales=tuple(float(x) for x in i.multiscale_scales),
      multiscale_max_distort=int(i.multiscale_max_distort),
      sampling=transforms.sampling(config), repeat_frames=str(i.repeat_frames))


def _read_check(reader: ClipReader, record: Record, frames, want: int) -> np.ndarray:
  """``frames`` as an array, checked to be the ``want`` chosen frames."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[0] != want:
    raise ValueError(f"{type(reader).__name__}.read({record.name!r}) returned "
                     f"{frames.shape}; expected [{want}, h, w, c] (the chosen frames).")
  return frames


class _ViewFrames:
  """The chooser of a training element's ``repeats`` views, read in ONE reader call.

  Each view draws its frames (``spec.sampling.train``: segments with jitter, or a dense
  window); the reader is asked for the sorted distinct union, and `positions` maps a
  view's frames into what was read. With ``own_frames`` each view draws its own; else
  (``input.repeat_frames='shared'``, or readers where extra frames cost a decode each:
  JPEG caches and frame folders) every view takes the first view's frames.
  The reader may call it more than once (a video recounted after a failed pass); the
  last call counts.
  """

  def __init__(self, spec: _Spec, rng: np.random.Generator, own_frames: bool):
    self.spec, self.rng, self.own_frames = spec, rng, own_frames
    self.per_view: list[np.ndarray] = []
    self.union = np.zeros(0, np.int64)

  def __call__(self, num_frames: int) -> np.ndarray:
    s = self.spec
    draws = s.repeats if self.own_frames else 1
    self.per_view = [s.sampling.train(num_frames, self.rng) for _ in range(draws)]
    self.union = np.unique(np.concatenate(self.per_view))
    return self.union

  def positions(self, view: int) -> np.ndarray:
    """``[t_out·n·n]`` positions of view ``view``'s frames in the frames read."""
    return np.searchsorted(self.union, self.per_view[view % len(self.per_view)])


def _log_once(record: Record, err: Exception) -> None:
  if record.path not in _logged_here:
    _logged_here.add(record.path)
    logging.info("Could not decode %s: %s", display_name(record), err)


class TrainElement:
  """``(record index, rng) -> element``: read once, replace if bad, augment each view.

  The element holds ``input.repeats`` views of one video (``frames [repeats, ...]``,
  ``label`` and ``index`` per view), each with its own crop, flip and rotation.
  """

  def __init__(self, records: Sequence[Record], reader: ClipReader, spec: _Spec):
    self.records, self.reader, self.spec = list(records), reader, spec
    # Readers that decode runs of frames anyway let each view draw its own frames,
    # unless the views are to share them (VideoMAE's num_sample).
    self.own_frames = (spec.repeat_frames == "own"
                       and bool(getattr(reader, "extra_frames_free", False)))
    self.augment = randaugment.RandAugment(spec.randaugment) if spec.randaugment else None

  def __call__(self, index, rng: np.random.Generator) -> dict[str, np.ndarray]:
    s = self.spec
    failed = np.full((s.max_retries,), -1, np.int32)
    idx = int(index)
    choose = _ViewFrames(s, rng, self.own_frames)
    for attempt in range(s.max_retries + 1):
      record = self.records[idx]
      try:
        frames = self.reader.read(record, choose)
        frames = _read_check(self.reader, record, frames, len(choose.union))
        break
      except DecodeError as e:
        _log_once(record, e)
        if attempt == s.max_retries:
          raise TooManyBadFiles(
              f"{s.max_retries + 1} records in a row failed to decode, the last "
              f"{display_name(record)!r}: {e}. Check the data (dataset.root / source).") from e
        failed[attempt] = idx
        idx = int(rng.integers(len(self.records)))
    frames = transforms.to_uint8(frames, depth=s.depth, depth_max=s.depth_max)
    out = np.empty((s.repeats, *s.frames_shape), np.uint8)
    windowed = self.augment is not None and s.randaugment_on == "frames_window"
    rgb = transforms.to_rgb(frames) if windowed else None  # once for every view
    for v in range(s.repeats):
      positions = choose.positions(v)
      clip = frames
      if self.augment is not None and s.randaugment_on == "frames":
        # Before the crop, on the view's original frames, as VideoMAE (and timm) do.
        clip = self.augment(transforms.to_rgb(frames[positions]), rng)
        positions = None
      # 'frames_window': the same draws (ops, then the view), computed only where the
      # view samples (RandAugment.apply_view).
      ops = self.augment.draw(rng) if windowed else None
      view = transforms.train_view(
          rng, frames.shape[1], frames.shape[2], scale=s.scale, ratio=s.ratio,
          flip=s.flip, rotation=s.rotation, crop_mode=s.crop_mode, out_size=s.cell,
          scales=s.multiscale_scales, max_distort=s.multiscale_max_distort)
      if ops is not None:
        self.augment.apply_view(rgb, ops, view, s.cell,
                                indices=positions, out=out[v])
      else:
        transforms.prepare(clip, view, s.cell, indices=positions, out=out[v])
      if self.augment is not None and s.randaugment_on == "cells":
        # On the view itself (cell size): 1/6 of a 320x240 frame's pixels at N = 2.
        out[v] = self.augment(out[v], rng)
    return {"frames": out, "label": np.full((s.repeats,), record.label, np.int32),
            "index": np.full((s.repeats,), idx, np.int32), _FAILED_KEY: failed}


def _views_to_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """``[elements, repeats, ...]`` -> ``[elements·repeats, ...]`` (views of one video
  adjacent); the failure record stays per element."""
  return {k: v if k == _FAILED_KEY else v.reshape(-1, *v.shape[2:])
          for k, v in batch.items()}


class EvalElement:
  """``(record index, view) -> element``; ``record index = -1`` is padding.

  The ``eval_crops`` views of one temporal clip share one decode: the last few clips
  read are kept (the crops of a clip are adjacent entries, so they meet in one batch
  or in neighbouring ones).
  """
  _CACHED_CLIPS = 2

  def __init__(self, records: Sequence[Record], reader: ClipReader, spec: _Spec):
    self.records, self.reader, self.spec = list(records), reader, spec
    self._reset()

  def _reset(self):
    self._lock = threading.Lock()
    self._clips: collections.OrderedDict = collections.OrderedDict()

  def __getstate__(self):
    return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_clips")}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._reset()

  def _clip(self, idx: int, clip: int) -> np.ndarray:
    """uint8 frames of temporal clip ``clip`` of record ``idx`` (or DecodeError)."""
    key = (idx, clip)
    with self._lock:
      hit = self._clips.get(key)
    if hit is None:
      s = self.spec
      choose = functools.partial(s.sampling.eval, clip=clip, num_clips=s.clips)
      try:
        frames = _read_check(self.reader, self.records[idx],
                             self.reader.read(self.records[idx], choose),
                             s.t_out * s.n * s.n)
        hit = transforms.to_uint8(frames, depth=s.depth, depth_max=s.depth_max)
      except DecodeError as e:
        hit = e
      with self._lock:
        self._clips[key] = hit
        while len(self._clips) > self._CACHED_CLIPS:
          self._clips.popitem(last=False)
    if isinstance(hit, DecodeError):
      raise hit
    return hit

  def __call__(self, entry) -> dict[str, np.ndarray]:
    s = self.spec
    idx, view_id = int(entry[0]), int(entry[1])
    failed = np.full((s.max_retries,), -1, np.int32)
    out = np.zeros(s.frames_shape, np.uint8)
    label, valid = 0, False
    if idx >= 0:
      record = self.records[idx]
      clip, crop = divmod(view_id, s.crops)
      label = record.label
      try:
        frames = self._clip(idx, clip)
        view = transforms.eval_view(frames.shape[1], frames.shape[2], s.cell,
                                    crop_fraction=s.crop_fraction, crop=crop,
                                    num_crops=s.crops)
        transforms.prepare(frames, view, s.cell, out=out)
        valid = True
      except DecodeError as e:
        _log_once(record, e)
        failed[0] = idx
    return {"frames": out, "label": np.int32(label), "index": np.int32(idx),
            "view": np.int32(view_id), "valid": np.bool_(valid), _FAILED_KEY: failed}


class BadFileMonitor:
  """Counts bad files in the consuming process and stops when there are too many.

  Runs as the last (main-process) map of the pipeline: it removes the internal
  ``_failed`` field from every batch. Counts cover this process's records since the
  pipeline was built (every pass over the eval split adds to them) and restart with a
  new process (they are not part of the iterator state). An evaluation's own counts,
  over all processes, come from the gathered ``index`` / ``valid`` of its batches
  (`time_jax.train.metrics.ViewTally`).

  Files known to be bad before reading (``known_bad``: the packed cache lists the videos
  that failed when packed) count from the start, so too many of them stop the run when
  the pipeline is built, before anything compiles.

  Raises:
    TooManyBadFiles: more bad files than `allowed_bad_files` (one message naming them).
  """

  def __init__(self, records: Sequence[Record], max_fraction: float, split: str,
               known_bad: dict[int, str] | None = None):
    self.records = list(records)  # named (`display_name`) only when one fails
    self.max_fraction = float(max_fraction)
    self.max_bad = allowed_bad_files(max_fraction, len(records))
    self.split = split
    self.bad: dict[int, int] = {}  # record index -> times seen, in first-seen order
    self.reasons: dict[int, str] = {}  # record index -> why, where known
    self.replaced = 0  # failed elements: replaced in training, left out in eval
    if known_bad:
      self.reasons.update(known_bad)
      self.bad.update({i: 0 for i in sorted(known_bad)})
      self._check()
      logging.warning("%s input: %d of %d files failed to decode when packed and are %s: "
                      "%s.", split, len(known_bad), len(records), self._fate(),
                      self._list(sorted(known_bad)))

  def _fate(self) -> str:
    return ("replaced by others" if self.split == "train"
            else "left out of the evaluation (valid=False)")

  def _list(self, indices: Sequence[int], show: int = 10) -> str:
    named = [display_name(self.records[i]) + (
        f": {self.reasons[i].rstrip('.')}" if i in self.reasons else "")
             for i in indices[:show]]
    more = f" and {len(indices) - show} more" if len(indices) > show else ""
    return "; ".join(named) + more

  def _check(self) -> None:
    if len(self.bad) > self.max_bad:
      raise TooManyBadFiles(
          f"{len(self.bad)} of {len(self.records)} {self.split} files failed to decode, "
          f"more than dataset.max_bad_fraction={self.max_fraction:g} allows "
          f"({self.max_bad}): {self._list(list(self.bad))}. Fix or remove them, or "
          "raise dataset.max_bad_fraction.")

  def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    batch = dict(batch)
    failed = batch.pop(_FAILED_KEY)
    for idx in failed[failed >= 0].tolist():
      self.replaced += 1
      if idx not in self.bad:
        logging.warning("%s input: cannot decode %s (bad file %d; it is %s).",
                        self.split, display_name(self.records[idx]), len(self.bad) + 1,
                        "replaced" if self.split == "train"
                        else "marked valid=False and left out of the evaluation")
      self.bad[idx] = self.bad.get(idx, 0) + 1
    self._check()
    return batch

  def metrics(self) -> dict[str, int]:
    """``input/bad_files``: distinct files seen failing; train: ``input/replaced``,
    the elements replaced by another record; eval: ``input/failed_views``, the views
    marked ``valid=False`` (nothing is replaced in evaluation)."""
    name = "input/replaced" if self.split == "train" else "input/failed_views"
    return {"input/bad_files": len(self.bad), name: self.replaced}


@dataclasses.dataclass
class PipelineInfo:
  """What the training loop needs to know about a built pipeline (module docstring)."""
  num_classes: int
  class_names: list[str]
  num_examples: int
  num_views: int
  steps_per_epoch: int
  global_batch_size: int
  local_batch_size: int
  records: list[Record] = dataclasses.field(repr=False)
  monitor: BadFileMonitor = dataclasses.field(repr=False)
  element_shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)


def _shard_info() -> tuple[int, int]:
  return jax.process_index(), jax.process_count()


def _ignore_interrupts(worker_index: int, worker_count: int) -> None:
  """Grain worker start: Ctrl-C reaches the whole process group; the main process
  decides (`time_jax.train.loop`), workers must not die with tracebacks."""
  del worker_index, worker_count
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def _iter_options(config):
  i = config.input
  threads = int(i.read_threads)
  # Grain's default buffer (500 elements) would hold 500 video batches; keep it small.
  read = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads)
  mp = grain.MultiprocessingOptions(num_workers=int(i.num_workers),
                                    per_worker_buffer_size=int(i.worker_buffer_size))
  return read, mp


def build(config: ml_collections.ConfigDict, split: str, *, seed: int | None = None,
          splits: Splits | None = None,
          reader: ClipReader | None = None) -> tuple[grain.IterDataset, PipelineInfo]:
  """Builds the train or eval pipeline of a config (see the module docstring).

  Args:
    config: the full config (``dataset``, ``input``, ``time``, ``image_size``).
    split: ``'train'`` or ``'eval'``.
    seed: shuffle and augmentation seed (default ``config.input.shuffle_seed``, or
      ``config.seed`` when that is -1).
    splits: records and class names to use instead of `sources.load_splits` (tests,
      or a caller that loaded them once for both splits). When None the config is
      first checked with `time_jax.data.config.validate`.
    reader: the clip reader instead of `sources.make_reader` (must be picklable for
      workers).

  Returns:
    ``(dataset, info)``: a ``grain.IterDataset`` of batches, and `PipelineInfo`.
  """
  if split not in ("train", "eval"):
    raise ValueError(f"pipeline.build: split {split!r}; use 'train' or 'eval'.")
  if splits is None:
    data_config.validate(config)
    splits = sources.load_splits(config)
  reader = reader if reader is not None else sources.make_reader(config)
  if seed is None:  # input.shuffle_seed; -1 (unset): the run's config.seed
    seed = config.input.shuffle_seed if config.input.shuffle_seed >= 0 else config.get(
        "seed", 0)
  spec = _spec(config)
  records = splits.train if split == "train" else splits.eval
  if not records:
    raise InputError(f"the {split} split has no videos; check config.dataset.")
  pi, pc = _shard_info()
  global_b = config.input.batch_size if split == "train" else config.input.eval_batch_size
  if global_b % pc:
    raise InputError(f"config.input.{'batch_size' if split == 'train' else 'eval_batch_size'}"
                     f"={global_b} is not a multiple of the process count {pc}.")
  local_b = global_b // pc
  read_opts, mp_opts = _iter_options(config)
  known_bad = getattr(reader, "known_bad", None)  # the packed cache knows its failures
  monitor = BadFileMonitor(records, config.dataset.max_bad_fraction, split,
                           known_bad=known_bad(records) if known_bad else None)
  num_classes = config.dataset.num_classes or len(splits.class_names)

  if split == "train":
    # Fold the process index into the seed so hosts draw independent augmentations.
    host_seed = int(np.random.SeedSequence([seed, pi]).generate_state(1)[0])
    k = spec.repeats
    if local_b % k:
      raise InputError(f"config.input.batch_size={global_b}: the batch of a process "
                       f"({local_b} clips) is not a multiple of input.repeats={k}.")
    ds = grain.MapDataset.range(len(records))[pi::pc]
    if len(ds) < local_b // k:
      views = f" ({k} views each, input.repeats)" if k > 1 else ""
      where = (f"the train split has {len(ds)}" if pc == 1 else
               f"each of the {pc} processes reads {len(ds)} of the {len(records)}")
      raise InputError(f"config.input.batch_size={global_b}: {where} videos, fewer than "
                       f"the {local_b // k} a batch{' of a process' if pc > 1 else ''} "
                       f"takes{views}; lower input.batch_size.")
    ds = ds.seed(host_seed).shuffle().repeat(None)
    ds = ds.random_map(TrainElement(records, reader, spec))
    # Elements hold k views of one video: batch local_b / k of them, then flatten.
    ds = ds.batch(local_b // k, drop_remainder=True).map(_views_to_batch)
    # An epoch passes over every video once, as k views each.
    num_views, steps = k, train_steps_per_epoch(len(records), k, global_b)
  else:
    num_views = spec.clips * spec.crops
    per_process = math.ceil(len(records) * num_views / pc)
    # Contiguous blocks per process, so that the crops of a clip (adjacent entries)
    # are read by one process and share a decode.
    entries = [(r, v) for r in range(len(records))
               for v in range(num_views)][pi * per_process:(pi + 1) * per_process]
    steps = math.ceil(per_process / local_b)
    # Every process runs the same number of full batches; padding is valid=False.
    entries += [(-1, 0)] * (steps * local_b - len(entries))
    ds = grain.MapDataset.source(entries).map(EvalElement(records, reader, spec))
    ds = ds.batch(local_b, drop_remainder=False)

  ds = ds.to_iter_dataset(read_opts)
  if mp_opts.num_workers > 0:
    # Grain's workers read absl flags; outside an absl app (scripts, tests) they were
    # never parsed and every worker would fail. Parsing later (app.run) still works.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(mp_opts, worker_init_fn=_ignore_interrupts)
  ds = ds.map(monitor)
  shapes = {"frames": (local_b, *spec.frames_shape), "label": (local_b,),
            "index": (local_b,)}
  if split == "eval":
    shapes.update(view=(local_b,), valid=(local_b,))
  info = PipelineInfo(
      num_classes=num_classes, class_names=list(splits.class_names),
      num_examples=len(records), num_views=num_views, steps_per_epoch=steps,
      global_batch_size=global_b, local_batch_size=local_b, records=list(records),
      monitor=monitor, element_shapes=shapes)
  logging.info("%s input: %d records, %d view(s), %d steps/epoch, batch %d (%d here), "
               "frames %s.", split, len(records), num_views, steps, global_b, local_b,
               shapes["frames"])
  return ds, info


def seek(iterator: Any, batches: int) -> None:
  """Moves a fresh train iterator of `build` to batch ``batches`` of its order.

  Without reading the batches before it: the iterator then yields what it would after
  ``batches`` steps of a run with this process count (the training loop's resume
  when a checkpoint's iterator state was saved by another process count).

  Raises:
    ValueError: the iterator's state is not one `build` makes.
  """
  state = iterator.get_state()
  if set(state) == {"next_index"}:  # in-process reading
    state = dict(state, next_index=int(batches))
  elif set(state.get("iterators_in_use_states", [{}])[0]) == {"next_index"}:
    # Grain's workers (mp_prefetch): worker w reads batches w, w + W, w + 2W, ...
    workers = len(state["iterators_in_use_states"])
    per_worker = [{"next_index": (int(batches) - w + workers - 1) // workers}
                  for w in range(workers)]
    state = dict(state, next_index_in_cycle=int(batches) % workers,
                 iterators_in_use_states=per_worker)
  else:
    raise ValueError(f"pipeline.seek: unknown iterator state {sorted(state)}.")
  iterator.set_state(state)


def summary(batch: dict[str, Any]) -> str:
  """A one-line description of a batch, for logs."""
  return ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in batch.items())
