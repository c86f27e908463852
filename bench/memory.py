r"""Peak memory and compile time of the jitted training step, per ``config.model.remat``.

    python bench/memory.py                 # the paper configs below, remat none/block/full
    python bench/memory.py --small         # a tiny model at 32²: checks the script on CPU
    python bench/memory.py --policies      # 'block' with saved attention products too
    python bench/memory.py --scan          # compile seconds, blocks unrolled vs scanned
    python bench/memory.py --rows videomae_b:256 --accum 8   # one GPU, the paper's step

The step is the training loop's own (`time_jax.train.tasks` / `time_jax.train.steps`,
built as ``bench/train_step.py`` builds it: TIME arrangement, mixup/cutmix, forward,
backward, AdamW with layer decay, the state donated), lowered ahead of time from
``jax.ShapeDtypeStruct`` inputs and compiled: nothing is allocated, so sizes beyond the
host's memory are fine. Configs are the recipes' (`time_jax.recipes`, UCF101 fine-tuning,
N = 2, bfloat16 compute): VideoMAE-B (``videomae_b``, T* = 16 frames of 224²) and ViT-B/16
(``vit_b16``, T* = 1 grid of 224²) at batch 8 and 32, and VideoMAE-L (``videomae_l``) at
batch 32.

XLA's ``memory_analysis()`` of the compiled step gives the bytes of its arguments (the
train state and the batch), its outputs (the new state and the metrics), the outputs
that alias donated arguments, and ``temp``: the peak of the intermediate buffers live at
one time (activations kept for the backward pass, gradients, workspaces). Arguments and
outputs live through the whole step, so the step's peak is
``peak = arguments + outputs - aliased + temp``; that is the figure to hold against a
device's memory. ``GFLOP`` is XLA's count for the compiled step (recomputation included).

``--scan`` measures what scanning over the blocks (``nn.scan``, one compiled block body)
would save in compile time, on prototypes that live here and not in the models: the
blocks unrolled (the models), scanned with their parameters stacked under ``blocks``
(a layout that ports, checkpoints, layer decay and diagnose do not read), and scanned over
the ``blocks_{i}`` parameters stacked inside the step (the same parameters). It compiles
``value_and_grad`` of the cross-entropy of the model alone (the prototypes give every
block the same drop path rate, which compiles alike), and reports the seconds of lowering
plus compiling, wall and CPU (this process's; less disturbed by other load), the least
of ``--repeats``, with XLA's ``temp`` bytes.

On CPU the step compiles with `time_jax.models.ops.CPU_REMAT_COMPILER_OPTIONS`,
which keeps the optimisation barriers of `jax.checkpoint` (XLA:CPU otherwise merges the
recomputation back into the forward pass), and with the CPU kernel set (explicit softmax
attention, ``[batch, heads, tokens, tokens]`` in memory); a GPU's fused attention never
holds those, so its figures for the same step would be lower (not measured here).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn

from time_jax import models
from time_jax import recipes
from time_jax.models import ops
from time_jax.models import transformer
from time_jax.train import optimizer as optimizer_lib
from time_jax.train import sharding
from time_jax.train import state as state_lib
from time_jax.train import steps as steps_lib
from time_jax.train import tasks

NUM_CLASSES = 101  # UCF101
# (model, batch): the rows of the default run.
ROWS = [("videomae_b", 8), ("videomae_b", 32), ("vit_b16", 8), ("vit_b16", 32),
        ("videomae_l", 32)]
# --scan: depth 12 and 24.
SCAN_ROWS = [("vit_b16", 8), ("videomae_b", 8), ("vit_l16", 8), ("videomae_l", 8)]
REMATS = ("none", "block", "full")
# --policies: 'block' against 'block_dots', which saves every product (attention's too).
BLOCK_DOTS = jax.checkpoint_policies.checkpoint_dots


def _config(name: str, batch: int, remat: str, small: bool,
            accum: int = 1) -> ml_collections.ConfigDict:
  if name.startswith("vit"):
    c = recipes.image_model("vit_b16", "ucf101")
  else:
    c = recipes.videomae("ucf101", "finetune")
  c.model.name = name
  c.input.batch_size = batch
  c.optimizer.accum_steps = accum
  c.model.remat = remat
  c.mesh.update(data=-1, fsdp=1, model=1)
  if small:
    c.image_size, c.model.dtype = 32, "float32"
    c.time.t_out = min(c.time.t_out, 4)
    c.model.kwargs.update(patch_size=8, embed_dim=64, depth=2, num_heads=2)
  return c


def measure(config: ml_collections.ConfigDict) -> dict:
  """Bytes, XLA's FLOPs and compile seconds of the AOT-compiled training step."""
  mesh = sharding.make_mesh(config.mesh)
  model = models.from_config(config, NUM_CLASSES)
  task = tasks.for_config(config, model, NUM_CLASSES)
  built = {}

  def create():  # traced by eval_shape: the state's shapes, its shardings and optimizer
    state, built["shardings"], built["tx"] = state_lib.create(
        task.init_fn(), lambda p: optimizer_lib.create(config, p, 100, 1000),
        jax.random.PRNGKey(0), mesh)
    return state

  state = jax.eval_shape(create)
  step = steps_lib.jit_train_step(task.train_step(built["tx"]), built["shardings"], mesh,
                                  remat=config.model.remat)
  n, cell = config.time.n, config.image_size // config.time.n
  b = config.input.batch_size
  batch = {"frames": jax.ShapeDtypeStruct((b, config.time.t_out * n * n, cell, cell, 3),
                                          jnp.uint8),
           "label": jax.ShapeDtypeStruct((b,), jnp.int32)}
  batch = {k: batch[k] for k in task.batch_keys}
  key = jax.ShapeDtypeStruct((2,), jnp.uint32)
  start = time.perf_counter()
  compiled = step.lower(state, batch, key).compile()
  seconds = time.perf_counter() - start
  m = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return dict(
      args=m.argument_size_in_bytes, outputs=m.output_size_in_bytes,
      aliased=m.alias_size_in_bytes, temp=m.temp_size_in_bytes,
      peak=(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
            + m.temp_size_in_bytes),
      gflop=cost.get("flops", 0.0) / 1e9, compile_s=seconds)


