"""time_jax.checkpoints: opening training workdirs and ported folders."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from time_jax import checkpoints
from time_jax import models

from diagnose_helpers import (  # pylint: disable=g-bad-import-order
    CLASSES, FRAMES, IMAGE, TINY, init, save_ported, save_workdir, tiny_config)


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


def test_kind_tells_workdirs_from_ported_folders(tiny_videomae, tmp_path):
  _, variables = init("videomae_s", **TINY)
  ported = save_ported(tmp_path / "p", "videomae_s", variables, CLASSES)
  assert checkpoints.kind(tiny_videomae) == "workdir"
  assert checkpoints.kind(ported) == "ported"
  with pytest.raises(checkpoints.CheckpointError, match="no such checkpoint folder"):
    checkpoints.kind(str(tmp_path / "missing"))


def test_read_variables_gives_batch_stats_of_a_workdir(tmp_path):
  """init_from a ResNet run carries its BatchNorm statistics, not only its params."""
  _, variables = init("resnet50", num_classes=CLASSES, image=32, frames=1)
  variables["batch_stats"] = jax.tree.map(lambda v: v + 0.5, variables["batch_stats"])
  config = tiny_config("resnet50")
  config.model.kwargs = {}
  workdir = save_workdir(tmp_path / "w", config, variables)
  read, metadata = checkpoints.read_variables(workdir)
  assert metadata == {"step": 1}
  jax.tree.map(np.testing.assert_array_equal, read, variables)


def test_from_config_builds_pretrainers_without_head():
  config = tiny_config("videomae_s_pretrain")
  config.pretrain.mask_ratio = 0.5
  model = models.from_config(config, num_classes=7)
  assert model.mask_ratio == 0.5 and model.dtype == jnp.float32
  classifier = models.from_config(tiny_config("videomae_s"), num_classes=7)
  assert classifier.num_classes == 7


def _ema_run(tmp_path, ema_eval=True):
  """A ResNet workdir of a ``train.ema_decay > 0`` run: params of seed 0, BatchNorm
  statistics moved off init, EMA parameters of seed 1."""
  _, variables = init("resnet50", num_classes=CLASSES, image=32, frames=1)
  variables["batch_stats"] = jax.tree.map(lambda v: v + 0.5, variables["batch_stats"])
  _, other = init("resnet50", seed=1, num_classes=CLASSES, image=32, frames=1)
  config = tiny_config("resnet50")
  config.model.kwargs = {}
  config.train.update(ema_decay=0.99, ema_eval=ema_eval)
  workdir = save_workdir(tmp_path / "w", config, variables, ema_params=other["params"])
  return workdir, variables, other["params"]


def test_ema_reads_the_ema_params_and_the_same_batch_stats(tmp_path):
  workdir, variables, ema = _ema_run(tmp_path)
  read, _ = checkpoints.read_variables(workdir, ema=True)
  jax.tree.map(np.testing.assert_array_equal, read["params"], ema)
  jax.tree.map(np.testing.assert_array_equal, read["batch_stats"], variables["batch_stats"])
  raw, _ = checkpoints.read_variables(workdir)
  jax.tree.map(np.testing.assert_array_equal, raw, variables)
  ckpt = checkpoints.load(workdir, ema=True)
  assert ckpt.ema
  jax.tree.map(np.testing.assert_array_equal, ckpt.variables["params"], ema)
  assert not checkpoints.load(workdir).ema  # load's default: the raw parameters


@pytest.mark.parametrize("ema_eval", [True, False])
def test_ema_none_gives_the_params_the_run_evaluated(tmp_path, ema_eval):
  workdir, variables, ema = _ema_run(tmp_path, ema_eval)
  ckpt = checkpoints.load(workdir, ema=None)
  assert ckpt.ema == ema_eval
  want = ema if ema_eval else variables["params"]
  jax.tree.map(np.testing.assert_array_equal, ckpt.variables["params"], want)


def test_ema_of_a_checkpoint_without_one_is_a_clear_error(tiny_videomae, tmp_path):
  with pytest.raises(checkpoints.CheckpointError, match="no EMA parameters.*ema_decay=0"):
    checkpoints.load(tiny_videomae, ema=True)
  assert not checkpoints.load(tiny_videomae, ema=None).ema
  _, variables = init("videomae_s", **TINY)
  ported = save_ported(tmp_path / "p", "videomae_s", variables, CLASSES)
  with pytest.raises(checkpoints.CheckpointError, match="ported weights have no EMA"):
    checkpoints.read_variables(ported, ema=True)
  assert not checkpoints.load(ported, ema=None).ema
