"""End-to-end loop tests on the moving-square source: resume, SIGTERM, NaN, learning; the
parameters' EMA in evaluation, ``init_from`` and checkpoints."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import dataclasses
import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from time_jax import checkpoints
from time_jax.train import loop

from loop_runs import REPO  # pylint: disable=g-bad-import-order
from loop_runs import flat as _flat
from loop_runs import losses as _losses
from loop_runs import moving_env
from loop_runs import records as _records
from loop_runs import start_moving as _start
from loop_runs import wait_for_step as _wait_for_step


def _state(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  with ocp.PyTreeCheckpointer() as ckptr:
    return ckptr.restore(path)


def _params(workdir, step):
  tree = _state(workdir, step)
  return tree["params"], int(tree["step"])


ARGS = ("train.num_steps=12", "checkpoint.every_steps=3", "train.eval_at_end=False")


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
  args = ARGS + ("train.ema_decay=0.5",)  # the EMA resumes too
  ref = _start(tmp_path / "ref", *args)
  assert ref.wait(timeout=300) == 0, ref.stdout.read()

  killed = tmp_path / "killed"
  kill_at = random.Random().randint(4, 10)
  proc = _start(killed, *args, sleep=0.02)
  _wait_for_step(proc, killed, kill_at)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert 12 not in _losses(killed), "the run finished before it was killed"
  again = _start(killed, *args)
  assert again.wait(timeout=300) == 0, again.stdout.read()

  want, got = _losses(tmp_path / "ref"), _losses(killed)
  assert sorted(got) == sorted(want) == list(range(1, 13))
  np.testing.assert_allclose([got[s] for s in range(1, 13)],
                             [want[s] for s in range(1, 13)], rtol=1e-6)
  p_ref, s_ref = _params(tmp_path / "ref", 12)
  p_got, s_got = _params(killed, 12)
  assert s_ref == s_got == 12
  a, b = _flat(p_ref), _flat(p_got)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-7, err_msg=k)
  ema_ref, ema_got = (_flat(_state(w, 12)["ema_params"]) for w in (tmp_path / "ref", killed))
  assert ema_ref.keys() == a.keys()
  for k in a:
    np.testing.assert_array_equal(ema_got[k], ema_ref[k], err_msg=k)
  assert max(np.abs(ema_ref[k] - a[k]).max() for k in a) > 1e-5  # it lags the params


def _stopped_step(out):
  """The step of the loop's one-line stop message, checked to be the only one."""
  lines = [l for l in out.splitlines() if "Stopped at step" in l]
  assert len(lines) == 1, out
  return int(lines[0].split("Stopped at step ")[1].split(" ")[0])


def test_sigterm_saves_the_current_step(tmp_path):
  proc = _start(tmp_path, "train.num_steps=1000", "checkpoint.every_steps=500",
                sleep=0.02)
  _wait_for_step(proc, tmp_path, 4)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out  # the driver returns; time_jax.main exits 75
  assert "Traceback" not in out
  stopped = _stopped_step(out)
  assert f"RESULT {{'preempted_at': {stopped}}}" in out
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert steps == [stopped] and 4 <= stopped < 500
  _, step = _params(tmp_path, stopped)
  assert step == stopped


def _start_group(workdir, *overrides, sleep=0.0):
  """A run in its own process group, as a terminal's Ctrl-C reaches it: the main
  process and its Grain workers."""
  return _start(workdir, *overrides, sleep=sleep, start_new_session=True)


def _group_gone(pgid, timeout=30):
  start = time.time()
  while time.time() - start < timeout:
    try:
      os.killpg(pgid, 0)
    except ProcessLookupError:
      return True
    time.sleep(0.1)
  return False


def test_ctrl_c_saves_the_current_step_without_worker_tracebacks(tmp_path):
  proc = _start_group(tmp_path, "train.num_steps=1000", "checkpoint.every_steps=500",
                      "input.num_workers=2", sleep=0.02)
  _wait_for_step(proc, tmp_path, 3)
  os.killpg(proc.pid, signal.SIGINT)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
  assert out.count("SIGINT: saving a checkpoint") == 1, out
  stopped = _stopped_step(out)
  assert f"RESULT {{'preempted_at': {stopped}}}" in out
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert steps == [stopped] and 3 <= stopped < 500
  assert _params(tmp_path, stopped)[1] == stopped
  assert _group_gone(proc.pid), "Grain workers outlived the run"


