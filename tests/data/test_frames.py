"""Frame folders: the chosen frames come back, in natural order, each file opened once.

Frames encode their number in the pixels (RGB JPEG: value 10·i, compared within JPEG
tolerance; PNG and 16-bit depth: exact, with depth values above 255 so a lost high byte
shows), so every test checks *which* frames were read, not only shapes.
"""

import os

import numpy as np
import pytest
from PIL import Image

from time_jax.config import base_config
from time_jax.data import frames as frames_lib
from time_jax.data import pipeline
from time_jax.data import transforms
from time_jax.data.base import DecodeError, Record
from time_jax.data.frames import FrameFolderReader, write_frames

H, W = 6, 10  # non-square, so a transposed frame would not fit


def _rgb_clip(num, h=H, w=W):
  """uint8 ``[num, h, w, 3]``, frame i uniform 10·i."""
  return np.broadcast_to((10 * np.arange(num, dtype=np.uint8))[:, None, None, None],
                         (num, h, w, 3)).copy()


def _coded_clip(num, h=H, w=W):
  """uint8 ``[num, h, w, 3]``: channels (frame, row, column), exact through PNG."""
  t, y, x = np.meshgrid(np.arange(num), np.arange(h), np.arange(w), indexing="ij")
  return np.stack([t, y, x], -1).astype(np.uint8)


def _depth_clip(num, h=H, w=W):
  """uint16 ``[num, h, w]``: 1000·(frame + 1) + 10·row + column, all above 255."""
  t, y, x = np.meshgrid(np.arange(num), np.arange(h), np.arange(w), indexing="ij")
  return (1000 * (t + 1) + 10 * y + x).astype(np.uint16)


def _read(folder, indices, num_frames=None):
  seen = []

  def choose(count):
    seen.append(count)
    return np.asarray(indices)

  out = FrameFolderReader().read(Record(str(folder), 0, num_frames), choose)
  return out, seen


def test_rgb_jpeg_chosen_frames(tmp_path):
  paths = write_frames(str(tmp_path / "v"), _rgb_clip(12))
  assert [os.path.basename(p) for p in paths[:2]] == ["img_00001.jpg", "img_00002.jpg"]
  out, seen = _read(tmp_path / "v", [0, 3, 3, 7, 11])
  assert seen == [12]
  assert out.shape == (5, H, W, 3) and out.dtype == np.uint8
  want = np.array([0, 30, 30, 70, 110])[:, None, None, None]
  assert np.abs(out.astype(int) - want).max() <= 3


def test_rgb_png_exact(tmp_path):
  clip = _coded_clip(9)
  write_frames(str(tmp_path / "v"), clip, ext=".png")
  out, _ = _read(tmp_path / "v", [1, 4, 8])
  np.testing.assert_array_equal(out, clip[[1, 4, 8]])


def test_depth_16bit_png_exact(tmp_path):
  clip = _depth_clip(7)
  paths = write_frames(str(tmp_path / "d"), clip[..., None])
  assert os.path.basename(paths[0]) == "00001.png"
  with Image.open(paths[0]) as img:
    assert img.mode.startswith("I")  # stored as 16-bit, not 8-bit
  out, seen = _read(tmp_path / "d", [0, 2, 2, 6])
  assert seen == [7]
  assert out.shape == (4, H, W, 1) and out.dtype == np.uint16
  np.testing.assert_array_equal(out[..., 0], clip[[0, 2, 2, 6]])
  assert out.max() > 255


def test_natural_sort_and_ignored_files(tmp_path):
  folder = tmp_path / "v"
  folder.mkdir()
  for i in range(1, 13):  # img_1 .. img_12, not zero-padded: plain sort puts 10 first
    Image.fromarray(np.full((H, W, 3), i, np.uint8)).save(folder / f"img_{i}.png")
  (folder / "Thumbs.db").write_bytes(b"not a frame")
  (folder / ".hidden.png").write_bytes(b"not a frame")
  (folder / "sub").mkdir()
  out, seen = _read(folder, np.arange(12))
  assert seen == [12]
  assert out[:, 0, 0, 0].tolist() == list(range(1, 13))
  assert sorted(["img_10", "img_2", "img_1", "IMG_3"], key=frames_lib.natural_key) == [
      "img_1", "img_2", "IMG_3", "img_10"]


def test_each_distinct_frame_opened_once(tmp_path, monkeypatch):
  write_frames(str(tmp_path / "v"), _coded_clip(10), ext=".png")
  opened = []
  decode = frames_lib.decode_image

  def spy(path):
    opened.append(os.path.basename(path))
    return decode(path)

  monkeypatch.setattr(frames_lib, "decode_image", spy)
  out, _ = _read(tmp_path / "v", [2, 2, 2, 5, 5, 9])
  assert sorted(opened) == ["img_00003.png", "img_00006.png", "img_00010.png"]
  assert out[:, 0, 0, 0].tolist() == [2, 2, 2, 5, 5, 9]


@pytest.mark.parametrize("num_frames, want", [(25, 10), (6, 6), (10, 10), (None, 10)])
def test_annotation_frame_count_mismatch(tmp_path, num_frames, want):
  write_frames(str(tmp_path / "v"), _coded_clip(10), ext=".png")
  out, seen = _read(tmp_path / "v", [0, want - 1], num_frames=num_frames)
  assert seen == [want]
  assert out[:, 0, 0, 0].tolist() == [0, want - 1]


