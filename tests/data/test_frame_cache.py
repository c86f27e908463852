"""The packed ArrayRecord cache: round trip, resizing, draft decoding, bad videos, pickling.

`NumberReader` stands in for a video source: frame t of a record is uniform with red
``= 8 t`` and green ``= 40 label`` (exact under JPEG up to rounding), so every frame
read back names itself. The end-to-end test runs ``python -m time_jax.data.pack`` on
real mp4 files and builds the pipeline from the cache.
"""

import json
import os
import pickle
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from time_jax.data import config as data_config
from time_jax.data import frame_cache
from time_jax.data import pipeline
from time_jax.data import reference
from time_jax.data import scenes
from time_jax.data.base import DecodeError, Record, Splits

TOL = 3  # JPEG (quality 90) error on uniform colours, in uint8 steps


class NumberReader:
  """Frames ``[T, h, w, 3]``: red = 8 * frame index, green = 40 * label; 'bad' fails."""

  def __init__(self, h=48, w=64, num_frames=20):
    self.h, self.w, self.num_frames = h, w, num_frames
    self.calls = []

  def read(self, record, choose):
    if "bad" in record.path:
      raise DecodeError(f"{record.path}: undecodable")
    idx = np.asarray(choose(record.num_frames or self.num_frames))
    self.calls.append(idx.tolist())
    frames = np.zeros((len(idx), self.h, self.w, 3), np.uint8)
    frames[..., 0] = (8 * idx)[:, None, None]
    frames[..., 1] = 40 * record.label
    frames[..., 2] = 128
    return frames


def _records(n=3, bad=()):
  return [Record(f"/videos/v{i}" + ("_bad" if i in bad else "") + ".mp4", i % 3,
                 video_id=f"v{i}") for i in range(n)]


def _check(frames, indices, label):
  want = np.zeros(frames.shape, np.int32)
  want[..., 0] = 8 * np.asarray(indices)[:, None, None]
  want[..., 1] = 40 * label
  want[..., 2] = 128
  assert np.abs(frames.astype(np.int32) - want).max() <= TOL


def test_roundtrip_returns_the_chosen_frames(tmp_path):
  source = NumberReader()
  records = _records(4)
  index = frame_cache.write_packed(records, source, str(tmp_path / "train"), num_threads=3)
  # The writer asked for every frame of every video.
  assert sorted(source.calls) == [list(range(20))] * 4
  assert index["num_failed"] == 0 and len(index["shards"]) == 1
  recs = list(frame_cache.packed_records(str(tmp_path / "train")))
  assert [(r.label, r.num_frames, r.video_id) for r in recs] == [
      (r.label, 20, r.video_id) for r in records]
  assert all(os.path.isabs(r.path) for r in recs)
  reader = frame_cache.PackedReader(str(tmp_path))
  for rec in recs:
    wanted = np.array([0, 0, 3, 7, 19])  # repeats happen when T < t_out * n * n
    frames = reader.read(rec, lambda t, w=wanted: w if t == 20 else None)
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == np.uint8
    _check(frames, wanted, rec.label)


def test_each_distinct_frame_decodes_once(tmp_path, monkeypatch):
  frame_cache.write_packed(_records(1), NumberReader(), str(tmp_path))
  (rec,) = frame_cache.packed_records(str(tmp_path))
  decoded = []
  real = frame_cache.simplejpeg.decode_jpeg
  monkeypatch.setattr(frame_cache.simplejpeg, "decode_jpeg",
                      lambda *a, **k: (decoded.append(1), real(*a, **k))[1])
  frames = frame_cache.PackedReader().read(rec, lambda t: np.array([2, 2, 2, 5, 5, 9]))
  assert len(decoded) == 3
  _check(frames, [2, 2, 2, 5, 5, 9], rec.label)


def test_many_shards(tmp_path):
  frame_cache.write_packed(_records(5), NumberReader(), str(tmp_path), shard_bytes=1)
  index = frame_cache.read_index(str(tmp_path))
  assert len(index["shards"]) == 5
  reader = frame_cache.PackedReader()
  for rec in frame_cache.packed_records(str(tmp_path)):
    _check(reader.read(rec, lambda t: np.array([t - 1])), [19], rec.label)


