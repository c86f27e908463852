r"""Clips/s of the input pipeline per core, before and after the fast host path.

    python bench/input_pipeline.py                       # N = 1, 2, 4; 16 generated clips
    python bench/input_pipeline.py --ns 2 --seconds 3 --videos 8        # quicker

Everything goes through ``pipeline.build`` itself (Grain, batching and copies
included), with the paper's UCF101 VideoMAE recipes (`time_jax.recipes.videomae`:
fine-tuning and pretraining views, 5 × 3 evaluation views; T* = 16, 224²) on
UCF101-like footage (`time_jax.data.scenes`: 320×240, 180 frames, H.264 with a
keyframe every 12 frames, natural-image statistics and camera motion), read from the
video files and from the packed cache that ``python -m time_jax.data.pack`` writes for
each config. One read thread and no worker processes, so the figures are per core
(``clips/CPU-s`` divides by the process's CPU time, which also counts any codec or
library threads).

* ``before``: the earlier host path (`time_jax.data.reference`: Pillow decoding and
  warps, a colour converter per video frame, one view per decode, every evaluation
  view decoded on its own) swapped into the same pipeline.
* ``after``: the pipeline as it is: libjpeg-turbo and OpenCV kernels, repeated views
  (``input.repeats`` of the recipe) from one decode, evaluation crops sharing a decode.

Rows are training views (fine-tuning without RandAugment, with it on the original
frames as VideoMAE (``ft RA frm``, the paper configs), the same computed in the window
each view samples (``ft RA win``, ``input.randaugment_on='frames_window'``) or on the
cropped views (``ft RA cell``); pretraining) and evaluation views; ``after/before`` is
the speed-up (the earlier path had no RandAugment, so its rows have no ``before``). The
run ends with the three RandAugment paths' clips/CPU-s side by side as ratios, per N and
source (``--randaugment-only`` times just those rows; a view's RandAugment cost depends
on its draw, and a few draws cost many views', so compare these over ``--seconds 20``
or more). ``--threads T`` adds the fast path with T read threads in one process (wall
clips/s, and its ratio to one thread): it scales with the cores only where the
decoders and warps release the GIL. The issue's
goals at N = 2 per core: packed fine-tuning views >= 25 (with VideoMAE's RandAugment
too), pretraining views >= 80, video fine-tuning views >= 12.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time

from time_jax import recipes
from time_jax.data import frame_cache
from time_jax.data import pack
from time_jax.data import pipeline
from time_jax.data import reference
from time_jax.data import scenes
from time_jax.data import transforms
from time_jax.data import video


@contextlib.contextmanager
def before_path():
  """Swaps the earlier (reference) implementations into the pipeline's modules."""
  saved = (transforms.apply_view, frame_cache._decode_jpegs, video._Rgb,  # pylint: disable=protected-access
           pipeline.EvalElement._CACHED_CLIPS)  # pylint: disable=protected-access
  transforms.apply_view = reference.apply_view
  frame_cache._decode_jpegs = reference.decode_jpegs  # pylint: disable=protected-access
  video._Rgb = reference.Rgb  # pylint: disable=protected-access
  pipeline.EvalElement._CACHED_CLIPS = 0  # pylint: disable=protected-access
  try:
    yield
  finally:
    (transforms.apply_view, frame_cache._decode_jpegs, video._Rgb,  # pylint: disable=protected-access
     pipeline.EvalElement._CACHED_CLIPS) = saved  # pylint: disable=protected-access


def recipe(phase: str, n: int, data: str, batch: int):
  """The UCF101 VideoMAE recipe of ``phase`` with grid side ``n`` on the scenes set."""
  c = recipes.videomae("ucf101", phase)
  c.time.n = n
  c.dataset.update(name="annotations", source="video", root=data, split="",
                   train_annotations=os.path.join(data, "train.txt"),
                   eval_annotations=os.path.join(data, "test.txt"),
                   classes_file=os.path.join(data, "classes.txt"), num_classes=0)
  c.input.update(batch_size=batch, eval_batch_size=batch, num_workers=0, read_threads=1)
  return c


