"""The pack CLI: resolves a config's records and reader, writes both splits, reads back.

`test_cli_plumbing` replaces `frame_cache`'s split writer and reader with recording
stand-ins, so it checks exactly what the CLI hands the writer;
`test_real_packed_roundtrip` runs the project's packed writer and video reader.
"""

import json
import logging
import os

import numpy as np
import pytest

from time_jax import console
from time_jax.data import frame_cache
from time_jax.data import pack
from time_jax.data import pipeline
from time_jax.data import sources
from time_jax.data.base import Record

_CONFIG = """
import ml_collections
from time_jax.data import config as dc

def get_config():
  c = ml_collections.ConfigDict(dict(
      dataset=dc.dataset_defaults(), input=dc.input_defaults(),
      time=dict(n=2, t_out=2, arrangement="spatial"), image_size=16))
  c.dataset.update(root=ROOT, train_annotations=ROOT + "/train.txt",
                   eval_annotations=ROOT + "/eval.txt")
  return c
"""


def _dataset(tmp_path, videos):
  root = tmp_path / "data"
  root.mkdir()
  for name in videos:
    (root / name).write_bytes(b"")
  (root / "train.txt").write_text(f"{videos[0]} 0\n{videos[1]} 1\n")
  (root / "eval.txt").write_text(f"{videos[2]} 1\n")
  cfg_file = tmp_path / "cfg.py"
  cfg_file.write_text(f"ROOT = {str(root)!r}\n" + _CONFIG)
  return root, cfg_file


class _Reader:
  def read(self, record, choose):
    idx = choose(10)
    return np.zeros((len(idx), 8, 8, 3), np.uint8) + np.uint8(record.label)


