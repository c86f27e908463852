r"""Is training input-bound? The real pipeline feeding the real train step, side by side
with the same step on a batch that already sits on the device.

    python bench/end_to_end.py --phase finetune --source packed --batch 32
    python bench/end_to_end.py --phase pretrain --source packed --batch 32
    python bench/end_to_end.py --small --workers 2 --batch 8      # tiny model, any CPU

The config is the paper's UCF101 VideoMAE recipe of ``--phase`` (`time_jax.recipes`:
its views, repeats, model and optimizer; ``--small`` swaps in a tiny model and 64²
clips) on UCF101-like generated footage (`time_jax.data.scenes`, or ``--data``), read
from video files or from the packed cache written for the config, with
``input.num_workers = --workers`` Grain processes (default: one per core, one read
thread each). Both rates run the loop's own jitted step (`time_jax.train.tasks`):
``synthetic`` repeats one device-resident batch (the pipeline's first, read in this
process), ``pipeline`` takes every batch from ``pipeline.build`` as the training loop
does, timed after a warm-up (`fraction`, the measure; `bench/gpu_report.py` uses it
too). The fraction ``pipeline / synthetic`` is 1.0 when the input never holds the step
back.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import jax
import ml_collections

from time_jax import recipes
from time_jax.data import pack
from time_jax.data import pipeline
from time_jax.data import scenes
from time_jax.train import steps as steps_lib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step  # pylint: disable=g-import-not-at-top,wrong-import-position


def on_footage(config: ml_collections.ConfigDict, data: str) -> None:
  """Points ``config.dataset`` at a `scenes.write_dataset` folder (its annotation
  files) instead of the recipe's dataset."""
  config.dataset.update(name="annotations", source="video", root=data, split="",
                        train_annotations=os.path.join(data, "train.txt"),
                        eval_annotations=os.path.join(data, "test.txt"),
                        classes_file=os.path.join(data, "classes.txt"), num_classes=0)


def time_steps(step, state, batches, *, warmup: int = 3, steps: int = 30,
               seconds: float = 0.0, multiple: int = 1, seed: int = 1
               ) -> tuple[float, object]:
  """``(steps/s, state)`` over at least ``steps`` steps and ``seconds`` seconds, a
  multiple of ``multiple`` steps, after ``warmup`` steps (with ``seconds``: or as many
  as fit in ``seconds`` after the first, if fewer); ``batches()`` gives each step's
  batch."""
  key = jax.random.PRNGKey(seed)
  m, begun = None, 0.0
  for i in range(warmup):
    state, m = step(state, batches(), jax.random.fold_in(key, i))
    if i == 0:  # the first batch has come (for a pipeline: its workers have started)
      jax.block_until_ready(m)
      begun = time.perf_counter()
    elif seconds and time.perf_counter() - begun > seconds:
      warmup = i + 1
      break
  jax.block_until_ready(m)
  done, start = 0, time.perf_counter()
  while done < steps or time.perf_counter() - start < seconds or done % multiple:
    state, m = step(state, batches(), jax.random.fold_in(key, warmup + done))
    done += 1
  jax.block_until_ready(m)
  return done / (time.perf_counter() - start), state


