"""Matplotlib drawing shared by the diagnostics (Agg backend, files only)."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position


def barh(labels: Sequence[str], values: Sequence[float], path: str, *, title: str = "",
         xlabel: str = "") -> None:
  """One horizontal bar per label, first label at the top; x axis from the data's min."""
  n = max(len(labels), 1)
  fig, ax = plt.subplots(figsize=(8, 1.0 + 0.22 * n))
  y = np.arange(len(labels))
  values = np.asarray(values, np.float64)
  ax.barh(y, values, color="tab:blue", height=0.7)
  ax.set_yticks(y, labels, fontsize=7)
  ax.invert_yaxis()
  if len(values):
    lo = min(0.0, float(values.min()))
    ax.set_xlim(lo, 1.0 if values.max() <= 1.0 else float(values.max()) * 1.05)
  ax.set_xlabel(xlabel)
  ax.set_title(title, fontsize=9)
  ax.grid(axis="x", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def image_grid(rows: Sequence[Sequence[np.ndarray]], path: str, *,
               row_labels: Sequence[str] = (), col_labels: Sequence[str] = (),
               title: str = "", cmap: str = "viridis", cell: float = 1.6) -> None:
  """Images in a grid: ``rows[r][c]`` is ``[h, w, 3]`` uint8/float in [0, 1] or
  ``[h, w]`` (drawn with ``cmap``); rows may differ in length."""
  nr = len(rows)
  nc = max(len(r) for r in rows)
  # Wide enough for the title's longest word (a video's name) at 9 pt; wrapped at spaces.
  width = max(cell * nc + 1.2, 0.08 * max((len(w) for w in title.split()), default=0))
  fig, axes = plt.subplots(nr, nc, figsize=(width, cell * nr + 0.6), squeeze=False)
  for r in range(nr):
    for c in range(nc):
      ax = axes[r][c]
      ax.set_xticks([])
      ax.set_yticks([])
      if c >= len(rows[r]):
        ax.axis("off")
        continue
      img = np.asarray(rows[r][c])
      ax.imshow(img, cmap=cmap if img.ndim == 2 else None, interpolation="nearest")
      if c == 0 and r < len(row_labels):
        ax.set_ylabel(row_labels[r], fontsize=7)
      if r == 0 and c < len(col_labels):
        ax.set_title(col_labels[c], fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9, wrap=True)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def upsample(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """``[gh, gw]`` -> ``[H, W]`` by repeating each cell (H, W multiples of gh, gw), else
  nearest-neighbour."""
  gh, gw = heat.shape
  h, w = size
  if h % gh == 0 and w % gw == 0:
    return np.kron(heat, np.ones((h // gh, w // gw), heat.dtype))
  rows = (np.arange(h) * gh) // h
  cols = (np.arange(w) * gw) // w
  return heat[rows][:, cols]


def overlay(frame: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5,
            cmap: str = "jet") -> np.ndarray:
  """A frame ``[H, W, 3]`` uint8 blended with a heatmap ``[gh, gw]`` (min-max scaled);
  float ``[H, W, 3]`` in [0, 1]."""
  heat = np.asarray(heat, np.float64)
  span = heat.max() - heat.min()
  heat = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
  colour = plt.get_cmap(cmap)(upsample(heat, frame.shape[:2]))[..., :3]
  return (1 - alpha) * (np.asarray(frame, np.float64) / 255.0) + alpha * colour
