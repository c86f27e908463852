r"""One command that measures a GPU host for the UCF101 recipe, in at most 8 minutes.

    python bench/gpu_report.py              # this host's devices -> bench/results/*.json
    python bench/gpu_report.py --small      # tiny models and footage on a CPU (the smoke
                                            # test, tests/test_bench.py, runs this)

On a lent GPU host (bare, no network: the wheels it lacks travel in ``.whl/``), first,
here: ``bash bench/gpu_wheels.sh``; then one call of the device tool's ``run`` with
``carry=[".whl"]``, ``timeout_s=600`` and the command::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit;
    PYTHONUNBUFFERED=1 python3 bench/gpu_report.py --out $OUT

and copy the JSON it returns into ``bench/results/``, the printed tables into the README.

It measures, in this order, and prints the tables (markdown) at the end:

1. **Train steps**: clips/s and MFU of the training loop's own jitted step
   (`bench/train_step.py`'s pieces: TIME arrangement, mixup/cutmix or tube masking,
   forward, backward, AdamW with layer decay, data parallel over all devices) for the
   recipes' own configs (``configs/ucf101_videomae.py:finetune`` and ``:pretrain``,
   VideoMAE-B; ``configs/ucf101_vit_b16.py`` and ``configs/ucf101_resnet50.py``) at
   per-device batch ``--batches`` (8, 32, 64; the image models at 32) with
   ``model.kwargs.impl`` in ``--impls`` (auto, xla) and ``model.remat`` in ``--remats``
   (none, block). A step whose
   compiled peak memory (XLA's memory analysis: arguments + outputs - aliased + temp)
   exceeds what the device has free, or whose smaller batch already did not fit, or
   that runs out of memory, is a row that says ``oom`` and why; it is never run.
2. **End to end** (`bench/end_to_end.py`'s `fraction`): for each VideoMAE phase, the
   fastest step of (1) that can make the recipe's batch, fed by ``pipeline.build`` with
   ``input.num_workers`` = the host's cores (one read thread each) from a packed cache
   (`time_jax.data.pack`) of generated UCF101-like footage (`time_jax.data.scenes`:
   320×240, 180 frames, H.264; written and packed in a background process while (1)
   runs), against the same step on a device-resident batch.
3. **Evaluation**: clips/s of the recipe's eval step at its eval batch, and of the
   eval input per core (one read thread, CPU seconds) times the cores.
4. **Projection**: the recipe's wall-clock on this host, from its config (epochs or
   steps, batch, repeats, eval views, eval_every) and UCF101 split 1 (9537 training,
   3783 test videos): training views / the pipeline-fed rate of (2), evaluations ×
   padded eval views / the slower of the eval step and its input, and the two compiles.
   The fastest step of batch ``b`` per device stands for the recipe's per-device batch
   ``B`` when ``b`` divides ``B`` (``optimizer.accum_steps = B / b``; the report names it).
   Checkpoint writes and logging are not counted.

**The 8 minutes.** Each row is timed frugally (one warm-up step, one probe step, then
the median of three rounds of ~0.4 s); its cost is dominated by lowering and compiling.
A row starts only while the time used so far plus the last row of its model's cost
stays within ``--budget-s`` (default 420 s, from the start of the process) less a
reserve for (2)-(4) (``--reserve-s``, 120 s: two e2e runs of up to ~10 s of warm-up
and ~10 s of fed steps (whole turns of the workers) after the workers' first batch, two
eval compiles); rows that do not fit are
``skipped`` rows. The rows run in priority order: the ``auto`` kernels without remat,
then with it, the image models, then the ``xla`` kernels. So the run ends within ~7
minutes plus one row's misestimate. The JSON is rewritten after every row, so a run
stopped early still leaves what it measured.

The JSON (``schema`` 1): ``device`` (kind, count, allocator limit), ``host``, ``jax``,
``rows`` (per row: ``model``, ``batch_per_device``, ``impl``, ``remat``, ``status`` ok /
oom / skipped / error with its ``reason``, ``clips_per_sec``, ``steps_per_sec``, ``mfu``,
``tflops_per_step``, ``peak_gib``, ``temp_gib``, ``compile_s``), ``end_to_end`` and
``eval`` (per phase), ``projection`` (per phase: the recipe's ``schedule``, the ``row``
used and its ``accum_steps``, ``train_s``, ``eval_s``, ``compile_s``, ``total_s``; and
``total_hours``). Exit status 1 when a row, an e2e run or an eval failed other than by
memory (the error is in the JSON and the tables).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import logging
import math
import multiprocessing
import os
import re
import sys
import tempfile
import time

_START = time.perf_counter()

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import ml_collections

from time_jax import console
from time_jax.data import pack
from time_jax.data import pipeline
from time_jax.data import scenes
from time_jax.models import ops
from time_jax.train import loop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import end_to_end
import train_step
# pylint: enable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("finetune", "pretrain")  # the recipe's two VideoMAE phases
# family -> (config file, label). The VideoMAE phases are the recipe; the image models
# are rows of the step table only.
FAMILIES = {
    "finetune": ("configs/ucf101_videomae.py:finetune", "VideoMAE-B fine-tuning"),
    "pretrain": ("configs/ucf101_videomae.py:pretrain", "VideoMAE-B pretraining"),
    "vit_b16": ("configs/ucf101_vit_b16.py", "ViT-B/16"),
    "resnet50": ("configs/ucf101_resnet50.py", "ResNet-50"),
}
# UCF101 split 1: videos in trainlist01.txt and testlist01.txt.
UCF101_SPLIT1 = {"train": 9537, "test": 3783}
GIB = 2 ** 30
ROUND_S = 0.4          # a timed round of a step (small: 0.02)
OOM_MARGIN = 1.1       # a larger batch is called out of memory without compiling only
                       # when its extrapolated peak exceeds the free memory by this factor
OOM_TEXTS = ("RESOURCE_EXHAUSTED", "out of memory", "Out of memory")


@dataclasses.dataclass(frozen=True)
class RowSpec:
  """One train-step row: a model family at ``batch`` clips per device."""
  family: str
  batch: int
  impl: str
  remat: str


def plan(batches, impls, remats, image_batch: int) -> list[RowSpec]:
  """The rows in the order they run, most wanted first (see the module docstring).

  VideoMAE rows of one kernel set and remat come in rising batch, so a batch that does
  not fit rules out the larger ones without compiling them."""
  first = [(impls[0], r) for r in remats]
  rest = [(i, r) for i in impls[1:] for r in remats]
  rows = [RowSpec(p, b, i, r) for i, r in first for b in sorted(batches) for p in PHASES]
  if image_batch:
    rows += [RowSpec(f, image_batch, impls[0], "none") for f in ("vit_b16", "resnet50")]
  rows += [RowSpec(p, b, i, r) for i, r in rest for b in sorted(batches) for p in PHASES]
  return rows


def family_config(family: str, small: bool) -> ml_collections.ConfigDict:
  """The recipe config of ``family`` as ``python -m time_jax.main`` reads it, on all
  devices (data parallel), without its ``init_from`` (the step's speed does not depend
  on the weights); ``small``: a tiny model (`train_step.shrink`) and batches."""
  path, _ = FAMILIES[family]
  config = console.load_config(os.path.join(ROOT, path))
  config.mesh.update(data=-1, fsdp=1, model=1)
  config.checkpoint.update(init_from="", init_required=False)
  if small:
    train_step.shrink(config)
    config.input.update(batch_size=4 * config.input.repeats,
                        eval_batch_size=config.input.eval_clips * config.input.eval_crops)
  return config


def row_config(base: ml_collections.ConfigDict, spec: RowSpec) -> ml_collections.ConfigDict:
  c = base.copy_and_resolve_references()
  c.input.batch_size = spec.batch * jax.device_count()
  c.model.kwargs.impl = spec.impl
  c.model.remat = spec.remat
  return c


# ------------------------------------------------------------------ projection
def recipe_schedule(config: ml_collections.ConfigDict, num_train: int,
                    num_test: int) -> dict:
  """The training loop's step and view counts of ``config`` on ``num_train`` /
  ``num_test`` videos, one process.

  With `time_jax.data.pipeline.train_steps_per_epoch` and `time_jax.train.loop.total_steps`;
  as the loop counts them, an evaluation every ``eval_every`` steps before the last,
  and one at the end with ``eval_at_end``; eval batches padded to full.
  """
  i, t = config.input, config.train
  steps_per_epoch = max(1, pipeline.train_steps_per_epoch(num_train, i.repeats,
                                                          i.batch_size))
  total = loop.total_steps(config, steps_per_epoch)
  evals = ((total - 1) // t.eval_every if t.eval_every else 0) + int(bool(t.eval_at_end))
  eval_views = num_test * i.eval_clips * i.eval_crops
  padded = math.ceil(eval_views / i.eval_batch_size) * i.eval_batch_size
  return dict(batch=i.batch_size, repeats=i.repeats, steps_per_epoch=steps_per_epoch,
              steps=total, train_views=total * i.batch_size, evals=evals,
              eval_views=padded, eval_batch=i.eval_batch_size)


def project(schedule: dict, train_clips_per_sec: float, eval_clips_per_sec: float,
            compile_s: float) -> dict:
  """Seconds of one phase: training views at the fed rate, evaluations at the eval
  rate, and the compiles."""
  train_s = schedule["train_views"] / train_clips_per_sec
  eval_s = schedule["evals"] * schedule["eval_views"] / eval_clips_per_sec
  return dict(train_s=train_s, eval_s=eval_s, compile_s=compile_s,
              total_s=train_s + eval_s + compile_s)


def recipe_can_use(config: ml_collections.ConfigDict, batch_per_device: int) -> bool:
  """Whether a step of ``batch_per_device`` clips can make ``config``'s batch: it
  divides the recipe's per-device batch (``optimizer.accum_steps`` micro-batches) and
  holds whole videos of ``input.repeats`` views."""
  recipe = config.input.batch_size // jax.device_count()
  return (recipe % batch_per_device == 0
          and batch_per_device * jax.device_count() % config.input.repeats == 0)


# ---------------------------------------------------------------------- footage
def make_footage(root: str, configs: dict, videos: int, train_entries: int,
                 small: bool) -> dict:
  """Writes UCF101-like clips and packs them for each phase's config (a background
  process). The train list repeats the clips to ``train_entries`` entries, so every
  batch of the e2e run has its own videos; returns ``{"data": the clips' folder,
  phase: its packed cache}``."""
  data = os.path.join(root, "scenes")
  size = dict(num_frames=24, height=48, width=64) if small else {}
  scenes.write_dataset(data, num_videos=videos, test_fraction=0.25, **size)
  path = os.path.join(data, "train.txt")
  with open(path, encoding="utf-8") as f:
    entries = f.read().splitlines()
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(entries[k % len(entries)] for k in range(train_entries)) + "\n")
  out = {"data": data}
  for phase, config in configs.items():
    config = config.copy_and_resolve_references()
    end_to_end.on_footage(config, data)
    out[phase] = os.path.join(root, f"packed_{phase}")
    pack.pack(config, out[phase])
  return out


def packed(config: ml_collections.ConfigDict, footage: dict, phase: str
           ) -> ml_collections.ConfigDict:
  """``config`` reading the footage's cache packed for ``phase`` (`make_footage`)."""
  c = config.copy_and_resolve_references()
  end_to_end.on_footage(c, footage["data"])
  c.dataset.update(source="packed", packed_dir=footage[phase])
  return c


