"""Classifies videos (files or frame folders) with a trained checkpoint: the top-5
classes and probabilities.

  python -m time_jax.predict --checkpoint CKPT --video FILE [FILE ...] [--views 2x3] [--json]
      [--ema | --no-ema] [--every SECONDS [--window SECONDS] [--out DIR]]

CKPT is a training workdir or a ported-weights folder (`time_jax.checkpoints`);
class names come from its ``class_names.json`` (``class_{i}`` without one). Each video
is read as evaluation reads it (the checkpoint's TIME N, T*, arrangement and size; a
folder of images as ``dataset.source='frames'`` reads it):
``--views K×C`` takes K temporal clips times C in {1, 3} spatial crops (default: the
run's ``input.eval_clips`` × ``input.eval_crops``) and merges them as the run's
evaluation does (``input.eval_merge``: the mean of the views' softmaxes, or the softmax
of their mean logits; `time_jax.train.metrics.merge_views`). A run trained with a parameter EMA
(``train.ema_decay > 0``) predicts with the parameters its evaluation used: the EMA when
``train.ema_eval`` (the default), else the raw ones; ``--ema`` / ``--no-ema`` choose.

It first prints the checkpoint it read and, for a workdir, the step (its newest saved
one); with ``--json`` each object carries ``checkpoint`` and ``step`` instead. A video
that cannot be read or decoded gets one ``error: FILE: reason`` line on stderr and the
others are still classified. Exit status: 0 when every video was classified, 1 when
any failed (the others' results are printed), 2 when nothing could run (a bad option
or an unreadable checkpoint).

``--every S`` classifies windows starting every S seconds along each video instead and
writes ``DIR/<name>.timeline.csv`` (start, end, top classes and probabilities) and a PNG
strip of the top classes over time (`time_jax.extract.timelines`, `time_jax.timeline`).

From Python, for many videos with one loaded model::

    from time_jax import predict
    predictor = predict.Predictor("workdir/demo", clips=2)
    for p in predictor(["a.mp4", "b.mp4"]):
      print(p.video, p.top[0])                     # ('class name', probability)
    predict.predict("workdir/demo", ["a.mp4"])      # the same in one call
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from typing import Sequence

import jax
import numpy as np

from time_jax.data.base import DecodeError
from time_jax import checkpoints
from time_jax.diagnose import inputs
from time_jax.train import metrics


@dataclasses.dataclass
class Prediction:
  """The result for one video.

  Attributes:
    video: the file.
    top: ``[(class name, probability)]``, most probable first.
    probabilities: float ``[num_classes]``, the views merged (``input.eval_merge``).
    views: clips × crops averaged.
    ema: the run's EMA parameters made it (else its raw parameters).
    checkpoint: the checkpoint folder.
    step: the training step of its parameters (None for ported weights).
  """
  video: str
  top: list[tuple[str, float]]
  probabilities: np.ndarray
  views: int
  ema: bool = False
  checkpoint: str = ""
  step: int | None = None

  def to_json(self) -> dict:
    return dict(video=self.video, views=self.views, ema=self.ema,
                checkpoint=self.checkpoint, step=self.step,
                top=[dict(label=name, probability=p) for name, p in self.top])


def parse_views(text: str) -> tuple[int, int]:
  """``'K'``, ``'KxC'`` or ``'K×C'`` -> ``(K, C)`` with K >= 1 and C in {1, 3}."""
  m = re.fullmatch(r"\s*(\d+)\s*(?:[x×X*]\s*(\d+))?\s*", text)
  if not m:
    raise ValueError(f"--views {text!r}: write clips x crops, e.g. 2x3 (or just 2).")
  clips, crops = int(m.group(1)), int(m.group(2) or 1)
  if clips < 1 or crops not in (1, 3):
    raise ValueError(f"--views {text!r}: clips must be >= 1 and crops 1 or 3.")
  return clips, crops


class Predictor:
  """A loaded classifier that maps video files to `Prediction`s.

  Args:
    checkpoint: a training workdir or ported-weights folder (or a loaded
      `checkpoints.Checkpoint`).
    clips, crops: views per video (default: the checkpoint config's eval views).
    n, t_out, image_size, arrangement: override the checkpoint's TIME layer.
    ema: True: the run's EMA parameters; False: its raw parameters; None: those its
      evaluation used (`checkpoints.evaluates_ema`: the EMA when the run had
      ``train.ema_decay > 0`` and ``train.ema_eval``). A loaded `Checkpoint` is used
      as loaded.

  Raises:
    CheckpointError: the checkpoint is missing or unreadable, or ``ema`` is True and
      it has no EMA parameters.
    ValueError: it holds no classifier (a pretrainer or a model without head).
  """

  def __init__(self, checkpoint: str | checkpoints.Checkpoint, *, clips: int | None = None,
               crops: int | None = None, n: int | None = None, t_out: int | None = None,
               image_size: int | None = None, arrangement: str | None = None,
               ema: bool | None = None):
    if isinstance(checkpoint, checkpoints.Checkpoint):
      self.ckpt = checkpoint
    else:
      self.ckpt = checkpoints.load(checkpoint, ema=ema, n=n, t_out=t_out,
                                   image_size=image_size, arrangement=arrangement)
    if self.ckpt.is_pretrainer or not self.ckpt.class_names:
      raise ValueError(f"{self.ckpt.path} holds {self.ckpt.model_name!r} without a "
                       "classification head; predict needs a fine-tuned classifier.")
    i = self.ckpt.config.input
    self.clips = int(clips or i.get("eval_clips", 1))
    self.crops = int(crops or i.get("eval_crops", 1))
    parse_views(f"{self.clips}x{self.crops}")
    self.merge = str(i.get("eval_merge", "logits"))
    model = self.ckpt.build_model()
    self._apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    self.variables = jax.device_put(self.ckpt.variables)

  @property
  def class_names(self) -> list[str]:
    return self.ckpt.class_names

  def logits(self, video: str) -> np.ndarray:
    """float32 ``[views, num_classes]`` for one video file or frame folder.

    Raises:
      DecodeError: the file or folder is missing or cannot be decoded.
    """
    cells = inputs.read_views(video, self.ckpt.config, clips=self.clips, crops=self.crops)
    x = inputs.model_input(cells, self.ckpt.config)
    return np.asarray(self._apply(self.variables, x), np.float32)

  def predict_one(self, video: str, top_k: int = 5) -> Prediction:
    probs = metrics.merge_views(self.logits(video), self.merge)
    order = np.argsort(-probs, kind="stable")[:top_k]
    return Prediction(video, [(self.class_names[k], float(probs[k])) for k in order],
                      probs.astype(np.float32), self.clips * self.crops, self.ckpt.ema,
                      self.ckpt.path, self.ckpt.step)

  def describe(self) -> str:
    """One line: the checkpoint folder, its step and the parameters used."""
    step = f"step {self.ckpt.step}" if self.ckpt.step is not None else "ported weights"
    params = "EMA" if self.ckpt.ema else "raw"
    return (f"checkpoint {self.ckpt.path} ({step}, {params} parameters, "
            f"{self.clips}x{self.crops} views)")

  def __call__(self, videos: str | Sequence[str], top_k: int = 5) -> list[Prediction]:
    """`Prediction`s of one video path or a list of them, in order.

    Raises:
      DecodeError: at the first video that cannot be read (the CLI reports each such
        video and goes on with the rest).
    """
    if isinstance(videos, str):
      videos = [videos]
    return [self.predict_one(v, top_k) for v in videos]


def predict(checkpoint: str, videos: str | Sequence[str], *, views: tuple[int, int] | None
            = None, top_k: int = 5, **overrides) -> list[Prediction]:
  """Loads ``checkpoint`` once and predicts every video (see `Predictor`)."""
  clips, crops = views if views is not None else (None, None)
  return Predictor(checkpoint, clips=clips, crops=crops, **overrides)(videos, top_k)


# What one video can raise: unreadable or undecodable, or frames the model cannot take.
_VIDEO_ERRORS = (DecodeError, OSError, ValueError)


def _video_error(video: str, err: Exception) -> str:
  """``'error: FILE: reason'`` (DecodeError messages already start with the file)."""
  text = str(err) or type(err).__name__
  return f"error: {text}" if text.startswith(video) else f"error: {video}: {text}"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m time_jax.predict", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--checkpoint", required=True, help="training workdir or ported folder")
  p.add_argument("--video", required=True, nargs="+",
                 help="video file(s) or frame folder(s)")
  p.add_argument("--views", default=None,
                 help="clips x crops averaged, e.g. 2x3 (default: the run's eval views)")
  p.add_argument("--top", type=int, default=5, help="classes to list")
  p.add_argument("--n", type=int, default=None, help="override the checkpoint's TIME N")
  p.add_argument("--t-out", type=int, default=None, help="override T*")
  p.add_argument("--image-size", type=int, default=None, help="override H* = W*")
  p.add_argument("--arrangement", default=None, choices=("spatial", "temporal"))
  p.add_argument("--json", action="store_true", help="print one JSON object per video")
  p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                 help="use the run's parameter EMA, or (--no-ema) its raw parameters "
                 "(default: those its evaluation used)")
  p.add_argument("--every", type=float, default=None, help="classify windows starting "
                 "every SECONDS along each video: OUT/<name>.timeline.csv and .png")
  p.add_argument("--window", type=float, default=None, help="with --every: seconds a "
                 "window spans (default: one clip's span; for 'segments' sampling --every)")
  p.add_argument("--out", default=".", help="with --every: the timelines' folder")
  args = p.parse_args(argv)
  if args.top < 1:
    print(f"error: --top {args.top}: list at least one class.", file=sys.stderr)
    return 2
  try:
    clips, crops = parse_views(args.views) if args.views else (None, None)
    predictor = Predictor(args.checkpoint, clips=clips, crops=crops, n=args.n,
                          t_out=args.t_out, image_size=args.image_size,
                          arrangement=args.arrangement, ema=args.ema)
  except (checkpoints.CheckpointError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.every is not None:  # windows along each video (time_jax.timeline)
    from time_jax import extract  # pylint: disable=g-import-not-at-top  # it imports this module
    return extract.timelines(predictor, args.video, every=args.every, span=args.window,
                             views=(clips, crops) if args.views else None, top=args.top,
                             out=args.out, as_json=args.json)
  if not args.json:
    print(predictor.describe())
  failed = []
  for video in args.video:
    try:
      result = predictor.predict_one(video, args.top)
    except _VIDEO_ERRORS as e:
      print(_video_error(video, e), file=sys.stderr, flush=True)
      failed.append(video)
      continue
    if args.json:
      print(json.dumps(result.to_json()), flush=True)
    else:
      print(f"{video} ({result.views} views{', EMA' if result.ema else ''})")
      for rank, (name, prob) in enumerate(result.top, 1):
        print(f"  {rank}. {name:<30s} {prob:.4f}")
      sys.stdout.flush()
  if failed:
    print(f"error: {len(failed)} of {len(args.video)} videos failed (listed above).",
          file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
