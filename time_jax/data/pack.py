"""Packs a config's train and eval videos into the ArrayRecord cache; reads it back.

Decoding compressed video is the host's bottleneck; the packed cache stores decoded
(optionally downscaled) frames so training reads them with no decoder. Usage::

    python -m time_jax.data.pack --config configs/ucf101_videomae.py:finetune,2 \
        --out /data/ucf101_packed [--short-side 128] [--config.dataset.root=/data/UCF101]

resolves the config's protocol (`time_jax.data.protocols.load`) and source reader
(`pipeline.make_reader`) and calls `time_jax.data.packed.write_packed` once per split.
The output folder holds::

    DIR/train/ ...      what write_packed writes for the train records
    DIR/eval/  ...      ... and for the eval records
    DIR/splits.json     {"class_names": [...], "train": N, "eval": M, "dataset": ..., "split": ...}

Then train from it with ``dataset.source='packed'`` and ``dataset.packed_dir=DIR``
(the protocol fields are then unused: the cache already holds the split).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from absl import flags
import ml_collections
from ml_collections import config_flags

from time_jax.data import protocols

SPLITS_FILE = "splits.json"


def load_config(spec: str, overrides=()) -> ml_collections.ConfigDict:
  """The config of ``spec`` (``FILE`` or ``FILE:ARG``) with ``--config.x=v`` overrides.

  Uses ml_collections' ``config_flags`` on a private flag set, so the config argument
  and overrides mean exactly what they mean to ``python -m time_jax.main``.
  """
  path = spec.split(":", 1)[0]
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--config {path!r} does not exist.")
  argv = ["pack", f"--config={spec}", *overrides]
  flag_values = flags.FlagValues()
  # sys_argv: the flag finds its overrides in this list rather than in sys.argv.
  config_flags.DEFINE_config_file("config", None, "config file", flag_values=flag_values,
                                  lock_config=False, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def load_packed_splits(packed_dir: str) -> protocols.Splits:
  """The train / eval records and class names of a folder `pack` wrote."""
  meta_path = os.path.join(packed_dir, SPLITS_FILE)
  if not os.path.isfile(meta_path):
    raise protocols.ProtocolError(
        f"dataset.packed_dir {packed_dir!r} has no {SPLITS_FILE}; write it with "
        "`python -m time_jax.data.pack --config CONFIG --out DIR`.")
  with open(meta_path, encoding="utf-8") as f:
    meta = json.load(f)
  from time_jax.data import packed  # pylint: disable=g-import-not-at-top
  train = list(packed.packed_records(os.path.join(packed_dir, "train")))
  evl = list(packed.packed_records(os.path.join(packed_dir, "eval")))
  for name, recs in (("train", train), ("eval", evl)):
    if len(recs) != meta[name]:
      raise protocols.ProtocolError(
          f"{packed_dir}/{name}: {len(recs)} records but {SPLITS_FILE} says "
          f"{meta[name]}; the cache is incomplete, pack it again.")
  return protocols.Splits(train, evl, list(meta["class_names"]))


def pack(config: ml_collections.ConfigDict, out: str, *,
         short_side: int | None = None) -> dict:
  """Writes the packed cache of both splits of ``config`` to ``out``.

  Args:
    config: a full config whose ``dataset`` names a protocol and a non-packed source.
    out: the output folder (created).
    short_side: frames are stored with this short side (pixels); None keeps them.

  Returns:
    The ``splits.json`` contents.
  """
  # pylint: disable=g-import-not-at-top
  from time_jax.data import config as data_config
  from time_jax.data import packed
  from time_jax.data import pipeline
  # pylint: enable=g-import-not-at-top
  if config.dataset.source == "packed":
    raise ValueError("config.dataset.source is already 'packed'; give the config of "
                     "the original videos.")
  data_config.validate(config)
  splits = protocols.load(config.dataset)
  reader = pipeline.make_reader(config)
  os.makedirs(out, exist_ok=True)
  for name, records in (("train", splits.train), ("eval", splits.eval)):
    logging.info("Packing %d %s videos into %s.", len(records), name, out)
    packed.write_packed(records, reader, os.path.join(out, name), short_side=short_side)
  meta = {"class_names": list(splits.class_names), "train": len(splits.train),
          "eval": len(splits.eval), "dataset": config.dataset.name,
          "split": str(config.dataset.split), "short_side": short_side}
  # Written last: its presence marks a complete cache.
  with open(os.path.join(out, SPLITS_FILE), "w", encoding="utf-8") as f:
    json.dump(meta, f, indent=1)
  return meta


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True,
                      help="a Python config file, optionally FILE:ARG; --config.x.y=v "
                      "overrides a field as for time_jax.main")
  parser.add_argument("--out", required=True, help="the output folder")
  parser.add_argument("--short-side", type=int, default=None,
                      help="store frames with this short side (pixels)")
  args, rest = parser.parse_known_args(argv)
  overrides = [a for a in rest if a.startswith("--config.")]
  if len(overrides) != len(rest):
    parser.error(f"unrecognized arguments: {' '.join(a for a in rest if a not in overrides)}")
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
  meta = pack(load_config(args.config, overrides), args.out, short_side=args.short_side)
  logging.info("Packed %d train and %d eval videos into %s. Train from it with "
               "dataset.source='packed', dataset.packed_dir=%r.", meta["train"],
               meta["eval"], args.out, args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
