"""RandAugment against timm's own ops through Pillow, op by op, and its draws' statistics;
the windowed path (`RandAugment.apply_view`) against the frames path it computes.

timm is imported with torchvision stubbed (`time_jax.port.reference`); its op functions
run on PIL images exactly as in VideoMAE's fine-tuning. timm draws an op's sign (and
nothing else, with prob=1, magnitude_std=0 and a fixed interpolation) from Python's
``random.random``, which the tests pin to choose the sign of our `Op`.
"""

import pickle

import numpy as np
import pytest
from PIL import Image

from time_jax.data import randaugment as ra
from time_jax.data import scenes
from time_jax.data import transforms
from time_jax.port import reference

reference.timm()
from timm.data import auto_augment as timm_aa  # pylint: disable=g-import-not-at-top,g-bad-import-order

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
_FILL = (124, 116, 104)  # unlike timm's grey default, so a wrong channel order shows
_ALL_OPS = sorted(set(ra.OPS) | set(ra.INCREASING_OPS))


@pytest.fixture(scope="module")
def clip():
  return scenes.scene_clip(np.random.default_rng(0), num_frames=2)  # [2, 240, 320, 3]


def _pin_sign(monkeypatch, negate):
  # timm's _randomly_negate: -v if random.random() > 0.5 else v.
  monkeypatch.setattr(timm_aa.random, "random", lambda: 0.75 if negate else 0.25)


def _timm_op(frame, op, monkeypatch, fill=_FILL):
  """timm's AugmentOp(op.name) on one ``[H, W, 3]`` frame, with our op's draws."""
  hparams = {"translate_const": 100, "img_mean": fill}
  if op.resample:
    hparams["interpolation"] = _RESAMPLE[op.resample]
  timm_op = timm_aa.AugmentOp(op.name, prob=1.0, magnitude=op.magnitude, hparams=hparams)
  _pin_sign(monkeypatch, op.negate)
  return np.asarray(timm_op(Image.fromarray(frame)))


def _assert_close_warp(ours, ref, resample, what):
  """Tolerances of the geometric ops (which pixels take the fill is exact by design).

  bilinear: both interpolate linearly at the same points; OpenCV in fixed point (1/32
  pixel positions, 11-bit weights) and rounds to uint8, Pillow in double and truncates,
  so values differ by up to a grey level (at hard edges, where 1/32 pixel matters, up
  to 3 on under 0.1% of pixels; mean 0.6, 0.5% over 1 and 4 at most allowed). bicubic: OpenCV's kernel is Keys' a = -0.75, Pillow's affine bicubic uses
  a = -1; the kernels differ most at hard edges, so the mean difference stays below
  0.6 and differences over 4 levels on under 0.1% of pixels here (0.7 and 0.2%
  allowed). A half-pixel shift, or a fill border one pixel off (about 1.5% of a
  240x320 frame's pixels, far from the fill colour), breaks these bounds.
  """
  diff = np.abs(ours.astype(int) - ref.astype(int))
  if resample == "bilinear":
    assert diff.max() <= 4 and diff.mean() <= 0.6 and np.mean(diff > 1) <= 0.005, what
  else:
    assert diff.mean() <= 0.7 and np.mean(diff > 4) <= 0.002, what


def test_op_sets_and_defaults_are_timms():
  assert ra.OPS == tuple(timm_aa._RAND_TRANSFORMS)  # pylint: disable=protected-access
  assert ra.INCREASING_OPS == tuple(timm_aa._RAND_INCREASING_TRANSFORMS)  # pylint: disable=protected-access
  assert ra.WEIGHTS == timm_aa._RAND_WEIGHTED_0  # pylint: disable=protected-access
  assert ra.FILL == timm_aa._FILL  # pylint: disable=protected-access


@pytest.mark.parametrize("name", _ALL_OPS)
def test_argument_is_timms(name, monkeypatch):
  level = timm_aa.LEVEL_TO_ARG[name]
  for magnitude in (0.0, 2.5, 3.7, 5.0, 7.0, 9.99, 10.0, 13.0):
    for negate in (False, True):
      op = ra.Op(name, magnitude, negate)
      if level is None:
        assert op.arg is None
        continue
      _pin_sign(monkeypatch, negate)
      assert op.arg == level(magnitude, {"translate_const": 100})[0], (magnitude, negate)


