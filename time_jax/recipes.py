r"""The experiment recipes: the paper's (`videomae`, `image_model`) and the demo.

A config file under ``configs/`` names one of these; a recipe returns the full
``ConfigDict`` and does nothing else (it writes no file and generates no data).

*When Spatial meets Temporal in Action Recognition* (Chen, Wang, Chen, Gedeon, Koniusz;
arXiv 2411.15284) trains three backbones with the TIME layer in front:

* VideoMAE ViT-B/16, pretrained from scratch on the target dataset (masked
  autoencoding), then fine-tuned; or fine-tuned from Kinetics-400 VideoMAE weights;
* ResNet-50 and ViT-B/16, fine-tuned from ImageNet-1K weights.

Each experiment file ``configs/<dataset>_<backbone>.py`` names its recipe here in one
line, e.g. ``recipes.videomae("ntu60", arg, default_phase="finetune")`` or
``recipes.image_model("resnet50", "hmdb51", arg)``. The config argument after the colon
is a comma-separated list of tokens, in any order::

    configs/ntu60_videomae.py:pretrain,depth,xview
    configs/uwa3d_multiview_videomae.py:12-3,depth

* a phase: ``pretrain`` (masked autoencoding from scratch), ``finetune`` (classification
  from the ``pretrain`` phase's workdir, ``W/pretrain`` next to ``W/finetune``) or
  ``k400`` (classification from ported Kinetics-400 VideoMAE weights). Image backbones
  have one phase, ``finetune`` from ported ImageNet-1K weights.
* a modality, ``rgb`` or ``depth``, where the dataset has both (the first of
  `DATASETS` is the default);
* a split of the dataset's protocol (`time_jax.data.protocols.SPLITS`; the first is the
  default). UWA3D Multiview II's ``34-1`` trains on views 3 and 4 and tests on view 1.

The data root defaults to ``/data/<dataset>`` (``--config.dataset.root``); UCF101 and
HMDB51 also take the folder of their official split files (e.g.
``--config.dataset.split_dir=/data/ucfTrainTestlist``). The VideoMAE recipe runs its two
phases, each in its own workdir; the fine-tuning phase starts from ``../pretrain``::

    python -m time_jax.main --workdir W/pretrain \
        --config configs/ntu60_videomae.py:pretrain,depth,xview \
        --config.dataset.root=/data/ntu60
    python -m time_jax.main --workdir W/finetune \
        --config configs/ntu60_videomae.py:finetune,depth,xview \
        --config.dataset.root=/data/ntu60

The ``k400`` phase (the default of ``configs/uwa3d_multiview_videomae.py``) and the image
backbones start from weights ported once with ``python -m time_jax.port`` (``--from
videomae``, ``--from torchvision ... --model resnet50`` or ``--from timm ... --model
vit_b16``), given as an absolute path::

    python -m time_jax.main --config configs/action_pairs_resnet50.py:depth --workdir W \
        --config.dataset.root=/data/action_pairs \
        --config.checkpoint.init_from=/abs/path/resnet50_in1k

Where the paper gives a setting it is used and marked *paper*; where it is silent the
VideoMAE recipe (Tong et al. 2022, the official UCF101 scripts) is followed and marked
*VideoMAE*; what neither gives is marked *ours* with the reason.
"""

from __future__ import annotations

import os

import ml_collections

from time_jax import config as config_lib
from time_jax.data import protocols

PHASES_VIDEOMAE = ("pretrain", "finetune", "k400")
PHASES_IMAGE = ("finetune",)
MODALITIES = ("rgb", "depth")

# name -> what the recipes need to know about a dataset.
#   modalities: those the paper trains on (the first is the default).
#   classes: the protocol's class count (checked against the data at load).
#   small: a few hundred videos: smaller batches, the small-data schedule below.
DATASETS = {
    "ucf101": dict(modalities=("rgb",), classes=101, small=False),
    "hmdb51": dict(modalities=("rgb",), classes=51, small=False),
    "ntu60": dict(modalities=("rgb", "depth"), classes=60, small=False),
    "ntu120": dict(modalities=("rgb", "depth"), classes=120, small=False),
    "msr_action3d": dict(modalities=("depth",), classes=20, small=True),
    "action_pairs": dict(modalities=("rgb", "depth"), classes=12, small=True),
    "uwa3d_activity": dict(modalities=("depth",), classes=30, small=True),
    "uwa3d_multiview": dict(modalities=("rgb", "depth"), classes=30, small=True),
}