def test_grayscale_and_rgba_become_rgb(tmp_path):
  folder = tmp_path / "v"
  folder.mkdir()
  Image.fromarray(np.full((H, W), 77, np.uint8)).save(folder / "f1.png")  # mode L
  rgba = np.zeros((H, W, 4), np.uint8)
  rgba[...] = (10, 20, 30, 128)
  Image.fromarray(rgba).save(folder / "f2.png")  # mode RGBA
  Image.fromarray(np.full((H, W, 3), 51, np.uint8)).convert("P").save(folder / "f3.png")
  out, _ = _read(folder, [0, 1, 2])
  assert out.shape == (3, H, W, 3) and out.dtype == np.uint8
  assert out[0, 0, 0].tolist() == [77, 77, 77]
  assert out[1, 0, 0].tolist() == [10, 20, 30]
  assert out[2, 0, 0].tolist() == [51, 51, 51]  # a web-palette colour


def test_missing_and_empty_folders(tmp_path):
  with pytest.raises(DecodeError, match="does not exist"):
    _read(tmp_path / "nope", [0])
  (tmp_path / "empty").mkdir()
  with pytest.raises(DecodeError, match="no images"):
    _read(tmp_path / "empty", [0])
  (tmp_path / "junk").mkdir()
  (tmp_path / "junk" / "notes.txt").write_text("x")
  with pytest.raises(DecodeError, match="no images"):
    _read(tmp_path / "junk", [0])
  (tmp_path / "file.jpg").write_bytes(b"x")
  with pytest.raises(DecodeError, match="not a folder"):
    _read(tmp_path / "file.jpg", [0])


def test_corrupt_frame_raises_only_when_chosen(tmp_path):
  paths = write_frames(str(tmp_path / "v"), _rgb_clip(5))
  with open(paths[2], "wb") as f:
    f.write(b"\xff\xd8 this is not a jpeg")
  with open(paths[3], "rb") as f:
    head = f.read()
  with open(paths[3], "wb") as f:  # a truncated jpeg
    f.write(head[:len(head) // 2])
  out, _ = _read(tmp_path / "v", [0, 1, 4])  # the bad frames are never opened
  assert out.shape == (3, H, W, 3)
  with pytest.raises(DecodeError, match="img_00003.jpg"):
    _read(tmp_path / "v", [0, 2])
  with pytest.raises(DecodeError, match="img_00004.jpg"):
    _read(tmp_path / "v", [3])


def test_frames_of_different_sizes_raise(tmp_path):
  write_frames(str(tmp_path / "v"), _rgb_clip(2))
  write_frames(str(tmp_path / "w"), _rgb_clip(3, h=H + 2))
  os.replace(tmp_path / "w" / "img_00003.jpg", tmp_path / "v" / "img_00003.jpg")
  with pytest.raises(DecodeError, match="one size"):
    _read(tmp_path / "v", [0, 2])


def test_write_frames_rejects_other_arrays(tmp_path):
  with pytest.raises(ValueError, match="uint8"):
    write_frames(str(tmp_path / "v"), np.zeros((2, 4, 4), np.float32))
  with pytest.raises(ValueError, match="uint8"):
    write_frames(str(tmp_path / "v"), np.zeros((2, 4, 4, 1), np.uint8))


def _config(tmp_path, **dataset):
  cfg = base_config()
  cfg.image_size = 16
  cfg.time.update(n=2, t_out=2)
  cfg.input.update(batch_size=2, eval_batch_size=2, num_workers=0, read_threads=1)
  ann = tmp_path / "ann.txt"
  cfg.dataset.update(name="annotations", root=str(tmp_path), train_annotations=str(ann),
                     eval_annotations=str(ann), **dataset)
  return cfg


def test_pipeline_rgb_frame_folders(tmp_path, first_batches):
  num = 20
  lines = []
  for v in range(3):
    write_frames(str(tmp_path / f"video{v}"), _rgb_clip(num, h=24, w=32))
    lines.append(f"video{v} {num} {v % 2}")
  (tmp_path / "ann.txt").write_text("\n".join(lines) + "\n")
  cfg = _config(tmp_path, source="frames")
  batch = first_batches(cfg, (2, 8, 8, 8, 3))
  # Eval has no jitter: each cell is the frame that clip_indices names.
  want = 10 * transforms.clip_indices(num, 2, 2)
  got = batch["frames"][:, :, 4, 4, 0].astype(int)
  assert np.abs(got - want[None]).max() <= 4


def test_pipeline_depth_frame_folders(tmp_path):
  num = 12
  for v in range(2):
    write_frames(str(tmp_path / f"d{v}"), _depth_clip(num))
  (tmp_path / "ann.txt").write_text(f"d0 {num} 0\nd1 {num} 1\n")
  cfg = _config(tmp_path, source="frames", modality="depth", depth_max=13000.0)
  ds, _ = pipeline.build(cfg, "eval")
  batch = next(iter(ds))
  assert batch["frames"].shape == (2, 8, 8, 8, 3) and batch["frames"].dtype == np.uint8
  assert batch["valid"].all()
  # Depth 1000·(i+1)+... scaled by 255/13000: the frame number survives in the pixels.
  idx = transforms.clip_indices(num, 2, 2)
  got = batch["frames"][0, :, :, :, 0].astype(float).mean(axis=(1, 2))
  assert np.abs(got * 13000 / 255 / 1000 - (idx + 1)).max() < 0.15
