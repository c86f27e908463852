"""Exports a trained classifier as one portable `jax.export` artifact plus a JSON sidecar.

  python -m time_jax.export --checkpoint CKPT --out FILE [--ema | --no-ema]
      [--platforms cpu,cuda] [--n N] [--t-out T] [--image-size S] [--arrangement A]

CKPT is a training workdir (its newest step; raw or EMA parameters, chosen as
`time_jax.predict` chooses them) or a ported-weights folder (`time_jax.checkpoints`).

FILE holds the serialised inference function, the parameters baked in as constants, so
a client needs nothing but ``jax.export.deserialize(open(FILE, 'rb').read()).call``:

  cells:    uint8   ``[batch, T*·N², H*/N, W*/N, 3]``  the sampled, cropped and resized
            frames of ``batch`` views, in temporal order (the host's part of evaluation)
  logits:   float32 ``[batch, num_classes]``
  features: float32 ``[batch, embed]``  the pooled pre-logits features

Inside: the TIME arrangement, normalisation and resize of `time_layer.preprocess` and
the model in float32 with the portable XLA kernels (``impl='xla'``). ``batch`` is
symbolic (any size, one artifact), and the function is lowered for every platform in
``--platforms`` (default CPU and CUDA; lowering for CUDA needs no GPU).

``FILE.json`` (the sidecar) says what a client needs to make the cells and read the
outputs: frames per clip, cell size, N, T*, arrangement, mean/std, the temporal sampling
rule (``time.sampling``), the evaluation views (``input.eval_clips`` ×
``input.eval_crops``, crop fraction) and how their outputs merge (``input.eval_merge``),
class names, the checkpoint and step, input/output shapes and dtypes and the JAX version.
``examples/classify_exported.py`` is a client of both that does not import time_jax.

The parameters are baked in rather than passed: a client then calls the function with
the cells alone and cannot pair it with the wrong weights. The artifact is as large as
the float32 parameters (4 bytes each), under the 2 GB a FlatBuffer can hold (VideoMAE-L
fits). The sampling rules and merges the sidecar can name are `SAMPLING_RULES` and
`MERGE_RULES`; an unknown one in the checkpoint's config is an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from time_jax import checkpoints
from time_jax import console
from time_jax import models
from time_jax.diagnose import inputs

FORMAT = "time_jax.export/1"
PLATFORMS = ("cpu", "cuda")
KNOWN_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # jax.export's names
SAMPLING_RULES = ("segments", "dense")
MERGE_RULES = ("logits", "softmax")
SIDECAR_SUFFIX = ".json"

# What the sidecar says about each sampling rule and merge, for a reader without our code.
_SAMPLING_TEXT = {
    "segments": "T frames are cut into L = T*·N² contiguous segments, segment i = "
                "[i·T // L, (i+1)·T // L); clip k of K takes the frame at "
                "start + (end - start)·(2k+1) // (2K) of each (K = 1: start + "
                "(end - start - 1) // 2); a video shorter than L frames takes i·T // L.",
    "dense": "idx = range(0, T, stride) padded with its last element to L = T*·N²; "
             "step = max((len(idx) - L) / (K - 1), 0); clip k of K takes "
             "idx[int(k·step) : int(k·step) + L] (VideoMAE's test sampling); one clip "
             "(K = 1) takes idx[s : s + L] with s = (len(idx) - L) // 2.",
}
_CROP_TEXT = ("short side resized to max(cell) / crop_fraction, then a cell-sized crop: "
              "the centre (1 crop) or, for 3 crops, the start, centre and end of the long "
              "side; views are ordered clip·crops + crop.")
_MERGE_TEXT = {"logits": "softmax of the mean of the views' logits",
               "softmax": "mean of the views' softmaxes"}


def sidecar_path(artifact: str) -> str:
  """The sidecar of an artifact: ``FILE.json`` next to ``FILE``."""
  return artifact + SIDECAR_SUFFIX


def input_shape(config) -> tuple[int, int, int, int]:
  """``(T*·N², cell, cell, 3)``: one view's cells, ``cell = image_size // N``."""
  t = config.time
  cell = int(config.image_size) // int(t.n)
  return (int(t.t_out) * int(t.n) ** 2, cell, cell, 3)


def inference_function(ckpt: checkpoints.Checkpoint
                       ) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
  """``cells uint8 [batch, T*·N², cell, cell, 3] -> (logits, features)``, float32.

  The checkpoint's variables are closed over (they become constants when traced); the
  arrangement and normalisation are `inputs.model_input`'s, as in `time_jax.predict`.
  """
  model = ckpt.build_model(impl="xla")  # one portable graph for every platform
  variables, config = ckpt.variables, ckpt.config

  def infer(cells):
    return models.logits_and_features(model, variables, inputs.model_input(cells, config))
  return infer


def export(ckpt: checkpoints.Checkpoint,
           platforms: Sequence[str] = PLATFORMS) -> jax.export.Exported:
  """The checkpoint's `inference_function`, exported with a symbolic batch size."""
  batch, = jax.export.symbolic_shape("batch")
  spec = jax.ShapeDtypeStruct((batch, *input_shape(ckpt.config)), jnp.uint8)
  return jax.export.export(jax.jit(inference_function(ckpt)),
                           platforms=tuple(platforms))(spec)


def _choice(config, section: str, field: str, default: str, allowed: Sequence[str]) -> str:
  value = str(config[section].get(field, default))
  if value not in allowed:
    raise ValueError(f"{section}.{field}={value!r} in the checkpoint's config is not one "
                     f"of {tuple(allowed)}.")
  return value


