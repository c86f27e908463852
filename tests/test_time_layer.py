"""Tests of the TIME layer: sampling, the two arrangements, the fused preprocessing."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from time_jax import time_layer


def loop_reference(frames: np.ndarray, n: int, arrangement: str) -> np.ndarray:
  """A literal loop-by-loop reading of the paper's Eq. 1-5.

  Spatial (Eq. 1-2): frames are split into N² blocks of T* consecutive frames; grid cell
  i = (row r, col q), row-major, of output frame t holds frame t of block i.
  Temporal (Eq. 3-5): frames are split into T* blocks of N² consecutive frames; block j
  is laid row-major into output frame j, so cell i of frame j holds frame i of block j.
  """
  *lead, total, h, w, c = frames.shape
  t_out = total // (n * n)
  out = np.zeros((*lead, t_out, n * h, n * w, c), frames.dtype)
  for t in range(t_out):
    for i in range(n * n):
      r, q = divmod(i, n)
      if arrangement == "spatial":
        block = frames[..., i * t_out:(i + 1) * t_out, :, :, :]
        src = block[..., t, :, :, :]
      else:
        block = frames[..., t * n * n:(t + 1) * n * n, :, :, :]
        src = block[..., i, :, :, :]
      out[..., t, r * h:(r + 1) * h, q * w:(q + 1) * w, :] = src
  return out


@pytest.mark.parametrize("n,t_out,arrangement,batched", [
    (n, t, a, b) for n, t, a, b in itertools.product(
        [1, 2, 3, 4, 7, 14], [1, 2, 16], time_layer.ARRANGEMENTS, [False, True])
])
def test_arrange_matches_loop_reading(n, t_out, arrangement, batched):
  rng = np.random.default_rng(n * 100 + t_out)
  h, w, c = (3, 2, 2) if n < 7 else (1, 2, 1)  # keep N=14, T*=16 (3136 frames) small
  shape = ((2, 3) if batched else ()) + (t_out * n * n, h, w, c)
  frames = rng.integers(0, 255, shape, dtype=np.uint8)
  got = np.asarray(time_layer.arrange(jnp.asarray(frames), n, arrangement))
  np.testing.assert_array_equal(got, loop_reference(frames, n, arrangement))


def test_arrange_any_dtype_and_jit():
  frames = np.random.default_rng(0).normal(size=(2, 8, 4, 4, 3)).astype(np.float32)
  fn = jax.jit(time_layer.arrange, static_argnums=(1, 2))
  got = fn(frames, 2, "temporal")
  assert got.dtype == jnp.float32 and got.shape == (2, 2, 8, 8, 3)
  np.testing.assert_array_equal(np.asarray(got), loop_reference(frames, 2, "temporal"))


def test_spatial_and_temporal_differ_and_n1_is_identity():
  frames = np.arange(8 * 1 * 1 * 1, dtype=np.int32).reshape(8, 1, 1, 1)
  spatial = np.asarray(time_layer.arrange(frames, 2, "spatial"))[..., 0]
  temporal = np.asarray(time_layer.arrange(frames, 2, "temporal"))[..., 0]
  # T* = 2: spatial frame 0 shows frames 0, 2, 4, 6; temporal frame 0 shows 0, 1, 2, 3.
  np.testing.assert_array_equal(spatial[0], [[0, 2], [4, 6]])
  np.testing.assert_array_equal(temporal[0], [[0, 1], [2, 3]])
  for arrangement in time_layer.ARRANGEMENTS:
    np.testing.assert_array_equal(time_layer.arrange(frames, 1, arrangement), frames)


def test_arrange_errors():
  frames = jnp.zeros((6, 2, 2, 3))
  with pytest.raises(ValueError, match="not a multiple of n\\*n=4"):
    time_layer.arrange(frames, 2, "spatial")
  with pytest.raises(ValueError, match="unknown arrangement 'diagonal'"):
    time_layer.arrange(jnp.zeros((4, 2, 2, 3)), 2, "diagonal")


CASES = [(t, to, n) for t in (1, 2, 5, 7, 15, 16, 17, 31, 64, 100, 301, 1000)
         for to in (1, 2, 4, 16) for n in (1, 2, 3, 4)]


@pytest.mark.parametrize("num_frames,t_out,n", CASES)
def test_frame_indices_properties(num_frames, t_out, n):
  total = t_out * n * n
  idx = time_layer.frame_indices(num_frames, t_out, n)
  assert idx.shape == (total,) and np.issubdtype(idx.dtype, np.integer)
  assert idx.min() >= 0 and idx.max() < num_frames
  assert np.all(np.diff(idx) >= 0), "indices must be in temporal order"
  np.testing.assert_array_equal(idx, time_layer.frame_indices(num_frames, t_out, n))
  if num_frames <= total:
    # Short video: every frame used, repeated evenly (counts differ by at most one).
    counts = np.bincount(idx, minlength=num_frames)
    assert counts.min() >= 1 and counts.max() - counts.min() <= 1
  else:
    # Long video: uniform segments covering it; first and last segments reached.
    seg = num_frames / total
    assert idx[0] < seg and idx[-1] >= num_frames - seg - 1
    assert len(np.unique(idx)) == total
    # Evaluation takes segment centres.
    k = np.arange(total)
    lo, hi = (k * num_frames) // total, ((k + 1) * num_frames) // total
    assert np.all(np.abs(idx - (lo + hi - 1) / 2) <= 0.5)


@pytest.mark.parametrize("num_frames,t_out,n", [(100, 4, 2), (301, 16, 1), (64, 1, 4), (17, 2, 2)])
def test_frame_indices_jitter_stays_in_segment(num_frames, t_out, n):
  total = t_out * n * n
  k = np.arange(total)
  lo, hi = (k * num_frames) // total, ((k + 1) * num_frames) // total
  rng = np.random.default_rng(0)
  draws = np.stack([time_layer.frame_indices(num_frames, t_out, n, rng=rng) for _ in range(200)])
  assert np.all(draws >= lo) and np.all(draws < hi)
  if np.any(hi - lo > 1):  # jitter actually moves indices where segments allow it
    assert len(np.unique(draws[:, np.argmax(hi - lo)])) > 1


def test_frame_indices_errors():
  with pytest.raises(ValueError, match="at least 1"):
    time_layer.frame_indices(0, 4, 2)
  with pytest.raises(ValueError, match="must both be >= 1"):
    time_layer.frame_indices(10, 0, 2)


def _plain_normalise(frames):
  mean = np.asarray(time_layer.IMAGENET_MEAN, np.float32)
  std = np.asarray(time_layer.IMAGENET_STD, np.float32)
  return (frames.astype(np.float32) / 255.0 - mean) / std


def test_preprocess_n1_is_plain_sampling_bit_for_bit():
  frames = np.random.default_rng(1).integers(0, 256, (2, 4, 8, 8, 3), dtype=np.uint8)
  got = time_layer.preprocess_jit(jnp.asarray(frames), n=1, arrangement="spatial")
  mean = np.asarray(time_layer.IMAGENET_MEAN, np.float32)
  std = np.asarray(time_layer.IMAGENET_STD, np.float32)
  plain = jax.jit(lambda x: x.astype(jnp.float32) * (1.0 / (255.0 * std)) + (-mean / std))
  np.testing.assert_array_equal(np.asarray(got), np.asarray(plain(frames)))
  np.testing.assert_allclose(np.asarray(got), _plain_normalise(frames), rtol=1e-5, atol=1e-5)


def test_preprocess_arranges_and_normalises():
  frames = np.random.default_rng(2).integers(0, 256, (2, 8, 4, 4, 3), dtype=np.uint8)
  got = time_layer.preprocess_jit(jnp.asarray(frames), n=2, arrangement="spatial")
  want = _plain_normalise(loop_reference(frames, 2, "spatial"))
  assert got.shape == (2, 2, 8, 8, 3)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_preprocess_depth_statistics_and_dtype():
  frames = np.full((1, 4, 2, 2, 3), 255, np.uint8)
  got = time_layer.preprocess_jit(jnp.asarray(frames), n=2, arrangement="temporal",
                                  mean=(0.5,), std=(0.5,), dtype=jnp.bfloat16)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got, np.float32), 1.0)


def test_preprocess_resizes_when_n_does_not_divide_size():
  # N=3, model size 224: cells of 74 give a 222 grid, resized (bilinear) to 224.
  flat = np.full((1, 9, 74, 74, 3), 128, np.uint8)
  got = time_layer.preprocess_jit(jnp.asarray(flat), n=3, arrangement="spatial",
                                  size=(224, 224))
  assert got.shape == (1, 1, 224, 224, 3)
  want = np.broadcast_to(_plain_normalise(flat[0, 0, 0, 0]), got.shape)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  frames = np.random.default_rng(4).integers(0, 256, (1, 9, 5, 5, 3), dtype=np.uint8)
  got = time_layer.preprocess_jit(jnp.asarray(frames), n=3, arrangement="temporal",
                                  size=(16, 16))
  grid = _plain_normalise(loop_reference(frames, 3, "temporal"))
  want = jax.image.resize(grid, (1, 1, 16, 16, 3), method="bilinear")
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_preprocess_sharded_over_batch_equals_unsharded():
  devices = np.asarray(jax.devices())
  assert len(devices) == 8, "tests/conftest.py sets 8 virtual CPU devices"
  mesh = Mesh(devices, ("data",))
  frames = np.random.default_rng(3).integers(0, 256, (16, 8, 6, 6, 3), dtype=np.uint8)
  fn = lambda x: time_layer.preprocess(x, n=2, arrangement="spatial", size=(14, 14))
  want = jax.jit(fn)(jnp.asarray(frames))
  sharding = NamedSharding(mesh, P("data"))
  got = jax.jit(fn, in_shardings=sharding, out_shardings=sharding)(
      jax.device_put(frames, sharding))
  assert got.sharding.is_equivalent_to(sharding, got.ndim)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
