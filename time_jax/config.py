"""The full config: data sections plus model, optimizer, train, mesh and checkpoint.

Experiments are Python files in ``configs/`` whose ``get_config(arg)`` starts from
`base_config()` and overrides what differs. ``main.py`` checks the result once with
`validate` before anything is built. Schema (defaults below):

* ``mode``: ``'finetune'`` (classification), ``'pretrain'`` (VideoMAE masked
  autoencoding) or ``'eval'`` (evaluate ``checkpoint.init_from`` or the workdir's latest
  checkpoint, no training).
* ``seed``: the run's seed: the initialisation, the training step's randomness (mixup,
  masks, drop path) and, unless ``input.shuffle_seed`` is set (>= 0), the data order and
  augmentation; one ``--config.seed=S`` varies the whole run.
* ``image_size`` (H* = W*); ``time.{n, t_out, arrangement}`` (the TIME layer),
  ``time.sampling`` (which frames a clip takes: ``'segments'``, TIME's T*·N² uniform
  segments over the whole video, or ``'dense'``, VideoMAE's T*·N² frames every
  ``time.dense_stride`` frames of a window: `time_jax.data.transforms.Sampling`);
  ``dataset`` / ``input``: `time_jax.data.config`.
* ``model``: ``name`` (a key of `time_jax.models.MODELS`), ``dtype`` (compute dtype,
  ``'bfloat16'`` or ``'float32'``; parameters and optimizer state stay float32),
  ``kwargs`` (extra constructor arguments: ``drop_path_rate``, ``dropout_rate``,
  ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``; ResNet's ``frozen_bn``, ...;
  `validate` builds the model once to check them and that ``image_size`` is a multiple
  of the ViT/VideoMAE patch size),
  ``remat`` (gradient checkpointing of the ViT/VideoMAE blocks: ``'none'``, ``'block'``
  or ``'full'``, `time_jax.models.transformer.remat_block`; same parameters, less
  activation memory for more compute).
* ``pretrain``: ``mask_ratio``, ``norm_pix_loss``, ``recon_images`` (clips of the fixed
  eval batch whose reconstructions are logged).
* ``optimizer``: AdamW. ``lr = base_lr · batch_size / lr_batch_divisor`` (VideoMAE's
  ``base_lr × batch / 256``; divisor 0 uses ``base_lr`` as is), ``b1, b2, eps,
  weight_decay``, ``warmup_epochs`` (or ``warmup_steps`` > 0), cosine to ``min_lr``
  (scaled by the batch like ``base_lr``: VideoMAE's ``min_lr × batch / 256``),
  ``layer_decay`` (1.0 = off; ViT/VideoMAE ``blocks_{i}``), ``clip_norm`` (0 = off),
  ``accum_steps`` (micro-batches per step, scanned inside the jitted step).
* ``train``: ``num_epochs`` (or ``num_steps`` > 0), ``label_smoothing``,
  ``mixup_alpha``, ``cutmix_alpha``, ``mixup_prob``, ``mixup_switch_prob``,
  ``mixup_group`` (clips mixed together with their own draws, as each GPU of the
  official runs mixes its own batch: the mixing then does not depend on the device
  count; 0 = the whole batch, or micro-batch with ``accum_steps``),
  ``log_every``, ``eval_every`` (0 = only at the end), ``eval_at_end``, ``ema_decay``
  (an EMA of the parameters updated after every optimizer step, VideoMAE's
  ``--model_ema_decay``; 0 = off), ``ema_eval`` (with EMA on, evaluation and
  `time_jax.predict` use the EMA parameters; False: the raw ones).
* ``mesh``: ``data``, ``fsdp``, ``model`` axis sizes; one may be -1 (the rest).
* ``checkpoint``: ``every_steps``, ``keep`` (last M), ``keep_best`` (best by top-1),
  ``async_save``, ``init_from`` (ported weights: a ``python -m time_jax.port`` folder;
  or a previous run's workdir, e.g. the pretraining phase; relative paths are taken
  from the workdir); ``init_required``: the recipe fine-tunes pretrained weights, so an
  empty ``init_from`` is an error rather than a silent start from random init.

Two-phase recipes (pretrain, then fine-tune from it) are one file whose
``get_config(phase)`` takes the phase after a colon: ``--config
configs/ucf101_videomae.py:pretrain --workdir W/pretrain`` then ``--config
configs/ucf101_videomae.py:finetune --workdir W/finetune``; the finetune phase sets
``checkpoint.init_from='../pretrain'``.
"""

from __future__ import annotations

import ml_collections

from time_jax.data import config as data_config

MODES = ("finetune", "pretrain", "eval")
DTYPES = ("float32", "bfloat16", "float16")
MESH_AXES = ("data", "fsdp", "model")


