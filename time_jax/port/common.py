"""Reading weight files safely, checking their keys, writing and reading ported checkpoints.

A file that cannot be read raises `WeightFileError`, one that does not fit the model
`WeightMismatchError`. Pickled PyTorch files are opened with
``torch.load(weights_only=True)``: no code from a weight file ever runs. A ported
checkpoint is a folder with an Orbax checkpoint of the Flax variables (``variables/``)
and ``metadata.json`` (model name, class count, source, and ``model_kwargs``: the
constructor options the model needs besides its name, `model_options`), the folder a
config names in ``init_from``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Iterable, Mapping

import numpy as np

_PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl")
# Wrappers that training scripts put around a state dict (official VideoMAE: 'model',
# 'module'; Lightning / mmaction: 'state_dict').
_WRAPPER_KEYS = ("model", "state_dict", "module", "model_state", "model_ema")
_HF_FILES = ("model.safetensors", "pytorch_model.bin")


# Characters orbax's checkpoint writer reads as a glob pattern in the folder's path: it
# finds its per-process files with ``glob(<folder>/ocdbt.process_*)``, so a ``[1]`` in
# the path matches ``1`` instead, and the checkpoint is written without its manifest.
GLOB_CHARACTERS = "[]*?"

# Constructor options that describe a run rather than the weights (`model_options`).
_RUN_OPTIONS = ("parent", "name", "num_classes", "image_size", "num_frames", "dtype",
                "mask_ratio", "remat", "impl", "drop_path_rate", "dropout_rate",
                "init_scale")
# Options the weights decide that are recorded even when they are the default.
_ALWAYS_RECORDED = ("pool", "use_mean_pooling", "init_values")


class WeightMismatchError(ValueError):
  """A weight file does not fit the model: lists missing, unexpected, mis-shaped keys."""


class WeightFileError(ValueError):
  """A weight file cannot be read: damaged, truncated, or not in the format it claims."""


def _to_numpy(value) -> np.ndarray:
  if isinstance(value, np.ndarray):
    return value
  import torch  # pylint: disable=g-import-not-at-top
  if isinstance(value, torch.Tensor):
    value = value.detach().cpu()
    if value.dtype == torch.bfloat16:  # numpy has no bfloat16: widen losslessly
      value = value.float()
    return value.numpy()
  return np.asarray(value)


def _unwrap(obj: Any, path: str) -> dict[str, Any]:
  while isinstance(obj, Mapping):
    tensor_like = [k for k, v in obj.items() if not isinstance(v, Mapping)]
    wrapper = next((k for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
    if wrapper is not None and len(obj) <= 8:
      obj = obj[wrapper]
      continue
    if tensor_like:
      return dict(obj)
    break
  raise WeightMismatchError(
      f"{path}: found no state dict (a mapping of parameter names to tensors) in this file.")


def load_weights(path: str) -> dict[str, np.ndarray]:
  """Reads a weight file into a flat ``{name: array}`` dict.

  Supports ``.safetensors``, pickled PyTorch state dicts (``.pth .pt .bin .ckpt``, read
  with ``weights_only=True``, unwrapping ``model`` / ``state_dict`` / ``module`` keys and
  a DDP ``module.`` prefix), ``.npz`` (big_vision / AugReg, keys kept as they are) and a
  Hugging Face model folder (``model.safetensors`` or ``pytorch_model.bin``).
  """
  if os.path.isdir(path):
    for name in _HF_FILES:
      if os.path.exists(os.path.join(path, name)):
        return load_weights(os.path.join(path, name))
    raise FileNotFoundError(f"{path} is a folder without {' or '.join(_HF_FILES)}.")
  if not os.path.exists(path):
    raise FileNotFoundError(f"weight file {path} does not exist.")
  lower = path.lower()
  if lower.endswith(".safetensors"):
    from safetensors import safe_open  # pylint: disable=g-import-not-at-top
    try:
      with safe_open(path, framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError: truncated or not a safetensors file
      raise _unreadable(path, "a .safetensors file", e) from e
  elif lower.endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
    except Exception as e:  # BadZipFile, EOFError, ValueError: damaged or truncated
      raise _unreadable(path, "a NumPy .npz archive", e) from e
  elif lower.endswith(_PICKLE_SUFFIXES):
    import torch  # pylint: disable=g-import-not-at-top
    try:
      obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, RuntimeError, EOFError, ...
      raise WeightFileError(
          f"{path}: could not be read as a PyTorch state dict with weights_only=True "
          f"({type(e).__name__}: {_first_line(e)}). The file is damaged or truncated "
          "(download it again), or holds objects other than tensors (only plain tensor "
          "state dicts are accepted).") from e
    state = _unwrap(obj, path)
  else:
    raise ValueError(
        f"{path}: unknown weight format; use .safetensors, .pth/.pt/.bin/.ckpt, .npz "
        "or a Hugging Face model folder.")
  out = {}
  for k, v in state.items():
    if k.startswith("module."):
      k = k[len("module."):]
    out[k] = _to_numpy(v)
  logging.info("Read %d tensors from %s", len(out), path)
  return out


def _first_line(e: Exception) -> str:
  text = str(e).strip()
  return text.splitlines()[0] if text else "no message"


def _unreadable(path: str, what: str, e: Exception) -> WeightFileError:
  return WeightFileError(
      f"{path}: cannot be read as {what} ({type(e).__name__}: {_first_line(e)}); the file "
      "is damaged, truncated or in another format: download it again, or check "
      "--checkpoint.")


def check_keys(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, np.ndarray],
               *, source: str = "weight file", ignore: Iterable[str] = ()) -> None:
  """Raises `WeightMismatchError` unless ``state`` has exactly the expected names and shapes.

  Args:
    expected: ``{name: shape}`` the converter needs, in the file's naming.
    state: the file's ``{name: array}``.
    source: a description for the message (e.g. the path and format).
    ignore: names in the file that are known and deliberately unused (e.g. buffers).
  """
  ignore = set(ignore)
  missing = sorted(set(expected) - set(state))
  unexpected = sorted(set(state) - set(expected) - ignore)
  misshaped = sorted(
      f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k])}"
      for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k]))
  if missing or unexpected or misshaped:
    def block(title, items):
      if not items:
        return ""
      shown = "\n    ".join(items[:50])
      more = f"\n    ... and {len(items) - 50} more" if len(items) > 50 else ""
      return f"\n  {title} ({len(items)}):\n    {shown}{more}"
    raise WeightMismatchError(
        f"{source} does not fit the model; check --from and --model."
        + block("missing keys", missing) + block("unexpected keys", unexpected)
        + block("mis-shaped keys", misshaped))


def save(variables: Mapping[str, Any], out_dir: str, metadata: Mapping[str, Any]) -> str:
  """Writes ported Flax ``variables`` and ``metadata`` as a checkpoint folder.

  Returns the absolute folder path, the value for a config's ``init_from``.

  Raises:
    ValueError: the absolute path contains one of `GLOB_CHARACTERS`, which orbax would
      take for a pattern, writing a checkpoint that cannot be read
      (``python -m time_jax.port`` writes to a temporary folder and renames it).
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  out_dir = os.path.abspath(out_dir)
  if has_glob_characters(out_dir):
    raise ValueError(
        f"{out_dir}: orbax cannot write a checkpoint into a path containing any of "
        f"{GLOB_CHARACTERS!r}; write elsewhere and rename the folder.")
  os.makedirs(out_dir, exist_ok=True)
  target = os.path.join(out_dir, "variables")
  variables = {k: _as_numpy_tree(v) for k, v in variables.items()}
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(target, variables, force=True)
  with open(os.path.join(out_dir, "metadata.json"), "w") as f:
    json.dump(dict(metadata), f, indent=2, sort_keys=True)
  logging.info("Wrote ported checkpoint to %s", out_dir)
  return out_dir


