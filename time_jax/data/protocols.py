"""Protocols: a dataset's name and split in the config -> train and eval `Record`s.

`load(config.dataset)` parses the files of a protocol and returns
``Splits(train, eval, class_names)``. Labels are 0-based class indices; paths are
absolute (``dataset.root`` joined). Every protocol below documents the file layout it
reads. ``dataset.split`` must be one of ``SPLITS[name]``. Callers use
`time_jax.data.sources.load_splits`, which also takes records from the packed cache and
TFDS and generates the synthetic set before it is read here.

* ``annotations``: plain annotation files ``dataset.train_annotations`` and
  ``dataset.eval_annotations``, one video a line, fields separated by whitespace, or
  by commas when the file's first line is (``path,label``; one format per file)::

      relative/path.mp4 label            # a video file
      relative/folder num_frames label   # a frame folder and its frame count

  Labels are 0-based (``dataset.label_base=1`` for 1-based files). Class names come
  from ``dataset.classes_file`` (``name`` or ``index name`` a line, in label order) or
  are ``class_000, ...``. The class count is ``dataset.num_classes`` when set, else
  the classes file's length, else the largest training label + 1; without
  ``num_classes`` every class needs a training example, and every label must be below
  the count (`check_classes`: a stray label is an error naming its line, never an
  extra empty class). Lines that are empty or start with ``#`` are skipped.
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

Paths of files the config names (``train_annotations``, ``eval_annotations``,
``classes_file``, ``file_list``, ``split_dir``) are relative to ``dataset.root`` unless
absolute (`data_path`), as are the video paths inside them.

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


def data_path(root: str, path: str) -> str:
  """A file field of ``config.dataset`` (annotations, classes file, file list, split
  folder): relative to ``root`` unless absolute; ``''`` stays ``''``."""
  return _root_join(root, path) if path else path


def _numbered_lines(path: str, what: str) -> list[tuple[int, str]]:
  """``(line number, stripped line)`` of the lines that are not empty or ``#``."""
  if not path:
    raise ProtocolError(f"{what}: no file given; set it in the config.")
  if not os.path.isfile(path):
    raise ProtocolError(f"{what}: {path!r} does not exist; check the path in the config.")
  # utf-8-sig: a byte-order mark (Notepad, Excel) is not part of the first path.
  with open(path, encoding="utf-8-sig") as f:
    lines = [(n, ln.strip()) for n, ln in enumerate(f, 1)]
  return [(n, ln) for n, ln in lines if ln and not ln.startswith("#")]


def _read_lines(path: str, what: str) -> list[str]:
  return [ln for _, ln in _numbered_lines(path, what)]


def _csv_fields(line: str) -> list[str]:
  return [x.strip() for x in next(csv.reader([line]))]


def _int(text: str) -> int | None:
  try:
    return int(text)
  except ValueError:
    return None


def _is_csv(first_line: str, int_field: int) -> bool:
  """Whether a file is comma-separated, from its first line: it has a comma and its
  field ``int_field`` (-1: the label, 0: a class index) is an integer."""
  if "," not in first_line:
    return False
  f = _csv_fields(first_line)
  return len(f) >= 2 and _int(f[int_field]) is not None


# ----------------------------------------------------------------------------------
# Plain annotation files.
# ----------------------------------------------------------------------------------

def _parse_lines(path: str, root: str, *, label_base: int = 0,
                 strip_extension: bool = False) -> list[tuple[Record, str]]:
  """`parse_annotations` with each record's ``'file:line'``, for error messages."""
  lines = _numbered_lines(path, "annotation file")
  # One format per file: a comma in a file name must not make its line CSV.
  split = _csv_fields if lines and _is_csv(lines[0][1], -1) else str.split
  out = []
  for lineno, line in lines:
    f = split(line)
    num_frames = None
    if len(f) >= 3 and _int(f[-1]) is not None and _int(f[-2]) is not None:
      rel, num_frames, label = " ".join(f[:-2]), int(f[-2]), int(f[-1])
    elif len(f) >= 2 and _int(f[-1]) is not None:
      rel, label = " ".join(f[:-1]), int(f[-1])
    else:
      form = "comma-separated, as its first line" if split is _csv_fields else (
          "whitespace-separated, as its first line")
      raise ProtocolError(
          f"{path}:{lineno}: expected 'path label' or 'folder num_frames label' "
          f"({form}), got {line!r}.")
    label -= label_base
    if label < 0:
      fix = (f"the file's labels look 0-based: set dataset.label_base=0" if label_base
             else "labels are class indices from 0 (from 1 with dataset.label_base=1)")
      raise ProtocolError(
          f"{path}:{lineno}: label {label + label_base} is below dataset.label_base="
          f"{label_base}; {fix}.")
    if strip_extension:
      rel = _strip_video_ext(rel)
    out.append((Record(_root_join(root, rel), label, num_frames, rel),
                f"{path}:{lineno}"))
  return out


