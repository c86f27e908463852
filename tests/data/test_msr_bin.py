"""MSRAction3D depth .bin: the published layout, chosen frames, bad files, the pipeline.

The reference file is written value by value with `struct` (header ``frames, width,
height``, then rows of ``width`` values), independently of `write_msr_bin`, and frames
are not square (W=7, H=5), so swapping width and height or reading column-major fails.
"""

import struct

import numpy as np
import pytest

from time_jax.config import base_config
from time_jax.data import transforms
from time_jax.data.base import DecodeError, Record
from time_jax.data.msr_bin import MsrBinReader, read_msr_bin, write_msr_bin

T, H, W = 4, 5, 7


def _value(t, y, x):
  return 100_000 * (t + 1) + 100 * y + x  # above 16 bits: int32 must survive


def _hand_written(path, frames=T, height=H, width=W):
  data = struct.pack("<iii", frames, width, height)
  for t in range(frames):
    for y in range(height):
      for x in range(width):
        data += struct.pack("<i", _value(t, y, x))
  path.write_bytes(data)
  return data


def _expected(frames=T, height=H, width=W):
  t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width),
                        indexing="ij")
  return _value(t, y, x).astype(np.int32)


def _read(path, indices, num_frames=None):
  seen = []

  def choose(count):
    seen.append(count)
    return np.asarray(indices)

  return MsrBinReader().read(Record(str(path), 0, num_frames), choose), seen


def test_read_hand_written_file(tmp_path):
  _hand_written(tmp_path / "a.bin")
  depth = read_msr_bin(str(tmp_path / "a.bin"))
  assert depth.shape == (T, H, W) and depth.dtype == np.int32
  np.testing.assert_array_equal(depth, _expected())
  assert depth[2, 4, 6] == _value(2, 4, 6)


def test_write_matches_the_published_bytes(tmp_path):
  data = _hand_written(tmp_path / "ref.bin")
  write_msr_bin(str(tmp_path / "ours.bin"), _expected().astype(np.int64))
  assert (tmp_path / "ours.bin").read_bytes() == data


def test_round_trip_negative_and_large_values(tmp_path):
  rng = np.random.default_rng(0)
  depth = rng.integers(-2**31, 2**31 - 1, size=(3, 2, 9), dtype=np.int64)
  write_msr_bin(str(tmp_path / "sub" / "r.bin"), depth)
  np.testing.assert_array_equal(read_msr_bin(str(tmp_path / "sub" / "r.bin")), depth)


def test_reader_chosen_and_repeated_frames(tmp_path):
  _hand_written(tmp_path / "a.bin")
  out, seen = _read(tmp_path / "a.bin", [0, 2, 2, 3, 3, 3])
  assert seen == [T]
  assert out.shape == (6, H, W, 1) and out.dtype == np.int32
  np.testing.assert_array_equal(out[..., 0], _expected()[[0, 2, 2, 3, 3, 3]])


def test_reader_annotation_frame_count(tmp_path):
  _hand_written(tmp_path / "a.bin")
  _, seen = _read(tmp_path / "a.bin", [0, 1], num_frames=2)
  assert seen == [2]
  out, seen = _read(tmp_path / "a.bin", [0, T - 1], num_frames=40)  # more than exist
  assert seen == [T]
  np.testing.assert_array_equal(out[1, ..., 0], _expected()[T - 1])


@pytest.mark.parametrize("cut, match", [(1, "truncated"), (4 * H * W, "truncated"),
                                         (-4, "longer"), (None, "too short")])
def test_wrong_length_raises(tmp_path, cut, match):
  data = _hand_written(tmp_path / "a.bin")
  data = data[:8] if cut is None else (data[:-cut] if cut > 0 else data + b"\0" * -cut)
  (tmp_path / "a.bin").write_bytes(data)
  for read in (lambda: read_msr_bin(str(tmp_path / "a.bin")),
               lambda: _read(tmp_path / "a.bin", [0])):
    with pytest.raises(DecodeError, match=match) as e:
      read()
    assert "a.bin" in str(e.value)


