"""Split parsers on small hand-made files in the official formats, and config checks."""

import os

import ml_collections
import pytest

from time_jax.data import config as data_config
from time_jax.data import protocols
from time_jax.data.base import ProtocolError


def _touch(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  open(path, "wb").close()


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _cfg(**kw):
  d = data_config.dataset_defaults()
  d.update(kw)
  return d


def _full_config(**dataset):
  return ml_collections.ConfigDict(dict(
      dataset=_cfg(**dataset), input=data_config.input_defaults(),
      time=dict(n=2, t_out=4, arrangement="spatial"), image_size=32))


def test_annotations_both_line_forms_commas_and_label_base(tmp_path):
  root = str(tmp_path)
  _touch(f"{root}/a/x.mp4")
  _touch(f"{root}/b y/z.mp4")
  os.makedirs(f"{root}/frames/v1")
  _write(f"{root}/train.txt", "# comment\na/x.mp4 1\n\nframes/v1 37 3\nb y/z.mp4 2\n")
  _write(f"{root}/eval.csv", "b y/z.mp4,2\n\"a/x.mp4\",3\n")
  s = protocols.load(_cfg(root=root, train_annotations=f"{root}/train.txt",
                          eval_annotations=f"{root}/eval.csv", label_base=1))
  assert [(r.path, r.label, r.num_frames) for r in s.train] == [
      (f"{root}/a/x.mp4", 0, None), (f"{root}/frames/v1", 2, 37),
      (f"{root}/b y/z.mp4", 1, None)]
  assert [(r.path, r.label, r.video_id) for r in s.eval] == [
      (f"{root}/b y/z.mp4", 1, "b y/z.mp4"), (f"{root}/a/x.mp4", 2, "a/x.mp4")]
  assert s.class_names == ["class_000", "class_001", "class_002"]


def test_a_comma_in_a_file_name_does_not_make_the_line_csv(tmp_path):
  root = str(tmp_path)
  _write(f"{root}/t.txt", "walk, fast.mp4 0\nrun.mp4 1\nsit,down.mp4 1\n")
  records = protocols.parse_annotations(f"{root}/t.txt", root)
  assert [(r.video_id, r.label) for r in records] == [
      ("walk, fast.mp4", 0), ("run.mp4", 1), ("sit,down.mp4", 1)]
  # A comma-separated file stays comma-separated, names with spaces included.
  _write(f"{root}/t.csv", "walk fast.mp4,0\n\"sit,down.mp4\",1\n")
  records = protocols.parse_annotations(f"{root}/t.csv", root)
  assert [(r.video_id, r.label) for r in records] == [
      ("walk fast.mp4", 0), ("sit,down.mp4", 1)]
  # A whitespace line in a comma-separated file is named, by its real line number.
  _write(f"{root}/mixed.csv", "a.mp4,0\n# note\nb.mp4 1\n")
  with pytest.raises(ProtocolError, match=r"mixed.csv:3: .*comma-separated"):
    protocols.parse_annotations(f"{root}/mixed.csv", root)


def test_annotations_class_names_file_and_bad_line(tmp_path):
  root = str(tmp_path)
  _touch(f"{root}/x.mp4")
  _write(f"{root}/t.txt", "x.mp4 0\nx.mp4 1\n")
  _write(f"{root}/classes.txt", "1 Jump\n2 Run, fast\n")
  s = protocols.load(_cfg(root=root, train_annotations=f"{root}/t.txt",
                          eval_annotations=f"{root}/t.txt",
                          classes_file=f"{root}/classes.txt"))
  assert s.class_names == ["Jump", "Run, fast"]
  _write(f"{root}/classes.csv", "0,Jump\n1,Run\n")
  assert protocols.read_class_names(f"{root}/classes.csv") == ["Jump", "Run"]
  _write(f"{root}/shuffled.txt", "1 Jump\n3 Run\n")
  with pytest.raises(ProtocolError, match="shuffled.txt:2: class index 3, expected 2"):
    protocols.read_class_names(f"{root}/shuffled.txt")
  _write(f"{root}/bad.txt", "x.mp4 zero\n")
  with pytest.raises(ProtocolError, match="bad.txt:1"):
    protocols.parse_annotations(f"{root}/bad.txt", root)


def _eight_classes(root, extra=""):
  """Train: 2 clips for each of 8 classes (lines 2..17 after a comment), then
  ``extra``; eval: one clip per class."""
  for i in range(8):
    _touch(f"{root}/c{i}.mp4")
  lines = "".join(f"c{i}.mp4 {i}\n" for i in range(8) for _ in range(2))
  _write(f"{root}/train.txt", "# clip label\n" + lines + extra)
  _write(f"{root}/eval.txt", "".join(f"c{i}.mp4 {i}\n" for i in range(8)))
  return _cfg(root=root, train_annotations="train.txt", eval_annotations="eval.txt")


def _one_line_error(cfg, *patterns):
  with pytest.raises(ProtocolError) as e:
    protocols.load(cfg)
  msg = str(e.value)
  assert "\n" not in msg, msg
  for pattern in patterns:
    assert pattern in msg, (pattern, msg)
  return msg


def test_a_stray_label_is_an_error_naming_its_line_not_an_empty_class(tmp_path):
  root = str(tmp_path)
  cfg = _eight_classes(root)
  assert len(protocols.load(cfg).class_names) == 8  # paths relative to the root
  cfg = _eight_classes(root, extra="c0.mp4 99\n")
  _one_line_error(cfg, "imply 100 classes", "91 of them have no training example",
                  "labels 8..98", f"{root}/train.txt:18 (label 99)",
                  "dataset.num_classes=100")
  # num_classes says the count: empty classes are allowed, labels must be below it.
  cfg.num_classes = 100
  s = protocols.load(cfg)
  assert len(s.class_names) == 100 and s.class_names[99] == "class_099"
  cfg.num_classes = 50
  _one_line_error(cfg, "outside dataset.num_classes=50", "train.txt:18 (label 99)")
  # An eval label without training examples.
  cfg = _eight_classes(root)
  _write(f"{root}/eval.txt", "c0.mp4 0\nc1.mp4 8\n")
  _one_line_error(cfg, "outside the 8 classes of the training labels",
                  "eval.txt:2 (label 8)")


def test_one_based_labels_without_label_base_are_named(tmp_path):
  root = str(tmp_path)
  _touch(f"{root}/a.mp4")
  _write(f"{root}/t.txt", "a.mp4 1\na.mp4 2\n")
  cfg = _cfg(root=root, train_annotations="t.txt", eval_annotations="t.txt")
  _one_line_error(cfg, "dataset.label_base=1")
  cfg.label_base = 1
  assert protocols.load(cfg).class_names == ["class_000", "class_001"]


def test_classes_file_names_labels_and_num_classes_must_agree(tmp_path):
  root = str(tmp_path)
  cfg = _eight_classes(root)
  # The demo's 8 names with a 2-class set: a one-line error saying which disagree.
  _write(f"{root}/names.txt", "".join(f"name{i}\n" for i in range(8)))
  _write(f"{root}/two.txt", "c0.mp4 0\nc1.mp4 1\n")
  cfg.update(train_annotations="two.txt", eval_annotations="two.txt",
             classes_file="names.txt")
  _one_line_error(cfg, "names 8 classes but 6 of them have no training example",
                  "'name2'", "labels 2..7", "head size")
  # A label past the names.
  cfg.update(train_annotations="train.txt", eval_annotations="eval.txt")
  _write(f"{root}/names.txt", "".join(f"name{i}\n" for i in range(7)))
  _one_line_error(cfg, "outside the 7 names of dataset.classes_file",
                  "train.txt:16 (label 7)")
  # num_classes and the names disagree.
  cfg.num_classes = 8
  _one_line_error(cfg, "dataset.num_classes=8", "names 7 classes")
  _write(f"{root}/names.txt", "".join(f"name{i}\n" for i in range(8)))
  assert protocols.load(cfg).class_names[-1] == "name7"


def test_validate_reads_relative_paths_and_stops_on_disagreement(tmp_path):
  root = str(tmp_path)
  c = _full_config()
  c.dataset = _eight_classes(root)
  c.dataset.classes_file = "names.txt"
  with pytest.raises(ValueError, match=r"config.dataset.classes_file: 'names.txt' \(under "
                     "dataset.root"):
    data_config.validate(c)
  _write(f"{root}/names.txt", "".join(f"name{i}\n" for i in range(8)))
  data_config.validate(c)
  _write(f"{root}/names.txt", "a\nb\n")
  with pytest.raises(ProtocolError, match="outside the 2 names"):
    data_config.validate(c)  # time_jax.main prints what validate raises as one line
  c.dataset.update(classes_file="", eval_annotations="nope.txt")
  with pytest.raises(ValueError, match="config.dataset.eval_annotations: 'nope.txt' "
                     r"\(under dataset.root"):
    data_config.validate(c)


def test_missing_files_reported_together_error_or_drop(tmp_path, caplog):
  root = str(tmp_path)
  _touch(f"{root}/ok.mp4")
  _write(f"{root}/t.txt", "ok.mp4 0\nm1.mp4 0\nm2.mp4 1\nm3.mp4 1\n")
  cfg = _cfg(root=root, train_annotations=f"{root}/t.txt",
             eval_annotations=f"{root}/t.txt")
  with pytest.raises(ProtocolError) as e:
    protocols.load(cfg)
  msg = str(e.value)
  assert "3 of 4 train files" in msg and "m1.mp4" in msg and "m3.mp4" in msg
  cfg.missing_files = "drop"
  caplog.set_level("WARNING")
  s = protocols.load(cfg)
  assert [r.video_id for r in s.train] == ["ok.mp4"]
  warnings = [r.getMessage() for r in caplog.records if "do not exist" in r.getMessage()]
  assert len(warnings) == 2  # one for train, one for eval, each listing all three
  assert all("m1.mp4" in w and "m2.mp4" in w and "3 of 4" in w for w in warnings)


def _ucf(root):
  _write(f"{root}/splits/classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n")
  for split in (1, 2):
    _write(f"{root}/splits/trainlist0{split}.txt",
           "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c01.avi 2\n")
    _write(f"{root}/splits/testlist0{split}.txt", "Archery/v_Archery_g01_c01.avi\n")
  for p in ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "Archery/v_Archery_g08_c01.avi",
            "Archery/v_Archery_g01_c01.avi"):
    _touch(f"{root}/{p}")


