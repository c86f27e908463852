"""One run per workdir (the lock), and what a resumed run may change (config check)."""

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from time_jax import config as config_lib
from time_jax.train import workdir as workdir_lib


def _write_lock(workdir, **owner):
  path = os.path.join(workdir, workdir_lib.LOCK_FILE)
  with open(path, "w") as f:
    json.dump(dict(dict(host=socket.gethostname(), pid=os.getpid(), started="then"),
                   **owner), f)
  return path


def test_a_live_run_on_this_host_keeps_the_workdir(tmp_path):
  other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    _write_lock(tmp_path, pid=other.pid)
    with pytest.raises(workdir_lib.WorkdirError) as e:
      workdir_lib.Lock(str(tmp_path)).acquire()
  finally:
    other.kill()
    other.wait()
  message = str(e.value)
  assert f"pid {other.pid}" in message and socket.gethostname() in message
  assert "in use by another run" in message and "\n" not in message


def test_a_dead_owner_is_taken_over_with_a_warning_and_released(tmp_path, caplog):
  gone = subprocess.Popen([sys.executable, "-c", "pass"])
  gone.wait()
  _write_lock(tmp_path, pid=gone.pid)
  lock = workdir_lib.Lock(str(tmp_path))
  with caplog.at_level(logging.WARNING):
    lock.acquire()
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 1 and "its process is not running" in warnings[0]
  with open(lock.path) as f:
    assert json.load(f)["pid"] == os.getpid()
  lock.release()
  assert not os.path.exists(lock.path)


def test_a_pid_reused_by_another_process_is_stale(tmp_path, caplog):
  # This process is alive, but it is not the one that wrote the lock (start time).
  _write_lock(tmp_path, start_ticks="1")
  with caplog.at_level(logging.WARNING):
    workdir_lib.Lock(str(tmp_path)).acquire()
  assert any("not running" in r.getMessage() for r in caplog.records)


def test_another_hosts_lock_counts_by_its_heartbeat(tmp_path, caplog):
  path = _write_lock(tmp_path, host="gpu-node-7", pid=4242)
  old = time.time() - 120
  os.utime(path, (old, old))  # silent for two minutes: that run is gone
  lock = workdir_lib.Lock(str(tmp_path), heartbeat_s=0.2, stale_s=1.0)
  with caplog.at_level(logging.WARNING):
    lock.acquire()
  assert any("heartbeat stopped" in r.getMessage() for r in caplog.records)
  lock.release()

  _write_lock(tmp_path, host="gpu-node-7", pid=4242)  # fresh, and it keeps beating
  stop = threading.Event()

  def beat():
    while not stop.wait(0.1):
      os.utime(path)

  thread = threading.Thread(target=beat)
  thread.start()
  try:
    with pytest.raises(workdir_lib.WorkdirError, match="host gpu-node-7, pid 4242"):
      workdir_lib.Lock(str(tmp_path), heartbeat_s=0.2, stale_s=1.0).acquire()
  finally:
    stop.set()
    thread.join()


def test_the_holder_beats_and_a_second_lock_in_this_process_is_refused(tmp_path):
  lock = workdir_lib.Lock(str(tmp_path), heartbeat_s=0.05)
  lock.acquire()
  before = os.stat(lock.path).st_mtime
  time.sleep(0.3)
  assert os.stat(lock.path).st_mtime > before
  with pytest.raises(workdir_lib.WorkdirError):
    workdir_lib.Lock(str(tmp_path)).acquire()
  lock.release()
  with workdir_lib.hold(str(tmp_path)):
    assert os.path.exists(lock.path)
  assert not os.path.exists(lock.path)


def _saved_run(tmp_path, config):
  (tmp_path / "checkpoints" / "3").mkdir(parents=True)
  (tmp_path / "config.json").write_text(config.to_json_best_effort(indent=2))


def test_resume_may_change_the_schedule_but_not_what_the_model_is(tmp_path):
  saved = config_lib.base_config()
  saved.image_size = 112
  assert workdir_lib.check_resume(saved, str(tmp_path)) == {}  # nothing saved yet
  _saved_run(tmp_path, saved)

  config = config_lib.base_config()
  config.image_size = 112
  config.train.num_epochs = 80.0
  config.train.log_every = 10
  config.dataset.root = "/elsewhere"
  changed = workdir_lib.check_resume(config, str(tmp_path))
  assert changed == {"dataset.root": ("", "/elsewhere"), "train.num_epochs": (50.0, 80.0),
                     "train.log_every": (50, 10)}
  assert workdir_lib.describe_changes(changed).startswith('dataset.root "" -> "/elsewhere"')

  for field, value, shown in [("image_size", 96, "96 here but 112"),
                              ("time.n", 4, "4 here but 2"),
                              ("input.mean", (0.5, 0.5, 0.5), "[0.5, 0.5, 0.5] here but"),
                              ("dataset.split", "2", '"2" here but ""')]:
    c = config_lib.base_config()
    c.image_size = 112
    if "." in field:
      section, name = field.split(".")
      c[section][name] = value
    else:
      c[field] = value
    with pytest.raises(workdir_lib.WorkdirError) as e:
      workdir_lib.check_resume(c, str(tmp_path))
    assert str(e.value).startswith(f"config.{field}: {shown}"), str(e.value)
    assert f"init_from={tmp_path}" in str(e.value)


