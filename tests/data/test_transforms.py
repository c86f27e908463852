"""Clip transforms: one draw for all frames, crop geometry against numpy, depth scaling."""

import numpy as np
import pytest

from time_jax import time_layer
from time_jax.data import reference
from time_jax.data import transforms as T


def _clip(t=4, h=24, w=32, seed=0):
  """A random RGB clip whose frames differ: frame k = base + 10·k (no overflow)."""
  base = np.random.default_rng(seed).integers(0, 200, (h, w, 3), dtype=np.uint8)
  return np.stack([base + 10 * k for k in range(t)]).astype(np.uint8)


def test_flip_flips_every_frame():
  clip = _clip()
  plain = T.apply_view(clip, T.View((0, 0, 32, 24)), (24, 32))
  flipped = T.apply_view(clip, T.View((0, 0, 32, 24), flip=True), (24, 32))
  np.testing.assert_array_equal(plain, clip)  # the full box at scale 1 is the identity
  np.testing.assert_array_equal(flipped, clip[:, :, ::-1])


def test_one_random_draw_is_applied_to_all_frames():
  # Frames differ only by +10·k, and the warp is linear, so with one shared view the
  # outputs differ by exactly +10·k too (up to rounding); per-frame draws would not.
  clip = _clip(t=6, h=60, w=80)
  for seed in range(8):
    rng = np.random.default_rng(seed)
    view = T.train_view(rng, 60, 80, scale=(0.2, 1.0), flip=True, rotation=0.0)
    out = T.apply_view(clip, view, (14, 14)).astype(int)
    for k in range(6):
      assert np.abs(out[k] - out[0] - 10 * k).max() <= 1, (seed, k)


def test_train_view_flip_switch_and_rotation_range():
  flips = [T.train_view(np.random.default_rng(s), 60, 80, flip=True).flip
           for s in range(40)]
  assert 5 < sum(flips) < 35
  assert not any(T.train_view(np.random.default_rng(s), 60, 80, flip=False).flip
                 for s in range(40))
  angles = [T.train_view(np.random.default_rng(s), 60, 80, rotation=7.0).angle
            for s in range(40)]
  assert max(np.abs(angles)) <= 7.0 and np.std(angles) > 1.0
  assert T.train_view(np.random.default_rng(0), 60, 80).angle == 0.0


def test_rotation_turns_content_counter_clockwise():
  img = np.zeros((1, 8, 8, 1), np.uint8)
  img[0, 0, :4] = 200
  out = T.apply_view(img, T.View((0, 0, 8, 8), angle=90.0), (8, 8))
  assert np.abs(out[0, ..., 0].astype(int) - np.rot90(img[0, ..., 0])).max() <= 1


def test_random_resized_crop_bounds():
  for s in range(200):
    rng = np.random.default_rng(s)
    x0, y0, w, h = T.random_resized_crop_box(rng, 120, 160, (0.3, 0.8), (0.5, 2.0))
    assert 0 <= x0 and x0 + w <= 160 + 1e-9 and 0 <= y0 and y0 + h <= 120 + 1e-9
    assert 0.3 - 1e-9 <= w * h / (120 * 160) <= 0.8 + 1e-9
    assert 0.5 - 1e-9 <= w / h <= 2.0 + 1e-9
  # An impossible ratio falls back to the largest centred box with the ratio clamped.
  x0, y0, w, h = T.random_resized_crop_box(np.random.default_rng(0), 100, 100,
                                           (1.0, 1.0), (3.0, 4.0))
  assert (w, h) == (100, pytest.approx(100 / 3)) and x0 == 0


def test_crop_and_downscale_match_a_numpy_block_mean():
  clip = _clip(t=2, h=40, w=64)
  # Crop x in [8, 40), y in [4, 20) at scale 1: exactly that window.
  out = T.apply_view(clip, T.View((8, 4, 32, 16)), (16, 32))
  np.testing.assert_array_equal(out, clip[:, 4:20, 8:40])
  # Scale 1/4: box-reduce by 4, equal to the block mean of the window.
  out = T.apply_view(clip, T.View((0, 8, 64, 32)), (8, 16))
  ref = clip[:, 8:40, :].reshape(2, 8, 4, 16, 4, 3).astype(float).mean(axis=(2, 4))
  assert np.abs(out - ref).max() <= 1.0


def test_eval_view_centre_and_three_crops():
  h, w = 120, 160
  # Short side to 32 / 0.875 ... f = (28 / 0.875) / 120, crop 28 -> 105 original pixels.
  v = T.eval_view(h, w, (28, 28), crop_fraction=0.875)
  assert v.box == pytest.approx((27.5, 7.5, 105, 105))
  xs = [T.eval_view(h, w, (28, 28), crop_fraction=0.875, crop=c, num_crops=3).box[0]
        for c in range(3)]
  assert xs == pytest.approx([0, 27.5, 55])
  ys = [T.eval_view(w, h, (28, 28), crop_fraction=0.875, crop=c, num_crops=3).box[1]
        for c in range(3)]  # portrait: crops move along the height
  assert ys == pytest.approx([0, 27.5, 55])
  assert not v.flip and v.angle == 0


