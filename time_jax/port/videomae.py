"""Official VideoMAE checkpoints (MCG-NJU/VideoMAE) -> `time_jax.models.videomae`.

Two layouts, told apart by their keys:

* pretraining (``modeling_pretrain.PretrainVisionTransformer``): ``encoder.patch_embed``,
  ``encoder.blocks.{i}``, ``encoder.norm``, ``encoder_to_decoder``, ``mask_token``,
  ``decoder.blocks.{i}``, ``decoder.norm``, ``decoder.head``;
* fine-tuned (``modeling_finetune.VisionTransformer``): ``patch_embed``, ``blocks.{i}``,
  ``fc_norm`` (mean pooling) or ``norm`` (token 0), ``head``.

Blocks: ``norm1``, ``attn.qkv`` (no bias) with ``attn.q_bias``/``attn.v_bias``,
``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2`` and, with layer scale, ``gamma_1``,
``gamma_2``. The architecture (width, depth, patch, tubelet, MLP width, decoder, class
count, pooling, layer scale) is read from the weights and checked against ``--model``;
the head count is the model's (weights cannot tell it).

`verify` loads the same weights into Hugging Face ``transformers``' VideoMAE (renaming
official -> HF, `to_hf`) and compares, in float64 on a small random clip, every block's
output and the logits, or for pretraining models the reconstructions under the same
tube mask (`verify_official`, `time_jax.port.compare`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, Callable, Mapping

import jax
import numpy as np
from flax import linen as nn

from time_jax import models
from time_jax.models import transformer
from time_jax.models import videomae as vm
from time_jax.port import common
from time_jax.port import compare

# Model attributes a checkpoint fixes and ``--model`` must agree with.
_STRICT = ("embed_dim", "depth", "mlp_ratio", "patch_size", "tubelet_size",
           "decoder_embed_dim", "decoder_depth")
# Attributes that follow the checkpoint (logged: the training config must set them too).
_FOLLOW = ("use_mean_pooling", "init_values")


@dataclasses.dataclass
class Arch:
  """What an official-layout state dict says about the model."""
  pretrain: bool
  embed_dim: int
  depth: int
  mlp_ratio: float
  patch_size: int
  tubelet_size: int
  in_chans: int
  layer_scale: bool
  num_classes: int = 0
  use_mean_pooling: bool = True
  decoder_embed_dim: int | None = None
  decoder_depth: int | None = None
  decoder_out: int | None = None


def _count_blocks(state: Mapping[str, Any], prefix: str) -> int:
  pat = re.compile(re.escape(prefix) + r"(\d+)\.")
  idx = {int(m.group(1)) for k in state if (m := pat.match(k))}
  if idx and idx != set(range(len(idx))):
    raise common.WeightMismatchError(
        f"blocks under {prefix!r} are not numbered 0..n-1: {sorted(idx)}")
  return len(idx)


def infer_arch(state: Mapping[str, np.ndarray]) -> Arch:
  """Reads the architecture from official-layout weights.

  Raises:
    WeightMismatchError: when the keys are neither official VideoMAE layout.
  """
  pretrain = "encoder.patch_embed.proj.weight" in state
  enc = "encoder." if pretrain else ""
  key = f"{enc}patch_embed.proj.weight"
  if key not in state:
    raise common.WeightMismatchError(
        "not an official VideoMAE state dict: neither 'encoder.patch_embed.proj.weight' "
        "(pretraining) nor 'patch_embed.proj.weight' (fine-tuned) is in it; "
        f"first keys: {sorted(state)[:8]}. Hugging Face files need --from hf.")
  w = state[key]
  if w.ndim != 5 or w.shape[3] != w.shape[4]:
    raise common.WeightMismatchError(
        f"{key} has shape {w.shape}; expected a Conv3d weight [embed, c, tubelet, p, p].")
  embed_dim, in_chans, tubelet, patch = w.shape[0], w.shape[1], w.shape[2], w.shape[3]
  depth = _count_blocks(state, f"{enc}blocks.")
  fc1 = state.get(f"{enc}blocks.0.mlp.fc1.weight")
  mlp_ratio = fc1.shape[0] / embed_dim if fc1 is not None else 4.0
  arch = Arch(pretrain=pretrain, embed_dim=embed_dim, depth=depth, mlp_ratio=mlp_ratio,
              patch_size=patch, tubelet_size=tubelet, in_chans=in_chans,
              layer_scale=f"{enc}blocks.0.gamma_1" in state)
  if pretrain:
    arch.decoder_depth = _count_blocks(state, "decoder.blocks.")
    if "encoder_to_decoder.weight" in state:
      arch.decoder_embed_dim = state["encoder_to_decoder.weight"].shape[0]
    if "decoder.head.weight" in state:
      arch.decoder_out = state["decoder.head.weight"].shape[0]
  else:
    arch.use_mean_pooling = "norm.weight" not in state
    if "head.weight" in state:
      arch.num_classes = state["head.weight"].shape[0]
  return arch


def build_model(arch: Arch, model_name: str, num_classes: int | None,
                **overrides) -> tuple[nn.Module, int]:
  """The ``model_name`` model for a checkpoint of ``arch``, checked against it.

  Args:
    arch: from `infer_arch`.
    model_name: a ``videomae_*`` key of `time_jax.models.MODELS`.
    num_classes: the user's class count, or None to take the checkpoint's.
    **overrides: constructor kwargs for non-standard sizes (e.g. tiny test models).

  Returns:
    ``(model, num_classes)``.

  Raises:
    ValueError: when the model name and the checkpoint disagree.
  """
  if not model_name.startswith("videomae_"):
    raise ValueError(f"--model {model_name} is not a VideoMAE model; use one of "
                     f"{sorted(m for m in models.MODELS if m.startswith('videomae'))}.")
  is_pretrain = model_name.endswith("_pretrain")
  if is_pretrain != arch.pretrain:
    base = model_name.removesuffix("_pretrain")
    want = f"{base}_pretrain" if arch.pretrain else base
    raise ValueError(
        f"the checkpoint is a {'pretraining' if arch.pretrain else 'fine-tuned'} VideoMAE "
        f"but --model {model_name} is a {'pretrainer' if is_pretrain else 'classifier'}; "
        f"use --model {want}.")
  if arch.pretrain:
    if num_classes:
      raise ValueError(f"a pretraining checkpoint has no classes; drop --num-classes "
                       f"{num_classes}.")
    num_classes = 0
    model = models.create(model_name, **overrides)
  else:
    if num_classes is not None and num_classes != arch.num_classes:
      raise ValueError(
          f"--num-classes {num_classes} but the checkpoint's head has {arch.num_classes} "
          "outputs; omit --num-classes (a new head is made when fine-tuning).")
    num_classes = arch.num_classes
    model = models.create(model_name, num_classes=num_classes, **overrides)
  got = {"embed_dim": arch.embed_dim, "depth": arch.depth, "mlp_ratio": arch.mlp_ratio,
         "patch_size": arch.patch_size, "tubelet_size": arch.tubelet_size}
  if arch.pretrain:
    got.update(decoder_embed_dim=arch.decoder_embed_dim, decoder_depth=arch.decoder_depth)
  bad = [f"{f}: checkpoint {got[f]}, {model_name} {getattr(model, f)}"
         for f in _STRICT if f in got and got[f] != getattr(model, f)]
  if bad:
    sizes = {v[0]: k for k, v in vm.SIZES.items()}
    hint = (f" (the checkpoint's width {arch.embed_dim} is VideoMAE-"
            f"{sizes[arch.embed_dim].upper()})" if arch.embed_dim in sizes else "")
    raise ValueError(
        f"the checkpoint does not fit --model {model_name}{hint}:\n  " + "\n  ".join(bad))
  if not arch.pretrain:
    if model.use_mean_pooling != arch.use_mean_pooling:
      logging.warning("The checkpoint uses %s; setting use_mean_pooling=%s (set it in "
                      "config.model too).",
                      "mean pooling + fc_norm" if arch.use_mean_pooling else "norm + token 0",
                      arch.use_mean_pooling)
      model = model.clone(use_mean_pooling=arch.use_mean_pooling)
  if arch.layer_scale != bool(model.init_values):
    if arch.layer_scale:
      logging.warning("The checkpoint has layer scale (gamma_1/gamma_2); setting "
                      "init_values=0.1 (set config.model.init_values too).")
      model = model.clone(init_values=0.1)
    else:
      model = model.clone(init_values=0.0)
  return model, num_classes


def _shapes(model: nn.Module, arch: Arch) -> dict[str, tuple[int, ...]]:
  """Flat ``{'a/b/c': shape}`` of the model's parameters on a minimal input."""
  frames, size = model.tubelet_size, model.patch_size * 2
  x = jax.ShapeDtypeStruct((1, frames, size, size, arch.in_chans), np.float32)
  if arch.pretrain:
    model = model.clone(mask_ratio=0.5)
    mask = np.array([[True, False, True, False]])
    fn = lambda x: model.init(jax.random.key(0), x, mask)  # pylint: disable=unnecessary-lambda-assignment
  else:
    fn = lambda x: model.init(jax.random.key(0), x)  # pylint: disable=unnecessary-lambda-assignment
  tree = nn.unbox(jax.eval_shape(fn, x))["params"]
  return {"/".join(k): tuple(v.shape) for k, v in _flatten(tree).items()}


