"""timm ResNet-50 and ViT state dicts -> `time_jax.models.resnet` / `time_jax.models.vit`.

ResNet-50 (timm ``resnet50``, the same keys as torchvision's): ``conv1``, ``bn1``,
``layer{s}.{b}.{conv,bn}{1,2,3}``, ``layer{s}.0.downsample.{0,1}``, ``fc``; BatchNorm
``running_mean``/``running_var`` become ``batch_stats``; ``num_batches_tracked`` is unused.

ViT (timm ``vit_*_patch{16,32}_*``): ``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2, ls1.gamma, ls2.gamma}``,
``norm`` (class-token pooling) or ``fc_norm`` (``global_pool='avg'``), ``head``. The
width, depth, patch, image size, pooling, layer scale and class count are read from the
weights and checked against ``--model``; the head count is the model's.

Convolution kernels go from PyTorch ``[out, in, kh, kw]`` to Flax ``[kh, kw, in, out]``,
linear weights are transposed. `verify` builds the timm model with the same weights
(`time_jax.port.reference`) and compares every block's output, the pooled features and
the logits on a random image in eval mode (`compare_layers`).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util

from time_jax import models
from time_jax.models import vit as vit_lib
from time_jax.port import common
from time_jax.port import compare as compare_lib

RESNET_MODELS = ("resnet50",)
VIT_TIMM_NAMES = {"vit_ti16": "vit_tiny_patch16_224", "vit_s16": "vit_small_patch16_224",
                  "vit_b16": "vit_base_patch16_224", "vit_l16": "vit_large_patch16_224",
                  "vit_b32": "vit_base_patch32_224"}


# Layout changes as axis permutations (``np.transpose`` of the file's array), so that
# the file shape a model variable expects is known before reading the file.
CONV = (2, 3, 1, 0)  # PyTorch conv weight [out, in, kh, kw] -> Flax [kh, kw, in, out]
LINEAR = (1, 0)      # PyTorch linear weight [out, in] -> Flax kernel [in, out]
SAME = None


def file_shape(model_shape: tuple[int, ...], perm) -> tuple[int, ...]:
  """The file-layout shape that ``perm`` turns into ``model_shape``."""
  if perm is None:
    return tuple(model_shape)
  return tuple(model_shape[perm.index(j)] for j in range(len(perm)))


def _abstract_variables(model: nn.Module, image_size: int) -> dict[str, Any]:
  """The model's variable shapes (no computation), unboxed."""
  x = jnp.zeros((1, 1, image_size, image_size, 3), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  return nn.meta.unbox(shapes)


def fill(model: nn.Module, image_size: int, state: Mapping[str, np.ndarray],
         key_of: Callable[[str, tuple[str, ...]], tuple[str, Any]], *,
         source: str, ignore=()) -> dict[str, Any]:
  """Flax variables of ``model`` taken from ``state`` by a per-leaf key mapping.

  Args:
    model: the Flax model; its variable tree decides what is needed.
    image_size: input size used to trace the model's shapes.
    state: the PyTorch-layout ``{key: array}``.
    key_of: ``(collection, flax_path) -> (state_key, perm)``, ``perm`` an axis
      permutation from the file's layout to Flax's, or None.
    source: a description for error messages.
    ignore: state keys that are known and deliberately unused.

  Raises:
    common.WeightMismatchError: listing missing, unexpected and mis-shaped keys.
  """
  shapes = _abstract_variables(model, image_size)
  plan = {}
  for collection, tree in shapes.items():
    for path, leaf in traverse_util.flatten_dict(tree).items():
      key, perm = key_of(collection, path)
      plan_shape = file_shape(tuple(leaf.shape), perm)
      plan[(collection, path)] = (key, perm, plan_shape)
  common.check_keys({key: shape for key, _, shape in plan.values()}, state, source=source,
                    ignore=ignore)
  out: dict[str, dict] = {}
  for (collection, path), (key, perm, _) in plan.items():
    value = np.asarray(state[key], np.float32)
    out.setdefault(collection, {})[path] = np.ascontiguousarray(
        value if perm is None else np.transpose(value, perm))
  return {c: traverse_util.unflatten_dict(t) for c, t in out.items()}


# ----------------------------------------------------------------------------------
# ResNet-50.
# ----------------------------------------------------------------------------------

_BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def resnet_key(collection: str, path: tuple[str, ...]) -> tuple[str, Any]:
  """A ResNet variable's torchvision/timm key and the axis permutation from it."""
  *mods, leaf = path
  names = []
  for m in mods:
    if (g := re.fullmatch(r"layer(\d)_(\d+)", m)):
      names += [f"layer{g.group(1)}", g.group(2)]
    elif m == "downsample_conv":
      names.append("downsample.0")
    elif m == "downsample_bn":
      names.append("downsample.1")
    else:
      names.append(m)
  prefix = ".".join(names)
  if leaf == "kernel":
    return f"{prefix}.weight", (LINEAR if mods[-1] == "fc" else CONV)
  if collection == "batch_stats" or mods[-1].startswith("bn") or mods[-1] == "downsample_bn":
    return f"{prefix}.{_BN[leaf]}", SAME
  return f"{prefix}.{leaf}", SAME  # fc bias


def _resnet_ignore(state):
  return [k for k in state if k.endswith("num_batches_tracked")]


def resnet_num_classes(state: Mapping[str, np.ndarray]) -> int:
  return int(state["fc.weight"].shape[0]) if "fc.weight" in state else 0


def convert_resnet(state: Mapping[str, np.ndarray], model_name: str,
                   num_classes: int | None, *, source: str = "timm/torchvision ResNet-50",
                   **overrides) -> tuple[dict[str, Any], int]:
  """ResNet-50 variables ``{'params', 'batch_stats'}`` and the class count."""
  if model_name not in RESNET_MODELS:
    raise ValueError(f"--model {model_name}: a ResNet state dict needs --model resnet50.")
  if "conv1.weight" not in state or "layer1.0.conv1.weight" not in state:
    raise common.WeightMismatchError(
        f"not a torchvision/timm ResNet state dict (no conv1.weight / layer1.0.conv1.weight); "
        f"first keys: {sorted(state)[:8]}.")
  k = resnet_num_classes(state)
  if num_classes is not None and num_classes != k:
    raise ValueError(f"--num-classes {num_classes} but the checkpoint's fc has {k} outputs; "
                     "omit --num-classes (a new head is made when fine-tuning).")
  model = models.create(model_name, num_classes=k, **overrides)
  return fill(model, 64, state, resnet_key, source=source, ignore=_resnet_ignore(state)), k


# ----------------------------------------------------------------------------------
# ViT.
# ----------------------------------------------------------------------------------

def vit_arch(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """Width, depth, patch, image size, pooling, layer scale, classes of timm ViT weights."""
  if "patch_embed.proj.weight" not in state or "pos_embed" not in state:
    raise common.WeightMismatchError(
        "not a timm ViT state dict (no patch_embed.proj.weight / pos_embed); first keys: "
        f"{sorted(state)[:8]}.")
  w = state["patch_embed.proj.weight"]
  prefix = 1 if "cls_token" in state else 0
  tokens = state["pos_embed"].shape[1] - prefix
  grid = int(round(tokens ** 0.5))
  if grid * grid != tokens or prefix != 1:
    raise common.WeightMismatchError(
        f"pos_embed {state['pos_embed'].shape} with{'out' if not prefix else ''} cls_token: "
        "time_jax's ViT has one class token and a square patch grid.")
  depth = len({int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key))})
  return dict(embed_dim=int(w.shape[0]), patch_size=int(w.shape[2]), image_size=grid * int(w.shape[2]),
              depth=depth, pool="gap" if "fc_norm.weight" in state else "token",
              layer_scale="blocks.0.ls1.gamma" in state,
              mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / w.shape[0],
              num_classes=int(state["head.weight"].shape[0]) if "head.weight" in state else 0)


