"""Protocols: a dataset's name and split in the config -> train and eval `Record`s.

`load(config.dataset)` parses the files of a protocol and returns
``Splits(train, eval, class_names)``. Labels are 0-based class indices; paths are
absolute (``dataset.root`` joined). Every protocol below documents the file layout it
reads. ``dataset.split`` must be one of ``SPLITS[name]``. Callers use
`time_jax.data.sources.load_splits`, which also takes records from the packed cache and
TFDS and generates the synthetic set before it is read here.

* ``annotations``: plain annotation files ``dataset.train_annotations`` and
  ``dataset.eval_annotations`` (paths relative to ``root`` unless absolute), one video a
  line, fields separated by commas or whitespace::

      relative/path.mp4 label            # a video file
      relative/folder num_frames label   # a frame folder and its frame count

  Labels are 0-based (``dataset.label_base=1`` for 1-based files). Class names come
  from ``dataset.classes_file`` (``name`` or ``index name`` a line, in label order) or
  are ``class_000, ...`` up to the largest label. Lines that are empty or start with
  ``#`` are skipped.
* ``synthetic``: the generated temporal dataset of `time_jax.data.synthetic` in
  ``root``, read as ``annotations`` with ``root/train.txt`` (train), ``root/test.txt``
  (eval) and ``root/classes.txt`` (class names). `sources.load_splits` generates it
  first when ``root`` does not hold it yet (``dataset.synthetic_videos_per_class``).
* ``ucf101``, splits ``'1' '2' '3'``: videos ``root/<Class>/v_<Class>_gXX_cYY.avi``; in
  ``dataset.split_dir`` (default ``root``) the official ``classInd.txt`` (``1 ApplyEyeMakeup``,
  1-based), ``trainlist0S.txt`` (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``) and
  ``testlist0S.txt`` (path only; the label is the class folder's).
* ``hmdb51``, splits ``'1' '2' '3'``: videos ``root/<class>/<video>.avi``; in
  ``split_dir`` the official ``<class>_test_splitS.txt`` files, lines ``video.avi 0|1|2``
  (1 train, 2 test, 0 unused). Classes are the split files' class names, sorted.
* ``ntu60`` (splits ``'xsub'``, ``'xview'``) and ``ntu120`` (``'xsub'``, ``'xset'``):
  every file or folder under ``root`` (searched recursively) whose name starts with
  ``SsssCcccPpppRrrrAaaa`` (e.g. ``S001C002P003R002A013_rgb.avi`` or a depth folder
  ``S001C002P003R002A013/``). NTU60 keeps setups 1-17 and actions 1-60. Cross-subject
  trains on the official subject lists (`NTU60_TRAIN_SUBJECTS`, `NTU120_TRAIN_SUBJECTS`),
  cross-view on cameras 2 and 3 (tests on 1), cross-setup on even setup numbers.
* ``msr_action3d`` (20 actions), ``action_pairs`` (3D Action Pairs, 12 actions),
  ``uwa3d_activity`` (UWA3D Activity, 30 actions), split ``'xsub'``: files or folders
  named ``aXX_sYY_eZZ...`` (e.g. ``a01_s01_e01_sdepth.bin``) under ``root``;
  odd subjects train, even subjects test.
* ``uwa3d_multiview`` (UWA3D Multiview Activity II, 30 actions), splits ``'12-3'`` ...:
  files or folders named ``aXX_sYY_vVV_eZZ...`` under ``root``; train on the two views
  before the dash, test on the view after it, the 12 combinations of the paper's
  Table 3 (`UWA3D_MULTIVIEW_SPLITS`).

For the scanned protocols (NTU, MSR, pairs, UWA3D) a name matches when it is a video
file (source ``video``), a folder (``frames``) or a ``.bin`` file (``msr_bin``).
``dataset.file_list`` (paths relative to ``root``, one a line) replaces the scan, which
is faster on network file systems and lets missing files be reported.

Files that an annotation or split file lists but that do not exist are reported all
together by `check_missing` (one message, count included): an error with
``dataset.missing_files='error'``, dropped with a warning with ``'drop'``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from typing import Callable, Sequence

import ml_collections

from time_jax.data.base import ProtocolError, Record, Splits

NTU60_TRAIN_SUBJECTS = frozenset((
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38))
NTU120_TRAIN_SUBJECTS = frozenset((
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46,
    47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
    89, 91, 92, 93, 94, 95, 97, 98, 100, 103))
NTU60_TRAIN_CAMERAS = frozenset((2, 3))

# Paper Table 3: train on two views, test on one other view.
UWA3D_MULTIVIEW_SPLITS = (
    "12-3", "12-4", "13-2", "13-4", "14-2", "14-3",
    "23-1", "23-4", "24-1", "24-3", "34-1", "34-2")

# The splits each protocol accepts; '' is accepted for protocols with a single split.
SPLITS = {
    "annotations": ("",),
    "synthetic": ("",),
    "ucf101": ("1", "2", "3"),
    "hmdb51": ("1", "2", "3"),
    "ntu60": ("xsub", "xview"),
    "ntu120": ("xsub", "xset"),
    "msr_action3d": ("xsub", ""),
    "action_pairs": ("xsub", ""),
    "uwa3d_activity": ("xsub", ""),
    "uwa3d_multiview": UWA3D_MULTIVIEW_SPLITS,
    # Any split string (TFDS's own split config); `sources.load_splits` asks TFDS.
    "tfds": None,
}

# Fixed class counts of the scanned depth protocols (labels are action number - 1).
_NUM_ACTIONS = {"msr_action3d": 20, "action_pairs": 12, "uwa3d_activity": 30,
                "uwa3d_multiview": 30, "ntu60": 60, "ntu120": 120}

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v")

_NTU_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
_ASE_RE = re.compile(r"^a(\d+)_s(\d+)_e(\d+)", re.IGNORECASE)
_ASVE_RE = re.compile(r"^a(\d+)_s(\d+)_v(\d+)_e(\d+)", re.IGNORECASE)


def _root_join(root: str, path: str) -> str:
  return path if os.path.isabs(path) or not root else os.path.join(root, path)


def _read_lines(path: str, what: str) -> list[str]:
  if not path:
    raise ProtocolError(f"{what}: no file given; set it in the config.")
  if not os.path.isfile(path):
    raise ProtocolError(f"{what}: {path!r} does not exist; check the path in the config.")
  with open(path, encoding="utf-8") as f:
    lines = [ln.strip() for ln in f]
  return [ln for ln in lines if ln and not ln.startswith("#")]


def _fields(line: str) -> list[str]:
  if "," in line:
    return [x.strip() for x in next(csv.reader([line]))]
  return line.split()


def _int(text: str) -> int | None:
  try:
    return int(text)
  except ValueError:
    return None


# ----------------------------------------------------------------------------------
# Plain annotation files.
# ----------------------------------------------------------------------------------

def parse_annotations(path: str, root: str, *, label_base: int = 0,
                      strip_extension: bool = False) -> list[Record]:
  """Reads ``path label`` or ``folder num_frames label`` lines (see module docstring).

  Args:
    path: the annotation file.
    root: joined in front of relative paths.
    label_base: subtracted from every label (1 for 1-based files).
    strip_extension: drop a video extension from paths (frame folders named after the
      videos).

  Returns:
    One `Record` a line, ``video_id`` the path as written.
  """
  records = []
  for lineno, line in enumerate(_read_lines(path, "annotation file"), 1):
    f = _fields(line)
    num_frames = None
    if len(f) >= 3 and _int(f[-1]) is not None and _int(f[-2]) is not None:
      rel, num_frames, label = " ".join(f[:-2]), int(f[-2]), int(f[-1])
    elif len(f) >= 2 and _int(f[-1]) is not None:
      rel, label = " ".join(f[:-1]), int(f[-1])
    else:
      raise ProtocolError(
          f"{path}:{lineno}: expected 'path label' or 'folder num_frames label', "
          f"got {line!r}.")
    label -= label_base
    if label < 0:
      raise ProtocolError(
          f"{path}:{lineno}: label {label + label_base} is below dataset.label_base="
          f"{label_base}; labels must be 0-based (or set label_base=1).")
    if strip_extension:
      rel = _strip_video_ext(rel)
    records.append(Record(_root_join(root, rel), label, num_frames, rel))
  return records


def read_class_names(path: str) -> list[str]:
  """Class names in label order from ``name`` or ``index name`` lines."""
  names = []
  for line in _read_lines(path, "dataset.classes_file"):
    f = _fields(line)
    names.append(" ".join(f[1:]) if len(f) > 1 and _int(f[0]) is not None else line)
  return names


def _annotations(cfg, train_file: str, eval_file: str, classes_file: str) -> Splits:
  strip = cfg.source == "frames"
  train = parse_annotations(train_file, cfg.root, label_base=cfg.label_base,
                            strip_extension=strip)
  evl = parse_annotations(eval_file, cfg.root, label_base=cfg.label_base,
                          strip_extension=strip)
  if classes_file:
    names = read_class_names(classes_file)
  else:
    top = max((r.label for r in train + evl), default=-1)
    names = [f"class_{i:03d}" for i in range(max(top + 1, cfg.num_classes))]
  return Splits(train, evl, names)


# ----------------------------------------------------------------------------------
# UCF101 and HMDB51 official splits.
# ----------------------------------------------------------------------------------

def _strip_video_ext(path: str) -> str:
  base, ext = os.path.splitext(path)
  return base if ext.lower() in VIDEO_EXTENSIONS else path


def ucf101(root: str, split_dir: str, split: int, *,
           frames: bool = False) -> Splits:
  """UCF101 official split 1-3 (layout in the module docstring).

  Args:
    root: the folder holding ``<Class>/v_*.avi``.
    split_dir: the folder holding ``classInd.txt``, ``trainlist0S.txt``,
      ``testlist0S.txt``.
    split: 1, 2 or 3.
    frames: records name frame folders (the video path without extension).
  """
  names = []
  for line in _read_lines(os.path.join(split_dir, "classInd.txt"), "UCF101 classInd"):
    idx, name = line.split()
    if int(idx) != len(names) + 1:
      raise ProtocolError(f"UCF101 classInd.txt: expected index {len(names) + 1}, "
                          f"got {line!r}.")
    names.append(name)
  index = {n.lower(): i for i, n in enumerate(names)}

  def records(filename, labelled):
    out = []
    for line in _read_lines(os.path.join(split_dir, filename), f"UCF101 {filename}"):
      f = line.split()
      rel = f[0]
      folder = rel.replace("\\", "/").split("/")[0].lower()
      if folder not in index:
        raise ProtocolError(f"UCF101 {filename}: class folder of {rel!r} is not in "
                            "classInd.txt.")
      label = index[folder]
      if labelled and len(f) > 1 and int(f[1]) - 1 != label:
        raise ProtocolError(f"UCF101 {filename}: {rel!r} has label {f[1]} but its folder "
                            f"is class {label + 1}.")
      rel = _strip_video_ext(rel) if frames else rel
      out.append(Record(_root_join(root, rel), label, None, rel))
    return out

  return Splits(records(f"trainlist{split:02d}.txt", True),
                records(f"testlist{split:02d}.txt", False), names)


def hmdb51(root: str, split_dir: str, split: int, *, frames: bool = False) -> Splits:
  """HMDB51 official split 1-3 from ``<class>_test_splitS.txt`` files."""
  pattern = re.compile(rf"^(.+)_test_split{split}\.txt$")
  if not os.path.isdir(split_dir):
    raise ProtocolError(f"HMDB51: split folder {split_dir!r} does not exist; set "
                        "dataset.split_dir.")
  files = sorted(f for f in os.listdir(split_dir) if pattern.match(f))
  if not files:
    raise ProtocolError(f"HMDB51: no '<class>_test_split{split}.txt' files in "
                        f"{split_dir!r}; set dataset.split_dir.")
  names = [pattern.match(f).group(1) for f in files]
  train, evl = [], []
  for label, (name, filename) in enumerate(zip(names, files)):
    for line in _read_lines(os.path.join(split_dir, filename), f"HMDB51 {filename}"):
      f = line.split()
      if len(f) != 2 or f[1] not in ("0", "1", "2"):
        raise ProtocolError(f"HMDB51 {filename}: expected 'video.avi 0|1|2', "
                            f"got {line!r}.")
      if f[1] == "0":
        continue
      rel = f"{name}/{f[0]}"
      rel = _strip_video_ext(rel) if frames else rel
      (train if f[1] == "1" else evl).append(
          Record(_root_join(root, rel), label, None, rel))
  return Splits(train, evl, names)


# ----------------------------------------------------------------------------------
# Protocols over file names: NTU RGB+D, MSRAction3D, 3D Action Pairs, UWA3D.
# ----------------------------------------------------------------------------------

def _kind_ok(name: str, is_dir: bool, source: str) -> bool:
  if source == "frames":
    return is_dir
  if is_dir:
    return False
  ext = os.path.splitext(name)[1].lower()
  if source == "msr_bin":
    return ext == ".bin"
  return ext in VIDEO_EXTENSIONS


def scan(root: str, pattern: re.Pattern, source: str,
         file_list: str = "") -> list[tuple[str, re.Match]]:
  """``(relative path, match)`` of the entries under root whose name matches.

  Searches recursively (not inside matching folders), or reads ``file_list`` instead.
  Sorted by path, so the order is the same on every host.
  """
  found = []
  if file_list:
    for rel in _read_lines(file_list, "dataset.file_list"):
      m = pattern.match(os.path.basename(rel.rstrip("/")))
      if m:
        found.append((rel.rstrip("/"), m))
    return sorted(found, key=lambda x: x[0])
  if not os.path.isdir(root):
    raise ProtocolError(f"dataset.root {root!r} is not a folder; set it to the data root.")
  for dirpath, dirnames, filenames in os.walk(root):
    rel_dir = os.path.relpath(dirpath, root)
    keep = []
    for d in dirnames:
      m = pattern.match(d)
      if m and _kind_ok(d, True, source):
        found.append((os.path.normpath(os.path.join(rel_dir, d)), m))
      else:
        keep.append(d)
    dirnames[:] = keep
    for f in filenames:
      m = pattern.match(f)
      if m and _kind_ok(f, False, source):
        found.append((os.path.normpath(os.path.join(rel_dir, f)), m))
  return sorted(found, key=lambda x: x[0])


def _split_by(entries, root: str, is_train: Callable, label_of: Callable,
              keep: Callable = lambda m: True) -> tuple[list[Record], list[Record]]:
  train, evl = [], []
  for rel, m in entries:
    if not keep(m):
      continue
    r = Record(_root_join(root, rel), label_of(m), None, rel)
    (train if is_train(m) else evl).append(r)
  return train, evl


def ntu(root: str, version: int, split: str, source: str = "video",
        file_list: str = "") -> Splits:
  """NTU RGB+D 60 / 120 splits from ``SsssCcccPpppRrrrAaaa`` names.

  Args:
    root: searched recursively.
    version: 60 or 120.
    split: ``'xsub'``, ``'xview'`` (60 only) or ``'xset'`` (120 only).
    source: which entries count (video files, folders or .bin files).
    file_list: optional list of relative paths replacing the scan.
  """
  entries = scan(root, _NTU_RE, source, file_list)
  # Groups: 1 setup, 2 camera, 3 subject (performer), 4 replication, 5 action.
  subjects = NTU60_TRAIN_SUBJECTS if version == 60 else NTU120_TRAIN_SUBJECTS
  rules = {
      "xsub": lambda m: int(m.group(3)) in subjects,
      "xview": lambda m: int(m.group(2)) in NTU60_TRAIN_CAMERAS,
      "xset": lambda m: int(m.group(1)) % 2 == 0,
  }
  if split not in SPLITS[f"ntu{version}"]:
    raise ProtocolError(f"NTU{version}: split {split!r} is not one of "
                        f"{SPLITS[f'ntu{version}']}; fix dataset.split.")
  keep = ((lambda m: int(m.group(1)) <= 17 and int(m.group(5)) <= 60)
          if version == 60 else (lambda m: True))
  train, evl = _split_by(entries, root, rules[split], lambda m: int(m.group(5)) - 1, keep)
  names = [f"A{i:03d}" for i in range(1, version + 1)]
  return Splits(train, evl, names)


def cross_subject(root: str, num_actions: int, source: str = "video",
                  file_list: str = "") -> Splits:
  """``aXX_sYY_eZZ`` names: odd subjects train, even subjects test."""
  entries = scan(root, _ASE_RE, source, file_list)
  train, evl = _split_by(entries, root, lambda m: int(m.group(2)) % 2 == 1,
                         lambda m: int(m.group(1)) - 1,
                         lambda m: 1 <= int(m.group(1)) <= num_actions)
  return Splits(train, evl, [f"a{i:02d}" for i in range(1, num_actions + 1)])


def uwa3d_multiview(root: str, split: str, source: str = "video",
                    file_list: str = "") -> Splits:
  """UWA3D Multiview Activity II cross-view: ``split='12-3'`` trains on views 1, 2.

  Videos of the views in neither part of the split are not used.
  """
  if split not in UWA3D_MULTIVIEW_SPLITS:
    raise ProtocolError(f"uwa3d_multiview: split {split!r} is not one of "
                        f"{UWA3D_MULTIVIEW_SPLITS}; fix dataset.split.")
  train_views = {int(c) for c in split.split("-")[0]}
  test_view = int(split.split("-")[1])
  entries = scan(root, _ASVE_RE, source, file_list)
  n = _NUM_ACTIONS["uwa3d_multiview"]
  train, evl = _split_by(
      entries, root, lambda m: int(m.group(3)) in train_views,
      lambda m: int(m.group(1)) - 1,
      lambda m: (int(m.group(3)) in train_views | {test_view}
                 and 1 <= int(m.group(1)) <= n))
  return Splits(train, evl, [f"a{i:02d}" for i in range(1, n + 1)])


# ----------------------------------------------------------------------------------
# Entry points.
# ----------------------------------------------------------------------------------

def load(cfg: ml_collections.ConfigDict) -> Splits:
  """The train / eval records and class names that the files of ``config.dataset`` list.

  The protocol ``cfg.name`` parses its files (module docstring); missing files are
  then handled by `check_missing` with ``cfg.missing_files``. TFDS and the packed cache
  are not files of a protocol: `time_jax.data.sources.load_splits` reads them.

  Raises:
    ProtocolError: unknown name, invalid split, missing or malformed split files, or
      (with ``missing_files='error'``) listed files that do not exist.
  """
  name, split = cfg.name, str(cfg.split)
  if name == "tfds":
    raise ProtocolError("dataset.name 'tfds' has no files to parse; load its records "
                        "with time_jax.data.sources.load_splits(config).")
  if name not in SPLITS:
    raise ProtocolError(f"dataset.name {name!r} is unknown; use one of {sorted(SPLITS)}.")
  if split not in SPLITS[name]:
    raise ProtocolError(f"dataset.split {split!r} is not valid for {name}; use one of "
                        f"{SPLITS[name]}.")
  frames = cfg.source == "frames"
  split_dir = cfg.split_dir or cfg.root
  if name == "annotations":
    out = _annotations(cfg, cfg.train_annotations, cfg.eval_annotations,
                       cfg.classes_file)
  elif name == "synthetic":
    # The files `time_jax.data.synthetic.generate` writes.
    out = _annotations(cfg, os.path.join(cfg.root, "train.txt"),
                       os.path.join(cfg.root, "test.txt"),
                       os.path.join(cfg.root, "classes.txt"))
  elif name == "ucf101":
    out = ucf101(cfg.root, split_dir, int(split), frames=frames)
  elif name == "hmdb51":
    out = hmdb51(cfg.root, split_dir, int(split), frames=frames)
  elif name in ("ntu60", "ntu120"):
    out = ntu(cfg.root, _NUM_ACTIONS[name], split, cfg.source, cfg.file_list)
  elif name == "uwa3d_multiview":
    out = uwa3d_multiview(cfg.root, split, cfg.source, cfg.file_list)
  else:
    out = cross_subject(cfg.root, _NUM_ACTIONS[name], cfg.source, cfg.file_list)
  if not out.train or not out.eval:
    raise ProtocolError(
        f"dataset {name} split {split!r} under {cfg.root!r}: found {len(out.train)} "
        f"train and {len(out.eval)} eval videos; check dataset.root, dataset.source "
        "and the file names (see time_jax/data/protocols.py).")
  if cfg.num_classes and cfg.num_classes != len(out.class_names):
    raise ProtocolError(f"dataset.num_classes={cfg.num_classes} but {name} has "
                        f"{len(out.class_names)} classes; set it to 0 or fix it.")
  for part in (out.train, out.eval):
    bad = [r for r in part if not 0 <= r.label < len(out.class_names)]
    if bad:
      raise ProtocolError(f"{len(bad)} records have labels outside [0, "
                          f"{len(out.class_names)}), first {bad[0].name!r} label "
                          f"{bad[0].label}; fix the labels or dataset.classes_file.")
  train = check_missing(out.train, cfg.missing_files, "train")
  evl = check_missing(out.eval, cfg.missing_files, "eval")
  return Splits(train, evl, out.class_names)


def check_missing(records: Sequence[Record], policy: str, what: str = "",
                  show: int = 10) -> list[Record]:
  """Reports records whose path does not exist, all in one message.

  Args:
    records: records with file or folder paths.
    policy: ``'error'`` raises; ``'drop'`` logs one warning and drops them.
    what: a word for the message (``'train'``).
    show: how many paths the message names.

  Returns:
    The records that exist.
  """
  missing = [r for r in records if not os.path.exists(r.path)]
  if not missing:
    return list(records)
  listing = "\n  ".join(r.path for r in missing[:show])
  more = f"\n  ... and {len(missing) - show} more" if len(missing) > show else ""
  msg = (f"{len(missing)} of {len(records)} {what} files listed by the annotations do "
         f"not exist:\n  {listing}{more}")
  if policy == "error":
    raise ProtocolError(msg + "\nFix dataset.root / the annotation files, or set "
                        "dataset.missing_files='drop' to train without them.")
  if policy != "drop":
    raise ProtocolError(f"dataset.missing_files={policy!r}; use 'error' or 'drop'.")
  logging.warning("%s\nDropped (dataset.missing_files='drop').", msg)
  gone = {id(r) for r in missing}
  return [r for r in records if id(r) not in gone]
