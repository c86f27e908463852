"""Opening training workdirs and ported folders for diagnostics and inference."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from time_jax.diagnose import checkpoints

from diagnose_helpers import CLASSES, FRAMES, IMAGE, TINY, init, save_ported  # pylint: disable=g-bad-import-order


def test_workdir_gives_its_variables_config_and_class_names(tiny_videomae):
  ckpt = checkpoints.load(tiny_videomae)
  _, variables = init("videomae_s", **TINY)
  jax.tree.map(np.testing.assert_array_equal, ckpt.variables["params"], variables["params"])
  assert ckpt.kind == "workdir" and ckpt.class_names == ["left", "right", "still"]
  assert ckpt.config.time.n == 2 and ckpt.config.image_size == IMAGE
  model = ckpt.build_model()
  logits = model.apply(ckpt.variables, jnp.zeros((1, FRAMES, IMAGE, IMAGE, 3)))
  assert logits.shape == (1, CLASSES)


def test_missing_class_names_fall_back_to_indices(tiny_videomae, tmp_path):
  _, variables = init("videomae_s", **TINY)
  ported = checkpoints.load(save_ported(tmp_path / "p", "videomae_s", variables, CLASSES),
                            n=1, t_out=4, image_size=64)
  assert ported.kind == "ported" and ported.class_names == ["class_0", "class_1", "class_2"]
  assert (ported.config.time.n, ported.config.time.t_out, ported.config.image_size) == (1, 4, 64)


def test_workdir_without_checkpoint_is_an_error(tmp_path):
  os.makedirs(tmp_path / "checkpoints")
  with open(tmp_path / "config.json", "w") as f:
    json.dump({"model": {"name": "videomae_s"}}, f)
  with pytest.raises(checkpoints.CheckpointError, match="no saved checkpoint"):
    checkpoints.load(str(tmp_path))
