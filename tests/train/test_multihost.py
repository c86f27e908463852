"""Two processes × four CPU devices (JAX's multi-process runtime, gloo collectives) on the
moving-square source: FSDP and data-parallel training, ``init_from`` a single-process
workdir and a ported folder, kill-and-resume, resuming with one process, SIGTERM, a
failing process, and which process writes the shared files."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from time_jax import checkpoints
from time_jax.data import pipeline
from time_jax.port import common
from time_jax.train import loop

from loop_runs import MOVING_DRIVER as SINGLE  # pylint: disable=g-bad-import-order
from loop_runs import REPO
from loop_runs import flat as _flat
from loop_runs import losses as _losses
from loop_runs import wait_for_step as _wait_for_step

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "run_multihost.py")
FSDP = ("mesh.data=1", "mesh.fsdp=-1")


def _env(sleep=0.0, **extra):
  env = dict(os.environ, MOVING_READ_SLEEP=str(sleep), PYTHONPATH=REPO,
             XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo", JAX_PLATFORMS="cpu")
  env.pop("MULTIHOST_FAIL", None)
  env.update(extra)
  return env


def _port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(workdir, *overrides, processes=2, sleep=0.0, **env):
  port = _port()
  return [subprocess.Popen([sys.executable, DRIVER, str(port), str(processes), str(i),
                            str(workdir), "finetune", *overrides],
                           env=_env(sleep, **env), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
          for i in range(processes)]


def _finish(procs, timeout=300):
  outs = [p.communicate(timeout=timeout)[0] for p in procs]
  for i, (p, out) in enumerate(zip(procs, outs)):
    assert p.returncode == 0, f"process {i}:\n{out[-4000:]}"
  # Only process 0 writes the shared files (the driver reports others' writes).
  assert not any("SHARED WRITE" in out for out in outs[1:]), outs[1][-4000:]
  return outs


def _state(workdir, step):
  return checkpoints.read_state(str(workdir), step)  # numpy, whatever wrote it


def _steps_saved(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints"))
                if d.isdigit())


def _source_variables(moving, workdir, num_classes):
  """A one-device run's initial variables (seed 1), saved as its step 0."""
  config = moving.tiny_config("finetune")
  config.seed = 1
  config.dataset.num_classes = num_classes
  trainer = loop.Trainer(config, str(workdir), devices=jax.devices()[:1],
                         splits=moving.splits(), reader=moving.MovingSquareReader())
  trainer.ckpt.save(0, trainer.state, None)
  trainer.ckpt.close()
  return jax.device_get({"params": trainer.state.params})


@pytest.mark.parametrize("workers", [0, 2])
def test_seek_starts_the_train_order_at_a_step_without_reading_before_it(moving,
                                                                         workers):
  config = moving.tiny_config("finetune")
  config.input.num_workers = workers
  ds, _ = pipeline.build(config, "train", splits=moving.splits(),
                         reader=moving.MovingSquareReader())
  it = iter(ds)
  order = [next(it)["index"] for _ in range(7)]
  for step in (0, 3, 5):
    it = iter(ds)
    pipeline.seek(it, step)
    for want in order[step:step + 2]:
      np.testing.assert_array_equal(next(it)["index"], want)


def test_read_variables_into_target_shardings(tmp_path, moving):
  """Matching variables land in the target's (FSDP) shardings, others replicated."""
  source = _source_variables(moving, tmp_path / "source", num_classes=3)
  config = moving.tiny_config("finetune")
  config.mesh.data, config.mesh.fsdp = 1, -1
  trainer = loop.Trainer(config, str(tmp_path / "run"), splits=moving.splits(),
                         reader=moving.MovingSquareReader())
  trainer.ckpt.close()
  target = {"params": trainer.state.params}
  got, _ = checkpoints.read_variables(str(tmp_path / "source"), target=target)
  values, want_values = _flat(got), _flat(source)
  flat_target = dict(jax.tree_util.tree_flatten_with_path(target)[0])
  leaves = dict(jax.tree_util.tree_flatten_with_path(got)[0])
  assert len(leaves) == len(want_values)
  sharded = 0
  for path, leaf in leaves.items():
    key = jax.tree_util.keystr(path)
    np.testing.assert_array_equal(values[key], want_values[key], err_msg=key)
    want = flat_target[path]
    if leaf.shape == want.shape:
      assert leaf.sharding == want.sharding, key
      sharded += not leaf.sharding.is_fully_replicated
    else:  # the 3-class head: replicated, for merge to adapt or skip on the host
      assert key.startswith("['params']['head']") and leaf.sharding.is_fully_replicated
  assert sharded > 0