# ---------------------------------------------------------------------------- --scan
# Drop-in replacements of `transformer.blocks` (same arguments).


def _scan_stacked(x, *, depth, mlp_ratio, drop_path_rate, train, remat, **kw):
  """``nn.scan`` over one `transformer.Block`: parameters ``blocks/...``, ``[depth, ...]``."""
  block = transformer.remat_block(remat)

  class Body(nn.Module):
    @nn.compact
    def __call__(self, h, _):
      return block(mlp_dim=int(h.shape[-1] * mlp_ratio), drop_path=float(drop_path_rate),
                   **kw, name="block")(h, train), None

  scan = nn.scan(Body, variable_axes={"params": 0, "intermediates": 0},
                 split_rngs={"params": True, "drop_path": True}, length=depth,
                 metadata_params={nn.PARTITION_NAME: None})
  return scan(name="blocks")(x, None)[0]


def _scan_named(x, *, depth, mlp_ratio, drop_path_rate, train, remat, **kw):
  """``lax.scan`` over the ``blocks_{i}`` parameters, stacked in the step."""
  block = transformer.remat_block(remat)

  def make(**name_or_parent):
    return block(mlp_dim=int(x.shape[-1] * mlp_ratio), drop_path=float(drop_path_rate),
                 **kw, **name_or_parent)

  mods = [make(name=f"blocks_{i}") for i in range(depth)]
  if mods[0].is_initializing():  # create blocks_{i}
    for m in mods:
      x = m(x, train)
    return x
  stacked = jax.tree.map(lambda *p: jnp.stack(p),
                         *[nn.unbox(m.variables["params"]) for m in mods])
  drop = train and drop_path_rate > 0
  keys = (jax.random.split(mods[0].make_rng("drop_path"), depth) if drop
          else jnp.zeros((depth,)))

  def body(h, params_key):
    params, key = params_key
    out = make(parent=None).apply({"params": params}, h, train,
                                  rngs={"drop_path": key} if drop else {})
    return out, None

  return jax.lax.scan(body, x, (stacked, keys))[0]


SCANS = {"unrolled": transformer.blocks, "scan stacked": _scan_stacked,
         "scan blocks_i": _scan_named}