@pytest.mark.parametrize("name", _ALL_OPS)
def test_op_matches_timm_through_pillow(name, clip, monkeypatch):
  augment = ra.RandAugment("rand", fill=_FILL)
  signs = (False, True) if ra._LEVELS[name][1] else (False,)  # pylint: disable=protected-access
  resamples = ("bilinear", "bicubic") if name in ra._GEOMETRY else (None,)  # pylint: disable=protected-access
  for magnitude in (0.0, 3.7, 7.0, 10.0):
    for negate in signs:
      for resample in resamples:
        op = ra.Op(name, magnitude, negate, resample)
        ours = augment.apply(clip, [op])
        assert ours.shape == clip.shape and ours.dtype == np.uint8
        for t, frame in enumerate(clip):
          what = (op, t)
          if name.startswith("Posterize") and op.arg <= 0:
            # Pillow 13 refuses to keep no bit; earlier Pillows (timm's reference
            # behaviour) mask every bit off.
            np.testing.assert_array_equal(ours[t], 0, err_msg=str(what))
            continue
          ref = _timm_op(frame, op, monkeypatch)
          if resample is None:
            np.testing.assert_array_equal(ours[t], ref, err_msg=str(what))
          else:
            _assert_close_warp(ours[t], ref, resample, what)


def test_each_frame_is_augmented_alone_by_the_same_draw(clip):
  augment = ra.RandAugment("rand-m9-n4-mstd0.5-inc1-p1.0")
  for seed in range(6):
    ops = augment.draw(np.random.default_rng(seed))
    out = augment.apply(clip, ops)
    for t in range(len(clip)):
      np.testing.assert_array_equal(out[t], augment.apply(clip[t:t + 1], ops)[0])
    # Equal frames stay equal (one draw, and per-frame statistics of equal frames).
    same = augment.apply(np.repeat(clip[:1], 3, axis=0), ops)
    assert (same == same[:1]).all(), ops


def test_chained_draws_match_timm_in_order(clip, monkeypatch):
  # Whole draws of VideoMAE's policy, op after op, through timm. With bilinear warps
  # (each within a grey level or two of Pillow's) the chains agree within a grey level
  # on average; a later posterize or equalize turns a one-level difference into a step
  # of its quantisation on the pixels it moves across a boundary (here up to 1.2%).
  augment = ra.RandAugment("rand-m7-n4-mstd0.5-inc1-p1.0", interpolation="bilinear",
                           fill=_FILL)
  for seed in range(8):
    ops = augment.draw(np.random.default_rng(seed))
    ours = augment.apply(clip[:1], ops)[0]
    ref = clip[0]
    for op in ops:
      ref = _timm_op(ref, op, monkeypatch)
    diff = np.abs(ours.astype(int) - ref.astype(int))
    if not any(op.name in ra._GEOMETRY for op in ops):  # pylint: disable=protected-access
      assert diff.max() == 0, ops
    else:
      assert diff.mean() <= 1.0 and np.mean(diff > 4) <= 0.03, ops


# ----------------------------------------------------------------------------------
# Policy strings.
# ----------------------------------------------------------------------------------

def test_parse_videomae_policy():
  assert ra.parse("rand-m7-n4-mstd0.5-inc1") == ra.Policy(
      magnitude=7, num_ops=4, prob=0.5, magnitude_std=0.5, magnitude_max=10,
      increasing=True, weighted=False)
  assert ra.parse("rand") == ra.Policy()
  assert ra.parse("rand-mstd101-m9").magnitude_std == np.inf


@pytest.mark.parametrize("policy", [
    "rand-m7-n4-mstd0.5-inc1", "rand", "rand-m9-n3-mstd0.5", "rand-m5-p0.8-inc0",
    "rand-m15-mmax20-n1", "rand-mstd1-tweights-n3", "rand-m7-mstd101"])