def eval_input_rate(config: ml_collections.ConfigDict, seconds: float) -> float:
  """Eval views per CPU-second of ``pipeline.build(config, 'eval')`` in this process,
  one read thread (the pass restarts until ``seconds`` have passed)."""
  c = config.copy_and_resolve_references()
  c.input.update(num_workers=0, read_threads=1,
                 eval_batch_size=c.input.eval_clips * c.input.eval_crops)
  ds, _ = pipeline.build(c, "eval")
  views, start, cpu = 0, time.perf_counter(), time.process_time()
  while time.perf_counter() - start < seconds:
    for batch in ds:
      views += int(batch["valid"].sum())
  return views / max(time.process_time() - cpu, 1e-9)


# ------------------------------------------------------------------------ rows
def is_oom(error: BaseException) -> bool:
  text = str(error)
  return any(t in text for t in OOM_TEXTS)


def _first_line(error: BaseException) -> str:
  lines = str(error).strip().splitlines() or [""]
  return f"{type(error).__name__}: {lines[0][:300]}"


def free_bytes(device) -> int | None:
  """Bytes ``device``'s allocator can still give (its limit less what is in use);
  None when it does not say (CPU)."""
  stats = device.memory_stats() or {}
  if "bytes_limit" not in stats:
    return None
  return stats["bytes_limit"] - stats.get("bytes_in_use", 0)


