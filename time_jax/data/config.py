"""Config sections of the input side: ``config.dataset`` and ``config.input``.

`time_jax.config.base_config` composes these with the model and training sections.
`validate(config)` checks the data fields once at start and names the field at fault.
The pipeline also reads ``config.time.{n, t_out, arrangement}`` and
``config.image_size`` (H* = W*).
"""

from __future__ import annotations

import os

import ml_collections

from time_jax import time_layer
from time_jax.data import protocols
from time_jax.data import randaugment
from time_jax.data import transforms

SOURCES = ("video", "frames", "msr_bin", "tfds", "packed")
MODALITIES = ("rgb", "depth")
MISSING_POLICIES = ("error", "drop")


def dataset_defaults() -> ml_collections.ConfigDict:
  """``config.dataset``: where the data is and which protocol splits it."""
  return ml_collections.ConfigDict(dict(
      # Protocol (time_jax/data/protocols.py documents each file layout):
      # 'annotations', 'synthetic', 'ucf101', 'hmdb51', 'ntu60', 'ntu120',
      # 'msr_action3d', 'action_pairs', 'uwa3d_activity', 'uwa3d_multiview', 'tfds'.
      name="annotations",
      # Protocol-specific: '1'..'3' (UCF101/HMDB51), 'xsub'/'xview' (NTU60),
      # 'xsub'/'xset' (NTU120), '12-3' etc. (UWA3D multiview), 'xsub' or '' (MSR, pairs,
      # UWA3D activity), '' (annotations, synthetic).
      split="",
      source="video",      # 'video' | 'frames' | 'msr_bin' | 'tfds' | 'packed'
      # Data root. The file fields below (annotations, classes file, file list,
      # split_dir) and the video paths inside them are relative to it unless absolute.
      root="",
      split_dir="",        # UCF101 / HMDB51 official split files ('' = root)
      train_annotations="",  # 'annotations': 'path label' or 'folder num_frames label'
      eval_annotations="",
      # Optional class names, one a line ('name' or 'index name'), in label order; the
      # class count must then be its length (docs/custom_data.md).
      classes_file="",
      label_base=0,        # subtracted from annotation labels (1 for 1-based files)
      file_list="",        # scanned protocols: relative paths a line, instead of a scan
      modality="rgb",      # 'rgb' | 'depth'
      # The head size. 0: the protocol's count (annotations: the classes file's
      # length, else the largest training label + 1, every class with a training
      # example). Set it to keep classes without training examples.
      num_classes=0,
      depth_max=0.0,       # depth scaled to [0, 255] by this maximum; 0 = per clip range
      missing_files="error",  # listed files that do not exist: 'error' | 'drop' (logged)
      max_bad_fraction=0.01,  # stop when more files fail than this fraction (>= 1 file)
      tfds_name="",        # source 'tfds' / name 'tfds': the TFDS builder, e.g. 'ucf101'
      tfds_data_dir="",    # TFDS data_dir ('' = TFDS default)
      tfds_train_split="train",
      tfds_eval_split="test",
      packed_dir="",       # source 'packed': the folder `python -m time_jax.data.pack` wrote
      synthetic_videos_per_class=40,  # name 'synthetic': clips per class it generates
  ))


