"""Initialising a model from other weights: matching, resizing, inflating.

`load_into` fills a freshly initialised variable tree (``{'params', 'batch_stats'?}``)
from a source tree (a ported checkpoint or a previous run), by path:

* equal path and shape: copied;
* ``pos_embed`` (ViT) of another patch grid: resized (`resize_pos_embed`), the class
  token's entry kept as is;
* a 2D patch kernel ``[p, p, c, D]`` into a tubelet kernel ``[t, p, p, c, D]``
  (ImageNet ViT -> VideoMAE): inflated (`inflate_patch_kernel`);
* a timm-style ``qkv/bias`` into VideoMAE's ``q_bias``/``v_bias``: split (the key bias
  is dropped, which changes nothing: softmax is invariant to it);
* the class head when the class count differs, and anything else that does not fit:
  kept from the initialisation, and listed in the log.

If nothing at all is copied, the weights belong to another model: `load_into` raises.

The trees may hold numpy arrays or (sharded, multi-process) ``jax.Array``s: a copied
``jax.Array`` is returned as it is (cast on device if the dtype differs), a variable kept
from the initialisation is the target's own array, and only variables that are adapted
are read on the host, which `time_jax.checkpoints.read_variables` makes possible by
reading them replicated. Nothing sharded is gathered on one host.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import jax
import numpy as np
from flax import traverse_util


def resize_pos_embed(pos: np.ndarray, grid: tuple[int, int], num_prefix: int = 1) -> np.ndarray:
  """Resizes a ViT position embedding ``[1, prefix + g·g, D]`` to ``[1, prefix + gh·gw, D]``.

  The patch part is laid out as its square grid and resized bicubically (antialiased
  when shrinking, as timm's ``resample_abs_pos_embed``); prefix tokens are kept. At the
  original size the values are returned unchanged.
  """
  prefix, patches = pos[:, :num_prefix], pos[:, num_prefix:]
  old = int(round(patches.shape[1] ** 0.5))
  if old * old != patches.shape[1]:
    raise ValueError(f"pos_embed has {patches.shape[1]} patch tokens: not a square grid.")
  if (old, old) == tuple(grid):
    return pos
  dim = pos.shape[-1]
  image = patches.reshape(old, old, dim).astype(np.float32)
  resized = jax.image.resize(image, (*grid, dim), method="bicubic", antialias=True)
  return np.concatenate([prefix, np.asarray(resized).reshape(1, -1, dim)], axis=1)


def inflate_patch_kernel(kernel: np.ndarray, tubelet: int) -> np.ndarray:
  """A 2D patch kernel ``[p, p, c, D]`` -> ``[tubelet, p, p, c, D]``, divided by tubelet.

  A clip of identical frames then embeds exactly as the image did (I3D inflation).
  """
  return np.repeat(kernel[None], tubelet, axis=0) / tubelet


def _adapt(path: tuple[str, ...], want: tuple[int, ...], source: dict) -> tuple[Any, str]:
  """A source value for target ``path`` of shape ``want``, and how it was obtained."""
  got = source.get(path)
  if got is not None and tuple(np.shape(got)) == want:
    return got, "copied"
  leaf = path[-1]
  if got is not None and leaf == "pos_embed" and len(want) == 3 and got.shape[-1] == want[-1]:
    grid = int(round((want[1] - 1) ** 0.5))
    if grid * grid == want[1] - 1:
      return resize_pos_embed(np.asarray(got), (grid, grid)), (
          f"resized {tuple(got.shape)} -> {want}")
  if (got is not None and path[-2:] == ("patch_embed", "kernel") and len(want) == 5
      and np.ndim(got) == 4 and tuple(got.shape) == want[1:]):
    return inflate_patch_kernel(np.asarray(got), want[0]), f"inflated {tuple(got.shape)} -> {want}"
  if leaf in ("q_bias", "v_bias"):
    qkv_bias = source.get(path[:-1] + ("qkv", "bias"))
    if qkv_bias is not None and qkv_bias.shape == (3 * want[0],):
      part = np.split(np.asarray(qkv_bias), 3)[0 if leaf == "q_bias" else 2]
      return part, "from qkv/bias"
  return None, ("missing" if got is None else f"shape {tuple(np.shape(got))} != {want}")


def _cast(new: Any, like: Any) -> Any:
  """``new`` in ``like``'s dtype: a ``jax.Array`` stays on its devices."""
  dtype = like.dtype if hasattr(like, "dtype") else np.asarray(like).dtype
  if isinstance(new, jax.Array):
    return new if new.dtype == dtype else new.astype(dtype)
  return np.asarray(new, dtype)


def load_into(target: Mapping[str, Any], source: Mapping[str, Any], *,
              model_name: str = "") -> dict[str, Any]:
  """``target`` with every variable ``source`` can provide; `merge` without the report."""
  return merge(target, source, model_name=model_name)[0]


def merge(target: Mapping[str, Any], source: Mapping[str, Any], *,
          model_name: str = "") -> tuple[dict[str, Any], list[str], list[str]]:
  """``target`` with every variable ``source`` can provide (see the module docstring).

  Args:
    target: the model's initialised variables, ``{'params': ..., 'batch_stats': ...}``.
    source: variables of the weights to load, in the same layout (ported checkpoints and
      training runs both are).
    model_name: for messages.

  Returns:
    ``(merged, loaded, kept)``: a tree with ``target``'s structure, shapes and dtypes
    (numpy for adapted variables, else the type the leaf came with);
    the names of the variables taken from ``source``; those kept from ``target``
    (with the reason).

  Raises:
    ValueError: no variable of ``source`` fits the model.
  """
  merged, loaded, adapted, kept = {}, [], [], []
  for collection, tree in target.items():
    src = source.get(collection)
    flat_src = traverse_util.flatten_dict(dict(src)) if isinstance(src, Mapping) else {}
    flat = {}
    for path, value in traverse_util.flatten_dict(dict(tree)).items():
      new, how = _adapt(path, tuple(np.shape(value)), flat_src)
      name = f"{collection}/{'/'.join(path)}"
      if new is None:
        flat[path] = value
        kept.append(f"{name} ({how})")
        continue
      flat[path] = _cast(new, value)
      loaded.append(name)
      if how != "copied":
        adapted.append(f"{name}: {how}")
    merged[collection] = traverse_util.unflatten_dict(flat)
  if not loaded:
    raise ValueError(f"none of the checkpoint's variables fit {model_name or 'the model'}; "
                     f"it holds {sorted(source)} of another architecture. Check "
                     "checkpoint.init_from and model.name.")
  logging.info("Loaded %d variables into %s, kept %d from initialisation; adapted %d: %s",
               len(loaded), model_name, len(kept), len(adapted), adapted)
  if kept:
    logging.info("Kept %d variables from initialisation: %s", len(kept), kept[:30])
  return merged, loaded, kept