# Pretraining epochs. UCF101 3200, HMDB51 4800, NTU-60/120 200: paper. The small
# depth datasets: ours, HMDB51's schedule (the paper's smallest dataset it states one
# for); they are 5-10x smaller than HMDB51, so fewer epochs underfit the decoder.
PRETRAIN_EPOCHS = {"ucf101": 3200, "hmdb51": 4800, "ntu60": 200, "ntu120": 200}
SMALL_PRETRAIN_EPOCHS = 4800

# Views per decoded video when pretraining (ours, measured: bench/input_pipeline.py; 4 is
# VideoMAEv2's num_sample). Each video read gives 4 masked-autoencoding views, so one
# host's cores keep up with the accelerator's pretraining step. The schedule is
# converted so steps, views and step sizes are the paper's: epochs (visits of each
# video) and warmup divided by 4, the base rate multiplied by 4 (the rate scales with
# videos per step, batch / repeats: time_jax.train.optimizer).
PRETRAIN_REPEATS = 4

# Fine-tuning epochs and base learning rate (× batch / 256, the VideoMAE convention).
# UCF101 100 epochs at 5e-4, HMDB51 50 at 1e-3, NTU 50 epochs: paper. NTU's rate: the
# paper is silent; VideoMAE's 5e-4 (its UCF101 and Kinetics scripts). Small datasets:
# ours, HMDB51's 50 epochs at 1e-3 (the closest data regime the paper states).
FINETUNE = {
    "ucf101": dict(epochs=100, base_lr=5e-4),
    "hmdb51": dict(epochs=50, base_lr=1e-3),
    "ntu60": dict(epochs=50, base_lr=5e-4),
    "ntu120": dict(epochs=50, base_lr=5e-4),
}
SMALL_FINETUNE = dict(epochs=50, base_lr=1e-3)

# Global batch, in VideoMAE's meaning: videos a step, before repeated views. 128 for
# UCF101 / HMDB51: paper (as VideoMAE's UCF101 fine-tuning, 8 GPUs x 16); NTU: the same
# (ours). Fine-tuning reads each video for FINETUNE_REPEATS views (VideoMAE's
# num_sample 2), so a step holds 256 views (input.batch_size counts views). The small
# datasets have 200-600 training videos; 128 would leave 2-4 steps an epoch, so 16
# videos, 32 views (ours).
BATCH = 128
SMALL_BATCH = 16
FINETUNE_REPEATS = 2
# The official fine-tuning mixes each GPU's 16 videos (32 views) with their own draws:
# train.mixup_group keeps that group whatever the device count.
MIXUP_GROUP = 16 * FINETUNE_REPEATS
# Pretraining views a step: 128 (paper) = 32 videos x PRETRAIN_REPEATS; small: 32.
PRETRAIN_CLIPS = 128
SMALL_PRETRAIN_CLIPS = 32

# Tube-masking ratio of pretraining: 70-80 % for RGB, about 50 % for depth (paper,
# Fig. 4); 0.75 is VideoMAE's UCF101 / HMDB51 value inside the paper's range.
MASK_RATIO = {"rgb": 0.75, "depth": 0.5}

# The best N of the paper's Table 2 by (dataset, modality, backbone); backbone is
# 'videomae', 'vit' or 'resnet50'; None matches any. Entries not in Table 2 as we read
# it fall back to DEFAULT_N; run an N-sweep (python -m time_jax.sweep) for those.
BEST_N = {
    ("ucf101", "rgb", None): 2,
    ("hmdb51", "rgb", None): 2,
    ("uwa3d_activity", "depth", None): 4,
    ("action_pairs", "rgb", "vit"): 7,
    ("action_pairs", "rgb", "resnet50"): 14,
}
DEFAULT_N = 2


def best_n(dataset: str, modality: str, backbone: str) -> int:
  """The grid side N the paper found best (`BEST_N`), else `DEFAULT_N`."""
  for key in ((dataset, modality, backbone), (dataset, modality, None)):
    if key in BEST_N:
      return BEST_N[key]
  return DEFAULT_N


