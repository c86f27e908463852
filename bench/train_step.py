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
"""

import argparse
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


def _peak(device) -> float | None:
  kind = getattr(device, "device_kind", "")
  for name, flops in PEAK_FLOPS.items():
    if name.lower() in kind.lower():
      return flops
  return None


def _config(mode: str, small: bool, batch: int) -> ml_collections.ConfigDict:
  c = config_lib.base_config()
  c.mode = mode
  c.image_size, c.time.n, c.time.t_out = (32, 2, 4) if small else (224, 2, 16)
  c.input.batch_size = batch
  c.model.name = "videomae_b_pretrain" if mode == "pretrain" else "videomae_b"
  c.model.dtype = "float32" if small else "bfloat16"
  kw = dict(drop_path_rate=0.1 if mode == "finetune" else 0.0)
  if small:
    kw.update(patch_size=8, embed_dim=64, depth=2, num_heads=2)
    if mode == "pretrain":
      kw.update(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
  c.model.kwargs = ml_collections.ConfigDict(kw)
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
  mesh = sharding.make_mesh(config.mesh)
  model = models.from_config(config, 101)
  task = tasks.for_config(config, model, 101)
  state, shardings, tx = state_lib.create(
      task.init_fn(), lambda p: optimizer_lib.create(config, p, 100, 1000),
      jax.random.PRNGKey(0), mesh)
  step = steps_lib.jit_train_step(task.train_step(tx), shardings, mesh)
  cell = config.image_size // config.time.n
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (batch, config.time.t_out * config.time.n ** 2, cell, cell, 3),
                        dtype=np.uint8)
  batch_np = {"frames": frames, "label": rng.integers(0, 101, batch).astype(np.int32)}
  gb = steps_lib.global_batch(batch_np, mesh, keys=task.batch_keys)
  key = jax.random.PRNGKey(1)
  compiled = step.lower(state, gb, key).compile()
  flops = 3 * batch * flops_lib.forward_flops(model, config.time.t_out, config.image_size)
  for _ in range(3):  # warm-up
    state, m = compiled(state, gb, key)
  jax.block_until_ready(m)
  elapsed = []
  for r in range(3):  # the median of three rounds of `steps` steps
    start = time.perf_counter()
    for i in range(steps):
      state, m = compiled(state, gb, jax.random.fold_in(key, r * steps + i))
    jax.block_until_ready(m)
    elapsed.append(time.perf_counter() - start)
  elapsed = sorted(elapsed)[1]
  rate = steps / elapsed
  peak = _peak(jax.devices()[0])
  mfu = flops * rate / (peak * jax.device_count()) if peak and flops else None
  return dict(mode=mode, steps_per_sec=rate, clips_per_sec=rate * batch,
              tflops_per_step=flops / 1e12, mfu=mfu)


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
