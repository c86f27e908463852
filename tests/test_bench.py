"""bench/gpu_report.py: its --small run on CPU (so the GPU report cannot rot unnoticed)
and its projection arithmetic against a hand computation."""

import functools
import glob
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from time_jax import recipes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UCF101_TRAIN, UCF101_TEST = 9537, 3783


@functools.cache
def _gpu_report():
  spec = importlib.util.spec_from_file_location(
      "gpu_report", os.path.join(ROOT, "bench", "gpu_report.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules["gpu_report"] = module  # its dataclasses look their module up
  spec.loader.exec_module(module)
  return module


def _finite_positive(*values):
  return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


@pytest.mark.slow
def test_gpu_report_small_run(tmp_path):
  # One CPU device (not the suite's eight), and XLA:CPU's cheaper compile passes: the
  # test checks the report's code paths, not CPU speed. Batch 4 runs; 65536 is called
  # out of memory from batch 4's compiled peak against --memory-gib, and 131072 because
  # 65536 already did not fit.
  env = dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0 "
             "--xla_llvm_disable_expensive_passes=true", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "bench/gpu_report.py", "--small", "--out", str(tmp_path),
       "--impls", "auto", "--remats", "none", "--batches", "4,65536,131072",
       "--image-batch", "0", "--memory-gib", "0.25", "--workers", "1"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  (path,) = glob.glob(str(tmp_path / "*-cpu-small.json"))
  with open(path, encoding="utf-8") as f:
    report = json.load(f)
  assert report["small"] and report["device"]["platform"] == "cpu"

  rows = {(r["family"], r["batch_per_device"]): r for r in report["rows"]}
  assert len(rows) == 6
  for phase in ("finetune", "pretrain"):
    ok = rows[phase, 4]
    assert ok["status"] == "ok" and ok["impl_resolved"] == "cpu", ok
    assert _finite_positive(ok["clips_per_sec"], ok["steps_per_sec"], ok["compile_s"],
                            ok["peak_gib"], ok["tflops_per_step"])
    assert ok["clips_per_sec"] == pytest.approx(4 * ok["steps_per_sec"])
    assert ok["mfu"] is None  # a CPU has no peak in the table
    assert rows[phase, 65536]["status"] == "oom"
    assert "extrapolated from batch 4" in rows[phase, 65536]["reason"]
    assert rows[phase, 65536]["clips_per_sec"] is None
    assert rows[phase, 131072]["status"] == "oom"
    assert "65536 per device already did not fit" in rows[phase, 131072]["reason"]

  for phase, recipe_phase in (("finetune", "finetune"), ("pretrain", "pretrain")):
    e2e, ev = report["end_to_end"][phase], report["eval"][phase]
    assert _finite_positive(e2e["synthetic_clips_per_sec"], e2e["pipeline_clips_per_sec"],
                            e2e["fraction"], ev["step_clips_per_sec"],
                            ev["input_clips_per_cpu_s"], ev["compile_s"])
    assert e2e["fraction"] == pytest.approx(
        e2e["pipeline_clips_per_sec"] / e2e["synthetic_clips_per_sec"])
    assert ev["clips_per_sec"] == min(ev["step_clips_per_sec"],
                                      ev["input_clips_per_cpu_s"] * ev["cores"])

    # The projection by hand, from the recipe: --small keeps its schedule and sets the
    # batch to 4 videos (4 · repeats views) and the eval batch to one video's views.
    c = recipes.videomae("ucf101", recipe_phase)
    batch, views = 4 * c.input.repeats, c.input.eval_clips * c.input.eval_crops
    steps = math.ceil(c.train.num_epochs * (c.input.repeats * UCF101_TRAIN // batch))
    p = report["projection"]["phases"][phase]
    assert p["schedule"]["steps"] == steps and p["schedule"]["batch"] == batch
    assert p["accum_steps"] == batch // 4
    train_s = steps * batch / e2e["pipeline_clips_per_sec"]
    eval_s = UCF101_TEST * views / ev["clips_per_sec"]  # one evaluation, at the end
    compile_s = rows[phase, 4]["compile_s"] + ev["compile_s"]
    assert p["train_s"] == pytest.approx(train_s)
    assert p["eval_s"] == pytest.approx(eval_s)
    assert p["total_s"] == pytest.approx(train_s + eval_s + compile_s)
  total = sum(p["total_s"] for p in report["projection"]["phases"].values())
  assert report["projection"]["total_hours"] == pytest.approx(total / 3600)
  assert "| **total** |" in proc.stdout and "| VideoMAE-B pretraining | 4 |" in proc.stdout


def test_recipe_schedule_counts_like_the_loop():
  gpu_report = _gpu_report()
  c = recipes.videomae("ucf101", "finetune")
  c.input.update(batch_size=48, repeats=2, eval_batch_size=40, eval_clips=5, eval_crops=3)
  c.train.update(num_epochs=2.5, eval_every=100, eval_at_end=True)
  s = gpu_report.recipe_schedule(c, num_train=1000, num_test=30)
  # 2 · 1000 // 48 = 41 steps an epoch; ceil(2.5 · 41) = 103 steps; evaluations at step
  # 100 and at the end; 30 · 15 = 450 views in 12 batches of 40 = 480.
  assert (s["steps_per_epoch"], s["steps"], s["evals"], s["eval_views"]) == (41, 103, 2, 480)
  c.train.update(num_steps=7, eval_every=0, eval_at_end=False)
  s = gpu_report.recipe_schedule(c, num_train=1000, num_test=30)
  assert (s["steps"], s["evals"], s["train_views"]) == (7, 0, 7 * 48)
  p = gpu_report.project(dict(train_views=1000, evals=2, eval_views=300), 50.0, 100.0, 3.0)
  assert (p["train_s"], p["eval_s"], p["total_s"]) == (20.0, 6.0, 29.0)


def test_rows_past_the_budget_are_skipped_rows():
  gpu_report = _gpu_report()
  args = gpu_report.parse_args(["--small", "--budget-s", "100", "--reserve-s", "30"])
  row = gpu_report.Rows(args, bases={}).run(gpu_report.RowSpec("finetune", 4, "auto", "none"),
                                            elapsed=71.0)
  assert row["status"] == "skipped" and "time budget" in row["reason"]
  assert row["clips_per_sec"] is None


def test_oom_errors_are_told_apart():
  gpu_report = _gpu_report()
  assert gpu_report.is_oom(RuntimeError(
      "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 85899345920 bytes."))
  assert not gpu_report.is_oom(ValueError("config.input.batch_size: 6 must be a multiple"))