def test_short_side_resizes_keeping_aspect_and_never_upscales(tmp_path):
  frame_cache.write_packed(_records(1), NumberReader(48, 64), str(tmp_path / "a"),
                      short_side=24)
  frame_cache.write_packed(_records(1), NumberReader(64, 48), str(tmp_path / "b"),
                      short_side=24)
  frame_cache.write_packed(_records(1), NumberReader(48, 64), str(tmp_path / "c"),
                      short_side=100)
  reader = frame_cache.PackedReader()
  for name, shape in (("a", (24, 32)), ("b", (32, 24)), ("c", (48, 64))):
    (rec,) = frame_cache.packed_records(str(tmp_path / name))
    frames = reader.read(rec, lambda t: np.array([4, 11]))
    assert frames.shape[1:3] == shape
    _check(frames, [4, 11], rec.label)


@pytest.mark.parametrize("draft,expect", [(60, (64, 80)), (100, (128, 160)),
                                          (129, (256, 320)), (20, (32, 40))])
def test_draft_decodes_jpeg_at_reduced_size(tmp_path, draft, expect):
  frame_cache.write_packed(_records(1), NumberReader(256, 320), str(tmp_path))
  (rec,) = frame_cache.packed_records(str(tmp_path))
  full = frame_cache.PackedReader().read(rec, lambda t: np.array([3, 8]))
  assert full.shape[1:3] == (256, 320)
  small = frame_cache.PackedReader(draft_size=draft).read(rec, lambda t: np.array([3, 8]))
  # The largest DCT reduction (1, 2, 4, 8) whose short side is still >= draft_size.
  assert small.shape[1:3] == expect
  assert min(small.shape[1:3]) >= draft
  _check(small, [3, 8], rec.label)


def test_short_side_for_config():
  cfg = ml_collections.ConfigDict(dict(
      input=data_config.input_defaults(), time=dict(n=4), image_size=224))
  assert frame_cache.short_side_for(cfg) == 112  # cell 56 / sqrt(0.25)
  cfg.input.crop_scale = (1.0, 1.0)
  assert frame_cache.short_side_for(cfg) == 64  # eval: 56 / 0.875


def test_failed_videos_are_counted_listed_and_read_as_decode_errors(tmp_path, caplog):
  caplog.set_level("WARNING")
  index = frame_cache.write_packed(_records(4, bad=(1, 2)), NumberReader(), str(tmp_path))
  assert index["num_failed"] == 2
  assert [f["video_id"] for f in index["failed"]] == ["v1", "v2"]
  assert "undecodable" in index["failed"][0]["error"]
  on_disk = json.loads((tmp_path / "index.json").read_text())
  assert on_disk["num_failed"] == 2
  assert "v1_bad.mp4" in caplog.text and "2 of 4 videos" in caplog.text
  recs = list(frame_cache.packed_records(str(tmp_path)))
  assert len(recs) == 4 and [r.num_frames for r in recs] == [20, None, None, 20]
  reader = frame_cache.PackedReader()
  with pytest.raises(DecodeError, match="failed to decode when packed"):
    reader.read(recs[1], np.arange)
  _check(reader.read(recs[3], lambda t: np.array([1])), [1], recs[3].label)


def test_depth_is_lossless(tmp_path):

  class DepthReader:
    def __init__(self, dtype, scale):
      self.dtype, self.scale = dtype, scale

    def read(self, record, choose):
      idx = choose(6)
      rng = np.random.default_rng(record.label)
      return (rng.random((6, 10, 12, 1)) * self.scale).astype(self.dtype)[idx]

  for dtype, scale, codec in ((np.uint16, 9000, "png16"), (np.int32, 4000, "png16"),
                              (np.float32, 5.0, "npy")):
    out = tmp_path / np.dtype(dtype).name
    frame_cache.write_packed(_records(2), DepthReader(dtype, scale), str(out))
    reader = frame_cache.PackedReader(draft_size=4)  # draft never touches depth
    for rec in frame_cache.packed_records(str(out)):
      data = reader.read_bytes(rec)
      assert frame_cache._parse(data)[0]["codec"] == codec
      got = reader.read(rec, lambda t: np.array([0, 5]))
      want = DepthReader(dtype, scale).read(rec, lambda t: np.array([0, 5]))
      np.testing.assert_array_equal(got, want)
      assert got.shape == (2, 10, 12, 1)


