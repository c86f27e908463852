r"""Sweeps of the TIME grid side N, the arrangement and the mask ratio (paper Fig. 2-4).

One training per setting, each in its own sub-workdir, through the real
``python -m time_jax.main``::

    python -m time_jax.sweep --config configs/hmdb51_vit_b16.py --workdir W \
        --n 1,2,4,7 --arrangement spatial,temporal \
        --overrides dataset.root=/data/hmdb51 checkpoint.init_from=/w/vit_b16_in1k

runs the eight settings one after another in ``W/n1_spatial``, ``W/n1_temporal``, ...,
each run's output in its workdir's ``log.txt`` (the console says when each starts and
names a failure with its error line). Every run's config is built and validated first,
as ``time_jax.main`` would, so a mistake (a mistyped override) is one ``error:`` line
(exit 2) before anything runs. ``--print-only`` prints the command lines instead (one a
line, for a cluster's job array), without running or checking anything. Two-phase recipes name the phase with ``{phase}`` in
the config argument; every setting then runs the phases of ``--phases`` (default
``pretrain,finetune``) in ``W/<setting>/<phase>``, and the fine-tuning phase finds its
pretraining run at ``../pretrain``::

    python -m time_jax.sweep --config 'configs/hmdb51_videomae.py:{phase},1' \
        --workdir W --n 1,2,4 --mask-ratio 0.5,0.75,0.9

``--mask-ratio`` sets ``pretrain.mask_ratio`` (Fig. 4). ``--seeds 0,1,2`` runs every
setting once per seed (``--config.seed=S``, which also seeds the data order and
augmentation unless the config sets ``input.shuffle_seed``), in ``W/<setting>/seed<S>``
(two-phase: ``W/<setting>/seed<S>/<phase>``). Runs whose final phase already wrote
``eval_results.json`` are not run again. After running (and with ``--print-only`` or
``--collect-only``, from whatever has finished) the results are gathered into
``W/sweep.csv``, one row per setting: top-1 / top-5 in %, with seeds their mean and
sample standard deviation over the finished seeds (``seeds`` counts them; top-5 stays
empty where the runs report none), and ``W/sweep.png``: top-1 against N (± one standard
deviation with seeds), one line per arrangement (and mask ratio); against the mask
ratio when only the mask ratio varies; one point per setting, named, when nothing
varies.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import logging
import math
import os
import shlex
import statistics
import subprocess
import sys
from typing import Sequence

from time_jax import console
from time_jax import time_layer

RESULTS_FILE = "eval_results.json"  # written by time_jax.train.loop at the final eval
LOG_FILE = "log.txt"  # each run's output, in its workdir
CSV_FILE = "sweep.csv"
PLOT_FILE = "sweep.png"
PHASE_KEY = "{phase}"
CSV_FIELDS = ("setting", "n", "arrangement", "mask_ratio", "seeds", "top1", "top1_std",
              "top5", "top5_std", "num_videos", "status", "workdir")


@dataclasses.dataclass(frozen=True)
class Setting:
  """One point of the sweep; None fields keep the config's value."""
  n: int | None = None
  arrangement: str | None = None
  mask_ratio: float | None = None

  @property
  def name(self) -> str:
    """The sub-workdir name, e.g. ``n2_spatial_mask0.75``."""
    parts = []
    if self.n is not None:
      parts.append(f"n{self.n}")
    if self.arrangement is not None:
      parts.append(self.arrangement)
    if self.mask_ratio is not None:
      parts.append(f"mask{self.mask_ratio:g}")
    return "_".join(parts) or "base"

  def overrides(self) -> list[str]:
    """The ``--config.*`` flags of this setting."""
    out = []
    if self.n is not None:
      out.append(f"--config.time.n={self.n}")
    if self.arrangement is not None:
      out.append(f"--config.time.arrangement={self.arrangement}")
    if self.mask_ratio is not None:
      out.append(f"--config.pretrain.mask_ratio={self.mask_ratio:g}")
    return out