def base_config() -> ml_collections.ConfigDict:
  """Every field with its default; experiments override a few."""
  c = ml_collections.ConfigDict()
  c.mode = "finetune"
  c.seed = 0
  c.image_size = 224
  # The TIME layer; sampling: 'segments' (TIME's uniform segments over the whole video)
  # or 'dense' (VideoMAE's: t_out·n² frames every dense_stride frames of a window).
  c.time = ml_collections.ConfigDict(dict(n=2, t_out=16, arrangement="spatial",
                                          sampling="segments", dense_stride=4))
  c.dataset = data_config.dataset_defaults()
  c.input = data_config.input_defaults()
  c.model = ml_collections.ConfigDict(dict(
      name="videomae_b", dtype="bfloat16", remat="none",
      kwargs=ml_collections.ConfigDict(dict(drop_path_rate=0.1))))
  c.pretrain = ml_collections.ConfigDict(dict(
      mask_ratio=0.9, norm_pix_loss=True, recon_images=4))
  c.optimizer = ml_collections.ConfigDict(dict(
      base_lr=1e-3, lr_batch_divisor=256, min_lr=1e-6, warmup_epochs=5.0,
      warmup_steps=0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.05,
      layer_decay=0.75, clip_norm=0.0, accum_steps=1))
  c.train = ml_collections.ConfigDict(dict(
      num_epochs=50.0, num_steps=0, label_smoothing=0.1, mixup_alpha=0.8,
      cutmix_alpha=1.0, mixup_prob=1.0, mixup_switch_prob=0.5, mixup_group=0,
      log_every=50,
      eval_every=0, eval_at_end=True, ema_decay=0.0, ema_eval=True))
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
  c.checkpoint = ml_collections.ConfigDict(dict(
      every_steps=1000, keep=2, keep_best=1, async_save=True, init_from="",
      init_required=False))
  return c


def _fail(field: str, msg: str):
  raise ValueError(f"config.{field}: {msg}")


def _check_model_builds(config: ml_collections.ConfigDict) -> None:
  """Builds (does not initialise) the model: its constructor checks ``model.kwargs``,
  ``image_size`` against the patch size and ``time.t_out`` against the tubelet."""
  from time_jax import models  # pylint: disable=g-import-not-at-top
  m = config.model
  try:
    models.from_config(config, num_classes=max(1, config.dataset.get("num_classes", 1)))
  except TypeError as e:  # a keyword the model does not take
    _fail("model.kwargs", f"{m.name!r}: {e}; see the model's attributes in "
          f"{models.MODELS[m.name][0]}.")
  except ValueError as e:
    text = str(e)
    if "patch_size" in text:
      _fail("image_size", f"{config.image_size} does not fit {m.name!r}: {text} Set "
            "config.image_size to a multiple of the patch size (or change "
            "config.model.kwargs.patch_size).")
    if "tubelet" in text:
      _fail("time.t_out", f"{config.time.t_out} does not fit {m.name!r}: {text}")
    _fail("model.kwargs", f"{m.name!r}: {text}")