def test_reader_pickles_without_open_handles(tmp_path):
  frame_cache.write_packed(_records(2), NumberReader(), str(tmp_path))
  recs = list(frame_cache.packed_records(str(tmp_path)))
  reader = frame_cache.PackedReader(str(tmp_path), draft_size=24)
  first = reader.read(recs[0], lambda t: np.array([6]))  # opens the shard
  assert reader._readers
  clone = pickle.loads(pickle.dumps(reader))
  assert clone.draft_size == 24 and not clone._readers
  np.testing.assert_array_equal(clone.read(recs[0], lambda t: np.array([6])), first)


def test_bad_paths_and_missing_index_name_the_problem(tmp_path):
  with pytest.raises(ValueError, match="no index.json"):
    frame_cache.packed_records(str(tmp_path))
  with pytest.raises(ValueError, match="not a packed record path"):
    frame_cache.PackedReader().read(Record("/some/video.mp4", 0), np.arange)


_CONFIG = """
import ml_collections
from time_jax.data import config as dc

def get_config():
  c = ml_collections.ConfigDict(dict(
      dataset=dc.dataset_defaults(), input=dc.input_defaults(),
      time=dict(n=2, t_out=2, arrangement="spatial"), image_size=32))
  c.dataset.update(root=ROOT, train_annotations=ROOT + "/train.txt",
                   eval_annotations=ROOT + "/eval.txt", max_bad_fraction=0.5)
  c.input.update(batch_size=2, eval_batch_size=2)
  return c
"""


def _write_mp4(path, num_frames, h=96, w=128):
  import av  # pylint: disable=g-import-not-at-top
  with av.open(str(path), "w") as out:
    s = out.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt, s.options = w, h, "yuv420p", {"qp": "0"}
    for k in range(num_frames):
      img = np.full((h, w, 3), 10 * k, np.uint8)
      for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        out.mux(p)
    for p in s.encode():
      out.mux(p)


