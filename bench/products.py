"""Benchmark: the matrix products of our training steps, in XLA and in PyTorch's kernels.

`bench/models.py` compares whole steps. This script asks how much of a gap the products
alone explain: it traces our jitted fwd+bwd step of each model (the same steps as
`bench/models.py`), collects every live ``dot_general`` in it (forward, input gradient and
weight gradient, attention's batched products), and times each distinct product on
random operands of its shapes, jitted alone in JAX and as ``torch.einsum`` on the same
device, in three alternating blocks of calls. It prints, per model, the products ranked
by their share of the step (count x time) and the totals with their ratio ours / PyTorch
(< 1: XLA is faster).

Products timed alone are not the step: XLA may fuse an elementwise producer into a
product, or run two independent products at once. The totals are the time the step's
products need in each library's kernels, not a decomposition of the step time.

  python bench/products.py --small        # batch 1, 112², 8 / 4 frames: a minute on a CPU
  python bench/products.py                # batch 8, 224², 16 / 8 frames
  python bench/products.py --small --impl xla   # the products of XLA's own autodiff

Rows and sizes are `bench/models.py`'s (ViT-B/16 and VideoMAE-B; not ResNet-50, whose
stem is a convolution).
"""

import argparse
import collections
import statistics
import string
import time

import jax
import jax.numpy as jnp
import numpy as np

from time_jax.models import ops

import models as model_bench  # bench/models.py: the same steps and sizes


def _live_products(jaxpr, counts, times=1):
  """Adds ``(lhs shape, rhs shape, dimension_numbers, dtype) -> count`` for every
  ``dot_general`` whose result is used, in ``jaxpr`` and the jaxprs its equations call."""
  needed = {v for v in jaxpr.outvars if isinstance(v, jax.extend.core.Var)}
  for eqn in reversed(jaxpr.eqns):
    if not any(v in needed for v in eqn.outvars):
      continue  # dead: XLA removes it (the input gradient of the patch embedding, ...)
    needed.update(v for v in eqn.invars if isinstance(v, jax.extend.core.Var))
    if eqn.primitive.name == "dot_general":
      lhs, rhs = (v.aval for v in eqn.invars)
      dims = tuple(tuple(map(tuple, d)) for d in eqn.params["dimension_numbers"])
      counts[(lhs.shape, rhs.shape, dims, jnp.dtype(lhs.dtype).name)] += times
    if eqn.primitive.name == "while":
      raise NotImplementedError("a while loop: its trip count is not in the jaxpr")
    inner = times * eqn.params["length"] if eqn.primitive.name == "scan" else times
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      _live_products(sub, counts, inner)
  return counts


def _einsum_spec(lhs_ndim, rhs_ndim, dims):
  """``dot_general`` dimension numbers as an einsum string (same output axis order)."""
  (lc, rc), (lb, rb) = dims
  letters = iter(string.ascii_letters)
  lhs = [next(letters) for _ in range(lhs_ndim)]
  rhs = [None] * rhs_ndim
  for i, j in zip(lc + lb, rc + rb):
    rhs[j] = lhs[i]
  rhs = [r or next(letters) for r in rhs]
  out = ([lhs[i] for i in lb] + [a for i, a in enumerate(lhs) if i not in lc + lb]
         + [a for j, a in enumerate(rhs) if j not in rc + rb])
  return f"{''.join(lhs)},{''.join(rhs)}->{''.join(out)}"


def _flops(lhs_shape, rhs_shape, dims):
  """``2 * batch * m * k * n``: every lhs element meets every free rhs column."""
  (_, rc), (_, rb) = dims
  return 2 * np.prod(lhs_shape) * np.prod(
      [d for j, d in enumerate(rhs_shape) if j not in rc + rb])