def _flatten(tree, prefix=()):
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


# ours (relative to a block) -> official, and how a PyTorch tensor becomes ours.
_T = lambda w: np.ascontiguousarray(w.T)  # Linear [out, in] -> Dense [in, out]  # pylint: disable=unnecessary-lambda-assignment
_ID = lambda w: w  # pylint: disable=unnecessary-lambda-assignment
_BLOCK = {
    "norm1/scale": ("norm1.weight", _ID), "norm1/bias": ("norm1.bias", _ID),
    "attn/qkv/kernel": ("attn.qkv.weight", _T),
    "attn/q_bias": ("attn.q_bias", _ID), "attn/v_bias": ("attn.v_bias", _ID),
    "attn/proj/kernel": ("attn.proj.weight", _T), "attn/proj/bias": ("attn.proj.bias", _ID),
    "norm2/scale": ("norm2.weight", _ID), "norm2/bias": ("norm2.bias", _ID),
    "mlp/fc1/kernel": ("mlp.fc1.weight", _T), "mlp/fc1/bias": ("mlp.fc1.bias", _ID),
    "mlp/fc2/kernel": ("mlp.fc2.weight", _T), "mlp/fc2/bias": ("mlp.fc2.bias", _ID),
    "gamma_1": ("gamma_1", _ID), "gamma_2": ("gamma_2", _ID),
}
_TOP = {
    # Conv3d [embed, c, t, p, p] -> [t, p, p, c, embed]
    "patch_embed/kernel": ("patch_embed.proj.weight", lambda w: w.transpose(2, 3, 4, 1, 0)),
    "patch_embed/bias": ("patch_embed.proj.bias", _ID),
    "norm/scale": ("norm.weight", _ID), "norm/bias": ("norm.bias", _ID),
    "fc_norm/scale": ("fc_norm.weight", _ID), "fc_norm/bias": ("fc_norm.bias", _ID),
    "head/kernel": ("head.weight", _T), "head/bias": ("head.bias", _ID),
    "encoder_to_decoder/kernel": ("encoder_to_decoder.weight", _T),
    "mask_token": ("mask_token", _ID),
    "decoder/norm/scale": ("decoder.norm.weight", _ID),
    "decoder/norm/bias": ("decoder.norm.bias", _ID),
    "decoder/head/kernel": ("decoder.head.weight", _T),
    "decoder/head/bias": ("decoder.head.bias", _ID),
}
_BLOCK_RE = re.compile(r"^(decoder/)?blocks_(\d+)/(.+)$")