def validate(config: ml_collections.ConfigDict, *, num_devices: int | None = None) -> None:
  """Checks the whole config once, at start; raises ValueError naming the field.

  Args:
    config: a full config (`base_config` plus overrides).
    num_devices: devices the mesh spans (default: all of ``jax.devices()``).
  """
  from time_jax import models  # pylint: disable=g-import-not-at-top
  from time_jax.models import transformer  # pylint: disable=g-import-not-at-top

  if config.mode not in MODES:
    _fail("mode", f"{config.mode!r} is unknown; use one of {MODES}.")
  if config.time.arrangement not in ("spatial", "temporal"):
    _fail("time.arrangement", f"{config.time.arrangement!r}; use 'spatial' or 'temporal'.")
  if config.time.sampling not in ("segments", "dense"):
    _fail("time.sampling", f"{config.time.sampling!r}; use 'segments' (TIME's) or 'dense' "
          "(VideoMAE's).")
  if config.time.dense_stride < 1:
    _fail("time.dense_stride", f"{config.time.dense_stride} must be >= 1.")
  m = config.model
  if m.name not in models.MODELS:
    _fail("model.name", f"{m.name!r} is not a model; choose one of {sorted(models.MODELS)}.")
  is_pretrainer = m.name.endswith("_pretrain")
  if config.mode == "pretrain" and not is_pretrainer:
    _fail("model.name", f"{m.name!r} cannot pretrain; mode='pretrain' needs a "
          "'videomae_*_pretrain' model.")
  if config.mode != "pretrain" and is_pretrainer:
    _fail("model.name", f"{m.name!r} is a pretrainer; mode={config.mode!r} needs a "
          "classifier (e.g. 'videomae_b'), or set mode='pretrain'.")
  if m.dtype not in DTYPES:
    _fail("model.dtype", f"{m.dtype!r}; use one of {DTYPES}.")
  if m.remat not in transformer.REMATS:
    _fail("model.remat", f"{m.remat!r}; use one of {transformer.REMATS}.")
  if m.remat != "none" and not models.is_transformer(m.name):
    _fail("model.remat", f"{m.remat!r}: rematerialisation is for the ViT/VideoMAE blocks; "
          f"{m.name!r} needs remat='none'.")
  _check_model_builds(config)
  data_config.validate(config)

  o, t = config.optimizer, config.train
  for field in ("base_lr", "weight_decay", "min_lr", "warmup_epochs", "clip_norm"):
    if o[field] < 0:
      _fail(f"optimizer.{field}", f"{o[field]} must be >= 0.")
  for field in ("b1", "b2"):
    if not 0 <= o[field] < 1:
      _fail(f"optimizer.{field}", f"{o[field]} must be in [0, 1).")
  if not 0 < o.layer_decay <= 1:
    _fail("optimizer.layer_decay", f"{o.layer_decay} must be in (0, 1] (1 = off).")
  if o.accum_steps < 1:
    _fail("optimizer.accum_steps", f"{o.accum_steps} must be >= 1.")
  if t.num_steps <= 0 and t.num_epochs <= 0:
    _fail("train.num_epochs", "train for num_epochs > 0 or num_steps > 0.")
  if not 0 <= t.label_smoothing < 1:
    _fail("train.label_smoothing", f"{t.label_smoothing} must be in [0, 1).")
  for field in ("mixup_alpha", "cutmix_alpha"):
    if t[field] < 0:
      _fail(f"train.{field}", f"{t[field]} must be >= 0 (0 = off).")
  for field in ("mixup_prob", "mixup_switch_prob"):
    if not 0 <= t[field] <= 1:
      _fail(f"train.{field}", f"{t[field]} must be in [0, 1].")
  micro = config.input.batch_size // max(o.accum_steps, 1)
  if t.mixup_group < 0 or (t.mixup_group and micro % t.mixup_group):
    _fail("train.mixup_group", f"{t.mixup_group} must be 0 (the whole batch) or divide "
          f"the clips of a (micro-)batch, input.batch_size / optimizer.accum_steps = "
          f"{micro}.")
  if t.log_every < 1:
    _fail("train.log_every", f"{t.log_every} must be >= 1.")
  if t.eval_every < 0:
    _fail("train.eval_every", f"{t.eval_every} must be >= 0 (0 = only at the end).")
  if not 0 <= t.ema_decay < 1:
    _fail("train.ema_decay", f"{t.ema_decay} must be in [0, 1) (0 = no EMA; VideoMAE's "
          "--model_ema_decay is 0.9999).")
  if config.mode == "pretrain" and not 0 < config.pretrain.mask_ratio < 1:
    _fail("pretrain.mask_ratio", f"{config.pretrain.mask_ratio} must be in (0, 1).")
  ck = config.checkpoint
  if ck.every_steps < 1:
    _fail("checkpoint.every_steps", f"{ck.every_steps} must be >= 1.")
  if ck.init_required and not ck.init_from and config.mode != "eval":
    _fail("checkpoint.init_from", "this recipe fine-tunes pretrained weights but none are "
          "given; port them (python -m time_jax.port --from ... --out DIR) and pass "
          "--config.checkpoint.init_from=DIR, or set checkpoint.init_required=False to "
          "train from random initialisation.")
  if ck.keep < 1 or ck.keep_best < 0:
    _fail("checkpoint.keep", f"keep={ck.keep} must be >= 1 and keep_best={ck.keep_best} >= 0.")

  # The mesh, and that the data-parallel axes divide the batches.
  import jax  # pylint: disable=g-import-not-at-top
  from time_jax.train import sharding  # pylint: disable=g-import-not-at-top
  devices = jax.device_count() if num_devices is None else num_devices
  shape = sharding.mesh_shape(config.mesh, devices)  # raises naming config.mesh.*
  data_par = shape[0] * shape[1]
  accum = o.accum_steps
  if config.input.batch_size % (data_par * accum):
    _fail("input.batch_size", f"{config.input.batch_size} is not divisible by the data "
          f"axes data×fsdp={data_par} times optimizer.accum_steps={accum}.")
  if config.input.eval_batch_size % data_par:
    _fail("input.eval_batch_size", f"{config.input.eval_batch_size} is not divisible by "
          f"the data axes data×fsdp={data_par}.")
