"""What a run shows: our own lines and a progress line, the parameter table in a file,
the libraries quiet; and ``metrics.jsonl`` logs every step once across resumes."""

import io
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from time_jax import console
from time_jax.train import metrics

from loop_runs import REPO  # pylint: disable=g-bad-import-order
from loop_runs import records as _records
from loop_runs import start_moving as _start
from loop_runs import wait_for_step as _wait_for_step
WINDOW = {"train/loss": 1.23456, "train/epoch": 2.5, "train/clips_per_sec": 80.0,
          "train/eta_minutes": 1.5}


class _Terminal(io.StringIO):

  def isatty(self):
    return True


def test_progress_logs_one_plain_line_per_window_off_a_terminal(caplog):
  stream = io.StringIO()
  with caplog.at_level(logging.INFO), console.progress(280, stream=stream) as p:
    p.start(1)
    for step in range(2, 21):
      p.advance(step)
    p.report(20, WINDOW)
  lines = [r.getMessage() for r in caplog.records]
  assert lines == ["step 20/280 | epoch 2.50 | loss 1.235 | 80.0 clips/s | ETA 0:01:30"]
  assert stream.getvalue() == ""  # no bar


def test_progress_without_a_rate_yet_leaves_it_out(caplog):
  with caplog.at_level(logging.INFO), console.progress(10, stream=io.StringIO()) as p:
    p.report(1, {"train/loss": 2.0, "train/epoch": 0.1})
  assert [r.getMessage() for r in caplog.records] == ["step 1/10 | epoch 0.10 | loss 2"]


def test_progress_draws_a_bar_on_a_terminal_and_logs_above_it():
  term = _Terminal()
  root = logging.getLogger()
  handler = logging.StreamHandler(term)
  root.addHandler(handler)
  before, level = list(root.handlers), root.level
  root.setLevel(logging.INFO)
  try:
    with console.progress(280, stream=term) as p:
      p.start(1)
      assert root.handlers != before  # log records now clear and redraw the bar
      p.advance(20)
      p.report(20, WINDOW)
      logging.info("an evaluation line")
    assert root.handlers == before
  finally:
    root.removeHandler(handler)
    root.setLevel(level)
  out = term.getvalue()
  assert "20/280" in out and "loss 1.235" in out and "80.0 clips/s" in out
  assert "an evaluation line\n" in out
  assert "step 20/280 |" not in out  # the bar replaces the plain line


def test_progress_of_other_processes_shows_nothing(caplog):
  term = _Terminal()
  with caplog.at_level(logging.INFO), console.progress(5, enabled=False, stream=term) as p:
    p.start(1)
    p.report(5, WINDOW)
  assert not caplog.records and term.getvalue() == ""


def test_quiet_libraries_keeps_our_lines_and_every_warning():
  stream = io.StringIO()
  handler = logging.StreamHandler(stream)
  root = logging.getLogger()
  root.addHandler(handler)
  level = root.level
  root.setLevel(logging.INFO)
  try:
    console.quiet_libraries([handler])
    logging.getLogger("orbax").info("library chatter")  # this file is not time_jax's
    logging.getLogger("orbax").warning("library warning")
    with console.progress(4, stream=io.StringIO()) as p:
      p.report(4, {"train/loss": 0.5})  # logged by time_jax/console.py
  finally:
    root.removeHandler(handler)
    root.setLevel(level)
  out = stream.getvalue()
  assert "library chatter" not in out
  assert "library warning" in out and "step 4/4 | loss 0.5" in out


def test_a_terminal_gets_time_and_message_and_a_file_absls_prefix():
  terminal, file = _Terminal(), io.StringIO()
  handlers = [logging.StreamHandler(terminal), logging.StreamHandler(file)]
  prefixed = logging.Formatter("PREFIX %(message)s")
  for h in handlers:
    h.setFormatter(prefixed)
  console.quiet_libraries(handlers)
  for level, message in ((logging.INFO, "step 4/4 | loss 0.5"), (logging.WARNING, "slow")):
    record = logging.LogRecord(__name__, level, console.__file__, 1, message, None, None)
    for h in handlers:
      h.handle(record)
  assert re.fullmatch(r"\d\d:\d\d:\d\d step 4/4 \| loss 0.5\n"
                      r"\d\d:\d\d:\d\d warning: slow\n", terminal.getvalue())
  assert file.getvalue() == "PREFIX step 4/4 | loss 0.5\nPREFIX slow\n"


