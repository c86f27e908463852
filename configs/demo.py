"""Demo: a tiny VideoMAE on one 64² TIME grid (N=2: 4 frames in 2×2) of the synthetic
temporal dataset, on CPU in a few minutes. Compare with ``configs/demo_n1.py`` (N=1).

    python -m time_jax.main --config configs/demo.py --workdir /tmp/demo

The synthetic dataset's classes come in pairs that differ only in temporal order, so a
single frame (N=1) cannot tell a pair apart and TIME's grid can. The data is generated
into ``dataset.root`` on first use (`time_jax.data.synthetic`).
"""

import os

import ml_collections

from time_jax import config as config_lib
from time_jax.data import synthetic

ROOT = os.environ.get("TIME_JAX_DEMO_DATA", os.path.expanduser("~/.cache/time_jax/synthetic"))
VIDEOS_PER_CLASS = 40


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """``arg``: the grid side N (default 2)."""
  n = int(arg or 2)
  synthetic.ensure_synthetic(ROOT, videos_per_class=VIDEOS_PER_CLASS)
  c = config_lib.base_config()
  c.mode = "finetune"
  c.seed = 0
  c.image_size = 64
  c.time.update(n=n, t_out=1, arrangement="spatial")
  c.dataset.update(name="annotations", source="video", root=ROOT,
                   train_annotations=os.path.join(ROOT, "train.txt"),
                   eval_annotations=os.path.join(ROOT, "test.txt"))
  if os.path.isfile(os.path.join(ROOT, "classes.txt")):
    c.dataset.classes_file = os.path.join(ROOT, "classes.txt")
  c.input.update(batch_size=32, eval_batch_size=32, flip=False, crop_scale=(0.6, 1.0),
                 read_threads=2, eval_clips=2)
  c.model.name = "videomae_s"
  c.model.dtype = "float32"
  c.model.kwargs = ml_collections.ConfigDict(dict(
      patch_size=8, tubelet_size=1, embed_dim=96, depth=4, num_heads=4,
      drop_path_rate=0.0, init_scale=1.0))
  c.optimizer.update(base_lr=1e-3, lr_batch_divisor=0, warmup_epochs=2.0, min_lr=1e-5,
                     weight_decay=0.05, layer_decay=1.0, clip_norm=1.0)
  c.train.update(num_epochs=40.0, label_smoothing=0.1, mixup_alpha=0.0, cutmix_alpha=0.0,
                 log_every=20, eval_every=0)
  c.mesh.update(data=-1, fsdp=1, model=1)
  c.checkpoint.update(every_steps=200, keep=1, keep_best=0)
  return c