def test_parse_agrees_with_timm(policy):
  theirs = timm_aa.rand_augment_transform(policy, {"translate_const": 100})
  ours = ra.parse(policy)
  assert ours.num_ops == theirs.num_layers
  assert list(ours.ops) == [op.name for op in theirs.ops]
  np.testing.assert_array_equal(ours.weights, theirs.choice_weights)
  for op in theirs.ops:
    assert (op.magnitude, op.prob, op.magnitude_std) == (
        ours.magnitude, ours.prob, ours.magnitude_std)
    assert (op.magnitude_max or 10) == ours.magnitude_max


@pytest.mark.parametrize("policy, token, says", [
    ("augmix-m7", "augmix", "start with 'rand'"),
    ("rand-m7.5", "m7.5", "cannot read '7.5'"),
    ("rand-m", "m", "cannot read ''"),
    ("rand-x3", "x3", "unknown key 'x'"),
    ("rand-m7--n2", "", "unknown key ''"),
    ("rand-m7-m8", "m8", "given twice"),
    ("rand-inc2", "inc2", "inc takes 0 or 1"),
    ("rand-p1.5", "p1.5", "p must lie in [0, 1]"),
    ("rand-mmax0", "mmax0", "mmax must be > 0"),
    ("rand-t3a", "t3a", "only op set supported is 'weights'"),
    ("rand-w0", "w0", "use 'tweights'"),
    ("rand-n16-tweights", "n16", "n must be <= 15"),
])
def test_parse_rejects_malformed(policy, token, says):
  with pytest.raises(ValueError) as err:
    ra.parse(policy)
  message = str(err.value)
  assert f"section {token!r}" in message and says in message
  assert "expected rand-m<int>" in message


# ----------------------------------------------------------------------------------
# Draws.
# ----------------------------------------------------------------------------------

def _draws(policy, count, seed=0, **kwargs):
  augment = ra.RandAugment(policy, **kwargs)
  rng = np.random.default_rng(seed)
  return [augment.draw(rng) for _ in range(count)]


def test_draw_is_deterministic_per_seed_and_differs_across_seeds():
  augment = ra.RandAugment("rand-m7-n4-mstd0.5-inc1")
  first = [augment.draw(np.random.default_rng(s)) for s in range(20)]
  again = [augment.draw(np.random.default_rng(s)) for s in range(20)]
  assert first == again
  applied = [tuple(ops) for ops in first if ops]  # at p = 0.5 some draws are empty
  assert len(set(applied)) == len(applied) > 15
  restored = pickle.loads(pickle.dumps(augment))
  assert restored.draw(np.random.default_rng(3)) == first[3]


def test_draw_picks_n_ops_with_replacement_from_the_set():
  draws = _draws("rand-m7-n4-inc1-p1", 300)
  assert all(len(ops) == 4 for ops in draws)
  names = [op.name for ops in draws for op in ops]
  assert set(names) == set(ra.INCREASING_OPS)  # all 15 come up, nothing else
  # With replacement, P(no repeat among 4 of 15) = 15·14·13·12 / 15^4 = 0.647.
  repeats = np.mean([len({op.name for op in ops}) < 4 for ops in draws])
  assert 0.25 < repeats < 0.45
  assert {op.name for ops in _draws("rand-n2-p1", 100) for op in ops} == set(ra.OPS)


def test_draw_applies_each_op_with_probability_p():
  counts = [len(ops) for ops in _draws("rand-m7-n4-p0.3", 2000)]
  assert abs(np.mean(counts) - 4 * 0.3) < 0.1
  assert _draws("rand-n4-p0", 10) == [[]] * 10