def fraction(step, state, config: ml_collections.ConfigDict, mesh, keys, *,
             steps: int = 30, seconds: float = 0.0) -> tuple[dict, object]:
  """``({'synthetic', 'pipeline', 'fraction'}, state)``: steps/s of the compiled
  ``step`` on a device-resident batch and fed by ``pipeline.build(config, 'train')``
  with ``config.input.num_workers`` workers, and their ratio.

  The device-resident batch is the pipeline's first, read in this process (with a
  thread per core), so the workers start only when the fed steps begin. Their warm-up,
  ``3 + 2 · workers`` steps (or ``seconds`` after the first batch, if less), takes the
  batches they finished together as they started, which would flatter the rate: with
  one read thread each (``input.read_threads = 1``) a worker holds at most
  ``input.worker_buffer_size + 1`` batches. Grain hands the workers' batches out in
  turn, so the fed steps are timed over whole turns (a multiple of ``workers`` steps):
  a window of part of a turn would catch a varying share of the batches the workers
  finish nearly together. Each rate takes at least ``steps`` steps; the fed one also
  at least ``seconds`` seconds, the resident one a quarter of that.
  """
  local = config.copy_and_resolve_references()
  local.input.update(num_workers=0, read_threads=max(config.input.read_threads,
                                                     os.cpu_count() or 1))
  ds, _ = pipeline.build(local, "train")
  it = iter(ds)
  first = steps_lib.global_batch(next(it), mesh, keys=keys)
  it.close()
  synthetic, state = time_steps(step, state, lambda: first, steps=steps,
                                seconds=seconds / 4)
  ds, _ = pipeline.build(config, "train")
  it = iter(ds)
  workers = config.input.num_workers
  try:
    real, state = time_steps(
        step, state, lambda: steps_lib.global_batch(next(it), mesh, keys=keys),
        warmup=3 + 2 * workers, steps=steps, seconds=seconds, multiple=max(1, workers))
  finally:
    it.close()
  return dict(synthetic=synthetic, pipeline=real, fraction=real / synthetic), state


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--phase", choices=("finetune", "pretrain"), default="finetune")
  parser.add_argument("--source", choices=("video", "packed"), default="packed")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="input.num_workers (default: the cores)")
  parser.add_argument("--read-threads", type=int, default=1,
                      help="input.read_threads of each worker")
  parser.add_argument("--batch", type=int, default=32, help="global batch (clips)")
  parser.add_argument("--n", type=int, default=2, help="TIME grid side N")
  parser.add_argument("--steps", type=int, default=30, help="timed steps per rate")
  parser.add_argument("--videos", type=int, default=64, help="generated clips")
  parser.add_argument("--data", default="", help="an existing scenes.write_dataset folder")
  parser.add_argument("--small", action="store_true", help="tiny model on 64² clips")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    data = args.data
    if not data:
      data = os.path.join(tmp, "scenes")
      scenes.write_dataset(data, num_videos=args.videos, test_fraction=0.1)
    config = recipes.videomae("ucf101", args.phase)
    on_footage(config, data)
    config.time.n = args.n
    config.input.update(batch_size=args.batch, eval_batch_size=args.batch,
                        num_workers=args.workers, read_threads=args.read_threads)
    config.checkpoint.init_from = ""
    if args.small:
      train_step.shrink(config, image_size=64)
    if args.source == "packed":
      out = os.path.join(tmp, "packed")
      pack.pack(config, out)
      config.dataset.update(source="packed", packed_dir=out)
    mesh, task, state, shardings, tx = train_step.create_state(config)
    step = train_step.compile_step(config, task, tx, shardings, mesh, state,
                                   train_step.random_batch(config, task, mesh, args.batch))
    r, state = fraction(step, state, config, mesh, task.batch_keys, steps=args.steps)
    print(f"{jax.device_count()} × {jax.devices()[0].device_kind}; {config.model.name} "
          f"{config.time.t_out}×{config.image_size}², N={config.time.n}, batch "
          f"{args.batch} ({config.input.repeats} views per video), {args.source}, "
          f"{args.workers} workers on {os.cpu_count()} cores")
    print(f"synthetic (device-resident batch): {r['synthetic']:7.2f} steps/s "
          f"{r['synthetic'] * args.batch:8.1f} clips/s")
    print(f"pipeline (pipeline.build)        : {r['pipeline']:7.2f} steps/s "
          f"{r['pipeline'] * args.batch:8.1f} clips/s")
    print(f"fraction pipeline / synthetic     : {r['fraction']:7.2f} "
          f"(1.0 = never input-bound)")


if __name__ == "__main__":
  main()
