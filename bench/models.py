"""Benchmark: forward + backward time per training step, ours (JAX) vs the PyTorch original.

Side by side in one run, on the same device, batch and input:

  * ``resnet50``: our ResNet-50 vs timm ``resnet50``, every one of T* = 8 frames,
    logits averaged over frames;
  * ``vit_b16``: our ViT-B/16 vs timm ``vit_base_patch16_224`` on T* = 8 frames, the same
    frame-wise reading;
  * ``videomae_b_ft``: our VideoMAE-B classifier vs transformers
    ``VideoMAEForVideoClassification``, 16 x 224², cross-entropy;
  * ``videomae_b_pt``: our VideoMAE-B pretrainer at 90 % tube masking (+ `pretrain_loss`)
    vs transformers ``VideoMAEForPreTraining`` (its built-in normalised-pixel loss), the
    same mask.

Ours is one jitted ``value_and_grad`` (bfloat16 compute on GPU, float32 on CPU); PyTorch is
``loss.backward()`` (bfloat16 autocast on GPU). Each step is timed after a warm-up, the two
frameworks alternated, the median reported with the ratio ours / PyTorch (< 1: we are
faster). Models whose time_jax module is absent are reported as such. ``--impl`` sets our
models' kernels (`time_jax.models.ops`); two runs, ``--impl cpu`` and ``--impl xla``, show
what the CPU kernels change.

  python bench/models.py                  # batch 8, full sizes (a GPU)
  python bench/models.py --small          # batch 1, 112², 8 frames: a few minutes on a CPU
  python bench/models.py --small --impl xla   # XLA's products, convolutions and autodiff
"""

import argparse
import functools
import logging
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from time_jax import models
from time_jax.models import ops
from time_jax.models import videomae as vm
from time_jax.port import reference


def _torch():
  import torch  # pylint: disable=g-import-not-at-top
  return torch


def _median(fn, sync, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    sync(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


class _Case:
  """One row: builds both sides and returns their step functions."""

  def __init__(self, name, ours, theirs):
    self.name, self.ours, self.theirs = name, ours, theirs


def _ours_classifier(name, batch, frames, size, dtype, impl, num_classes=400, **kw):
  model = models.create(name, num_classes=num_classes, image_size=size,
                        num_frames=frames, dtype=dtype, impl=impl, **kw)
  x = jnp.asarray(np.random.default_rng(0).standard_normal(
      (batch, frames, size, size, 3)), dtype)
  labels = jnp.arange(batch) % num_classes
  variables = model.init(jax.random.key(0), x)

  @jax.jit
  def step(variables, x, labels):
    def loss_fn(params):
      out = model.apply({**variables, "params": params}, x, train=True,
                        rngs={"dropout": jax.random.key(1), "drop_path": jax.random.key(2)},
                        mutable=[k for k in variables if k != "params"])
      logits = out[0] if isinstance(out, tuple) else out
      return optax.softmax_cross_entropy_with_integer_labels(
          logits.astype(jnp.float32), labels).mean()
    return jax.value_and_grad(loss_fn)(variables["params"])

  return functools.partial(step, variables, x, labels)  # .func, .args: bench/products.py


def _ours_pretrain(batch, frames, size, dtype, ratio, impl):
  model = models.create("videomae_b_pretrain", image_size=size, num_frames=frames,
                        dtype=dtype, mask_ratio=ratio, impl=impl)
  x = jnp.asarray(np.random.default_rng(0).standard_normal(
      (batch, frames, size, size, 3)), dtype)
  mask = vm.tube_mask(jax.random.key(3), batch, frames, size, 16, 2, ratio)
  variables = model.init(jax.random.key(0), x, mask)

  @jax.jit
  def step(params, x, mask):
    def loss_fn(params):
      pred = model.apply({"params": params}, x, mask, train=True)
      return vm.pretrain_loss(pred, x, mask)
    return jax.value_and_grad(loss_fn)(params)

  return functools.partial(step, variables["params"], x, mask), np.array(mask)


def _torch_step(model, loss_fn, device, gpu):
  torch = _torch()
  model = model.to(device).train()

  def step():
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
      loss = loss_fn(model)
    loss.backward()
    return loss
  return step


def _frames_loss(x, labels):
  torch = _torch()
  b, t = x.shape[:2]

  def fn(model):
    logits = model(x.flatten(0, 1)).view(b, t, -1).mean(1)
    return torch.nn.functional.cross_entropy(logits.float(), labels)
  return fn


def build_cases(args, device, gpu):
  torch = _torch()
  dtype = jnp.bfloat16 if gpu else jnp.float32
  b, size, frames, tstar = args.batch, args.size, args.frames, args.t_star
  rng = np.random.default_rng(0)
  labels = torch.arange(b, device=device) % 400
  cases = []

  def frames_input(t):
    x = rng.standard_normal((b, t, 3, size, size)).astype(np.float32)
    return torch.from_numpy(x).to(device)

  for name, timm_name in (("resnet50", "resnet50"), ("vit_b16", "vit_base_patch16_224")):
    def ours(name=name):
      return _ours_classifier(name, b, tstar, size, dtype, args.impl)

    def theirs(timm_name=timm_name):
      kw = {"img_size": size} if timm_name.startswith("vit") else {}
      model = reference.timm().create_model(timm_name, num_classes=400, **kw)
      return _torch_step(model, _frames_loss(frames_input(tstar), labels), device, gpu)
    cases.append(_Case(f"{name} (T*={tstar})", ours, theirs))

  import transformers  # pylint: disable=g-import-not-at-top
  cfg = dict(image_size=size, num_frames=frames, use_mean_pooling=True, num_labels=400,
             layer_norm_eps=1e-6, attn_implementation="sdpa")

  def ft_ours():
    return _ours_classifier("videomae_b", b, frames, size, dtype, args.impl)

  def ft_theirs():
    model = transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(**cfg))
    x = frames_input(frames)
    return _torch_step(model, lambda m: torch.nn.functional.cross_entropy(
        m(x).logits.float(), labels), device, gpu)
  cases.append(_Case(f"videomae_b ft ({frames}x{size}²)", ft_ours, ft_theirs))

  state = {}

  def pt_ours():
    step, state["mask"] = _ours_pretrain(b, frames, size, dtype, args.mask_ratio, args.impl)
    return step

  def pt_theirs():
    pcfg = dict(cfg, use_mean_pooling=False, norm_pix_loss=True)
    model = transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(**pcfg))
    x = frames_input(frames)
    mask = torch.from_numpy(state["mask"]).to(device)
    return _torch_step(model, lambda m: m(x, bool_masked_pos=mask).loss, device, gpu)
  cases.append(_Case(f"videomae_b pt {args.mask_ratio:.0%} ({frames}x{size}²)",
                     pt_ours, pt_theirs))
  return cases