def peak_bytes(compiled) -> tuple[int, int, int]:
  """``(peak, temp, resident)`` bytes of a compiled step on one device: peak =
  arguments + outputs - aliased + temp; resident = its arguments (state and batch),
  already on the device when it was compiled."""
  m = compiled.memory_analysis()
  peak = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)
  return peak, m.temp_size_in_bytes, m.argument_size_in_bytes


def _state_alive(state) -> bool:
  return not any(x.is_deleted() for x in jax.tree.leaves(state)
                 if isinstance(x, jax.Array))


class Rows:
  """Runs the train-step rows, keeping one train state per model family and, for each
  VideoMAE phase, the fastest compiled step that `recipe_can_use` (for the e2e run)."""

  def __init__(self, args, bases: dict):
    self.args, self.bases = args, bases
    self.states: dict = {}      # family -> (mesh, state, shardings, tx)
    # (family, impl, remat) -> (batch, peak, temp, resident) of the last that fitted,
    # or ('oom', batch)
    self.fitted: dict = {}
    self.cost: dict = {}        # family -> seconds its last row took
    self.best: dict = {}        # phase -> (row, compiled, config)
    self.device = jax.devices()[0]
    self.limit = int(args.memory_gib * GIB) if args.memory_gib else None

  def _state(self, family: str, config):
    if family not in self.states or not _state_alive(self.states[family][1]):
      mesh, _, state, shardings, tx = train_step.create_state(config)
      self.states[family] = (mesh, state, shardings, tx)
    return self.states[family]

  def _capacity(self, resident: int) -> int | None:
    """Bytes a step's peak may reach: ``--memory-gib``, or what the device has free
    plus the step's ``resident`` arguments (already allocated); None when unknown."""
    if self.limit:
      return self.limit
    free = free_bytes(self.device)
    return None if free is None else free + resident

  def _predicted_oom(self, spec: RowSpec) -> str | None:
    """Why ``spec`` cannot fit, judged from a smaller batch of its kernels and remat
    (its temporary memory grows with the batch), or None."""
    fitted = self.fitted.get((spec.family, spec.impl, spec.remat))
    if fitted is None:
      return None
    if fitted[0] == "oom":
      return f"batch {fitted[1]} per device already did not fit"
    batch, peak, temp, resident = fitted
    capacity = self._capacity(resident)
    estimate = peak - temp + temp * spec.batch / batch
    if capacity is not None and estimate > OOM_MARGIN * capacity:
      return (f"extrapolated from batch {batch}: peak ~{_size(estimate)} > "
              f"{_size(capacity)}")
    return None

  def run(self, spec: RowSpec, elapsed: float) -> dict:
    args = self.args
    label = FAMILIES[spec.family][1]
    row = dict(family=spec.family, model=label, batch_per_device=spec.batch,
               impl=spec.impl, impl_resolved=ops.resolve(spec.impl), remat=spec.remat,
               status="ok", reason="", clips_per_sec=None, steps_per_sec=None, mfu=None,
               tflops_per_step=None, peak_gib=None, temp_gib=None, compile_s=None)
    # A model not run yet is taken to cost what the dearest one so far did.
    estimate = self.cost.get(spec.family, max(self.cost.values(), default=0.0))
    if elapsed + estimate > args.budget_s - args.reserve_s:
      row.update(status="skipped", reason=(
          f"time budget: {elapsed:.0f} s used, this row ~{estimate:.0f} s, "
          f"--budget-s {args.budget_s:.0f} less --reserve-s {args.reserve_s:.0f}"))
      return row
    key = (spec.family, spec.impl, spec.remat)
    reason = self._predicted_oom(spec)
    if reason:
      row.update(status="oom", reason=reason)
      self.fitted[key] = ("oom", spec.batch)
      return row
    start = time.perf_counter()
    config = row_config(self.bases[spec.family], spec)
    try:
      self._measure(spec, config, row, key)
    except Exception as e:  # pylint: disable=broad-except
      # A row that fails is reported as such; the report goes on to the next one.
      if is_oom(e):
        row.update(status="oom", reason=f"at run time: {_first_line(e)}")
        self.fitted[key] = ("oom", spec.batch)
      else:
        row.update(status="error", reason=_first_line(e))
        logging.exception("row %s failed", spec)
    self.cost[spec.family] = time.perf_counter() - start
    if spec.family not in PHASES:  # the image models have one row each: free their state
      self.states.pop(spec.family, None)
    return row

  def _measure(self, spec: RowSpec, config, row: dict, key) -> None:
    mesh, state, shardings, tx = self._state(spec.family, config)
    task = train_step.make_task(config)
    global_b = config.input.batch_size
    batch = train_step.random_batch(config, task, mesh, global_b)
    start = time.perf_counter()
    compiled = train_step.compile_step(config, task, tx, shardings, mesh, state, batch)
    row["compile_s"] = time.perf_counter() - start
    peak, temp, resident = peak_bytes(compiled)
    row.update(peak_gib=peak / GIB, temp_gib=temp / GIB)
    capacity = self._capacity(resident)
    if capacity is not None and peak > capacity:
      row.update(status="oom", reason=f"XLA's memory analysis: peak {_size(peak)} > "
                 f"{_size(capacity)}")
      self.fitted[key] = ("oom", spec.batch)
      return
    self.fitted[key] = (spec.batch, peak, temp, resident)
    try:
      steps_per_sec, state = train_step.time_compiled(compiled, state, batch, warmup=1,
                                                       round_s=self.args.round_s)
    finally:
      self.states[spec.family] = (mesh, state, shardings, tx)
    flops = train_step.step_flops(config, task, global_b)
    peak_flops = train_step.peak_flops(self.device)
    row.update(steps_per_sec=steps_per_sec, clips_per_sec=steps_per_sec * global_b,
               tflops_per_step=flops / 1e12 if flops else None,
               mfu=flops * steps_per_sec / (peak_flops * jax.device_count())
               if flops and peak_flops else None)
    if spec.family in PHASES and recipe_can_use(self.bases[spec.family], spec.batch):
      best = self.best.get(spec.family)
      if best is None or row["clips_per_sec"] > best[0]["clips_per_sec"]:
        self.best[spec.family] = (row, compiled, config)


