"""big_vision / AugReg ``.npz`` ViT checkpoints -> `time_jax.models.vit`.

The ImageNet ViTs of "How to train your ViT" (AugReg) and the original ``vit_jax`` release
are ``.npz`` files of Flax parameters named by path::

    embedding/{kernel [p, p, c, D], bias}      cls [1, 1, D]
    Transformer/posembed_input/pos_embedding [1, 1 + P, D]
    Transformer/encoderblock_{i}/LayerNorm_0, MultiHeadDotProductAttention_1/{query, key,
        value}/{kernel [D, H, d], bias [H, d]}, .../out/{kernel [H, d, D], bias},
        LayerNorm_2, MlpBlock_3/Dense_{0,1}
    Transformer/encoder_norm                  head/{kernel [D, K], bias}

big_vision's own checkpoints put the same tree under ``params/img/`` and number the
block modules from 0 (``MultiHeadDotProductAttention_0``, ``LayerNorm_1``,
``MlpBlock_0``), with ``pos_embedding`` directly under ``img``; both namings are read.
Our ViT has a class token, so checkpoints without ``cls`` (big_vision ``pool='gap'`` /
``'map'`` models) are refused with that reason, as are ``pre_logits`` layers.

The file is renamed into timm's layout (`to_timm`) and converted by
`time_jax.port.timm`. `verify` loads the *file* into timm with timm's own AugReg loader
(``vision_transformer._load_weights``), independent of our renaming, and compares it
with ours layer by layer (`time_jax.port.timm.compare_layers`).
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any, Mapping

import numpy as np

from time_jax.port import common
from time_jax.port import compare
from time_jax.port import timm as timm_port


def _normalise(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Strips big_vision's ``params/img/`` prefix and numbers block modules as vit_jax."""
  out = {}
  for key, value in state.items():
    k = re.sub(r"^(params/)?(img/)?", "", key)
    if k == "pos_embedding":
      k = "Transformer/posembed_input/pos_embedding"
    k = re.sub(r"MultiHeadDotProductAttention_\d", "MultiHeadDotProductAttention", k)
    k = re.sub(r"MlpBlock_\d", "MlpBlock", k)
    out[k] = value
  # The block's second LayerNorm is LayerNorm_2 (vit_jax) or LayerNorm_1 (big_vision).
  renamed = {}
  for k, v in out.items():
    m = re.match(r"(Transformer/encoderblock_\d+)/LayerNorm_(\d)/(.*)", k)
    if m:
      k = f"{m.group(1)}/{'norm1' if m.group(2) == '0' else 'norm2'}/{m.group(3)}"
    renamed[k] = v
  return renamed


