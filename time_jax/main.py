r"""Trains or evaluates a model with TIME: flags -> config -> mesh -> train/evaluate.

    python -m time_jax.main --config configs/demo.py --workdir /tmp/demo
    python -m time_jax.main --config configs/ucf101_videomae.py:pretrain --workdir W/pretrain
    python -m time_jax.main --config configs/ucf101_videomae.py:finetune --workdir W/finetune \
        --config.optimizer.base_lr=1e-3 --config.dataset.root=/data/UCF101

Several processes (SLURM, Open MPI, or ``--coordinator_address --num_processes
--process_id``) call ``jax.distributed.initialize`` first; see launch/.

Exit status: 0 when the run finished; `EXIT_PREEMPTED` (75) when SIGTERM or Ctrl-C
stopped it with its checkpoint saved, so a scheduler can requeue it (the same command
resumes); non-zero otherwise.
"""

import os
import signal
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from time_jax import checkpoints
from time_jax import config as config_lib
from time_jax.train import loop

# sysexits.h EX_TEMPFAIL, "a temporary failure; the user is invited to retry": the run
# stopped on a signal with a checkpoint saved and resumes when started again.
EXIT_PREEMPTED = 75

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with ':arg' for get_config(arg).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, logs and reports go here.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])

_CLUSTER_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def _maybe_initialize_distributed() -> None:
  """Multi-process start: explicit flags, or SLURM / Open MPI auto-detection."""
  if _COORDINATOR.value:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  elif any(int(os.environ.get(k, "1")) > 1 for k in _CLUSTER_ENV):
    jax.distributed.initialize()


def main(argv):
  del argv
  _maybe_initialize_distributed()
  config = _CONFIG.value
  try:
    config_lib.validate(config)
  except ValueError as e:  # one line naming the field, no traceback
    raise app.UsageError(str(e)) from e
  logging.info("Process %d of %d, %d local / %d global devices.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  try:
    result = loop.train_and_evaluate(config, _WORKDIR.value)
  except checkpoints.CheckpointError as e:  # one line naming what to fix
    sys.exit(f"Error: {e}")
  if "preempted_at" in result:
    # srun ends the other tasks with SIGTERM when one exits non-zero; this status stays.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(EXIT_PREEMPTED)
  logging.info("Done: %s", result)


if __name__ == "__main__":
  app.run(main)