def vit_key(collection: str, path: tuple[str, ...]) -> tuple[str, Any]:
  """A ViT variable's timm key and the axis permutation from it."""
  del collection
  *mods, leaf = path
  if mods == ["patch_embed"]:
    return f"patch_embed.proj.{'weight' if leaf == 'kernel' else 'bias'}", (
        CONV if leaf == "kernel" else SAME)
  if not mods:
    return leaf, SAME  # cls_token, pos_embed
  names = [f"blocks.{m.split('_')[1]}" if m.startswith("blocks_") else m for m in mods]
  if leaf in ("gamma_1", "gamma_2"):
    return ".".join(names + [f"ls{leaf[-1]}", "gamma"]), SAME
  if leaf == "kernel":
    return ".".join(names + ["weight"]), LINEAR
  return ".".join(names + [{"scale": "weight"}.get(leaf, leaf)]), SAME


def build_vit(state: Mapping[str, np.ndarray], model_name: str, num_classes: int | None,
              **overrides) -> tuple[nn.Module, int]:
  """The ``model_name`` ViT for timm-layout weights, checked against them."""
  if model_name not in VIT_TIMM_NAMES and not model_name.startswith("vit_"):
    raise ValueError(f"--model {model_name}: a ViT state dict needs one of "
                     f"{sorted(VIT_TIMM_NAMES)}.")
  arch = vit_arch(state)
  if num_classes is not None and num_classes != arch["num_classes"]:
    raise ValueError(f"--num-classes {num_classes} but the checkpoint's head has "
                     f"{arch['num_classes']} outputs; omit --num-classes (a new head is "
                     "made when fine-tuning).")
  kw = dict(pool=arch["pool"], init_values=1e-5 if arch["layer_scale"] else 0.0)
  kw.update(overrides)
  model = models.create(model_name, num_classes=arch["num_classes"],
                        image_size=arch["image_size"], **kw)
  bad = [f"{f}: checkpoint {arch[f]}, {model_name} {getattr(model, f)}"
         for f in ("embed_dim", "depth", "patch_size", "mlp_ratio")
         if arch[f] != getattr(model, f)]
  if bad:
    raise ValueError(f"the checkpoint does not fit --model {model_name}:\n  " + "\n  ".join(bad))
  if arch["pool"] != vit_lib.ViT.pool:
    logging.info("The checkpoint pools with %s; set config.model.kwargs.pool=%r too.",
                 arch["pool"], arch["pool"])
  return model, arch["num_classes"]


