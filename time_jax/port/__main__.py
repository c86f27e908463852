"""Command line: convert a PyTorch / NumPy checkpoint into a time_jax Orbax checkpoint.

  python -m time_jax.port --from timm --checkpoint vit_b16.safetensors \
      --model vit_b16 --num-classes 1000 --out ported/vit_b16 --verify

Each ``--from`` source is a module of this package with
``convert(state, model_name, num_classes) -> variables`` and
``verify(state, variables, model_name, num_classes) -> float`` (the largest relative
difference between the original PyTorch model and ours on the same random input).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from time_jax.port import common

SOURCES = ("timm", "torchvision", "big_vision", "videomae", "hf")


def parse_args(argv):
  p = argparse.ArgumentParser(prog="python -m time_jax.port", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--from", dest="source", required=True, choices=SOURCES,
                 help="the checkpoint's origin and key layout")
  p.add_argument("--checkpoint", required=True, help="weight file or Hugging Face folder")
  p.add_argument("--model", required=True, help="time_jax model name (time_jax.models.MODELS)")
  p.add_argument("--num-classes", type=int, default=None,
                 help="class count of the checkpoint's head (default: read from the file)")
  p.add_argument("--out", required=True, help="output folder (the config's init_from)")
  p.add_argument("--verify", action="store_true",
                 help="compare outputs with the original PyTorch model on random input")
  p.add_argument("--tolerance", type=float, default=1e-4,
                 help="largest relative difference --verify accepts (float32)")
  return p.parse_args(argv)


def main(argv=None) -> int:
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
  args = parse_args(sys.argv[1:] if argv is None else argv)
  source = importlib.import_module(f"time_jax.port.{args.source}")
  try:
    state = common.load_weights(args.checkpoint)
    variables, num_classes = source.convert(state, args.model, args.num_classes)
  except (common.WeightMismatchError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  common.save(variables, args.out, dict(
      model=args.model, num_classes=num_classes, source=args.source,
      checkpoint=args.checkpoint))
  print(f"wrote {args.out} ({args.model}, {num_classes} classes)")
  if args.verify:
    err = source.verify(state, variables, args.model, num_classes)
    ok = err <= args.tolerance
    print(f"verify: largest relative difference {err:.3e} "
          f"({'ok' if ok else 'FAILED'}, tolerance {args.tolerance:.0e})")
    return 0 if ok else 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