def compile_seconds(config: ml_collections.ConfigDict, scan: str) -> dict:
  """Lower + compile seconds (wall, CPU) and temp bytes of ``value_and_grad`` of the
  cross-entropy of ``config.model`` with `SCANS` ``[scan]`` as its block stack."""
  original = transformer.blocks
  transformer.blocks = SCANS[scan]
  try:
    model = models.from_config(config, NUM_CLASSES)
    dtype = models.COMPUTE_DTYPES[config.model.dtype]
    shape = (config.input.batch_size, config.time.t_out, config.image_size,
             config.image_size, 3)
    params = jax.eval_shape(lambda: nn.unbox(model.init(
        jax.random.PRNGKey(0), jnp.zeros((1,) + shape[1:], dtype))["params"]))

    def loss(params, x, labels, key):
      logits = model.apply({"params": params}, x, train=True,
                           rngs={"drop_path": key, "dropout": key})
      return optax.softmax_cross_entropy_with_integer_labels(
          logits.astype(jnp.float32), labels).mean()

    args = (params, jax.ShapeDtypeStruct(shape, dtype),
            jax.ShapeDtypeStruct(shape[:1], jnp.int32),
            jax.ShapeDtypeStruct((2,), jnp.uint32))
    wall, cpu = time.perf_counter(), time.process_time()
    compiled = jax.jit(jax.value_and_grad(loss),
                       compiler_options=ops.compiler_options("block")).lower(*args).compile()
    return dict(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu,
                temp=compiled.memory_analysis().temp_size_in_bytes)
  finally:
    transformer.blocks = original


def main_scan(rows, repeats: int, small: bool, size: int):
  print(f"{'model':11s} {'batch':>5s} {'remat':6s} {'blocks':14s} {'wall s':>7s} "
        f"{'CPU s':>7s} {'temp':>7s}")
  for name, batch in rows:
    for remat in ("none", "block"):
      config = _config(name, batch, remat, small)
      best = {}
      for _ in range(repeats):  # variants interleaved, so drifting load hits all alike
        for scan in SCANS:
          r = compile_seconds(config, scan)
          best[scan] = {k: min(v, best.get(scan, r)[k]) for k, v in r.items()}
      for scan, r in best.items():
        ratio = r["cpu"] / best["unrolled"]["cpu"]
        print(f"{name:11s} {batch:5d} {remat:6s} {scan:14s} {r['wall']:7.1f} "
              f"{r['cpu']:7.1f} {r['temp'] / size:7.2f}  (CPU s {ratio:.2f}× unrolled)",
              flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--small", action="store_true", help="tiny models at 32² (CPU check)")
  parser.add_argument("--policies", action="store_true",
                      help="compare 'block' policies on VideoMAE-B, batch 8")
  parser.add_argument("--scan", action="store_true",
                      help="compile seconds with the blocks unrolled and scanned")
  parser.add_argument("--repeats", type=int, default=2, help="--scan: the least of these")
  parser.add_argument("--rows", default="",
                      help="model:batch,... instead of the default rows")
  parser.add_argument("--accum", type=int, default=1,
                      help="optimizer.accum_steps: micro-batches of batch / accum clips")
  args = parser.parse_args()
  rows = [(r.split(":")[0], int(r.split(":")[1])) for r in args.rows.split(",") if r]
  unit, size = ("MiB", 2 ** 20) if args.small else ("GiB", 2 ** 30)
  print(f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind}), jax "
        f"{jax.__version__}; UCF101 fine-tuning recipes, N=2, "
        f"{'small, float32' if args.small else 'bfloat16'}; optimizer.accum_steps "
        f"{args.accum}; sizes in {unit}")
  if args.scan:
    main_scan(rows or SCAN_ROWS, args.repeats, args.small, size)
    return
  rows, remats = rows or ROWS, REMATS
  if args.policies:
    # A bench-only entry of the policy table; users choose among `transformer.REMATS`.
    transformer.REMAT_POLICIES["block_dots"] = BLOCK_DOTS
    rows, remats = rows if args.rows else [("videomae_b", 8)], ("block", "block_dots")
  print(f"{'model':11s} {'batch':>5s} {'remat':10s} {'args':>7s} {'outputs':>7s} "
        f"{'aliased':>7s} {'temp':>7s} {'peak':>7s} {'GFLOP':>8s} {'compile s':>9s}")
  for name, batch in rows:
    base = None
    for remat in remats:
      r = measure(_config(name, batch, remat, args.small, args.accum))
      base = base or r
      print(f"{name:11s} {batch:5d} {remat:10s} {r['args'] / size:7.2f} "
            f"{r['outputs'] / size:7.2f} {r['aliased'] / size:7.2f} {r['temp'] / size:7.2f} "
            f"{r['peak'] / size:7.2f} {r['gflop']:8.0f} {r['compile_s']:9.1f}"
            f"  (peak {r['peak'] / base['peak']:.2f}×, FLOP {r['gflop'] / base['gflop']:.2f}×"
            f" of {remats[0]})", flush=True)


if __name__ == "__main__":
  main()