def test_draw_magnitudes_follow_mstd():
  exact = [op.magnitude for ops in _draws("rand-m7-n4-p1", 50) for op in ops]
  assert set(exact) == {7.0}
  noisy = np.array([op.magnitude for ops in _draws("rand-m7-n4-mstd0.5-p1", 1000)
                    for op in ops])
  assert abs(noisy.mean() - 7) < 0.05 and abs(noisy.std() - 0.5) < 0.05
  clipped = np.array([op.magnitude for ops in _draws("rand-m9-n4-mstd2-p1", 500)
                      for op in ops])
  assert clipped.max() == 10.0 and 0.25 < np.mean(clipped == 10.0) < 0.38  # P(N > 0.5σ)
  raised = np.array([op.magnitude for ops in _draws("rand-m15-mmax20-n4-mstd2-p1", 300)
                     for op in ops])
  assert raised.max() > 16 and raised.max() <= 20
  uniform = np.array([op.magnitude for ops in _draws("rand-m8-n4-mstd101-p1", 1000)
                      for op in ops])
  assert uniform.min() >= 0 and uniform.max() <= 8 and abs(uniform.mean() - 4) < 0.2


def test_draw_signs_and_resampling():
  ops = [op for ops in _draws("rand-m7-n4-inc1-p1", 400) for op in ops]
  signed = [op for op in ops if ra._LEVELS[op.name][1]]  # pylint: disable=protected-access
  assert 0.4 < np.mean([op.negate for op in signed]) < 0.6
  assert not any(op.negate for op in ops if not ra._LEVELS[op.name][1])  # pylint: disable=protected-access
  geometric = [op for op in ops if op.name in ra._GEOMETRY]  # pylint: disable=protected-access
  assert {op.resample for op in geometric} == {"bicubic"}  # VideoMAE's default
  assert {op.resample for op in ops if op.name not in ra._GEOMETRY} == {None}  # pylint: disable=protected-access
  randomised = [op.resample for ops in _draws("rand-n4-p1", 200, interpolation="random")
                for op in ops if op.name in ra._GEOMETRY]  # pylint: disable=protected-access
  assert 0.35 < np.mean([r == "bicubic" for r in randomised]) < 0.65


def test_weighted_draws_follow_timms_weights_without_replacement():
  draws = _draws("rand-n3-tweights-p1", 2000)
  assert all(len({op.name for op in ops}) == 3 for ops in draws)
  names = [op.name for ops in draws for op in ops]
  counts = [names.count(name) for name in
            ("Rotate", "ShearX", "TranslateXRel", "ColorIncreasing", "Invert")]
  assert counts == sorted(counts, reverse=True), counts  # weights 3, 2, 1, 0.25, 0.05
  assert counts[-1] < 0.05 * len(draws)


def test_apply_checks_its_input(clip):
  augment = ra.RandAugment("rand")
  assert augment.apply(clip, []) is clip
  with pytest.raises(ValueError, match=r"uint8 \[T, H, W, 3\]"):
    augment.apply(clip[0], [ra.Op("Invert", 0.0)])
  with pytest.raises(ValueError, match="unknown op 'Cutout'"):
    augment.apply(clip, [ra.Op("Cutout", 5.0)])
  with pytest.raises(ValueError, match="resample"):
    augment.apply(clip, [ra.Op("Rotate", 5.0)])
  with pytest.raises(ValueError, match="interpolation"):
    ra.RandAugment("rand", interpolation="nearest")
  view = transforms.View((0, 0, 32, 24))
  with pytest.raises(ValueError, match=r"apply_view: expected uint8 \[T, H, W, 3\]"):
    augment.apply_view(clip[..., :1], [], view, (8, 8))
  with pytest.raises(ValueError, match="apply_view: unknown op 'Cutout'"):
    augment.apply_view(clip, [ra.Op("Cutout", 5.0)], view, (8, 8))


# ----------------------------------------------------------------------------------
# The windowed path: the frames path's result, computed where the view samples.
# ----------------------------------------------------------------------------------

_COLOUR_OPS = sorted(name for name in _ALL_OPS if name not in ra._GEOMETRY)  # pylint: disable=protected-access
_GEOMETRIC_OPS = sorted(ra._GEOMETRY)  # pylint: disable=protected-access
_CELL = (56, 56)


