"""``python -m time_jax.diagnose <tool> ...``: one sub-command per diagnostic.

  similarity   cosine similarity of matching weights of two checkpoints
  attention    ViT / VideoMAE attention maps per layer, class map, overlays
  features     ResNet feature maps at named layers
  reconstruct  VideoMAE masked input and reconstruction at several mask ratios
  time_grid    the TIME frames of a video for several N, both arrangements, or as a
               run's model saw them (--checkpoint WORKDIR: its N, T*, arrangement, size)

Each writes PNG and CSV/JSON files into ``--out``; ``<tool> --help`` lists its options.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from time_jax.data.base import DecodeError
from time_jax.checkpoints import CheckpointError

TOOLS = ("similarity", "attention", "features", "reconstruct", "time_grid")


def main(argv=None) -> int:
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
  p = argparse.ArgumentParser(prog="python -m time_jax.diagnose", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = p.add_subparsers(dest="tool", required=True, metavar="TOOL")
  modules = {}
  for name in TOOLS:
    module = importlib.import_module(f"time_jax.diagnose.{name}")
    modules[name] = module
    doc = (module.__doc__ or "").strip()
    tp = sub.add_parser(name, description=doc, help=doc.splitlines()[0] if doc else None,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(tp)
  args = p.parse_args(argv)
  try:
    print(modules[args.tool].run(args))
  except (CheckpointError, DecodeError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
