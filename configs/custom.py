"""Your own clips: a template to copy and edit (walk-through: docs/custom_data.md).

    cp configs/custom.py configs/my_clips.py     # edit the fields marked EDIT
    python -m time_jax.main --config configs/my_clips.py --workdir W/my_clips

or keep this file and override its fields on the command line:

    python -m time_jax.main --config configs/custom.py --workdir W/my_clips \\
        --config.dataset.root=/data/my_clips \\
        --config.dataset.train_annotations=train.txt \\
        --config.dataset.eval_annotations=val.txt

As it stands it trains a small VideoMAE from scratch on one 112² TIME grid of 2×2
frames, small enough for a CPU. On a GPU, with ImageNet weights, see "Another model"
below.
"""

import ml_collections

from time_jax import config as config_lib


def get_config(arg=None):
  del arg  # this template takes no config argument
  c = config_lib.base_config()
  c.mode = "finetune"  # classification ('eval': evaluate a checkpoint only)
  c.seed = 0

  # ------------------------------------------------------------ your data (EDIT)
  d = c.dataset
  d.name = "annotations"  # your own annotation files (time_jax/data/protocols.py)
  # The folder everything below is relative to (absolute paths work too).
  d.root = "/data/my_clips"
  # One clip a line, whitespace-separated (or commas: 'clips/wave_01.mp4,0'):
  #   clips/wave_01.mp4 0          a video file and its label    (source 'video')
  #   frames/wave_01 48 0          a folder of 48 images, label  (source 'frames')
  # Empty lines and lines starting with '#' are skipped.
  d.train_annotations = "train.txt"
  d.eval_annotations = "val.txt"
  # Optional class names, one a line in label order ('wave' or '0 wave'); '' names
  # them class_000, class_001, ... It must name exactly the classes you train.
  d.classes_file = ""
  d.label_base = 0  # 1 when the labels in your files count from 1
  # The head size. 0: the largest training label + 1, and every class needs a
  # training clip (a stray label is an error naming its line). Set the count to
  # keep classes that have no training clip yet.
  d.num_classes = 0
  d.source = "video"  # 'video': mp4 / avi / webm / mkv ...; 'frames': image folders
  # 'rgb', or 'depth': folders of 16-bit depth PNGs (source 'frames'), scaled to
  # [0, 255] by depth_max (their unit, e.g. 4500 mm; 0 = each clip's own range).
  d.modality = "rgb"
  d.depth_max = 0.0
  # Listed clips that do not exist: 'error' (all named at start) or 'drop' (logged).
  d.missing_files = "error"
  # Faster reading: pack the decoded frames once, then train from the pack:
  #   python -m time_jax.data.pack --config configs/my_clips.py --out /data/my_pack
  #   ... --config.dataset.source=packed --config.dataset.packed_dir=/data/my_pack

  # ------------------------------------------------------------ TIME and input
  c.image_size = 112  # the TIME grid's side H* = W*
  # N = 2: each of the T* model frames is a 2×2 grid of 4 frames sampled across the
  # clip (cells of 56²). T* = 1: one grid per clip.
  c.time.update(n=2, t_out=1, arrangement="spatial")
  c.input.update(
      batch_size=8,  # clips per step, over all devices; at most the training clips
      eval_batch_size=8,
      num_workers=0,  # reader processes; 4-8 on a many-core machine
      flip=True,  # False when left / right matters to your labels
      crop_scale=(0.5, 1.0),  # random crops cover this share of the frame's area
      eval_clips=2,  # clips per video at evaluation, averaged
      eval_crops=1)

  # ------------------------------------------------------------ the model
  # A small VideoMAE trained from scratch (the demo's size): minutes on a CPU for a
  # few hundred clips.
  c.model.name = "videomae_s"
  c.model.dtype = "float32"  # 'bfloat16' on a GPU / TPU
  c.model.kwargs = ml_collections.ConfigDict(dict(
      patch_size=8, tubelet_size=1, embed_dim=96, depth=4, num_heads=4,
      drop_path_rate=0.0, init_scale=1.0))
  c.optimizer.update(base_lr=1e-3, lr_batch_divisor=0, warmup_epochs=2.0, min_lr=1e-5,
                     weight_decay=0.05, layer_decay=1.0, clip_norm=1.0)
  c.train.update(num_epochs=40.0, label_smoothing=0.1, mixup_alpha=0.0,
                 cutmix_alpha=0.0, log_every=20, eval_every=0)
  c.checkpoint.update(every_steps=200, keep=1, keep_best=1)
  c.mesh.update(data=-1, fsdp=1, model=1)

  # Another model: ResNet-50 fine-tuned from ImageNet-1K weights learns far more
  # from few clips (a GPU; the paper's image-backbone recipe, time_jax/recipes.py).
  # Port the weights once (docs/reproduce.md, "Weights"):
  #   python -m time_jax.port --from torchvision --checkpoint resnet50-0676ba61.pth \
  #       --model resnet50 --out /abs/path/resnet50_in1k
  # then replace the model section above with:
  #   c.image_size = 224
  #   c.model.name = "resnet50"
  #   c.model.dtype = "bfloat16"
  #   c.model.kwargs = ml_collections.ConfigDict()
  #   c.optimizer.update(base_lr=1e-3, lr_batch_divisor=256, warmup_epochs=5.0,
  #                      min_lr=1e-5, weight_decay=0.05, layer_decay=1.0, clip_norm=0.0)
  #   c.train.update(num_epochs=50.0, label_smoothing=0.1, log_every=20, eval_every=0)
  #   c.checkpoint.update(init_from="/abs/path/resnet50_in1k", init_required=True)
  # ('vit_b16' from timm weights: the same, with layer_decay=0.75 and
  # kwargs drop_path_rate=0.1.)
  return c