def test_second_ctrl_c_exits_at_once_without_saving(tmp_path):
  proc = _start_group(tmp_path, "train.num_steps=1000", "checkpoint.every_steps=500",
                      "input.num_workers=2", sleep=0.05)
  _wait_for_step(proc, tmp_path, 2)
  os.killpg(proc.pid, signal.SIGINT)
  out = []
  while not out or "SIGINT: saving" not in out[-1]:  # the first one was handled
    out.append(proc.stdout.readline())
    assert out[-1], "".join(out)
  os.killpg(proc.pid, signal.SIGINT)  # while the step ends and saves
  out = "".join(out) + proc.communicate(timeout=60)[0]
  assert proc.returncode == 128 + signal.SIGINT, out
  assert "SIGINT again: exiting now without saving" in out
  assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
  assert "Stopped at step" not in out and "RESULT" not in out
  assert _group_gone(proc.pid), "Grain workers outlived the run"


@pytest.mark.slow
def test_ctrl_c_in_the_final_evaluation_lets_it_finish_and_rows_say_what_they_average(
    tmp_path):
  # log_every 4 and a save at step 5: the logged rows average 4, 1 and 3 steps.
  proc = _start(tmp_path, "train.num_steps=8", "train.log_every=4",
                "checkpoint.every_steps=5", start_new_session=True,
                env=moving_env(MOVING_EVAL_SLEEP="0.1"))
  _wait_for_step(proc, tmp_path, 8)  # logged just before the final evaluation starts
  os.killpg(proc.pid, signal.SIGINT)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  said = ("SIGINT during the final evaluation: training has finished, so the evaluation "
          "runs to its end, then step 8 is saved and the run ends (Ctrl-C again exits at "
          "once, without step 8")
  assert out.count(said) == 1 and "saving a checkpoint after this step" not in out, out
  assert "RESULT {'eval/top1'" in out, out
  assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [5, 8]
  rows = [(r["step"], r["train/window_steps"]) for r in _records(tmp_path)
          if "train/loss" in r]
  assert rows == [(4, 4), (5, 1), (8, 3)]


def test_non_finite_loss_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path):
  proc = _start(tmp_path, "train.num_steps=12", "checkpoint.every_steps=2",
                "optimizer.base_lr=1e30", "optimizer.clip_norm=0.0",
                "optimizer.warmup_steps=6")
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode != 0
  assert "NonFiniteLossError" in out and "at step" in out, out
  bad_step = int(out.split("at step ")[1].split(";")[0])
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert all(s < bad_step for s in steps)
  params, _ = _params(tmp_path, steps[-1]) if steps else (None, None)
  if params is not None:
    assert all(np.isfinite(v).all() for v in _flat(params).values())


def _trainer(moving, workdir, seed=0, init_from="", **train):
  config = moving.tiny_config("finetune")
  config.seed, config.checkpoint.init_from = seed, init_from
  config.train.update(**train)
  return loop.Trainer(config, str(workdir), jax.devices()[:1], splits=moving.splits(),
                      reader=moving.MovingSquareReader())


def _close(trainer):
  trainer.ckpt.close()
  if trainer.writer is not None:
    trainer.writer.close()


@pytest.mark.parametrize("ema_eval", [True, False])
def test_evaluation_uses_the_ema_params_when_ema_eval(tmp_path, moving, caplog, ema_eval):
  trainer = _trainer(moving, tmp_path, ema_decay=0.5, ema_eval=ema_eval)
  shifted = jax.tree.map(lambda x: x + 1.0, trainer.state.ema_params)
  trainer.state = trainer.state.replace(ema_params=shifted)
  seen, evaluate = [], trainer.task.evaluate

  def spy(eval_step, state, batches, mesh):
    seen.append(jax.device_get(state.params))
    return evaluate(eval_step, state, batches, mesh)

  trainer.task.evaluate = spy
  with caplog.at_level(logging.INFO):
    out = trainer.evaluate(0)
  _close(trainer)
  want = trainer.state.ema_params if ema_eval else trainer.state.params
  jax.tree.map(np.testing.assert_array_equal, seen[0], jax.device_get(want))
  assert out["eval/num_videos"] == 16
  assert f"with the {'EMA' if ema_eval else 'raw'} parameters" in caplog.text