# ------------------------------------------------------------------- sections
def end_to_end_phase(rows: Rows, phase: str, footage: dict, workers: int,
                     seconds: float) -> dict:
  """`end_to_end.fraction` for the step chosen for ``phase`` (`Rows`)."""
  row, compiled, config = rows.best[phase]
  config = packed(config, footage, phase)
  config.input.update(num_workers=workers, read_threads=1)
  mesh, state, shardings, tx = rows.states[phase]
  task = train_step.make_task(config)
  r, state = end_to_end.fraction(compiled, state, config, mesh, task.batch_keys,
                                 steps=10, seconds=seconds)
  rows.states[phase] = (mesh, state, shardings, tx)
  b = config.input.batch_size
  return dict(row=_row_name(row), batch=b, workers=workers, source="packed",
              synthetic_clips_per_sec=r["synthetic"] * b,
              pipeline_clips_per_sec=r["pipeline"] * b, fraction=r["fraction"])


def eval_phase(rows: Rows, phase: str, footage: dict, seconds: float,
               round_s: float) -> dict:
  """The recipe's eval step at its eval batch (the chosen row's kernels), and the
  eval input's rate (per core, times the cores)."""
  row, _, config = rows.best[phase]
  config = config.copy_and_resolve_references()
  config.model.remat = "none"  # no backward pass
  mesh, state, shardings, _ = rows.states[phase]
  task = train_step.make_task(config)
  b = config.input.eval_batch_size
  batch = train_step.random_batch(config, task, mesh, b)
  batch = {"frames": batch["frames"]}
  with_rng = phase == "pretrain"
  extra = (jax.random.PRNGKey(2),) if with_rng else ()
  start = time.perf_counter()
  compiled = task.eval_step(shardings, mesh).lower(state, batch, *extra).compile()
  compile_s = time.perf_counter() - start
  step_rate = train_step.rate(lambda: compiled(state, batch, *extra), round_s=round_s)
  per_core = eval_input_rate(packed(config, footage, phase), seconds)
  cores = os.cpu_count() or 1
  return dict(batch=b, impl=row["impl"], compile_s=compile_s,
              step_clips_per_sec=step_rate * b, input_clips_per_cpu_s=per_core,
              input_clips_per_sec_estimate=per_core * cores, cores=cores,
              clips_per_sec=min(step_rate * b, per_core * cores))