def _edge_views(height, width, rng):
  """Views at the frame's corners and edges, small and large, rotated and flipped,
  and random ones; in the frame's pixels."""
  views = [transforms.View((0, 0, width * 0.3, height * 0.3)),  # top-left corner
           transforms.View((width * 0.7, height * 0.7, width * 0.3, height * 0.3),
                           flip=True),  # bottom-right corner
           transforms.View((width * 0.55, 0, width * 0.45, height), angle=12.0),
           transforms.View((0, height * 0.5, width, height * 0.5), flip=True,
                           angle=-20.0),
           transforms.View((0, 0, width, height))]
  for _ in range(3):
    views.append(transforms.train_view(rng, height, width, scale=(0.08, 1.0),
                                       rotation=15.0))
  return views


def _frames_path(augment, clip, ops, view, indices):
  """Today's 'frames' order: RandAugment on the whole frames, then the view."""
  return transforms.apply_view(augment.apply(clip[indices], ops), view, _CELL)


def test_window_equals_frames_exactly_for_colour_ops():
  # Colour ops act on the pixels the view reads, with the whole frame's statistics
  # and Sharpness's frame-edge rule: bit for bit the frames path, at any view.
  clip = scenes.scene_clip(np.random.default_rng(1), num_frames=2, height=60, width=80)
  augment = ra.RandAugment("rand")
  indices = [1, 0, 1]  # the clip is frames[indices]
  rng = np.random.default_rng(0)
  views = _edge_views(60, 80, rng)
  sequences = [[ra.Op(name, 8.3, negate)] for name in _COLOUR_OPS
               for negate in ((False, True) if ra._LEVELS[name][1] else (False,))]  # pylint: disable=protected-access
  sequences += [[ra.Op("SharpnessIncreasing", 9.0), ra.Op("Equalize", 0.0),
                 ra.Op("SharpnessIncreasing", 9.0, True), ra.Op("AutoContrast", 0.0)],
                [ra.Op("SolarizeAdd", 7.0), ra.Op("ContrastIncreasing", 9.0),
                 ra.Op("ColorIncreasing", 8.0, True), ra.Op("Equalize", 0.0)]]
  for ops in sequences:
    for view in views:
      ours = augment.apply_view(clip, ops, view, _CELL, indices=indices)
      np.testing.assert_array_equal(
          ours, _frames_path(augment, clip, ops, view, indices), err_msg=f"{ops} {view}")


@pytest.fixture(scope="module")
def footage():
  """Real-looking 320x240 footage (`scenes`), 2 frames, and views near its edges."""
  clip = scenes.scene_clip(np.random.default_rng(3), num_frames=2)
  return clip, _edge_views(240, 320, np.random.default_rng(4))


def _mean_difference(a, b):
  return float(np.abs(a.astype(np.int64) - b).mean())


def test_window_is_within_a_grey_level_of_frames_for_geometric_ops(footage):
  # One bilinear warp of the source window (all geometric ops) and the view's warp
  # against Pillow-style bicubic warps of the whole frames: within a grey level on
  # average for every op, sign, view (corners, rotations, flips) and fill.
  clip, views = footage
  augment = ra.RandAugment("rand")
  for name in _GEOMETRIC_OPS:
    for magnitude, negate in ((3.3, False), (8.1, True)):
      ops = [ra.Op(name, magnitude, negate, "bicubic")]
      diffs = [_mean_difference(augment.apply_view(clip, ops, view, _CELL),
                                _frames_path(augment, clip, ops, view, [0, 1]))
               for view in views]
      assert np.mean(diffs) <= 1.0 and max(diffs) <= 1.25, (ops, diffs)


