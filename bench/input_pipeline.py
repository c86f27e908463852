r"""Clips/s of one input worker: decode everything vs. chosen frames vs. the packed cache.

    python bench/input_pipeline.py                 # N in 1 2 4 7, T*=16, 224², 320x240 mp4
    python bench/input_pipeline.py --seconds 1 --videos 2     # quicker

One clip is what a training element does: choose ``T*·N²`` frames
(`transforms.clip_indices` with jitter), read them, draw a train view and warp every
frame to the cell ``224 // N`` (`transforms.prepare`). Readers, side by side on the
same generated videos (H.264, GOP 12, 25 fps, like UCF101's 320x240):

* ``decode_all``: the naive baseline, PyAV decodes every frame, then the chosen ones
  are kept.
* ``video``: `time_jax.data.video.VideoReader` (decodes up to the last chosen frame,
  seeking across keyframes).
* ``packed``: `time_jax.data.frame_cache.PackedReader` with the pipeline's draft size
  (`frame_cache.draft_size_for`), on a cache written by `frame_cache.write_packed`.

Single process, single thread: clips/s per Grain worker. Ratios are against
``decode_all``.
"""

import argparse
import os
import tempfile
import time

import av
import ml_collections
import numpy as np

from time_jax.data import config as data_config
from time_jax.data import frame_cache
from time_jax.data import transforms
from time_jax.data import video
from time_jax.data.base import Record


class DecodeAll:
  """Baseline: every frame decoded with PyAV, then the chosen ones kept."""

  def read(self, record, choose):
    with av.open(record.path) as c:
      frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return frames[np.asarray(choose(len(frames)))]


def _write_video(path: str, num_frames: int, h: int, w: int, seed: int) -> None:
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  base = rng.integers(0, 255, (h // 8, w // 8, 3)).astype(np.float32)
  texture = np.kron(base, np.ones((8, 8, 1), np.float32))
  with av.open(path, "w") as out:
    s = out.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.gop_size = 12
    for k in range(num_frames):
      shift = np.roll(texture, 3 * k, axis=1)
      blob = 120 * np.exp(-((yy - h / 2) ** 2 + (xx - (k * 2) % w) ** 2) / 800)
      img = np.clip(0.6 * shift + blob[..., None], 0, 255).astype(np.uint8)
      for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        out.mux(p)
    for p in s.encode():
      out.mux(p)


def _clips_per_s(reader, records, n: int, t_out: int, image_size: int,
                 seconds: float) -> float:
  cell = (image_size // n, image_size // n)
  rng = np.random.default_rng(0)
  done, start = 0, time.perf_counter()
  while True:
    rec = records[done % len(records)]
    choose = lambda t: transforms.clip_indices(t, t_out, n, rng=rng)  # pylint: disable=cell-var-from-loop
    frames = reader.read(rec, choose)
    view = transforms.train_view(rng, frames.shape[1], frames.shape[2])
    transforms.prepare(frames, view, cell)
    done += 1
    elapsed = time.perf_counter() - start
    if elapsed >= seconds and done >= 2:
      return done / elapsed


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--ns", type=int, nargs="+", default=[1, 2, 4, 7])
  parser.add_argument("--t-out", type=int, default=16)
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--videos", type=int, default=4)
  parser.add_argument("--frames", type=int, default=180, help="frames per video")
  parser.add_argument("--size", type=int, nargs=2, default=[240, 320], help="h w")
  parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
  args = parser.parse_args()
  h, w = args.size
  with tempfile.TemporaryDirectory() as tmp:
    records = []
    for i in range(args.videos):
      path = os.path.join(tmp, f"v{i}.mp4")
      _write_video(path, args.frames, h, w, seed=i)
      records.append(Record(path, 0, video_id=f"v{i}"))
    start = time.perf_counter()
    frame_cache.write_packed(records, video.VideoReader(), os.path.join(tmp, "packed"),
                             num_threads=1)
    pack_s = time.perf_counter() - start
    size = sum(os.path.getsize(os.path.join(tmp, "packed", f))
               for f in os.listdir(os.path.join(tmp, "packed")))
    mp4 = sum(os.path.getsize(r.path) for r in records)
    print(f"{args.videos} videos of {args.frames} frames {w}x{h}: mp4 {mp4 / 2**20:.1f} "
          f"MiB, packed {size / 2**20:.1f} MiB, packing {pack_s:.1f}s (1 thread)")
    packed_recs = list(frame_cache.packed_records(os.path.join(tmp, "packed")))
    print(f"{'N':>2} {'frames/clip':>11} {'cell':>4} {'draft':>5} | "
          f"{'decode_all':>10} {'video':>7} {'packed':>7} | clips/s; "
          f"{'video/all':>9} {'packed/all':>10} {'packed/video':>12}")
    for n in args.ns:
      cfg = ml_collections.ConfigDict(dict(
          input=data_config.input_defaults(), time=dict(n=n),
          image_size=args.image_size))
      draft = frame_cache.draft_size_for(cfg)
      rates = [
          _clips_per_s(DecodeAll(), records, n, args.t_out, args.image_size, args.seconds),
          _clips_per_s(video.VideoReader(), records, n, args.t_out, args.image_size,
                       args.seconds),
          _clips_per_s(frame_cache.PackedReader(draft_size=draft), packed_recs, n,
                       args.t_out, args.image_size, args.seconds)]
      print(f"{n:>2} {args.t_out * n * n:>11} {args.image_size // n:>4} {draft:>5} | "
            f"{rates[0]:>10.2f} {rates[1]:>7.2f} {rates[2]:>7.2f} |          "
            f"{rates[1] / rates[0]:>9.2f} {rates[2] / rates[0]:>10.2f} "
            f"{rates[2] / rates[1]:>12.2f}")


if __name__ == "__main__":
  main()