def test_a_field_the_saved_config_lacks_counts_as_its_default(tmp_path):
  config = config_lib.base_config()
  saved = workdir_lib.as_json(config)
  del saved["time"]["arrangement"]
  (tmp_path / "checkpoints" / "1").mkdir(parents=True)
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert workdir_lib.check_resume(config, str(tmp_path)) == {}
  config.mode = "eval"  # evaluating a run is not changing its mode
  assert workdir_lib.check_resume(config, str(tmp_path)) == {}


# ----------------------------------------------------------------------------------
# Through the command users type.
# ----------------------------------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_TINY = ("--config", "configs/demo.py", "--config.dataset.synthetic_videos_per_class=4",
         "--config.input.batch_size=8", "--config.input.eval_batch_size=8",
         "--config.model.kwargs.depth=1", "--config.model.kwargs.num_heads=2",
         "--config.image_size=32", "--config.train.log_every=1",
         "--config.train.num_steps=2")


def _main(tmp_path, workdir, *args, wait=True):
  command = [sys.executable, "-m", "time_jax.main", *_TINY, "--workdir", str(workdir),
             *args]
  env = dict(os.environ, PYTHONPATH=REPO, TIME_JAX_DEMO_DATA=str(tmp_path / "data"))
  proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  if not wait:
    return proc
  proc.out, proc.err = proc.communicate(timeout=300)
  return proc


def _one_error_line(proc) -> str:
  assert proc.returncode == 2, (proc.returncode, proc.err[-3000:])
  assert "Traceback" not in proc.err, proc.err[-3000:]
  lines = [l for l in proc.err.splitlines() if l.strip()]
  assert lines[-1].startswith("error: ") and sum(
      l.startswith("error: ") for l in lines) == 1, proc.err[-3000:]
  return lines[-1]


def _history(workdir):
  with open(os.path.join(workdir, workdir_lib.HISTORY_FILE)) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_one_run_per_workdir_and_nothing_silently_wrong(tmp_path):
  workdir = tmp_path / "w"
  # A mistyped workdir in eval mode: nothing to evaluate, and no folder appears.
  r = _main(tmp_path, tmp_path / "typo", "--config.mode=eval")
  assert "has no saved checkpoint to evaluate" in _one_error_line(r)
  assert not os.path.exists(tmp_path / "typo")

  # The same job submitted twice: one trains, the other stops at once in one line.
  procs = [_main(tmp_path, workdir, "--config.train.eval_at_end=False", wait=False)
           for _ in range(2)]
  for p in procs:
    p.out, p.err = p.communicate(timeout=300)
  codes = sorted(p.returncode for p in procs)
  assert codes == [0, 2], [p.err[-2000:] for p in procs]
  loser = next(p for p in procs if p.returncode == 2)
  assert "is in use by another run" in _one_error_line(loser)
  assert len(_history(workdir)) == 1  # the second run wrote nothing
  assert not os.path.exists(workdir / workdir_lib.LOCK_FILE)  # released at the end

  # Resuming at another image size: named with both values, config.json untouched.
  before = (workdir / "config.json").read_text()
  r = _main(tmp_path, workdir, "--config.train.eval_at_end=False", "--config.image_size=48")
  assert _one_error_line(r).startswith("error: config.image_size: 48 here but 32 in the "
                                       f"run {workdir} holds")
  assert (workdir / "config.json").read_text() == before and len(_history(workdir)) == 1

  # The finished run started again says so; a changed log cadence is allowed and logged.
  r = _main(tmp_path, workdir, "--config.train.eval_at_end=False",
            "--config.train.log_every=2")
  assert r.returncode == 0, r.err[-3000:]
  assert "This run has finished: step 2 of 2" in r.err and "nothing to do" in r.err
  changed = [l for l in r.err.splitlines() if "with changed settings: " in l]
  assert len(changed) == 1 and changed[0].endswith(
      f"Resuming {workdir} with changed settings: train.log_every 1 -> 2 (each start's "
      f"settings: {workdir}/runs.jsonl)."), r.err[-3000:]
  history = _history(workdir)
  assert [h["from_step"] for h in history] == [0, 2]
  assert history[1]["changed"]["train.log_every"] == [1, 2]

  # Evaluating other weights names them.
  r = _main(tmp_path, tmp_path / "eval", "--config.mode=eval",
            f"--config.checkpoint.init_from={workdir}")
  assert r.returncode == 0, r.err[-3000:]
  assert f"Evaluating the weights of checkpoint.init_from={workdir}" in r.err
  assert os.path.exists(tmp_path / "eval" / "eval_results.json")
