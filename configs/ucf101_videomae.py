r"""UCF101 split 1 with VideoMAE-B and TIME (N=2, T*=16): the paper's two-phase recipe.

    python -m time_jax.main --config configs/ucf101_videomae.py:pretrain \
        --workdir W/pretrain --config.dataset.root=/data/UCF101
    python -m time_jax.main --config configs/ucf101_videomae.py:finetune \
        --workdir W/finetune --config.dataset.root=/data/UCF101

The fine-tuning phase starts from the pretraining workdir (``checkpoint.init_from``,
relative to its own workdir); point it at a ported checkpoint instead with
``--config.checkpoint.init_from=/path/to/ported`` (``python -m time_jax.port``).
Settings follow VideoMAE's UCF101 scripts: lr = base_lr × batch / 256, AdamW
(0.9, 0.95) pretraining / (0.9, 0.999) fine-tuning, wd 0.05, cosine with warmup,
layer decay 0.75, drop path 0.1 (fine-tuning), mixup 0.8 / cutmix 1.0, smoothing 0.1,
mask ratio 0.75 with normalised pixels; 5 clips × 3 crops at test time.
"""

import ml_collections

from time_jax import config as config_lib


def get_config(phase: str = "finetune") -> ml_collections.ConfigDict:
  """``phase``: ``'pretrain'`` or ``'finetune'``."""
  if phase not in ("pretrain", "finetune"):
    raise ValueError(f"configs/ucf101_videomae.py:{phase}; use ':pretrain' or ':finetune'.")
  c = config_lib.base_config()
  c.image_size = 224
  c.time.update(n=2, t_out=16, arrangement="spatial")
  c.dataset.update(name="ucf101", split="1", source="video", root="/data/UCF101")
  c.input.update(batch_size=64, eval_batch_size=64, num_workers=8, flip=True,
                 crop_scale=(0.08, 1.0), eval_clips=5, eval_crops=3)
  c.model.dtype = "bfloat16"
  c.mesh.update(data=-1, fsdp=1, model=1)
  if phase == "pretrain":
    c.mode = "pretrain"
    c.model.name = "videomae_b_pretrain"
    c.model.kwargs = ml_collections.ConfigDict(dict(drop_path_rate=0.0))
    c.pretrain.update(mask_ratio=0.75, norm_pix_loss=True)
    c.optimizer.update(base_lr=1e-3, lr_batch_divisor=256, b1=0.9, b2=0.95,
                       weight_decay=0.05, warmup_epochs=40.0, min_lr=1e-5,
                       layer_decay=1.0, clip_norm=0.0)
    c.train.update(num_epochs=3200.0, log_every=100, eval_every=0)
    c.checkpoint.update(every_steps=2000, keep=2, keep_best=1)
  else:
    c.mode = "finetune"
    c.model.name = "videomae_b"
    c.model.kwargs = ml_collections.ConfigDict(dict(drop_path_rate=0.1, dropout_rate=0.0))
    c.optimizer.update(base_lr=5e-4, lr_batch_divisor=256, b1=0.9, b2=0.999,
                       weight_decay=0.05, warmup_epochs=5.0, min_lr=1e-6,
                       layer_decay=0.75, clip_norm=0.0)
    c.train.update(num_epochs=100.0, label_smoothing=0.1, mixup_alpha=0.8,
                   cutmix_alpha=1.0, mixup_prob=1.0, mixup_switch_prob=0.5,
                   log_every=100, eval_every=2000)
    c.checkpoint.update(every_steps=2000, keep=2, keep_best=1, init_from="../pretrain")
  return c