def test_ucf101_split(tmp_path):
  root = str(tmp_path)
  _ucf(root)
  s = protocols.load(_cfg(name="ucf101", split="2", root=root,
                          split_dir=f"{root}/splits"))
  assert s.class_names == ["ApplyEyeMakeup", "Archery"]
  assert [(os.path.basename(r.path), r.label) for r in s.train] == [
      ("v_ApplyEyeMakeup_g08_c01.avi", 0), ("v_Archery_g08_c01.avi", 1)]
  assert [(r.video_id, r.label) for r in s.eval] == [("Archery/v_Archery_g01_c01.avi", 1)]
  # Frame folders are named after the videos, without the extension.
  os.makedirs(f"{root}/Archery/v_Archery_g01_c01")
  f = protocols.ucf101(root, f"{root}/splits", 1, frames=True)
  assert f.eval[0].path == f"{root}/Archery/v_Archery_g01_c01"
  with pytest.raises(ProtocolError, match="split '4'"):
    protocols.load(_cfg(name="ucf101", split="4", root=root))


def test_ucf101_label_mismatch_is_an_error(tmp_path):
  root = str(tmp_path)
  _ucf(root)
  _write(f"{root}/splits/trainlist01.txt", "Archery/v_Archery_g08_c01.avi 1\n")
  with pytest.raises(ProtocolError, match="label 1 but its folder is class 2"):
    protocols.ucf101(root, f"{root}/splits", 1)


