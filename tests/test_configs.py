"""Every config under configs/: loads, validates, finds its data and builds its parts.

Each config is pointed at a tiny stand-in of its dataset written here in the real
layout of `time_jax.data.protocols` (split files, ``SsssCcccPpppRrrrAaaa`` and
``aXX_sYY[_vVV]_eZZ`` names; short videos, 16-bit depth image folders, MSRAction3D
``.bin`` files). Then, with sizes reduced by this test (image size, frames, model
depth/width, batch; never the config files):

* every config argument loads, validates and its protocol finds train and eval videos
  with the class count the config states (fast);
* every config file and modality builds its model and its train / eval pipelines and
  reads one batch of the promised shape (fast);
* one config per (backbone, phase) family runs one real training step and the final
  evaluation through `time_jax.train.loop` (slow; the VideoMAE fine-tuning phase
  starts from the pretraining run's workdir, as the two-phase recipe does). Running
  one step for each of the ~70 config arguments would take minutes of CPU for no new
  code path: they differ only in values the fast tests check. Tests whose reader or
  model module has not landed yet skip, naming it; the two-phase VideoMAE chain also
  runs with a stand-in reader on the protocol's records, so it never skips.

The paper's settings are restated here (``PAPER``) and compared with the configs.
"""

from __future__ import annotations

import functools
import glob
import importlib
import importlib.util
import json
import logging
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from time_jax import config as config_lib
from time_jax.data import pipeline
from time_jax.data import protocols
from time_jax.data import sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
FRAMES, SIZE = 8, 32
OTHERS = {"demo.py", "demo_n1.py"}  # need the synthetic data generator


