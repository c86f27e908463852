"""Generated footage that looks like real video, for benchmarks and equivalence tests.

Decoders and resamplers run at speeds that depend on the content (JPEG and H.264 spend
their bits on edges and texture; flat or noise frames are unrepresentative both ways),
so input-pipeline benchmarks and the fast-path equivalence tests run on clips with
natural-image statistics: a scene of smooth large regions (a 1/f² luminance field with
weaker colour variation), fine texture (1/f), hard-edged objects of their own colours,
a camera that pans across the scene and an object that moves through the frame.

    frames = scenes.scene_clip(np.random.default_rng(0))        # [180, 240, 320, 3] uint8
    scenes.write_dataset(out, num_videos=32)                     # UCF101-like mp4 files

`write_dataset` encodes clips as UCF101 is distributed in spirit (320×240, 25 fps,
H.264 with a keyframe every 12 frames) and writes an ``annotations`` protocol file
``train.txt`` / ``test.txt`` (``videos/scene_0000.mp4 label``) and ``classes.txt``.
"""

from __future__ import annotations

import os

import numpy as np

from time_jax.data import synthetic


def _power_law_field(rng: np.random.Generator, height: int, width: int,
                     exponent: float) -> np.ndarray:
  """A ``[height, width]`` field of zero mean and unit variance whose power spectrum
  falls as ``1 / f^exponent`` (2: natural images' smooth regions; lower: texture)."""
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.rfftfreq(width)[None, :]
  f = np.sqrt(fx ** 2 + fy ** 2)
  f[0, 0] = 1.0
  spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (exponent / 2)
  spectrum[0, 0] = 0.0
  field = np.fft.irfft2(spectrum, s=(height, width))
  return (field - field.mean()) / field.std()


def scene_clip(rng: np.random.Generator, *, num_frames: int = 180, height: int = 240,
               width: int = 320) -> np.ndarray:
  """One clip of a generated scene seen by a panning camera.

  Args:
    rng: the clip's generator (scene, objects, camera path).
    num_frames, height, width: the clip's size.

  Returns:
    uint8 ``[num_frames, height, width, 3]``.
  """
  big_h, big_w = int(height * 1.6), int(width * 2.2)  # the scene the camera pans over
  lum = _power_law_field(rng, big_h, big_w, 2.8)[..., None]
  chroma = np.stack([_power_law_field(rng, big_h, big_w, 3.0) for _ in range(3)], -1)
  texture = _power_law_field(rng, big_h, big_w, 1.8)[..., None]
  scene = (110 + 40 * lum) * rng.uniform(0.8, 1.2, 3) + 12 * chroma + 8 * texture
  yy, xx = np.mgrid[:big_h, :big_w]
  for _ in range(12):  # hard-edged objects: discs and boxes with their own colour
    cy, cx = rng.uniform(0, big_h), rng.uniform(0, big_w)
    ry, rx = rng.uniform(10, big_h / 5), rng.uniform(10, big_w / 6)
    if rng.random() < 0.5:
      inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    else:
      inside = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
    scene[inside] = rng.uniform(20, 235, 3) + 8 * texture[inside]
  scene = np.clip(scene, 0, 255)
  # The camera pans from (x0, y0) at a constant speed; an object crosses the frame.
  x0 = rng.uniform(0, big_w - width * 1.1)
  y0 = rng.uniform(0, big_h - height * 1.1)
  vx = rng.uniform(-1, 1) * (big_w - width * 1.2) / num_frames
  vy = rng.uniform(-0.3, 0.3) * (big_h - height * 1.2) / num_frames
  colour, radius = rng.uniform(30, 230, 3), rng.uniform(15, 30)
  fy, fx = yy[:height, :width], xx[:height, :width]
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    x = int(np.clip(x0 + vx * t, 0, big_w - width))
    y = int(np.clip(y0 + vy * t, 0, big_h - height))
    frame = scene[y:y + height, x:x + width].copy()
    oy = height / 2 + 0.25 * height * np.sin(t / 20)
    ox = (t * 3) % (width + 60) - 30
    frame[(fy - oy) ** 2 + (fx - ox) ** 2 < radius ** 2] = colour
    frames[t] = frame.astype(np.uint8)
  return frames


def write_dataset(out: str, *, num_videos: int = 32, num_classes: int = 4,
                  num_frames: int = 180, height: int = 240, width: int = 320,
                  test_fraction: float = 0.25, seed: int = 0) -> dict:
  """Writes ``num_videos`` UCF101-like scene clips and their annotation files.

  Labels are assigned round-robin (the content does not depend on them: this set is
  for timing and for comparing code paths, not for learning).

  Returns:
    ``{'train': count, 'test': count, 'classes': [...]}``.
  """
  os.makedirs(os.path.join(out, "videos"), exist_ok=True)
  rng = np.random.default_rng(seed)
  lines = {"train": [], "test": []}
  num_test = int(round(num_videos * test_fraction))
  for i in range(num_videos):
    rel = f"videos/scene_{i:04d}.mp4"
    synthetic.write_mp4(os.path.join(out, rel),
                        scene_clip(rng, num_frames=num_frames, height=height, width=width),
                        crf=23, gop=12, deterministic=False)
    lines["test" if i < num_test else "train"].append(f"{rel} {i % num_classes}")
  classes = [f"scene_class_{c}" for c in range(num_classes)]
  with open(os.path.join(out, "classes.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(classes) + "\n")
  for split in ("test", "train"):
    with open(os.path.join(out, f"{split}.txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(lines[split]) + "\n")
  return {"train": len(lines["train"]), "test": len(lines["test"]), "classes": classes}
