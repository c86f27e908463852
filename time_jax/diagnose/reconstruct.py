r"""VideoMAE reconstructions of a video's TIME frames at several masking ratios.

  python -m time_jax.diagnose reconstruct --checkpoint CKPT --video FILE \
      --mask-ratios 0.5,0.75,0.9 --out DIR

CKPT is a VideoMAE pretraining checkpoint (``videomae_*_pretrain``). The video's TIME
frames (the checkpoint's N, T*, arrangement and size; evaluation view) are tube-masked
at each ratio and reconstructed with the training loop's own pretraining eval step:
visible patches from the input, masked ones from the decoder (un-normalised with each
patch's mean and std under ``norm_pix_loss``). Writes ``reconstruct.png`` (rows: the
TIME frames, then per ratio the masked input and the reconstruction; frames left to
right) and ``reconstruct.csv`` / ``.json`` (per ratio: masked tokens and the loss).
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
from time_jax.models import videomae
from time_jax.train import steps as steps_lib


def reconstruct(ckpt: checkpoints.Checkpoint, cells: np.ndarray, ratios: list[float], *,
                seed: int = 0) -> dict[str, Any]:
  """Masks and reconstructs one clip at each ratio.

  Args:
    ckpt: a pretraining checkpoint.
    cells: uint8 ``[t_out·n·n, cell, cell, 3]``, one view from `inputs.read_views`.
    ratios: masking ratios in (0, 1).
    seed: the masks' PRNG seed (one key for every ratio).

  Returns:
    ``{'frames': [t, H, W, 3], 'ratios': [{'ratio', 'masked_tokens', 'loss',
    'masked': [t, H, W, 3], 'reconstruction': [t, H, W, 3]}]}``, images float in [0, 1].
  """
  if not ckpt.is_pretrainer:
    raise ValueError(
        f"{ckpt.path} holds {ckpt.model_name!r}; reconstruct needs a VideoMAE pretraining "
        "checkpoint (a videomae_*_pretrain model).")
  params = ckpt.variables["params"]
  config = ckpt.config
  x = inputs.model_input(np.asarray(cells)[None], config).astype(
      steps_lib.compute_dtype(config))  # the input of the pretraining eval step
  stats = dict(mean=tuple(config.input.mean), std=tuple(config.input.std))
  out, frames = [], None
  for ratio in ratios:
    model = ckpt.build_model(mask_ratio=float(ratio))

    @jax.jit
    def run(params, x, key, model=model):
      mask = videomae.tube_mask(key, x.shape[0], x.shape[1], x.shape[2], model.patch_size,
                                model.tubelet_size, model.mask_ratio)
      pred = model.apply({"params": params}, x, mask, train=False)
      return videomae.reconstruct(
          pred, x, mask, patch_size=model.patch_size, tubelet_size=model.tubelet_size,
          norm_pix_loss=config.pretrain.norm_pix_loss, **stats)

    loss, orig, masked, recon = run(params, x, jax.random.PRNGKey(seed))
    frames = np.asarray(orig[0])
    out.append(dict(ratio=float(ratio),
                    masked_tokens=model.num_masked(config.time.t_out, config.image_size),
                    loss=float(loss[0]), masked=np.asarray(masked[0]),
                    reconstruction=np.asarray(recon[0])))
  return dict(frames=frames, ratios=out)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--checkpoint", required=True, help="VideoMAE pretraining workdir or folder")
  p.add_argument("--video", required=True, help="a video file or frame folder")
  p.add_argument("--mask-ratios", default="0.5,0.75,0.9", help="comma-separated, in (0, 1)")
  p.add_argument("--seed", type=int, default=0, help="seed of the tube masks")
  p.add_argument("--n", type=int, default=None, help="override the checkpoint's TIME N")
  p.add_argument("--out", required=True, help="output folder")


def _ratios(text: str) -> list[float]:
  try:
    ratios = [float(r) for r in text.split(",") if r.strip()]
  except ValueError as e:
    raise ValueError(f"--mask-ratios {text!r}: give numbers like 0.5,0.75,0.9.") from e
  if not ratios or not all(0 < r < 1 for r in ratios):
    raise ValueError(f"--mask-ratios {text!r}: every ratio must be in (0, 1).")
  return ratios


def run(args: argparse.Namespace) -> str:
  """The CLI tool; returns a one-line summary."""
  ratios = _ratios(args.mask_ratios)
  ckpt = checkpoints.load(args.checkpoint, n=args.n)
  cells = inputs.read_views(args.video, ckpt.config)[0]
  result = reconstruct(ckpt, cells, ratios, seed=args.seed)
  os.makedirs(args.out, exist_ok=True)
  rows, labels = [list(result["frames"])], ["TIME frames"]
  for r in result["ratios"]:
    rows += [list(r["masked"]), list(r["reconstruction"])]
    labels += [f"masked {r['ratio']:g}", f"recon. {r['ratio']:g}"]
  png = os.path.join(args.out, "reconstruct.png")
  t = len(result["frames"])
  plots.image_grid(rows, png, row_labels=labels, col_labels=[f"t={i}" for i in range(t)],
                   title=f"{os.path.basename(args.video)}: VideoMAE reconstructions")
  summary = [{k: r[k] for k in ("ratio", "masked_tokens", "loss")} for r in result["ratios"]]
  with open(os.path.join(args.out, "reconstruct.json"), "w") as f:
    json.dump(dict(checkpoint=ckpt.path, video=args.video, ratios=summary), f, indent=2)
  with open(os.path.join(args.out, "reconstruct.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["ratio", "masked_tokens", "loss"])
    w.writeheader()
    w.writerows(summary)
  return f"wrote {png}: " + ", ".join(f"ratio {s['ratio']:g} loss {s['loss']:.4f}"
                                      for s in summary)
