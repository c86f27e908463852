"""The TIME frames of a video for several N, both arrangements side by side.

  python -m time_jax.diagnose time_grid --video FILE --n 1,2,4 --out DIR [--t-out 4]

One row per N: the T* output frames of the spatial arrangement, then those of the
temporal one, drawn with `time_jax.tools.show_time` (evaluation sampling and view). Writes ``time_grid.png`` and
``time_grid.csv`` / ``.json``: the source frame index held by every grid cell
(output frame, row, column) for each N and arrangement.
"""

from __future__ import annotations

import argparse
import csv
import json
import os

import numpy as np

from time_jax import time_layer
from time_jax.data import video as video_lib
from time_jax.diagnose import plots
from time_jax.tools import show_time


def cell_sources(num_frames: int, n: int, t_out: int, arrangement: str) -> np.ndarray:
  """The source frame of every cell: int ``[t_out, n, n]`` (output frame, row, column)."""
  idx = time_layer.frame_indices(num_frames, t_out, n)
  grid = time_layer.arrange(idx[:, None, None, None], n, arrangement)  # [t, n, n, 1]
  return np.asarray(grid)[..., 0]


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--video", required=True, help="a video file")
  p.add_argument("--n", default="1,2,4", help="comma-separated grid sides N")
  p.add_argument("--t-out", type=int, default=4, help="output frames T*")
  p.add_argument("--size", type=int, default=224, help="output frame size H* = W*")
  p.add_argument("--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> str:
  """The CLI tool; returns a one-line summary."""
  try:
    ns = [int(n) for n in args.n.split(",") if n.strip()]
  except ValueError as e:
    raise ValueError(f"--n {args.n!r}: give integers like 1,2,4.") from e
  if not ns or min(ns) < 1:
    raise ValueError(f"--n {args.n!r}: every N must be >= 1.")
  total = video_lib.num_frames(args.video)
  rows, labels, table = [], [], []
  for n in ns:
    rows.append([])
    labels.append(f"N={n}")
    for arrangement in time_layer.ARRANGEMENTS:
      frames = show_time.time_frames(args.video, n=n, t_out=args.t_out,
                                     arrangement=arrangement, size=args.size)
      rows[-1] += list(frames)
      sources = cell_sources(total, n, args.t_out, arrangement)
      for (t, r, c), s in np.ndenumerate(sources):
        table.append(dict(n=n, arrangement=arrangement, frame=t, row=r, col=c, source=int(s)))
  os.makedirs(args.out, exist_ok=True)
  png = os.path.join(args.out, "time_grid.png")
  plots.image_grid(rows, png, row_labels=labels, cell=2.0,
                   col_labels=[f"{a} t={i}" for a in time_layer.ARRANGEMENTS
                               for i in range(args.t_out)],
                   title=f"{os.path.basename(args.video)}: {total} frames, T*={args.t_out}")
  with open(os.path.join(args.out, "time_grid.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(table[0]))
    w.writeheader()
    w.writerows(table)
  with open(os.path.join(args.out, "time_grid.json"), "w") as f:
    json.dump(dict(video=args.video, num_frames=total, t_out=args.t_out, cells={
        f"n{n}_{a}": cell_sources(total, n, args.t_out, a).tolist()
        for n in ns for a in time_layer.ARRANGEMENTS}), f, indent=2)
  return f"wrote {png}: N in {ns}, {' and '.join(time_layer.ARRANGEMENTS)}, T*={args.t_out}"
