"""Your own clips, as docs/custom_data.md tells a new user: `path label` annotation files
next to the videos, configs/custom.py with root and annotation overrides, through
``python -m time_jax.main``; and the demo config pointed at such a set."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from time_jax.data import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASSES = ("wave", "clap")


def _write_clip(path, label, seed, frames=12, size=32):
  """An mp4 of a shape moving right (label 0) or left (label 1)."""
  clip = synthetic.clip("right", np.random.default_rng(seed), num_frames=frames,
                        size=size)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  synthetic.write_mp4(path, clip if label == 0 else clip[::-1])


@pytest.fixture(scope="module")
def two_class_set(tmp_path_factory):
  """``root/clips/<class>_<i>.mp4``, ``root/train.txt`` (4 clips a class) and
  ``root/val.txt`` (2 a class), ``path label`` lines as the docs show."""
  root = tmp_path_factory.mktemp("my_clips")
  lines = {"train.txt": [], "val.txt": []}
  for label, name in enumerate(CLASSES):
    for i in range(6):
      rel = f"clips/{name}_{i}.mp4"
      _write_clip(str(root / rel), label, seed=10 * label + i)
      lines["train.txt" if i < 4 else "val.txt"].append(f"{rel} {label}\n")
  for name, text in lines.items():
    (root / name).write_text("".join(text))
  return root


def _main(workdir, *args):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # one CPU device, as a user's laptop
  return subprocess.run(
      [sys.executable, "-m", "time_jax.main", "--workdir", str(workdir), *args],
      cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_custom_template_trains_a_two_way_head_on_path_label_files(two_class_set,
                                                                   tmp_path):
  workdir = tmp_path / "run"
  r = _main(workdir, "--config", "configs/custom.py",
            f"--config.dataset.root={two_class_set}",
            "--config.dataset.train_annotations=train.txt",  # relative to the root
            "--config.dataset.eval_annotations=val.txt",
            "--config.train.num_steps=2", "--config.input.batch_size=4",
            "--config.input.eval_batch_size=4", "--config.checkpoint.async_save=False")
  assert r.returncode == 0, r.stderr[-3000:]
  with open(workdir / "class_names.json") as f:
    assert json.load(f) == ["class_000", "class_001"]
  with open(workdir / "eval_results.json") as f:
    results = json.load(f)
  assert results["num_videos"] == 4


def test_demo_config_on_a_two_class_set_stops_in_one_line(two_class_set, tmp_path):
  """The demo's synthetic protocol would ignore one's annotation files; with
  dataset.name='annotations' a classes file of 8 names (the demo's) disagrees with 2
  trained classes. Either way the run stops before any work, with one line naming the
  fields."""
  demo = ["--config", "configs/demo.py", f"--config.dataset.root={two_class_set}",
          "--config.dataset.train_annotations=train.txt",
          "--config.dataset.eval_annotations=val.txt"]
  (two_class_set / "demo_classes.txt").write_text(
      "right\nleft\ndown\nup\ngrow\nshrink\nappear\nvanish\n")
  cases = [
      ([], ["config.dataset.train_annotations", "would be ignored",
            "dataset.name='annotations'"]),
      (["--config.dataset.name=annotations",
        "--config.dataset.classes_file=demo_classes.txt"],
       ["dataset.classes_file", "names 8 classes but 6 of them have no training example",
        "the class names, the head size and the labels must agree"]),
  ]
  for extra, parts in cases:
    workdir = tmp_path / f"w{len(extra)}"
    r = _main(workdir, *demo, *extra)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    for part in parts:
      assert part in last, (part, r.stderr[-3000:])
    assert not os.path.exists(workdir / "checkpoints")


def test_docs_name_fields_that_exist():
  """Every config field docs/custom_data.md and the README's data section name (in
  backticks or as --config.FIELD) is a field of the config the template builds."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      "custom_cfg", os.path.join(REPO, "configs", "custom.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  with open(os.path.join(REPO, "docs", "custom_data.md"), encoding="utf-8") as f:
    text = f.read()
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    text += f.read().split("## Your data", 1)[1].split("\n## ", 1)[0]
  sections = "|".join(config.keys())
  fields = set(re.findall(rf"(?:`|--config\.)((?:{sections})\.\w+(?:\.\w+)*)", text))
  fields = {f for f in fields if f.rsplit(".", 1)[1] not in ("txt", "json", "py")}  # files
  fields |= set(re.findall(r"`(image_size)`", text))
  assert len(fields) > 15, fields
  for field in sorted(fields):
    node = config
    for part in field.split("."):
      assert part in node, f"{field} is not a config field"
      node = node[part]
