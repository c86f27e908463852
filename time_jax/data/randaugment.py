"""RandAugment for clips: timm's policy strings and op set, one draw per clip.

VideoMAE fine-tunes with ``--aa rand-m7-n4-mstd0.5-inc1``: timm's ``rand_augment_transform``
on the PIL frames of a clip, before the random resized crop, with one random draw per clip
(which ops, their magnitudes, signs and resampling) applied to every frame. This module
does the same on uint8 numpy clips without PIL: `draw` makes the random choices from the
element's ``np.random.Generator`` (so results do not depend on worker count), and
`RandAugment.apply` runs them on all frames of the clip:

    augment = RandAugment("rand-m7-n4-mstd0.5-inc1")
    frames = augment.apply(frames, augment.draw(rng))  # uint8 [T, H, W, 3] -> same

`RandAugment.apply_view` computes the same followed by a view's crop and resize
(`transforms.apply_view`) only where the view samples the frames, at a fraction of the
price (``input.randaugment_on='frames_window'``; see there for what differs).

What each op computes is Pillow's (as timm calls it), reproduced with OpenCV and numpy:

* Invert, Posterize, Solarize, SolarizeAdd, Brightness: one lookup table for the clip.
* AutoContrast, Equalize, Contrast: one table per frame (and channel), from that frame's
  histogram or grey mean, as ``ImageOps`` / ``ImageEnhance`` compute them.
* Color, Sharpness: ``Image.blend`` of the frame with its grey version / its
  ``ImageFilter.SMOOTH`` version, in Pillow's float32 arithmetic.
  All of the above equal Pillow's output exactly.
* Rotate, ShearX/Y, TranslateX/YRel: ``Image.transform(AFFINE)``'s sampling positions,
  edge handling and fill, by ``cv2.remap`` of the uint8 frames with one fixed-point map
  per clip. Bilinear results are within one grey level of Pillow's (OpenCV rounds where
  Pillow truncates). OpenCV's bicubic kernel
  is Keys' with a = -0.75 where Pillow's affine bicubic uses a = -1, so bicubic results
  differ by a few grey levels at hard edges (see the tests for the bounds).

Defaults are what VideoMAE passes to timm (``create_random_augment``): the fill is timm's
``_FILL`` grey (128, 128, 128), since VideoMAE passes no ``img_mean``; the resampling is
bicubic (``--train_interpolation bicubic``; 'random' is timm's own default, a draw between
bilinear and bicubic). VideoMAE's ``translate_const`` (0.45 of the crop size) only feeds
timm's absolute-pixel TranslateX/Y, which no RandAugment op set contains; the relative
translations move by 0.45·magnitude/10 of the frame's own width or height.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import cv2
import numpy as np

from time_jax.data import transforms

# timm.data.auto_augment's RandAugment op sets (_RAND_TRANSFORMS, _RAND_INCREASING_TRANSFORMS)
# and its 'weights' choice set (_RAND_WEIGHTED_0, which uses the increasing ops).
OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
       "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
       "TranslateXRel", "TranslateYRel")
INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                  "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing",
                  "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
                  "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
WEIGHTS = {"Rotate": 3, "ShearX": 2, "ShearY": 2, "TranslateXRel": 1, "TranslateYRel": 1,
           "ColorIncreasing": .25, "SharpnessIncreasing": 0.25, "AutoContrast": 0.25,
           "SolarizeIncreasing": .05, "SolarizeAdd": .05, "ContrastIncreasing": .05,
           "BrightnessIncreasing": .05, "Equalize": .05, "PosterizeIncreasing": 0.05,
           "Invert": 0.05}

FILL = (128, 128, 128)  # timm's _FILL: the fill when hparams carry no 'img_mean'
INTERPOLATIONS = ("bilinear", "bicubic", "random")
_LEVEL_DENOM = 10.0  # timm: magnitude M means level M / 10 of each op's range
_TRANSLATE_PCT = 0.45  # timm's default 'translate_pct' for the relative translations

_GRAMMAR = ("rand-m<int>-n<int>-mstd<float>-mmax<int>-inc<0|1>-p<float>-tweights, "
            "sections after 'rand' in any order, each optional")


@dataclasses.dataclass(frozen=True)
class Policy:
  """A parsed RandAugment policy string (timm's defaults where a section is absent).

  Attributes:
    magnitude: M, the op strength on timm's 0..10 scale ('m', default 10).
    num_ops: ops drawn per clip ('n', default 2).
    prob: probability that each drawn op is applied ('p', default 0.5).
    magnitude_std: std of gaussian noise on M per op ('mstd', default 0); ``inf`` (timm:
      any mstd > 100) draws M' uniformly from [0, M] instead.
    magnitude_max: upper clip of the drawn magnitude ('mmax', default 10).
    increasing: use the op set whose severity increases with M ('inc1').
    weighted: draw from timm's 'weights' set with its weights, without replacement
      ('tweights'); otherwise uniformly with replacement.
  """
  magnitude: int = 10
  num_ops: int = 2
  prob: float = 0.5
  magnitude_std: float = 0.0
  magnitude_max: int = 10
  increasing: bool = False
  weighted: bool = False

  @property
  def ops(self) -> tuple[str, ...]:
    """The op names that draws choose from."""
    if self.weighted:
      return tuple(WEIGHTS)
    return INCREASING_OPS if self.increasing else OPS

  @property
  def weights(self) -> np.ndarray | None:
    """float64 ``[len(ops)]`` choice probabilities, or None for uniform choice."""
    if not self.weighted:
      return None
    w = np.array(list(WEIGHTS.values()), np.float64)
    return w / w.sum()


def _bad(policy: str, token: str, why: str) -> ValueError:
  return ValueError(f"RandAugment policy {policy!r}: {why} in section {token!r}; expected "
                    f"{_GRAMMAR}, e.g. 'rand-m7-n4-mstd0.5-inc1'.")


# key: (Policy field, reader, check of the value, what the check asks)
_SECTIONS = {
    "m": ("magnitude", int, lambda v: v >= 0, "m must be >= 0"),
    "n": ("num_ops", int, lambda v: v >= 0, "n must be >= 0"),
    "p": ("prob", float, lambda v: 0.0 <= v <= 1.0, "p must lie in [0, 1]"),
    "mstd": ("magnitude_std", float, lambda v: v >= 0.0, "mstd must be >= 0"),
    "mmax": ("magnitude_max", int, lambda v: v > 0, "mmax must be > 0"),
    "inc": ("increasing", lambda v: {"0": False, "1": True}[v], lambda v: True,
            "inc takes 0 or 1"),
}


def parse(policy: str) -> Policy:
  """Parses timm's RandAugment string, e.g. ``'rand-m7-n4-mstd0.5-inc1'``.

  Sections as in timm's ``rand_augment_transform``: m (int magnitude), n (int ops per
  clip), mstd (float magnitude std; > 100 means uniform), mmax (int magnitude clip),
  inc (0/1 increasing op set), p (float op probability), t (op set: only 'tweights').
  Where timm silently skips a section it cannot read, or lets a repeated section win
  by position, this raises.

  Raises:
    ValueError: naming the bad section and the expected form.
  """
  sections = policy.split("-")
  if sections[0] != "rand":
    raise _bad(policy, sections[0], "the policy must start with 'rand'")
  fields, seen = {}, set()
  for token in sections[1:]:
    if token.startswith("t"):  # timm: a section starting with 't' names the op set
      key, value = "t", token[1:]
    else:  # timm: the key runs up to the first digit
      key, value = re.fullmatch(r"([a-z]*)(.*)", token).groups()
    if key in seen:
      raise _bad(policy, token, f"'{key}' is given twice")
    seen.add(key)
    if key == "t":
      if value != "weights":
        raise _bad(policy, token, "the only op set supported is 'weights' (timm's '3a' "
                   "and '3aw' need ops not implemented here: Desaturate, GaussianBlur)")
      fields["weighted"] = True
      continue
    if key == "w":
      raise _bad(policy, token, "'w' (weight index) was removed from timm; use 'tweights'")
    if key not in _SECTIONS:
      raise _bad(policy, token, f"unknown key {key!r}")
    field, read, check, rule = _SECTIONS[key]
    try:
      fields[field] = read(value)
    except (KeyError, ValueError):
      raise _bad(policy, token, f"cannot read {value!r} as '{key}' ({rule})") from None
    if not check(fields[field]):
      raise _bad(policy, token, rule)
  if fields.get("magnitude_std", 0.0) > 100:  # timm: uniform magnitudes
    fields["magnitude_std"] = math.inf
  p = Policy(**fields)
  if p.weighted and p.num_ops > len(WEIGHTS):
    raise _bad(policy, f"n{p.num_ops}", f"tweights draws without replacement, so n must "
               f"be <= {len(WEIGHTS)}")
  return p


@dataclasses.dataclass(frozen=True)
class Op:
  """One drawn op, applied alike to every frame of a clip.

  Attributes:
    name: timm's op name (one of `OPS`, `INCREASING_OPS`).
    magnitude: the drawn magnitude, on timm's 0..10 scale, after noise and clipping.
    negate: the drawn sign of signed ops (Rotate, Shear*, Translate*, *Increasing
      enhancements): negates timm's level argument.
    resample: 'bilinear' or 'bicubic' for geometric ops, None for the others.
  """
  name: str
  magnitude: float
  negate: bool = False
  resample: str | None = None

  @property
  def arg(self):
    """timm's argument of the op function (``LEVEL_TO_ARG[name]``), or None."""
    level = _LEVELS[self.name][0]
    return None if level is None else level(self.magnitude, self.negate)


