"""The PyAV video reader decodes exactly the frames a sampler names, in any container."""

import fractions
import functools
import pickle

import av
import numpy as np
import pytest

from time_jax import time_layer
from time_jax.data import video
from time_jax.data.base import DecodeError, Record

# Frame k is flat grey: the left half at level 8 + 4 (k mod 60), the right half at
# 8 + 4 (k div 60). Steps of 4 grey levels survive lossy codecs; frames up to 3599.
STEP, BASE = 4, 60


def _image(k, h, w):
  image = np.empty((h, w, 3), np.uint8)
  image[:, :w // 2] = 8 + STEP * (k % BASE)
  image[:, w // 2:] = 8 + STEP * (k // BASE)
  return image


def _frame_numbers(frames):
  """Decoded frame numbers from the grey levels of ``[k, h, w, 3]`` frames."""
  w = frames.shape[2]
  def digit(part):
    level = part[:, 4:-4].reshape(len(frames), -1).mean(-1)
    return np.round((level - 8) / STEP).astype(int)
  return digit(frames[:, :, 4:w // 2 - 4]) + BASE * digit(frames[:, :, w // 2 + 4:-4])


def write_numbered(path, num_frames=60, size=(48, 64), codec="libx264", rate=25, gop=10,
                   pts=None):
  """A video whose frame k shows its number k (`_image`); ``pts`` gives timestamps."""
  h, w = size
  with av.open(str(path), "w") as container:
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = w, h
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = gop
    if codec == "libx264":
      stream.options = {"crf": "12", "bf": "2"}
    elif codec in ("mpeg4", "libvpx"):
      # Near-lossless quantiser: the default one shifts flat grey levels by several steps.
      stream.codec_context.qmin, stream.codec_context.qmax = 1, 2
      stream.bit_rate = 20_000_000
    if pts is not None:
      stream.codec_context.time_base = fractions.Fraction(1, 1000)
    for k in range(num_frames):
      frame = av.VideoFrame.from_ndarray(_image(k, h, w), format="rgb24")
      if pts is not None:
        frame.pts = int(pts[k])
        frame.time_base = fractions.Fraction(1, 1000)
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


CONTAINERS = [("mp4", "libx264"), ("avi", "mpeg4"), ("webm", "libvpx"), ("mkv", "libx264")]


@pytest.mark.parametrize("ext,codec", CONTAINERS)
def test_decodes_the_chosen_frames_in_every_container(tmp_path, ext, codec):
  path = tmp_path / f"v.{ext}"
  write_numbered(path, num_frames=60, codec=codec)
  assert video.num_frames(str(path)) == 60
  for t_out, n in ((4, 2), (2, 1), (16, 2)):
    frames, idx = video.read_video(str(path), functools.partial(
        time_layer.frame_indices, t_out=t_out, n=n))
    np.testing.assert_array_equal(idx, time_layer.frame_indices(60, t_out, n))
    assert frames.dtype == np.uint8 and frames.shape == (len(idx), 48, 64, 3)
    np.testing.assert_array_equal(_frame_numbers(frames), idx)


def test_seeking_far_ahead_still_lands_on_the_right_frames(tmp_path, monkeypatch):
  path = tmp_path / "long.mp4"
  write_numbered(path, num_frames=200, gop=8)
  seeks = []
  real_open = video._open

  class Counting:
    """Delegates to the real container and records its seeks (PyAV's are read-only)."""

    def __init__(self, container):
      self._c = container

    def __getattr__(self, name):
      return getattr(self._c, name)

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      return self._c.__exit__(*exc)

    def seek(self, *a, **k):
      seeks.append(a)
      return self._c.seek(*a, **k)

  def counting_open(p):
    return Counting(real_open(p))

  monkeypatch.setattr(video, "_open", counting_open)
  want = np.array([3, 3, 50, 51, 120, 199])
  frames, idx = video.read_video(str(path), lambda n: want)
  np.testing.assert_array_equal(_frame_numbers(frames), want)
  assert len(seeks) >= 3, "gaps of 50+ frames over keyframes every 8 should seek"


def test_variable_frame_rate_indexes_by_presentation_order(tmp_path):
  # Timestamps bunch up then spread out: a nominal-rate index would land elsewhere.
  gaps = np.r_[np.full(20, 10), np.full(20, 100), np.full(20, 10)]
  pts = np.cumsum(gaps) - gaps[0]
  path = tmp_path / "vfr.mkv"
  write_numbered(path, num_frames=60, pts=pts)
  want = np.array([0, 10, 25, 39, 45, 59])
  frames, _ = video.read_video(str(path), lambda n: want)
  np.testing.assert_array_equal(_frame_numbers(frames), want)


def test_missing_header_count_uses_the_real_count(tmp_path):
  path = tmp_path / "v.webm"  # webm headers carry no frame count
  write_numbered(path, num_frames=37, codec="libvpx")
  with av.open(str(path)) as c:
    assert c.streams.video[0].frames == 0
  seen = []
  frames, idx = video.read_video(
      str(path), lambda n: (seen.append(n), time_layer.frame_indices(n, 2, 2))[1])
  assert seen == [37]
  np.testing.assert_array_equal(_frame_numbers(frames), idx)


def test_truncated_file_rechooses_from_the_frames_that_decode(tmp_path):
  cut = tmp_path / "cut.avi"
  write_numbered(cut, num_frames=80, codec="mpeg4")
  raw = cut.read_bytes()
  cut.write_bytes(raw[:len(raw) * 2 // 3])  # avi: frames at the end are lost
  seen = []
  frames, idx = video.read_video(
      str(cut), lambda n: (seen.append(n), time_layer.frame_indices(n, 2, 2))[1])
  assert seen[-1] < 80, "the count must come from what decodes"
  np.testing.assert_array_equal(_frame_numbers(frames), idx)


def _faststart_mp4(path, num_frames=64, size=(48, 64)):
  """An H.264 mp4 with its index (moov) in front, as web-ready files are written.

  Each frame gets its own small noise (levels -3..3, averaged away by
  `_frame_numbers`), so frames take similar space and a cut at half the file keeps
  about half of them.
  """
  h, w = size
  rng = np.random.default_rng(0)
  with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height = w, h
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = 10
    stream.options = {"crf": "12", "bf": "2"}
    for k in range(num_frames):
      image = _image(k, h, w).astype(np.int16) + rng.integers(-3, 4, (h, w, 1))
      frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def test_truncated_faststart_mp4_rechooses_from_the_frames_that_decode(tmp_path):
  # The index in front still lists all 64 frames, the decoder fails on the packet the
  # cut goes through: the clip comes from the frames before it.
  full = tmp_path / "full.mp4"
  _faststart_mp4(full)
  raw = full.read_bytes()
  assert raw.find(b"moov") < raw.find(b"mdat"), "the index must be in front"
  cut = tmp_path / "cut.mp4"
  cut.write_bytes(raw[:len(raw) // 2])
  with av.open(str(cut)) as c:
    assert c.streams.video[0].frames == 64
  seen = []
  frames, idx = video.read_video(
      str(cut), lambda n: (seen.append(n), time_layer.frame_indices(n, 2, 2))[1])
  assert 8 <= seen[-1] < 40, seen
  np.testing.assert_array_equal(idx, time_layer.frame_indices(seen[-1], 2, 2))
  np.testing.assert_array_equal(_frame_numbers(frames), idx)
  # Cut inside the first frame: nothing decodes, still a bad file.
  empty = tmp_path / "empty.mp4"
  empty.write_bytes(raw[:raw.find(b"mdat") + 64])
  with pytest.raises(DecodeError, match="empty.mp4"):
    video.read_video(str(empty), lambda n: time_layer.frame_indices(n, 2, 2))


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 50])
def test_unreadable_files_raise_decode_error_naming_the_file(tmp_path, content):
  path = tmp_path / "bad.mp4"
  path.write_bytes(content)
  with pytest.raises(DecodeError, match="bad.mp4"):
    video.read_video(str(path), lambda n: np.zeros(1, int))
  with pytest.raises(DecodeError, match="no such file"):
    video.read_video(str(tmp_path / "missing.mp4"), lambda n: np.zeros(1, int))


def test_reader_is_a_picklable_clip_reader(tmp_path):
  path = tmp_path / "v.mp4"
  write_numbered(path, num_frames=20, size=(30, 40))
  reader = pickle.loads(pickle.dumps(video.VideoReader()))
  frames = reader.read(Record(str(path), 0), functools.partial(
      time_layer.frame_indices, t_out=1, n=2))
  assert frames.shape == (4, 30, 40, 3)
  np.testing.assert_array_equal(_frame_numbers(frames), time_layer.frame_indices(20, 1, 2))
