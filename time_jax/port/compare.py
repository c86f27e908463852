"""``--verify``'s comparison: our model's per-layer activations against the reference's.

Both models run the same input in float64 (ours under ``jax.enable_x64``). Ours sows its layer outputs into ``'intermediates'``
(`flax_activations`: each transformer block's ``features``, each ResNet bottleneck's
``out``, the pooled ``pre_logits``); the PyTorch reference's are caught with forward
hooks (`torch_activations`). `compare` checks every layer, in forward order, element by
element:

    |ours - ref| <= atol * rms(ref) + rtol * |ref|

with ``rms(ref)`` the root mean square of that layer's reference activations (so
``atol`` is relative to the layer's scale: residual streams of large models reach
hundreds, where a fixed absolute ``atol`` would mean something else than in the
first block). A layer
passes when all its elements do; the `Report` names the first layer that does not, which
is where a porting error enters (a later layer only inherits it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from flax import traverse_util

# Defaults of the CLI's --atol / --rtol. Both models run in float64; what remains is
# float32 rounding in a few places: our attention's softmax (`ops.explicit_attention`
# takes float32 logits, which rounds a logit of 20 by 1e-6), transformers' sine-cosine
# table. Measured on random models (in units of atol = rtol = 1e-6): 0.4 (ViT-B/16),
# 0.3 (ViT-S/16), 1e-8 (ResNet-50); 5e-6 leaves room for the larger logits of trained
# models. A 1 % change of one attention bias of the random VideoMAEs in tests/port is
# 2 to 3.5 times 5e-6.
ATOL = 5e-6
RTOL = 5e-6

# Leaves our models sow that `flax_activations` reads (the block outputs and pooling).
_SOWN = ("features", "out", "pre_logits")


@dataclasses.dataclass(frozen=True)
class LayerDiff:
  """How one layer's activations differ.

  Attributes:
    name: our name of the layer (``blocks_3``, ``decoder/blocks_0``, ``layer2_1``,
      ``pre_logits``, ``output``).
    shape: the reference's shape (ours must be the same).
    max_abs: ``max |ours - ref|``.
    max_relative: ``max |ours - ref| / max |ref|``.
    worst: ``max |ours - ref| / (atol·rms(ref) + rtol·|ref|)``; the layer passes iff <= 1.
    bad: elements outside the tolerance (all of them when the shapes differ).
    note: why the layer could not be compared, or ``''``.
  """
  name: str
  shape: tuple[int, ...]
  max_abs: float
  max_relative: float
  worst: float
  bad: int
  note: str = ""

  @property
  def ok(self) -> bool:
    return not self.note and self.bad == 0

  def describe(self) -> str:
    if self.note:
      return f"{self.name}: {self.note}"
    size = int(np.prod(self.shape))
    return (f"{self.name} {list(self.shape)}: {self.bad}/{size} elements outside tolerance, "
            f"max |diff| {self.max_abs:.3e} ({self.max_relative:.3e} of max |ref|), "
            f"{self.worst:.2f}x the tolerance")


@dataclasses.dataclass(frozen=True)
class Report:
  """The comparison of all layers, in forward order; the last is the model's output."""
  layers: tuple[LayerDiff, ...]
  atol: float
  rtol: float

  @property
  def ok(self) -> bool:
    return all(layer.ok for layer in self.layers)

  @property
  def first_failure(self) -> LayerDiff | None:
    return next((layer for layer in self.layers if not layer.ok), None)

  @property
  def output(self) -> LayerDiff:
    return self.layers[-1]

  @property
  def max_relative(self) -> float:
    """The output's ``max|ours - ref| / max|ref|`` (all that verify used to check)."""
    return self.output.max_relative

  def summary(self) -> str:
    """One line: passed or the first layer that differs, and how much."""
    worst = max(self.layers, key=lambda layer: (bool(layer.note), layer.worst))
    head = (f"{len(self.layers)} layers compared (element-wise atol {self.atol:.0e}·rms + "
            f"rtol {self.rtol:.0e}); output max relative difference "
            f"{self.max_relative:.3e}")
    if self.ok:
      return f"ok: {head}; closest to the tolerance: {worst.name} ({worst.worst:.2f}x)"
    return f"FAILED: {head}; first layer that differs: {self.first_failure.describe()}"