def rate(config, split: str, seconds: float) -> tuple[float, float]:
  """``(clips/s, clips per CPU-second)`` of ``pipeline.build(config, split)``."""
  ds, _ = pipeline.build(config, split)
  it = iter(ds)
  next(it)  # opens files, starts Grain's thread
  clips, start, cpu = 0, time.perf_counter(), time.process_time()
  while True:
    try:
      clips += len(next(it)["frames"])
    except StopIteration:
      it = iter(ds)
      continue
    wall = time.perf_counter() - start
    if wall >= seconds:
      return clips / wall, clips / max(time.process_time() - cpu, 1e-9)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--ns", type=int, nargs="+", default=[1, 2, 4])
  parser.add_argument("--videos", type=int, default=16, help="generated clips")
  parser.add_argument("--data", default="", help="an existing scenes.write_dataset folder")
  parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
  parser.add_argument("--batch", type=int, default=8, help="clips per batch")
  parser.add_argument("--pretrain-repeats", type=int, default=None,
                      help="override the pretraining recipe's input.repeats")
  parser.add_argument("--skip-before", action="store_true", help="only the fast path")
  parser.add_argument("--threads", type=int, default=0,
                      help="also time the fast path with this many read threads")
  parser.add_argument("--randaugment-only", action="store_true",
                      help="only the fine-tuning rows with RandAugment (frm, win, cell)")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    data = args.data
    if not data:
      data = os.path.join(tmp, "scenes")
      start = time.perf_counter()
      scenes.write_dataset(data, num_videos=args.videos, test_fraction=0.25)
      print(f"generated {args.videos} clips in {time.perf_counter() - start:.0f} s")
    caches = {}
    threads = f" | {args.threads} threads (x 1 thread)" if args.threads else ""
    print(f"{'views':<10} {'N':>2} {'source':<6} {'repeats':>7} | {'before':>7} "
          f"{'after':>7} clips/s | {'after/before':>12} | after clips/CPU-s{threads}")
    # (row, recipe phase, input overrides, time the earlier path too). The earlier path
    # had no RandAugment, so its rows compare fine-tuning views without it.
    augmented = {"ft RA frm": "frames", "ft RA win": "frames_window",
                 "ft RA cell": "cells"}
    rows = [("ft no RA", "finetune", dict(randaugment=""), True)]
    rows += [(phase, "finetune", dict(randaugment_on=on), False)
             for phase, on in augmented.items()]
    rows += [("pretrain", "pretrain", {}, True), ("eval", "eval", {}, True)]
    if args.randaugment_only:
      rows = [row for row in rows if row[0] in augmented]
    per_cpu = {}  # (row, n, source) -> clips/CPU-s
    for n in args.ns:
      for phase, recipe_phase, overrides, with_before in rows:
        config = recipe("pretrain" if recipe_phase == "pretrain" else "finetune", n, data,
                        args.batch)
        config.input.update(overrides)
        if phase == "pretrain" and args.pretrain_repeats:
          config.input.repeats = args.pretrain_repeats
        split = "eval" if phase == "eval" else "train"
        for source in ("video", "packed"):
          if source == "packed":
            size = frame_cache.short_side_for(config)
            if size not in caches:
              caches[size] = os.path.join(tmp, f"packed_{size}")
              pack.pack(config, caches[size], short_side=size)
            config = config.copy_and_resolve_references()
            config.dataset.update(source="packed", packed_dir=caches[size])
          after, after_cpu = rate(config, split, args.seconds)
          per_cpu[phase, n, source] = after_cpu
          before = float("nan")
          if with_before and not args.skip_before:
            old = config.copy_and_resolve_references()
            old.input.repeats = 1
            with before_path():
              before, _ = rate(old, split, args.seconds)
          scaling = ""
          if args.threads:
            many = config.copy_and_resolve_references()
            many.input.read_threads = args.threads
            wide, _ = rate(many, split, args.seconds)
            scaling = f" | {wide:.1f} ({wide / after:.2f})"
          repeats = config.input.repeats if split == "train" else 1
          print(f"{phase:<10} {n:>2} {source:<6} {repeats:>7} | {before:>7.1f} "
                f"{after:>7.1f}         | {after / before:>12.2f} | {after_cpu:>6.1f}"
                f"{scaling}", flush=True)
    print("\nRandAugment paths, clips/CPU-s of this run (win = frames_window):")
    for n in args.ns:
      for source in ("video", "packed"):
        frm, win, cell = (per_cpu[phase, n, source] for phase in augmented)
        print(f"  N={n} {source:<6} frames {frm:6.1f}  win {win:6.1f}  cells {cell:6.1f}"
              f"  | win/frames {win / frm:5.2f}  win/cells {win / cell:5.2f}")


if __name__ == "__main__":
  main()