@pytest.mark.slow
def test_fsdp_from_a_single_process_workdir_kill_and_resume_is_bit_identical(tmp_path,
                                                                             moving):
  source = _source_variables(moving, tmp_path / "source", num_classes=2)
  args = FSDP + ("train.num_steps=6", "train.eval_at_end=False",
                 f"checkpoint.init_from='{tmp_path / 'source'}'")
  ref = tmp_path / "ref"
  _finish(_start(ref, *args, "checkpoint.every_steps=1", "checkpoint.keep=10"))
  for name in ("metrics.jsonl", "config.json", "class_names.json", "tensorboard"):
    assert os.path.exists(ref / name), name
  # The first update has learning rate 0 (warm-up): step 1 holds the loaded weights.
  loaded, want = _flat(_state(ref, 1)["params"]), _flat(source["params"])
  assert loaded.keys() == want.keys()
  for k in want:
    np.testing.assert_array_equal(loaded[k], want[k], err_msg=k)

  killed = tmp_path / "killed"
  procs = _start(killed, *args, "checkpoint.every_steps=3", sleep=0.05)
  _wait_for_step(procs, killed, 4)
  for p in procs:
    p.send_signal(signal.SIGKILL)
    p.wait()
  assert _steps_saved(killed) == [3]
  _finish(_start(killed, *args, "checkpoint.every_steps=3"))

  got, want = _losses(killed), _losses(ref)
  assert sorted(got) == sorted(want) == list(range(1, 7))
  assert [got[s] for s in range(1, 7)] == [want[s] for s in range(1, 7)]
  a, b = _flat(_state(ref, 6)), _flat(_state(killed, 6))
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(b[k], a[k], err_msg=k)


@pytest.mark.slow
def test_data_parallel_from_a_ported_folder_sigterm_then_resume_with_one_process(
    tmp_path, moving):
  # A ported 3-class model: the head does not fit the 2-class run and is kept from init;
  # its image patch kernel [p, p, c, D] is inflated into the tubelet kernel on the host.
  source = _source_variables(moving, tmp_path / "run0", num_classes=3)
  tubelet = source["params"]["patch_embed"]["kernel"]  # [t, p, p, c, D]
  source["params"]["patch_embed"]["kernel"] = image_kernel = tubelet[0] + 1.0
  common.save(source, str(tmp_path / "ported"), {"model": "videomae_s", "num_classes": 3})
  work = tmp_path / "work"
  args = ("mesh.data=-1", "train.num_steps=1000", "checkpoint.every_steps=500",
          "train.log_every=3",  # the processes agree on a stop at logging steps
          "optimizer.base_lr=0.0", f"checkpoint.init_from='{tmp_path / 'ported'}'")
  procs = _start(work, *args, sleep=0.05)
  _wait_for_step(procs, work, 2)
  procs[0].send_signal(signal.SIGTERM)  # the signals reach the processes apart
  time.sleep(0.5)
  procs[1].send_signal(signal.SIGTERM)
  outs = _finish(procs, timeout=120)
  stops = {int(out.split("'preempted_at': ")[1].split("}")[0]) for out in outs}
  assert len(stops) == 1, outs
  stop = stops.pop()
  assert _steps_saved(work) == [stop] and 2 <= stop < 500 and stop % 3 == 0
  state = _state(work, stop)
  assert int(state["step"]) == stop
  got, want = _flat(state["params"]), _flat(source["params"])
  assert got.keys() == want.keys()
  for k in want:
    if k.startswith("['head']"):
      assert got[k].shape[-1] == 2 != want[k].shape[-1]
    elif k == "['patch_embed']['kernel']":
      inflated = np.repeat(image_kernel[None], tubelet.shape[0], axis=0) / tubelet.shape[0]
      np.testing.assert_array_equal(got[k], inflated)
    else:  # base_lr=0: the loaded weights, unchanged
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)

  # A smaller allocation: one process (eight devices) resumes the two-process workdir.
  one = subprocess.run(
      [sys.executable, SINGLE, str(work), "finetune", "mesh.data=-1",
       f"train.num_steps={stop + 2}", "checkpoint.every_steps=500",
       "train.eval_at_end=False", "optimizer.base_lr=0.0"],
      env=dict(_env(), XLA_FLAGS="--xla_force_host_platform_device_count=8"),
      capture_output=True, text=True, timeout=300)
  assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
  log = one.stdout + one.stderr
  assert log.count("the data position cannot be") == 1, log[-3000:]
  assert "saved by 2 process(es) with 1" in log
  assert max(_losses(work)) == stop + 2
  assert _steps_saved(work)[-1] == stop + 2
  assert int(_state(work, stop + 2)["step"]) == stop + 2


@pytest.mark.slow
def test_a_failing_process_ends_every_process_within_seconds(tmp_path):
  procs = _start(tmp_path, "train.num_steps=50", MULTIHOST_FAIL="1:3")
  outs, ends = [None, None], [None, None]
  start = time.time()
  while None in ends:
    for i, p in enumerate(procs):
      if ends[i] is None and p.poll() is not None:
        ends[i] = time.time()
    assert time.time() - start < 240, "the processes did not exit"
    time.sleep(0.05)
  outs = [p.stdout.read() for p in procs]
  assert all(p.returncode == 1 for p in procs), outs
  assert abs(ends[0] - ends[1]) < 10, (ends, outs)
  assert "RuntimeError: injected failure at step 3" in outs[1], outs[1][-3000:]
  assert ("Process 0 stops (exit code 1) because process 1: RuntimeError: injected "
          "failure at step 3\n  its second line: a.mp4") in outs[0], outs[0][-3000:]
