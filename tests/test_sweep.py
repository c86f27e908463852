"""Tests of the N / arrangement / mask-ratio sweep tool (`time_jax.sweep`)."""

import csv
import json
import os
import shlex
import stat
import subprocess
import sys

import pytest

from time_jax import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")


def _run_error(log) -> str:
  """The ``error:`` line a run wrote to its log."""
  (line,) = [l for l in log.read_text().splitlines() if l.startswith("error: ")]
  return line


def _rows(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_settings_grid_names_and_flags():
  grid = sweep.settings([1, 2], ["spatial", "temporal"], [0.5])
  assert [s.name for s in grid] == ["n1_spatial_mask0.5", "n1_temporal_mask0.5",
                                    "n2_spatial_mask0.5", "n2_temporal_mask0.5"]
  assert grid[3].overrides() == ["--config.time.n=2", "--config.time.arrangement=temporal",
                                 "--config.pretrain.mask_ratio=0.5"]
  assert [s.name for s in sweep.settings([4])] == ["n4"]
  assert sweep.settings() == [sweep.Setting()]


@pytest.mark.parametrize("call, match", [
    (lambda: sweep.settings([0]), "--n"),
    (lambda: sweep.settings([], ["diagonal"]), "--arrangement"),
    (lambda: sweep.settings([], [], [1.0]), "--mask-ratio"),
    (lambda: sweep.parse_list("1,x", int, "--n"), "--n: 'x'"),
    (lambda: sweep.parse_list("2,2", int, "--n"), "repeats"),
    (lambda: sweep.normalise_overrides(["train.num_steps"]), "KEY=VALUE"),
])
def test_user_mistakes_name_the_flag(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_overrides_are_config_flags():
  assert sweep.normalise_overrides(["train.num_steps=2", "--config.seed=3",
                                    "config.image_size=32"]) == [
      "--config.train.num_steps=2", "--config.seed=3", "--config.image_size=32"]


def test_print_only_two_phase_commands(tmp_path, capsys):
  cfg = os.path.join(CONFIGS, "hmdb51_videomae.py") + ":{phase},2"
  rc = sweep.main(["--config", cfg, "--workdir", str(tmp_path), "--n", "1,4",
                   "--mask-ratio", "0.5,0.9", "--print-only",
                   "--overrides", "dataset.root=/data/hmdb51"])
  assert rc == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 4  # 2 N x 2 mask ratios, one line per setting
  first = lines[0].split(" && ")
  assert len(first) == 2
  pre, fine = (shlex.split(c) for c in first)
  assert pre[1:3] == ["-m", "time_jax.main"]
  assert f"--config={CONFIGS}/hmdb51_videomae.py:pretrain,2" in pre
  assert f"--config={CONFIGS}/hmdb51_videomae.py:finetune,2" in fine
  assert f"--workdir={tmp_path}/n1_mask0.5/pretrain" in pre
  assert f"--workdir={tmp_path}/n1_mask0.5/finetune" in fine
  for cmd in (pre, fine):
    assert "--config.time.n=1" in cmd and "--config.pretrain.mask_ratio=0.5" in cmd
    assert cmd[-1] == "--config.dataset.root=/data/hmdb51"
  assert "--config.time.n=4" in lines[3] and "mask_ratio=0.9" in lines[3]
  # Nothing ran: the table lists every setting as missing.
  rows = _rows(tmp_path / "sweep.csv")
  assert [r["status"] for r in rows] == ["missing"] * 4
  assert not (tmp_path / "sweep.png").exists()


def _usage_error(capsys, argv) -> str:
  """The one ``error:`` line (exit 2) of ``sweep.main(argv)``."""
  with pytest.raises(SystemExit) as e:
    sweep.main(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1, err
  return err


def test_mask_ratio_needs_a_pretraining_phase(tmp_path, capsys):
  assert "--mask-ratio" in _usage_error(capsys, [
      "--config", os.path.join(CONFIGS, "hmdb51_vit_b16.py"), "--workdir", str(tmp_path),
      "--mask-ratio", "0.5", "--print-only"])


def test_bad_config_argument_is_reported(tmp_path, capsys):
  assert "'7'" in _usage_error(capsys, [
      "--config", os.path.join(CONFIGS, "hmdb51_vit_b16.py") + ":7", "--workdir",
      str(tmp_path), "--n", "1", "--print-only"])


FAKE_MAIN = r"""#!{python}
# Stands in for `python -m time_jax.main`: logs its call, writes the loop's
# eval_results.json with top-1 = n / 10 (temporal: + 0.05), fails for n = 3.
import json, os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
wd = args["workdir"]
with open(os.environ["FAKE_LOG"], "a") as f:
  f.write(wd + "\n")
n = int(args.get("config.time.n", 1))
if n == 3:
  sys.exit(7)
if args["config"].split(":")[-1].startswith("pretrain"):
  sys.exit(0)
top1 = n / 10 + (0.05 if args.get("config.time.arrangement") == "temporal" else 0)
top1 += int(args.get("config.seed", 0)) / 100
result = dict(step=1, top1=top1, top5=1.0, num_videos=9, mean_class_accuracy=top1)
if os.environ.get("FAKE_NO_TOP5"):  # few classes: the loop reports no top-5
  del result["top5"]
with open(os.path.join(wd, "eval_results.json"), "w") as f:
  json.dump(result, f)
"""


def test_run_skips_finished_settings_and_reports_failures(tmp_path, monkeypatch):
  fake = tmp_path / "fake_python"
  fake.write_text(FAKE_MAIN.format(python=sys.executable))
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  log = tmp_path / "calls.txt"
  monkeypatch.setenv("FAKE_LOG", str(log))
  work = tmp_path / "w"
  plan = sweep.Plan("cfg.py:{phase}", str(work), ("pretrain", "finetune"), [])
  grid = sweep.settings([1, 2, 3], ["spatial", "temporal"])
  # n2_spatial finished earlier: not run again.
  os.makedirs(work / "n2_spatial" / "finetune")
  (work / "n2_spatial" / "finetune" / "eval_results.json").write_text(
      json.dumps(dict(top1=0.5, top5=0.9, num_videos=9)))

  status = sweep.run(plan, grid, python=str(fake), env=dict(os.environ))
  calls = log.read_text().split()
  assert calls[:2] == [str(work / "n1_spatial" / "pretrain"),
                       str(work / "n1_spatial" / "finetune")]
  assert str(work / "n2_spatial" / "pretrain") not in calls
  # n=3 fails in pretraining: its fine-tuning never starts.
  assert str(work / "n3_spatial" / "finetune") not in calls
  assert status["n2_spatial"] == "done"
  assert status["n3_temporal"].startswith("failed: pretrain exited with 7")

  rows = sweep.collect(plan, grid, status)
  sweep.write_csv(rows, str(tmp_path / "t.csv"))
  table = {r["setting"]: r for r in _rows(tmp_path / "t.csv")}
  assert table["n1_temporal"]["top1"] == "15.00"
  assert table["n2_spatial"]["top1"] == "50.00"  # the earlier result, kept
  assert table["n3_spatial"]["top1"] == "" and table["n3_spatial"]["status"].startswith(
      "failed")
  assert sweep.plot(rows, str(tmp_path / "t.png"))
  assert (tmp_path / "t.png").stat().st_size > 1000


def _fake_python(tmp_path, monkeypatch):
  fake = tmp_path / "fake_python"
  fake.write_text(FAKE_MAIN.format(python=sys.executable))
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.txt"))
  return str(fake)


def test_seeds_run_each_setting_per_seed_and_report_mean_and_std(tmp_path, monkeypatch):
  fake = _fake_python(tmp_path, monkeypatch)
  monkeypatch.setenv("FAKE_NO_TOP5", "1")
  work = tmp_path / "w"
  plan = sweep.Plan("cfg.py:{phase}", str(work), ("pretrain", "finetune"), [], (0, 1, 2))
  grid = sweep.settings([1, 3, 4])
  cmds = plan.commands(grid[0], 2)
  assert [c[-1] for c in cmds] == ["--config.seed=2"] * 2
  assert f"--workdir={work}/n1/seed2/finetune" in cmds[1]
  # n4 seed 1 finished earlier (another job of the array): kept, not run again
  os.makedirs(work / "n4" / "seed1" / "finetune")
  (work / "n4" / "seed1" / "finetune" / "eval_results.json").write_text(
      json.dumps(dict(top1=0.9, num_videos=9)))

  status = sweep.run(plan, grid, python=fake, env=dict(os.environ))
  calls = (tmp_path / "calls.txt").read_text().split()
  assert str(work / "n4" / "seed1" / "pretrain") not in calls
  assert len(calls) == 2 * 8 - 3  # n3 fails in pretraining, for each seed
  assert status["n4/seed1"] == "done" and status["n1/seed0"] == "ran"
  assert status["n3/seed2"].startswith("failed: pretrain exited with 7")

  rows = {r["setting"]: r for r in sweep.collect(plan, grid, status)}
  assert rows["n1"]["seeds"] == 3
  assert rows["n1"]["top1"] == pytest.approx(11.0)  # 10 + seed: 10, 11, 12
  assert rows["n1"]["top1_std"] == pytest.approx(1.0)  # sample standard deviation
  assert rows["n1"]["top5"] is None and rows["n1"]["status"] == "done"
  assert rows["n4"]["top1"] == pytest.approx((40 + 90 + 42) / 3)
  assert rows["n3"]["seeds"] == 0 and rows["n3"]["top1"] is None
  assert rows["n3"]["status"].startswith("seed 0: failed")
  sweep.write_csv(list(rows.values()), str(tmp_path / "t.csv"))
  table = {r["setting"]: r for r in _rows(tmp_path / "t.csv")}
  assert (table["n1"]["top1"], table["n1"]["top1_std"], table["n1"]["top5"]) == (
      "11.00", "1.00", "")
  assert sweep.plot(list(rows.values()), str(tmp_path / "t.png"))


def test_seeds_print_one_line_per_run_and_refuse_a_seed_override(tmp_path, capsys):
  cfg = os.path.join(CONFIGS, "hmdb51_vit_b16.py")
  rc = sweep.main(["--config", cfg, "--workdir", str(tmp_path), "--n", "1,2",
                   "--seeds", "3,4", "--print-only"])
  assert rc == 0
  captured = capsys.readouterr()
  lines = captured.out.strip().splitlines()
  assert len(lines) == 4 and "--config.seed=4" in lines[1] and "n1/seed4" in lines[1]
  assert "seeds" in captured.err  # the table's header
  assert "--seeds" in _usage_error(capsys, [
      "--config", cfg, "--workdir", str(tmp_path), "--seeds", "0,1", "--print-only",
      "--overrides", "seed=3"])


def test_plot_is_skipped_without_results(tmp_path):
  plan = sweep.Plan("cfg.py", str(tmp_path), (), [])
  rows = sweep.collect(plan, sweep.settings([1, 2]))
  assert not sweep.plot(rows, str(tmp_path / "x.png"))


@pytest.mark.slow
def test_demo_sweep_end_to_end(tmp_path):
  """Two N on the demo config through the real time_jax.main, tiny budget."""
  env = dict(os.environ, TIME_JAX_DEMO_DATA=str(tmp_path / "data"),
             XLA_FLAGS="--xla_force_host_platform_device_count=1", PYTHONPATH=REPO)
  cmd = [sys.executable, "-m", "time_jax.sweep",
         "--config", os.path.join(CONFIGS, "demo.py"), "--workdir", str(tmp_path / "w"),
         "--n", "1,2", "--arrangement", "spatial", "--seeds", "3",
         "--overrides", "train.num_steps=2", "train.num_epochs=0", "train.log_every=1",
         "input.batch_size=4", "input.eval_batch_size=4", "input.eval_clips=1",
         "checkpoint.async_save=False", "model.kwargs.depth=1"]
  proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  rows = _rows(tmp_path / "w" / "sweep.csv")
  assert [r["setting"] for r in rows] == ["n1_spatial", "n2_spatial"]
  for r in rows:
    assert r["status"] == "done"
    assert 0.0 <= float(r["top1"]) <= 100.0
    assert r["seeds"] == "1"
    with open(tmp_path / "w" / r["setting"] / "seed3" / "config.json") as f:
      saved = json.load(f)
    assert saved["time"]["n"] == int(r["n"]) and saved["seed"] == 3
    # Each run's output is in its log, where the sweep says it is.
    log = (tmp_path / "w" / r["setting"] / "seed3" / "log.txt").read_text()
    assert log.startswith("$ ") and "main.py" in log and "Done: " in log, log[-2000:]
  assert (tmp_path / "w" / "sweep.png").stat().st_size > 1000


def test_plot_of_one_setting_names_it_on_the_x_axis(tmp_path, monkeypatch):
  import matplotlib.figure  # pylint: disable=g-import-not-at-top
  ticks = []
  monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, path, **kw: ticks.extend(
      t.get_text() for t in fig.axes[0].get_xticklabels()))
  plan = sweep.Plan("cfg.py", str(tmp_path), (), [], (0, 1))
  for seed, top1 in ((0, 0.5), (1, 0.7)):
    os.makedirs(tmp_path / "base" / f"seed{seed}")
    (tmp_path / "base" / f"seed{seed}" / "eval_results.json").write_text(
        json.dumps(dict(top1=top1, num_videos=9)))
  assert sweep.plot(sweep.collect(plan, sweep.settings()), str(tmp_path / "p.png"))
  assert ticks == ["base"]


@pytest.mark.slow
def test_a_mistake_stops_the_sweep_before_any_run_and_each_run_logs_where_it_says(
    tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO, TIME_JAX_DEMO_DATA=str(tmp_path / "data"))
  work = tmp_path / "w"
  sweep_cmd = [sys.executable, "-m", "time_jax.sweep", "--config", "configs/demo.py",
               "--workdir", str(work), "--n", "1,2", "--overrides"]
  typo = subprocess.run(sweep_cmd + ["train.num_stepz=2"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert typo.returncode == 2
  assert typo.stderr == ("error: --config.train.num_stepz: config.train has no field "
                         "'num_stepz'; did you mean 'num_steps'?\n"), typo.stderr
  assert not work.exists()  # nothing ran, nothing was written

  # A mistake only the run finds (listed videos that do not exist): named with its log.
  root = tmp_path / "set"
  root.mkdir()
  (root / "train.txt").write_text("a.mp4 0\nb.mp4 1\n")
  (root / "eval.txt").write_text("a.mp4 0\n")
  failed = subprocess.run(
      sweep_cmd[:-3] + ["--n", "1", "--overrides", "dataset.name=annotations",
                        f"dataset.root={root}", "dataset.train_annotations=train.txt",
                        "dataset.eval_annotations=eval.txt"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert failed.returncode == 1, failed.stderr[-3000:]
  log = work / "n1" / "log.txt"
  row = next(l for l in failed.stdout.splitlines() if l.startswith("n1 "))
  assert row.endswith(f"failed: run exited with 2 ({_run_error(log)}); log: {log}"), row
  assert "a.mp4" in _run_error(log) and log.read_text().startswith("$ ")
