"""VideoMAE reconstructions: masked counts per ratio, visible patches kept, files."""

import json

import numpy as np
import pytest

from time_jax.diagnose import __main__ as cli
from time_jax import checkpoints
from time_jax.diagnose import inputs
from time_jax.diagnose import reconstruct

from diagnose_helpers import FRAMES, IMAGE, non_empty_png  # pylint: disable=g-bad-import-order


def test_masked_patches_grey_and_visible_patches_kept(tiny_pretrainer, video):
  ckpt = checkpoints.load(tiny_pretrainer)
  cells = inputs.read_views(video, ckpt.config)[0]
  out = reconstruct.reconstruct(ckpt, cells, [0.5, 0.75])
  frames = out["frames"]
  assert frames.shape == (FRAMES, IMAGE, IMAGE, 3)
  patches = (IMAGE // 8) ** 2
  for r in out["ratios"]:
    assert r["masked_tokens"] == FRAMES * round(r["ratio"] * patches)
    # 8x8 patches (tubelet 1): grey (0.5 everywhere) where masked, the input elsewhere.
    p = r["masked"].reshape(FRAMES, IMAGE // 8, 8, IMAGE // 8, 8, 3)
    grey = np.all(p == 0.5, axis=(2, 4, 5))
    assert grey.sum() == r["masked_tokens"]
    keep = ~grey[:, :, None, :, None, None] & np.ones_like(p, bool)
    q = r["reconstruction"].reshape(p.shape)
    f = frames.reshape(p.shape)
    np.testing.assert_allclose(q[keep], f[keep], atol=1e-6)
    assert np.isfinite(r["loss"])


def test_cli_writes_png_and_table(tiny_pretrainer, video, tmp_path):
  rc = cli.main(["reconstruct", "--checkpoint", tiny_pretrainer, "--video", video,
                 "--mask-ratios", "0.5,0.75,0.9", "--out", str(tmp_path)])
  assert rc == 0
  non_empty_png(tmp_path / "reconstruct.png")
  with open(tmp_path / "reconstruct.json") as f:
    assert [r["ratio"] for r in json.load(f)["ratios"]] == [0.5, 0.75, 0.9]


def test_classifier_checkpoint_and_bad_ratio_are_clear_errors(tiny_videomae, video,
                                                              tmp_path, capsys):
  assert cli.main(["reconstruct", "--checkpoint", tiny_videomae, "--video", video,
                   "--out", str(tmp_path)]) == 2
  assert "pretraining checkpoint" in capsys.readouterr().err
  assert cli.main(["reconstruct", "--checkpoint", tiny_videomae, "--video", video,
                   "--mask-ratios", "1.5", "--out", str(tmp_path)]) == 2
  assert "(0, 1)" in capsys.readouterr().err