def projection(rows: Rows, results: dict, bases: dict) -> dict:
  """`project` of each phase from its recipe's schedule on UCF101 split 1, its fed
  train rate (end to end) and its eval rate; the total when both phases have one."""
  phases, total = {}, 0.0
  for phase in PHASES:
    e2e, ev = results["end_to_end"].get(phase), results["eval"].get(phase)
    schedule = recipe_schedule(bases[phase], UCF101_SPLIT1["train"], UCF101_SPLIT1["test"])
    missing = [f"{name}: {part.get('reason', 'not measured')}"
               for name, part in (("end to end", e2e or {}), ("eval", ev or {}))
               if "clips_per_sec" not in part and "pipeline_clips_per_sec" not in part]
    if missing:
      phases[phase] = dict(schedule=schedule, reason="; ".join(missing))
      total = None
      continue
    row = rows.best[phase][0]
    per_device = schedule["batch"] // jax.device_count()
    p = project(schedule, e2e["pipeline_clips_per_sec"], ev["clips_per_sec"],
                row["compile_s"] + ev["compile_s"])
    p.update(schedule=schedule, row=_row_name(row),
             accum_steps=per_device // row["batch_per_device"],
             train_clips_per_sec=e2e["pipeline_clips_per_sec"],
             eval_clips_per_sec=ev["clips_per_sec"])
    phases[phase] = p
    if total is not None:
      total += p["total_s"]
  return dict(phases=phases, total_s=total,
              total_hours=None if total is None else total / 3600,
              dataset="UCF101 split 1", videos=UCF101_SPLIT1)