def official_name(path: str, pretrain: bool) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
  """Our parameter path (``'blocks_3/attn/qkv/kernel'``) -> (official key, converter)."""
  enc = "encoder." if pretrain else ""
  m = _BLOCK_RE.match(path)
  if m:
    name, fn = _BLOCK[m.group(3)]
    where = "decoder.blocks" if m.group(1) else f"{enc}blocks"
    return f"{where}.{m.group(2)}.{name}", fn
  name, fn = _TOP[path]
  if pretrain and not path.startswith(("decoder/", "encoder_to_decoder", "mask_token")):
    name = enc + name
  return name, fn


def _file_shape(path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  if path == "patch_embed/kernel":
    t, p, q, c, d = shape
    return (d, c, t, p, q)
  if path.endswith("kernel"):
    return tuple(reversed(shape))
  return shape


def convert(state: Mapping[str, np.ndarray], model_name: str,
            num_classes: int | None = None, **overrides) -> tuple[dict[str, Any], int]:
  """Official VideoMAE weights -> ``({'params': ...}, num_classes)`` for ``model_name``.

  Args:
    state: the flat state dict (`common.load_weights` unwraps ``'model'``).
    model_name: ``videomae_{s,b,l}`` for fine-tuned, ``videomae_{s,b,l}_pretrain`` for
      pretraining checkpoints.
    num_classes: None to take the head's; otherwise it must match it.
    **overrides: constructor kwargs for non-standard sizes (tiny test models).

  Raises:
    WeightMismatchError: missing, unexpected or mis-shaped keys.
    ValueError: the checkpoint and ``model_name`` disagree.
  """
  arch = infer_arch(state)
  model, num_classes = build_model(arch, model_name, num_classes, **overrides)
  shapes = _shapes(model, arch)
  table = {p: official_name(p, arch.pretrain) for p in shapes}
  expected = {name: _file_shape(p, shapes[p]) for p, (name, _) in table.items()}
  common.check_keys(expected, state, source=f"official VideoMAE checkpoint ({model_name})")
  params: dict[str, Any] = {}
  for p, (name, fn) in table.items():
    node = params
    *parents, leaf = p.split("/")
    for q in parents:
      node = node.setdefault(q, {})
    node[leaf] = np.asarray(fn(np.asarray(state[name], np.float32)), np.float32)
  logging.info("Converted %d official VideoMAE tensors for %s", len(table), model_name)
  return {"params": params}, num_classes


# ---------------------------------------------------------------------------------------
# official <-> Hugging Face names (the HF port reads with `from_hf`, verify writes `to_hf`)

_HF_BLOCK = {
    "norm1": "layernorm_before", "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense", "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def to_hf(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Official-layout weights -> HF ``VideoMAEForPreTraining`` / ``...VideoClassification``.

  ``attn.qkv.weight`` is split into ``query/key/value.weight``; ``q_bias``/``v_bias``
  become ``query.bias``/``value.bias`` (the names transformers >= 5 uses in memory).

  Raises:
    ValueError: for layer-scale checkpoints, which transformers cannot represent.
  """
  out = {}
  for k, v in state.items():
    m = re.match(r"^(encoder\.|decoder\.)?blocks\.(\d+)\.(.+)$", k)
    if m:
      where = ("decoder.decoder_layers" if m.group(1) == "decoder."
               else "videomae.encoder.layer")
      pre, rest = f"{where}.{m.group(2)}.", m.group(3)
      if rest.startswith("gamma_"):
        raise ValueError("transformers' VideoMAE has no layer scale (gamma_1/gamma_2); "
                         "this checkpoint cannot be compared with it.")
      if rest == "attn.qkv.weight":
        q, kk, vv = np.split(v, 3, axis=0)
        out[pre + "attention.attention.query.weight"] = q
        out[pre + "attention.attention.key.weight"] = kk
        out[pre + "attention.attention.value.weight"] = vv
        continue
      if rest in ("attn.q_bias", "attn.v_bias"):
        out[pre + f"attention.attention.{'query' if rest == 'attn.q_bias' else 'value'}"
            ".bias"] = v
        continue
      mod, param = rest.rsplit(".", 1)
      out[pre + f"{_HF_BLOCK[mod]}.{param}"] = v
      continue
    name = k.removeprefix("encoder.")
    if name.startswith("patch_embed.proj."):
      name = "videomae.embeddings.patch_embeddings.projection." + name.rsplit(".", 1)[1]
    elif name.startswith("norm."):
      name = "videomae.layernorm." + name[len("norm."):]
    elif name.startswith("head."):
      name = "classifier." + name[len("head."):]
    out[name] = v
  return out


def hf_config(arch: Arch, model: nn.Module, num_classes: int, image_size: int,
              num_frames: int):
  """A transformers ``VideoMAEConfig`` matching ``model`` (eps 1e-6 as the official)."""
  from transformers import VideoMAEConfig  # pylint: disable=g-import-not-at-top
  kw = dict(
      image_size=image_size, patch_size=arch.patch_size, num_channels=arch.in_chans,
      num_frames=num_frames, tubelet_size=arch.tubelet_size, hidden_size=arch.embed_dim,
      num_hidden_layers=arch.depth, num_attention_heads=model.num_heads,
      intermediate_size=int(arch.embed_dim * arch.mlp_ratio), hidden_act="gelu",
      layer_norm_eps=transformer.LN_EPS, qv_bias=True,
      use_mean_pooling=arch.use_mean_pooling and not arch.pretrain,
      attn_implementation="eager")
  if arch.pretrain:
    kw.update(decoder_hidden_size=arch.decoder_embed_dim,
              decoder_num_hidden_layers=arch.decoder_depth,
              decoder_num_attention_heads=model.decoder_num_heads,
              decoder_intermediate_size=int(arch.decoder_embed_dim * arch.mlp_ratio))
  else:
    kw.update(num_labels=num_classes)
  return VideoMAEConfig(**kw)


def build(state: Mapping[str, np.ndarray], model_name: str, num_classes: int | None,
          **overrides) -> tuple[nn.Module, int]:
  """The model `convert` fills (its options go to the port's metadata) and its classes."""
  return build_model(infer_arch(state), model_name, num_classes, **overrides)


def verify_official(state: Mapping[str, np.ndarray], variables: Mapping[str, Any],
                    model_name: str, num_classes: int, *, seed: int = 0,
                    atol: float = compare.ATOL, rtol: float = compare.RTOL,
                    **overrides) -> compare.Report:
  """Compares transformers' VideoMAE and ours, layer by layer, on the same weights.

  Builds the transformers model from the official-layout ``state`` (via `to_hf`), in
  eval mode and float64 (so that the reference carries no rounding of its own), on a
  random clip of ``2·tubelet`` frames of ``4·patch``² pixels, and compares each encoder
  block's output (``blocks_{i}``: HF ``videomae.encoder.layer.{i}``), for pretrainers
  each decoder block's (``decoder/blocks_{i}``: ``decoder.decoder_layers.{i}``), for
  classifiers the pooled features (``pre_logits``: the input of ``classifier``), and the
  output: logits, or the reconstructions of the same tube mask (ratio 0.5). transformers
  hard-codes eps 1e-5 in ``fc_norm``/``decoder.norm``; they are set to the official
  1e-6 so the comparison is of the same function. See `time_jax.port.compare`.

  Raises:
    ValueError: for layer-scale checkpoints (transformers has no layer scale).
  """
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  arch = infer_arch(state)
  model, _ = build_model(arch, model_name, num_classes or None, **overrides)
  frames, size = 2 * arch.tubelet_size, 4 * arch.patch_size
  cfg = hf_config(arch, model, num_classes, size, frames)
  cls = (transformers.VideoMAEForPreTraining if arch.pretrain
         else transformers.VideoMAEForVideoClassification)
  torch.manual_seed(seed)
  hf = cls(cfg).eval()
  hf_state = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32))
              for k, v in to_hf(state).items()}
  hf.load_state_dict(hf_state, strict=True)
  hf = hf.double()
  for mod in hf.modules():
    if isinstance(mod, torch.nn.LayerNorm):
      mod.eps = transformer.LN_EPS
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((1, frames, size, size, arch.in_chans)).astype(np.float32)
  xt = torch.from_numpy(x.transpose(0, 1, 4, 2, 3).astype(np.float64))
  taps = [(f"blocks_{i}", layer, "output")
          for i, layer in enumerate(hf.videomae.encoder.layer)]
  if arch.pretrain:
    taps += [(f"decoder/blocks_{i}", layer, "output")
             for i, layer in enumerate(hf.decoder.decoder_layers)]
    model = model.clone(mask_ratio=0.5)
    mask = np.array(vm.tube_mask(jax.random.key(seed), 1, frames, size,
                                 arch.patch_size, arch.tubelet_size, 0.5))
    run = lambda: hf(xt, bool_masked_pos=torch.from_numpy(mask)).logits  # pylint: disable=unnecessary-lambda-assignment
    ours, acts = compare.flax_activations(model, variables, x, mask)
  else:
    taps.append(("pre_logits", hf.classifier, "input"))
    run = lambda: hf(xt).logits  # pylint: disable=unnecessary-lambda-assignment
    ours, acts = compare.flax_activations(model, variables, x)
  theirs, ref = compare.torch_activations(run, taps)
  ref["output"] = theirs.numpy()
  acts["output"] = ours
  report = compare.compare(acts, ref, atol=atol, rtol=rtol)
  logging.info("verify %s: %s", model_name, report.summary())
  return report


def verify(state: Mapping[str, np.ndarray], variables: Mapping[str, Any],
           model_name: str, num_classes: int, **overrides) -> compare.Report:
  """`verify_official` for an official checkpoint (the CLI's ``--verify``)."""
  return verify_official(state, variables, model_name, num_classes, **overrides)