def test_cli_plumbing(tmp_path, monkeypatch):
  root, cfg_file = _dataset(tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
  calls = []

  def write_packed(records, reader, path, *, short_side=None):
    calls.append((os.path.basename(path), [r.video_id for r in records], short_side,
                  type(reader)))
    os.makedirs(path)
    with open(os.path.join(path, "records.json"), "w") as f:
      json.dump([[r.path, r.label] for r in records], f)
    return {"failed": []}

  def packed_records(path):
    with open(os.path.join(path, "records.json")) as f:
      return [Record(p, l) for p, l in json.load(f)]

  monkeypatch.setattr(frame_cache, "write_packed", write_packed)
  monkeypatch.setattr(frame_cache, "packed_records", packed_records)
  monkeypatch.setattr(sources, "make_reader", lambda config: _Reader())
  out = tmp_path / "packed"
  assert pack.main(["--config", str(cfg_file), "--out", str(out),
                    "--short-side", "64"]) == 0
  assert calls == [("train", ["a.mp4", "b.mp4"], 64, _Reader),
                   ("eval", ["c.mp4"], 64, _Reader)]
  meta = json.loads((out / "splits.json").read_text())
  assert meta["train"] == 2 and meta["eval"] == 1
  assert meta["class_names"] == ["class_000", "class_001"]

  cfg = console.load_config(str(cfg_file))
  cfg.dataset.update(source="packed", packed_dir=str(out))
  ds, info = pipeline.build(cfg, "eval", reader=_Reader())
  (batch,) = list(ds)
  assert info.num_examples == 1 and info.class_names == ["class_000", "class_001"]
  assert batch["label"][0] == 1 and batch["valid"].tolist()[:1] == [True]

  # An incomplete cache (count mismatch) is refused with the fix in the message.
  meta["eval"] = 5
  (out / "splits.json").write_text(json.dumps(meta))
  with pytest.raises(ValueError, match="pack it again"):
    frame_cache.load_splits(str(out))


def test_cli_errors_name_the_problem(tmp_path, capsys):
  missing = str(tmp_path / "none.py")
  with pytest.raises(SystemExit) as exit_info:
    pack.main(["--config", missing, "--out", str(tmp_path / "o")])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == f"error: --config: {missing!r} is not a file.\n"
  with pytest.raises(SystemExit):
    demo = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo.py")
    pack.main(["--config", demo, "--out", str(tmp_path / "o"),
               "--config.dataset.rooot=x"])
  assert capsys.readouterr().err.startswith(
      "error: --config.dataset.rooot: config.dataset has no field 'rooot'; did you mean "
      "'root'?")
  with pytest.raises(ValueError, match="no splits.json"):
    frame_cache.load_splits(str(tmp_path))
  with pytest.raises(SystemExit):  # the command as it is typed, not 'pack.py'
    pack.main(["--help"])
  assert capsys.readouterr().out.startswith("usage: python -m time_jax.data.pack ")


def test_real_packed_roundtrip(tmp_path):
  import av  # pylint: disable=g-import-not-at-top
  root, cfg_file = _dataset(tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
  for name in ("a.mp4", "b.mp4", "c.mp4"):
    with av.open(str(root / name), "w") as out:
      s = out.add_stream("libx264", rate=25)
      s.width, s.height, s.pix_fmt, s.options = 64, 48, "yuv420p", {"qp": "0"}
      for k in range(12):
        img = np.full((48, 64, 3), 10 * k, np.uint8)
        for p in s.encode(__import__("av").VideoFrame.from_ndarray(img, format="rgb24")):
          out.mux(p)
      for p in s.encode():
        out.mux(p)
  out = tmp_path / "packed"
  assert pack.main(["--config", str(cfg_file), "--out", str(out)]) == 0
  cfg = console.load_config(str(cfg_file))
  direct, _ = pipeline.build(cfg, "eval")
  cfg.dataset.update(source="packed", packed_dir=str(out))
  packed_ds, info = pipeline.build(cfg, "eval")
  (a,), (b,) = list(direct), list(packed_ds)
  assert info.num_examples == 1
  np.testing.assert_array_equal(a["label"], b["label"])
  assert np.abs(a["frames"].astype(int) - b["frames"].astype(int)).max() <= 2


def test_config_argument_and_overrides_as_for_main(tmp_path):
  cfg_file = tmp_path / "cfg.py"
  cfg_file.write_text(_CONFIG.replace("def get_config():", "def get_config(arg=None):")
                      .replace("return c", "c.time.n = int(arg or 2)\n  return c")
                      .replace("ROOT", repr(str(tmp_path))))
  c = console.load_config(f"{cfg_file}:3", ["--config.image_size=48",
                                         "--config.dataset.split=xsub"])
  assert (c.time.n, c.image_size, c.dataset.split) == (3, 48, "xsub")
  with pytest.raises(SystemExit):
    pack.main(["--config", str(cfg_file), "--out", str(tmp_path / "o"), "--bogus"])


def test_pack_stores_the_size_the_config_needs_and_warns_when_too_small(tmp_path, caplog):
  root, cfg_file = _dataset(tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
  sizes = []

  def write_packed(records, reader, path, *, short_side=None):
    sizes.append(short_side)
    os.makedirs(path)
    return {"failed": []}

  monkeypatch = pytest.MonkeyPatch()
  monkeypatch.setattr(frame_cache, "write_packed", write_packed)
  monkeypatch.setattr(frame_cache, "packed_records", lambda path: [])
  monkeypatch.setattr(sources, "make_reader", lambda config: _Reader())
  try:
    cfg = console.load_config(str(cfg_file))  # cell 8, crop_scale from 0.25, eval 0.875
    meta = pack.pack(cfg, str(tmp_path / "auto"))
    assert sizes == [16, 16] and meta["short_side"] == 16  # 8 / sqrt(0.25)
    cfg.input.crop_scale = (0.0625, 1.0)
    pack.pack(cfg, str(tmp_path / "wide"))
    assert sizes[2:] == [32, 32]  # 8 / sqrt(1/16)
    meta = pack.pack(cfg, str(tmp_path / "keep"), short_side=0)
    assert sizes[4:] == [None, None] and meta["short_side"] is None
  finally:
    monkeypatch.undo()
  # A config needing 32 reads the cache of 16: one warning, naming both sizes.
  caplog.set_level("WARNING")
  cfg.dataset.update(source="packed", packed_dir=str(tmp_path / "auto"))
  for _ in range(2):
    sources.make_reader(cfg)
  warnings = [r for r in caplog.records
              if r.levelno >= logging.WARNING and "short side 16" in r.getMessage()]
  assert len(warnings) == 1 and "need 32" in warnings[0].getMessage()