@pytest.mark.parametrize("header", [(0, W, H), (T, -7, H), (T, W, 0), (T, 10**6, 10**6),
                                    (-1, -1, -1)])
def test_nonsense_header_raises(tmp_path, header):
  (tmp_path / "a.bin").write_bytes(struct.pack("<iii", *header) + b"\0" * 4 * 64)
  with pytest.raises(DecodeError, match="header says"):
    _read(tmp_path / "a.bin", [0])


def test_missing_file_raises(tmp_path):
  with pytest.raises(DecodeError, match="does not exist"):
    _read(tmp_path / "nope.bin", [0])
  with pytest.raises(DecodeError, match="not a file"):
    read_msr_bin(str(tmp_path))


def test_write_rejects_other_arrays(tmp_path):
  with pytest.raises(ValueError, match="integer"):
    write_msr_bin(str(tmp_path / "a.bin"), np.zeros((2, 3, 4), np.float32))
  with pytest.raises(ValueError, match="integer"):
    write_msr_bin(str(tmp_path / "a.bin"), np.zeros((3, 4), np.int32))
  with pytest.raises(ValueError, match="int32"):
    write_msr_bin(str(tmp_path / "a.bin"), np.full((1, 1, 1), 2**40))


def _depth_clip(num, height=24, width=32):
  """Frame i is uniform 1000·(i + 1) (millimetres)."""
  return np.broadcast_to(1000 * (np.arange(num) + 1)[:, None, None],
                         (num, height, width)).astype(np.int32)


def _config(tmp_path, **dataset):
  cfg = base_config()
  cfg.image_size = 16
  cfg.time.update(n=2, t_out=2)
  cfg.input.update(batch_size=2, eval_batch_size=2, num_workers=0, read_threads=1)
  cfg.dataset.update(root=str(tmp_path), source="msr_bin", modality="depth",
                     depth_max=16000.0, **dataset)
  return cfg


def _check_batches(first_batches, cfg, num):
  batch = first_batches(cfg, (2, 8, 8, 8, 3))
  # Eval has no jitter: cell j holds frame clip_indices[j], depth 1000·(i+1) -> uint8.
  idx = transforms.clip_indices(num, 2, 2)
  want = np.rint(1000 * (idx + 1) * 255 / 16000)
  np.testing.assert_allclose(batch["frames"][0, :, 4, 4, 0], want, atol=1)
  assert batch["valid"].all()


def test_pipeline_annotations(tmp_path, first_batches):
  num = 15
  for name in ("a01_s01_e01_sdepth.bin", "a02_s02_e01_sdepth.bin"):
    write_msr_bin(str(tmp_path / name), _depth_clip(num))
  (tmp_path / "ann.txt").write_text(
      "a01_s01_e01_sdepth.bin 0\na02_s02_e01_sdepth.bin 1\n")
  cfg = _config(tmp_path, name="annotations",
                train_annotations=str(tmp_path / "ann.txt"),
                eval_annotations=str(tmp_path / "ann.txt"))
  _check_batches(first_batches, cfg, num)


def test_pipeline_msr_action3d_scan(tmp_path, first_batches):
  """The cross-subject protocol finds the .bin files by name (odd subjects train)."""
  num = 15
  for name in ("a01_s01_e01_sdepth.bin", "a02_s03_e02_sdepth.bin",
               "a01_s02_e01_sdepth.bin", "a03_s04_e01_sdepth.bin"):
    write_msr_bin(str(tmp_path / "depth" / name), _depth_clip(num))
  (tmp_path / "depth" / "a05_s01_e01_skeleton.txt").write_text("not depth")
  cfg = _config(tmp_path, name="msr_action3d", split="xsub")
  _check_batches(first_batches, cfg, num)