def convert_vit(state: Mapping[str, np.ndarray], model_name: str, num_classes: int | None,
                **overrides) -> tuple[dict[str, Any], int]:
  model, k = build_vit(state, model_name, num_classes, **overrides)
  return fill(model, model.image_size, state, vit_key, source="timm ViT state dict"), k


# ----------------------------------------------------------------------------------
# The port interface.
# ----------------------------------------------------------------------------------

def convert(state: Mapping[str, np.ndarray], model_name: str, num_classes: int | None,
            **overrides) -> tuple[dict[str, Any], int]:
  """timm weights -> ``(variables, num_classes)`` of ``model_name``."""
  if model_name in RESNET_MODELS:
    return convert_resnet(state, model_name, num_classes, source="timm ResNet state dict",
                          **overrides)
  return convert_vit(state, model_name, num_classes, **overrides)


def build(state: Mapping[str, np.ndarray], model_name: str, num_classes: int | None,
          **overrides) -> tuple[nn.Module, int]:
  """The model `convert` fills (its options go to the port's metadata) and its classes."""
  if model_name in RESNET_MODELS:
    k = resnet_num_classes(state)
    return models.create(model_name, num_classes=k, **overrides), k
  return build_vit(state, model_name, num_classes, **overrides)


def relative_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
  """``max|ours - theirs| / max|theirs|``."""
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))


def timm_vit(arch: Mapping[str, Any], num_heads: int, num_classes: int):
  """timm's ``VisionTransformer`` of a `vit_arch` (random weights, to be loaded)."""
  from time_jax.port import reference  # pylint: disable=g-import-not-at-top
  return reference.timm().models.vision_transformer.VisionTransformer(
      img_size=arch["image_size"], patch_size=arch["patch_size"],
      embed_dim=arch["embed_dim"], depth=arch["depth"], num_heads=num_heads,
      mlp_ratio=arch["mlp_ratio"], num_classes=num_classes,
      global_pool="avg" if arch["pool"] == "gap" else "token",
      init_values=1e-5 if arch["layer_scale"] else None)