def parse_arg(arg: str | None, dataset: str, phases: tuple[str, ...],
              default_phase: str) -> tuple[str, str, str]:
  """``'12-3,depth'`` -> ``(phase, modality, split)``; see the module docstring.

  Raises:
    ValueError: a token that is no phase, modality or split of ``dataset``, or two of
      one kind; the message lists what is accepted.
  """
  if dataset not in DATASETS:
    raise ValueError(f"recipes.parse_arg: unknown dataset {dataset!r}; use one of "
                     f"{sorted(DATASETS)}.")
  modalities = DATASETS[dataset]["modalities"]
  splits = tuple(s for s in protocols.SPLITS[dataset] if s)
  found = {}
  for token in (t.strip() for t in (arg or "").split(",")):
    if not token:
      continue
    kind = ("phase" if token in phases else "modality" if token in modalities
            else "split" if token in splits else None)
    if kind is None:
      raise ValueError(
          f"config argument {arg!r}: {token!r} is not a phase {phases}, a modality "
          f"{modalities} or a split {splits} of {dataset}.")
    if kind in found:
      raise ValueError(f"config argument {arg!r}: two {kind}s ({found[kind]!r} and "
                       f"{token!r}); give one.")
    found[kind] = token
  return (found.get("phase", default_phase), found.get("modality", modalities[0]),
          found.get("split", splits[0]))


def _dataset(c: ml_collections.ConfigDict, dataset: str, modality: str,
             split: str) -> None:
  """Protocol, split, modality and the reader a dataset is usually stored for."""
  c.dataset.name = dataset
  c.dataset.split = split
  c.dataset.modality = modality
  c.dataset.num_classes = DATASETS[dataset]["classes"]
  if dataset == "msr_action3d":
    c.dataset.source = "msr_bin"  # the official .bin depth files
  elif modality == "depth":
    c.dataset.source = "frames"   # one folder of depth images per video
  else:
    c.dataset.source = "video"
  # The layout docs/reproduce.md gives under /data/<dataset>; elsewhere, set
  # --config.dataset.root (and for UCF101 / HMDB51 --config.dataset.split_dir).
  c.dataset.root = f"/data/{dataset}"


def _common(dataset: str, modality: str, split: str, n: int) -> ml_collections.ConfigDict:
  c = config_lib.base_config()
  _dataset(c, dataset, modality, split)
  small = DATASETS[dataset]["small"]
  c.image_size = 224                      # paper: 224 x 224, patch 16
  c.time.n = n
  c.time.arrangement = "spatial"          # paper: spatial block arrangement by default
  c.input.eval_batch_size = (SMALL_BATCH if small else BATCH) * FINETUNE_REPEATS
  c.input.num_workers = 8
  # VideoMAE's test protocol: 5 temporal clips x 3 spatial crops, each crop covering
  # the whole short side (resized to the model size), the views' softmaxes averaged.
  c.input.eval_clips = 5
  c.input.eval_crops = 3
  c.input.eval_crop_fraction = 1.0
  c.input.eval_merge = "softmax"
  # VideoMAE: lr = base_lr x batch / 256, min_lr likewise.
  c.optimizer.lr_batch_divisor = 256
  c.checkpoint.every_steps = 1000
  return c


def _finetune_schedule(c: ml_collections.ConfigDict, dataset: str) -> None:
  ft = FINETUNE.get(dataset, SMALL_FINETUNE)
  small = DATASETS[dataset]["small"]
  c.train.num_epochs = float(ft["epochs"])
  c.optimizer.base_lr = ft["base_lr"]
  # VideoMAE fine-tuning (official UCF101 script and run_class_finetuning defaults):
  # AdamW (0.9, 0.999), weight decay 0.05, 5 warmup epochs, cosine to min_lr 1e-5
  # (x batch / 256, as the lr), mixup 0.8, cutmix 1.0, label smoothing 0.1.
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.999
  c.optimizer.weight_decay = 0.05
  c.optimizer.warmup_epochs = 5.0
  c.optimizer.min_lr = 1e-5
  c.train.mixup_alpha, c.train.cutmix_alpha = 0.8, 1.0
  c.train.mixup_group = MIXUP_GROUP
  c.train.label_smoothing = 0.1
  c.train.eval_every = 0
  c.input.crop_scale = (0.08, 1.0)  # VideoMAE: RandomResizedCrop's default area range
  # VideoMAE fine-tuning: num_sample 2, two augmented views of every decoded video,
  # sharing its frames (kinetics.py augments one decoded buffer twice).
  c.input.repeats = FINETUNE_REPEATS
  c.input.repeat_frames = "shared"
  c.input.batch_size = (SMALL_BATCH if small else BATCH) * FINETUNE_REPEATS
  # VideoMAE fine-tuning: random erasing with probability 0.25, pixel mode (its reprob,
  # remode), RandomErasing's cube default: one box through all frames, fresh noise in
  # each (time_jax.train.augment).
  c.input.random_erase_prob = 0.25
  # VideoMAE fine-tuning: RandAugment --aa rand-m7-n4-mstd0.5-inc1, on the frames before
  # the crop, one draw per clip (time_jax.data.randaugment), computed only in the
  # window each view samples: 3x the speed of whole frames, within a grey level.
  c.input.randaugment = "rand-m7-n4-mstd0.5-inc1"
  c.input.randaugment_on = "frames_window"


