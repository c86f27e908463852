"""The Grain pipeline: determinism over workers, resumable state, bad files, eval views.

Most tests use `CodeReader`, whose frames are uniform colours that encode the record
(red) and the chosen frame index (green), so any crop keeps the code. The end-to-end
test encodes the frame number in the pixels of a real mp4 and checks every grid cell
after `time_layer.arrange` against `frame_indices`.
"""

import os

import av
import ml_collections
import numpy as np
import pytest

from time_jax import time_layer
from time_jax.data import config as data_config
from time_jax.data import pipeline
from time_jax.data import scenes
from time_jax.data import transforms
from time_jax.data.base import DecodeError, Record, Splits

NUM_FRAMES = 40


class CodeReader:
  """Frames ``[rec, frame index, 0]`` (uniform) of 48x64; raises for paths with 'bad'."""

  def read(self, record, choose):
    if "bad" in record.path:
      raise DecodeError(f"{record.path}: undecodable")
    idx = choose(record.num_frames or NUM_FRAMES)
    frames = np.zeros((len(idx), 48, 64, 3), np.uint8)
    frames[..., 0] = int(record.path.split("rec")[1].split("_")[0])
    frames[..., 1] = idx[:, None, None]
    return frames


def _config(workers=0, batch=4, **inp):
  cfg = ml_collections.ConfigDict(dict(
      dataset=data_config.dataset_defaults(), input=data_config.input_defaults(),
      time=dict(n=2, t_out=2, arrangement="temporal"), image_size=16))
  cfg.input.update(dict(dict(num_workers=workers, batch_size=batch,
                             eval_batch_size=batch, read_threads=2), **inp))
  cfg.dataset.max_bad_fraction = 0.5
  return cfg


def _splits(n=10, bad=()):
  recs = [Record(f"rec{i}" + ("_bad" if i in bad else ""), i % 3) for i in range(n)]
  return Splits(recs, recs, ["a", "b", "c"])


def _take(cfg, split, count, seed=0, splits=None):
  ds, info = pipeline.build(cfg, split, seed=seed, splits=splits or _splits(),
                            reader=CodeReader())
  it = iter(ds)
  out = [next(it) for _ in range(count)]
  it.close()
  return out, info


def _decode(batch):
  """(record per element, frame indices per element) from the colour codes."""
  f = batch["frames"]
  return f[:, 0, 0, 0, 0].tolist(), f[:, :, 0, 0, 1].tolist()


def test_train_batches_format_and_contents():
  batches, info = _take(_config(), "train", 3)
  b = batches[0]
  assert set(b) == {"frames", "label", "index"}
  assert b["frames"].shape == (4, 8, 8, 8, 3) and b["frames"].dtype == np.uint8
  assert b["label"].dtype == np.int32 and b["index"].dtype == np.int32
  assert info.num_classes == 3 and info.steps_per_epoch == 10 // 4
  assert info.element_shapes["frames"] == (4, 8, 8, 8, 3)
  for b in batches:
    recs, idx = _decode(b)
    assert recs == b["index"].tolist()
    assert b["label"].tolist() == [r % 3 for r in recs]
    for frames in idx:  # temporal jitter: one frame per segment of 40 / 8 = 5
      assert all(5 * k <= i < 5 * (k + 1) for k, i in enumerate(frames))
  # The first epoch (8 elements in 2 batches) has no repeats; epochs reshuffle.
  first = sum((_decode(b)[0] for b in batches[:2]), [])
  assert len(set(first)) == 8


@pytest.mark.parametrize("workers", [0, 2])
def test_same_seed_same_batches_any_worker_count(workers):
  # RandAugment on the view's window too: its draws come from the element's seed.
  augment = dict(randaugment="rand-m9-n4-p0.8", randaugment_on="frames_window")
  ref, _ = _take(_config(workers=0, **augment), "train", 4, seed=3)
  got, _ = _take(_config(workers=workers, **augment), "train", 4, seed=3)
  for a, b in zip(ref, got):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  other, _ = _take(_config(workers=0), "train", 4, seed=4)
  assert any((a["index"] != b["index"]).any() for a, b in zip(ref, other))


@pytest.mark.parametrize("workers", [0, 2])
def test_iterator_state_restores_the_exact_sequence(workers):
  ds, _ = pipeline.build(_config(workers=workers), "train", seed=1, splits=_splits(),
                         reader=CodeReader())
  it = iter(ds)
  for _ in range(3):
    next(it)
  state = it.get_state()
  after = [next(it) for _ in range(4)]
  it.close()
  ds2, _ = pipeline.build(_config(workers=workers), "train", seed=1, splits=_splits(),
                          reader=CodeReader())
  it2 = iter(ds2)
  it2.set_state(state)
  resumed = [next(it2) for _ in range(4)]
  it2.close()
  for a, b in zip(after, resumed):
    np.testing.assert_array_equal(a["frames"], b["frames"])
    np.testing.assert_array_equal(a["index"], b["index"])