def parse_list(text: str | None, kind, flag: str) -> list:
  """``'1,2,4'`` -> ``[1, 2, 4]``; None / '' -> ``[]``; names the flag on error."""
  if not text:
    return []
  out = []
  for item in text.split(","):
    item = item.strip()
    try:
      out.append(kind(item))
    except ValueError:
      raise ValueError(f"{flag}: {item!r} is not a {kind.__name__}; give a comma-separated "
                       f"list such as {'1,2,4' if kind is int else '0.5,0.75'}.") from None
  if len(set(out)) != len(out):
    raise ValueError(f"{flag}: {text!r} repeats a value.")
  return out


def settings(ns: Sequence[int] = (), arrangements: Sequence[str] = (),
             mask_ratios: Sequence[float] = ()) -> list[Setting]:
  """The grid of settings (product of the given lists; an empty list is not swept).

  Raises:
    ValueError: an N below 1, an unknown arrangement or a mask ratio outside (0, 1).
  """
  for n in ns:
    if n < 1:
      raise ValueError(f"--n: {n} must be >= 1.")
  for a in arrangements:
    if a not in time_layer.ARRANGEMENTS:
      raise ValueError(f"--arrangement: {a!r}; use {','.join(time_layer.ARRANGEMENTS)}.")
  for r in mask_ratios:
    if not 0 < r < 1:
      raise ValueError(f"--mask-ratio: {r} must be in (0, 1).")
  grid = itertools.product(list(ns) or [None], list(arrangements) or [None],
                           list(mask_ratios) or [None])
  return [Setting(n, a, r) for n, a, r in grid]


def normalise_overrides(items: Sequence[str]) -> list[str]:
  """``['train.num_steps=2', '--config.seed=1']`` -> ``--config.KEY=VALUE`` flags."""
  out = []
  for item in items:
    key = item[2:] if item.startswith("--") else item
    if "=" not in key:
      raise ValueError(f"--overrides: {item!r} must look like KEY=VALUE "
                       "(e.g. train.num_epochs=10 or --config.train.num_epochs=10).")
    out.append("--" + (key if key.startswith("config.") else f"config.{key}"))
  return out


@dataclasses.dataclass
class Plan:
  """What to run for each setting (and seed): ``(phase, config spec, workdir)`` in order.

  ``seeds`` empty: one run per setting with the config's seed, in ``W/<setting>``.
  """
  config: str
  workdir: str
  phases: tuple[str, ...]
  overrides: list[str]
  seeds: tuple[int, ...] = ()

  def runs(self) -> list[int | None]:
    """The seeds each setting runs with (``[None]``: the config's own)."""
    return list(self.seeds) or [None]

  def steps(self, s: Setting, seed: int | None = None) -> list[tuple[str, str, str]]:
    root = os.path.join(self.workdir, s.name)
    if seed is not None:
      root = os.path.join(root, f"seed{seed}")
    if PHASE_KEY not in self.config:
      return [("", self.config, root)]
    return [(p, self.config.replace(PHASE_KEY, p), os.path.join(root, p))
            for p in self.phases]

  def commands(self, s: Setting, seed: int | None = None,
               python: str = sys.executable) -> list[list[str]]:
    """The ``time_jax.main`` command line of each phase of setting ``s`` (and seed)."""
    seed_flag = [] if seed is None else [f"--config.seed={seed}"]
    return [[python, "-m", "time_jax.main", f"--config={spec}", f"--workdir={wd}",
             *s.overrides(), *seed_flag, *self.overrides]
            for _, spec, wd in self.steps(s, seed)]

  def results_dir(self, s: Setting, seed: int | None = None) -> str:
    """The workdir whose ``eval_results.json`` holds the run's result."""
    return self.steps(s, seed)[-1][2]

  @staticmethod
  def run_name(s: Setting, seed: int | None) -> str:
    return s.name if seed is None else f"{s.name}/seed{seed}"


