r"""ResNet feature maps at named layers for a video's TIME frames.

  python -m time_jax.diagnose features --checkpoint CKPT --video FILE \
      --layers conv1,layer1.0.conv1,layer4.2 --out DIR

Layer names are torchvision's: ``conv1`` (the stem convolution), ``layer{s}.{b}`` (a
bottleneck's output) and ``layer{s}.{b}.conv{1,2,3}`` (its convolutions), naming the
Flax modules ``conv1``, ``layer{s}_{b}``, ``layer{s}_{b}/conv{k}`` whose outputs are
captured (``capture_intermediates``). Each map is ``[batch·time, h, w, channels]``
(frames run as separate images). Writes one
``features_<layer>.png`` per layer (rows: TIME frames; columns: the frame, the mean over
channels, then the ``--channels`` most active channels) and ``features.csv`` /
``.json`` (shape, mean, std, fraction of zeros, the channels drawn).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
from typing import Any, Sequence

import jax
import numpy as np

from time_jax import checkpoints
from time_jax.diagnose import inputs
from time_jax.diagnose import plots

DEFAULT_LAYERS = "conv1,layer1.0.conv1,layer1.0,layer2.0,layer3.0,layer4.0"


def module_path(name: str) -> tuple[str, ...]:
  """A torchvision layer name -> the Flax module path whose output it is.

  ``conv1`` -> ``('conv1',)``; ``layer1.0`` -> ``('layer1_0',)`` (the block's output);
  ``layer1.0.conv2`` -> ``('layer1_0', 'conv2')``.
  """
  m = re.fullmatch(r"(layer\d+)\.(\d+)(?:\.(\w+))?", name)
  if m:
    block = f"{m.group(1)}_{m.group(2)}"
    return (block, m.group(3)) if m.group(3) else (block,)
  if re.fullmatch(r"\w+", name):
    return (name,)
  raise ValueError(f"layer {name!r}: use torchvision names like conv1, layer1.0 or "
                   "layer2.1.conv2.")


def _torchvision_name(path: Sequence[str]) -> str:
  return ".".join(p.replace("_", ".", 1) if p.startswith("layer") else p for p in path)


def _outputs(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple, np.ndarray]:
  """Captured ``{module path: output}`` from an ``'intermediates'`` tree."""
  out = {}
  for k, v in tree.items():
    if k == "__call__":
      out[prefix] = np.asarray(v[0])
    elif isinstance(v, dict):
      out.update(_outputs(v, prefix + (k,)))
  return out


def feature_maps(model, variables: dict[str, Any], x, layers: Sequence[str]
                 ) -> dict[str, np.ndarray]:
  """The outputs of the modules ``layers`` name, for clips ``x: [batch, t_out, H, W, 3]``.

  Captured with Flax's ``capture_intermediates`` (each named module's ``__call__``
  output), so they are what the model computes in eval mode, BatchNorm running
  statistics included.

  Returns:
    ``{layer: [batch·t_out, h, w, channels]}`` in the order asked.

  Raises:
    ValueError: a layer that is not a 4-D feature map of the model (the message lists
      the ones that are).
  """
  wanted = {module_path(name) for name in layers}
  convs = lambda mdl, method: method == "__call__" and (  # pylint: disable=g-long-lambda
      tuple(mdl.path) in wanted or mdl.path[-1:] == ("conv1",) or len(mdl.path) == 1)
  run = jax.jit(lambda v, x: model.apply(v, x, train=False, capture_intermediates=convs,
                                         mutable=["intermediates"])[1])
  captured = _outputs(jax.tree.map(np.asarray, dict(run(variables, x)["intermediates"])))
  out = {}
  for name in layers:
    value = captured.get(module_path(name))
    if value is None or value.ndim != 4:
      maps = [_torchvision_name(p) for p, v in captured.items() if v.ndim == 4]
      raise ValueError(f"layer {name!r} is not a feature map of this model; e.g. "
                       f"{', '.join(maps[:12]) or 'none (features needs a ResNet)'}.")
    out[name] = value
  return out


def top_channels(fmap: np.ndarray, k: int) -> np.ndarray:
  """The ``k`` channels of ``[images, h, w, c]`` with the largest mean activation."""
  return np.argsort(-fmap.mean(axis=(0, 1, 2)), kind="stable")[:k]


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--checkpoint", required=True, help="ResNet workdir or ported folder")
  p.add_argument("--video", required=True, help="a video file or frame folder")
  p.add_argument("--layers", default=DEFAULT_LAYERS, help="comma-separated torchvision names")
  p.add_argument("--channels", type=int, default=8, help="channels drawn per layer")
  p.add_argument("--n", type=int, default=None, help="override the checkpoint's TIME N")
  p.add_argument("--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> str:
  """The CLI tool; returns a one-line summary."""
  layers = [name.strip() for name in args.layers.split(",") if name.strip()]
  for name in layers:
    module_path(name)
  ckpt = checkpoints.load(args.checkpoint, n=args.n)
  if not ckpt.model_name.startswith("resnet"):
    family = ("a VideoMAE masked autoencoder" if ckpt.is_pretrainer else
              "a VideoMAE" if ckpt.model_name.startswith("videomae") else "a ViT")
    tools = ("`reconstruct` (its masked-input reconstructions)" if ckpt.is_pretrainer
             else "`attention` (its attention maps, layer by layer)")
    raise ValueError(
        f"{ckpt.path} holds {ckpt.model_name!r}, {family}: features draws the "
        f"convolution feature maps of a ResNet (resnet50); for this model use {tools}.")
  x = inputs.model_input(inputs.read_views(args.video, ckpt.config), ckpt.config)
  maps = feature_maps(ckpt.build_model(), ckpt.variables, x, layers)
  frames = inputs.to_uint8(np.asarray(x[0]), ckpt.config)
  os.makedirs(args.out, exist_ok=True)
  table, pngs = [], []
  for name, fmap in maps.items():
    fmap = fmap[:len(frames)]  # the first clip's frames
    chans = top_channels(fmap, args.channels)
    rows = [[f, fmap[i].mean(-1)] + [fmap[i, :, :, c] for c in chans]
            for i, f in enumerate(frames)]
    png = os.path.join(args.out, f"features_{name.replace('.', '_')}.png")
    plots.image_grid(rows, png, row_labels=[f"frame {i}" for i in range(len(frames))],
                     col_labels=["input", "mean"] + [f"ch {c}" for c in chans],
                     title=f"{name}: {fmap.shape[1]}x{fmap.shape[2]}x{fmap.shape[3]}")
    pngs.append(png)
    table.append(dict(layer=name, module="/".join(module_path(name)),
                      shape="x".join(map(str, fmap.shape)), mean=float(fmap.mean()),
                      std=float(fmap.std()), zeros=float(np.mean(fmap == 0)),
                      channels=" ".join(map(str, chans))))
  with open(os.path.join(args.out, "features.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(table[0]))
    w.writeheader()
    w.writerows(table)
  with open(os.path.join(args.out, "features.json"), "w") as f:
    json.dump(dict(checkpoint=ckpt.path, video=args.video, layers=table), f, indent=2)
  return f"wrote {len(pngs)} feature PNGs to {args.out}: {', '.join(layers)}"