def _time_pair(key, repeats):
  """Median seconds of one product: (XLA jitted alone, torch.einsum)."""
  import torch  # pylint: disable=g-import-not-at-top
  lhs_shape, rhs_shape, dims, dtype = key
  rng = np.random.default_rng(0)
  a, b = (rng.standard_normal(s).astype(np.float32) for s in (lhs_shape, rhs_shape))
  ja, jb = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
  product = jax.jit(lambda x, y: jax.lax.dot_general(x, y, dims))
  ta, tb = (torch.from_numpy(v).to(getattr(torch, dtype)) for v in (a, b))
  spec = _einsum_spec(len(lhs_shape), len(rhs_shape), dims)
  ours = lambda: product(ja, jb).block_until_ready()  # pylint: disable=unnecessary-lambda-assignment
  theirs = lambda: torch.einsum(spec, ta, tb)  # pylint: disable=unnecessary-lambda-assignment
  # The same product in both (the einsum string is right): sums of k unit normals.
  k = np.prod([lhs_shape[i] for i in dims[0][0]])
  np.testing.assert_allclose(np.asarray(ours(), np.float32), theirs().float().numpy(),
                             rtol=1e-3, atol=1e-4 * np.sqrt(k))
  # Blocks of calls, not alternate calls: a library's worker threads spin for a while
  # after each call, and would take the cores from the other one's next call.
  t_ours, t_theirs = [], []
  for _ in range(3):
    for fn, times in ((ours, t_ours), (theirs, t_theirs)):
      for i in range(repeats + 2):
        start = time.perf_counter()
        fn()
        if i >= 2:  # the first two warm the threads and caches up
          times.append(time.perf_counter() - start)
  return statistics.median(t_ours), statistics.median(t_theirs)


# ResNet-50's 7x7 stem is a convolution, not a product: its row would not be the whole
# story of the step's products, so it is left to bench/models.py.
_SKIP = ("resnet50",)


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  model_bench.add_step_args(p)
  p.add_argument("--repeats", type=int, default=20)
  p.add_argument("--top", type=int, default=8, help="products listed per model")
  args = p.parse_args()
  model_bench.apply_small(args)
  import torch  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != "cpu":
    raise SystemExit("bench/products.py compares CPU kernels: run it with JAX_PLATFORMS=cpu.")
  print(f"device: {jax.devices()[0].device_kind} / torch cpu ({torch.get_num_threads()} "
        f"threads)  batch {args.batch}  {args.size}²  impl {ops.resolve(args.impl)}  each product alone, "
        f"median of {args.repeats}")
  cache = {}
  for case in model_bench.build_cases(args, torch.device("cpu"), gpu=False):
    if case.name.startswith(_SKIP) or not model_bench.selected(case.name, args.only):
      continue
    name, step = case.name, case.ours()  # a partial of the jitted fwd+bwd step
    counts = _live_products(jax.make_jaxpr(step.func)(*step.args).jaxpr,
                            collections.Counter())
    rows = []
    for key, n in counts.items():
      if key not in cache:
        cache[key] = _time_pair(key, args.repeats)
      t_ours, t_theirs = cache[key]
      rows.append((n * t_ours, n * t_theirs, n, key))
    rows.sort(key=lambda r: -r[0])
    total_ours, total_theirs = sum(r[0] for r in rows), sum(r[1] for r in rows)
    gflop = sum(n * _flops(*key[:3]) for *_, n, key in rows) / 1e9
    print(f"\n{name}: {sum(counts.values())} products, {gflop:.1f} GFLOP per step")
    print(f"  {'lhs x rhs, contracted (k) and batch (b) axes':<52} {'n':>3} {'ours ms':>8} "
          f"{'torch ms':>8} {'ratio':>6}")
    for t_ours, t_theirs, n, (lhs, rhs, dims, _) in rows[:args.top]:
      (lc, rc), (lb, rb) = dims
      shape = f"{list(lhs)} x {list(rhs)}  k {list(lc)}/{list(rc)}" + (
          f" b {list(lb)}/{list(rb)}" if lb else "")
      print(f"  {shape:<52} {n:3d} {t_ours * 1e3:8.1f} {t_theirs * 1e3:8.1f} "
            f"{t_ours / t_theirs:6.2f}")
    print(f"  {'all products':<52} {'':>3} {total_ours * 1e3:8.1f} "
          f"{total_theirs * 1e3:8.1f} {total_ours / total_theirs:6.2f}  "
          f"({gflop / total_ours:.0f} / {gflop / total_theirs:.0f} GFLOP/s)", flush=True)


if __name__ == "__main__":
  main()
