"""The command line: a wrong config field fails at start naming it, before any work."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args):
  return subprocess.run([sys.executable, "-m", "time_jax.main", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, PYTHONPATH=REPO))


def test_bad_field_fails_at_start_with_the_field_named(tmp_path):
  r = _main("--config", "configs/ucf101_videomae.py:finetune", "--workdir", str(tmp_path),
            "--config.dataset.root=/no/such/UCF101")
  assert r.returncode != 0
  assert "config.dataset.root" in r.stderr, r.stderr[-2000:]
  assert not os.path.exists(tmp_path / "checkpoints")


def test_unknown_model_is_named(tmp_path):
  r = _main("--config", "configs/ucf101_videomae.py:pretrain", "--workdir", str(tmp_path),
            "--config.model.name=videomae_q")
  assert r.returncode != 0 and "config.model.name" in r.stderr, r.stderr[-2000:]


def test_config_override_flag_type_is_checked(tmp_path):
  r = _main("--config", "configs/ucf101_videomae.py:finetune", "--workdir", str(tmp_path),
            "--config.optimizer.base_lr=fast")
  assert r.returncode != 0 and "base_lr" in r.stderr