def test_depth_scaling_fixed_max_and_per_clip_range():
  d = np.array([0, 1000, 2000, 4000, 9000], np.uint16).reshape(1, 1, 5, 1)
  np.testing.assert_array_equal(T.depth_to_uint8(d, 4000.0).ravel(),
                                [0, 64, 128, 255, 255])
  # Per-clip: one range over all frames (min in frame 0, max in frame 1).
  clip = np.stack([np.full((2, 2, 1), 500, np.uint16), np.full((2, 2, 1), 1500, np.uint16)])
  clip[0, 0, 0] = 1000
  out = T.depth_to_uint8(clip, 0.0)
  assert out[0, 1, 1, 0] == 0 and out[1, 0, 0, 0] == 255 and out[0, 0, 0, 0] == 128
  assert T.depth_to_uint8(np.full((1, 2, 2, 1), 7.0, np.float32)).max() == 0


def test_prepare_depth_gives_three_equal_channels():
  d = np.random.default_rng(0).integers(0, 5000, (3, 30, 40, 1)).astype(np.uint16)
  out = T.prepare(d, T.View((0, 0, 40, 30)), (15, 20), depth=True, depth_max=5000.0)
  assert out.shape == (3, 15, 20, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out[..., 0], out[..., 2])
  with pytest.raises(ValueError, match="modality='depth'"):
    T.prepare(d, T.View((0, 0, 40, 30)), (15, 20))


def test_clip_indices_single_clip_is_frame_indices_and_k_clips_share_segments():
  np.testing.assert_array_equal(T.clip_indices(100, 2, 2),
                                time_layer.frame_indices(100, 2, 2))
  k = np.arange(8)
  start, end = k * 100 // 8, (k + 1) * 100 // 8
  clips = [T.clip_indices(100, 2, 2, clip=c, num_clips=3) for c in range(3)]
  for c in clips:
    assert np.all(start <= c) and np.all(c < end)
  assert np.all(clips[0] < clips[1]) and np.all(clips[1] < clips[2])
  # Short videos repeat frames; every clip is then the same.
  np.testing.assert_array_equal(T.clip_indices(5, 2, 2, clip=2, num_clips=3),
                                time_layer.frame_indices(5, 2, 2))


def test_full_short_side_test_crops_as_videomae():
  """``eval_crop_fraction=1``: VideoMAE's test crops, the short side resized to the
  model's size, three squares along the long side covering it (kinetics.py 'test')."""
  for h, w in ((240, 320), (320, 240)):
    views = [T.eval_view(h, w, (112, 112), crop_fraction=1.0, crop=c, num_crops=3)
             for c in range(3)]
    for v in views:
      assert v.box[2] == v.box[3] == min(h, w)  # the whole short side, square
    along = [v.box[0] if w > h else v.box[1] for v in views]
    across = [v.box[1] if w > h else v.box[0] for v in views]
    # spatial_step = (long - short) / 2; crops start at 0, step and 2 step
    assert along == [0.0, (max(h, w) - min(h, w)) / 2, max(h, w) - min(h, w)]
    assert across == [0.0, 0.0, 0.0]
  frames = np.zeros((1, 240, 320, 3), np.uint8)
  frames[:, :, :20] = 200  # only the left crop sees this band
  crops = [T.prepare(frames, T.eval_view(240, 320, (8, 8), crop_fraction=1.0, crop=c,
                                         num_crops=3), (8, 8)) for c in range(3)]
  assert crops[0][0, :, 0].min() > 100 and crops[1].max() == crops[2].max() == 0


