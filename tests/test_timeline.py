"""Windows along a video: boundaries and count for clips of known length, reading a
window through any reader, and ``predict --every``'s timeline (CSV, JSON, PNG)."""

import csv
import functools
import json
import os
import sys

import numpy as np
import pytest

from time_jax import predict
from time_jax import timeline
from time_jax.data import transforms
from time_jax.data.base import DecodeError, Record

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "diagnose"))
import diagnose_helpers as h  # pylint: disable=g-import-not-at-top,wrong-import-position


def _bounds(wins):
  return [(w.start_frame, w.end_frame) for w in wins]


def test_windows_of_a_clip_of_known_length():
  # 50 frames at 10 frames/s (5 s): windows of 2 s every 2 s; the last ends with the video.
  wins = timeline.windows(50, 10.0, every=2, span=2)
  assert _bounds(wins) == [(0, 20), (20, 40), (40, 50)]
  assert [(w.index, w.start, w.end) for w in wins] == [(0, 0.0, 2.0), (1, 2.0, 4.0),
                                                       (2, 4.0, 5.0)]
  # Overlapping windows: 3 s every 1.5 s, ceil(50 / 15) = 4 of them.
  assert _bounds(timeline.windows(50, 10.0, every=1.5, span=3)) == [
      (0, 30), (15, 45), (30, 50), (45, 50)]
  # Gaps (span < every), and a step of 12.5 frames rounded half up.
  assert _bounds(timeline.windows(50, 25.0, every=0.5, span=0.2)) == [
      (0, 5), (13, 18), (25, 30), (38, 43)]
  # A video shorter than a window is one window.
  assert _bounds(timeline.windows(7, 25.0, every=2, span=2)) == [(0, 7)]


def test_windows_reject_what_cannot_be_cut():
  for kwargs, match in ((dict(every=0, span=1), "--every"),
                        (dict(every=1, span=-1), "--window"),
                        (dict(every=0.01, span=1), "shorter than one frame")):
    with pytest.raises(ValueError, match=match):
      timeline.windows(50, 25.0, **kwargs)


def test_default_span_is_one_clips_span():
  dense = transforms.Sampling(rule="dense", t_out=2, n=2, stride=4)  # 8 frames × 4
  assert timeline.default_span(dense, 8.0, every=1.0) == 4.0
  assert timeline.default_span(transforms.Sampling(), 8.0, every=1.5) == 1.5


class _Frames:
  """A reader of a 40-frame video whose frame i is filled with i."""

  def read(self, record, choose):
    idx = np.asarray(choose(40))
    return np.broadcast_to(idx[:, None, None, None], (len(idx), 2, 2, 3)).astype(np.uint8)


def test_window_reader_samples_inside_the_window():
  record = Record("/v/a.mp4", 3, video_id="a.mp4")
  win = timeline.windows(40, 10.0, every=1.0, span=1.0)[2]  # frames [20, 30)
  wrec = timeline.window_record(record, win)
  assert wrec.path == record.path and wrec.label == 3
  reader = timeline.WindowReader(_Frames())
  sampling = transforms.Sampling(rule="segments", t_out=1, n=2)
  got = reader.read(wrec, functools.partial(sampling.eval, clip=0, num_clips=1))[:, 0, 0, 0]
  np.testing.assert_array_equal(got, 20 + sampling.eval(10))
  assert timeline.count_frames(reader, record) == 40  # other records read as they are
  past = timeline.window_record(record, timeline.Window(0, 45, 50, 10.0))
  with pytest.raises(DecodeError, match="past the video's 40 frames"):
    reader.read(past, sampling.eval)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  _, variables = h.init("videomae_s", **h.TINY)
  return h.save_workdir(tmp_path_factory.mktemp("ckpt") / "w", h.tiny_config(), variables,
                        ["left", "right", "still"])


def test_predict_every_writes_the_timeline_and_its_strip(workdir, tmp_path, capsys):
  video = h.write_video(tmp_path / "clip.mp4", num_frames=20)  # 2.5 s at 8 frames/s
  out = tmp_path / "timelines"
  args = ["--checkpoint", workdir, "--video", video, "--every", "1", "--top", "2",
          "--out", str(out)]
  assert predict.main(args + ["--json"]) == 0
  got = json.loads(capsys.readouterr().out)
  assert [(w["start"], w["end"]) for w in got["windows"]] == [(0, 1), (1, 2), (2, 2.5)]
  with open(out / "clip.timeline.csv", newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["start", "end", "class_1", "score_1", "class_2", "score_2"]
  assert [r[:2] for r in rows[1:]] == [["0.000", "1.000"], ["1.000", "2.000"],
                                       ["2.000", "2.500"]]
  for row, w in zip(rows[1:], got["windows"]):
    assert [row[2], float(row[3])] == [w["top"][0]["label"],
                                       pytest.approx(w["top"][0]["probability"], abs=1e-6)]
    assert float(row[3]) >= float(row[5])
  h.non_empty_png(out / "clip.timeline.png")
  gone = str(tmp_path / "gone.mp4")
  assert predict.main(args[:3] + [gone] + args[3:]) == 1
  captured = capsys.readouterr()
  assert captured.err.startswith(f"error: {gone}: no such file")
  assert "clip.mp4: 3 windows every 1 s" in captured.out