# ------------------------------------------------------------------------ output
def _row_name(row: dict) -> str:
  return (f"{row['model']}, {row['batch_per_device']}/device, impl {row['impl']}, "
          f"remat {row['remat']}")


def _size(nbytes: float) -> str:
  return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB / 10 else f"{nbytes / 2 ** 20:.2f} MiB"


def _f(x, fmt: str = "{:.1f}", none: str = "—") -> str:
  return none if x is None else fmt.format(x)


def _markdown(header: str, rows: list[list]) -> list[str]:
  """A markdown table: ``header`` is its columns split by ``|``, a column ending in
  ``>`` is right-aligned."""
  cols = [c.strip() for c in header.split("|")]
  out = ["| " + " | ".join(c.rstrip(">").strip() for c in cols) + " |",
         "| " + " | ".join("---:" if c.endswith(">") else "---" for c in cols) + " |"]
  return out + ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]


def tables(results: dict) -> str:
  """The report's tables, markdown."""
  d = results["device"]
  out = [f"Measured by `bench/gpu_report.py{' --small' if results['small'] else ''}` on "
         f"{d['count']} × {d['kind']} (allocator limit "
         f"{_f(d['memory_gib'], '{:.1f} GiB', 'unknown')}; {results['host']['cpus']} CPU "
         f"cores), jax {results['jax']}, {results['date']}; {results['elapsed_s']:.0f} s.",
         ""]
  out += _markdown(
      "model | batch / device > | impl | remat | clips/s > | MFU > | peak GiB > | "
      "compile s > | note",
      [[r["model"], r["batch_per_device"], f"{r['impl']} ({r['impl_resolved']})",
        r["remat"], _f(r["clips_per_sec"]), _f(r["mfu"] and 100 * r["mfu"], "{:.1f} %"),
        _f(r["peak_gib"], "{:.2f}"), _f(r["compile_s"]),
        "" if r["status"] == "ok" else f"{r['status']}: {r['reason']}"]
       for r in results["rows"]])
  out += [""] + _markdown(
      "phase | step | device-resident clips/s > | pipeline-fed clips/s > | fraction > | "
      "workers >",
      [[phase, e["row"], f"{e['synthetic_clips_per_sec']:.1f}",
        f"{e['pipeline_clips_per_sec']:.1f}", f"{e['fraction']:.2f}", e["workers"]]
       if "fraction" in e else [phase, e["reason"], "", "", "", ""]
       for phase, e in results["end_to_end"].items()])
  out += [""] + _markdown(
      "phase | eval batch > | step clips/s > | input clips/s per core (× cores) > | used >",
      [[phase, e["batch"], f"{e['step_clips_per_sec']:.1f}",
        f"{e['input_clips_per_cpu_s']:.1f} (× {e['cores']})", f"{e['clips_per_sec']:.1f}"]
       if "clips_per_sec" in e else [phase, "", "", e["reason"], ""]
       for phase, e in results["eval"].items()])
  proj, rows = results["projection"], []
  for phase, p in proj["phases"].items():
    s = p["schedule"]
    if "total_s" not in p:
      rows.append([phase, f"{s['steps']} × {s['batch']}", p["reason"], "", "", "", "", ""])
      continue
    accum = f" (accum_steps {p['accum_steps']})" if p["accum_steps"] > 1 else ""
    rows.append([phase, f"{s['steps']} × {s['batch']}", p["row"] + accum,
                 f"{p['train_clips_per_sec']:.1f}", f"{p['train_s'] / 3600:.2f}",
                 f"{s['evals']} × {s['eval_views']}", f"{p['eval_s'] / 60:.1f}",
                 f"{p['total_s'] / 3600:.2f}"])
  rows.append(["**total**", "", "", "", "", "", "",
               f"**{_f(proj['total_hours'], '{:.2f}')}**"])
  out += ["", f"Projected UCF101 recipe on this host ({proj['dataset']}: "
          f"{proj['videos']['train']} train / {proj['videos']['test']} test videos):", ""]
  out += _markdown("phase | steps × batch > | step used | train clips/s > | train h > | "
                   "evals × views > | eval min > | total h >", rows)
  return "\n".join(out)