def parse_annotations(path: str, root: str, *, label_base: int = 0,
                      strip_extension: bool = False) -> list[Record]:
  """Reads ``path label`` or ``folder num_frames label`` lines (see module docstring).

  A file is comma-separated when its first line is (``path,label``, fields in CSV
  quoting), else whitespace-separated; every line is read the same way, so a comma in
  a file name does not change how its line splits.

  Args:
    path: the annotation file.
    root: joined in front of relative paths.
    label_base: subtracted from every label (1 for 1-based files).
    strip_extension: drop a video extension from paths (frame folders named after the
      videos).

  Returns:
    One `Record` a line, ``video_id`` the path as written.
  """
  return [r for r, _ in _parse_lines(path, root, label_base=label_base,
                                      strip_extension=strip_extension)]


def read_class_names(path: str) -> list[str]:
  """Class names in label order from ``name`` or ``index name`` lines.

  Indices, where given, must count up by one from the first (0- or 1-based); a file is
  comma-separated (``index,name``) when its first line is.
  """
  lines = _numbered_lines(path, "dataset.classes_file")
  comma = bool(lines) and _is_csv(lines[0][1], 0)
  names, first = [], None
  for lineno, line in lines:
    f = _csv_fields(line) if comma else line.split(None, 1)
    index = _int(f[0]) if len(f) > 1 else None
    if index is None:
      names.append(line)
      continue
    first = index - len(names) if first is None else first
    if index != first + len(names):
      raise ProtocolError(f"{path}:{lineno}: class index {index}, expected "
                          f"{first + len(names)}; list the classes in label order.")
    names.append(",".join(f[1:]).strip() if comma else f[1].strip())
  return names


def _spans(values: Sequence[int], show: int = 4) -> str:
  """``[2, 3, 4, 9]`` -> ``'2..4, 9'`` (the first ``show`` runs)."""
  runs = []
  for v in values:
    if runs and v == runs[-1][1] + 1:
      runs[-1][1] = v
    else:
      runs.append([v, v])
  text = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in runs[:show])
  return text + (", ..." if len(runs) > show else "")


def _have(classes: Sequence[int]) -> str:
  return "1 of them has" if len(classes) == 1 else f"{len(classes)} of them have"


def _refs(lines: Sequence[tuple[Record, str]], show: int = 3) -> str:
  text = ", ".join(f"{where} (label {r.label})" for r, where in lines[:show])
  return text + (f" and {len(lines) - show} more" if len(lines) > show else "")


def check_classes(train: Sequence[tuple[Record, str]],
                  evl: Sequence[tuple[Record, str]], *, names: Sequence[str] | None,
                  names_file: str = "", num_classes: int = 0,
                  label_base: int = 0) -> int:
  """The class count on which the labels, the class names and the head size agree.

  The count is ``num_classes`` when given (classes without a training example are
  then allowed), else the classes file's length, else the largest training label + 1.
  Without ``num_classes`` every class must have a training example: one stray label
  (99 in an 8-class file) would otherwise add empty classes to the head. Every label
  must be below the count.

  Args:
    train, evl: ``(record, 'file:line')`` of each split (0-based labels).
    names: the classes file's names, or None without one.
    names_file: the classes file (for messages).
    num_classes: ``dataset.num_classes`` (0: not given).
    label_base: ``dataset.label_base`` (for messages).

  Returns:
    The number of classes.

  Raises:
    ProtocolError: one line naming what disagrees and the first offending lines.
  """
  if num_classes:
    if names is not None and len(names) != num_classes:
      raise ProtocolError(
          f"dataset.num_classes={num_classes} but dataset.classes_file {names_file!r} "
          f"names {len(names)} classes; they must agree (num_classes=0 takes the "
          "classes file's count).")
    count, what = num_classes, f"dataset.num_classes={num_classes}"
  elif names is not None:
    count, what = len(names), f"the {len(names)} names of dataset.classes_file {names_file!r}"
  else:
    count = max((r.label for r, _ in train), default=-1) + 1
    what = f"the {count} classes of the training labels"
  for part in (train, evl):
    outside = [(r, w) for r, w in part if r.label >= count]
    if outside:
      base = f", after subtracting dataset.label_base={label_base}" if label_base else ""
      many = "1 label is" if len(outside) == 1 else f"{len(outside)} labels are"
      raise ProtocolError(
          f"{many} outside {what} (0-based{base}): {_refs(outside)}; fix the labels"
          f"{' or dataset.num_classes' if num_classes else ''}"
          f"{' or the classes file' if names is not None else ''}.")
  if num_classes:
    return count
  seen = {r.label for r, _ in train}
  empty = [c for c in range(count) if c not in seen]
  if not empty:
    return count
  hint = (" (the labels start at 1: set dataset.label_base=1?)"
          if empty == [0] and label_base == 0 else "")
  if names is not None:
    shown = ", ".join(repr(names[c]) for c in empty[:4]) + (", ..." if len(empty) > 4 else "")
    raise ProtocolError(
        f"dataset.classes_file {names_file!r} names {count} classes but {_have(empty)} "
        f"no training example ({shown}; labels {_spans(empty)}){hint}: the "
        f"class names, the head size and the labels must agree; fix the classes file "
        f"or the annotations, or set dataset.num_classes={count} to keep classes "
        "without training examples.")
  past = [(r, w) for r, w in train if r.label > empty[0]]
  raise ProtocolError(
      f"the training labels imply {count} classes but {_have(empty)} no "
      f"training example (labels {_spans(empty)}){hint}; first lines past the gap: "
      f"{_refs(past)}. Fix those labels, or set dataset.num_classes={count} to keep "
      "classes without training examples.")