@pytest.mark.parametrize("ops", [
    # Statistics of the transformed frame, its fill included: Equalize and Contrast from
    # every 2nd pixel, AutoContrast (extremes) whole; colour ops before the geometry
    # before its resampling, fills passed through the ops after them; two geometric
    # ops as one warp. (Colour ops between two geometric ops are not here: before
    # or after the one resampling, a Posterize or Solarize there moves its steps by
    # up to a few grey levels on average.)
    [ra.Op("Rotate", 8.0, True, "bilinear"), ra.Op("Equalize", 0.0)],
    [ra.Op("SolarizeIncreasing", 7.4), ra.Op("Rotate", 7.3, False, "bilinear"),
     ra.Op("Equalize", 0.0)],
    [ra.Op("TranslateYRel", 7.9, True, "bilinear"), ra.Op("AutoContrast", 0.0),
     ra.Op("SolarizeIncreasing", 6.8)],
    [ra.Op("ShearX", 7.0, False, "bilinear"), ra.Op("ContrastIncreasing", 7.4),
     ra.Op("ColorIncreasing", 7.0, True), ra.Op("SharpnessIncreasing", 8.0)],
    [ra.Op("Equalize", 0.0), ra.Op("TranslateXRel", 9.5, False, "bilinear"),
     ra.Op("PosterizeIncreasing", 7.0), ra.Op("Invert", 0.0)],
    [ra.Op("Rotate", 6.0, False, "bilinear"),  # then a whole-pixel translation (108)
     ra.Op("TranslateYRel", 10.0, True, "bilinear"),
     ra.Op("Equalize", 0.0), ra.Op("SolarizeAdd", 8.0)],
    [ra.Op("SharpnessIncreasing", 8.0), ra.Op("ShearY", 7.0, False, "bilinear"),
     ra.Op("SharpnessIncreasing", 8.0, True), ra.Op("ContrastIncreasing", 8.0)],
    # Whole-pixel translations (144, 108): the first one's fill is brightened (231),
    # the second one's is not (128).
    [ra.Op("TranslateXRel", 10.0, False, "bilinear"), ra.Op("BrightnessIncreasing", 9.0),
     ra.Op("TranslateYRel", 10.0, True, "bilinear")],
], ids=lambda ops: "-".join(op.name for op in ops))
def test_window_keeps_statistics_and_fill_of_the_transformed_frame(footage, ops):
  # With bilinear warps in both paths, what is left is the window path's own
  # arithmetic (statistics, op order, fills): under half a grey level.
  clip, views = footage
  augment = ra.RandAugment("rand")
  for view in views:
    diff = _mean_difference(augment.apply_view(clip, ops, view, _CELL),
                            _frames_path(augment, clip, ops, view, [0, 1]))
    assert diff <= 0.5, (view, diff)


def test_window_follows_frames_for_drawn_policies(footage):
  # VideoMAE's policy, drawn with its views as the pipeline draws them. Per draw, a
  # Posterize / Solarize / Equalize next to a geometric op can amplify the bilinear
  # (window) vs bicubic (frames) resampling to a few grey levels, as it does between
  # the frames path's own bilinear and bicubic draws; on average the paths agree.
  clip, _ = footage
  augment = ra.RandAugment("rand-m7-n4-mstd0.5-inc1")
  rng = np.random.default_rng(11)
  diffs, geometric = [], 0
  for _ in range(60):
    ops = augment.draw(rng)
    view = transforms.train_view(rng, 240, 320, scale=(0.08, 1.0), flip=True)
    diffs.append(_mean_difference(augment.apply_view(clip, ops, view, _CELL),
                                  _frames_path(augment, clip, ops, view, [0, 1])))
    geometric += any(op.name in ra._GEOMETRY for op in ops)  # pylint: disable=protected-access
  assert geometric >= 20 and np.mean(diffs) <= 0.5 and np.median(diffs) <= 0.3, diffs
  assert np.mean(np.array(diffs) <= 1.0) >= 0.85, diffs


def test_window_where_the_view_sees_only_fill():
  # A translation by 45% of the width and a crop of the part it empties: all fill,
  # after the colour ops that follow (Invert), as in the frames path.
  clip = scenes.scene_clip(np.random.default_rng(1), num_frames=1, height=60, width=80)
  augment = ra.RandAugment("rand")
  ops = [ra.Op("TranslateXRel", 10.0, False, "bilinear"), ra.Op("Invert", 0.0)]
  view = transforms.View((50, 10, 20, 20))
  ours = augment.apply_view(clip, ops, view, (8, 8))
  assert (ours == 255 - 128).all()
  np.testing.assert_array_equal(ours, transforms.apply_view(augment.apply(clip, ops),
                                                            view, (8, 8)))