def add_step_args(p):
  """The step sizes and the row filter, shared with bench/products.py."""
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--size", type=int, default=224)
  p.add_argument("--frames", type=int, default=16, help="VideoMAE clip length")
  p.add_argument("--t-star", type=int, default=8, help="frames for ResNet-50 / ViT")
  p.add_argument("--mask-ratio", type=float, default=0.9)
  p.add_argument("--small", action="store_true",
                 help="batch 1, 112², 8 / 4 frames: minutes on a CPU")
  p.add_argument("--only", default="", help="comma-separated row prefixes to run")
  p.add_argument("--impl", default="auto", choices=ops.IMPLS,
                 help="our models' kernel set (time_jax.models.ops; auto: this backend's)")


def apply_small(args):
  """``--small``: batch 1, 112², 8 VideoMAE / 4 ResNet-50 and ViT frames."""
  if args.small:
    args.batch, args.size, args.frames, args.t_star = 1, 112, 8, 4


def selected(name, only):
  """Whether the row ``name`` is run under ``--only`` (comma-separated prefixes)."""
  return not only or any(name.startswith(o) for o in only.split(","))


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  add_step_args(p)
  p.add_argument("--repeats", type=int, default=10, help="3 with --small")
  args = p.parse_args()
  apply_small(args)
  if args.small:
    args.repeats = 3
  logging.basicConfig(level=logging.WARNING)
  torch = _torch()
  gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
  device = torch.device("cuda" if gpu else "cpu")
  if gpu:
    torch.backends.cuda.matmul.allow_tf32 = True
    sync_t = lambda _: torch.cuda.synchronize()  # pylint: disable=unnecessary-lambda-assignment
  else:
    sync_t = lambda _: None  # pylint: disable=unnecessary-lambda-assignment
  sync_j = jax.block_until_ready

  print(f"device: jax {jax.devices()[0].device_kind} / torch {device} "
        f"({torch.get_num_threads()} threads)  batch {args.batch}  {args.size}²  "
        f"{'bf16' if gpu else 'fp32'}  impl {ops.resolve(args.impl)}  fwd+bwd per step, "
        f"median of {args.repeats}")
  print(f"{'model':<30} {'ours ms':>9} {'torch ms':>9} {'ratio':>6}")
  for case in build_cases(args, device, gpu):
    if not selected(case.name, args.only):
      continue
    try:
      ours = case.ours()
    except ModuleNotFoundError as e:
      print(f"{case.name:<30} {'n/a':>9} {'':>9} {'':>6}  ({e.name} is not in this tree)")
      continue
    theirs = case.theirs()
    sync_j(ours())  # compile
    sync_t(theirs())
    t_ours, t_theirs = [], []
    for _ in range(args.repeats):  # alternate so drift affects both alike
      t_ours.append(_median(ours, sync_j, 1))
      t_theirs.append(_median(theirs, sync_t, 1))
    a, b = statistics.median(t_ours) * 1e3, statistics.median(t_theirs) * 1e3
    print(f"{case.name:<30} {a:9.1f} {b:9.1f} {a / b:6.2f}", flush=True)


if __name__ == "__main__":
  main()