def test_a_line_averaging_fewer_steps_than_log_every_says_so(caplog):
  with caplog.at_level(logging.INFO), console.progress(
      12, stream=io.StringIO(), log_every=4) as p:
    p.report(4, {"train/loss": 2.0, "train/window_steps": 4})
    p.report(7, {"train/loss": 1.0, "train/window_steps": 3})  # after a resume at 4
  assert [r.getMessage() for r in caplog.records] == [
      "step 4/12 | loss 2", "step 7/12 (mean of 3 steps) | loss 1"]


def test_writer_rewind_drops_later_steps_and_replaces_a_rewritten_record(tmp_path):
  w = metrics.Writer(str(tmp_path))
  for step in range(1, 6):
    w.scalars(step, {"train/loss": float(step)}, log=False)
  w.scalars(3, {"eval/top1": 0.5}, log=False)
  w.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 6, "train/lo')  # a write cut short by a kill
  w = metrics.Writer(str(tmp_path))
  w.rewind(3)
  assert [r["step"] for r in _records(tmp_path)] == [1, 2, 3, 3]
  w.scalars(3, {"eval/top1": 0.75}, log=False)  # the restart step evaluated again
  w.scalars(4, {"train/loss": 40.0}, log=False)
  w.close()
  recs = _records(tmp_path)
  assert [(r["step"], sorted(r)[0]) for r in recs] == [
      (1, "step"), (2, "step"), (3, "step"), (3, "eval/top1"), (4, "step")]
  assert [r.get("eval/top1") for r in recs if r["step"] == 3] == [None, 0.75]
  assert recs[-1]["train/loss"] == 40.0


# --------------------------------------------------------------------- end to end


def _demo(tmp_path, *args, env=None):
  return subprocess.run(
      [sys.executable, "-m", "time_jax.main", "--config", "configs/demo.py",
       "--workdir", str(tmp_path / "w"), "--config.train.num_steps=4",
       "--config.train.log_every=2", "--config.model.kwargs.depth=1",
       "--config.input.eval_clips=1", *args],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, PYTHONPATH=REPO, TIME_JAX_DEMO_DATA=str(tmp_path / "data"),
               XLA_FLAGS="--xla_force_host_platform_device_count=1", **(env or {})))


@pytest.mark.slow
def test_demo_console_shows_our_lines_and_a_progress_line(tmp_path):
  r = _demo(tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  lines = r.stderr.splitlines()
  # Before: ~140 lines for 30 steps, 55 % Orbax INFO and a 60-line parameter table.
  assert len(lines) <= 15, r.stderr
  assert not [l for l in lines if "orbax" in l or "checkpoint_manager" in l], r.stderr
  params = [l for l in lines if "Parameters:" in l]
  assert len(params) == 1 and "parameters.txt" in params[0]
  table = (tmp_path / "w" / "parameters.txt").read_text()
  assert "patch_embed/kernel" in table and "Total:" in table
  progress = [l for l in lines if "step 4/4 |" in l]
  assert len(progress) == 1 and "loss" in progress[0] and "clips/s" in progress[0]
  assert "ETA 0:00:00" in progress[0]

  # --verbosity brings the libraries' INFO back (a finished run: evaluates again).
  r = _demo(tmp_path, "--verbosity=0")
  assert r.returncode == 0, r.stderr[-3000:]
  assert any("checkpoint_manager" in l for l in r.stderr.splitlines())
  evals = [rec["step"] for rec in _records(tmp_path / "w") if "eval/top1" in rec]
  assert evals == [4]  # the re-evaluation replaced the first, not repeated it


@pytest.mark.slow
def test_metrics_jsonl_logs_each_step_once_across_a_kill_and_a_rerun(tmp_path):
  args = ("train.num_steps=12", "checkpoint.every_steps=3")
  proc = _start(tmp_path, *args, sleep=0.02)
  _wait_for_step(proc, tmp_path, random.Random().randint(5, 10))
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  before = [r["step"] for r in _records(tmp_path) if "train/loss" in r]
  assert before and 12 not in before, before
  for _ in range(2):  # resume, then start the finished run again (it re-evaluates)
    again = _start(tmp_path, *args)
    assert again.wait(timeout=300) == 0, again.stdout.read()
  recs = _records(tmp_path)
  assert [r["step"] for r in recs if "train/loss" in r] == list(range(1, 13))
  assert [r["step"] for r in recs if "eval/top1" in r] == [12]
