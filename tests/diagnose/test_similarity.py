"""Weight similarity: 1 against itself, below 1 exactly where a copy was perturbed."""

import csv
import os

import numpy as np
import pytest

from time_jax.diagnose import __main__ as cli
from time_jax import checkpoints
from time_jax.diagnose import similarity

from diagnose_helpers import CLASSES, TINY, init, non_empty_png, save_ported  # pylint: disable=g-bad-import-order


def _rows(path):
  with open(path) as f:
    return {r["name"]: float(r["cosine"]) for r in csv.DictReader(f)}


def test_cosine_matches_a_direct_reading():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
  ref = sum(x * y for x, y in zip(a.flat, b.flat)) / (
      sum(x * x for x in a.flat) ** 0.5 * sum(y * y for y in b.flat) ** 0.5)
  assert similarity.cosine(a, b) == pytest.approx(ref, abs=1e-12)
  assert similarity.cosine(a, -2 * a) == pytest.approx(-1.0)
  assert similarity.cosine(np.zeros(3), np.zeros(3)) == 1.0
  assert similarity.cosine(np.zeros(3), np.ones(3)) == 0.0


def test_self_is_one_and_only_perturbed_tensors_drop(tmp_path):
  _, variables = init("videomae_s", **TINY)
  a = save_ported(tmp_path / "a", "videomae_s", variables, CLASSES)
  perturbed = {"blocks_1/attn/qkv/kernel", "head/bias"}
  rng = np.random.default_rng(1)
  params = similarity.flatten(variables["params"])
  copy = {}
  for name, value in params.items():
    if name in perturbed:
      value = value + rng.normal(scale=0.5, size=value.shape).astype(value.dtype)
    node = copy
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  b = save_ported(tmp_path / "b", "videomae_s", {"params": copy}, CLASSES)

  assert cli.main(["similarity", "--a", a, "--b", a, "--out", str(tmp_path / "self")]) == 0
  same = _rows(tmp_path / "self" / "similarity.csv")
  assert set(same) == set(params)
  assert all(v == pytest.approx(1.0, abs=1e-7) for v in same.values())
  non_empty_png(tmp_path / "self" / "similarity.png")

  assert cli.main(["similarity", "--a", a, "--b", b, "--out", str(tmp_path / "ab")]) == 0
  diff = _rows(tmp_path / "ab" / "similarity.csv")
  below = {k for k, v in diff.items() if v < 1 - 1e-6}
  assert below == perturbed
  non_empty_png(tmp_path / "ab" / "similarity.png")


def test_layer_grouping_and_network_order():
  _, variables = init("videomae_s", **dict(TINY, depth=12))
  out = similarity.compare(variables["params"], variables["params"], group="layer")
  names = [r["name"] for r in out["rows"]]
  assert "blocks_2/attn/qkv" in names and "blocks_10/attn/qkv" in names
  assert names.index("blocks_2/attn/qkv") < names.index("blocks_10/attn/qkv")
  assert names[0].startswith("patch_embed") and names[-1] == "head"
  assert all(r["cosine"] == pytest.approx(1.0) for r in out["rows"])


def test_unmatched_tensors_are_listed_not_compared():
  _, a = init("videomae_s", **TINY)
  _, b = init("videomae_s", num_classes=5, **TINY)
  out = similarity.compare(a["params"], b["params"])
  assert out["mismatched"] and all(m.startswith("head/") for m in out["mismatched"])
  assert not any(r["name"].startswith("head/") for r in out["rows"])


def test_missing_checkpoint_is_one_clear_error(tmp_path, capsys):
  rc = cli.main(["similarity", "--a", str(tmp_path / "nope"), "--b", str(tmp_path),
                 "--out", str(tmp_path / "o")])
  err = capsys.readouterr().err
  assert rc == 2 and "nope" in err and err.count("\n") == 1
  with pytest.raises(checkpoints.CheckpointError, match="not a checkpoint"):
    checkpoints.load(str(tmp_path))