class CountingReader(CodeReader):
  """`CodeReader` that numbers its reads in the blue channel (1, 2, ...);
  ``extra_frames_free`` as asked."""

  def __init__(self, extra_frames_free=False):
    self.extra_frames_free = extra_frames_free
    self.reads = 0

  def read(self, record, choose):
    self.reads += 1
    frames = super().read(record, choose)
    frames[..., 2] = self.reads
    return frames


class Texture(CodeReader):
  """Frames of random texture, one image per record repeated over time."""

  def read(self, record, choose):
    idx = choose(NUM_FRAMES)
    rng = np.random.default_rng(int(record.path[3:]))
    return np.repeat(rng.integers(0, 255, (1, 48, 64, 3), np.uint8), len(idx), 0)


def _read_ids(batch):
  return batch["frames"][:, 0, 0, 0, 2].tolist()


@pytest.mark.parametrize("extra_frames_free, repeat_frames, own_frames", [
    (False, "own", False),  # frame folders, JPEG caches: a frame costs a decode
    (True, "own", True),    # video files: each view its own jitter
    (True, "shared", False),  # VideoMAE's num_sample: one frame set, views differ in space
])
def test_repeated_views_come_from_one_read_and_differ(extra_frames_free, repeat_frames,
                                                       own_frames):
  cfg = _config(batch=6, repeats=3, read_threads=1, repeat_frames=repeat_frames)
  cfg.input.crop_scale = (0.2, 0.5)
  reader = CountingReader(extra_frames_free=extra_frames_free)
  ds, info = pipeline.build(cfg, "train", seed=0, splits=_splits(), reader=reader)
  it = iter(ds)
  batches = [next(it) for _ in range(4)]
  it.close()
  assert info.num_views == 3 and info.steps_per_epoch == 3 * 10 // 6
  same_frames = 0
  for b in batches:
    ids = _read_ids(b)  # one read per video, shared by its three views
    assert ids[0:3] == [ids[0]] * 3 and ids[3:6] == [ids[3]] * 3 and ids[0] != ids[3]
    assert b["frames"].shape == (6, 8, 8, 8, 3)
    recs, idx = _decode(b)
    assert recs == b["index"].tolist()
    for v in (0, 3):  # the three views of a video are adjacent
      assert recs[v:v + 3] == [recs[v]] * 3 and len(set(b["label"][v:v + 3])) == 1
      for frames in idx[v:v + 3]:
        assert all(5 * k <= i < 5 * (k + 1) for k, i in enumerate(frames))
      same_frames += idx[v] == idx[v + 1] == idx[v + 2]
  if own_frames:
    assert same_frames < 8  # each view drew its own jitter
  else:
    assert same_frames == 8  # one decoded set of frames, shared by the views


def test_repeated_views_have_their_own_crops():
  cfg = _config(batch=4, repeats=2, repeat_frames="shared")
  cfg.input.crop_scale = (0.1, 0.3)
  ds, _ = pipeline.build(cfg, "train", seed=0, splits=_splits(), reader=Texture())
  b = next(iter(ds))
  assert b["index"][0] == b["index"][1] and b["index"][2] == b["index"][3]
  assert not np.array_equal(b["frames"][0], b["frames"][1])
  assert not np.array_equal(b["frames"][2], b["frames"][3])