class RandAugment:
  """timm's RandAugment on uint8 clips: `draw` per clip, then `apply` to all frames.

  Args:
    policy: a timm policy string (see `parse`) or a `Policy`.
    interpolation: resampling of the geometric ops: 'bicubic' (VideoMAE's
      ``--train_interpolation``), 'bilinear', or 'random' (drawn per op and clip
      between the two: timm's default when hparams set no interpolation).
    fill: RGB of the pixels that geometric ops bring in from outside the frame
      (timm's ``img_mean`` hparam; VideoMAE leaves timm's grey default).
  """

  def __init__(self, policy: str | Policy, *, interpolation: str = "bicubic",
               fill: tuple[int, int, int] = FILL):
    self.policy = parse(policy) if isinstance(policy, str) else policy
    if interpolation not in INTERPOLATIONS:
      raise ValueError(f"RandAugment interpolation {interpolation!r}: expected one of "
                       f"{INTERPOLATIONS}.")
    if len(fill) != 3 or not all(0 <= int(v) <= 255 for v in fill):
      raise ValueError(f"RandAugment fill {fill!r}: expected 3 integers in [0, 255].")
    self.interpolation = interpolation
    self.fill = tuple(int(v) for v in fill)

  def draw(self, rng: np.random.Generator) -> list[Op]:
    """The clip's random choices, as timm's RandAugment and AugmentOp make them.

    ``num_ops`` op names are chosen (uniformly with replacement; with 'tweights' by
    weight without replacement); each is kept with probability ``prob``; a kept op gets
    magnitude ``M + N(0, mstd)`` (uniform in [0, M] for infinite mstd) clipped to
    ``[0, mmax]``, a random sign if signed, and a resampling if geometric.

    Returns:
      The ops to apply, in order (skipped ops are left out).
    """
    p = self.policy
    names = p.ops
    chosen = rng.choice(len(names), size=p.num_ops, replace=p.weights is None,
                        p=p.weights)
    ops = []
    for index in chosen:
      if p.prob < 1.0 and rng.random() > p.prob:
        continue
      magnitude = float(p.magnitude)
      if p.magnitude_std == math.inf:
        magnitude = float(rng.uniform(0.0, magnitude))
      elif p.magnitude_std > 0:
        magnitude = float(rng.normal(magnitude, p.magnitude_std))
      magnitude = max(0.0, min(magnitude, float(p.magnitude_max)))
      name = names[index]
      negate = bool(_LEVELS[name][1] and rng.random() > 0.5)
      resample = None
      if name in _GEOMETRY:
        resample = self.interpolation
        if resample == "random":
          resample = ("bilinear", "bicubic")[rng.integers(2)]
      ops.append(Op(name, magnitude, negate, resample))
    return ops

  def apply(self, frames: np.ndarray, ops: list[Op]) -> np.ndarray:
    """Applies ``ops`` in order to every frame.

    Args:
      frames: uint8 ``[T, H, W, 3]`` RGB.
      ops: from `draw` (or built by hand).

    Returns:
      uint8 ``[T, H, W, 3]``: a new array, or ``frames`` itself when ``ops`` is empty.
    """
    _check("apply", frames, ops)
    return _apply(frames, ops, self.fill)

  def apply_view(self, frames: np.ndarray, ops: list[Op], view: transforms.View,
                 out_size: tuple[int, int], *, indices: np.ndarray | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
    """``transforms.apply_view(apply(frames[indices], ops), view, out_size)``, computed
    only where the view samples (``input.randaugment_on='frames_window'``).

    Only the window of the augmented frames that the view's warp reads is computed
    (with a pixel more around it per Sharpness), and the view's warp is
    `transforms.apply_view`'s own. Colour ops act on the pixels there, with each
    frame's statistics (AutoContrast, Equalize, Contrast) and Sharpness's edge rows
    as on the whole frame: without geometric ops the result is the frames path's,
    bit for bit. The geometric ops are one warp from the source window onto that
    window, each op's fill (passed through the colour ops after it) placed where
    that op sampled outside the frame. What differs:

    * The warp is bilinear where the ops may say bicubic (VideoMAE's): OpenCV's
      bicubic warp costs several times its bilinear one. On real-looking footage a
      single geometric op stays within a grey level of the frames path on average;
      drawn policies differ about as much as the frames path with bilinear ops
      differs from itself with bicubic ones (most where a Posterize, Solarize or
      Equalize sharpens the difference).
    * Several geometric ops are one resampling, and the colour ops between them act
      before it.
    * Statistics after a geometric op: Equalize and Contrast take them from every
      `_STATISTICS_STRIDE`-th pixel of the transformed frame (fill included, that
      op's own resampling); AutoContrast, whose extremes can hang on single pixels,
      from the whole transformed frame (`apply`, for those ops only).

    Args:
      frames: uint8 ``[T, H, W, 3]`` RGB, the original frames.
      ops: from `draw`.
      view: the crop / flip / rotation in the frames' pixels.
      out_size: ``(h, w)``, the TIME cell size.
      indices: int ``[K]``: the clip is ``frames[indices]``; default all T frames.
      out: optional uint8 ``[K, h, w, 3]`` to write into.

    Returns:
      uint8 ``[K, h, w, 3]`` (``out`` when given).
    """
    _check("apply_view", frames, ops)
    sources = range(len(frames)) if indices is None else np.asarray(indices).tolist()
    if out is None:
      out = np.empty((len(sources), *out_size, 3), np.uint8)
    if not ops:
      return transforms.apply_view(frames, view, out_size, indices=indices, out=out)
    return _apply_in_view(frames, sources, ops, view, out_size, out, self.fill)

  def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``apply(frames, draw(rng))``."""
    return self.apply(frames, self.draw(rng))


def _check(where: str, frames: np.ndarray, ops: list[Op]) -> None:
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"RandAugment.{where}: expected uint8 [T, H, W, 3], got "
                     f"{frames.dtype} {frames.shape}.")
  for op in ops:
    if op.name not in _LEVELS:
      raise ValueError(f"RandAugment.{where}: unknown op {op.name!r}; expected one of "
                       f"{sorted(_LEVELS)}.")
    if op.name in _GEOMETRY and op.resample not in ("bilinear", "bicubic"):
      raise ValueError(f"RandAugment.{where}: {op} needs resample 'bilinear' or "
                       "'bicubic'.")


def _apply(frames: np.ndarray, ops: list[Op], fill: tuple[int, int, int]) -> np.ndarray:
  """`RandAugment.apply` on checked input: each op on the whole frames, in order."""
  for op in ops:
    frames = np.ascontiguousarray(frames)
    if op.name in _GEOMETRY:
      coeffs = _GEOMETRY[op.name](frames.shape[1], frames.shape[2], op.arg)
      frames = _affine(frames, coeffs, op.resample, fill)
    else:
      frames = _colour_clip(op, frames)
  return frames


# ----------------------------------------------------------------------------------
# Magnitude -> argument: timm's LEVEL_TO_ARG, term for term (same float results).
# ----------------------------------------------------------------------------------

def _signed(value, negate):
  return -value if negate else value


def _enhance(m, _):
  return (m / _LEVEL_DENOM) * 1.8 + 0.1


def _enhance_increasing(m, negate):
  # The factor moves from 1 (no change) by 0.9·m/10 either way, kept >= 0.1.
  return max(0.1, 1.0 + _signed((m / _LEVEL_DENOM) * .9, negate))


def _posterize_bits(m, _):
  return int((m / _LEVEL_DENOM) * 4)


def _solarize_threshold(m, _):
  return min(256, int((m / _LEVEL_DENOM) * 256))


def _shear(m, negate):
  return _signed((m / _LEVEL_DENOM) * 0.3, negate)


def _translate_rel(m, negate):
  return _signed((m / _LEVEL_DENOM) * _TRANSLATE_PCT, negate)


# name: ((magnitude, negate) -> timm's argument, or None; whether a sign is drawn)
_LEVELS = {
    "AutoContrast": (None, False),
    "Equalize": (None, False),
    "Invert": (None, False),
    "Rotate": (lambda m, negate: _signed((m / _LEVEL_DENOM) * 30., negate), True),
    "Posterize": (_posterize_bits, False),
    "PosterizeIncreasing": (lambda m, _: 4 - _posterize_bits(m, _), False),
    "Solarize": (_solarize_threshold, False),
    "SolarizeIncreasing": (lambda m, _: 256 - _solarize_threshold(m, _), False),
    "SolarizeAdd": (lambda m, _: min(128, int((m / _LEVEL_DENOM) * 110)), False),
    "Color": (_enhance, False),
    "ColorIncreasing": (_enhance_increasing, True),
    "Contrast": (_enhance, False),
    "ContrastIncreasing": (_enhance_increasing, True),
    "Brightness": (_enhance, False),
    "BrightnessIncreasing": (_enhance_increasing, True),
    "Sharpness": (_enhance, False),
    "SharpnessIncreasing": (_enhance_increasing, True),
    "ShearX": (_shear, True),
    "ShearY": (_shear, True),
    "TranslateXRel": (_translate_rel, True),
    "TranslateYRel": (_translate_rel, True),
}


# ----------------------------------------------------------------------------------
# Colour ops: Pillow's ImageOps / ImageEnhance, exactly.
# ----------------------------------------------------------------------------------

def _lut(frames: np.ndarray, lut) -> np.ndarray:
  """uint8 ``[T, H, W, 3]`` through one table ``[256]`` (all channels, all frames)."""
  t, h, w, c = frames.shape
  return cv2.LUT(frames.reshape(t * h, w, c), np.asarray(lut, np.uint8)).reshape(
      frames.shape)


def _frame_luts(frames: np.ndarray, luts: np.ndarray) -> np.ndarray:
  """uint8 ``[T, H, W, 3]`` through per-frame, per-channel tables ``[T, 3, 256]``."""
  out = np.empty_like(frames)
  for i, lut in enumerate(luts):
    cv2.LUT(frames[i], np.ascontiguousarray(lut.T[None]), dst=out[i])
  return out


def _histograms(frame: np.ndarray) -> np.ndarray:
  """int64 ``[3, 256]``: counts per channel of one ``[H, W, 3]`` frame."""
  # calcHist counts in float32: exact below 2**24 pixels a frame.
  return np.stack([cv2.calcHist([frame], [c], None, [256], (0, 256)).reshape(256)
                   for c in range(3)]).astype(np.int64)


def _blend(degenerate: np.ndarray, image: np.ndarray, factor: float) -> np.ndarray:
  """``Image.blend(degenerate, image, factor)`` as Pillow's C code computes it.

  ``uint8(clip(d + f·(x - d), 0, 255))`` in float32 (``f`` rounded to float32 first),
  the cast truncating. Both uint8 of one shape.
  """
  f = float(np.float32(factor))
  diff = cv2.subtract(image, degenerate, dtype=cv2.CV_32F)  # exact integers
  value = cv2.add(cv2.multiply(diff, (f, f, f, f)), degenerate, dtype=cv2.CV_32F)
  if not 0.0 <= f <= 1.0:  # an extrapolation can leave [0, 255]
    np.clip(value, 0, 255, out=value)
  return value.astype(np.uint8)


def _blend_lut(grey: int, factor: float) -> np.ndarray:
  """uint8 ``[256]``: `_blend` of every value with a constant degenerate ``grey``."""
  values = np.arange(256, dtype=np.uint8)
  return _blend(np.full(256, grey, np.uint8), values, factor).reshape(256)


_GREY_WEIGHTS = np.array([[19595, 38470, 7471, 0x8000]], np.float32)


def _grey(frame: np.ndarray) -> np.ndarray:
  """uint8 ``[H, W]``: Pillow's RGB -> L, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``."""
  # Every partial sum is an integer below 2**24, so float32 holds it exactly.
  total = cv2.transform(frame.astype(np.float32), _GREY_WEIGHTS)
  return (total * np.float32(1 / 65536)).astype(np.uint8)


def _invert_table(_):
  return np.arange(255, -1, -1)


def _posterize_table(bits):
  # timm keeps the image from 8 bits on; Pillow 13 refuses bits < 1, where earlier
  # Pillows (and this) keep no bit: black.
  mask = 0xFF if bits >= 8 else ~(2 ** (8 - bits) - 1) & 0xFF if bits > 0 else 0
  return np.arange(256) & mask


def _solarize_table(threshold):
  values = np.arange(256)
  return np.where(values < threshold, values, 255 - values)


def _solarize_add_table(add, threshold=128):
  values = np.arange(256)
  return np.where(values < threshold, np.minimum(255, values + add), values)


def _brightness_table(factor):
  """``ImageEnhance.Brightness``: blend with black."""
  return _blend_lut(0, factor)


# Ops that are one lookup table for the clip: name -> (timm's argument -> [256] table).
_TABLES = {
    "Invert": _invert_table,
    "Posterize": _posterize_table,
    "PosterizeIncreasing": _posterize_table,
    "Solarize": _solarize_table,
    "SolarizeIncreasing": _solarize_table,
    "SolarizeAdd": _solarize_add_table,
    "Brightness": _brightness_table,
    "BrightnessIncreasing": _brightness_table,
}


def _autocontrast_table(hists: np.ndarray, _) -> np.ndarray:
  """``ImageOps.autocontrast`` (cutoff 0): each channel's [min, max] -> [0, 255]."""
  luts = np.empty((3, 256), np.uint8)
  values = np.arange(256)
  for c, hist in enumerate(hists):
    present = np.flatnonzero(hist)
    lo, hi = present[0], present[-1]
    if hi <= lo:
      luts[c] = values
    else:
      scale = 255.0 / (hi - lo)
      offset = -lo * scale
      luts[c] = np.clip(np.trunc(values * scale + offset), 0, 255)
  return luts


def _equalize_table(hists: np.ndarray, _) -> np.ndarray:
  """``ImageOps.equalize``: each channel's cumulative histogram as the table."""
  luts = np.empty((3, 256), np.uint8)
  values = np.arange(256)
  for c, hist in enumerate(hists):
    present = hist[hist > 0]
    step = (present.sum() - present[-1]) // 255
    if len(present) <= 1 or not step:
      luts[c] = values
    else:
      below = np.concatenate([[0], np.cumsum(hist)[:-1]])
      luts[c] = np.minimum((step // 2 + below) // step, 255)
  return luts


def _contrast_table(grey_mean: float, factor) -> np.ndarray:
  """``ImageEnhance.Contrast``: blend with the frame's mean grey, rounded."""
  return np.repeat(_blend_lut(int(grey_mean + 0.5), factor)[None], 3, axis=0)


# Ops whose table comes from each frame's statistics: name -> (statistic of a frame,
# (statistic, timm's argument) -> [3, 256] table per channel).
_STATISTICS = {
    "AutoContrast": ("histograms", _autocontrast_table),
    "Equalize": ("histograms", _equalize_table),
    "Contrast": ("grey_mean", _contrast_table),
    "ContrastIncreasing": ("grey_mean", _contrast_table),
}


def _frame_tables(op: Op, frames: np.ndarray, weight: int = 1) -> np.ndarray:
  """uint8 ``[T, 3, 256]``: the tables of statistics op ``op`` for each frame.

  ``weight`` scales the histograms of frames sampled at one pixel in ``weight``
  (`_grid_tables`), so the counts stand for the whole frame's.
  """
  statistic, table = _STATISTICS[op.name]
  luts = np.empty((len(frames), 3, 256), np.uint8)
  for i, frame in enumerate(frames):
    if statistic == "histograms":
      value = _histograms(frame) * weight
    else:
      grey = _grey(frame)
      value = grey.sum(dtype=np.int64) / grey.size
    luts[i] = table(value, op.arg)
  return luts


def _color(frame, factor):
  """``ImageEnhance.Color``: blend with the frame's grey version (any ``[..., 3]``)."""
  return _blend(cv2.cvtColor(_grey(frame), cv2.COLOR_GRAY2RGB), frame, factor)


_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13


def _sharpness(frame, factor, edges=(True, True, True, True)):
  """``ImageEnhance.Sharpness``: blend with ``ImageFilter.SMOOTH`` of the frame.

  Pillow's 3x3 filter rounds ``S / 13`` to nearest (S the integer weighted sum, never a
  tie) and copies the outermost rows and columns; ``filter2D``'s float sum rounds the
  same, being far closer than 1/26 to ``S / 13``. ``edges`` (top, bottom, left, right)
  say which sides of ``frame`` are the whole frame's (a window's other sides are
  wrong by one pixel, which the caller cuts away).
  """
  smooth = cv2.filter2D(frame, -1, _SMOOTH)
  top, bottom, left, right = edges
  for keep, index in ((top, np.s_[0]), (bottom, np.s_[-1]), (left, np.s_[:, 0]),
                      (right, np.s_[:, -1])):
    if keep:
      smooth[index] = frame[index]
  return _blend(smooth, frame, factor)


# Ops computed from each pixel's own value and, for Sharpness, its 3x3 neighbourhood.
_PIXELWISE = {
    "Color": _color,
    "ColorIncreasing": _color,
    "Sharpness": _sharpness,
    "SharpnessIncreasing": _sharpness,
}


def _colour_clip(op: Op, frames: np.ndarray) -> np.ndarray:
  """A colour op on uint8 ``[T, H, W, 3]`` whole frames (Pillow's result, exactly)."""
  if op.name in _TABLES:
    return _lut(frames, _TABLES[op.name](op.arg))
  if op.name in _STATISTICS:
    return _frame_luts(frames, _frame_tables(op, frames))
  out = np.empty_like(frames)
  for i, frame in enumerate(frames):
    out[i] = _PIXELWISE[op.name](frame, op.arg)
  return out


def _colour_window(op: Op, window: np.ndarray, table: np.ndarray | None,
                   edges: tuple[bool, bool, bool, bool]) -> np.ndarray:
  """A colour op on one frame's window ``[h, w, 3]``: ``table`` ``[3, 256]`` is the
  frame's (statistics ops), ``edges`` which sides are the frame's (Sharpness)."""
  if op.name in _TABLES:
    return cv2.LUT(window, np.asarray(_TABLES[op.name](op.arg), np.uint8))
  if op.name in _STATISTICS:
    return cv2.LUT(window, np.ascontiguousarray(table.T[None]))
  if op.name in ("Sharpness", "SharpnessIncreasing"):
    return _sharpness(window, op.arg, edges)
  return _color(window, op.arg)


# ----------------------------------------------------------------------------------
# Geometric ops: Pillow's Image.transform(AFFINE) by cv2.warpAffine.
# ----------------------------------------------------------------------------------

def _rotate(height, width, degrees):
  """``Image.rotate(degrees)``'s affine data (counter-clockwise about the centre)."""
  angle = -math.radians(degrees % 360.0)
  a, b = round(math.cos(angle), 15), round(math.sin(angle), 15)
  d, e = round(-math.sin(angle), 15), round(math.cos(angle), 15)
  cx, cy = width / 2, height / 2
  return (a, b, a * -cx + b * -cy + 0.0 + cx, d, e, d * -cx + e * -cy + 0.0 + cy)


# name: (height, width, timm's argument) -> Pillow's AFFINE data (a, b, c, d, e, f):
# output pixel centre (x, y) samples the source at (a·x + b·y + c, d·x + e·y + f).
_GEOMETRY = {
    "Rotate": _rotate,
    "ShearX": lambda h, w, factor: (1, factor, 0, 0, 1, 0),
    "ShearY": lambda h, w, factor: (1, 0, 0, factor, 1, 0),
    "TranslateXRel": lambda h, w, pct: (1, 0, pct * w, 0, 1, 0),
    "TranslateYRel": lambda h, w, pct: (1, 0, 0, 0, 1, pct * h),
}


def _affine(frames: np.ndarray, coeffs, resample: str,
            fill: tuple[int, int, int]) -> np.ndarray:
  """``Image.transform(size, AFFINE, coeffs, resample, fillcolor=fill)`` on every frame.

  Pillow samples at pixel-edge coordinates ``(x + 1/2, y + 1/2)``; a sample outside
  ``[0, W) x [0, H)`` takes the fill, one inside reads its neighbours clamped to the
  frame (OpenCV's BORDER_REPLICATE). The sampling map is computed once for the clip (in
  OpenCV's fixed point, 1/32 pixel) and each uint8 frame is remapped with it; OpenCV
  rounds where Pillow truncates, so values differ by up to a grey level (bilinear).
  """
  t, h, w, _ = frames.shape
  a, b, c, d, e, f = coeffs
  ys, xs = np.mgrid[:h, :w] + 0.5
  sx, sy = a * xs + b * ys + c, d * xs + e * ys + f
  outside = (sx < 0) | (sx >= w) | (sy < 0) | (sy >= h)
  # OpenCV's pixel centres are at integers: the edge coordinate minus half a pixel.
  map1, map2 = cv2.convertMaps((sx - 0.5).astype(np.float32),
                               (sy - 0.5).astype(np.float32), cv2.CV_16SC2)
  interpolation = cv2.INTER_CUBIC if resample == "bicubic" else cv2.INTER_LINEAR
  out = np.empty_like(frames)
  for i in range(t):
    cv2.remap(frames[i], map1, map2, interpolation, dst=out[i],
              borderMode=cv2.BORDER_REPLICATE)
  out[:, outside] = fill
  return out


# ----------------------------------------------------------------------------------
# The original frames' RandAugment, computed where a view samples them.
# ----------------------------------------------------------------------------------

# Statistics of a frame that geometric ops have transformed come from every 2nd pixel of
# it in both directions, a quarter of the work.
_STATISTICS_STRIDE = 2
_WHOLE = (True, True, True, True)  # a whole frame's four sides are the frame's
_SHARPNESS = ("Sharpness", "SharpnessIncreasing")


def _pillow_matrix(op: Op, height: int, width: int) -> np.ndarray:
  """float64 ``[3, 3]``: a geometric op's output edge coordinates -> its input's."""
  a, b, c, d, e, f = _GEOMETRY[op.name](height, width, op.arg)
  return np.array([[a, b, c], [d, e, f], [0.0, 0.0, 1.0]])


def _fill_labels(points: np.ndarray, matrices: list[np.ndarray], height: int,
                 width: int) -> np.ndarray:
  """Where points of the transformed frame come from, through the geometric ops.

  Args:
    points: float64 ``[3, P]``, homogeneous edge coordinates in the frame after the ops.
    matrices: `_pillow_matrix` of the geometric ops, in the order they were applied.

  Returns:
    int ``[P]``: 0 where the point shows the source frame, else ``g + 1`` for the last
    op ``g`` that sampled outside the frame there (its fill shows).
  """
  labels = np.zeros(points.shape[1], np.int64)
  for g in range(len(matrices) - 1, -1, -1):
    points = matrices[g] @ points
    outside = ((points[0] < 0) | (points[0] >= width) | (points[1] < 0)
               | (points[1] >= height))
    labels[outside & (labels == 0)] = g + 1
  return labels


def _fill_values(ops: list[Op], tables: dict, first: int, end: int,
                 fill: tuple[int, int, int], count: int) -> np.ndarray:
  """uint8 ``[count, 3]``: the fill of the geometric op ``ops[first - 1]`` in each
  frame after the colour ops ``ops[first:end]`` that follow it (Sharpness leaves a
  constant as it is)."""
  value = np.ascontiguousarray(np.broadcast_to(np.asarray(fill, np.uint8),
                                               (count, 1, 3)))  # frames as rows
  for j in range(first, end):
    op = ops[j]
    if op.name in _TABLES:
      value = cv2.LUT(value, np.asarray(_TABLES[op.name](op.arg), np.uint8))
    elif op.name in _STATISTICS:
      rows = np.arange(count)[:, None]
      value = tables[j][rows, np.arange(3)[None], value[:, 0]][:, None]
    elif op.name in ("Color", "ColorIncreasing"):
      value = _color(value, op.arg)
  return value[:, 0]


def _expand(window: tuple[int, int, int, int], ring: int, height: int, width: int):
  """``window`` grown by ``ring`` pixels, clipped to the frame; and which of its sides
  (top, bottom, left, right) are the frame's."""
  x0, y0, x1, y1 = window
  x0, y0 = max(0, x0 - ring), max(0, y0 - ring)
  x1, y1 = min(width, x1 + ring), min(height, y1 + ring)
  return (x0, y0, x1, y1), (y0 == 0, y1 == height, x0 == 0, x1 == width)


def _ring(ops: list[Op]) -> int:
  """Pixels a window needs around it for ``ops``: one per Sharpness."""
  return sum(op.name in _SHARPNESS for op in ops)


def _colour(window: np.ndarray, t: int, ops: list[Op], positions, tables: dict,
            edges) -> np.ndarray:
  """The colour ops ``ops[j]``, j in ``positions``, in order on frame ``t``'s window
  (statistics ops with that frame's tables); geometric ops among them are skipped."""
  for j in positions:
    if ops[j].name not in _GEOMETRY:
      window = _colour_window(ops[j], window, tables[j][t] if j in tables else None,
                              edges)
  return window


def _transformed(base: list[np.ndarray], ops: list[Op], tables: dict, start: int,
                 end: int, placement: np.ndarray, size: tuple[int, int], edges,
                 fill: tuple[int, int, int], interpolation: int):
  """The frames after ``ops[start:end]`` (one geometric op or more), where they are seen.

  The colour ops up to the last geometric op act on the source pixels (the window the
  warp reads, with a pixel around it per Sharpness), then all geometric ops are one
  warp, each op's fill goes where it sampled outside the frame (after the colour ops
  that follow it up to the last geometric op), and the colour ops after the last
  geometric op act on the warped pixels. The frames path resamples at each geometric
  op; here the colour ops between geometric ops come before the one resampling.

  Args:
    base: uint8 ``[H, W, 3]`` whole frames after ``ops[:start]``, one per clip frame.
    ops, tables: the clip's ops and the tables of its statistics ops (by position).
    placement: float64 ``[3, 3]``: output edge coordinates -> edge coordinates in the
      frame after ``ops[start:end]``.
    size: the output ``(h, w)``.
    edges: which output sides are the frame's (Sharpness after the geometric ops).
    interpolation: OpenCV's, for the warp.

  Yields:
    uint8 ``[h, w, 3]`` per frame of ``base``.
  """
  height, width = base[0].shape[:2]
  geometric = [j for j in range(start, end) if ops[j].name in _GEOMETRY]
  last = geometric[-1]
  matrices = [_pillow_matrix(ops[j], height, width) for j in geometric]
  composite = functools.reduce(np.matmul, matrices) @ placement
  (x0, y0, x1, y1), before_edges = _expand(
      transforms.affine_window(composite[:2], size, height, width),
      _ring(ops[start:last]), height, width)
  matrix = transforms.reduced_matrix(composite[:2], 1, 1, (x0, y0))
  ys, xs = np.mgrid[:size[0], :size[1]] + 0.5
  labels = _fill_labels(placement @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)]),
                        matrices, height, width)
  # (uint8 mask [h, w], the fill [h, w, 3] per frame) per geometric op that shows
  # its fill; cv2.copyTo writes it many times faster than numpy's masked assignment.
  fills = []
  for g, j in enumerate(geometric):
    mask = (labels == g + 1).reshape(size).astype(np.uint8)
    if mask.any():
      values = _fill_values(ops, tables, j + 1, last, fill, len(base))
      images = [cv2.merge([np.full(size, int(c), np.uint8) for c in value])
                for value in (values[:1] if (values == values[0]).all() else values)]
      fills.append((mask, images))
  for t, frame in enumerate(base):
    window = _colour(frame[y0:y1, x0:x1], t, ops, range(start, last), tables,
                     before_edges)
    window = cv2.warpAffine(window, matrix, size[::-1],
                            flags=interpolation | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    for mask, images in fills:
      cv2.copyTo(images[t % len(images)], mask, window)
    yield _colour(window, t, ops, range(last + 1, end), tables, edges)


def _grid_tables(ops: list[Op], j: int, base: list[np.ndarray], tables: dict,
                 start: int, fill: tuple[int, int, int]) -> np.ndarray:
  """`_frame_tables` of ``ops[j]``, a statistics op after a geometric op.

  ``base`` holds the whole frames after ``ops[:start]``; the frames after
  ``ops[:j]`` are computed by `_transformed` at every `_STATISTICS_STRIDE`-th pixel
  (the geometric ops' own resampling there). AutoContrast, whose minimum and maximum
  can hang on single pixels (a resampling's overshoot), and a Sharpness after the
  last geometric op (it needs the neighbours) take the whole frames from `_apply`.
  """
  height, width = base[0].shape[:2]
  last = max(p for p in range(start, j) if ops[p].name in _GEOMETRY)
  if ops[j].name == "AutoContrast" or _ring(ops[last:j]):
    return _frame_tables(ops[j], _apply(np.stack(base), ops[start:j], fill))
  s = _STATISTICS_STRIDE
  # Output pixel i samples the frame's pixel s·i (edge coordinate s·i + 1/2).
  placement = np.array([[s, 0.0, 0.5 - s / 2], [0.0, s, 0.5 - s / 2], [0.0, 0.0, 1.0]])
  cubic = any(ops[p].resample == "bicubic" for p in range(start, j)
              if ops[p].name in _GEOMETRY)
  grid = list(_transformed(base, ops, tables, start, j, placement,
                           (-(-height // s), -(-width // s)), _WHOLE, fill,
                           cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR))
  return _frame_tables(ops[j], grid, weight=s * s)


def _apply_in_view(frames: np.ndarray, sources: list[int], ops: list[Op],
                   view: transforms.View, out_size: tuple[int, int], out: np.ndarray,
                   fill: tuple[int, int, int]) -> np.ndarray:
  """`RandAugment.apply_view` on checked input (see there)."""
  height, width = frames.shape[1:3]
  geometric = [j for j, op in enumerate(ops) if op.name in _GEOMETRY]
  first_geometric = geometric[0] if geometric else len(ops)

  # Statistics ops before any geometric op see whole frames: the ops up to the last
  # of them run on the whole frames (`base`), the rest on windows only.
  before = [j for j in range(first_geometric) if ops[j].name in _STATISTICS]
  start = before[-1] if before else 0
  base = [frames[i] for i in sources]
  tables = {}  # op position -> uint8 [frames, 3, 256]
  for j in range(start + 1 if before else 0):
    if ops[j].name in _STATISTICS:
      tables[j] = _frame_tables(ops[j], base)
    if j < start:
      base = [_colour(frame, t, ops, [j], tables, _WHOLE) for t, frame in enumerate(base)]
  for j in range(first_geometric, len(ops)):
    if ops[j].name in _STATISTICS:
      tables[j] = _grid_tables(ops, j, base, tables, start, fill)

  warp = transforms.plan_view(view, height, width, out_size)
  x0, y0, x1, y1 = warp.window  # of the frame after RandAugment
  # The window the view reads, with a pixel around it per Sharpness (cut away after).
  (ex0, ey0, ex1, ey1), edges = _expand(warp.window, _ring(ops[start:]), height, width)
  if geometric:
    # Bilinear, where the frames path resamples as the ops say (bicubic for VideoMAE):
    # OpenCV's bicubic warp costs several times its bilinear one.
    placement = np.array([[1.0, 0.0, ex0], [0.0, 1.0, ey0], [0.0, 0.0, 1.0]])
    windows = _transformed(base, ops, tables, start, len(ops), placement,
                           (ey1 - ey0, ex1 - ex0), edges, fill, cv2.INTER_LINEAR)
  else:
    windows = (_colour(frame[ey0:ey1, ex0:ex1], t, ops, range(start, len(ops)), tables,
                       edges) for t, frame in enumerate(base))
  return transforms.warp_windows(
      (window[y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0] for window in windows), warp, out)
