"""The TIME frames of a video for several N, both arrangements side by side.

  python -m time_jax.diagnose time_grid --video FILE --n 1,2,4 --out DIR [--t-out 4]
  python -m time_jax.diagnose time_grid --video FILE --checkpoint WORKDIR --out DIR

One row per N: the T* output frames of each arrangement drawn (default: spatial, then
temporal), as evaluation reads them (`time_jax.diagnose.inputs.read_views`: segment
centres, short-side resize and centre crop at the cell size ``size // N``), then
`time_layer.arrange`. With ``--checkpoint WORKDIR`` (a training workdir) N, T*, the
arrangement, the size and the eval crop fraction come from the run's ``config.json``,
so the grid shows what the model saw; ``--n``, ``--t-out``, ``--arrangement`` and
``--size`` given explicitly override them. Writes ``time_grid.png`` and
``time_grid.csv`` / ``.json``: the source frame index held by every grid cell (output
frame, row, column) for each N and arrangement.
"""

from __future__ import annotations

import argparse
import csv
import json
import os

import ml_collections
import numpy as np

from time_jax import checkpoints
from time_jax import config as config_lib
from time_jax import time_layer
from time_jax.diagnose import inputs
from time_jax.diagnose import plots

_BOTH = "both"


def cell_sources(num_frames: int, n: int, t_out: int, arrangement: str) -> np.ndarray:
  """The source frame of every cell: int ``[t_out, n, n]`` (output frame, row, column)."""
  idx = time_layer.frame_indices(num_frames, t_out, n)
  grid = time_layer.arrange(idx[:, None, None, None], n, arrangement)  # [t, n, n, 1]
  return np.asarray(grid)[..., 0]


def run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training workdir's run wrote (``config.json``).

  Raises:
    CheckpointError: ``workdir`` is not a training workdir with a readable config.
  """
  path = os.path.join(workdir, checkpoints.CONFIG_FILE)
  if not os.path.isfile(path):
    raise checkpoints.CheckpointError(
        f"{workdir}: no {checkpoints.CONFIG_FILE}; --checkpoint takes a training "
        "workdir (the run's N, T*, arrangement and size come from its config).")
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise checkpoints.CheckpointError(f"{path}: cannot read it as JSON ({e}).") from e


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--video", required=True, help="a video file or frame folder")
  p.add_argument("--checkpoint", default=None,
                 help="a training workdir: N, T*, arrangement and size default to its "
                 "config's, the clips the model saw")
  p.add_argument("--n", default=None,
                 help="comma-separated grid sides N (default: the run's N, else 1,2,4)")
  p.add_argument("--t-out", type=int, default=None,
                 help="output frames T* (default: the run's, else 4)")
  p.add_argument("--arrangement", default=None,
                 choices=(*time_layer.ARRANGEMENTS, _BOTH),
                 help="arrangements drawn (default: the run's, else both)")
  p.add_argument("--size", type=int, default=None,
                 help="output frame size H* = W* (default: the run's image_size, else 224)")
  p.add_argument("--out", required=True, help="output folder")


def _settings(args: argparse.Namespace) -> tuple[ml_collections.ConfigDict, list[int],
                                                  list[str]]:
  """``(config, Ns, arrangements)``: the run's config (or the defaults) with the
  explicit flags applied."""
  if args.checkpoint:
    config = run_config(args.checkpoint)
    n_text = args.n or str(config.time.n)
    arrangement = args.arrangement or str(config.time.arrangement)
  else:
    config = config_lib.base_config()
    config.time.t_out, config.image_size = 4, 224
    n_text, arrangement = args.n or "1,2,4", args.arrangement or _BOTH
  if args.t_out is not None:
    config.time.t_out = args.t_out
  if args.size is not None:
    config.image_size = args.size
  try:
    ns = [int(n) for n in n_text.split(",") if n.strip()]
  except ValueError as e:
    raise ValueError(f"--n {n_text!r}: give integers like 1,2,4.") from e
  if not ns or min(ns) < 1:
    raise ValueError(f"--n {n_text!r}: every N must be >= 1.")
  if config.time.t_out < 1 or config.image_size < max(ns):
    raise ValueError(f"T*={config.time.t_out}, size={config.image_size}: T* must be >= 1 "
                     f"and the size at least the largest N ({max(ns)}).")
  arrangements = list(time_layer.ARRANGEMENTS) if arrangement == _BOTH else [arrangement]
  return config, ns, arrangements


def run(args: argparse.Namespace) -> str:
  """The CLI tool; returns a one-line summary."""
  config, ns, arrangements = _settings(args)
  t_out, size = int(config.time.t_out), int(config.image_size)
  total = inputs.num_frames(args.video)
  rows, labels, table = [], [], []
  for n in ns:
    config.time.n = n
    cells = inputs.read_views(args.video, config)[0]  # [t_out·n·n, size//n, size//n, 3]
    rows.append([])
    labels.append(f"N={n}")
    for arrangement in arrangements:
      rows[-1] += list(np.asarray(time_layer.arrange(cells, n, arrangement)))
      sources = cell_sources(total, n, t_out, arrangement)
      for (t, r, c), s in np.ndenumerate(sources):
        table.append(dict(n=n, arrangement=arrangement, frame=t, row=r, col=c, source=int(s)))
  os.makedirs(args.out, exist_ok=True)
  png = os.path.join(args.out, "time_grid.png")
  source = f" as {os.path.basename(os.path.abspath(args.checkpoint))} saw it" \
      if args.checkpoint else ""
  plots.image_grid(rows, png, row_labels=labels, cell=2.0,
                   col_labels=[f"{a} t={i}" for a in arrangements for i in range(t_out)],
                   title=f"{os.path.basename(args.video)}: {total} frames, T*={t_out}, "
                   f"{size}²{source}")
  with open(os.path.join(args.out, "time_grid.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(table[0]))
    w.writeheader()
    w.writerows(table)
  with open(os.path.join(args.out, "time_grid.json"), "w") as f:
    json.dump(dict(video=args.video, num_frames=total, t_out=t_out, size=size,
                   checkpoint=args.checkpoint, cells={
                       f"n{n}_{a}": cell_sources(total, n, t_out, a).tolist()
                       for n in ns for a in arrangements}), f, indent=2)
  return (f"wrote {png}: N in {ns}, {' and '.join(arrangements)}, T*={t_out}, "
          f"size {size}" + (f" (from {args.checkpoint})" if args.checkpoint else ""))