@pytest.mark.parametrize("workers", [0, 2])
def test_iterator_state_restores_the_exact_sequence_with_repeats(workers):
  def build():
    cfg = _config(workers=workers, batch=4, repeats=2)
    reader = CodeReader()
    reader.extra_frames_free = True  # each view draws its own frames
    return pipeline.build(cfg, "train", seed=5, splits=_splits(), reader=reader)[0]
  it = iter(build())
  for _ in range(3):
    next(it)
  state = it.get_state()
  after = [next(it) for _ in range(3)]
  it.close()
  it2 = iter(build())
  it2.set_state(state)
  resumed = [next(it2) for _ in range(3)]
  it2.close()
  for a, b in zip(after, resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_repeats_must_divide_the_batch():
  with pytest.raises(ValueError, match="input.repeats"):
    pipeline.build(_config(batch=4, repeats=3), "train", splits=_splits(),
                   reader=CodeReader())


def test_eval_crops_of_a_clip_share_one_read():
  cfg = _config(batch=6, eval_clips=2, eval_crops=3, read_threads=1)
  reader = CountingReader()
  ds, info = pipeline.build(cfg, "eval", splits=_splits(n=4), reader=reader)
  batches = list(ds)
  assert sum(int(b["valid"].sum()) for b in batches) == 4 * 6 == 4 * info.num_views
  reads = {}
  for b in batches:
    for i, v, r in zip(b["index"].tolist(), b["view"].tolist(), _read_ids(b)):
      reads.setdefault((i, v // 3), set()).add(r)
  assert len(reads) == 4 * 2 and all(len(r) == 1 for r in reads.values())  # per clip


def test_bad_files_are_replaced_counted_and_logged_once(caplog):
  caplog.set_level("WARNING")
  splits = _splits(n=20, bad=(3, 11))
  cfg = _config()
  cfg.dataset.max_bad_fraction = 0.2
  ds, info = pipeline.build(cfg, "train", seed=0, splits=splits, reader=CodeReader())
  it = iter(ds)
  batches = [next(it) for _ in range(15)]  # three epochs
  it.close()
  seen = sum((b["index"].tolist() for b in batches), [])
  assert 3 not in seen and 11 not in seen
  assert all(b["frames"].shape[0] == 4 for b in batches)
  m = info.monitor.metrics()
  assert m["input/bad_files"] == 2 and m["input/replaced"] >= 4  # each bad once an epoch
  logged = [r.getMessage() for r in caplog.records if "cannot decode" in r.getMessage()]
  assert len(logged) == 2 and any("rec3_bad" in x for x in logged)
  # Replacement is deterministic: a second run gives the same batches.
  again, _ = _take(cfg, "train", 15, splits=splits)
  for a, b in zip(batches, again):
    np.testing.assert_array_equal(a["index"], b["index"])


def test_too_many_bad_files_stop_with_their_names():
  cfg = _config()
  cfg.dataset.max_bad_fraction = 0.1
  ds, _ = pipeline.build(cfg, "train", seed=0, splits=_splits(n=10, bad=(2, 5)),
                         reader=CodeReader())
  it = iter(ds)
  with pytest.raises(pipeline.TooManyBadFiles, match=r"2 of 10 train .* allows \(1\): rec2_bad; rec5_bad\."):
    for _ in range(10):
      next(it)
  it.close()


def test_eval_covers_every_view_once_padded_with_valid_mask():
  cfg = _config(batch=4, eval_clips=2, eval_crops=3)
  splits = _splits(n=5, bad=(4,))
  ds, info = pipeline.build(cfg, "eval", splits=splits, reader=CodeReader())
  batches = list(ds)
  assert info.num_views == 6 and info.steps_per_epoch == 8 == len(batches)
  assert all(b["frames"].shape[0] == 4 for b in batches)
  pairs = [(i, v, ok) for b in batches
           for i, v, ok in zip(b["index"].tolist(), b["view"].tolist(),
                               b["valid"].tolist())]
  real = [(i, v) for i, v, _ in pairs if i >= 0]
  assert sorted(real) == [(i, v) for i in range(5) for v in range(6)]
  assert [ok for i, _, ok in pairs if i < 0] == [False, False]  # 30 views -> 32 slots
  assert all(ok == (i != 4) for i, _, ok in pairs if i >= 0)  # the bad video is invalid
  assert info.monitor.metrics()["input/bad_files"] == 1
  # Eval indices are deterministic: clip c of 2 is at (2c + 1) / 4 of each segment.
  for b in batches:
    recs, idx = _decode(b)
    for i, v, ok, r, frames in zip(b["index"], b["view"], b["valid"], recs, idx):
      if ok:
        clip = v // 3
        assert r == i
        assert frames == [5 * k + (5 * (2 * clip + 1)) // 4 for k in range(8)]
  # A second pass gives the same batches.
  for a, b in zip(batches, list(ds)):
    np.testing.assert_array_equal(a["frames"], b["frames"])


def test_processes_read_disjoint_shards_with_equal_steps(monkeypatch):
  cfg = _config(batch=4)
  seen, steps = [], []
  for pi in range(2):
    monkeypatch.setattr(pipeline, "_shard_info", lambda pi=pi: (pi, 2))
    ds, info = pipeline.build(cfg, "eval", splits=_splits(n=7), reader=CodeReader())
    batches = list(ds)
    assert info.local_batch_size == 2
    steps.append(len(batches))
    seen.append([i for b in batches for i in b["index"].tolist() if i >= 0])
    train, _ = pipeline.build(cfg, "train", splits=_splits(n=7), reader=CodeReader())
    it = iter(train)
    local = sum((next(it)["index"].tolist() for _ in range(2)), [])
    assert all(i % 2 == pi for i in local)
  assert steps[0] == steps[1] == 2
  assert sorted(seen[0] + seen[1]) == list(range(7)) and not set(seen[0]) & set(seen[1])


# ------------------------------------------------------------------------------------
# End to end on a real video file.
# ------------------------------------------------------------------------------------

def _write_numbered_video(path, num_frames, h=48, w=64):
  """An H.264 mp4 whose frame k is uniform grey 6·k + 8 (k < 40), lossless (qp 0)."""
  with av.open(path, "w") as out:
    stream = out.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {"qp": "0"}
    for k in range(num_frames):
      img = np.full((h, w, 3), 6 * k + 8, np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        out.mux(packet)
    for packet in stream.encode():
      out.mux(packet)


class _PyAVReader:
  """Decodes all frames with PyAV and keeps the chosen ones (used when the project's
  `time_jax.data.video.VideoReader` is not importable)."""

  def read(self, record, choose):
    try:
      with av.open(record.path) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    except Exception as e:  # pylint: disable=broad-except
      raise DecodeError(str(e)) from e
    return frames[choose(len(frames))]


def _video_reader():
  try:
    from time_jax.data import video  # pylint: disable=g-import-not-at-top
    return video.VideoReader()
  except ImportError:
    return _PyAVReader()


@pytest.mark.parametrize("arrangement,n,t_out", [("temporal", 2, 3), ("spatial", 2, 3),
                                                 ("spatial", 3, 1)])
def test_grid_cells_hold_the_frames_frame_indices_named(tmp_path, arrangement, n, t_out):
  lengths = (37, 7)  # one video longer and one shorter than t_out·n·n
  lines = []
  for i, num in enumerate(lengths):
    _write_numbered_video(str(tmp_path / f"v{i}.mp4"), num)
    lines.append(f"v{i}.mp4 {i}")
  (tmp_path / "ann.txt").write_text("\n".join(lines) + "\n")
  cfg = _config(batch=2)
  cfg.time.update(n=n, arrangement=arrangement, t_out=t_out)
  cfg.image_size = 8 * n
  cfg.dataset.update(root=str(tmp_path), train_annotations=str(tmp_path / "ann.txt"),
                     eval_annotations=str(tmp_path / "ann.txt"))
  data_config.validate(cfg)
  ds, info = pipeline.build(cfg, "eval", reader=_video_reader())
  (batch,) = list(ds)
  assert batch["valid"].all() and info.num_examples == 2
  grid = np.asarray(time_layer.arrange(batch["frames"], n, arrangement))
  assert grid.shape == (2, t_out, 8 * n, 8 * n, 3)
  for b, num in enumerate(lengths):
    idx = time_layer.frame_indices(num, t_out, n)
    for t in range(t_out):
      for cell in range(n * n):
        r, q = divmod(cell, n)
        i = cell * t_out + t if arrangement == "spatial" else t * n * n + cell
        value = grid[b, t, r * 8:(r + 1) * 8, q * 8:(q + 1) * 8].astype(float).mean()
        assert round((value - 8) / 6) == idx[i], (b, t, cell)
  assert os.path.exists(tmp_path / "v0.mp4")


def test_real_corrupt_files_are_replaced_and_counted(tmp_path):
  good = ["g0.mp4", "g1.mp4", "g2.mp4"]
  for name in good:
    _write_numbered_video(str(tmp_path / name), 12)
  (tmp_path / "empty.mp4").write_bytes(b"")
  (tmp_path / "garbage.mp4").write_bytes(os.urandom(4000))
  data = (tmp_path / "g0.mp4").read_bytes()
  (tmp_path / "truncated.mp4").write_bytes(data[:len(data) // 3])
  names = good + ["empty.mp4", "garbage.mp4", "truncated.mp4"]
  (tmp_path / "ann.txt").write_text("".join(f"{n} {i % 2}\n" for i, n in enumerate(names)))
  cfg = _config(batch=2)
  cfg.dataset.update(root=str(tmp_path), train_annotations=str(tmp_path / "ann.txt"),
                     eval_annotations=str(tmp_path / "ann.txt"), max_bad_fraction=0.5)
  ds, info = pipeline.build(cfg, "train", reader=_video_reader())
  it = iter(ds)
  seen = sum((next(it)["index"].tolist() for _ in range(9)), [])  # three epochs
  it.close()
  assert set(seen) <= {0, 1, 2}
  assert info.monitor.metrics()["input/bad_files"] == 3
  cfg.dataset.max_bad_fraction = 0.4  # 3 of 6 bad is now too many
  ds, _ = pipeline.build(cfg, "train", reader=_video_reader())
  it = iter(ds)
  with pytest.raises(pipeline.TooManyBadFiles, match="3 of 6 train"):
    for _ in range(9):
      next(it)
  it.close()


def test_randaugment_draws_per_view_and_keeps_frames_consistent():
  cfg = _config(batch=4, repeats=2, randaugment="rand-m9-n3-p1.0")
  cfg.input.crop_scale = (1.0, 1.0)
  cfg.input.flip = False
  plain = _config(batch=4, repeats=2)
  plain.input.update(crop_scale=(1.0, 1.0), flip=False)
  b = next(iter(pipeline.build(cfg, "train", seed=0, splits=_splits(), reader=Texture())[0]))
  ref = next(iter(pipeline.build(plain, "train", seed=0, splits=_splits(),
                                 reader=Texture())[0]))
  assert not np.array_equal(b["frames"], ref["frames"])  # the ops changed the pixels
  # Every frame of a view is the same frame here, so the same ops keep them equal.
  assert (b["frames"] == b["frames"][:, :1]).all()
  bad = _config(randaugment="rand-m9-q3")
  bad.dataset.update(name="synthetic", root="/nowhere")  # no files needed to validate
  with pytest.raises(ValueError, match="input.randaugment"):
    data_config.validate(bad)
  # On the cells, or on the window of the frames: the same kind of change, cheaper;
  # still per view, frames consistent.
  for on in ("cells", "frames_window"):
    cfg.input.randaugment_on = on
    c = next(iter(pipeline.build(cfg, "train", seed=0, splits=_splits(),
                                 reader=Texture())[0]))
    assert not np.array_equal(c["frames"], ref["frames"])
    assert (c["frames"] == c["frames"][:, :1]).all()


class Scene(CodeReader):
  """Generated footage (`time_jax.data.scenes`), one 64x48 clip per record."""

  def read(self, record, choose):
    idx = choose(NUM_FRAMES)
    rng = np.random.default_rng(int(record.path[3:]))
    return scenes.scene_clip(rng, num_frames=NUM_FRAMES, height=48, width=64)[idx]


def test_randaugment_on_the_window_draws_as_on_the_frames_and_resumes():
  # 'frames_window' draws the ops and the view of each repeated view as 'frames'
  # does, from the element's generator, and computes about the same pixels (another
  # draw order would give other crops: tens of grey levels); it resumes exactly.
  def build(on):
    cfg = _config(batch=4, repeats=2, randaugment="rand-m7-n4-mstd0.5-inc1",
                  randaugment_on=on, rotation=10.0)
    cfg.image_size = 48  # 24x24 cells of the 64x48 frames
    return pipeline.build(cfg, "train", seed=2, splits=_splits(), reader=Scene())[0]
  it = iter(build("frames"))
  frames = [next(it) for _ in range(3)]
  it.close()
  it = iter(build("frames_window"))
  window = [next(it)]
  state = it.get_state()
  window += [next(it) for _ in range(2)]
  it.close()
  diffs = []
  for a, b in zip(frames, window):
    np.testing.assert_array_equal(a["index"], b["index"])
    diffs += [np.abs(a["frames"][v].astype(int) - b["frames"][v]).mean()
              for v in range(len(a["frames"]))]
  assert np.mean(diffs) <= 1.0 and np.median(diffs) <= 0.5, diffs
  it = iter(build("frames_window"))
  it.set_state(state)
  for b in window[1:]:
    np.testing.assert_array_equal(next(it)["frames"], b["frames"])
  it.close()


def test_dense_sampling_reads_videomaes_frames_in_train_and_eval():
  """``time.sampling='dense'``: training frames lie in one window at the stride, eval
  clips are VideoMAE's test windows (`transforms.dense_eval_indices`)."""
  cfg = _config(batch=2, temporal_jitter=True)
  cfg.time.update(sampling="dense", dense_stride=2)  # 8 frames from a 16-frame window
  cfg.input.update(eval_clips=2, eval_crops=1)
  (b,), _ = _take(cfg, "train", 1)
  for frames in _decode(b)[1]:
    steps = np.diff(frames)
    assert frames[-1] - frames[0] < 16 and set(steps.tolist()) <= {2, 3}, frames
  (e,), _ = _take(cfg, "eval", 1)
  want = [transforms.dense_eval_indices(NUM_FRAMES, 8, 2, k, 2).tolist() for k in (0, 1)]
  assert _decode(e)[1][:2] == want and want[0] != want[1]
