"""Attention maps: softmax rows sum to 1, maps on the patch grid, class maps, PNGs."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from time_jax.diagnose import __main__ as cli
from time_jax.diagnose import attention
from time_jax import checkpoints
from time_jax.diagnose import inputs

from diagnose_helpers import (FRAMES, IMAGE, TINY, init, non_empty_png,  # pylint: disable=g-bad-import-order
                              save_workdir, tiny_config)

GRID = (IMAGE // 8, IMAGE // 8)


def _clip(seed=0, batch=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, FRAMES, IMAGE, IMAGE, 3)),
                     jnp.float32)


def test_videomae_rows_sum_to_one_and_maps_fit_the_grid(tiny_videomae):
  ckpt = checkpoints.load(tiny_videomae)
  res = attention.analyse(ckpt, _clip(batch=2))
  assert len(res["weights"]) == TINY["depth"]
  tokens = FRAMES * GRID[0] * GRID[1]  # tubelet 1
  for w in res["weights"]:
    assert w.shape == (2, TINY["num_heads"], tokens, tokens)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
  assert res["grid"] == GRID
  assert res["maps"].shape == (TINY["depth"], 2, FRAMES, *GRID)
  # mean over queries of rows that sum to 1: each clip's map sums to 1
  np.testing.assert_allclose(res["maps"].sum(axis=(2, 3, 4)), 1.0, atol=1e-5)
  # layer 0, clip 1, token (t=1, row 2, col 3) read straight from the weights
  w = res["weights"][0][1]
  k = 1 * GRID[0] * GRID[1] + 2 * GRID[1] + 3
  assert res["maps"][0, 1, 1, 2, 3] == pytest.approx(w[:, :, k].mean(), abs=1e-7)


def test_class_map_sums_to_the_head_on_mean_features(tiny_videomae):
  ckpt = checkpoints.load(tiny_videomae)
  x = _clip(1)
  res = attention.analyse(ckpt, x)
  label = int(res["logits"][0].argmax())
  cm = res["class_map"]
  assert cm.shape == (1, FRAMES, *GRID)
  # the scores are affine in the normalised tokens: their mean is head(mean of normed)
  model = ckpt.build_model()
  _, inter = attention.run_model(model, ckpt.variables, x)
  feats = np.asarray(inter["blocks_1"]["features"][0], np.float64)[0]
  p = ckpt.variables["params"]
  normed = attention._layer_norm(feats, p["fc_norm"])  # pylint: disable=protected-access
  want = normed.mean(0) @ p["head"]["kernel"][:, label] + p["head"]["bias"][label]
  assert cm.mean() == pytest.approx(want, rel=1e-5)


def test_cli_writes_pngs_and_tables(tiny_videomae, video, tmp_path):
  assert cli.main(["attention", "--checkpoint", tiny_videomae, "--video", video,
                   "--out", str(tmp_path)]) == 0
  for name in ("attention_layers.png", "overlay.png", "class_map.png"):
    non_empty_png(tmp_path / name)
  with open(tmp_path / "attention.json") as f:
    out = json.load(f)
  assert out["grid"] == list(GRID) and len(out["layers"]) == TINY["depth"]
  assert out["predicted"]["name"] in ("left", "right", "still")
  with open(tmp_path / "attention.csv") as f:
    assert len(f.readlines()) == 1 + TINY["depth"] * FRAMES * GRID[0] * GRID[1]


def test_pretrainer_is_refused(tiny_pretrainer, video, tmp_path, capsys):
  assert cli.main(["attention", "--checkpoint", tiny_pretrainer, "--video", video,
                   "--out", str(tmp_path)]) == 2
  assert "classifier" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
  kw = dict(embed_dim=32, depth=2, num_heads=2)  # 16² patches: a 4x4 grid at 64²
  _, variables = init("vit_ti16", image=64, **kw)
  # a non-zero head so the class map is not constant
  variables["params"]["head"]["kernel"] = np.random.default_rng(0).normal(
      size=variables["params"]["head"]["kernel"].shape).astype(np.float32)
  config = tiny_config("vit_ti16")
  config.model.kwargs = kw
  config.image_size = 64
  return save_workdir(tmp_path_factory.mktemp("ckpt") / "vit", config, variables)


def test_vit_class_token_rows_per_frame(tiny_vit, video, tmp_path):
  ckpt = checkpoints.load(tiny_vit)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, FRAMES, 64, 64, 3)), jnp.float32)
  res = attention.analyse(ckpt, x)
  grid = (4, 4)
  p = grid[0] * grid[1]
  for w in res["weights"]:
    assert w.shape == (2 * FRAMES, 2, 1 + p, 1 + p)  # frames as images
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
  assert res["maps"].shape == (2, 2, FRAMES, *grid)
  # clip 1, frame 0 is image 2: its class-token row over the patches, head-averaged
  w = res["weights"][1][2 * 1 + 0]
  np.testing.assert_allclose(res["maps"][1, 1, 0].ravel(), w[:, 0, 1:].mean(0), atol=1e-7)
  assert np.all(res["maps"].sum(axis=(3, 4)) < 1)  # the class token keeps some weight
  assert res["class_map"].shape == (2, FRAMES, *grid)
  assert cli.main(["attention", "--checkpoint", tiny_vit, "--video", video,
                   "--out", str(tmp_path)]) == 0
  non_empty_png(tmp_path / "overlay.png")
