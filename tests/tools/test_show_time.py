"""show_time draws, from a real encoded video, the frames frame_indices names, arranged."""

import av
import numpy as np
import pytest
from PIL import Image

from time_jax import time_layer
from time_jax.tools import show_time

LEVEL_STEP = 6  # frame k is a flat grey of level 10 + 6k: survives H.264 within +-2


def _write_numbered_video(path, num_frames=40, size=64):
  with av.open(str(path), "w") as container:
    stream = container.add_stream("libx264", rate=25)
    stream.width = stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": "10"}
    for k in range(num_frames):
      img = np.full((size, size, 3), 10 + LEVEL_STEP * k, np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


@pytest.mark.parametrize("arrangement", time_layer.ARRANGEMENTS)
def test_show_time_cells_hold_the_chosen_frames(tmp_path, arrangement):
  video = tmp_path / "v.mp4"
  _write_numbered_video(video)
  out = tmp_path / "grid.png"
  n, t_out, size, gap = 2, 4, 32, 4
  assert show_time.main([str(video), "--n", str(n), "--t-out", str(t_out), "--arrangement",
                         arrangement, "--size", str(size), "--out", str(out)]) == 0
  img = np.asarray(Image.open(out).convert("RGB")).astype(np.float32)
  assert img.shape == (size, t_out * (size + gap) - gap, 3)
  idx = time_layer.frame_indices(40, t_out, n)
  cell = size // n
  for t in range(t_out):
    for i in range(n * n):
      r, q = divmod(i, n)
      src = idx[i * t_out + t] if arrangement == "spatial" else idx[t * n * n + i]
      x0 = t * (size + gap) + q * cell
      patch = img[r * cell + 2:(r + 1) * cell - 2, x0 + 2:x0 + cell - 2]
      level = (patch.mean() - 10) / LEVEL_STEP
      assert abs(level - src) < 0.5, (t, i, level, src)


def test_show_time_both_rows_and_bad_file(tmp_path, capsys):
  video = tmp_path / "v.mp4"
  _write_numbered_video(video, num_frames=10)
  out = tmp_path / "both.png"
  assert show_time.main([str(video), "--arrangement", "spatial,temporal", "--size", "16",
                         "--out", str(out)]) == 0
  assert Image.open(out).size == (4 * 16 + 3 * 4, 2 * 16 + 4)
  bad = tmp_path / "bad.mp4"
  bad.write_bytes(b"not a video")
  assert show_time.main([str(bad), "--out", str(tmp_path / "x.png")]) == 2
  assert "bad.mp4" in capsys.readouterr().err
