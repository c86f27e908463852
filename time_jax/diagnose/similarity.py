"""Cosine similarity of the weights of two checkpoints, tensor by tensor (paper Fig. 5, 7-12).

  python -m time_jax.diagnose similarity --a CKPT_A --b CKPT_B --out DIR [--group layer]

Every parameter present in both checkpoints with the same path and shape is compared as
one flattened vector, ``cos = <a, b> / (|a| |b|)`` in float64 (two all-zero tensors count
as identical, 1; one all-zero tensor against a non-zero one, 0). ``--group layer`` joins
the tensors of a module (``blocks_3/attn/qkv``) into one vector instead. Writes
``similarity.csv`` (name, shape, cosine, relative L2 difference), ``similarity.json``
(the rows plus the tensors only one side has) and ``similarity.png``, a horizontal bar
per row in network order.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
from typing import Any, Mapping

import numpy as np

from time_jax import checkpoints
from time_jax.diagnose import plots

# Modules drawn first and last (network order); the rest sort by name, numbers as numbers.
_FIRST = ("patch_embed", "conv1", "bn1", "stem", "cls_token", "pos_embed")
_LAST = ("norm", "fc_norm", "head", "fc", "classifier", "encoder_to_decoder", "mask_token",
         "decoder")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
  """A nested dict of arrays -> ``{'a/b/kernel': array}``."""
  out = {}
  for k, v in tree.items():
    name = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(flatten(v, name))
    else:
      out[name] = np.asarray(v)
  return out


def network_order(name: str) -> tuple:
  """Sort key: stem modules first, then by name with numbers compared as numbers, then
  the norm / head / decoder modules."""
  top = name.split("/")[0]
  rank = 0 if top in _FIRST else (2 if top in _LAST else 1)
  if top == "decoder":
    rank = 3
  parts = re.split(r"(\d+)", name)
  return (rank, [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
  """Cosine similarity of two same-shaped arrays as flat float64 vectors, in [-1, 1]."""
  a = np.asarray(a, np.float64).ravel()
  b = np.asarray(b, np.float64).ravel()
  na, nb = np.linalg.norm(a), np.linalg.norm(b)
  if na == 0 or nb == 0:
    return 1.0 if na == nb else 0.0
  return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


def compare(params_a: Mapping[str, Any], params_b: Mapping[str, Any], *,
            group: str = "tensor") -> dict[str, Any]:
  """Compares the matching tensors of two parameter trees.

  Args:
    params_a, params_b: nested dicts of arrays (checkpoint ``params``).
    group: ``'tensor'`` (one row per parameter) or ``'layer'`` (one per module: its
      parameters concatenated).

  Returns:
    ``{'rows': [{'name', 'shape', 'size', 'cosine', 'rel_l2'}], 'only_a': [...],
    'only_b': [...], 'mismatched': [...]}``; rows in network order; ``rel_l2`` is
    ``|a - b| / |a|`` (``inf`` when ``|a| = 0`` and ``b`` differs).
  """
  if group not in ("tensor", "layer"):
    raise ValueError(f"group={group!r}; use 'tensor' or 'layer'.")
  fa, fb = flatten(params_a), flatten(params_b)
  only_a = sorted(set(fa) - set(fb), key=network_order)
  only_b = sorted(set(fb) - set(fa), key=network_order)
  matched = sorted((k for k in fa if k in fb and fa[k].shape == fb[k].shape),
                   key=network_order)
  mismatched = [f"{k}: {fa[k].shape} vs {fb[k].shape}" for k in sorted(fa, key=network_order)
                if k in fb and fa[k].shape != fb[k].shape]
  groups: dict[str, list[str]] = {}
  for k in matched:
    key = k.rsplit("/", 1)[0] if group == "layer" and "/" in k else k
    groups.setdefault(key, []).append(k)
  rows = []
  for name, keys in groups.items():
    a = np.concatenate([np.asarray(fa[k], np.float64).ravel() for k in keys])
    b = np.concatenate([np.asarray(fb[k], np.float64).ravel() for k in keys])
    na, diff = np.linalg.norm(a), np.linalg.norm(a - b)
    rel = float(diff / na) if na > 0 else (0.0 if diff == 0 else float("inf"))
    shape = fa[keys[0]].shape if len(keys) == 1 else (a.size,)
    rows.append(dict(name=name, shape=list(shape), size=int(a.size),
                     cosine=cosine(a, b), rel_l2=rel))
  return dict(rows=rows, only_a=only_a, only_b=only_b, mismatched=mismatched)


def write(result: dict[str, Any], out_dir: str, *, label_a: str = "A",
          label_b: str = "B") -> dict[str, str]:
  """Writes ``similarity.csv``, ``.json`` and ``.png`` into ``out_dir``; returns paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {ext: os.path.join(out_dir, f"similarity.{ext}") for ext in ("csv", "json", "png")}
  with open(paths["csv"], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["name", "shape", "size", "cosine", "rel_l2"])
    for r in result["rows"]:
      w.writerow([r["name"], "x".join(map(str, r["shape"])), r["size"],
                  f"{r['cosine']:.8f}", f"{r['rel_l2']:.8g}"])
  with open(paths["json"], "w") as f:
    json.dump(dict(result, a=label_a, b=label_b), f, indent=2)
  rows = result["rows"]
  plots.barh([r["name"] for r in rows], [r["cosine"] for r in rows], paths["png"],
             title=f"cosine similarity: {label_a} vs {label_b}", xlabel="cosine similarity")
  return paths


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--a", required=True, help="first checkpoint (workdir or ported folder)")
  p.add_argument("--b", required=True, help="second checkpoint")
  p.add_argument("--group", default="tensor", choices=("tensor", "layer"),
                 help="one bar per parameter tensor or per module")
  p.add_argument("--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> str:
  """The CLI tool; returns a one-line summary."""
  a = checkpoints.load(args.a)
  b = checkpoints.load(args.b)
  result = compare(a.variables["params"], b.variables["params"], group=args.group)
  if not result["rows"]:
    raise ValueError(f"{args.a} and {args.b} share no parameter of the same name and shape; "
                     "compare checkpoints of the same model.")
  paths = write(result, args.out, label_a=os.path.basename(a.path),
                label_b=os.path.basename(b.path))
  cos = [r["cosine"] for r in result["rows"]]
  return (f"wrote {paths['png']}, {paths['csv']}: {len(cos)} {args.group}s, cosine "
          f"min {min(cos):.4f} mean {np.mean(cos):.4f}; {len(result['only_a'])} only in A, "
          f"{len(result['only_b'])} only in B, {len(result['mismatched'])} mis-shaped")