def input_defaults() -> ml_collections.ConfigDict:
  """``config.input``: batching, workers and augmentation of the Grain pipeline."""
  return ml_collections.ConfigDict(dict(
      batch_size=8,         # global batch, over all processes
      eval_batch_size=8,    # global; eval batches are padded to it (see 'valid')
      num_workers=0,        # Grain worker processes per host (0: in-process)
      worker_buffer_size=2,  # batches each worker prepares ahead
      read_threads=4,       # threads per process reading batches (decode frees the GIL)
      # Seed of the data order and the augmentation draws; -1: config.seed, so one
      # --config.seed=S varies the whole run. Set it (>= 0) to fix the data across seeds.
      shuffle_seed=-1,
      # Views per video read (VideoMAE's num_sample): each decode gives `repeats`
      # training views with their own augmentation. batch_size counts views; an epoch
      # visits every video once (repeats views each); the learning rate scales with
      # batch_size / repeats videos (time_jax/data/pipeline.py, train/optimizer.py).
      repeats=1,
      # The frames of a video's repeated views: 'shared' (one frame set, the views
      # differ in their spatial augmentation: VideoMAE's num_sample) or 'own' (each
      # view draws its own frames where the reader decodes runs of frames anyway:
      # video files, MSR .bin; elsewhere they share).
      repeat_frames="own",
      # Training augmentation, one draw per clip on the original frames.
      temporal_jitter=True,  # random frame inside each segment (frame_indices rng)
      # 'random_resized' (crop_scale, crop_ratio) or 'multiscale' (VideoMAE
      # pretraining's GroupMultiScaleCrop: sides multiscale_scales x the short side).
      crop_mode="random_resized",
      crop_scale=(0.25, 1.0),  # random resized crop: area fraction range
      crop_ratio=(3 / 4, 4 / 3),  # random resized crop: aspect ratio range (w / h)
      multiscale_scales=(1.0, 0.875, 0.75, 0.66),
      multiscale_max_distort=1,  # width and height scales at most this far apart
      # timm RandAugment policy, e.g. 'rand-m7-n4-mstd0.5-inc1'; '' = off. One draw
      # of ops and magnitudes per view, the same on every frame, before the crop.
      randaugment="",
      # Where RandAugment acts: 'frames' (the view's original frames before the crop,
      # VideoMAE's order), 'frames_window' (the same, computed only in the window the
      # view samples: far cheaper, within about a grey level of 'frames';
      # RandAugment.apply_view says how) or 'cells' (the cropped, resized view: the
      # same ops on ~1/6 of the pixels at N = 2; geometry and statistics then refer to
      # the crop).
      randaugment_on="frames",
      # Random erasing (VideoMAE's RandomErasing: pixel mode, cube=True, one box
      # through all frames of a clip with fresh noise in each), on device after
      # normalisation; the probability, 0 = off.
      random_erase_prob=0.0,
      flip=True,            # horizontal flip; off for direction-sensitive labels
      rotation=0.0,         # max rotation in degrees, uniform in [-rotation, rotation]
      # Evaluation: short side resized to cell / eval_crop_fraction, then crops.
      eval_crop_fraction=0.875,
      eval_clips=1,         # K temporal clips per video
      eval_crops=1,         # 1 (centre) or 3 (both ends and centre of the long side)
      # How a video's K×crops views are merged: 'logits' (softmax of the mean logits)
      # or 'softmax' (the mean of the views' softmaxes, VideoMAE's test merge).
      eval_merge="logits",
      max_retries=8,        # replacement records tried after a decode failure
      # On-device normalisation (time_layer.preprocess), per channel on the [0, 1]
      # scale: ImageNet statistics, which ImageNet/Kinetics-pretrained weights expect;
      # set them for depth trained from scratch if you prefer its own statistics.
      mean=time_layer.IMAGENET_MEAN,
      std=time_layer.IMAGENET_STD,
  ))


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the data fields of a full config; raises ValueError naming the field.

  Checks names and values, that the files and folders the chosen protocol needs exist
  (file fields relative to ``dataset.root`` unless absolute), and for the
  ``annotations`` protocol (and a ``synthetic`` one already generated) that the
  annotation files parse and their labels, the classes file and ``num_classes`` agree
  (`protocols.annotation_splits`; it does not look at the videos, `protocols.load`
  does). The ``synthetic`` protocol's root may not exist yet: `sources.load_splits`
  generates it.
  """
  d, i = config.dataset, config.input

  def fail(field, msg):
    raise ValueError(f"config.{field}: {msg}")

  if d.source not in SOURCES:
    fail("dataset.source", f"{d.source!r} is unknown; use one of {SOURCES}.")
  if d.modality not in MODALITIES:
    fail("dataset.modality", f"{d.modality!r} is unknown; use one of {MODALITIES}.")
  if d.missing_files not in MISSING_POLICIES:
    fail("dataset.missing_files", f"{d.missing_files!r}; use one of {MISSING_POLICIES}.")
  if not 0.0 <= d.max_bad_fraction <= 1.0:
    fail("dataset.max_bad_fraction", f"{d.max_bad_fraction} must be in [0, 1].")
  if d.depth_max < 0:
    fail("dataset.depth_max", f"{d.depth_max} must be >= 0 (0: per-clip range).")
  if d.num_classes < 0:
    fail("dataset.num_classes", f"{d.num_classes} must be >= 0 (0: from the data).")
  if d.source == "packed":
    if not d.packed_dir or not os.path.isdir(d.packed_dir):
      fail("dataset.packed_dir", f"{d.packed_dir!r} is not a folder; write it with "
           "`python -m time_jax.data.pack --config CONFIG --out DIR` and set it here.")
  elif d.name == "tfds" or d.source == "tfds":
    if not d.tfds_name:
      fail("dataset.tfds_name", "is empty; name the TFDS builder (e.g. 'ucf101').")
  else:
    if d.name not in protocols.SPLITS:
      fail("dataset.name", f"{d.name!r} is unknown; use one of "
           f"{sorted(protocols.SPLITS)}.")
    if str(d.split) not in protocols.SPLITS[d.name]:
      fail("dataset.split", f"{d.split!r} is not a split of {d.name}; use one of "
           f"{protocols.SPLITS[d.name]}.")

    def where(field):  # a file field, relative to dataset.root unless absolute
      path = protocols.data_path(d.root, d[field])
      return path, (f"{d[field]!r}" if path == d[field] else
                    f"{d[field]!r} (under dataset.root: {path!r})")

    if d.name == "annotations":
      if d.root and not os.path.isdir(d.root):
        fail("dataset.root", f"{d.root!r} is not a folder.")
      for field in ("train_annotations", "eval_annotations"):
        path, shown = where(field)
        if not d[field] or not os.path.isfile(path):
          fail(f"dataset.{field}", f"{shown} is not a file; give the annotation file "
               "('relative/path label' lines), relative to dataset.root or absolute.")
    elif d.name == "synthetic":
      if not d.root:
        fail("dataset.root", "is empty; set the folder the synthetic dataset is (or "
             "will be) generated in.")
      if d.source != "video":
        fail("dataset.source", f"{d.source!r}: the synthetic dataset is mp4 files; "
             "use 'video'.")
      for field in ("train_annotations", "eval_annotations", "classes_file"):
        if d[field]:
          fail(f"dataset.{field}", f"{d[field]!r} would be ignored: dataset.name="
               "'synthetic' (the demo's generated set) reads root/train.txt, test.txt "
               "and classes.txt. For your own clips set dataset.name='annotations' "
               "(see configs/custom.py and docs/custom_data.md).")
      if (os.path.isdir(d.root) and os.listdir(d.root)
          and not os.path.isfile(os.path.join(d.root, "train.txt"))):
        fail("dataset.root", f"{d.root!r} holds no synthetic dataset (no train.txt) and "
             "is not empty, so it cannot be generated there; for your own clips set "
             "dataset.name='annotations' (see docs/custom_data.md).")
    elif not d.root or not os.path.isdir(d.root):
      fail("dataset.root", f"{d.root!r} is not a folder; set it to the {d.name} data root.")
    if d.name in ("ucf101", "hmdb51") and d.split_dir:
      path, shown = where("split_dir")
      if not os.path.isdir(path):
        fail("dataset.split_dir", f"{shown} is not a folder.")
    for field in ("file_list", "classes_file"):
      path, shown = where(field)
      if d[field] and not os.path.isfile(path):
        fail(f"dataset.{field}", f"{shown} is not a file.")
    if d.name == "annotations" or (
        d.name == "synthetic" and os.path.isfile(os.path.join(d.root, "train.txt"))):
      # Reads the annotation and classes files (not the videos) so that a class count
      # on which names, num_classes and labels disagree stops the run here, in one
      # line (protocols.check_classes).
      protocols.annotation_splits(d)

  n, t_out = config.time.n, config.time.t_out
  if n < 1:
    fail("time.n", f"{n} must be >= 1.")
  if t_out < 1:
    fail("time.t_out", f"{t_out} must be >= 1.")
  if config.image_size < n:
    fail("image_size", f"{config.image_size} is smaller than time.n={n}; the cell "
         "size image_size // n must be >= 1.")
  try:
    import jax  # pylint: disable=g-import-not-at-top
    processes = jax.process_count()
  except Exception:  # pylint: disable=broad-except
    processes = 1
  for field in ("batch_size", "eval_batch_size"):
    b = i[field]
    if b < 1 or b % processes:
      fail(f"input.{field}", f"{b} must be a positive multiple of the process count "
           f"{processes} (it is the global batch).")
  if i.repeats < 1:
    fail("input.repeats", f"{i.repeats} must be >= 1.")
  if i.batch_size % (i.repeats * processes):
    fail("input.batch_size", f"{i.batch_size} must be a multiple of input.repeats="
         f"{i.repeats} times the process count {processes} (each process's batch "
         "holds whole videos of `repeats` views).")
  if i.num_workers < 0:
    fail("input.num_workers", f"{i.num_workers} must be >= 0.")
  if i.crop_mode not in transforms.CROP_MODES:
    fail("input.crop_mode", f"{i.crop_mode!r}; use one of {transforms.CROP_MODES}.")
  if not i.multiscale_scales or not all(0 < s <= 1 for s in i.multiscale_scales):
    fail("input.multiscale_scales", f"{tuple(i.multiscale_scales)}: give scales in "
         "(0, 1].")
  if i.multiscale_max_distort < 0:
    fail("input.multiscale_max_distort", f"{i.multiscale_max_distort} must be >= 0.")
  if i.randaugment:
    try:
      randaugment.parse(i.randaugment)
    except ValueError as e:
      fail("input.randaugment", f"{e} (timm's form, e.g. 'rand-m7-n4-mstd0.5-inc1'; '' "
           "= off)")
  if i.randaugment_on not in ("frames", "frames_window", "cells"):
    fail("input.randaugment_on", f"{i.randaugment_on!r}; use 'frames', "
         "'frames_window' or 'cells'.")
  if not 0 <= i.random_erase_prob <= 1:
    fail("input.random_erase_prob", f"{i.random_erase_prob} must be in [0, 1].")
  def pair(field, example):
    value = i[field]
    if not isinstance(value, (tuple, list)) or len(value) != 2:
      fail(f"input.{field}", f"{value!r} must be two numbers (lo, hi), e.g. "
           f"--config.input.{field}='{example}'.")
    return value

  lo, hi = pair("crop_scale", "(0.25, 1.0)")
  if not 0 < lo <= hi <= 1:
    fail("input.crop_scale", f"{tuple(i.crop_scale)} must satisfy 0 < lo <= hi <= 1.")
  lo, hi = pair("crop_ratio", "(0.75, 1.333)")
  if not 0 < lo <= hi:
    fail("input.crop_ratio", f"{tuple(i.crop_ratio)} must satisfy 0 < lo <= hi.")
  if not 0 <= i.rotation < 90:
    fail("input.rotation", f"{i.rotation} degrees must be in [0, 90).")
  if not 0 < i.eval_crop_fraction <= 1:
    fail("input.eval_crop_fraction", f"{i.eval_crop_fraction} must be in (0, 1].")
  if i.eval_clips < 1:
    fail("input.eval_clips", f"{i.eval_clips} must be >= 1.")
  for field in ("mean", "std"):
    if len(i[field]) not in (1, 3):
      fail(f"input.{field}", f"{tuple(i[field])}: give 1 or 3 per-channel values.")
  if min(i.std) <= 0:
    fail("input.std", f"{tuple(i.std)}: every value must be > 0.")
  if i.repeat_frames not in ("shared", "own"):
    fail("input.repeat_frames", f"{i.repeat_frames!r}; use 'shared' or 'own'.")
  if i.eval_merge not in ("logits", "softmax"):
    fail("input.eval_merge", f"{i.eval_merge!r}; use 'logits' or 'softmax'.")
  if i.eval_crops not in (1, 3):
    fail("input.eval_crops", f"{i.eval_crops}; use 1 (centre) or 3.")
  if i.read_threads < 1:
    fail("input.read_threads", f"{i.read_threads} must be >= 1.")
  if i.max_retries < 1:
    fail("input.max_retries", f"{i.max_retries} must be >= 1.")