def test_init_from_restarts_the_ema_from_the_loaded_weights(tmp_path, moving):
  source = _trainer(moving, tmp_path / "source")
  source.ckpt.save(0, source.state, None)
  _close(source)
  loaded = jax.device_get(source.state.params)
  trainer = _trainer(moving, tmp_path / "run", seed=1, init_from="../source",
                     ema_decay=0.5)
  init = jax.device_get(trainer.state.params)
  assert trainer._restore_or_init(None) == 0  # pylint: disable=protected-access
  _close(trainer)
  ema = trainer.state.ema_params
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(ema), loaded)
  assert not np.array_equal(init["head"]["kernel"], loaded["head"]["kernel"])
  for e, p in zip(jax.tree_util.tree_leaves(ema),
                  jax.tree_util.tree_leaves(trainer.state.params)):
    assert e.sharding == p.sharding


def test_checkpoints_without_ema_restore_while_ema_stays_off(tmp_path, moving):
  trainer = _trainer(moving, tmp_path)
  state = trainer.state
  # a checkpoint written before TrainState had ema_params
  old = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)
         if f.name != "ema_params"}
  trainer.ckpt.save(3, dict(old, step=state.step + 3), None)
  trainer.ckpt.wait()
  restored = trainer.ckpt.restore(3, state, None)
  assert int(restored.step) == 3 and restored.ema_params == {}
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.params),
               jax.device_get(state.params))
  _close(trainer)
  # switching EMA on (or off) in a workdir is named, not an orbax tree diff
  on = _trainer(moving, tmp_path / "on", ema_decay=0.5)
  with pytest.raises(checkpoints.CheckpointError, match="has no ema_params.*ema_decay"):
    trainer.ckpt.restore(3, on.state, None)
  on.ckpt.save(1, on.state, None)
  on.ckpt.wait()
  with pytest.raises(checkpoints.CheckpointError, match="holds ema_params.*ema_decay"):
    on.ckpt.restore(1, state, None)
  _close(on)


@pytest.mark.slow
def test_pretrain_lowers_loss_then_finetune_from_it_learns(tmp_path, moving):
  pre = moving.tiny_config("pretrain")
  pre.train.num_steps = 60
  pre.train.log_every = 1
  pre.checkpoint.every_steps = 60
  pre.optimizer.layer_decay = 1.0
  pre.optimizer.base_lr = 3e-3
  result = loop.train_and_evaluate(pre, str(tmp_path / "pretrain"),
                                   splits=moving.splits(), reader=moving.MovingSquareReader())
  losses = _losses(tmp_path / "pretrain")
  first = np.mean([losses[s] for s in range(1, 6)])
  last = np.mean([losses[s] for s in range(56, 61)])
  # flat patches have all-zero normalised targets, so the loss starts low (~0.6)
  assert last < 0.9 * first, losses
  assert np.isfinite(result["eval/loss"])
  assert os.path.isfile(tmp_path / "pretrain" / "tensorboard" /
                        os.listdir(tmp_path / "pretrain" / "tensorboard")[0])

  fine = moving.tiny_config("finetune")
  fine.train.num_steps = 200
  fine.train.log_every = 50
  fine.checkpoint.every_steps = 200
  fine.checkpoint.init_from = "../pretrain"
  fine.optimizer.base_lr = 3e-3
  fine.optimizer.layer_decay = 1.0
  fine.model.kwargs.init_scale = 1.0
  fine.input.eval_clips = 2
  result = loop.train_and_evaluate(fine, str(tmp_path / "finetune"),
                                   splits=moving.splits(64, 32),
                                   reader=moving.MovingSquareReader())
  assert result["eval/top1"] >= 0.9, result
  assert result["eval/num_videos"] == 32
  for name in ("eval_confusion.csv", "eval_per_class.csv", "eval_confusion.png",
               "config.json"):
    assert os.path.isfile(tmp_path / "finetune" / name)