def test_hmdb51_split(tmp_path):
  root = str(tmp_path)
  _write(f"{root}/s/run_test_split1.txt", "r1.avi 1\nr2.avi 2\nr3.avi 0\n")
  _write(f"{root}/s/brush_hair_test_split1.txt", "b1.avi 2 \nb2.avi 1\n")
  _write(f"{root}/s/run_test_split2.txt", "r1.avi 2\n")
  for p in ("run/r1.avi", "run/r2.avi", "run/r3.avi", "brush_hair/b1.avi",
            "brush_hair/b2.avi"):
    _touch(f"{root}/{p}")
  s = protocols.load(_cfg(name="hmdb51", split="1", root=root, split_dir=f"{root}/s"))
  assert s.class_names == ["brush_hair", "run"]
  assert [(r.video_id, r.label) for r in s.train] == [("brush_hair/b2.avi", 0),
                                                       ("run/r1.avi", 1)]
  assert [(r.video_id, r.label) for r in s.eval] == [("brush_hair/b1.avi", 0),
                                                      ("run/r2.avi", 1)]


def _ntu_names():
  # (setup, camera, subject, action) combinations covering each rule's both sides.
  combos = [(1, 1, 1, 1), (1, 2, 3, 1), (2, 3, 2, 60), (18, 1, 45, 61), (19, 2, 46, 2),
            (17, 1, 103, 120)]
  return [f"S{s:03d}C{c:03d}P{p:03d}R001A{a:03d}_rgb.avi" for s, c, p, a in combos]


@pytest.mark.parametrize("version,split,train", [
    (60, "xsub", {"S001C001P001", "S002C003P002"}),
    (60, "xview", {"S001C002P003", "S002C003P002"}),
    (120, "xsub", {"S001C001P001", "S002C003P002", "S018C001P045", "S019C002P046",
                   "S017C001P103"}),
    (120, "xset", {"S002C003P002", "S018C001P045"}),
])
def test_ntu_splits(tmp_path, version, split, train):
  root = str(tmp_path)
  for i, name in enumerate(_ntu_names()):
    _touch(f"{root}/part{i % 2}/{name}")
  _touch(f"{root}/S001C001P001R001A001.skeleton")  # not a video: ignored
  s = protocols.load(_cfg(name=f"ntu{version}", split=split, root=root))
  got_train = {os.path.basename(r.path)[:12] for r in s.train}
  got_eval = {os.path.basename(r.path)[:12] for r in s.eval}
  assert got_train == train
  everything = {n[:12] for n in _ntu_names()}
  if version == 60:  # setups > 17 and actions > 60 are NTU120 only
    everything -= {"S018C001P045", "S019C002P046", "S017C001P103"}
  assert got_eval == everything - train
  assert len(s.class_names) == version
  a60 = [r for r in s.train + s.eval if "A060" in r.path]
  assert a60 and all(r.label == 59 for r in a60)


