r"""Is training input-bound? The real pipeline feeding the real train step, side by side
with the same step on a batch that already sits on the device.

    python bench/end_to_end.py --phase finetune --source packed --workers 16 --batch 32
    python bench/end_to_end.py --phase pretrain --source packed --workers 16 --batch 32
    python bench/end_to_end.py --small --workers 2 --batch 8      # tiny model, any CPU

The config is the paper's UCF101 VideoMAE recipe of ``--phase`` (`time_jax.recipes`:
its views, repeats, model and optimizer; ``--small`` swaps in a tiny model and 64²
clips) on UCF101-like generated footage (`time_jax.data.scenes`, or ``--data``), read
from video files or from the packed cache written for the config, with
``input.num_workers = --workers`` Grain processes. Both rates run the loop's own jitted
step (`time_jax.train.tasks`): ``synthetic`` repeats one device-resident batch,
``pipeline`` takes every batch from ``pipeline.build`` as the training loop does. The
fraction ``pipeline / synthetic`` is 1.0 when the input never holds the step back.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import jax

from time_jax import models
from time_jax.data import pack
from time_jax.data import pipeline
from time_jax.data import scenes
from time_jax.train import optimizer as optimizer_lib
from time_jax.train import sharding
from time_jax.train import state as state_lib
from time_jax.train import steps as steps_lib
from time_jax.train import tasks

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position


def _small(config) -> None:
  """A tiny VideoMAE on 64² clips of 4 frames (N = 2), float32: checks on a CPU."""
  config.image_size, config.time.t_out = 64, 4
  config.model.dtype = "float32"
  kw = dict(patch_size=8, tubelet_size=2, embed_dim=64, depth=2, num_heads=2,
            drop_path_rate=0.0)
  if config.mode == "pretrain":
    kw.update(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
  config.model.kwargs = kw


def _time_steps(step, state, batches, key, steps: int) -> tuple[float, object]:
  """Steps/s over ``steps`` steps after 3 warm-up steps; ``batches()`` gives each batch."""
  for i in range(3):
    state, m = step(state, batches(), jax.random.fold_in(key, i))
  jax.block_until_ready(m)
  start = time.perf_counter()
  for i in range(steps):
    state, m = step(state, batches(), jax.random.fold_in(key, 3 + i))
  jax.block_until_ready(m)
  return steps / (time.perf_counter() - start), state


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--phase", choices=("finetune", "pretrain"), default="finetune")
  parser.add_argument("--source", choices=("video", "packed"), default="packed")
  parser.add_argument("--workers", type=int, default=16, help="input.num_workers")
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
    config = input_pipeline.recipe(args.phase, args.n, data, args.batch)
    config.input.update(num_workers=args.workers, read_threads=4)
    config.checkpoint.init_from = ""
    if args.small:
      _small(config)
    if args.source == "packed":
      out = os.path.join(tmp, "packed")
      pack.pack(config, out)
      config.dataset.update(source="packed", packed_dir=out)
    mesh = sharding.make_mesh(config.mesh)
    ds, info = pipeline.build(config, "train")
    model = models.from_config(config, info.num_classes)
    task = tasks.for_config(config, model, info.num_classes)
    state, shardings, tx = state_lib.create(
        task.init_fn(), lambda p: optimizer_lib.create(config, p, 100, 10_000),
        jax.random.PRNGKey(0), mesh)
    step = steps_lib.jit_train_step(task.train_step(tx), shardings, mesh)
    key = jax.random.PRNGKey(1)
    it = iter(ds)
    first = steps_lib.global_batch(next(it), mesh, keys=task.batch_keys)
    synthetic, state = _time_steps(step, state, lambda: first, key, args.steps)
    real, state = _time_steps(
        step, state, lambda: steps_lib.global_batch(next(it), mesh, keys=task.batch_keys),
        key, args.steps)
    it.close()
    print(f"{jax.device_count()} × {jax.devices()[0].device_kind}; {config.model.name} "
          f"{config.time.t_out}×{config.image_size}², N={config.time.n}, batch "
          f"{args.batch} ({config.input.repeats} views per video), {args.source}, "
          f"{args.workers} workers on {os.cpu_count()} cores")
    print(f"synthetic (device-resident batch): {synthetic:7.2f} steps/s "
          f"{synthetic * args.batch:8.1f} clips/s")
    print(f"pipeline (pipeline.build)        : {real:7.2f} steps/s "
          f"{real * args.batch:8.1f} clips/s")
    print(f"fraction pipeline / synthetic     : {real / synthetic:7.2f} "
          f"(1.0 = never input-bound)")


if __name__ == "__main__":
  main()