def test_dense_sampling_follows_videomaes_formulas():
  """Hand-computed from the official code (16 frames, stride 4: a 64-frame window)."""
  class Fixed:  # the draw numpy would make: np.random.randint(lo, hi) -> value
    def __init__(self, value):
      self.value, self.asked = value, None

    def integers(self, lo, hi=None):
      self.asked = (lo, hi)
      return self.value

  # Fine-tuning (VideoClsDataset): end ~ U[64, T), linspace(end - 64, end, 16), clipped
  # to end - 1, truncated: steps of 64 / 15.
  rng = Fixed(70)
  np.testing.assert_array_equal(
      T.dense_train_indices(100, 16, 4, rng),
      [6, 10, 14, 18, 23, 27, 31, 35, 40, 44, 48, 52, 57, 61, 65, 69])
  assert rng.asked == (64, 100)
  # A 40-frame video: linspace(0, 40, 10), then 40 repeated, clipped to 39.
  np.testing.assert_array_equal(T.dense_train_indices(40, 16, 4, Fixed(0)),
                                [0, 4, 8, 13, 17, 22, 26, 31, 35] + [39] * 7)
  # Pretraining (VideoMAE dataset): start ~ U[0, T - 64], every 4th frame; a step that
  # would pass the second-last frame repeats the frame.
  rng = Fixed(5)
  np.testing.assert_array_equal(T.dense_pretrain_indices(100, 16, 4, rng),
                                np.arange(5, 69, 4))
  assert rng.asked == (37, None)
  np.testing.assert_array_equal(T.dense_pretrain_indices(30, 16, 4, Fixed(0)),
                                [0, 4, 8, 12, 16, 20, 24] + [28] * 9)
  np.testing.assert_array_equal(T.dense_pretrain_indices(64, 16, 4, Fixed(0)),
                                [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60])
  # Test: every 4th frame (25 of 100), 5 windows of 16 start at int(k · 9 / 4).
  every = np.arange(0, 100, 4)
  for k, start in enumerate((0, 2, 4, 6, 9)):
    np.testing.assert_array_equal(T.dense_eval_indices(100, 16, 4, k, 5),
                                  every[start:start + 16])
  # A short video pads with its last frame; all windows are then the same.
  for k in range(5):
    np.testing.assert_array_equal(T.dense_eval_indices(30, 16, 4, k, 5),
                                  [0, 4, 8, 12, 16, 20, 24] + [28] * 9)
  # One clip: the middle window.
  np.testing.assert_array_equal(T.dense_eval_indices(100, 16, 4, 0, 1), every[4:20])
  # The sampler: dense when asked, the pretraining rule in pretrain mode.
  s = T.Sampling(rule="dense", t_out=4, n=2)
  assert s.train(100, np.random.default_rng(0)).shape == (16,)
  np.testing.assert_array_equal(s.eval(100, 1, 5), T.dense_eval_indices(100, 16, 4, 1, 5))
  p = T.Sampling(rule="dense", t_out=4, n=2, pretrain=True)
  assert set(np.diff(p.train(200, np.random.default_rng(0))).tolist()) == {4}


@pytest.mark.parametrize("rotation", [0.0, 15.0])
def test_warp_matches_pil_on_real_looking_frames(rotation):
  """OpenCV's warp equals PIL's within a grey level on average, view by view (crop,
  scale, flip, rotation), on generated footage with natural-image statistics."""
  from time_jax.data import scenes  # pylint: disable=g-import-not-at-top
  clip = scenes.scene_clip(np.random.default_rng(1), num_frames=4)
  rng = np.random.default_rng(2)
  for _ in range(12):
    view = T.train_view(rng, 240, 320, scale=(0.08, 1.0), flip=True, rotation=rotation)
    for size in ((112, 112), (56, 56)):
      fast = T.apply_view(clip, view, size).astype(int)
      ref = reference.apply_view(clip, view, size).astype(int)
      diff = np.abs(fast - ref)
      # Rounding (OpenCV interpolates in fixed point) and the last partial block of a
      # box reduction (PIL averages fewer pixels, OpenCV repeats the edge) differ.
      assert diff.mean() <= 1.0, (view, size, diff.mean())
      assert (diff > 3).mean() < 0.002, (view, size, (diff > 3).mean())


def test_multiscale_crops_take_the_official_sizes_and_positions():
  # 240x320 frames, scales 1, .875, .75, .66 of the short side: sides 240, 210, 180, 158;
  # width and height at most one scale apart; 13 fixed positions on a 4x4 step grid.
  sides = [240, 210, 180, 158]
  allowed = {(sides[j], sides[i]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
  seen_sizes, seen_pos = set(), set()
  for s in range(600):
    x0, y0, w, h = T.multiscale_crop_box(np.random.default_rng(s), 240, 320, (112, 112))
    assert (w, h) in allowed
    ws, hs = (320 - w) // 4, (240 - h) // 4
    assert x0 % max(ws, 1) == 0 and y0 % max(hs, 1) == 0
    assert 0 <= x0 <= 320 - w and 0 <= y0 <= 240 - h
    seen_sizes.add((w, h))
    if ws and hs:  # both steps > 0: the position on the grid is readable
      seen_pos.add((x0 // ws, y0 // hs))
  assert seen_sizes == allowed and len(allowed) == 10
  assert seen_pos == {(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0),
                      (1, 1), (3, 1), (1, 3), (3, 3)}
  # A side within 3 pixels of the output snaps to it (TSN's rule): 0.75 * 150 = 112.
  sizes = {T.multiscale_crop_box(np.random.default_rng(s), 150, 200, (114, 114))[2:]
           for s in range(300)}
  assert all(114 in (w, h) or (w, h) in {(150, 150), (150, 131), (131, 150), (131, 131),
                                         (131, 99), (99, 131), (99, 99)} for w, h in sizes)
  view = T.train_view(np.random.default_rng(0), 240, 320, crop_mode="multiscale",
                      out_size=(112, 112), flip=False)
  assert (view.box[2], view.box[3]) in allowed and not view.flip
