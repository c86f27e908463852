"""Windows along a long video: where they lie, reading them, and a timeline of predictions.

A video of T frames at ``fps`` frames per second is cut into windows that start every
``every`` seconds and span ``span`` seconds (`windows`). Window k covers the frames

    [s_k, min(s_k + round(span · fps), T)),   s_k = round(k · every · fps),

(rounded half up) for every k with ``s_k < T``: ``ceil(T / (every · fps))`` windows (up to rounding), the
first at 0, the last possibly shorter than ``span`` where the video ends. Its times are
``start = s_k / fps`` and ``end = min(...) / fps`` seconds: frame positions over the
stream's average frame rate (`time_jax.data.video.frame_rate`), so for a
variable-frame-rate file they are approximate.

Each window is read as an evaluation clip of its own: the config's sampling
(`transforms.Sampling`) chooses the frames among the window's, as it would among a
whole video's. `window_record` names a window as a `Record` and `WindowReader` wraps any
`ClipReader` to read it, so a window goes through the evaluation pipeline like a video
(`time_jax.extract`'s window mode, ``predict --every``). `default_span` is one clip's
span: for VideoMAE's dense sampling the ``t_out·n²·stride`` frames one clip reads; for
TIME's segments (a clip spreads over whatever it is given) the windows tile the video
(``span = every``).

`write_csv`, `to_json` and `plot` write a classifier's timeline: per window the start,
end and top-k classes with their probabilities, and a PNG strip of the probabilities of
the top classes over time.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from typing import Sequence

import numpy as np

from time_jax.data import transforms
from time_jax.data import video as video_lib
from time_jax.data.base import Chooser, ClipReader, DecodeError, Record

# Separates a video's name from its window in a window record's video_id.
_WINDOW_TAG = "#frames="


@dataclasses.dataclass(frozen=True)
class Window:
  """Window ``index`` of a video: frames ``[start_frame, end_frame)`` at ``fps``."""
  index: int
  start_frame: int
  end_frame: int
  fps: float

  @property
  def start(self) -> float:
    """Seconds from the video's first frame."""
    return self.start_frame / self.fps

  @property
  def end(self) -> float:
    """Seconds from the video's first frame (exclusive)."""
    return self.end_frame / self.fps


def _positive(name: str, value: float) -> float:
  value = float(value)
  if not value > 0 or not math.isfinite(value):
    raise ValueError(f"{name}={value:g}: must be a positive number of seconds.")
  return value


def windows(num_frames: int, fps: float, every: float, span: float) -> list[Window]:
  """The windows of a video of ``num_frames`` frames (module docstring).

  Args:
    num_frames: T, the video's frame count (>= 1).
    fps: its frame rate.
    every: seconds between window starts.
    span: seconds a window lasts (a video's last ones may end earlier).

  Raises:
    ValueError: a non-positive ``every``, ``span`` or ``fps``, ``every`` under one
      frame, or no frames.
  """
  every, span = _positive("--every", every), _positive("--window", span)
  fps = float(fps)
  if not fps > 0 or not math.isfinite(fps):
    raise ValueError(f"frame rate {fps:g}: must be positive (give --fps).")
  if num_frames < 1:
    raise ValueError(f"a video of {num_frames} frames has no windows.")
  if every * fps < 1:
    raise ValueError(f"--every {every:g}: shorter than one frame at {fps:g} frames/s.")
  length = max(_frames(span * fps), 1)
  out = []
  while (start := _frames(len(out) * every * fps)) < num_frames:
    out.append(Window(len(out), start, min(start + length, num_frames), fps))
  return out


def _frames(x: float) -> int:
  """``x`` rounded half up (so starts at least a frame apart strictly increase)."""
  return int(math.floor(x + 0.5))


def default_span(sampling: transforms.Sampling, fps: float, every: float) -> float:
  """Seconds of one evaluation clip: dense sampling's ``t_out·n²·stride`` frames; for
  segments (a clip spreads over any span) ``every``, so the windows tile the video."""
  if sampling.rule == "dense":
    return sampling.length * sampling.stride / float(fps)
  return float(every)


def count_frames(reader: ClipReader, record: Record) -> int:
  """T, the frame count ``reader`` sees for ``record`` (decodes one frame).

  Raises:
    DecodeError: the record cannot be read.
  """
  seen = []

  def first(num_frames: int) -> np.ndarray:
    seen.append(num_frames)
    return np.zeros(1, np.int64)

  reader.read(record, first)
  return seen[-1]  # the last call counts (a reader may recount a damaged file)


def probe(reader: ClipReader, record: Record, fps: float | None = None
          ) -> tuple[int, float]:
  """``(frames, frames per second)`` of a record: the count its reader sees, and
  ``fps`` when given, else the video file's average rate.

  Raises:
    DecodeError: the record cannot be read, or its rate is unknown and no ``fps``.
  """
  count = count_frames(reader, record)
  return count, float(fps) if fps else video_lib.frame_rate(record.path)


