"""Attention maps of every layer of a ViT or VideoMAE, the class map, overlays on TIME frames.

  python -m time_jax.diagnose attention --checkpoint CKPT --video FILE --out DIR

The video's TIME frames (the checkpoint's N, T*, arrangement and size; evaluation view)
go through the model with the ``'intermediates'`` collection mutable, and each block's
``attn/attention_weights`` ``[images, heads, queries, keys]`` becomes a map over the
patch grid (``image_size / patch`` on a side, 14×14 at 224² with 16² patches):

* ViT (class token first, frames as separate images): the class token's row, averaged
  over heads: ``[T*, gh, gw]``, one map per TIME frame.
* VideoMAE (no class token, tokens ``(t, h, w)`` over tubelets): the mean over heads and
  over all queries of each key's weight: ``[T*/tubelet, gh, gw]``, summing to 1.

The class map is the predicted class's head weights applied to every patch token of the
last block after the final LayerNorm (``norm`` / ``fc_norm``), a class activation map
over the same grid. Writes ``attention_layers.png`` (rows: layers), ``class_map.png``
(heatmap), ``overlay.png`` (TIME frames, last-layer attention and class map blended on
them), ``attention.csv`` (layer, t, row, col, weight) and ``attention.json`` (the
prediction, the class map, per-layer summaries).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from typing import Any

import jax
import numpy as np

from time_jax import checkpoints
from time_jax.diagnose import inputs
from time_jax.diagnose import plots

LN_EPS = 1e-6  # the LayerNorm eps of ViT and VideoMAE


def run_model(model, variables: dict[str, Any], x) -> tuple[np.ndarray, dict[str, Any]]:
  """``(logits [batch, classes], intermediates)`` of one forward pass in eval mode."""
  logits, state = jax.jit(
      lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))(variables, x)
  return np.asarray(logits), jax.tree.map(np.asarray, dict(state["intermediates"]))


def _blocks(intermediates: dict[str, Any]) -> list[str]:
  names = [k for k in intermediates if k.startswith("blocks_") and k[7:].isdigit()]
  return sorted(names, key=lambda k: int(k[7:]))


def attention_weights(intermediates: dict[str, Any]) -> list[np.ndarray]:
  """Each block's softmax weights ``[images, heads, queries, keys]``, in block order."""
  out = []
  for name in _blocks(intermediates):
    sown = intermediates[name].get("attn", {}).get("attention_weights")
    if sown is not None:
      out.append(np.asarray(sown[0]))
  if not out:
    raise ValueError("the model sowed no attention weights; attention needs a ViT or "
                     "VideoMAE classifier.")
  return out


