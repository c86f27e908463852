"""Video files with PyAV: decode only the frames a sampler chooses.

`VideoReader` is the `ClipReader` of ``dataset.source='video'``; `read_video` is the same
for one path. A frame's index is its position in presentation order, never a timestamp
computed from a nominal frame rate, so variable-frame-rate files sample correctly.

How a clip is read:

1. The container is demuxed once without decoding (cheap: packets only) to list the
   presentation timestamps of every frame and which frames are keyframes. This gives
   the true frame count even when the header's count is wrong or missing (webm, some
   avi); ``choose(count)`` then names the wanted indices.
2. Frames are decoded in order and kept when their index is wanted; decoding stops
   after the last wanted frame. When the next wanted frame lies past a keyframe that
   is more than `SEEK_MIN_SKIP` frames ahead, the reader seeks to the last keyframe
   before it instead of decoding the gap.
3. If fewer frames decode than the packets promised, or the decoder fails on a packet
   (a truncated or partly corrupt file, e.g. an mp4 whose index at the front lists
   frames cut off at the end), the clip is chosen again from the frames that do
   decode, in one sequential pass; a file with no decodable frame raises `DecodeError`.

Only the chosen frames are converted to RGB, all through one reformatter per read (a
new frame's own converter would set up a new scaling context each time, which costs
more than the conversion). The codec decodes on the calling thread: the pipeline
parallelises over clips (read threads and workers; PyAV releases the GIL while it
decodes), and the codec's own frame threads would spend more CPU per frame.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import os

import av
from av.video import reformatter as av_reformatter
import numpy as np

from time_jax.data.base import Chooser, DecodeError, Record

# Seek only when it skips at least this many frames: a seek restarts decoding at a
# keyframe, which costs about as much as decoding a few frames.
SEEK_MIN_SKIP = 12


@dataclasses.dataclass(frozen=True)
class _Index:
  """Frame timestamps of a video stream, in presentation order."""
  pts: list[int]            # sorted presentation timestamps, one per frame
  keyframes: list[int]      # indices (into pts) of keyframes, sorted


def _open(path: str):
  if not os.path.isfile(path):
    raise DecodeError(f"{path}: no such file.")
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise DecodeError(f"{path}: cannot open as a video ({e}).") from e
  if not container.streams.video:
    container.close()
    raise DecodeError(f"{path}: the file has no video stream.")
  container.streams.video[0].thread_type = "NONE"
  return container


def _index(container, path: str) -> _Index | None:
  """The frame timestamps from the packets; None when packets carry no timestamps."""
  stream = container.streams.video[0]
  pts, key_pts = [], set()
  try:
    for packet in container.demux(stream):
      if packet.size == 0:  # the flush packet at the end
        continue
      if packet.pts is None:
        return None
      pts.append(packet.pts)
      if packet.is_keyframe:
        key_pts.add(packet.pts)
  except av.error.FFmpegError as e:
    logging.debug("%s: demux stopped early (%s); using the packets read.", path, e)
  pts.sort()
  if len(set(pts)) != len(pts):
    return None  # duplicate timestamps: timestamps cannot identify frames
  return _Index(pts=pts, keyframes=[i for i, p in enumerate(pts) if p in key_pts])


class _Rgb:
  """Converts decoded frames to uint8 ``[h, w, 3]`` RGB with one scaling context."""

  def __init__(self):
    self._reformatter = av_reformatter.VideoReformatter()

  def __call__(self, frame) -> np.ndarray:
    return self._reformatter.reformat(frame, format="rgb24").to_ndarray()


def _decode_indexed(container, index: _Index, wanted: list[int]) -> dict[int, np.ndarray]:
  """Frames ``wanted`` (sorted unique indices), by timestamp, seeking where it pays."""
  stream = container.streams.video[0]
  where = {p: i for i, p in enumerate(index.pts)}
  got: dict[int, np.ndarray] = {}
  rgb = _Rgb()
  todo = list(wanted)
  position = -1  # index of the last frame decoded
  frames = None
  while todo:
    target = todo[0]
    k = bisect.bisect_right(index.keyframes, target) - 1
    key = index.keyframes[k] if k >= 0 else 0
    if frames is None or key - position > SEEK_MIN_SKIP:
      container.seek(index.pts[key], stream=stream, backward=True, any_frame=False)
      frames = container.decode(stream)
    for frame in frames:
      i = where.get(frame.pts)
      if i is None:
        continue
      position = i
      if i in todo:
        got[i] = rgb(frame)
        todo.remove(i)
      if not todo or todo[0] > i and _keyframe_ahead(index, i, todo[0]):
        break
    else:
      break  # the stream ended before every wanted frame decoded
  return got


def _keyframe_ahead(index: _Index, position: int, target: int) -> bool:
  """Whether a seek from ``position`` to the keyframe before ``target`` skips enough."""
  k = bisect.bisect_right(index.keyframes, target) - 1
  return k >= 0 and index.keyframes[k] - position > SEEK_MIN_SKIP


def _decode_sequential(path: str, choose: Chooser) -> tuple[np.ndarray, np.ndarray]:
  """Fallback: count the decodable frames, choose, then collect them in one more pass."""
  def frames(container):
    try:
      yield from container.decode(container.streams.video[0])
    except av.error.FFmpegError as e:
      logging.debug("%s: decoding stopped early (%s).", path, e)

  with _open(path) as container:
    count = sum(1 for _ in frames(container))
  if count == 0:
    raise DecodeError(f"{path}: no frame could be decoded.")
  indices = np.asarray(choose(count))
  wanted = set(indices.tolist())
  got = {}
  rgb = _Rgb()
  with _open(path) as container:
    for i, frame in enumerate(frames(container)):
      if i in wanted:
        got[i] = rgb(frame)
      if i >= indices.max():
        break
  if len(got) != len(wanted):
    raise DecodeError(f"{path}: frames changed between two decoding passes.")
  return np.stack([got[i] for i in indices.tolist()]), indices


def read_video(path: str, choose: Chooser) -> tuple[np.ndarray, np.ndarray]:
  """Decodes the frames ``choose(T)`` of a video file, T its true frame count.

  Args:
    path: a video file PyAV (FFmpeg) can read: mp4, avi, webm, mkv, ...
    choose: ``num_frames -> indices``, non-decreasing ints in ``[0, num_frames)``, e.g.
      ``functools.partial(time_layer.frame_indices, t_out=16, n=2)``.

  Returns:
    ``(frames, indices)``: uint8 ``[len(indices), H, W, 3]`` RGB and the indices used.

  Raises:
    DecodeError: missing, unreadable, empty or undecodable file.
  """
  try:
    with _open(path) as container:
      index = _index(container, path)
      if index is not None and index.pts:
        indices = np.asarray(choose(len(index.pts)))
        wanted = sorted(set(indices.tolist()))
        try:
          got = _decode_indexed(container, index, wanted)
        except av.error.FFmpegError as e:
          # A truncated or corrupt file: the packets promised frames that do not
          # decode. The sequential pass below counts what does.
          logging.debug("%s: decoding failed (%s); recounting.", path, e)
          got = {}
        if len(got) == len(wanted):
          return np.stack([got[i] for i in indices.tolist()]), indices
        logging.debug("%s: %d of %d wanted frames decoded; recounting.", path, len(got),
                      len(wanted))
    return _decode_sequential(path, choose)
  except av.error.FFmpegError as e:
    raise DecodeError(f"{path}: {e}") from e


def num_frames(path: str) -> int:
  """The number of frames of a video file (from its packets; decodes when needed)."""
  with _open(path) as container:
    index = _index(container, path)
    if index is not None and index.pts:
      return len(index.pts)
  count = []
  _decode_sequential(path, lambda n: (count.append(n), np.zeros(1, np.int64))[1])
  return count[0]


def frame_rate(path: str) -> float:
  """The average frames per second of a video file's stream (its header's rate).

  Raises:
    DecodeError: the file cannot be opened or states no frame rate.
  """
  with _open(path) as container:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
  if not rate or float(rate) <= 0:
    raise DecodeError(f"{path}: the video states no frame rate; give one (--fps).")
  return float(rate)


class VideoReader:
  """The `ClipReader` of video files (``dataset.source='video'``); holds no state."""
  # Decoding runs through every frame between keyframe and chosen frame anyway, so
  # more chosen frames cost only their RGB conversion (repeated views may each have
  # their own temporal jitter).
  extra_frames_free = True

  def read(self, record: Record, choose: Chooser) -> np.ndarray:
    """uint8 ``[len(indices), H, W, 3]``: the chosen frames of ``record.path``."""
    frames, _ = read_video(record.path, choose)
    return frames