def videomae(dataset: str, arg: str | None = None,
             default_phase: str = "finetune") -> ml_collections.ConfigDict:
  """VideoMAE ViT-B/16 with TIME: ``pretrain`` / ``finetune`` from it / ``k400``.

  Args:
    dataset: a key of `DATASETS` (the protocol name).
    arg: the config argument, ``'phase,modality,split'`` tokens in any order.
    default_phase: the phase when ``arg`` names none.

  Returns:
    The full config. The data root defaults to ``/data/<dataset>``
    (``--config.dataset.root``); for ``k400`` the ported weights are given with
    ``--config.checkpoint.init_from``.
  """
  phase, modality, split = parse_arg(arg, dataset, PHASES_VIDEOMAE, default_phase)
  c = _common(dataset, modality, split, best_n(dataset, modality, "videomae"))
  c.time.t_out = 16                       # VideoMAE: 16 frames, tubelet 2
  kwargs = dict(patch_size=16, tubelet_size=2)
  if phase == "pretrain":
    c.mode = "pretrain"
    c.model.name = "videomae_b_pretrain"  # decoder 384 wide, 4 blocks (VideoMAE)
    kwargs.update(drop_path_rate=0.0)     # VideoMAE pretraining: no stochastic depth
    c.pretrain.mask_ratio = MASK_RATIO[modality]
    c.pretrain.norm_pix_loss = True       # VideoMAE: per-patch normalised pixels
    k = PRETRAIN_REPEATS
    c.input.repeats = k
    c.input.repeat_frames = "shared"      # VideoMAEv2's num_sample: one decoded buffer
    c.input.batch_size = SMALL_PRETRAIN_CLIPS if DATASETS[dataset]["small"] else PRETRAIN_CLIPS
    c.train.num_epochs = float(PRETRAIN_EPOCHS.get(dataset, SMALL_PRETRAIN_EPOCHS)) / k
    c.optimizer.warmup_epochs = 40.0 / k  # paper: 40 warmup epochs
    # VideoMAE UCF101 pretraining script: base lr 3e-4, AdamW (0.9, 0.95), weight
    # decay 0.05, cosine to min_lr 1e-5; no layer decay, no mixup. Both rates are
    # scaled by videos / 256, and a step holds batch / k videos: x k keeps the paper's
    # step sizes.
    c.optimizer.base_lr = 3e-4 * k
    c.optimizer.b1, c.optimizer.b2 = 0.9, 0.95
    c.optimizer.weight_decay = 0.05
    c.optimizer.min_lr = 1e-5 * k
    c.optimizer.layer_decay = 1.0
    c.train.mixup_alpha = c.train.cutmix_alpha = 0.0
    c.train.label_smoothing = 0.0
    c.train.eval_every = 0
    # VideoMAE pretraining views: GroupMultiScaleCrop (scales 1, .875, .75, .66, max
    # distortion 1), no flip.
    c.input.crop_mode = "multiscale"
    c.input.multiscale_scales = (1.0, 0.875, 0.75, 0.66)
    c.input.flip = False
  else:
    c.mode = "finetune"
    c.model.name = "videomae_b"
    _finetune_schedule(c, dataset)
    # VideoMAE UCF101 fine-tuning script: drop path 0.2, head dropout 0.5, layer
    # decay 0.7 (0.75, its Kinetics value, from Kinetics-400 weights), gradient
    # checkpointing of the blocks (--use_checkpoint): 256 views a step.
    kwargs.update(drop_path_rate=0.2, dropout_rate=0.5)
    c.model.remat = "block"
    if phase == "finetune":
      c.optimizer.layer_decay = 0.7
      # The pretraining phase's workdir, next to this one (W/pretrain, W/finetune).
      c.checkpoint.init_from = "../pretrain"
    else:
      c.optimizer.layer_decay = 0.75
      # Ported Kinetics-400 VideoMAE ViT-B/16 weights; the path is the user's:
      # --config.checkpoint.init_from=/abs/path (see docs/reproduce.md).
      c.checkpoint.init_from = ""
      c.checkpoint.init_required = True
  c.model.kwargs = ml_collections.ConfigDict(kwargs)
  return c


