r"""Clips/s of feature extraction, side by side with its two halves alone.

    python bench/extract.py --small                         # the demo's model, any CPU
    python bench/extract.py --threads 8 --workers 4         # VideoMAE-B, 224², on a GPU

The config is the paper's UCF101 VideoMAE fine-tuning recipe (`time_jax.recipes`: its
evaluation views, 5 clips × 3 crops, T* = 16, 224², VideoMAE-B; ``--small`` swaps in the
demo's tiny VideoMAE on 64² clips of one frame, ``--views`` fewer views) on UCF101-like
generated footage (`time_jax.data.scenes`: 320×240, 180 frames, H.264), with random
weights (the speed does not depend on them). Three rates over the same videos, in one
run, after compiling:

* ``input``: `pipeline.build(config, 'eval')` alone, every batch read and dropped;
* ``model``: the extractor's jitted step (`time_jax.extract.Extractor`) on one batch
  that stays on the device;
* ``extract``: `time_jax.extract.extract` end to end into a temporary folder (the
  pipeline feeding the step, gathering, merging, writing the .npy rows and the index).

``input`` and ``extract`` alternate over ``--repeats`` passes (their medians).

``extract / min(input, model)`` is 1.0 when extraction runs at the speed of its slower
half, i.e. adds nothing of its own and overlaps the two (an accelerator runs the model
while the host decodes). On a CPU the model and the decoding share the cores, so the
bound is the two in series, ``1 / (1/input + 1/model)``; ``extract / serial`` is 1.0
when extraction reaches it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from time_jax import checkpoints
from time_jax import extract
from time_jax import models
from time_jax import recipes
from time_jax.data import pipeline
from time_jax.data import scenes
from time_jax.data import sources
from time_jax.data.base import Splits
from time_jax.train import steps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position


def _config(args, data: str):
  c = input_pipeline.recipe("finetune", args.n, data, args.batch)
  c.input.update(read_threads=args.threads, num_workers=args.workers)
  c.dataset.max_bad_fraction = 1.0
  if args.small:  # the demo's model and clip
    demo = recipes.demo(args.n)
    c.model, c.image_size, c.time.t_out = demo.model, demo.image_size, demo.time.t_out
  if args.views:
    c.input.eval_clips, c.input.eval_crops = (int(v) for v in args.views.split("x"))
  return c


def _random_checkpoint(config, num_classes: int) -> checkpoints.Checkpoint:
  model = models.from_config(config, num_classes, dtype=jnp.float32)
  x = jnp.zeros((1, config.time.t_out, config.image_size, config.image_size, 3))
  variables = nn.unbox(jax.jit(lambda k: model.init(k, x, train=False))(
      jax.random.PRNGKey(0)))
  return checkpoints.Checkpoint("(random weights)", "ported", jax.device_get(variables),
                                config, [f"class_{i}" for i in range(num_classes)])


def input_rate(extractor: extract.Extractor, records, reader) -> float:
  """Clips/s of one pass of the eval pipeline over ``records``, batches dropped."""
  ds, _ = pipeline.build(extractor.config, "eval", reader=reader,
                         splits=Splits([], list(records), []))
  start, clips = time.perf_counter(), 0
  for batch in ds:
    clips += int(batch["valid"].sum())
  return clips / (time.perf_counter() - start)


def model_rate(extractor: extract.Extractor, seconds: float) -> float:
  """Clips/s of the jitted step on one device-resident batch."""
  c = extractor.config
  cell = c.image_size // c.time.n
  frames = np.zeros((c.input.eval_batch_size, c.time.t_out * c.time.n ** 2, cell, cell, 3),
                    np.uint8)
  x = steps.global_batch({"frames": frames}, extractor.mesh)["frames"]
  jax.block_until_ready(extractor.step(extractor.variables, x))
  start, clips = time.perf_counter(), 0
  while time.perf_counter() - start < seconds:
    out = extractor.step(extractor.variables, x)
    clips += len(frames)
  jax.block_until_ready(out)
  return clips / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--small", action="store_true", help="the demo's model and clip")
  parser.add_argument("--n", type=int, default=2, help="TIME's N")
  parser.add_argument("--views", default="", help="clips x crops (default: the recipe's)")
  parser.add_argument("--videos", type=int, default=16, help="generated clips")
  parser.add_argument("--data", default="", help="an existing scenes.write_dataset folder")
  parser.add_argument("--batch", type=int, default=32, help="views per batch")
  parser.add_argument("--threads", type=int, default=2, help="input.read_threads")
  parser.add_argument("--workers", type=int, default=0, help="input.num_workers")
  parser.add_argument("--seconds", type=float, default=5.0, help="of the model alone")
  parser.add_argument("--repeats", type=int, default=3,
                      help="passes of input and extract, alternated (medians)")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    data = args.data or os.path.join(tmp, "scenes")
    if not args.data:
      scenes.write_dataset(data, num_videos=args.videos, test_fraction=0.25)
    config = _config(args, data)
    splits = sources.load_splits(config)
    records = splits.train + splits.eval
    extractor = extract.Extractor(_random_checkpoint(config, len(splits.class_names)),
                                  config)
    reader = sources.make_reader(extractor.config)
    views = extractor.num_views
    print(f"{jax.devices()[0].device_kind} x {jax.device_count()}: {config.model.name}, "
          f"{config.image_size}², T* = {config.time.t_out}, N = {config.time.n}, "
          f"{config.input.eval_clips}x{config.input.eval_crops} views of {len(records)} "
          f"videos, batch {extractor.config.input.eval_batch_size}, "
          f"{args.threads} read threads, {args.workers} workers")
    model = model_rate(extractor, args.seconds)  # compiles the step first
    items = [extract.Item(r, r.name, r.label, i) for i, r in enumerate(records)]
    inputs, extracts = [], []
    for r in range(args.repeats):  # alternated, so that both see the same machine
      inputs.append(input_rate(extractor, records, reader))
      start = time.perf_counter()
      extract.extract(extractor, items, reader, os.path.join(tmp, f"out_{r}"))
      extracts.append(len(records) * views / (time.perf_counter() - start))
    inp, ext = float(np.median(inputs)), float(np.median(extracts))
    print("passes, clips/s: input " + " ".join(f"{x:.0f}" for x in inputs) + "; extract "
          + " ".join(f"{x:.0f}" for x in extracts))
    print(f"{'':<8} {'clips/s':>8} {'videos/s':>9}")
    for name, rate in (("input", inp), ("model", model), ("extract", ext)):
      print(f"{name:<8} {rate:8.1f} {rate / views:9.2f}")
    serial = 1 / (1 / inp + 1 / model)
    print(f"extract / min(input, model) = {ext / min(inp, model):.2f}, extract / serial "
          f"= {ext / serial:.2f} (serial: {serial:.1f} clips/s)")


if __name__ == "__main__":
  main()
