r"""Steps/s, clips/s and MFU of the jitted finetune and pretrain steps, in one run.

    python bench/train_step.py                  # VideoMAE-B, 16×224², T*=16, N=2, bf16
    python bench/train_step.py --small          # a tiny model at 32², checks it on CPU

The steps are the training loop's own (`time_jax.train.steps`: TIME arrangement,
mixup/cutmix or tube masking, forward, backward, AdamW with layer decay), jitted with
the loop's shardings over all devices (data parallel). FLOPs are model FLOPs
(`time_jax.models.flops`: 3 × the forward's matrix products, whatever kernels run; XLA's
own count misses fused-attention and library calls on GPU); MFU = FLOPs × steps/s /
(devices × peak bf16 FLOP/s of the device, from a small table; unknown devices report no
MFU).

    python bench/train_step.py --ablate         # also finetune without mixup, layer
                                                # decay or drop path

The pieces (`create_state`, `compile_step`, `time_compiled`, `rate`, `step_flops`,
`shrink`)
also serve `bench/gpu_report.py` and `bench/end_to_end.py`.
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import ml_collections
import numpy as np

from time_jax import config as config_lib
from time_jax import models
from time_jax.models import flops as flops_lib
from time_jax.train import optimizer as optimizer_lib
from time_jax.train import sharding
from time_jax.train import state as state_lib
from time_jax.train import steps as steps_lib
from time_jax.train import tasks

# Dense bf16 peak FLOP/s per device (vendor data sheets, no sparsity).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12,
              "A10": 125e12, "V100": 125e12}
NUM_CLASSES = 101  # UCF101


def peak_flops(device) -> float | None:
  """Dense bf16 peak FLOP/s of ``device`` (`PEAK_FLOPS`), None when unknown."""
  kind = getattr(device, "device_kind", "")
  for name, flops in PEAK_FLOPS.items():
    if name.lower() in kind.lower():
      return flops
  return None


def shrink(config: ml_collections.ConfigDict, image_size: int = 32) -> None:
  """A tiny model of ``config.model.name``'s family on ``image_size``² clips of 4
  frames (ViT, ResNet: the recipe's T*), float32: the same code paths in seconds on a CPU."""
  config.image_size, config.model.dtype = image_size, "float32"
  name, kw = config.model.name, dict(config.model.kwargs)
  if name.startswith("resnet"):
    kw.update(stages=(1, 1, 1, 1))
  else:
    config.time.t_out = min(config.time.t_out, 4)
    kw.update(patch_size=8, embed_dim=32, depth=1, num_heads=2)
    if name.startswith("videomae"):
      kw.update(tubelet_size=2)
    if models.is_pretrainer(name):
      kw.update(decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
  config.model.kwargs = ml_collections.ConfigDict(kw)


def create_state(config: ml_collections.ConfigDict, num_classes: int = NUM_CLASSES):
  """``(mesh, task, state, shardings, tx)`` of ``config`` on all devices.

  The state depends on the model's parameters and the optimizer only, so one serves
  every ``model.kwargs.impl`` and ``model.remat`` of a model (`make_task`)."""
  mesh = sharding.make_mesh(config.mesh)
  task = make_task(config, num_classes)
  state, shardings, tx = state_lib.create(
      task.init_fn(), lambda p: optimizer_lib.create(config, p, 100, 1000),
      jax.random.PRNGKey(0), mesh)
  return mesh, task, state, shardings, tx


def make_task(config: ml_collections.ConfigDict, num_classes: int = NUM_CLASSES):
  """The task (`time_jax.train.tasks`) of ``config``'s model, mode and kernels."""
  return tasks.for_config(config, models.from_config(config, num_classes), num_classes)


def random_batch(config: ml_collections.ConfigDict, task, mesh, batch: int, seed: int = 0):
  """A device-resident global batch of ``batch`` clips as the pipeline gives them:
  uint8 ``frames [batch, t_out·n², H*/n, W*/n, 3]`` and ``label [batch]``. The step's
  speed does not depend on the pixels."""
  cell, n = config.image_size // config.time.n, config.time.n
  rng = np.random.default_rng(seed)
  frames = rng.integers(0, 256, (batch, config.time.t_out * n * n, cell, cell, 3),
                        dtype=np.uint8)
  labels = rng.integers(0, NUM_CLASSES, batch).astype(np.int32)
  return steps_lib.global_batch({"frames": frames, "label": labels}, mesh,
                                keys=task.batch_keys)


def compile_step(config: ml_collections.ConfigDict, task, tx, shardings, mesh, state, batch):
  """The loop's train step of ``task``, jitted as the loop does and compiled for
  ``(state, batch)``."""
  step = steps_lib.jit_train_step(task.train_step(tx), shardings, mesh,
                                  remat=config.model.remat)
  return step.lower(state, batch, jax.random.PRNGKey(1)).compile()


def step_flops(config: ml_collections.ConfigDict, task, batch: int) -> float:
  """Model FLOPs of one training step of ``batch`` clips (3 × forward,
  `time_jax.models.flops`)."""
  return 3 * batch * flops_lib.forward_flops(task.model, config.time.t_out,
                                             config.image_size)


def rate(call, *, steps: int | None = None, round_s: float = 0.4, rounds: int = 3,
         warmup: int = 1) -> float:
  """Calls/s of ``call()`` (which returns arrays to wait for): the median of ``rounds``
  rounds of ``steps`` calls after ``warmup`` calls; ``steps=None``: as many as fill
  ``round_s`` seconds, from one more timed call."""
  for _ in range(warmup):
    jax.block_until_ready(call())
  if steps is None:
    start = time.perf_counter()
    jax.block_until_ready(call())
    steps = max(1, min(200, math.ceil(round_s / (time.perf_counter() - start))))
  elapsed = []
  for _ in range(rounds):
    start = time.perf_counter()
    out = None
    for _ in range(steps):
      out = call()
    jax.block_until_ready(out)
    elapsed.append(time.perf_counter() - start)
  return steps / sorted(elapsed)[len(elapsed) // 2]


def time_compiled(compiled, state, batch, *, steps: int | None = None, round_s: float = 0.4,
                  rounds: int = 3, warmup: int = 3, seed: int = 1):
  """``(steps/s, state)`` of the compiled train step on one batch (`rate`)."""
  key, box = jax.random.PRNGKey(seed), {"state": state, "i": 0}

  def one_step():
    box["i"] += 1
    box["state"], metrics = compiled(box["state"], batch, jax.random.fold_in(key, box["i"]))
    return metrics

  return (rate(one_step, steps=steps, round_s=round_s, rounds=rounds, warmup=warmup),
          box["state"])


def _config(mode: str, small: bool, batch: int) -> ml_collections.ConfigDict:
  c = config_lib.base_config()
  c.mode = mode
  c.time.n, c.time.t_out = 2, 16
  c.input.batch_size = batch
  c.model.name = "videomae_b_pretrain" if mode == "pretrain" else "videomae_b"
  c.model.kwargs = ml_collections.ConfigDict(
      dict(drop_path_rate=0.1 if mode == "finetune" else 0.0))
  if small:
    shrink(c)
  c.pretrain.mask_ratio = 0.9
  c.optimizer.layer_decay = 1.0 if mode == "pretrain" else 0.75
  c.mesh.update(data=-1, fsdp=1, model=1)
  return c


def bench(mode: str, small: bool, batch: int, steps: int, **overrides) -> dict:
  config = _config(mode, small, batch)
  for key, value in overrides.items():
    node = config
    *path, leaf = key.split(".")
    for part in path:
      node = node[part]
    node[leaf] = value
  mesh, task, state, shardings, tx = create_state(config)
  gb = random_batch(config, task, mesh, batch)
  compiled = compile_step(config, task, tx, shardings, mesh, state, gb)
  per_sec, _ = time_compiled(compiled, state, gb, steps=steps)
  flops = step_flops(config, task, batch)
  peak = peak_flops(jax.devices()[0])
  mfu = flops * per_sec / (peak * jax.device_count()) if peak and flops else None
  return dict(mode=mode, steps_per_sec=per_sec, clips_per_sec=per_sec * batch,
              tflops_per_step=(flops or 0) / 1e12, mfu=mfu)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--small", action="store_true", help="tiny model at 32² (CPU check)")
  parser.add_argument("--batch", type=int, default=0, help="global batch (default 8/dev)")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--ablate", action="store_true",
                      help="also finetune without mixup, layer decay, drop path")
  args = parser.parse_args()
  batch = args.batch or (2 if args.small else 8) * jax.device_count()
  print(f"{jax.device_count()} × {jax.devices()[0].device_kind}, batch {batch}, "
        f"{'small' if args.small else 'VideoMAE-B 16×224², T*=16, N=2, bf16'}")
  rows = [("finetune", "finetune", {}), ("pretrain", "pretrain", {})]
  if args.ablate:
    rows += [("ft no mixup", "finetune", {"train.mixup_prob": 0.0}),
             ("ft no layer decay", "finetune", {"optimizer.layer_decay": 1.0}),
             ("ft no drop path", "finetune", {"model.kwargs.drop_path_rate": 0.0}),
             ("ft none of them", "finetune", {"train.mixup_prob": 0.0,
                                              "optimizer.layer_decay": 1.0,
                                              "model.kwargs.drop_path_rate": 0.0})]
  for label, mode, overrides in rows:
    r = bench(mode, args.small, batch, args.steps, **overrides)
    mfu = "n/a (unknown device peak)" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    print(f"{label:18s} {r['steps_per_sec']:8.2f} steps/s  {r['clips_per_sec']:9.1f} clips/s  "
          f"{r['tflops_per_step']:8.3f} TFLOP/step  MFU {mfu}", flush=True)


if __name__ == "__main__":
  main()