def read_result(workdir: str) -> dict | None:
  """The final eval of a run (``eval_results.json``), or None when it has none yet."""
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def check(plan: Plan, grid: Sequence[Setting]) -> None:
  """Builds and validates the config of every run still to run, as ``time_jax.main``
  will (`console.load_config`, `time_jax.config.validate`), before any of them starts:
  a mistake is one ``error:`` line naming the run (`console.usage_error`, exit 2)."""
  from time_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  for s in grid:
    for seed in plan.runs():
      if read_result(plan.results_dir(s, seed)) is not None:
        continue
      for (phase, spec, _), cmd in zip(plan.steps(s, seed), plan.commands(s, seed)):
        overrides = [a for a in cmd if a.startswith("--config.")]
        with console.config_errors(["sweep", f"--config={spec}", *overrides]):
          config = console.load_config(spec, overrides)
        try:
          config_lib.validate(config)
        except ValueError as e:
          console.usage_error(f"{plan.run_name(s, seed)}{f' ({phase})' if phase else ''}: "
                              f"{e}")


def _last_error(log: str) -> str:
  """The last ``error:`` line of a run's log (a mistake's one line), else its last line."""
  try:
    with open(log, errors="replace") as f:
      lines = [l.strip() for l in f.readlines()[-200:] if l.strip()]
  except OSError:
    return ""
  errors = [l for l in lines if l.startswith("error: ")]
  return (errors or lines or [""])[-1]


def run(plan: Plan, grid: Sequence[Setting], python: str = sys.executable,
        env: dict | None = None) -> dict[str, str]:
  """Runs every setting's phases in order, once per seed; returns run name (`Plan.run_name`)
  -> status.

  Each phase's output (stdout and stderr) goes to ``LOG_FILE`` in its workdir; the
  console gets a line when a run starts and when one fails. A run whose results exist
  is skipped (``'done'``); a failing phase stops that run (``'failed: ...'``, with its
  last error line and log) and the sweep goes on with the next.
  """
  status = {}
  for s in grid:
    for seed in plan.runs():
      name = plan.run_name(s, seed)
      if read_result(plan.results_dir(s, seed)) is not None:
        logging.info("%s: results exist in %s; skipped.", name, plan.results_dir(s, seed))
        status[name] = "done"
        continue
      status[name] = "ran"
      for (phase, _, wd), cmd in zip(plan.steps(s, seed), plan.commands(s, seed, python)):
        os.makedirs(wd, exist_ok=True)
        log = os.path.join(wd, LOG_FILE)
        logging.info("%s%s: running (log: %s): %s", name, f" ({phase})" if phase else "",
                     log, shlex.join(cmd))
        with open(log, "a") as f:
          f.write(f"$ {shlex.join(cmd)}\n")
          f.flush()
          rc = subprocess.run(cmd, env=env, check=False, stdin=subprocess.DEVNULL,
                              stdout=f, stderr=subprocess.STDOUT).returncode
        if rc != 0:
          last = _last_error(log)
          status[name] = (f"failed: {phase or 'run'} exited with {rc}"
                          f"{f' ({last})' if last else ''}; log: {log}")
          logging.error("%s: %s", name, status[name])
          break
  return status


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
  """Mean and sample standard deviation (None for no values / a single one)."""
  if not values:
    return None, None
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def collect(plan: Plan, grid: Sequence[Setting],
            status: dict[str, str] | None = None) -> list[dict]:
  """One table row per setting from its runs' ``eval_results.json`` (% for top-k).

  With seeds, ``top1`` / ``top5`` are the means over the finished seeds and
  ``top1_std`` / ``top5_std`` their sample standard deviations; ``seeds`` counts the
  finished runs. Runs without ``top5`` (few classes) leave it empty.
  """
  status = status or {}
  rows = []
  for s in grid:
    results, states = [], []
    for seed in plan.runs():
      res = read_result(plan.results_dir(s, seed))
      if res is not None:
        results.append(res)
      else:
        state = status.get(plan.run_name(s, seed), "")
        states.append(f"{'' if seed is None else f'seed {seed}: '}"
                      f"{state if state.startswith('failed') else 'missing'}")
    top1, top1_std = _mean_std([100 * float(r["top1"]) for r in results])
    top5, top5_std = _mean_std([100 * float(r["top5"]) for r in results
                                if r.get("top5") is not None])
    root = os.path.join(plan.workdir, s.name) if plan.seeds else plan.results_dir(s)
    row = dict(setting=s.name, n=s.n, arrangement=s.arrangement, mask_ratio=s.mask_ratio,
               seeds=len(results) if plan.seeds else None, top1=top1, top1_std=top1_std,
               top5=top5, top5_std=top5_std, workdir=root,
               num_videos=int(results[0].get("num_videos", 0)) if results else None)
    row["status"] = "; ".join(states) if states else "done"
    rows.append(row)
  return rows


