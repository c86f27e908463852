"""Command line: convert a PyTorch / NumPy checkpoint into a time_jax Orbax checkpoint.

  python -m time_jax.port --from timm --checkpoint vit_b16.safetensors \\
      --model vit_b16 --num-classes 1000 --out ported/vit_b16 --verify

The port is written to a temporary folder beside --out (in the system's temporary
folder when that path has one of [ ] * ?, which orbax cannot write to), read back with
the reader
``checkpoint.init_from`` uses (`time_jax.checkpoints.read_variables`) and compared with
what was written, checked with --verify when asked, and only then renamed to --out
(replacing an earlier port there). When any step fails the temporary folder is deleted
and --out is left as it was (folders made for it are removed). ``metadata.json`` records the model's name, class count and
the constructor options it needs (``model_kwargs``: pooling, layer scale, sizes that
differ from the name's), so loading the port needs no flags.

--verify runs the original PyTorch model (timm or transformers) and ours on the same
random input, both in float64, and compares every block's output, the pooled features
and the final output element by element: |ours - ref| <= atol * rms(ref) + rtol * |ref|
(rms over the layer). It prints the first layer that differs.

Exit codes:
  0  written (and verified with --verify)
  1  --verify FAILED: nothing written to --out
  2  a usage or input error: missing, unreadable or truncated weight file, a file that
     does not fit --model, an unknown model, an unusable --out (one line on stderr)
  3  the written checkpoint did not read back identically: nothing written to --out

Each ``--from`` source is a module of this package with
``convert(state, model_name, num_classes) -> (variables, num_classes)``,
``build(...) -> (model, num_classes)`` (the model `convert` fills) and
``verify(state, variables, model_name, num_classes, atol=, rtol=) -> compare.Report``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shutil
import sys
import tempfile

from time_jax import console
from time_jax import models
from time_jax.port import common
from time_jax.port import compare

SOURCES = ("timm", "torchvision", "big_vision", "videomae", "hf")

EXIT_OK = 0
EXIT_VERIFY_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_WRITE_FAILED = 3

_TMP_PREFIX = ".port-tmp-"


class UserError(Exception):
  """A mistake in the command line or its files: reported as one line, exit 2."""


def parse_args(argv):
  p = argparse.ArgumentParser(prog="python -m time_jax.port", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--from", dest="source", required=True, choices=SOURCES,
                 help="the checkpoint's origin and key layout")
  p.add_argument("--checkpoint", required=True, help="weight file or Hugging Face folder")
  p.add_argument("--model", required=True, choices=sorted(models.MODELS),
                 metavar="MODEL", help=f"time_jax model name: {', '.join(sorted(models.MODELS))}")
  p.add_argument("--num-classes", type=int, default=None,
                 help="class count of the checkpoint's head (default: read from the file)")
  p.add_argument("--out", required=True, help="output folder (the config's init_from)")
  p.add_argument("--verify", action="store_true",
                 help="compare every layer with the original PyTorch model on random input")
  p.add_argument("--atol", type=float, default=compare.ATOL,
                 help="--verify's element-wise tolerance, relative to the layer's RMS")
  p.add_argument("--rtol", type=float, default=compare.RTOL,
                 help="--verify's element-wise tolerance, relative to the element")
  return p.parse_args(argv)


def _check_out(out: str) -> str:
  """The absolute --out; raises `UserError` when a port cannot be put there."""
  out = os.path.abspath(out)
  if os.path.lexists(out):
    if not os.path.isdir(out) or os.path.islink(out):
      raise UserError(f"--out {out} exists and is not a folder; choose another --out.")
    if os.listdir(out) and not os.path.isfile(os.path.join(out, "metadata.json")):
      raise UserError(f"--out {out} is a folder with other files (not an earlier port); "
                      "choose another --out or empty it.")
  parent = os.path.dirname(out)
  if os.path.exists(parent) and not os.path.isdir(parent):
    raise UserError(f"--out {out}: {parent} is not a folder.")
  return out


def _temporary_folder(out: str) -> str:
  """A new empty folder to write the port into before it is renamed to ``out``.

  Beside ``out`` (a rename then moves it), unless the path there has characters orbax
  cannot write to (`common.GLOB_CHARACTERS`): then in the system's temporary folder,
  and the port is moved (copied) at the end.
  """
  parent = os.path.dirname(out)
  os.makedirs(parent, exist_ok=True)
  where = parent if not common.has_glob_characters(parent) else tempfile.gettempdir()
  if common.has_glob_characters(os.path.abspath(where)):
    raise UserError(f"--out {out}: neither its folder nor the temporary folder {where} "
                    f"can hold an orbax checkpoint (their paths contain one of "
                    f"{common.GLOB_CHARACTERS!r}); choose another --out or set TMPDIR.")
  return tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=where)


def _first_missing(folder: str) -> str | None:
  """The outermost of ``folder`` and its parents that does not exist yet, or None."""
  top = None
  while folder and not os.path.exists(folder):
    top, folder = folder, os.path.dirname(folder)
    if folder == top:
      break
  return top


def _install(tmp: str, out: str) -> None:
  """Moves the finished port ``tmp`` to ``out``, replacing an earlier port there."""
  old = None
  if os.path.isdir(out):
    if os.listdir(out):
      old = tempfile.mkdtemp(prefix=_TMP_PREFIX + "old-", dir=os.path.dirname(out))
      os.rmdir(old)
      os.rename(out, old)
    else:
      os.rmdir(out)
  shutil.move(tmp, out)
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def _read_back(tmp: str, variables, metadata) -> str | None:
  """Reads ``tmp`` as ``checkpoint.init_from`` does; what differs, or None."""
  from time_jax import checkpoints  # pylint: disable=g-import-not-at-top
  try:
    got, got_meta = checkpoints.read_variables(tmp)
  except Exception as e:  # pylint: disable=broad-except
    return f"cannot be read back ({type(e).__name__}: {str(e).splitlines()[0]})"
  problems = common.same_variables(variables, got)
  if got_meta != metadata:
    problems.append(f"metadata.json reads back as {got_meta}, not {metadata}")
  if problems:
    return f"read back differently ({len(problems)}): " + "; ".join(problems[:5])
  return None


def run(args: argparse.Namespace, **overrides) -> int:
  """The port of ``args`` (from `parse_args`); returns the exit code.

  ``overrides`` are constructor kwargs for models of non-standard sizes (the tests' tiny
  models); they are recorded in the metadata like the options the weights decide.
  """
  source = importlib.import_module(f"time_jax.port.{args.source}")
  try:
    out = _check_out(args.out)
    state = common.load_weights(args.checkpoint)
    variables, num_classes = source.convert(state, args.model, args.num_classes,
                                            **overrides)
    model, _ = source.build(state, args.model, args.num_classes, **overrides)
  except (UserError, ValueError, FileNotFoundError) as e:
    # ValueError covers WeightFileError and WeightMismatchError.
    print(f"error: {e}", file=sys.stderr)
    return EXIT_USER_ERROR
  variables = {k: common._as_numpy_tree(v) for k, v in variables.items()}  # pylint: disable=protected-access
  metadata = dict(model=args.model, num_classes=num_classes, source=args.source,
                  checkpoint=os.path.abspath(args.checkpoint),
                  model_kwargs=common.model_options(model, args.model))
  if hasattr(model, "image_size"):
    metadata["image_size"] = int(model.image_size)
  made = _first_missing(os.path.dirname(out))
  try:
    tmp = _temporary_folder(out)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_USER_ERROR
  done = False
  try:
    common.save(variables, tmp, metadata)
    problem = _read_back(tmp, variables, metadata)
    if problem:
      print(f"error: the port written to {tmp} {problem}; nothing written to {out}.",
            file=sys.stderr)
      return EXIT_WRITE_FAILED
    if args.verify:
      try:
        report = source.verify(state, variables, args.model, num_classes,
                               atol=args.atol, rtol=args.rtol, **overrides)
      except ValueError as e:
        print(f"error: cannot verify: {e} Nothing written to {out}; port without --verify.",
              file=sys.stderr)
        return EXIT_USER_ERROR
      print(f"verify: {report.summary()}")
      if not report.ok:
        for layer in report.layers:
          if not layer.ok:
            print(f"  {layer.describe()}")
        print(f"verify FAILED: nothing written to {out}. (Rounding grows slowly from the "
              "first block and a port error jumps where it enters; for rounding, raise "
              "--atol/--rtol.)")
        return EXIT_VERIFY_FAILED
    _install(tmp, out)
    done = True
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
    if not done and made and not any(files for _, _, files in os.walk(made)):
      shutil.rmtree(made, ignore_errors=True)  # only the empty folders made for --out
  print(f"wrote {out} ({args.model}, {num_classes} classes; read back identical)")
  return EXIT_OK


def main(argv=None) -> int:
  console.cli_logging()
  return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
  sys.exit(main())
