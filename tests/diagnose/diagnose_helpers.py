"""Tiny models, checkpoints and videos for the diagnostics tests."""

import json
import os

import av
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from time_jax import config as config_lib
from time_jax import models
from time_jax.port import common
from time_jax import checkpoints
from time_jax.train import state as state_lib

# A VideoMAE small enough for 2 CPU cores: 32² clips of 2 frames, 8² patches.
TINY = dict(patch_size=8, tubelet_size=1, embed_dim=32, depth=2, num_heads=2)
IMAGE, FRAMES, CLASSES = 32, 2, 3


def save_ported(path, name, variables, num_classes, **extra):
  """A ported-weights folder as `python -m time_jax.port` writes it."""
  return common.save(variables, str(path), dict(model=name, num_classes=num_classes,
                                                source="test", checkpoint="", **extra))


def tiny_config(name="videomae_s", n=2, **kwargs):
  """The config a training run of the tiny model would have written."""
  c = config_lib.base_config()
  c.image_size = IMAGE
  c.time.update(n=n, t_out=FRAMES, arrangement="spatial")
  c.model.name = name
  c.model.dtype = "float32"
  c.model.kwargs = dict(TINY, **kwargs)
  c.mode = "pretrain" if name.endswith("_pretrain") else "finetune"
  return c


def save_workdir(path, config, variables, class_names=None, ema_params=None):
  """A training workdir (config.json, class_names.json, one Orbax step) holding
  ``variables`` (and ``ema_params``, the EMA of a ``train.ema_decay > 0`` run), in the
  layout `time_jax.train.loop` writes."""
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  if class_names is not None:
    with open(os.path.join(path, "class_names.json"), "w") as f:
      json.dump(class_names, f)
  state = state_lib.TrainState(
      step=jnp.asarray(1, jnp.int32), params=variables["params"],
      batch_stats=variables.get("batch_stats", {}), opt_state={},
      rng=jax.random.PRNGKey(0), ema_params={} if ema_params is None else ema_params)
  config = config.copy_and_resolve_references()
  config.checkpoint.update(async_save=False, keep_best=0)
  ckpt = checkpoints.Checkpointer(str(path), config)
  ckpt.save(1, state, None)
  ckpt.close()
  return str(path)


def init(name, seed=0, num_classes=CLASSES, image=IMAGE, frames=FRAMES, **kwargs):
  """``(model, numpy variables)`` of a tiny model."""
  model = models.create(name, num_classes=num_classes, image_size=image,
                        num_frames=frames, dtype=jnp.float32, **kwargs)
  x = jnp.zeros((1, frames, image, image, 3))
  args = (x,)
  if name.endswith("_pretrain"):
    from time_jax.models import videomae  # pylint: disable=g-import-not-at-top
    args += (videomae.tube_mask(jax.random.PRNGKey(0), 1, frames, image,
                                model.patch_size, model.tubelet_size, model.mask_ratio),)
  variables = model.init({"params": jax.random.PRNGKey(seed)}, *args, train=False)
  return model, jax.tree.map(np.asarray, dict(nn.unbox(variables)))


def write_video(path, num_frames=16, size=48, seed=0):
  """An mp4 of a bright square moving left to right over noise."""
  rng = np.random.default_rng(seed)
  with av.open(str(path), "w") as out:
    stream = out.add_stream("libx264", rate=8)
    stream.width = stream.height = size
    stream.pix_fmt = "yuv420p"
    for t in range(num_frames):
      img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
      x = int(t * (size - 12) / max(num_frames - 1, 1))
      img[size // 3:size // 3 + 12, x:x + 12] = (250, 200, 40)
      for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        out.mux(packet)
    for packet in stream.encode():
      out.mux(packet)
  return str(path)



def non_empty_png(path):
  assert os.path.isfile(path), path
  assert os.path.getsize(path) > 1000, path
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