def write_csv(rows: Sequence[dict], path: str) -> None:
  """The table as CSV (empty cells for unset / missing values)."""
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
    w.writeheader()
    for r in rows:
      w.writerow({k: ("" if r.get(k) is None else
                      f"{r[k]:.2f}" if k.startswith(("top1", "top5")) else r[k])
                  for k in CSV_FIELDS})


def plot(rows: Sequence[dict], path: str, title: str = "") -> bool:
  """Top-1 against N (or the mask ratio), one line per other setting; False if empty."""
  done = [r for r in rows if r["top1"] is not None]
  if not done:
    return False
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  ns = {r["n"] for r in rows}
  x_key = "mask_ratio" if len(ns) == 1 and len({r["mask_ratio"] for r in rows}) > 1 else "n"
  if all(r[x_key] is None for r in done):  # nothing swept along x: one point a setting
    return _plot_settings(done, path, title)
  line_keys = [k for k in ("arrangement", "mask_ratio", "n") if k != x_key]
  lines: dict[tuple, list] = {}
  for r in done:
    lines.setdefault(tuple(r[k] for k in line_keys), []).append(r)
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for key, pts in sorted(lines.items(), key=lambda kv: str(kv[0])):
    pts = sorted(pts, key=lambda r: r[x_key] if r[x_key] is not None else -math.inf)
    label = ", ".join(f"{k.replace('_', ' ')} {v:g}" if isinstance(v, float) else
                      (f"N={v}" if k == "n" else str(v))
                      for k, v in zip(line_keys, key) if v is not None)
    xs = [r[x_key] if r[x_key] is not None else 0 for r in pts]
    err = [r.get("top1_std") or 0.0 for r in pts]
    ax.errorbar(xs, [r["top1"] for r in pts], yerr=err if any(err) else None, marker="o",
                capsize=3, label=label or None)
  ax.set_xlabel("N (grid side)" if x_key == "n" else "mask ratio")
  if x_key == "n":
    ax.set_xticks(sorted({r["n"] for r in done if r["n"] is not None}))
  ax.set_ylabel("top-1 accuracy (%)")
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title, fontsize=9)
  if ax.get_legend_handles_labels()[1]:
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def _plot_settings(done: Sequence[dict], path: str, title: str) -> bool:
  """Top-1 of each setting (± one standard deviation with seeds), named on the x axis."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(max(3.0, 1.2 * len(done) + 1.5), 4))
  xs = list(range(len(done)))
  err = [r.get("top1_std") or 0.0 for r in done]
  ax.errorbar(xs, [r["top1"] for r in done], yerr=err if any(err) else None,
              marker="o", linestyle="none", capsize=3)
  ax.set_xticks(xs, [r["setting"] for r in done])
  ax.set_xlim(-0.5, len(done) - 0.5)
  ax.set_xlabel("setting")
  ax.set_ylabel("top-1 accuracy (%)")
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def _cell(row: dict, key: str) -> str:
  """``'97.50'``, ``'97.50 ± 1.25'`` with a standard deviation, ``'-'`` when missing."""
  if row[key] is None:
    return "-"
  std = row.get(f"{key}_std")
  return f"{row[key]:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def parse_args(argv):
  p = argparse.ArgumentParser(prog="python -m time_jax.sweep", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True,
                 help="config file[:arg]; '{phase}' in it runs the --phases in order")
  p.add_argument("--workdir", required=True, help="one sub-workdir per setting goes here")
  p.add_argument("--n", default="", help="grid sides N, e.g. 1,2,4,7")
  p.add_argument("--arrangement", default="", help="spatial,temporal")
  p.add_argument("--mask-ratio", default="", help="pretraining mask ratios, e.g. 0.5,0.75,0.9")
  p.add_argument("--seeds", default="",
                 help="run every setting once per seed (--config.seed), e.g. 0,1,2; "
                      "the table reports mean ± std")
  p.add_argument("--phases", default="pretrain,finetune",
                 help="phases of a '{phase}' config, in order (default pretrain,finetune)")
  p.add_argument("--overrides", nargs="*", default=[],
                 help="KEY=VALUE config overrides passed to every run "
                      "(e.g. dataset.root=/data/ucf101 train.num_epochs=10)")
  p.add_argument("--print-only", action="store_true",
                 help="print the command lines (one setting a line) and run nothing")
  p.add_argument("--collect-only", action="store_true",
                 help="run nothing; only write the table and plot of finished settings")
  return p.parse_args(argv)


def main(argv=None) -> int:
  console.cli_logging()
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    grid = settings(parse_list(args.n, int, "--n"),
                    parse_list(args.arrangement, str, "--arrangement"),
                    parse_list(args.mask_ratio, float, "--mask-ratio"))
    phases = tuple(parse_list(args.phases, str, "--phases"))
    if PHASE_KEY in args.config and not phases:
      raise ValueError("--phases: the config has '{phase}' but no phase is given.")
    first = args.config.replace(PHASE_KEY, phases[0]) if PHASE_KEY in args.config \
        else args.config
    with console.config_errors(["sweep", f"--config={first}"]):
      config = console.load_config(first)  # a wrong path or config argument: one line
    if args.mask_ratio and config.mode != "pretrain":
      raise ValueError(f"--mask-ratio: {first} is a {config.mode!r} config; the mask "
                       "ratio only acts in pretraining. Put '{phase}' in --config to "
                       "pretrain then fine-tune each setting.")
    seeds = tuple(parse_list(args.seeds, int, "--seeds"))
    overrides = normalise_overrides(args.overrides)
    if seeds and any(o.startswith("--config.seed=") for o in overrides):
      raise ValueError("--overrides sets config.seed; give the seeds with --seeds.")
    plan = Plan(args.config, os.path.abspath(args.workdir), phases, overrides, seeds)
  except ValueError as e:
    console.usage_error(str(e))

  status: dict[str, str] = {}
  if args.print_only:
    for s in grid:
      for seed in plan.runs():
        print(" && ".join(shlex.join(c) for c in plan.commands(s, seed)))
  elif not args.collect_only:
    check(plan, grid)  # one mistake, said once, before anything runs
    status = run(plan, grid)

  rows = collect(plan, grid, status)
  os.makedirs(plan.workdir, exist_ok=True)
  csv_path = os.path.join(plan.workdir, CSV_FILE)
  write_csv(rows, csv_path)
  out = sys.stderr if args.print_only else sys.stdout
  width = 15 if seeds else 8
  seeds_col = f" {'seeds':>5}" if seeds else ""
  print(f"{'setting':<28}{seeds_col} {'top-1 %':>{width}} {'top-5 %':>{width}}  status",
        file=out)
  for r in rows:
    cells = [_cell(r, "top1"), _cell(r, "top5")]
    seeds_cell = f" {r['seeds']:>5}" if seeds else ""
    print(f"{r['setting']:<28}{seeds_cell} {cells[0]:>{width}} {cells[1]:>{width}}  "
          f"{r['status']}", file=out)
  print(f"table: {csv_path}", file=out)
  png = os.path.join(plan.workdir, PLOT_FILE)
  if plot(rows, png, title=args.config):
    print(f"plot: {png}", file=out)
  return 1 if any(v.startswith("failed") for v in status.values()) else 0


if __name__ == "__main__":
  sys.exit(main())
