"""Hugging Face transformers VideoMAE checkpoints -> `time_jax.models.videomae`.

Reads ``VideoMAEForPreTraining`` and ``VideoMAEForVideoClassification`` state dicts (a
folder with ``model.safetensors`` or ``pytorch_model.bin``, or the file itself), renames
them to the official VideoMAE layout (`from_hf`) and converts with
`time_jax.port.videomae`, so both sources share one table and one set of checks.

HF names: ``videomae.embeddings.patch_embeddings.projection``,
``videomae.encoder.layer.{i}.attention.attention.{query,key,value}.weight`` with
``q_bias``/``v_bias`` (as saved; transformers >= 5 names them ``query.bias`` /
``value.bias`` in memory, both are read), ``attention.output.dense``,
``intermediate.dense``, ``output.dense``, ``layernorm_before``/``layernorm_after``,
``videomae.layernorm`` (pretraining, or classifiers without mean pooling),
``encoder_to_decoder``, ``mask_token``, ``decoder.decoder_layers.{i}``, ``decoder.norm``,
``decoder.head``, ``fc_norm``, ``classifier``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from time_jax.port import common
from time_jax.port import videomae as official

_BLOCK = {
    "layernorm_before": "norm1", "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj", "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}
_LAYER_RE = re.compile(r"^(videomae\.encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.+)$")
_QKV = ("query", "key", "value")


def from_hf(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """HF VideoMAE names -> official names (``query/key/value`` merged into ``qkv``).

  Keys that are not HF VideoMAE names are kept as they are, so `common.check_keys`
  reports them as unexpected.

  Raises:
    WeightMismatchError: when the file is not an HF VideoMAE state dict, or a layer lacks
      one of query/key/value.
  """
  if "videomae.embeddings.patch_embeddings.projection.weight" not in state:
    raise common.WeightMismatchError(
        "not a Hugging Face VideoMAE state dict: "
        "'videomae.embeddings.patch_embeddings.projection.weight' is missing; first keys: "
        f"{sorted(state)[:8]}. Official VideoMAE .pth files need --from videomae.")
  pretrain = any(k.startswith(("decoder.", "encoder_to_decoder")) for k in state) or (
      "mask_token" in state)
  enc = "encoder." if pretrain else ""
  out: dict[str, np.ndarray] = {}
  qkv: dict[str, dict[str, np.ndarray]] = {}
  for k, v in state.items():
    m = _LAYER_RE.match(k)
    if m:
      pre = (f"{enc}blocks" if m.group(1).startswith("videomae") else "decoder.blocks")
      pre = f"{pre}.{m.group(2)}."
      rest = m.group(3)
      a = re.match(r"^attention\.attention\.(query|key|value)\.weight$", rest)
      if a:
        qkv.setdefault(pre, {})[a.group(1)] = v
        continue
      if rest in ("attention.attention.q_bias", "attention.attention.query.bias"):
        out[pre + "attn.q_bias"] = v
        continue
      if rest in ("attention.attention.v_bias", "attention.attention.value.bias"):
        out[pre + "attn.v_bias"] = v
        continue
      mod, _, param = rest.rpartition(".")
      if mod in _BLOCK:
        out[pre + f"{_BLOCK[mod]}.{param}"] = v
        continue
      out[k] = v
      continue
    if k.startswith("videomae.embeddings.patch_embeddings.projection."):
      out[f"{enc}patch_embed.proj." + k.rsplit(".", 1)[1]] = v
    elif k.startswith("videomae.layernorm."):
      out[f"{enc}norm." + k.rsplit(".", 1)[1]] = v
    elif k.startswith("classifier."):
      out["head." + k.rsplit(".", 1)[1]] = v
    else:
      out[k] = v  # fc_norm, encoder_to_decoder, mask_token, decoder.norm/head, unknowns
  for pre, parts in qkv.items():
    missing = [n for n in _QKV if n not in parts]
    if missing:
      raise common.WeightMismatchError(
          f"layer {pre!r} lacks attention {', '.join(missing)} weights.")
    out[pre + "attn.qkv.weight"] = np.concatenate([parts[n] for n in _QKV], axis=0)
  if pretrain and "encoder.norm.weight" not in out:
    raise common.WeightMismatchError(
        "this HF VideoMAEForPreTraining has no 'videomae.layernorm' (its config has "
        "use_mean_pooling=True); official pretraining models end the encoder with a "
        "LayerNorm (the released HF conversions use use_mean_pooling=False).")
  return out


def convert(state: Mapping[str, np.ndarray], model_name: str,
            num_classes: int | None = None, **overrides) -> tuple[dict[str, Any], int]:
  """HF VideoMAE weights -> ``({'params': ...}, num_classes)``; see `official.convert`."""
  return official.convert(from_hf(state), model_name, num_classes, **overrides)


def build(state: Mapping[str, np.ndarray], model_name: str, num_classes: int | None,
          **overrides):
  """The model `convert` fills and its class count; see `official.build`."""
  return official.build(from_hf(state), model_name, num_classes, **overrides)


def verify(state: Mapping[str, np.ndarray], variables: Mapping[str, Any],
           model_name: str, num_classes: int, **overrides):
  """Layer-by-layer comparison of transformers and ours (a `compare.Report`); see
  `official.verify_official`."""
  return official.verify_official(from_hf(state), variables, model_name, num_classes,
                                  **overrides)