def window_record(record: Record, window: Window) -> Record:
  """A `Record` of one window of ``record``, for `WindowReader`."""
  return dataclasses.replace(
      record, video_id=f"{record.name}{_WINDOW_TAG}{window.start_frame}-{window.end_frame}")


class WindowReader:
  """A `ClipReader` that reads window records (`window_record`) through ``reader``.

  A window's chooser gets the window's frame count and its indices are shifted to the
  window's frames; other records read as ``reader`` reads them. Picklable when
  ``reader`` is (Grain's workers).
  """

  def __init__(self, reader: ClipReader):
    self.reader = reader
    self.extra_frames_free = bool(getattr(reader, "extra_frames_free", False))

  def read(self, record: Record, choose: Chooser) -> np.ndarray:
    name, tag, frames = record.video_id.rpartition(_WINDOW_TAG)
    if not tag:
      return self.reader.read(record, choose)
    start, end = (int(x) for x in frames.split("-"))
    base = dataclasses.replace(record, video_id="" if name == record.path else name)

    def in_window(num_frames: int) -> np.ndarray:
      if start >= num_frames:
        raise DecodeError(f"{record.path}: the window from frame {start} is past the "
                          f"video's {num_frames} frames.")
      return start + np.asarray(choose(min(end, num_frames) - start), np.int64)

    return self.reader.read(base, in_window)


# ----------------------------------------------------------------------------------
# A classifier's timeline.
# ----------------------------------------------------------------------------------

def top_k(probabilities: np.ndarray, class_names: Sequence[str], k: int
          ) -> list[tuple[str, float]]:
  """``[(class name, probability)]`` of the ``k`` most probable classes; [] for a
  window that could not be read (NaN)."""
  p = np.asarray(probabilities, np.float64)
  if not np.all(np.isfinite(p)):
    return []
  order = np.argsort(-p, kind="stable")[:k]
  return [(class_names[i], float(p[i])) for i in order]


def write_csv(path: str, wins: Sequence[Window], probabilities: np.ndarray,
              class_names: Sequence[str], k: int) -> None:
  """One row per window: ``start, end`` (seconds), ``class_1, score_1, ...,
  class_k, score_k``; a window that could not be read has empty classes."""
  k = min(k, len(class_names))
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["start", "end"] + [f"{c}_{i}" for i in range(1, k + 1)
                                   for c in ("class", "score")])
    for win, p in zip(wins, probabilities):
      top = top_k(p, class_names, k)
      cells = [x for name, score in top for x in (name, f"{score:.6f}")]
      w.writerow([f"{win.start:.3f}", f"{win.end:.3f}"] + cells + [""] * (2 * k - len(cells)))


def to_json(video: str, wins: Sequence[Window], probabilities: np.ndarray,
            class_names: Sequence[str], k: int) -> dict:
  """The timeline as one JSON-ready object: ``video`` and per window ``start``,
  ``end`` and ``top`` (``[{label, probability}]``, empty when unreadable)."""
  return dict(video=video, windows=[
      dict(start=round(w.start, 3), end=round(w.end, 3),
           top=[dict(label=n, probability=s) for n, s in top_k(p, class_names, k)])
      for w, p in zip(wins, probabilities)])


def plot(path: str, wins: Sequence[Window], probabilities: np.ndarray,
         class_names: Sequence[str], k: int, title: str = "") -> None:
  """A PNG strip: the probabilities of the ``k`` classes most probable in some window
  (rows, most probable first) over time (window k drawn from its start to the next
  window's, the last to its end); unreadable windows blank."""
  from time_jax.diagnose import plots  # pylint: disable=g-import-not-at-top  # matplotlib
  p = np.asarray(probabilities, np.float64).reshape(len(wins), len(class_names))
  peak = np.nan_to_num(p, nan=-1.0).max(0)
  rows = np.argsort(-peak, kind="stable")[:max(1, min(k, len(class_names)))]
  edges = [w.start for w in wins] + [wins[-1].end]
  fig, ax = plots.plt.subplots(figsize=(10, 1.0 + 0.3 * len(rows)))
  mesh = ax.pcolormesh(edges, np.arange(len(rows) + 1), np.ma.masked_invalid(p[:, rows].T),
                       vmin=0.0, vmax=1.0, cmap="viridis")
  ax.set_yticks(np.arange(len(rows)) + 0.5, [class_names[i] for i in rows], fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel("seconds")
  ax.set_title(title, fontsize=9)
  fig.colorbar(mesh, ax=ax, label="probability", pad=0.01)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plots.plt.close(fig)
