"""Packs a config's train and eval videos into the packed frame cache.

Decoding compressed video is the host's bottleneck; the packed cache stores decoded
(optionally downscaled) frames so training reads them with no decoder. Usage::

    python -m time_jax.data.pack --config configs/ucf101_videomae.py:finetune,2 \
        --out /data/ucf101_packed [--short-side 128] [--config.dataset.root=/data/UCF101]

Frames are stored with the short side the config's views need
(`frame_cache.short_side_for`: the cell size ``image_size / N`` over the smallest
crop's share of the short side, and the evaluation resize), never upscaled, unless
``--short-side`` says otherwise (0 keeps the original size); ``splits.json`` records
it, and a config that needs more than a cache stores is warned once when it reads it.

resolves the config's records and source reader (`time_jax.data.sources`) and writes
them with `time_jax.data.frame_cache.write_cache` (whose module docstring describes the
output folder). Then train from it with ``dataset.source='packed'`` and
``dataset.packed_dir=DIR`` (the protocol fields are then unused: the cache already
holds the split).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import ml_collections

from time_jax import console
from time_jax.data import config as data_config
from time_jax.data import frame_cache
from time_jax.data import pipeline
from time_jax.data import sources


def pack(config: ml_collections.ConfigDict, out: str, *,
         short_side: int | None = None) -> dict:
  """Writes the packed cache of both splits of ``config`` to ``out``.

  Args:
    config: a full config whose ``dataset`` names a protocol and a non-packed source.
    out: the output folder (created).
    short_side: frames longer than this on their short side are downscaled to it
      (pixels); None: what the config needs (`frame_cache.short_side_for`); 0: keep.

  Returns:
    The ``splits.json`` contents (`frame_cache.write_cache`).
  """
  if config.dataset.source == "packed":
    raise ValueError("config.dataset.source is already 'packed'; give the config of "
                     "the original videos.")
  data_config.validate(config)
  if short_side is None:
    short_side = frame_cache.short_side_for(config)
    logging.info("pack: storing frames with short side %d, what this config's views "
                 "need (--short-side sets another; 0 keeps the original size).",
                 short_side)
  return frame_cache.write_cache(
      sources.load_splits(config), sources.make_reader(config), out,
      short_side=short_side or None, dataset=config.dataset.name,
      split=str(config.dataset.split))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m time_jax.data.pack",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True,
                      help="a Python config file, optionally FILE:ARG; --config.x.y=v "
                      "overrides a field as for time_jax.main")
  parser.add_argument("--out", required=True, help="the output folder")
  parser.add_argument("--short-side", type=int, default=None,
                      help="store frames with this short side (pixels); default: what "
                      "the config's views need; 0: the original size")
  args, rest = parser.parse_known_args(argv)
  overrides = [a for a in rest if a.startswith("--config.")]
  if len(overrides) != len(rest):
    parser.error(f"unrecognized arguments: {' '.join(a for a in rest if a not in overrides)}")
  console.cli_logging()
  with console.config_errors(["pack", f"--config={args.config}", *overrides]):
    config = console.load_config(args.config, overrides)
  try:
    meta = pack(config, args.out, short_side=args.short_side)
  except (ValueError, OSError) as e:  # bad config, protocol files, unwritable --out
    console.usage_error(str(e))
  text, stops = summary(meta, args.out, config.dataset.max_bad_fraction)
  logging.log(logging.WARNING if stops else logging.INFO, "%s", text)
  return 0


def summary(meta: dict, out: str, max_bad_fraction: float) -> tuple[str, bool]:
  """What `pack` wrote (``meta``: `frame_cache.write_cache`'s), in a few sentences:
  the videos written of each split, those that failed and whether a run on the cache
  with ``dataset.max_bad_fraction`` would stop at start because of them (the bool)."""
  counts, notes, stops = [], [], False
  for name in ("train", "eval"):
    failed = meta["failed"][name]
    counts.append(f"{meta[name] - len(failed)} of {meta[name]} {name}" if failed
                  else f"{meta[name]} {name}")
    if failed:
      shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5
                                       else "")
      allowed = pipeline.allowed_bad_files(max_bad_fraction, meta[name])
      stops = stops or len(failed) > allowed
      fate = (f"a run on it stops at start: more than dataset.max_bad_fraction="
              f"{max_bad_fraction:g} allows ({allowed}); fix or remove them, or raise it"
              if len(failed) > allowed else
              "a run on it reports them as bad files" + (
                  " and replaces them" if name == "train" else " and leaves them out"))
      notes.append(f"{len(failed)} {name} video{'s' if len(failed) > 1 else ''} did not "
                   f"decode ({shown}): {fate}.")
  return (f"Packed {counts[0]} and {counts[1]} videos into {out}. " + " ".join(notes) +
          f"{' ' if notes else ''}Train from it with dataset.source='packed', "
          f"dataset.packed_dir={out!r}."), stops


if __name__ == "__main__":
  sys.exit(main())