def test_ntu_subject_lists_are_the_official_ones():
  assert len(protocols.NTU60_TRAIN_SUBJECTS) == 20
  assert len(protocols.NTU120_TRAIN_SUBJECTS) == 53
  assert protocols.NTU60_TRAIN_SUBJECTS < protocols.NTU120_TRAIN_SUBJECTS


def test_ntu_depth_folders_and_file_list(tmp_path):
  root = str(tmp_path)
  os.makedirs(f"{root}/depth/S001C001P001R001A003")
  os.makedirs(f"{root}/depth/S001C001P003R001A003")
  s = protocols.load(_cfg(name="ntu60", split="xsub", root=root, source="frames"))
  assert [r.label for r in s.train] == [2] and len(s.eval) == 1
  _write(f"{root}/list.txt", "depth/S001C001P001R001A003\ndepth/S001C001P003R001A003\n")
  s2 = protocols.load(_cfg(name="ntu60", split="xsub", root=root, source="frames",
                           file_list=f"{root}/list.txt"))
  assert s2 == s


@pytest.mark.parametrize("name,actions", [
    ("msr_action3d", 20), ("action_pairs", 12), ("uwa3d_activity", 30)])
def test_cross_subject_odd_train_even_test(tmp_path, name, actions):
  root = str(tmp_path)
  for a in (1, actions, actions + 1):
    for subj in (1, 2, 9, 10):
      _touch(f"{root}/a{a:02d}_s{subj:02d}_e01_sdepth.bin")
  s = protocols.load(_cfg(name=name, split="xsub", root=root, source="msr_bin"))
  assert {r.video_id.split("_")[1] for r in s.train} == {"s01", "s09"}
  assert {r.video_id.split("_")[1] for r in s.eval} == {"s02", "s10"}
  assert sorted({r.label for r in s.train}) == [0, actions - 1]  # a{actions+1} ignored
  assert len(s.class_names) == actions


def test_uwa3d_multiview_all_twelve_combinations(tmp_path):
  root = str(tmp_path)
  for v in (1, 2, 3, 4):
    for a in (1, 30):
      _touch(f"{root}/a{a:02d}_s01_v{v:02d}_e00.mp4")
  assert len(protocols.UWA3D_MULTIVIEW_SPLITS) == 12
  for split in protocols.UWA3D_MULTIVIEW_SPLITS:
    s = protocols.load(_cfg(name="uwa3d_multiview", split=split, root=root))
    views = lambda rs: {int(r.video_id.split("_v")[1][:2]) for r in rs}
    assert views(s.train) == {int(split[0]), int(split[1])}
    assert views(s.eval) == {int(split[3])}
    assert len(s.train) == 4 and len(s.eval) == 2
  with pytest.raises(ProtocolError, match="not valid"):
    protocols.load(_cfg(name="uwa3d_multiview", split="12-1", root=root))


def test_validate_names_the_field(tmp_path):
  root = str(tmp_path)
  _ucf(root)
  good = _full_config(name="ucf101", split="1", root=root, split_dir=f"{root}/splits")
  data_config.validate(good)
  cases = [
      (dict(name="kinetics"), "dataset.name"),
      (dict(split="xsub"), "dataset.split"),
      (dict(root=f"{root}/nope"), "dataset.root"),
      (dict(missing_files="ignore"), "dataset.missing_files"),
      (dict(source="packed", packed_dir=""), "dataset.packed_dir"),
  ]
  for change, field in cases:
    cfg = _full_config(name="ucf101", split="1", root=root, split_dir=f"{root}/splits")
    cfg.dataset.update(change)
    with pytest.raises(ValueError, match=f"config.{field}"):
      data_config.validate(cfg)
  for field, value in (("batch_size", 0), ("eval_crops", 2), ("crop_scale", (0.5, 0.2))):
    cfg = _full_config(name="ucf101", split="1", root=root, split_dir=f"{root}/splits")
    cfg.input[field] = value
    with pytest.raises(ValueError, match=f"config.input.{field}"):
      data_config.validate(cfg)
  cfg = _full_config(name="annotations", train_annotations=f"{root}/none.txt")
  with pytest.raises(ValueError, match="config.dataset.train_annotations"):
    data_config.validate(cfg)