def _slug(text: str) -> str:
  return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def write(results: dict, out_dir: str) -> str:
  os.makedirs(out_dir, exist_ok=True)
  d = results["device"]
  name = f"{results['date']}-{'' if d['count'] == 1 else str(d['count']) + 'x-'}" \
         f"{_slug(d['kind'])}{'-small' if results['small'] else ''}.json"
  path = os.path.join(out_dir, name)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=1)
  return path


# -------------------------------------------------------------------------- main
def _host_only() -> None:
  """The footage process never takes the accelerator (nor its memory)."""
  os.environ["JAX_PLATFORMS"] = "cpu"


def _elapsed() -> float:
  return time.perf_counter() - _START


def _say(text: str) -> None:
  print(f"[{_elapsed():5.0f} s] {text}", flush=True)


def _ints(text: str) -> list[int]:
  return [int(x) for x in text.split(",") if x]


def _names(choices):
  def parse(text: str) -> list[str]:
    names = [x for x in text.split(",") if x]
    bad = [x for x in names if x not in choices]
    if bad or not names:
      raise argparse.ArgumentTypeError(f"{text!r}: use names of {choices}, comma-separated")
    return names
  return parse


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--small", action="store_true",
                 help="tiny models, batches and footage: the same code on a CPU")
  p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                 help="folder of the JSON (<date>-<device>.json)")
  p.add_argument("--batches", type=_ints, default=None,
                 help="VideoMAE per-device batches (default 8,32,64; small: 4,8)")
  p.add_argument("--image-batch", type=int, default=None,
                 help="ViT/ResNet per-device batch (default 32; small: 2; 0: no such rows)")
  p.add_argument("--impls", type=_names(ops.IMPLS), default=["auto", "xla"])
  p.add_argument("--remats", type=_names(("none", "block", "full")),
                 default=["none", "block"])
  p.add_argument("--budget-s", type=float, default=None,
                 help="wall-clock budget from the start (default 420; small: 600)")
  p.add_argument("--reserve-s", type=float, default=None,
                 help="kept from the rows for e2e, eval and projection (120; small: 0)")
  p.add_argument("--memory-gib", type=float, default=0.0,
                 help="device memory to hold each step's peak against (default: what "
                 "the device has free; on a CPU none)")
  p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                 help="input.num_workers of the e2e run (default: the cores)")
  p.add_argument("--videos", type=int, default=None,
                 help="distinct generated clips (default 24; small: 8)")
  p.add_argument("--e2e-seconds", type=float, default=None,
                 help="timed window of the pipeline-fed steps (default 10; small: 0.5)")
  args = p.parse_args(argv)
  small = args.small
  defaults = dict(batches=[4, 8] if small else [8, 32, 64], image_batch=2 if small else 32,
                  budget_s=600.0 if small else 420.0, reserve_s=0.0 if small else 120.0,
                  videos=8 if small else 24, e2e_seconds=0.5 if small else 10.0)
  for k, v in defaults.items():
    if getattr(args, k) is None:
      setattr(args, k, v)
  args.round_s = ROUND_S / 20 if small else ROUND_S
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  logging.basicConfig(level=logging.WARNING)
  console.quiet_libraries()
  device = jax.devices()[0]
  bases = {f: family_config(f, args.small) for f in FAMILIES}
  limit = (device.memory_stats() or {}).get("bytes_limit")
  results = dict(
      schema=1, small=args.small, date=datetime.date.today().isoformat(),
      device=dict(kind=device.device_kind, platform=device.platform,
                  count=jax.device_count(), peak_flops=train_step.peak_flops(device),
                  memory_gib=None if limit is None else limit / GIB),
      host=dict(cpus=os.cpu_count()), jax=jax.__version__,
      budget_s=args.budget_s, reserve_s=args.reserve_s,
      recipes={f: FAMILIES[f][0] for f in FAMILIES},
      rows=[], end_to_end={}, eval={}, projection={}, elapsed_s=0.0)
  _say(f"{jax.device_count()} × {device.device_kind}, {os.cpu_count()} cores; budget "
       f"{args.budget_s:.0f} s")
  status = 0
  with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ProcessPoolExecutor(
      1, mp_context=multiprocessing.get_context("spawn"),
      initializer=_host_only) as background:
    # Train entries: twice the most videos a batch the e2e run may use holds.
    needed = max([b * jax.device_count() // bases[p].input.repeats for p in PHASES
                  for b in args.batches if recipe_can_use(bases[p], b)], default=1)
    footage = background.submit(
        make_footage, tmp, {p: bases[p] for p in PHASES}, args.videos,
        max(2 * needed, args.videos), args.small)
    rows = Rows(args, bases)
    for spec in plan(args.batches, args.impls, args.remats, args.image_batch):
      row = rows.run(spec, _elapsed())
      results["rows"].append(row)
      status = max(status, int(row["status"] == "error"))
      _say(f"{_row_name(row)}: " + (
          f"{row['clips_per_sec']:.1f} clips/s, compiled in {row['compile_s']:.1f} s"
          if row["status"] == "ok" else f"{row['status']}: {row['reason']}"))
      results["elapsed_s"] = _elapsed()
      write(results, args.out)
    footage = footage.result()
    _say("footage packed")
    for phase in PHASES:
      if phase not in rows.best:
        results["end_to_end"][phase] = dict(reason="no measured step for this phase")
        continue
      for section, measure, extra in (
          ("end_to_end", end_to_end_phase, (args.workers, args.e2e_seconds)),
          ("eval", eval_phase, (args.e2e_seconds / 3, args.round_s))):
        try:
          results[section][phase] = measure(rows, phase, footage, *extra)
        except Exception as e:  # pylint: disable=broad-except
          # Reported in its table and the exit status; the other measurements go on.
          results[section][phase] = dict(reason=f"error: {_first_line(e)}")
          logging.exception("%s of %s failed", section, phase)
          status = 1
        _say(f"{section} {phase}: " + ", ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in results[section][phase].items()))
        results["elapsed_s"] = _elapsed()
        write(results, args.out)
    results["projection"] = projection(rows, results, bases)
    results["elapsed_s"] = _elapsed()
    path = write(results, args.out)
  print(tables(results))
  _say(f"wrote {path}")
  return status


if __name__ == "__main__":
  sys.exit(main())