def layer_diff(name: str, ours: np.ndarray, ref: np.ndarray, *, atol: float = ATOL,
               rtol: float = RTOL) -> LayerDiff:
  """Compares one layer's activations (any shapes; float64 arithmetic)."""
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  if ours.shape != ref.shape:
    return LayerDiff(name, ref.shape, np.inf, np.inf, np.inf, ref.size,
                     note=f"shapes differ: ours {list(ours.shape)}, reference "
                          f"{list(ref.shape)}")
  diff = np.abs(ours - ref)
  if not np.all(np.isfinite(ours)):
    return LayerDiff(name, ref.shape, np.inf, np.inf, np.inf, ref.size,
                     note="ours has NaN or infinite values")
  rms = float(np.sqrt(np.mean(ref ** 2))) if ref.size else 0.0
  allowed = atol * max(rms, 1e-30) + rtol * np.abs(ref)
  max_abs = float(diff.max()) if diff.size else 0.0
  return LayerDiff(
      name, ref.shape, max_abs, max_abs / max(float(np.abs(ref).max(initial=0)), 1e-30),
      float((diff / allowed).max(initial=0)), int((diff > allowed).sum()))


def compare(ours: Mapping[str, Any], ref: Mapping[str, Any], *, atol: float = ATOL,
            rtol: float = RTOL) -> Report:
  """Compares each layer of ``ref`` (forward order, the output last) with ``ours``.

  A layer of ``ref`` missing from ``ours`` fails with that note.
  """
  layers = []
  for name, value in ref.items():
    if name not in ours:
      layers.append(LayerDiff(name, tuple(np.shape(value)), np.inf, np.inf, np.inf,
                              int(np.size(value)), note="not produced by our model"))
    else:
      layers.append(layer_diff(name, ours[name], value, atol=atol, rtol=rtol))
  return Report(tuple(layers), atol, rtol)


def flax_activations(model, variables: Mapping[str, Any], *args, **kwargs
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """``(output, {layer: activations})`` of a time_jax model in eval mode, in float64.

  The model runs with ``dtype=float64`` on float64 copies of ``variables`` and of the
  floating-point ``args`` (inside ``jax.enable_x64``), so that what differs from the
  reference is the port, not float32 rounding. Layers are the modules that sow
  ``features`` (transformer blocks), ``out`` (ResNet bottlenecks) or ``pre_logits`` (the
  pooled features), named by their module path (``blocks_0``, ``decoder/blocks_1``,
  ``layer1_0``; ``pre_logits``).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def wide(x):
    x = np.asarray(x)
    return x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x

  with jax.enable_x64(True):
    out, state = model.clone(dtype=jnp.float64).apply(
        jax.tree.map(wide, dict(variables)), *[wide(a) for a in args], train=False,
        mutable=["intermediates"], **kwargs)
    out = np.asarray(out)
    state = jax.tree.map(np.asarray, state)
  acts = {}
  for path, value in traverse_util.flatten_dict(state.get("intermediates", {})).items():
    if path[-1] in _SOWN:
      name = "/".join(path[:-1]) or path[-1]
      acts[name] = np.asarray(value[0] if isinstance(value, tuple) else value)
  return out, acts


def torch_activations(run: Callable[[], Any],
                      taps: Sequence[tuple[str, Any, str]]) -> tuple[Any, dict[str, np.ndarray]]:
  """``(run(), {name: activations})`` with forward hooks on PyTorch modules.

  Args:
    run: calls the model (under ``torch.no_grad``).
    taps: ``(name, module, 'output' | 'input')``: record the module's output (the first
      element of a tuple output) or its first positional input.

  Returns:
    ``run()``'s result and the recorded arrays (float64 numpy), in ``taps`` order.
  """
  import torch  # pylint: disable=g-import-not-at-top
  got: dict[str, Any] = {}

  def first(value):
    return value[0] if isinstance(value, (tuple, list)) else value

  handles = []
  for name, module, where in taps:
    if where == "input":
      hook = lambda m, inputs, name=name: got.__setitem__(name, first(inputs))
      handles.append(module.register_forward_pre_hook(hook))
    else:
      hook = lambda m, inputs, output, name=name: got.__setitem__(name, first(output))
      handles.append(module.register_forward_hook(hook))
  try:
    with torch.no_grad():
      result = run()
  finally:
    for h in handles:
      h.remove()
  return result, {name: got[name].detach().double().numpy() for name, _, _ in taps
                  if name in got}