def _rules(config) -> tuple[str, str]:
  """``(sampling rule, merge)`` of the checkpoint's config, checked."""
  return (_choice(config, "time", "sampling", "segments", SAMPLING_RULES),
          _choice(config, "input", "eval_merge", "logits", MERGE_RULES))


def _aval(aval) -> dict[str, Any]:
  return dict(shape=[d if isinstance(d, int) else str(d) for d in aval.shape],
              dtype=str(aval.dtype))


def sidecar(ckpt: checkpoints.Checkpoint, exported: jax.export.Exported,
            artifact: str) -> dict[str, Any]:
  """What a client needs to feed ``exported`` and read its outputs (JSON-ready)."""
  config, t, i = ckpt.config, ckpt.config.time, ckpt.config.input
  frames, cell_h, cell_w, _ = input_shape(config)
  sampling, merge = _rules(config)
  stats = inputs.stats(config)
  logits, features = exported.out_avals
  return {
      "format": FORMAT,
      "artifact": os.path.basename(artifact),
      "checkpoint": ckpt.path, "checkpoint_kind": ckpt.kind, "step": ckpt.step,
      "ema": ckpt.ema, "model": ckpt.model_name,
      "modality": str(config.dataset.get("modality", "rgb")),
      "frames_per_clip": frames, "cell_size": [cell_h, cell_w], "n": int(t.n),
      "t_out": int(t.t_out), "arrangement": str(t.arrangement),
      "image_size": int(config.image_size),
      "mean": list(stats["mean"]), "std": list(stats["std"]),
      "sampling": {"rule": sampling, "dense_stride": int(t.get("dense_stride", 4)),
                   "rule_text": _SAMPLING_TEXT[sampling]},
      "views": {"clips": int(i.get("eval_clips", 1)), "crops": int(i.get("eval_crops", 1)),
                "crop_fraction": float(i.get("eval_crop_fraction", 0.875)),
                "crop_text": _CROP_TEXT, "merge": merge, "merge_text": _MERGE_TEXT[merge]},
      "class_names": list(ckpt.class_names),
      "inputs": {"cells": _aval(exported.in_avals[0])},
      "outputs": {"logits": _aval(logits), "features": _aval(features)},
      "platforms": list(exported.platforms),
      "jax_version": jax.__version__,
      "calling_convention_version": exported.calling_convention_version,
  }


def write(ckpt: checkpoints.Checkpoint, out: str,
          platforms: Sequence[str] = PLATFORMS) -> dict[str, Any]:
  """Writes the artifact to ``out`` and its sidecar to ``out.json``; returns the sidecar.

  Raises:
    ValueError: the checkpoint holds no classifier, its config names an unknown sampling
      rule or merge, or a platform is not one of `KNOWN_PLATFORMS`.
  """
  if ckpt.is_pretrainer or not ckpt.class_names:
    raise ValueError(f"{ckpt.path} holds {ckpt.model_name!r} without a classification "
                     "head; export needs a fine-tuned classifier.")
  unknown = [p for p in platforms if p not in KNOWN_PLATFORMS]
  if unknown or not platforms:
    raise ValueError(f"--platforms {','.join(platforms)}: lower for some of "
                     f"{', '.join(KNOWN_PLATFORMS)} (jax.export's names; 'cuda', not 'gpu').")
  _rules(ckpt.config)  # before the export, which takes a while for a large model
  exported = export(ckpt, platforms)
  meta = sidecar(ckpt, exported, out)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  text = json.dumps(meta, indent=1, ensure_ascii=False)
  for path, data in ((out, exported.serialize()), (sidecar_path(out), text.encode())):
    with open(path + ".tmp", "wb") as f:  # a reader never sees half a file
      f.write(data)
    os.replace(path + ".tmp", path)
  return meta


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m time_jax.export", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--checkpoint", required=True, help="training workdir or ported folder")
  p.add_argument("--out", required=True, help="the artifact; its sidecar is OUT.json")
  p.add_argument("--platforms", default=",".join(PLATFORMS),
                 help="platforms to lower for, comma-separated (default: cpu,cuda)")
  p.add_argument("--n", type=int, default=None, help="override the checkpoint's TIME N")
  p.add_argument("--t-out", type=int, default=None, help="override T*")
  p.add_argument("--image-size", type=int, default=None, help="override H* = W*")
  p.add_argument("--arrangement", default=None, choices=("spatial", "temporal"))
  p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                 help="export the run's parameter EMA, or (--no-ema) its raw parameters "
                 "(default: those its evaluation used)")
  args = p.parse_args(argv)
  platforms = [s.strip() for s in args.platforms.split(",") if s.strip()]
  try:
    ckpt = checkpoints.load(args.checkpoint, ema=args.ema, n=args.n, t_out=args.t_out,
                            image_size=args.image_size, arrangement=args.arrangement)
    meta = write(ckpt, args.out, platforms)
  except (checkpoints.CheckpointError, ValueError) as e:
    console.usage_error(str(e))
  step = f"step {meta['step']}" if meta["step"] is not None else "ported weights"
  print(f"exported {meta['checkpoint']} ({step}, {'EMA' if meta['ema'] else 'raw'} "
        f"parameters) to {args.out} for {', '.join(meta['platforms'])}; "
        f"input uint8 {meta['inputs']['cells']['shape']}, sidecar {sidecar_path(args.out)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
