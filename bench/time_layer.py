"""Benchmark: what the TIME arrangement costs on top of the cast + normalise pass.

For each N, times (median over repeats, measured side by side in one run):
  * ``time``:  the jitted arrange + cast + normalise (`time_layer.preprocess`), and
  * ``plain``: the jitted cast + normalise alone on the same uint8 data,
and prints their ratio. Target: ratio <= 1.10, i.e. the arrangement costs nothing
beyond the pass the data needs anyway.

  python bench/time_layer.py                      # batch 32, T* = 16, 224x224
  python bench/time_layer.py --batch 4 --repeats 5  # a quick look on a small CPU
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from time_jax import time_layer


def _median_seconds(fn, x, repeats):
  fn(x).block_until_ready()  # compile and warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(x).block_until_ready()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--t-out", type=int, default=16)
  p.add_argument("--size", type=int, default=224)
  p.add_argument("--ns", default="1,2,4,7,14")
  p.add_argument("--arrangement", default="spatial", choices=time_layer.ARRANGEMENTS)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--repeats", type=int, default=20)
  args = p.parse_args()
  dtype = jnp.dtype(args.dtype)
  mean = np.asarray(time_layer.IMAGENET_MEAN, np.float32)
  std = np.asarray(time_layer.IMAGENET_STD, np.float32)

  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}  batch {args.batch}  "
        f"T* {args.t_out}  {args.size}x{args.size}  {args.arrangement}  {args.dtype}")
  print(f"{'N':>3} {'input shape':>26} {'time ms':>9} {'plain ms':>9} {'ratio':>6}")
  for n in [int(v) for v in args.ns.split(",")]:
    cell = args.size // n
    shape = (args.batch, args.t_out * n * n, cell, cell, 3)
    x = jax.device_put(np.random.default_rng(n).integers(0, 256, shape, dtype=np.uint8))

    with_time = jax.jit(lambda v, n=n: time_layer.preprocess(
        v, n=n, arrangement=args.arrangement, size=(args.size, args.size), dtype=dtype))
    plain = jax.jit(lambda v: (v.astype(jnp.float32) * (1.0 / (255.0 * std))
                               + (-mean / std)).astype(dtype))
    # Interleave the two so drift (clocks, other load) affects both alike.
    t_time, t_plain = [], []
    for _ in range(3):
      t_time.append(_median_seconds(with_time, x, args.repeats))
      t_plain.append(_median_seconds(plain, x, args.repeats))
    a, b = min(t_time), min(t_plain)
    print(f"{n:>3} {str(shape):>26} {a * 1e3:>9.2f} {b * 1e3:>9.2f} {a / b:>6.2f}")


if __name__ == "__main__":
  main()