def annotation_splits(cfg: ml_collections.ConfigDict) -> Splits:
  """The ``annotations`` or ``synthetic`` protocol's records and class names.

  Parses the files and agrees the class count (`check_classes`); does not look at the
  listed videos (`load` then checks that they exist). Class names are the classes
  file's, else ``class_000, ...``.

  Raises:
    ProtocolError: a missing or malformed file, or a class count that disagrees.
  """
  if cfg.name == "synthetic":
    # The files `time_jax.data.synthetic.generate` writes.
    files = [os.path.join(cfg.root, f) for f in ("train.txt", "test.txt", "classes.txt")]
  else:
    files = [data_path(cfg.root, cfg[f])
             for f in ("train_annotations", "eval_annotations", "classes_file")]
  train_file, eval_file, classes_file = files
  kw = dict(label_base=cfg.label_base, strip_extension=cfg.source == "frames")
  train = _parse_lines(train_file, cfg.root, **kw)
  evl = _parse_lines(eval_file, cfg.root, **kw)
  names = read_class_names(classes_file) if classes_file else None
  count = check_classes(train, evl, names=names, names_file=classes_file,
                        num_classes=cfg.num_classes, label_base=cfg.label_base)
  names = names if names is not None else [f"class_{i:03d}" for i in range(count)]
  return Splits([r for r, _ in train], [r for r, _ in evl], list(names))


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
  split_dir = data_path(cfg.root, cfg.split_dir) or cfg.root
  file_list = data_path(cfg.root, cfg.file_list)
  if name in ("annotations", "synthetic"):
    out = annotation_splits(cfg)
  elif name == "ucf101":
    out = ucf101(cfg.root, split_dir, int(split), frames=frames)
  elif name == "hmdb51":
    out = hmdb51(cfg.root, split_dir, int(split), frames=frames)
  elif name in ("ntu60", "ntu120"):
    out = ntu(cfg.root, _NUM_ACTIONS[name], split, cfg.source, file_list)
  elif name == "uwa3d_multiview":
    out = uwa3d_multiview(cfg.root, split, cfg.source, file_list)
  else:
    out = cross_subject(cfg.root, _NUM_ACTIONS[name], cfg.source, file_list)
  if not out.train or not out.eval:
    raise ProtocolError(
        f"dataset {name} split {split!r} under {cfg.root!r}: found {len(out.train)} "
        f"train and {len(out.eval)} eval videos; check dataset.root, dataset.source "
        "and the file names (see time_jax/data/protocols.py).")
  check_agreement(out, cfg.num_classes, f"dataset {name}")
  train = check_missing(out.train, cfg.missing_files, "train")
  evl = check_missing(out.eval, cfg.missing_files, "eval")
  return Splits(train, evl, out.class_names)


def check_agreement(splits: Splits, num_classes: int, what: str) -> None:
  """Class names, head size (``num_classes``, 0: the names' count) and labels agree.

  Every source's splits pass here (`load`, and `time_jax.data.sources.load_splits` for
  the packed cache and TFDS); the annotation protocols check more first
  (`check_classes`).

  Raises:
    ProtocolError: one line saying which disagree.
  """
  count = len(splits.class_names)
  if num_classes and num_classes != count:
    raise ProtocolError(f"dataset.num_classes={num_classes} but {what} has {count} "
                        "class names; they must agree (num_classes=0 takes the names' "
                        "count).")
  for part in (splits.train, splits.eval):
    bad = [r for r in part if not 0 <= r.label < count]
    if bad:
      raise ProtocolError(f"{len(bad)} records of {what} have labels outside its {count} "
                          f"classes, first {bad[0].name!r} label {bad[0].label}; fix the "
                          "labels or the class names.")


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
  listing = ", ".join(r.path for r in missing[:show])
  more = f" and {len(missing) - show} more" if len(missing) > show else ""
  msg = (f"{len(missing)} of {len(records)} {what} files listed by the annotations do "
         f"not exist: {listing}{more}.")
  if policy == "error":
    raise ProtocolError(msg + " Fix dataset.root / the annotation files, or set "
                        "dataset.missing_files='drop' to train without them.")
  if policy != "drop":
    raise ProtocolError(f"dataset.missing_files={policy!r}; use 'error' or 'drop'.")
  logging.warning("%s Dropped (dataset.missing_files='drop').", msg)
  gone = {id(r) for r in missing}
  return [r for r in records if id(r) not in gone]