def image_model(backbone: str, dataset: str,
                arg: str | None = None) -> ml_collections.ConfigDict:
  """ResNet-50 or ViT-B/16 with TIME, fine-tuned from ImageNet-1K weights.

  The model sees T* = 1 TIME frame: the clip's T*·N² = N² frames in one N x N grid of
  224 x 224 (our reading of how an image backbone takes the paper's grids; with
  T* > 1 the models average their per-frame logits).

  Args:
    backbone: ``'resnet50'`` or ``'vit_b16'``.
    dataset: a key of `DATASETS`.
    arg: ``'modality,split'`` tokens (phase ``finetune`` only).
  """
  if backbone not in ("resnet50", "vit_b16"):
    raise ValueError(f"recipes.image_model: backbone {backbone!r}; use 'resnet50' or "
                     "'vit_b16'.")
  _, modality, split = parse_arg(arg, dataset, PHASES_IMAGE, "finetune")
  family = "resnet50" if backbone == "resnet50" else "vit"
  c = _common(dataset, modality, split, best_n(dataset, modality, family))
  c.mode = "finetune"
  c.time.t_out = 1
  c.model.name = backbone
  _finetune_schedule(c, dataset)
  if backbone == "resnet50":
    # Ours: no layer-wise decay for a CNN (the optimizer's layer ids are ViT blocks),
    # no stochastic depth (torchvision's ResNet-50 has none).
    c.model.kwargs = ml_collections.ConfigDict()
    c.optimizer.layer_decay = 1.0
  else:
    # Ours: the ViT-B/16 fine-tuning defaults of MAE/BEiT (drop path 0.1, layer decay
    # 0.75), the same optimizer as VideoMAE's.
    c.model.kwargs = ml_collections.ConfigDict(dict(drop_path_rate=0.1))
    c.optimizer.layer_decay = 0.75
  # Ported ImageNet-1K weights (python -m time_jax.port ...); the path is the user's:
  # --config.checkpoint.init_from=/abs/path (see docs/reproduce.md).
  c.checkpoint.init_from = ""
  c.checkpoint.init_required = True
  return c


# The demo's synthetic dataset (`time_jax.data.synthetic`): where the data layer
# generates it on first use, and its size (8 classes; 320 clips).
DEMO_ROOT = "~/.cache/time_jax/synthetic"
DEMO_VIDEOS_PER_CLASS = 40


def demo(n: int) -> ml_collections.ConfigDict:
  """A tiny VideoMAE on one 64² TIME grid of the synthetic temporal dataset, on a CPU.

  The dataset's classes come in pairs that differ only in temporal order, so a single
  frame (``n=1``) cannot tell a pair apart and TIME's grid (``n=2``: 4 frames in 2×2)
  can::

      python -m time_jax.main --config configs/demo.py --workdir /tmp/demo
      python -m time_jax.main --config configs/demo_n1.py --workdir /tmp/demo_n1

  Args:
    n: the grid side N.

  Returns:
    The config on the ``synthetic`` protocol in ``$TIME_JAX_DEMO_DATA`` (default
    `DEMO_ROOT`), which the data layer generates there when it is missing.
  """
  c = config_lib.base_config()
  c.mode = "finetune"
  c.seed = 0
  c.image_size = 64
  c.time.update(n=n, t_out=1, arrangement="spatial")
  root = os.environ.get("TIME_JAX_DEMO_DATA", os.path.expanduser(DEMO_ROOT))
  c.dataset.update(name="synthetic", source="video", root=root,
                   synthetic_videos_per_class=DEMO_VIDEOS_PER_CLASS)
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
