"""A generated temporal dataset: classes that only the order of frames tells apart.

Classes come in pairs: a clip of the second class of a pair is a clip of the first
played backwards (a shape moving right vs left, down vs up, growing vs shrinking,
appearing vs vanishing). Each clip draws its own colours, shape, size, path and length,
and a reversed clip is drawn from the same distribution, so every single frame is
equally likely in both classes of a pair: one frame (N = 1) can name the pair but not
the class within it (at best 50% within a pair), while a TIME grid of several frames
(N >= 2) sees the motion. The demo (``configs/demo.py``) and tests train on it.

    python -m time_jax.data.synthetic --out DIR --videos-per-class 40

writes real mp4 files (H.264 through PyAV) and the annotation files the ``annotations``
protocol reads::

    DIR/videos/<class>/<class>_0000.mp4
    DIR/train.txt      videos/<class>/<class>_0000.mp4 <label>    (one clip a line)
    DIR/test.txt       ... the held-out clips, same format
    DIR/classes.txt    one class name a line, in label order
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from typing import Sequence

import av
import numpy as np

# The first motion of each pair; the second class of the pair is its reverse.
MOTIONS = ("right", "down", "grow", "appear")
REVERSE = {"right": "left", "down": "up", "grow": "shrink", "appear": "vanish"}
CLASSES = tuple(name for m in MOTIONS for name in (m, REVERSE[m]))
SHAPES = ("square", "disc", "diamond")


def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float,
                radius: float) -> np.ndarray:
  """``[h, w]`` bool: the pixels of ``shape`` centred at (cy, cx)."""
  dy, dx = np.abs(yy - cy), np.abs(xx - cx)
  if shape == "square":
    return (dy <= radius) & (dx <= radius)
  if shape == "disc":
    return dy ** 2 + dx ** 2 <= radius ** 2
  return dy + dx <= radius * 1.3  # diamond


def clip(motion: str, rng: np.random.Generator, *, num_frames: int,
         size: int) -> np.ndarray:
  """One clip of a forward ``motion`` (a key of `REVERSE`).

  Returns:
    ``[num_frames, size, size, 3]`` uint8 frames.
  """
  if motion not in REVERSE:
    raise ValueError(f"motion {motion!r} is not one of {MOTIONS}")
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  # A background with a soft gradient and an object colour far from it.
  bg = rng.uniform(20, 120, size=3)
  tilt = rng.uniform(-30, 30, size=3)
  background = bg + tilt * (yy[..., None] / size)
  colour = bg + rng.uniform(100, 135, size=3)
  shape = SHAPES[rng.integers(len(SHAPES))]
  radius = rng.uniform(0.1, 0.16) * size
  margin = 1.3 * radius + 1  # the diamond's half-width
  t = np.linspace(0.0, 1.0, num_frames)
  cy = np.full(num_frames, rng.uniform(margin, size - margin))
  cx = np.full(num_frames, rng.uniform(margin, size - margin))
  r = np.full(num_frames, radius)
  alpha = np.ones(num_frames)
  span = size - 2 * margin  # where a centre may go
  travel = rng.uniform(0.5, 1.0) * span
  start = margin + rng.uniform(0, span - travel)
  if motion == "right":
    cx = start + travel * t
  elif motion == "down":
    cy = start + travel * t
  elif motion == "grow":
    r = (0.04 + (rng.uniform(0.2, 0.3) - 0.04) * t) * size
    cy = np.full(num_frames, size / 2 + rng.uniform(-0.1, 0.1) * size)
    cx = np.full(num_frames, size / 2 + rng.uniform(-0.1, 0.1) * size)
  elif motion == "appear":
    alpha = t
  frames = np.empty((num_frames, size, size, 3), np.uint8)
  for k in range(num_frames):
    mask = _shape_mask(shape, yy, xx, cy[k], cx[k], r[k])[..., None] * alpha[k]
    frames[k] = np.clip(background * (1 - mask) + colour * mask, 0, 255).astype(np.uint8)
  return frames


def write_mp4(path: str, frames: np.ndarray, fps: int = 25, *, crf: int = 18,
              gop: int | None = None, deterministic: bool = True) -> None:
  """Encodes ``[t, h, w, 3]`` uint8 frames as H.264 mp4.

  Args:
    path: the output file.
    frames: the clip.
    fps: frames per second.
    crf: x264's constant rate factor (18: near-lossless; 23: x264's default).
    gop: at most this many frames between keyframes (None: x264's default, 250).
    deterministic: one encoder thread and no SIMD, so the bytes (and the decoded
      pixels) are the same in every run; slower, fine for small clips.
  """
  h, w = frames.shape[1:3]
  with av.open(path, "w") as container:
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height = w, h
    stream.pix_fmt = "yuv420p"
    options = {"crf": str(crf), "preset": "veryfast"}
    if gop is not None:
      options["g"] = str(gop)
    if deterministic:
      # Otherwise x264's output varies from run to run (threads, SIMD code paths).
      stream.codec_context.thread_count = 1
      stream.codec_context.thread_type = "NONE"
      options["x264-params"] = "threads=1:lookahead-threads=1:sliced-threads=0:asm=0"
    stream.options = options
    for image in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def generate(out: str, *, videos_per_class: int = 40, test_fraction: float = 0.25,
             frames: tuple[int, int] = (16, 32), size: int = 64, seed: int = 0) -> dict:
  """Writes the dataset into ``out`` (see the module docstring).

  Args:
    out: the folder to write; created if needed.
    videos_per_class: clips of each class, split into train and test.
    test_fraction: the fraction of each class held out in ``test.txt``.
    frames: the (min, max) clip length, drawn per clip.
    size: frame height and width.
    seed: the generator seed; the same seed writes the same frames.

  Returns:
    ``{"train": count, "test": count, "classes": [...]}``.
  """
  if videos_per_class < 2:
    raise ValueError(f"--videos-per-class {videos_per_class}: need at least 2 "
                     "(one for train, one for test).")
  if not 0 < test_fraction < 1:
    raise ValueError(f"test_fraction {test_fraction} must be in (0, 1).")
  num_test = min(videos_per_class - 1, max(1, round(videos_per_class * test_fraction)))
  rng = np.random.default_rng(seed)
  lines = {"train": [], "test": []}
  for motion in MOTIONS:
    for reverse in (False, True):
      name = REVERSE[motion] if reverse else motion
      label = CLASSES.index(name)
      os.makedirs(os.path.join(out, "videos", name), exist_ok=True)
      for i in range(videos_per_class):
        video = clip(motion, rng, num_frames=int(rng.integers(frames[0], frames[1] + 1)),
                     size=size)
        rel = f"videos/{name}/{name}_{i:04d}.mp4"
        write_mp4(os.path.join(out, rel), video[::-1] if reverse else video)
        lines["test" if i < num_test else "train"].append(f"{rel} {label}")
  with open(os.path.join(out, "classes.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(CLASSES) + "\n")
  # train.txt last: its presence marks a complete dataset (`ensure_synthetic`).
  for split in ("test", "train"):
    with open(os.path.join(out, f"{split}.txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(lines[split]) + "\n")
  return {"train": len(lines["train"]), "test": len(lines["test"]),
          "classes": list(CLASSES)}


def ensure_synthetic(root: str, *, videos_per_class: int = 40, seed: int = 0) -> str:
  """Generates the dataset into ``root`` unless it is already complete there.

  Safe when several processes ask at once: each writes a private folder and the
  first to finish moves it into place. Returns ``root``.
  """
  if os.path.isfile(os.path.join(root, "train.txt")):
    return root
  parent = os.path.dirname(os.path.abspath(root))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".synthetic-", dir=parent)
  try:
    logging.info("Generating the synthetic temporal dataset into %s.", root)
    generate(tmp, videos_per_class=videos_per_class, seed=seed)
    try:
      os.rename(tmp, root)
    except OSError:
      # Another process finished first (or root exists without train.txt).
      if not os.path.isfile(os.path.join(root, "train.txt")):
        raise
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  return root


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(
      prog="python -m time_jax.data.synthetic",
      description="Write the generated temporal dataset (classes in pairs that differ "
                  "only in temporal order) as mp4 files with annotation files.")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--videos-per-class", type=int, default=40)
  p.add_argument("--test-fraction", type=float, default=0.25)
  p.add_argument("--min-frames", type=int, default=16)
  p.add_argument("--max-frames", type=int, default=32)
  p.add_argument("--size", type=int, default=64, help="frame height and width")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  if not 1 <= args.min_frames <= args.max_frames:
    p.error("need 1 <= --min-frames <= --max-frames")
  if args.size < 16 or args.size % 2:
    p.error("--size must be even and at least 16 (H.264 wants even sizes)")
  try:
    info = generate(args.out, videos_per_class=args.videos_per_class,
                    test_fraction=args.test_fraction,
                    frames=(args.min_frames, args.max_frames), size=args.size,
                    seed=args.seed)
  except ValueError as e:
    p.error(str(e))
  print(f"Wrote {info['train']} train and {info['test']} test clips of "
        f"{len(info['classes'])} classes to {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
