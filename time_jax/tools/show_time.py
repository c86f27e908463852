"""Draws the TIME frames of a real video as one PNG.

  python -m time_jax.tools.show_time VIDEO --n 2 --t-out 4 --arrangement spatial --out grid.png

Decodes the frames `time_layer.frame_indices` chooses (evaluation sampling: segment
centres) with PyAV, takes the pipeline's evaluation view (short-side resize, centre
crop) at the cell size ``size // n``, applies `time_layer.arrange` and writes the T*
output frames side by side. ``--arrangement spatial,temporal`` draws one row each.
"""

from __future__ import annotations

import argparse
import functools
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from time_jax import time_layer
from time_jax.data import transforms
from time_jax.data import video
from time_jax.data.base import DecodeError


def stamp(cells: np.ndarray, numbers: np.ndarray) -> np.ndarray:
  """Writes ``numbers[i]`` into the top-left corner of ``cells[i]`` (``[k, h, w, 3]``)."""
  out = cells.copy()
  font = ImageFont.load_default(size=max(8, cells.shape[1] // 4))
  for i, number in enumerate(numbers):
    image = Image.fromarray(out[i])
    ImageDraw.Draw(image).text((2, 1), str(int(number)), fill=(255, 255, 255), font=font,
                               stroke_width=1, stroke_fill=(0, 0, 0))
    out[i] = np.asarray(image)
  return out


def time_frames(path: str, *, n: int, t_out: int, arrangement: str, size: int = 224,
                numbers: bool = False) -> np.ndarray:
  """The TIME frames of a video file: uint8 ``[t_out, n·(size//n), n·(size//n), 3]``.

  With ``numbers`` each cell shows the index of its source frame.
  """
  choose = functools.partial(time_layer.frame_indices, t_out=t_out, n=n)
  frames, indices = video.read_video(path, choose)
  cell = (size // n, size // n)
  view = transforms.eval_view(frames.shape[1], frames.shape[2], cell)
  cells = transforms.prepare(frames, view, cell)
  if numbers:
    cells = stamp(np.asarray(cells), indices)
  return np.asarray(time_layer.arrange(cells, n, arrangement))


def side_by_side(rows: list[np.ndarray], gap: int = 4) -> np.ndarray:
  """Lays ``rows`` of ``[t, h, w, 3]`` frames out as one white-separated image."""
  t, h, w, _ = rows[0].shape
  canvas = np.full((len(rows) * (h + gap) - gap, t * (w + gap) - gap, 3), 255, np.uint8)
  for r, frames in enumerate(rows):
    for i, frame in enumerate(frames):
      canvas[r * (h + gap):r * (h + gap) + h, i * (w + gap):i * (w + gap) + w] = frame
  return canvas


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m time_jax.tools.show_time", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("video")
  p.add_argument("--n", type=int, default=2, help="grid side N")
  p.add_argument("--t-out", type=int, default=4, help="output frames T*")
  p.add_argument("--arrangement", default="spatial",
                 help="spatial, temporal, or both comma-separated (one row each)")
  p.add_argument("--size", type=int, default=224, help="output frame size H* = W*")
  p.add_argument("--numbers", action="store_true",
                 help="write each cell's source frame index into its corner")
  p.add_argument("--out", required=True, help="PNG file to write")
  args = p.parse_args(argv)
  arrangements = [a.strip() for a in args.arrangement.split(",")]
  for a in arrangements:
    if a not in time_layer.ARRANGEMENTS:
      p.error(f"--arrangement {a!r}: use {' or '.join(time_layer.ARRANGEMENTS)}")
  try:
    rows = [time_frames(args.video, n=args.n, t_out=args.t_out, arrangement=a, size=args.size,
                        numbers=args.numbers)
            for a in arrangements]
  except (DecodeError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  Image.fromarray(side_by_side(rows)).save(args.out)
  print(f"wrote {args.out}: {', '.join(arrangements)}, N={args.n}, T*={args.t_out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
