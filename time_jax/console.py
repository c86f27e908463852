"""What a run shows on the console: one-line usage errors, our own log lines, progress.

* `parse_flags` parses absl flags, ml_collections' ``--config`` file and its
  ``--config.*`` overrides; a mistake there (an unknown field, keeping the "did you
  mean", a missing or failing config file, a value of the wrong type, a missing flag)
  ends the program with one line, ``error: ...``, on stderr and exit status
  `USAGE_ERROR`: no traceback and no ``--help`` text. `usage_error` does the same for
  the mistakes found later (`time_jax.config.validate`, an unwritable workdir).
  `load_config` builds a config from its file and overrides exactly as the command line
  does, for the tools that build a run's config without running it (pack, sweep).
* `quiet_libraries` keeps the console to time_jax's own INFO lines plus every warning
  and error: the INFO chatter of Orbax, JAX, Grain and the rest is dropped unless
  absl's ``--verbosity`` is given on the command line (``--verbosity=0`` shows it all).
  On a terminal the lines read ``12:04:31 message`` (``12:04:31 warning: ...``);
  written to a file or a pipe (a log, a launcher, a scheduler) and under
  ``--verbosity`` they keep absl's full prefix (level, date, time, thread, file:line).
  `cli_logging` sets up the same console for the commands that are not absl apps
  (pack, port, sweep), in the short form everywhere (they log no prefix of absl's).
* `Progress` shows training as step / total, epoch, loss, clips/s and the ETA: a live
  tqdm bar when the stream is a terminal, one log line per log window otherwise.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import logging
import os
import re
import sys
import tempfile
import time
from typing import Any, NoReturn, Sequence

from absl import flags
import ml_collections
from ml_collections import config_flags
import tqdm

USAGE_ERROR = 2  # the exit status of a command-line mistake (as argparse's)
_GLOB_CHARACTERS = ("[", "]", "*", "?")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def usage_error(message: str) -> NoReturn:
  """Ends the program with ``error: message`` (one line) on stderr, status `USAGE_ERROR`."""
  sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
  sys.stderr.flush()
  raise SystemExit(USAGE_ERROR)


def _innermost_text(error: BaseException) -> str:
  """The message of ``error``, unwrapping ``AttributeError(KeyError('...'))``."""
  msg: Any = error
  while isinstance(msg, BaseException) and msg.args:
    msg = msg.args[0]
  return str(msg)


def _config_overrides(argv: Sequence[str], name: str) -> list[str]:
  """The ``--name.path`` override paths on the command line, e.g. ``optimizer.base_lr``."""
  pattern = re.compile(rf"^--?(?:no)?{re.escape(name)}\.([^=]+)")
  return [m.group(1) for m in map(pattern.match, argv) if m]


def _config_spec(argv: Sequence[str], name: str) -> str:
  """The ``--name`` argument (``path[:arg]``) on the command line, or ''."""
  for i, arg in enumerate(argv):
    if arg in (f"--{name}", f"-{name}") and i + 1 < len(argv):
      return argv[i + 1]
    for prefix in (f"--{name}=", f"-{name}="):
      if arg.startswith(prefix):
        return arg[len(prefix):]
  return ""


def _fields_like(key: str, spec: str, parents: Sequence[str]) -> list[str]:
  """Fields of the config's section ``parents`` a mistyped ``key`` may mean: those it
  begins (``ema`` -> ``ema_decay``) or nearly spells, at most three; [] when the config
  does not load."""
  try:
    node = load_config(spec)
    for part in parents:
      node = node[part]
    fields = [str(k) for k in node.keys()]
  except Exception:  # pylint: disable=broad-except  # only a hint: the error is raised anyway
    return []
  starts = [f for f in fields if f.startswith(key)]
  return (starts or difflib.get_close_matches(key, fields, n=3, cutoff=0.6))[:3]


def _unknown_field(error: LookupError | AttributeError, argv: Sequence[str],
                   name: str) -> str | None:
  """One line for an override naming a field the config lacks; None if none does."""
  text = _innermost_text(error)
  key = text.splitlines()[0].strip("'\"")
  for path in _config_overrides(argv, name):
    parts = path.split(".")
    if key in parts:
      parent = ".".join([name] + parts[:parts.index(key)])
      suggestion = re.search(r'Did you mean "([^"]+)"', text)
      near = [suggestion.group(1)] if suggestion else _fields_like(
          key, _config_spec(argv, name), parts[:parts.index(key)])
      hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else "."
      return f"--{name}.{path}: {parent} has no field {key!r}{hint}"
  return None


def _flag_error(error: flags.Error) -> str:
  """absl's message on one line; a config file's traceback shrinks to its last line."""
  lines = [l for l in str(error).splitlines() if l.strip()]
  if any(l.startswith("Traceback") for l in lines):  # get_config raised
    return f"{lines[0].split(': Error whilst parsing')[0]}: {lines[-1].strip()}"
  return " ".join(l.strip() for l in lines)


@contextlib.contextmanager
def config_errors(argv: Sequence[str], config_flag: str = "config"):
  """Turns a mistake in ``argv``'s config flags, raised inside, into `usage_error`.

  Covers absl flag errors, an override of a field the config lacks (keeping
  ml_collections' "did you mean") and a missing or failing config file. An error raised
  by a config file's own code that is not one of these propagates in full.

  Args:
    argv: the command line the flags are parsed from, program name first.
    config_flag: the name of the ``config_flags.DEFINE_config_file`` flag.
  """
  try:
    yield
  except flags.Error as e:
    usage_error(_flag_error(e))
  except (KeyError, AttributeError) as e:  # an override of a field the config lacks
    message = _unknown_field(e, argv, config_flag)
    if message is None:  # raised by the config file's own code: a bug to show in full
      raise
    usage_error(message)
  except OSError as e:  # ml_collections defers a config file's loading error to here
    spec = _config_spec(argv, config_flag)
    path = spec.split(":", 1)[0]
    if not os.path.isfile(path):
      usage_error(f"--{config_flag}: {path!r} is not a file.")
    cause = _innermost_text(e.__cause__ or e).strip().splitlines()
    usage_error(f"--{config_flag}={spec}: {cause[-1].strip() if cause else e}")


def load_config(spec: str | None, overrides=(),
                default: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """The config of ``spec`` (``FILE`` or ``FILE:ARG``; None: a copy of ``default``) with
  ``--config.x=v`` overrides.

  Uses ml_collections' ``config_flags`` on a private flag set, so the config argument
  and overrides mean exactly what they mean to ``python -m time_jax.main`` (the tools
  that build a run's config without running it: pack, sweep, extract). Wrap it in
  `config_errors` for one-line mistakes.
  """
  argv = ["load_config"] + ([f"--config={spec}"] if spec else []) + list(overrides)
  flag_values = flags.FlagValues()
  # sys_argv: the flag finds its overrides in this list rather than in sys.argv.
  if spec:
    path = spec.split(":", 1)[0]
    if not os.path.isfile(path):
      raise FileNotFoundError(f"--config {path!r} does not exist.")
    config_flags.DEFINE_config_file("config", None, "config file",
                                    flag_values=flag_values, lock_config=False,
                                    sys_argv=argv)
  else:
    config_flags.DEFINE_config_dict("config", default.copy_and_resolve_references(),
                                    "config", flag_values=flag_values,
                                    lock_config=False, sys_argv=argv)
  flag_values(argv)
  config = flag_values.config
  config.get("mode")  # a config file that failed raises here
  return config


def parse_flags(argv: list[str], config_flag: str = "config") -> list[str]:
  """Parses the command line like absl's default; any mistake is `usage_error`.

  Use as ``app.run(main, flags_parser=console.parse_flags)``.

  Args:
    argv: the command line, program name first.
    config_flag: the name of the ``config_flags.DEFINE_config_file`` flag.

  Returns:
    The arguments left after the flags (program name first).
  """
  with config_errors(argv, config_flag):
    rest = flags.FLAGS(argv)
    flags.FLAGS[config_flag].value.get("mode")  # a config file that failed raises here
    return rest


def check_workdir(workdir: str) -> str:
  """Creates ``workdir`` and checks it is writable; `usage_error` naming it if not.

  Returns:
    The absolute path.
  """
  path = os.path.abspath(workdir)
  if any(c in path for c in _GLOB_CHARACTERS):
    # Orbax finds a checkpoint's per-process files with glob(<folder>/...): a folder
    # name with these characters writes checkpoints that cannot be read back.
    usage_error(f"--workdir: {path} contains one of {' '.join(_GLOB_CHARACTERS)}, which "
                "Orbax's checkpoint writer reads as a pattern; choose a name without them.")
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path, prefix=".write_test_") as f:
      f.write(b"ok")  # a unique name: every process of a job checks the shared folder
  except OSError as e:
    usage_error(f"--workdir: cannot create or write {path} ({e.strerror or e}); choose "
                "a folder you can write.")
  return path


class _OursOrWarnings(logging.Filter):
  """Passes warnings and errors, and INFO / DEBUG records of time_jax's own modules."""

  def filter(self, record: logging.LogRecord) -> bool:
    return (record.levelno >= logging.WARNING or
            os.path.abspath(record.pathname).startswith(_PACKAGE_DIR + os.sep))


class ShortFormatter(logging.Formatter):
  """``HH:MM:SS message``; warnings and errors name their level after the time."""

  def format(self, record: logging.LogRecord) -> str:
    text = super().format(record)  # the message, and a traceback when there is one
    when = time.strftime("%H:%M:%S", time.localtime(record.created))
    level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
    return f"{when} {level}{text}"


def _on_a_terminal(handler: logging.Handler) -> bool:
  stream = getattr(getattr(handler, "python_handler", handler), "stream", None)
  isatty = getattr(stream, "isatty", None)
  try:
    return bool(isatty and isatty())
  except ValueError:  # a closed stream
    return False


def quiet_libraries(handlers: Sequence[logging.Handler] | None = None) -> None:
  """Drops the libraries' INFO lines from the console and, on a terminal, shows the
  lines as `ShortFormatter`'s (see the module docstring).

  Call after absl has parsed the flags (in ``main``); an explicit ``--verbosity`` on the
  command line leaves every record to absl's verbosity, in absl's format.

  Args:
    handlers: the handlers to filter (default: the root logger's, absl's among them).
  """
  if "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present:
    return
  for handler in logging.getLogger().handlers if handlers is None else handlers:
    if not any(isinstance(f, _OursOrWarnings) for f in handler.filters):
      handler.addFilter(_OursOrWarnings())
    if _on_a_terminal(handler):
      handler.setFormatter(ShortFormatter())


class _Stderr(logging.StreamHandler):
  """A handler that writes to ``sys.stderr`` as it is when a record comes (tests and
  tools swap it)."""

  def __init__(self):
    super().__init__(sys.stderr)

  @property
  def stream(self):
    return sys.stderr

  @stream.setter
  def stream(self, value):
    del value


def cli_logging() -> None:
  """The console of a command that is not an absl app (pack, port, sweep): INFO lines
  of time_jax and every warning (`quiet_libraries`), as `ShortFormatter` writes them.

  Replaces the plain stderr handler that absl's first log call before flag parsing
  installs (it shows warnings only); other handlers are left alone.
  """
  root = logging.getLogger()
  for handler in list(root.handlers):
    if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr,  # pylint: disable=unidiomatic-typecheck
                                                                     sys.__stderr__):
      root.removeHandler(handler)
  handler = next((h for h in root.handlers if isinstance(h, _Stderr)), None)
  if handler is None:
    handler = _Stderr()
    root.addHandler(handler)
  handler.setFormatter(ShortFormatter())
  root.setLevel(logging.INFO)
  quiet_libraries([handler])


class _AboveTheBar(logging.Handler):
  """Emits through ``inner`` with the progress bar cleared, then redraws the bar."""

  def __init__(self, inner: logging.Handler, stream):
    super().__init__(inner.level)
    self.inner, self.stream = inner, stream

  def handle(self, record: logging.LogRecord) -> bool:
    with tqdm.tqdm.external_write_mode(file=self.stream):
      return self.inner.handle(record)

  def emit(self, record: logging.LogRecord) -> None:  # `handle` does the work
    self.inner.emit(record)


def duration(seconds: float) -> str:
  """``H:MM:SS`` (an ETA)."""
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def bar(stream, **kwargs) -> tqdm.tqdm:
  """A tqdm bar on ``stream`` (a terminal); ``kwargs`` are tqdm's. A pseudo-terminal
  that reports no size gets a 100-column bar (tqdm would draw nothing at 0 columns)."""
  try:
    sized = os.get_terminal_size(stream.fileno()).columns > 0
  except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
    sized = False
  return tqdm.tqdm(file=stream, dynamic_ncols=sized, ncols=None if sized else 100,
                   nrows=None if sized else 24, **kwargs)


class Progress:
  """Training progress on the console: step / total, epoch, loss, clips/s, ETA.

  On a terminal, a tqdm bar from `start` (the end of the first, compiling, step: its
  rate and ETA exclude compilation) that `advance` moves every step and `report` labels
  with the window's means; log lines written meanwhile appear above it. Otherwise
  `report` logs one line per call (one per ``train.log_every`` steps). Only the
  process with ``enabled`` shows anything.

  A line whose window holds fewer than ``log_every`` steps (``train/window_steps``: the
  first after a resume, or one cut short by a save or an evaluation) says how many it
  averages.

  Args:
    total_steps: the step training ends at.
    enabled: whether this process shows progress (process 0).
    stream: where the bar goes (default stderr, where the log goes).
    log_every: the steps of a full log window (``train.log_every``).
  """

  def __init__(self, total_steps: int, enabled: bool = True, stream=None,
               log_every: int = 0):
    self.total, self.enabled, self.log_every = int(total_steps), enabled, int(log_every)
    self.stream = stream if stream is not None else sys.stderr
    isatty = getattr(self.stream, "isatty", None)
    self.live = enabled and bool(isatty and isatty())
    self._bar = None
    self._handlers: list[logging.Handler] | None = None

  def start(self, step: int) -> None:
    """The first step of this run has finished (compiled and ran) at ``step``."""
    if not self.live or self._bar is not None:
      return
    self._bar = bar(self.stream, total=self.total, initial=step, desc="train",
                    unit="step", leave=True)
    root = logging.getLogger()
    self._handlers = list(root.handlers)
    root.handlers = [_AboveTheBar(h, self.stream) for h in self._handlers]

  def advance(self, step: int) -> None:
    """Moves the bar to ``step`` (no device synchronisation)."""
    if self._bar is not None and step > self._bar.n:
      self._bar.update(step - self._bar.n)

  def report(self, step: int, scalars: dict[str, float]) -> None:
    """Shows the means of a log window (``train/loss``, ``train/epoch``, ...)."""
    if not self.enabled:
      return
    loss, epoch = scalars.get("train/loss"), scalars.get("train/epoch")
    clips, eta = scalars.get("train/clips_per_sec"), scalars.get("train/eta_minutes")
    if self._bar is not None:
      self.advance(step)
      parts = [f"epoch {epoch:.1f}" if epoch is not None else "",
               f"loss {loss:.4g}" if loss is not None else "",
               f"{clips:.1f} clips/s" if clips is not None else ""]
      self._bar.set_postfix_str(", ".join(p for p in parts if p))
      return
    parts = [f"step {step}/{self.total}"]
    window = scalars.get("train/window_steps")
    if window is not None and 0 < window < self.log_every:
      parts[0] += f" (mean of {int(window)} step{'s' if window > 1 else ''})"
    if epoch is not None:
      parts.append(f"epoch {epoch:.2f}")
    if loss is not None:
      parts.append(f"loss {loss:.4g}")
    if clips is not None:
      parts.append(f"{clips:.1f} clips/s")
    if eta is not None:
      parts.append(f"ETA {duration(60 * eta)}")
    logging.info("%s", " | ".join(parts))

  def close(self) -> None:
    """Ends the bar (if any) and gives the log its handlers back; idempotent."""
    if self._handlers is not None:
      logging.getLogger().handlers = self._handlers
      self._handlers = None
    if self._bar is not None:
      self._bar.close()
      self._bar = None


@contextlib.contextmanager
def progress(total_steps: int, enabled: bool = True, stream=None, log_every: int = 0):
  """`Progress` that is closed however the block ends."""
  p = Progress(total_steps, enabled, stream, log_every)
  try:
    yield p
  finally:
    p.close()
