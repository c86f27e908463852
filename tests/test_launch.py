"""The launch scripts as users run them: ``launch/local_multiprocess.sh`` and
``launch/local.sh``.

Most cases run the multi-process launcher with ``PYTHON`` set to a stand-in for
``python -m time_jax.main`` (it writes a few lines, then exits as its environment says),
so what is checked is the launcher itself: the log shown from its first line to its last,
exit codes, and a killed process named in every log. The last case runs the real
``time_jax.main`` in two processes and kills one.
"""

import os
import re
import signal
import stat
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "launch", "local_multiprocess.sh")

# Stands in for `python -m time_jax.main` (and runs `python -c` for the launcher's port).
FAKE_MAIN = r"""#!{python}
import os, signal, sys, time
if sys.argv[1] == "-c":
  exec(sys.argv[2])
  sys.exit(0)
pid = int(sys.argv[sys.argv.index("--process_id") + 1])
print("[Gloo] Rank %d is connected to 1 peer ranks. Expected number of connected peer "
      "ranks is : 1" % pid, flush=True)
print("I1207 06:55:38.047231 140666736794496 main.py:77] first line of process %d" % pid,
      flush=True)
how = os.environ.get("FAKE_END_%d" % pid, "0")
if how == "kill":
  os.kill(os.getpid(), signal.SIGKILL)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0.3")))
print("last line of process %d" % pid, flush=True)
sys.exit(int(how))
"""


def _launch(tmp_path, **env):
  fake = tmp_path / "fake_python"
  fake.write_text(FAKE_MAIN.format(python=sys.executable))
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  workdir = tmp_path / "w"
  proc = subprocess.run(["bash", LAUNCHER, "2", "configs/demo.py", str(workdir)],
                        cwd=REPO, capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, PYTHON=str(fake), **env))
  logs = [(workdir / "logs" / f"process_{i}.log").read_text() for i in range(2)]
  return proc, logs


def test_process_0s_log_is_shown_from_its_first_line_to_its_last(tmp_path):
  proc, logs = _launch(tmp_path)
  assert proc.returncode == 0, proc.stderr
  shown = proc.stdout.splitlines()
  assert shown[0].endswith("first line of process 0") and shown[-1] == "last line of process 0"
  assert "tail:" not in proc.stderr, proc.stderr  # the log existed when the view opened
  assert "[Gloo]" not in proc.stdout and "[Gloo] Rank 0" in logs[0]  # kept in the log


def test_a_stop_with_its_checkpoint_saved_is_no_failure(tmp_path):
  proc, _ = _launch(tmp_path, FAKE_END_0="75", FAKE_END_1="75")
  assert proc.returncode == 75, proc.stderr
  assert proc.stderr.count("stopped with its checkpoint saved (exit 75); run the same "
                           "command to resume.") == 2, proc.stderr
  assert "fail" not in proc.stderr and "stopping" not in proc.stderr, proc.stderr


def test_a_killed_process_is_named_here_and_in_every_log(tmp_path):
  # Process 1 is killed (the out-of-memory killer's SIGKILL); process 0 then fails.
  proc, logs = _launch(tmp_path, FAKE_END_1="kill", FAKE_END_0="1")
  assert proc.returncode == 137, proc.stderr
  note = re.search(r"process 1 \(pid \d+\) was lost: killed by SIGKILL \(exit 137; the "
                   r"out-of-memory killer\?\)\.", proc.stderr)
  assert note, proc.stderr
  for log in logs:
    assert f"local_multiprocess.sh: {note.group(0)}" in log, log
  assert "Killed" not in proc.stderr  # bash's own job notice does not repeat it
  assert "process 0 failed with exit code 1" in proc.stderr


def test_local_sh_without_arguments_prints_its_usage():
  proc = subprocess.run(["bash", os.path.join(REPO, "launch", "local.sh")], cwd=REPO,
                        capture_output=True, text=True, timeout=30)
  assert proc.returncode == 2
  assert proc.stderr.strip().endswith("usage: " + os.path.join(REPO, "launch", "local.sh")
                                      + " CONFIG WORKDIR [--config.x=y ...]"), proc.stderr


@pytest.mark.slow
def test_a_process_killed_without_a_word_is_named_by_the_others(tmp_path):
  """Two real processes of ``time_jax.main``; process 1 is killed once both joined."""
  workdir = tmp_path / "w"
  env = dict(os.environ, PYTHON=sys.executable, DEVICES_PER_PROCESS="1",
             PYTHONPATH=REPO, TIME_JAX_DEMO_DATA=str(tmp_path / "data"))
  launcher = subprocess.Popen(
      ["bash", LAUNCHER, "2", "configs/demo.py", str(workdir), "--heartbeat_timeout=2",
       "--config.dataset.synthetic_videos_per_class=2", "--config.input.batch_size=2",
       "--config.model.kwargs.depth=1", "--config.image_size=32"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  log0 = workdir / "logs" / "process_0.log"
  start = time.time()
  while not (log0.exists() and "Process 0 of 2" in log0.read_text()):
    assert launcher.poll() is None and time.time() - start < 120, launcher.stderr.read()
    time.sleep(0.1)
  pids = re.search(r"pids (\d+) (\d+);", launcher.stderr.readline())
  os.kill(int(pids.group(2)), signal.SIGKILL)
  out, err = launcher.communicate(timeout=120)
  assert launcher.returncode == 137, err  # the first failure: process 1's
  # Process 0 names the lost process itself (no native abort, no traceback), exit 1.
  said = ("Process 0 stops (exit code 1) because process 1 was lost: no sign of life "
          "for 2 s (--heartbeat_timeout)")
  assert said in out and said in log0.read_text(), out[-3000:]
  assert "Traceback" not in out and "Fatal Python error" not in log0.read_text()
  assert "process 0 failed with exit code 1" in err, err
  assert "process 1 (pid" in (workdir / "logs" / "process_1.log").read_text()