def to_timm(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """An AugReg / big_vision ViT ``.npz`` state in timm's key layout.

  Raises:
    common.WeightMismatchError: not a ViT npz our ViT can hold; names what is wrong.
  """
  s = _normalise(state)
  if "embedding/kernel" not in s:
    raise common.WeightMismatchError(
        "not a big_vision/AugReg ViT .npz (no embedding/kernel or params/img/embedding/kernel);"
        f" first keys: {sorted(state)[:8]}.")
  if "cls" not in s:
    raise common.WeightMismatchError(
        "the checkpoint has no class token ('cls'): it pools with 'gap' or 'map' in "
        "big_vision; time_jax's ViT needs a class token. Use a checkpoint with pool='tok'.")
  if any(k.startswith("pre_logits/") for k in s):
    raise common.WeightMismatchError(
        "the checkpoint has a pre_logits layer (representation size), which timm's and "
        "time_jax's ViT do not; use a fine-tuned or AugReg checkpoint without it.")
  if any(k.startswith("MAPHead") for k in s):
    raise common.WeightMismatchError("the checkpoint pools with a MAP head; unsupported.")
  out = {
      "patch_embed.proj.weight": np.transpose(s.pop("embedding/kernel"), (3, 2, 0, 1)),
      "patch_embed.proj.bias": s.pop("embedding/bias"),
      "cls_token": s.pop("cls"),
      "pos_embed": s.pop("Transformer/posembed_input/pos_embedding"),
      "norm.weight": s.pop("Transformer/encoder_norm/scale"),
      "norm.bias": s.pop("Transformer/encoder_norm/bias"),
  }
  if "head/kernel" in s:
    out["head.weight"] = np.transpose(s.pop("head/kernel"))
    out["head.bias"] = s.pop("head/bias")
  blocks = sorted({int(m.group(1)) for k in s
                   if (m := re.match(r"Transformer/encoderblock_(\d+)/", k))})
  for i in blocks:
    b, t = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
    attn = b + "MultiHeadDotProductAttention/"
    q, k, v = (s.pop(f"{attn}{n}/kernel") for n in ("query", "key", "value"))
    dim = q.shape[0]
    out[t + "attn.qkv.weight"] = np.concatenate(
        [x.reshape(dim, -1).T for x in (q, k, v)], axis=0)
    out[t + "attn.qkv.bias"] = np.concatenate(
        [s.pop(f"{attn}{n}/bias").reshape(-1) for n in ("query", "key", "value")])
    out[t + "attn.proj.weight"] = s.pop(attn + "out/kernel").reshape(-1, dim).T
    out[t + "attn.proj.bias"] = s.pop(attn + "out/bias")
    for norm in ("norm1", "norm2"):
      out[f"{t}{norm}.weight"] = s.pop(f"{b}{norm}/scale")
      out[f"{t}{norm}.bias"] = s.pop(f"{b}{norm}/bias")
    for j, fc in ((0, "fc1"), (1, "fc2")):
      out[f"{t}mlp.{fc}.weight"] = np.transpose(s.pop(f"{b}MlpBlock/Dense_{j}/kernel"))
      out[f"{t}mlp.{fc}.bias"] = s.pop(f"{b}MlpBlock/Dense_{j}/bias")
  if s:
    raise common.WeightMismatchError(
        f"the .npz has {len(s)} entries time_jax's ViT does not use: {sorted(s)[:20]}")
  return out


def convert(state: Mapping[str, np.ndarray], model_name: str, num_classes: int | None,
            **overrides) -> tuple[dict[str, Any], int]:
  """AugReg / big_vision weights -> ``(variables, num_classes)`` of ``model_name``."""
  return timm_port.convert_vit(to_timm(state), model_name, num_classes, **overrides)


def build(state: Mapping[str, np.ndarray], model_name: str, num_classes: int | None,
          **overrides):
  """The model `convert` fills and its class count."""
  return timm_port.build_vit(to_timm(state), model_name, num_classes, **overrides)


def verify(state: Mapping[str, np.ndarray], variables: Mapping[str, Any], model_name: str,
           num_classes: int, *, atol: float = compare.ATOL, rtol: float = compare.RTOL,
           **overrides) -> compare.Report:
  """Layer-by-layer comparison of timm (loading the npz with timm's AugReg loader) and
  ours (`time_jax.port.timm.compare_layers`).

  timm's loader reads the vit_jax naming; big_vision-named files are compared after
  `_normalise` only (prefix and module numbers), written back in vit_jax names.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from time_jax.port import reference  # pylint: disable=g-import-not-at-top
  timm = reference.timm()
  timm_state = to_timm(state)
  model, _ = timm_port.build_vit(timm_state, model_name, num_classes, **overrides)
  arch = timm_port.vit_arch(timm_state)
  net = timm_port.timm_vit(arch, model.num_heads, num_classes)
  vit_jax = {}
  for k, v in _normalise(state).items():
    k = re.sub(r"MultiHeadDotProductAttention", "MultiHeadDotProductAttention_1", k)
    k = re.sub(r"MlpBlock/", "MlpBlock_3/", k)
    k = k.replace("/norm1/", "/LayerNorm_0/").replace("/norm2/", "/LayerNorm_2/")
    vit_jax[k] = v
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "weights.npz")
    np.savez(path, **vit_jax)
    with torch.no_grad():
      timm.models.vision_transformer._load_weights(net, path)  # pylint: disable=protected-access
  return timm_port.compare_layers(net.eval(), model, variables, arch["image_size"],
                                  atol=atol, rtol=rtol)