def attention_map(weights: np.ndarray, batch: int, grid: tuple[int, int]) -> np.ndarray:
  """One layer's weights -> maps over the patch grid.

  Args:
    weights: ``[images, heads, tokens, tokens]``.
    batch: clips in the input (ViT runs ``batch·time`` images).
    grid: ``(gh, gw)`` patches per frame.

  Returns:
    float ``[batch, t, gh, gw]``: with a class token (``tokens = 1 + gh·gw``) its row
    over the patch keys, averaged over heads, ``t`` = frames; otherwise the mean over
    heads and queries, ``t`` = tokens / (gh·gw) temporal positions.
  """
  images, _, queries, keys = weights.shape
  patches = grid[0] * grid[1]
  if keys == patches + 1:
    maps = weights[:, :, 0, 1:].mean(axis=1)  # [images, P]
    return maps.reshape(batch, images // batch, *grid)
  if keys % patches:
    raise ValueError(f"{keys} attention keys do not fit a {grid[0]}x{grid[1]} patch grid.")
  del queries
  maps = weights.mean(axis=(1, 2))  # [batch, keys]
  return maps.reshape(images, keys // patches, *grid)


def _layer_norm(x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
  mu = x.mean(-1, keepdims=True)
  var = x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + LN_EPS) * params["scale"] + params["bias"]


def class_map(intermediates: dict[str, Any], params: dict[str, Any], label: np.ndarray,
              batch: int, grid: tuple[int, int]) -> np.ndarray | None:
  """Head weights of ``label`` applied to each last-block patch token (after the final
  LayerNorm): float ``[batch, t, gh, gw]``, None when the model sows no ``features``."""
  blocks = _blocks(intermediates)
  if not blocks or "features" not in intermediates[blocks[-1]] or "head" not in params:
    return None
  feats = np.asarray(intermediates[blocks[-1]]["features"][0], np.float64)  # [img, tok, d]
  patches = grid[0] * grid[1]
  if feats.shape[1] == patches + 1:
    feats = feats[:, 1:]
  norm = params.get("fc_norm") or params.get("norm")
  if norm is not None:
    feats = _layer_norm(feats, norm)
  kernel = np.asarray(params["head"]["kernel"], np.float64)  # [d, classes]
  images = feats.shape[0]
  per_clip = np.repeat(np.asarray(label), images // batch)
  scores = np.einsum("itd,id->it", feats, kernel[:, per_clip].T)
  scores = scores + np.asarray(params["head"]["bias"], np.float64)[per_clip][:, None]
  if images == batch:  # VideoMAE: tokens (t, h, w)
    return scores.reshape(batch, -1, *grid)
  return scores.reshape(batch, images // batch, *grid)


def analyse(ckpt: checkpoints.Checkpoint, x) -> dict[str, Any]:
  """Attention maps and the class map of clips ``x: [batch, t_out, H, W, 3]`` (normalised).

  Returns:
    ``{'logits': [batch, classes], 'weights': [layers × [images, heads, q, k]],
    'maps': [layers, batch, t, gh, gw], 'class_map': [batch, t, gh, gw] or None,
    'grid': (gh, gw)}``.
  """
  if ckpt.is_pretrainer:
    raise ValueError(f"{ckpt.path} holds the pretrainer {ckpt.model_name!r}; attention "
                     "needs a ViT or VideoMAE classifier.")
  model = ckpt.build_model()
  patch = getattr(model, "patch_size", None)
  if patch is None:
    raise ValueError(f"{ckpt.model_name!r} has no attention; attention needs a ViT or "
                     "VideoMAE (use `features` for ResNet).")
  grid = (x.shape[2] // patch, x.shape[3] // patch)
  logits, inter = run_model(model, ckpt.variables, x)
  weights = attention_weights(inter)
  batch = x.shape[0]
  maps = np.stack([attention_map(w, batch, grid) for w in weights])
  cmap = class_map(inter, ckpt.variables["params"], logits.argmax(-1), batch, grid)
  return dict(logits=logits, weights=weights, maps=maps, class_map=cmap, grid=grid)


def _frame_maps(maps: np.ndarray, frames: int) -> list[np.ndarray]:
  """``[t, gh, gw]`` -> one map per TIME frame (a tubelet's map repeats)."""
  return [maps[f * len(maps) // frames] for f in range(frames)]


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--checkpoint", required=True, help="ViT / VideoMAE workdir or folder")
  p.add_argument("--video", required=True, help="a video file or frame folder")
  p.add_argument("--n", type=int, default=None, help="override the checkpoint's TIME N")
  p.add_argument("--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> str:
  """The CLI tool; returns a one-line summary."""
  ckpt = checkpoints.load(args.checkpoint, n=args.n)
  x = inputs.model_input(inputs.read_views(args.video, ckpt.config), ckpt.config)
  res = analyse(ckpt, x)
  frames = inputs.to_uint8(np.asarray(x[0]), ckpt.config)  # [T*, H, W, 3]
  maps = res["maps"][:, 0]  # [layers, t, gh, gw]
  label = int(res["logits"][0].argmax())
  name = ckpt.class_names[label] if label < len(ckpt.class_names) else f"class_{label}"
  os.makedirs(args.out, exist_ok=True)
  layers_png = os.path.join(args.out, "attention_layers.png")
  plots.image_grid([list(m) for m in maps], layers_png, cmap="inferno",
                   row_labels=[f"layer {i}" for i in range(len(maps))],
                   col_labels=[f"t={i}" for i in range(maps.shape[1])],
                   title=f"attention, {ckpt.model_name}, grid {res['grid'][0]}x{res['grid'][1]}")
  rows = [list(frames), [plots.overlay(f, m) for f, m in zip(frames, _frame_maps(maps[-1], len(frames)))]]
  labels = ["TIME frames", "last-layer attention"]
  if res["class_map"] is not None:
    cm = res["class_map"][0]
    plots.image_grid([list(cm)], os.path.join(args.out, "class_map.png"), cmap="RdBu_r",
                     col_labels=[f"t={i}" for i in range(len(cm))],
                     title=f"class map of {name!r} over the patch grid")
    rows.append([plots.overlay(f, m) for f, m in zip(frames, _frame_maps(cm, len(frames)))])
    labels.append(f"class map: {name}")
  overlay_png = os.path.join(args.out, "overlay.png")
  plots.image_grid(rows, overlay_png, row_labels=labels,
                   col_labels=[f"frame {i}" for i in range(len(frames))])
  with open(os.path.join(args.out, "attention.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["layer", "t", "row", "col", "weight"])
    for (layer, t, r, c), v in np.ndenumerate(maps):
      w.writerow([layer, t, r, c, f"{v:.6g}"])
  summary = dict(
      checkpoint=ckpt.path, video=args.video, model=ckpt.model_name, grid=list(res["grid"]),
      predicted=dict(index=label, name=name),
      layers=[dict(layer=i, max=float(m.max()), mean=float(m.mean()),
                   entropy=float(-(m * np.log(np.maximum(m, 1e-12))).sum() / m.shape[0]))
              for i, m in enumerate(maps)],
      class_map=None if res["class_map"] is None else res["class_map"][0].tolist())
  with open(os.path.join(args.out, "attention.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return (f"wrote {layers_png}, {overlay_png}: {len(maps)} layers over a "
          f"{res['grid'][0]}x{res['grid'][1]} grid; predicted {name!r}")