def has_glob_characters(path: str) -> bool:
  """Whether ``path`` has a character orbax's writer would read as a glob pattern."""
  return any(c in path for c in GLOB_CHARACTERS)


def model_options(model, model_name: str) -> dict[str, Any]:
  """The constructor options of ``model`` that rebuilding it from its name needs.

  Every field that differs from ``models.create(model_name)``'s default, and the
  weight-decided ones (pooling, layer scale) always, except those that describe a run
  (`_RUN_OPTIONS`: class count, input size, dtype, dropout, ...). Values are plain JSON
  types; ``checkpoints.load`` passes them as ``config.model.kwargs``.
  """
  import dataclasses  # pylint: disable=g-import-not-at-top
  from time_jax import models  # pylint: disable=g-import-not-at-top
  default = models.create(model_name)
  out = {}
  for field in dataclasses.fields(model):
    name = field.name
    if name in _RUN_OPTIONS or not hasattr(default, name):
      continue
    value = getattr(model, name)
    if name in _ALWAYS_RECORDED or value != getattr(default, name):
      out[name] = list(value) if isinstance(value, tuple) else value
  return out


def same_variables(written: Mapping[str, Any], read: Mapping[str, Any]) -> list[str]:
  """What differs between two variable trees (paths, shapes, dtypes, values); [] if none."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  a = traverse_util.flatten_dict(dict(written), sep="/")
  b = traverse_util.flatten_dict(dict(read), sep="/")
  problems = [f"{k}: not read back" for k in sorted(set(a) - set(b))]
  problems += [f"{k}: read back but not written" for k in sorted(set(b) - set(a))]
  for k in sorted(set(a) & set(b)):
    x, y = np.asarray(a[k]), np.asarray(b[k])
    if x.shape != y.shape or x.dtype != y.dtype:
      problems.append(f"{k}: wrote {x.dtype}{list(x.shape)}, read {y.dtype}{list(y.shape)}")
    elif not np.array_equal(x, y):
      problems.append(f"{k}: values differ")
  return problems


def _as_numpy_tree(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(lambda x: np.asarray(x), tree)


def restore(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """Reads a checkpoint folder written by `save`: ``(variables, metadata)`` as numpy."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  path = os.path.abspath(path)
  meta_path = os.path.join(path, "metadata.json")
  if not os.path.exists(meta_path):
    raise FileNotFoundError(
        f"{path} is not a ported checkpoint (no metadata.json); create one with "
        "`python -m time_jax.port --from ... --checkpoint ... --model ... --out DIR`.")
  with open(meta_path) as f:
    metadata = json.load(f)
  with ocp.StandardCheckpointer() as ckptr:
    variables = ckptr.restore(os.path.join(path, "variables"))
  return _as_numpy_tree(variables), metadata