@pytest.mark.parametrize("workers", [0, 2])
def test_pack_cli_then_pipeline_from_the_cache(tmp_path, workers):
  root = tmp_path / "data"
  root.mkdir()
  for name, t in (("a.mp4", 12), ("b.mp4", 16), ("c.mp4", 14)):
    _write_mp4(root / name, t)
  (root / "broken.mp4").write_bytes(b"not a video")
  (root / "train.txt").write_text("a.mp4 0\nb.mp4 1\nc.mp4 1\nbroken.mp4 0\n")
  (root / "eval.txt").write_text("c.mp4 1\nbroken.mp4 0\n")
  cfg_file = tmp_path / "cfg.py"
  cfg_file.write_text(f"ROOT = {str(root)!r}\n" + _CONFIG)
  out = tmp_path / "packed"
  proc = subprocess.run(
      [sys.executable, "-m", "time_jax.data.pack", "--config", str(cfg_file),
       "--out", str(out), "--short-side", "48"],
      capture_output=True, text=True, check=False, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert "broken.mp4" in proc.stderr  # the skipped video is logged
  # The summary counts what was written, and says what a run on the cache will do.
  assert (f"Packed 3 of 4 train and 1 of 2 eval videos into {out}. 1 train video did "
          "not decode (broken.mp4): a run on it reports them as bad files and replaces "
          "them.") in proc.stderr, proc.stderr
  meta = json.loads((out / "splits.json").read_text())
  assert (meta["train"], meta["eval"]) == (4, 2)
  index = frame_cache.read_index(str(out / "train"))
  assert index["num_failed"] == 1 and index["failed"][0]["video_id"] == "broken.mp4"
  assert [e[3] for e in index["records"]] == [12, 16, 14, None]

  from time_jax import console  # pylint: disable=g-import-not-at-top
  cfg = console.load_config(str(cfg_file))
  cfg.dataset.update(source="packed", packed_dir=str(out))
  cfg.input.num_workers = workers
  ds, info = pipeline.build(cfg, "train", seed=0)
  it = iter(ds)
  batches = [next(it) for _ in range(3)]
  it.close()
  for b in batches:
    assert b["frames"].shape == (2, 8, 16, 16, 3) and b["frames"].dtype == np.uint8
    assert set(b["index"].tolist()) <= {0, 1, 2}  # the broken video is replaced
  assert info.monitor.metrics()["input/bad_files"] == 1  # known from the pack's index
  ds, info = pipeline.build(cfg, "eval")
  (b,) = list(ds)
  assert b["valid"].tolist() == [True, False] and b["label"].tolist() == [1, 0]
  # Frame k of the source was grey 10 k; the cells hold frames of c.mp4 (14 frames).
  chosen = b["frames"][0, :, 8, 8, 0].astype(int)
  assert (np.abs(chosen - 10 * np.rint(chosen / 10)) <= 2).all()
  assert (np.diff(chosen) >= -2).all() and chosen.max() <= 130 + 2


@pytest.mark.parametrize("draft", [None, 100, 60])
def test_fast_decode_equals_pillow_on_real_looking_frames(tmp_path, draft):
  """libjpeg-turbo through simplejpeg gives Pillow's pixels, at Pillow's DCT scale."""
  clip = scenes.scene_clip(np.random.default_rng(3), num_frames=3)
  data = frame_cache.encode_video(clip, Record("x", 0))
  header, offset = frame_cache._parse(data)  # pylint: disable=protected-access
  starts = np.concatenate([[0], np.cumsum(header["sizes"])]) + offset
  payloads = [data[starts[i]:starts[i + 1]] for i in range(3)]
  fast = frame_cache.decode_video(data, draft_size=draft)
  ref = reference.decode_jpegs(payloads, header, draft)
  assert fast.shape == ref.shape
  assert np.abs(fast.astype(int) - ref.astype(int)).max() <= 1


def test_corrupt_packed_frames_are_bad_files_the_pipeline_replaces(tmp_path):
  """A JPEG payload damaged on disk reads as DecodeError on the fast path, so the
  pipeline counts the video and trains on a replacement."""
  frame_cache.write_packed(_records(4), NumberReader(), str(tmp_path))
  index = frame_cache.read_index(str(tmp_path))
  shard = tmp_path / index["shards"][0]
  recs = list(frame_cache.packed_records(str(tmp_path)))
  reader = frame_cache.PackedReader()
  data = reader.read_bytes(recs[1])
  blob = shard.read_bytes()
  at = blob.index(data) + len(data) // 2  # inside record 1's frame payloads
  shard.write_bytes(blob[:at] + bytes(4000) + blob[at + 4000:])
  with pytest.raises(DecodeError, match="does not decode"):
    frame_cache.PackedReader().read(recs[1], lambda t: np.arange(t))
  cfg = ml_collections.ConfigDict(dict(
      dataset=data_config.dataset_defaults(), input=data_config.input_defaults(),
      time=dict(n=1, t_out=20, arrangement="spatial"), image_size=16))
  cfg.input.update(batch_size=2, read_threads=1, temporal_jitter=False)
  cfg.dataset.max_bad_fraction = 0.5
  ds, info = pipeline.build(cfg, "train", splits=Splits(recs, recs, ["a", "b", "c"]),
                            reader=frame_cache.PackedReader())
  it = iter(ds)
  seen = sum((next(it)["index"].tolist() for _ in range(6)), [])
  it.close()
  assert 1 not in seen and info.monitor.metrics()["input/bad_files"] == 1