def _load(path: str):
  spec = importlib.util.spec_from_file_location(
      "cfg_" + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _config_files() -> list[str]:
  out = []
  for path in sorted(glob.glob(os.path.join(CONFIGS, "*.py"))):
    with open(path) as f:
      if "def get_config" in f.read():
        out.append(os.path.basename(path))
  return out


def _args(name: str) -> list[str]:
  """The config arguments worth loading for a file: phases x modalities x splits."""
  if name in OTHERS:
    return [""]
  paper = _load(os.path.join(CONFIGS, "paper.py"))
  dataset = next(d for d in sorted(paper.DATASETS, key=len, reverse=True)
                 if name.startswith(d + "_"))
  mods = paper.DATASETS[dataset]["modalities"]
  splits = [s for s in protocols.SPLITS[dataset] if s]
  phases = paper.PHASES_VIDEOMAE if name.endswith("_videomae.py") else ("",)
  out = [",".join(t for t in (p, m) if t) for p in phases for m in mods]
  if dataset == "uwa3d_multiview":  # all 12 cross-view splits, both modalities
    out += [f"{s},{m}" for s in splits for m in mods]
  elif len(splits) > 1:
    out += [f"{splits[-1]},{mods[-1]}"]
  return out


SPECS = [(f, a) for f in _config_files() for a in _args(f)]


def _spec_id(spec):
  return f"{spec[0][:-3]}:{spec[1]}" if spec[1] else spec[0][:-3]


def get_config(name: str, arg: str) -> ml_collections.ConfigDict:
  module = _load(os.path.join(CONFIGS, name))
  return module.get_config(arg) if arg else module.get_config()


# ------------------------------------------------------------------ tiny datasets

def write_video(path: str, seed: int, frames: int = FRAMES, size: int = SIZE) -> None:
  """A short MPEG-4 video of a square moving right (PyAV)."""
  import av  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(path, "w") as c:
    s = c.add_stream("mpeg4", rate=8)
    s.width = s.height = size
    s.pix_fmt = "yuv420p"
    colour = rng.integers(64, 256, 3)
    for i in range(frames):
      f = np.full((size, size, 3), 16, np.uint8)
      x = i * (size - 8) // max(frames - 1, 1)
      f[8:16, x:x + 8] = colour
      for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        c.mux(p)
    for p in s.encode():
      c.mux(p)


def write_depth_folder(path: str, seed: int, frames: int = FRAMES, size: int = SIZE):
  """A folder of 16-bit depth PNGs (millimetres), one per frame, in frame order."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  os.makedirs(path, exist_ok=True)
  for i in range(frames):
    d = rng.integers(1500, 2500, (size, size)).astype(np.uint16)
    x = i * (size - 8) // max(frames - 1, 1)
    d[8:24, x:x + 8] = 900
    Image.fromarray(d).save(os.path.join(path, f"{i + 1:06d}.png"))


def write_msr(path: str, seed: int, frames: int = FRAMES, size: int = SIZE) -> None:
  """An MSRAction3D depth .bin with the data module's writer."""
  msr_bin = importlib.import_module("time_jax.data.msr_bin")
  rng = np.random.default_rng(seed)
  depth = rng.integers(1500, 2500, (frames, size, size)).astype(np.int32)
  msr_bin.write_msr_bin(path, depth)


def _have(module: str) -> bool:
  try:
    importlib.import_module(module)
    return True
  except ImportError:
    return False


def _one(root: str, rel: str, source: str, seed: int) -> None:
  path = os.path.join(root, rel)
  if source == "video":
    write_video(path, seed)
  elif source == "frames":
    write_depth_folder(path, seed)
  elif _have("time_jax.data.msr_bin"):
    write_msr(path, seed)
  else:  # the reader has not landed: names are enough for the protocol
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def write_dataset(root: str, name: str, source: str, modality: str) -> dict:
  """A tiny ``name`` dataset in its protocol's layout; returns dataset overrides."""
  ext = {"video": "_rgb.avi", "frames": "_depth", "msr_bin": "_sdepth.bin"}[source]
  seed = iter(range(10_000))
  if name in ("ucf101", "hmdb51"):
    classes = ([f"Class{i:03d}" for i in range(101)] if name == "ucf101"
               else [f"class_{i:02d}" for i in range(51)])
    split_dir = os.path.join(root, "splits")
    os.makedirs(split_dir, exist_ok=True)
    used = classes[:2]
    videos = {c: [f"v_{c}_g{g:02d}_c01" for g in (1, 2, 8)] for c in used}
    for c, names in videos.items():
      for v in names:
        _one(root, f"{c}/{v}" + (".avi" if source == "video" else ""), source, next(seed))
    if name == "ucf101":
      with open(os.path.join(split_dir, "classInd.txt"), "w") as f:
        f.writelines(f"{i + 1} {c}\n" for i, c in enumerate(classes))
      for s in (1, 2, 3):
        with open(os.path.join(split_dir, f"trainlist0{s}.txt"), "w") as f:
          f.writelines(f"{c}/{v}.avi {classes.index(c) + 1}\n"
                       for c in used for v in videos[c][:2])
        with open(os.path.join(split_dir, f"testlist0{s}.txt"), "w") as f:
          f.writelines(f"{c}/{v[2]}.avi\n" for c, v in videos.items())
    else:
      for s in (1, 2, 3):
        for c in classes:
          with open(os.path.join(split_dir, f"{c}_test_split{s}.txt"), "w") as f:
            f.writelines(f"{v}.avi {1 if g < 2 else 2}\n"
                         for g, v in enumerate(videos.get(c, [])))
    return dict(root=root, split_dir=split_dir)
  if name in ("ntu60", "ntu120"):
    # Subjects 1, 2 train (xsub); cameras 2, 3 train (xview); setup 2 train (xset).
    for setup, cam, subj in ((2, 2, 1), (2, 3, 2), (1, 1, 3), (3, 1, 6)):
      for action in (1, 2):
        _one(root, f"S{setup:03d}C{cam:03d}P{subj:03d}R001A{action:03d}{ext}", source,
             next(seed))
    return dict(root=root)
  if name == "uwa3d_multiview":
    for view in (1, 2, 3, 4):
      for subj, action in ((1, 1), (2, 2)):
        _one(root, f"a{action:02d}_s{subj:02d}_v{view:02d}_e01{ext}", source, next(seed))
    return dict(root=root)
  # Cross-subject: odd subjects train, even subjects test.
  for subj in (1, 3, 2, 4):
    _one(root, f"a{subj % 2 + 1:02d}_s{subj:02d}_e01{ext}", source, next(seed))
  return dict(root=root)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  """``(name, source, modality) -> dataset overrides``, each written once."""
  cache = {}

  def get(name, source, modality):
    key = (name, source, modality)
    if key not in cache:
      root = str(tmp_path_factory.mktemp(f"{name}_{source}_{modality}"))
      cache[key] = write_dataset(root, name, source, modality)
    return cache[key]
  return get


def point_at_data(c: ml_collections.ConfigDict, data_root) -> ml_collections.ConfigDict:
  """The config on the stand-in of its dataset (demo configs bring their own)."""
  if c.dataset.name != "annotations":
    c.dataset.update(data_root(c.dataset.name, c.dataset.source, c.dataset.modality))
  return c


@pytest.fixture(autouse=True)
def _demo_data(tmp_path_factory, monkeypatch):
  # configs/demo.py reads this when it is loaded and generates its data there.
  monkeypatch.setenv("TIME_JAX_DEMO_DATA",
                     str(tmp_path_factory.getbasetemp() / "demo_data"))


def _config(spec, data_root):
  name, arg = spec
  if name in OTHERS:
    pytest.importorskip("time_jax.data.synthetic", reason="the demo data generator "
                        "(time_jax.data.synthetic) has not landed")
  c = point_at_data(get_config(name, arg), data_root)
  if c.checkpoint.init_required:
    # Recipes from ported ImageNet / Kinetics weights refuse to start without them;
    # the tests give a path (validation does not open it; the train step resets it).
    c.checkpoint.init_from = "/ported/weights"
  return c


# -------------------------------------------------------------- the paper's settings

# Restated from the paper's settings and its Table 2, independently of
# configs/paper.py.
PAPER = {
    # file: (pretrain epochs, finetune epochs, finetune base lr, batch)
    "hmdb51_videomae.py": (4800, 50, 1e-3, 128),
    "ntu60_videomae.py": (200, 50, None, None),
    "ntu120_videomae.py": (200, 50, None, None),
}
PAPER_N = {  # (file, modality) -> the best N of Table 2
    ("ucf101_resnet50.py", "rgb"): 2, ("ucf101_vit_b16.py", "rgb"): 2,
    ("hmdb51_resnet50.py", "rgb"): 2, ("hmdb51_vit_b16.py", "rgb"): 2,
    ("hmdb51_videomae.py", "rgb"): 2, ("uwa3d_activity_videomae.py", "depth"): 4,
    ("uwa3d_activity_resnet50.py", "depth"): 4, ("uwa3d_activity_vit_b16.py", "depth"): 4,
    ("action_pairs_vit_b16.py", "rgb"): 7, ("action_pairs_resnet50.py", "rgb"): 14,
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_schedules_follow_the_paper(name):
  pre_epochs, ft_epochs, lr, batch = PAPER[name]
  pre, fine = get_config(name, "pretrain"), get_config(name, "finetune")
  assert pre.mode == "pretrain" and fine.mode == "finetune"
  assert pre.train.num_epochs == pre_epochs and fine.train.num_epochs == ft_epochs
  assert pre.optimizer.warmup_epochs == 40
  if lr is not None:
    assert fine.optimizer.base_lr == lr and fine.optimizer.lr_batch_divisor == 256
  if batch is not None:
    assert pre.input.batch_size == fine.input.batch_size == batch
  for c in (pre, fine):
    assert c.image_size == 224 and c.model.kwargs.patch_size == 16
    assert c.time.arrangement == "spatial"
  assert fine.checkpoint.init_from == "../pretrain"


@pytest.mark.parametrize("name, modality", sorted(PAPER_N))
def test_best_n_of_table_2(name, modality):
  assert get_config(name, modality).time.n == PAPER_N[(name, modality)]


@pytest.mark.parametrize("name", [f for f in _config_files()
                                  if f.endswith("_videomae.py") and f not in OTHERS])
def test_mask_ratio_by_modality(name):
  paper = _load(os.path.join(CONFIGS, "paper.py"))
  for m in paper.DATASETS[name[:-len("_videomae.py")]]["modalities"]:
    ratio = get_config(name, f"pretrain,{m}").pretrain.mask_ratio
    assert (0.7 <= ratio <= 0.8) if m == "rgb" else ratio == 0.5


def test_config_argument_mistakes_are_named():
  with pytest.raises(ValueError, match="'rgb'.*not a phase"):
    get_config("msr_action3d_videomae.py", "rgb")  # MSRAction3D is depth only
  with pytest.raises(ValueError, match="two splits"):
    get_config("uwa3d_multiview_videomae.py", "12-3,13-2")
  with pytest.raises(ValueError, match="'21-3'"):
    get_config("uwa3d_multiview_resnet50.py", "21-3")


def test_every_uwa3d_view_combination_has_a_config():
  seen = {get_config("uwa3d_multiview_videomae.py", f"{s},{m}").dataset.split
          for s in protocols.UWA3D_MULTIVIEW_SPLITS for m in ("rgb", "depth")}
  assert seen == set(protocols.UWA3D_MULTIVIEW_SPLITS) and len(seen) == 12


# ------------------------------------------------------------ load, validate, find

@pytest.mark.parametrize("spec", SPECS, ids=_spec_id)
def test_config_validates_and_finds_its_data(spec, data_root):
  c = _config(spec, data_root)
  config_lib.validate(c, num_devices=1)
  splits = sources.load_splits(c)
  assert splits.train and splits.eval
  if c.dataset.num_classes:
    assert len(splits.class_names) == c.dataset.num_classes
  if c.dataset.name == "uwa3d_multiview":
    train_views, test_view = c.dataset.split.split("-")
    assert {r.name.split("_v0")[1][0] for r in splits.train} == set(train_views)
    assert {r.name.split("_v0")[1][0] for r in splits.eval} == {test_view}


# ------------------------------------------------------------ tiny model + pipeline

TINY_VIT = dict(patch_size=8, embed_dim=32, depth=1, num_heads=2)


def shrink(c: ml_collections.ConfigDict, *, views: bool = True) -> ml_collections.ConfigDict:
  """The config at test size: 32² input, <= 2 frames, 1-block models, batch 2."""
  c = ml_collections.ConfigDict(c.to_dict())
  c.image_size = SIZE
  c.time.t_out = min(c.time.t_out, 2)
  c.input.update(batch_size=2, eval_batch_size=2, num_workers=0, read_threads=1)
  if not views:
    c.input.update(eval_clips=1, eval_crops=1)
  c.model.dtype = "float32"
  kw = c.model.kwargs
  if c.model.name.startswith("videomae") or c.model.name.startswith("vit"):
    kw.update(TINY_VIT)
    if c.model.name.startswith("videomae"):
      kw.tubelet_size = min(2, c.time.t_out)
    if c.model.name.endswith("_pretrain"):
      kw.update(decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
  c.train.update(num_steps=1, log_every=1, eval_every=0, eval_at_end=True)
  c.checkpoint.update(every_steps=1, async_save=False)
  c.mesh.update(data=-1, fsdp=1, model=1)
  return c


def _need_reader(c: ml_collections.ConfigDict) -> None:
  try:
    sources.make_reader(c)
  except ImportError as e:
    pytest.skip(f"the {c.dataset.source!r} reader has not landed: {e}")


def _need_model(name: str) -> None:
  from time_jax import models  # pylint: disable=g-import-not-at-top
  pytest.importorskip(models.MODELS[name][0], reason=f"{name} has not landed")


BUILD_SPECS = sorted({(f, a) for f, a in SPECS
                      if a in ("", "pretrain", "finetune", "depth", "rgb", "pretrain,rgb",
                               "pretrain,depth", "finetune,rgb", "finetune,depth")})


@functools.lru_cache(maxsize=None)
def _init_shapes(name: str, kwargs: tuple, t_out: int, mode: str, num_classes: int):
  from time_jax.train import loop  # pylint: disable=g-import-not-at-top
  c = shrink(config_lib.base_config())
  c.mode, c.model.name, c.time.t_out = mode, name, t_out
  c.pretrain.mask_ratio = 0.5
  c.model.kwargs = ml_collections.ConfigDict(dict(kwargs))
  model = loop.build_model(c, num_classes)
  init = loop._init_fn(model, c)  # pylint: disable=protected-access
  variables = jax.eval_shape(init, jax.random.PRNGKey(0))
  return model, variables


@pytest.mark.parametrize("spec", BUILD_SPECS, ids=_spec_id)
def test_config_builds_model_and_pipeline(spec, data_root):
  c = shrink(_config(spec, data_root))
  _need_model(c.model.name)
  num_classes = c.dataset.num_classes or len(sources.load_splits(c).class_names)
  model, variables = _init_shapes(c.model.name, tuple(sorted(c.model.kwargs.items())),
                                  c.time.t_out, c.mode, num_classes)
  params = variables["params"]
  if c.mode == "finetune":
    # The head has one output per class of the protocol.
    leaves = jax.tree_util.tree_leaves_with_path(params)
    assert any(np.shape(v)[-1:] == (num_classes,) for _, v in leaves)
    x = jnp.zeros((1, c.time.t_out, SIZE, SIZE, 3))
    logits = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    assert logits.shape == (1, num_classes)

  _need_reader(c)
  cell = SIZE // c.time.n
  frames = c.time.t_out * c.time.n ** 2
  for split in ("train", "eval"):
    ds, info = pipeline.build(c, split)
    batch = next(iter(ds))
    assert batch["frames"].shape == (2, frames, cell, cell, 3), split
    assert batch["frames"].dtype == np.uint8
    assert info.num_classes == num_classes
    if split == "eval":
      assert info.num_views == c.input.eval_clips * c.input.eval_crops
      assert batch["valid"].any()


# ---------------------------------------------------------------- one train step

class Family(NamedTuple):
  """A (backbone, phase) family and the config that stands for it."""
  name: str
  config: str
  arg: str


FAMILIES = [
    Family("videomae_pretrain_then_finetune", "msr_action3d_videomae.py", "pretrain"),
    Family("videomae_k400", "uwa3d_multiview_videomae.py", "12-3,rgb"),
    Family("resnet50_imagenet", "action_pairs_resnet50.py", "depth"),
    Family("vit_b16_imagenet", "ucf101_vit_b16.py", ""),
]


def _train(c, workdir):
  from time_jax.train import loop  # pylint: disable=g-import-not-at-top
  config_lib.validate(c, num_devices=1)
  return loop.train_and_evaluate(c, str(workdir), devices=jax.devices()[:1])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_one_train_step(family, data_root, tmp_path):
  c = shrink(_config((family.config, family.arg), data_root), views=False)
  _need_model(c.model.name)
  _need_reader(c)
  # Ported ImageNet / Kinetics weights are the user's files; the step starts from init.
  if c.checkpoint.init_from != "../pretrain":
    c.checkpoint.update(init_from="", init_required=False)
  out = _train(c, tmp_path / ("pretrain" if c.mode == "pretrain" else "run"))
  if c.mode == "pretrain":
    assert np.isfinite(out["eval/loss"])
    # The second phase of the recipe, from the first one's workdir.
    fine = shrink(_config((family.config, family.arg.replace("pretrain", "finetune")),
                          data_root), views=False)
    assert fine.checkpoint.init_from == "../pretrain"
    out = _train(fine, tmp_path / "finetune")
    workdir = tmp_path / "finetune"
  else:
    workdir = tmp_path / "run"
  assert 0.0 <= out["eval/top1"] <= 1.0
  assert os.path.isfile(workdir / "eval_results.json")


class _SquareReader:
  """A `ClipReader` drawing a moving square for any record (picklable, no decoding)."""

  def read(self, record, choose):
    idx = np.asarray(choose(FRAMES))
    out = np.full((len(idx), SIZE, SIZE, 3), 16, np.uint8)
    for j, f in enumerate(idx):
      x = int(f) * (SIZE - 8) // (FRAMES - 1)
      out[j, 8:16, x:x + 8] = 64 + 96 * record.label % 192
    return out


@pytest.mark.slow
def test_videomae_two_phase_recipe_with_a_stand_in_reader(data_root, tmp_path, caplog):
  """The pretrain -> finetune (from ../pretrain) chain of a paper config, on the
  protocol's records of the stand-in layout, whatever readers have landed."""
  from time_jax.train import loop  # pylint: disable=g-import-not-at-top
  outs = {}
  for phase in ("pretrain", "finetune"):
    c = shrink(_config(("uwa3d_activity_videomae.py", phase), data_root), views=False)
    config_lib.validate(c, num_devices=1)
    splits = sources.load_splits(c)
    with caplog.at_level(logging.INFO):
      outs[phase] = loop.train_and_evaluate(c, str(tmp_path / phase),
                                            devices=jax.devices()[:1], splits=splits,
                                            reader=_SquareReader())
  assert np.isfinite(outs["pretrain"]["eval/loss"])
  assert 0.0 <= outs["finetune"]["eval/top1"] <= 1.0
  with open(tmp_path / "finetune" / "eval_results.json") as f:
    assert json.load(f)["num_videos"] == 2
  # The fine-tuning phase loaded the pretraining run's encoder (the loop logs
  # "init_from PATH: K arrays loaded, ...").
  loaded = [r.getMessage() for r in caplog.records
            if r.getMessage().startswith(f"init_from {tmp_path / 'pretrain'}:")]
  assert len(loaded) == 1, loaded
  assert int(loaded[0].split(": ")[1].split()[0]) > 10
