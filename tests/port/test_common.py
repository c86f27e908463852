"""Tests of weight-file reading, key checking and ported-checkpoint I/O."""

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from time_jax.port import common


def test_reads_every_format_the_same(tmp_path):
  state = {"conv.weight": torch.randn(4, 3, 3, 3), "fc.bias": torch.randn(5)}
  want = {k: v.numpy() for k, v in state.items()}
  save_file(state, tmp_path / "w.safetensors")
  torch.save(state, tmp_path / "w.bin")
  # Official VideoMAE / DDP style: wrapped in 'model', keys prefixed with 'module.'.
  torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 7},
             tmp_path / "w.pth")
  np.savez(tmp_path / "w.npz", **want)
  os.makedirs(tmp_path / "hf")
  save_file(state, tmp_path / "hf" / "model.safetensors")
  for name in ("w.safetensors", "w.bin", "w.pth", "w.npz", "hf"):
    got = common.load_weights(str(tmp_path / name))
    assert sorted(got) == sorted(want), name
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])


def test_bfloat16_is_widened(tmp_path):
  torch.save({"w": torch.ones(3, dtype=torch.bfloat16)}, tmp_path / "w.pt")
  got = common.load_weights(str(tmp_path / "w.pt"))
  assert got["w"].dtype == np.float32


class _Evil:
  def __reduce__(self):
    return (os.system, ("echo pwned",))


def test_pickled_code_never_runs(tmp_path):
  path = tmp_path / "evil.pth"
  with open(path, "wb") as f:
    pickle.dump({"w": _Evil()}, f)
  with pytest.raises(common.WeightFileError, match="weights_only=True"):
    common.load_weights(str(path))


def test_bad_paths_and_formats(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    common.load_weights(str(tmp_path / "missing.pth"))
  (tmp_path / "w.h5").write_bytes(b"x")
  with pytest.raises(ValueError, match="unknown weight format"):
    common.load_weights(str(tmp_path / "w.h5"))
  os.makedirs(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    common.load_weights(str(tmp_path / "empty"))


def test_check_keys_lists_every_problem():
  expected = {"a": (2,), "b": (3, 3), "c": (1,)}
  state = {"a": np.zeros(2), "b": np.zeros((3, 4)), "d": np.zeros(1), "buf": np.zeros(1)}
  with pytest.raises(common.WeightMismatchError) as e:
    common.check_keys(expected, state, source="x.pth", ignore=["buf"])
  msg = str(e.value)
  assert "missing keys (1):\n    c" in msg
  assert "unexpected keys (1):\n    d" in msg
  assert "b: file (3, 4) vs model (3, 3)" in msg and "buf" not in msg
  common.check_keys({"a": (2,)}, {"a": np.zeros(2)})  # fits: no error


def test_save_restore_round_trip(tmp_path):
  variables = {"params": {"blocks_0": {"kernel": np.random.rand(2, 3).astype(np.float32)}},
               "batch_stats": {"bn": {"mean": np.zeros(4, np.float32)}}}
  out = common.save(variables, str(tmp_path / "ck"), {"model": "vit_s16", "num_classes": 3})
  got, meta = common.restore(out)
  assert meta == {"model": "vit_s16", "num_classes": 3}
  np.testing.assert_array_equal(got["params"]["blocks_0"]["kernel"],
                                variables["params"]["blocks_0"]["kernel"])
  np.testing.assert_array_equal(got["batch_stats"]["bn"]["mean"], np.zeros(4))
  with pytest.raises(FileNotFoundError, match="not a ported checkpoint"):
    common.restore(str(tmp_path))


@pytest.mark.parametrize("name", ["w.safetensors", "w.npz", "w.pth"])
def test_truncated_files_name_the_file_and_what_to_do(tmp_path, name):
  state = {"conv.weight": torch.randn(64, 3, 3, 3), "fc.bias": torch.randn(5)}
  path = tmp_path / name
  if name.endswith(".safetensors"):
    save_file(state, path)
  elif name.endswith(".npz"):
    np.savez(path, **{k: v.numpy() for k, v in state.items()})
  else:
    torch.save(state, path)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(common.WeightFileError) as e:
    common.load_weights(str(path))
  assert str(path) in str(e.value) and "download it again" in str(e.value)
  assert "\n" not in str(e.value)


def test_model_options_and_same_variables():
  from time_jax import models  # pylint: disable=g-import-not-at-top
  model = models.create("videomae_s", num_classes=3, embed_dim=64, depth=2,
                        use_mean_pooling=False)
  assert common.model_options(model, "videomae_s") == dict(
      embed_dim=64, depth=2, use_mean_pooling=False, init_values=0.0)
  a = {"params": {"x": np.zeros(2, np.float32)}}
  assert common.same_variables(a, {"params": {"x": np.zeros(2, np.float32)}}) == []
  assert common.same_variables(a, {"params": {"x": np.ones(2, np.float32)}}) == [
      "params/x: values differ"]
  assert common.same_variables(a, {"params": {}}) == ["params/x: not read back"]