def timm_reference(state: Mapping[str, np.ndarray], model_name: str, num_classes: int,
                   num_heads: int | None = None):
  """The timm model of ``model_name`` holding ``state``, in eval mode (CPU, float32).

  ``num_heads`` (ViT; weights cannot tell it) defaults to ``model_name``'s.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from time_jax.port import reference  # pylint: disable=g-import-not-at-top
  timm = reference.timm()
  if model_name in RESNET_MODELS:
    net = timm.create_model("resnet50", pretrained=False, num_classes=num_classes)
  else:
    net = timm_vit(vit_arch(state), num_heads or models.create(model_name).num_heads,
                   num_classes)
  net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()},
                      strict=True)
  return net.eval()


def compare(net, model: nn.Module, variables: Mapping[str, Any], image_size: int,
            *, seed: int = 0, batch: int = 2) -> float:
  """Relative difference of the outputs of ``net`` (torch, NCHW) and ``model``
  (``max|ours - theirs| / max|theirs|``) on one random batch."""
  import torch  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(seed).standard_normal(
      (batch, image_size, image_size, 3)).astype(np.float32)
  with torch.no_grad():
    theirs = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  ours = np.asarray(model.apply(dict(variables), x[:, None], train=False))
  return relative_difference(ours, theirs)


def _taps(net) -> list[tuple[str, Any, str]]:
  """The timm modules whose outputs match our sown layers (see `compare_layers`)."""
  if hasattr(net, "blocks"):  # ViT
    taps = [(f"blocks_{i}", block, "output") for i, block in enumerate(net.blocks)]
  else:  # ResNet
    taps = [(f"layer{s}_{b}", block, "output") for s in range(1, 5)
            for b, block in enumerate(getattr(net, f"layer{s}"))]
  head = net.head if hasattr(net, "blocks") else net.fc
  return taps + [("pre_logits", head, "input")]


def compare_layers(net, model: nn.Module, variables: Mapping[str, Any], image_size: int,
                   *, seed: int = 0, batch: int = 2, atol: float = compare_lib.ATOL,
                   rtol: float = compare_lib.RTOL) -> compare_lib.Report:
  """Layer-by-layer comparison of ``net`` (timm, run in float64) and ``model``.

  On one random batch of ``image_size``² images: each ViT block's output (``blocks_{i}``:
  timm ``blocks.{i}``) or ResNet bottleneck's (``layer{s}_{b}``: ``layer{s}.{b}``, NCHW
  moved to NHWC), the pooled features (``pre_logits``: the input of ``head`` / ``fc``)
  and the logits (``output``); see `time_jax.port.compare`.
  """
  import torch  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(seed).standard_normal(
      (batch, image_size, image_size, 3)).astype(np.float32)
  net = net.double().eval()
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float64))
  theirs, ref = compare_lib.torch_activations(lambda: net(xt), _taps(net))
  ref = {k: (v.transpose(0, 2, 3, 1) if v.ndim == 4 else v) for k, v in ref.items()}
  ref["output"] = theirs.numpy()
  ours, acts = compare_lib.flax_activations(model, variables, x[:, None])
  acts["output"] = ours
  return compare_lib.compare(acts, ref, atol=atol, rtol=rtol)


def verify(state: Mapping[str, np.ndarray], variables: Mapping[str, Any], model_name: str,
           num_classes: int, *, image_size: int = 224, atol: float = compare_lib.ATOL,
           rtol: float = compare_lib.RTOL, **overrides) -> compare_lib.Report:
  """Layer-by-layer comparison of timm's model and ours (eval mode; `compare_layers`).

  ``image_size`` is the ResNet's test input size; a ViT uses the size of its weights.
  """
  if model_name in RESNET_MODELS:
    model = models.create(model_name, num_classes=num_classes, **overrides)
    net = timm_reference(state, model_name, num_classes)
  else:
    model, _ = build_vit(state, model_name, num_classes, **overrides)
    image_size = model.image_size
    net = timm_reference(state, model_name, num_classes, model.num_heads)
  report = compare_layers(net, model, variables, image_size, atol=atol, rtol=rtol)
  logging.info("verify %s: %s", model_name, report.summary())
  return report
