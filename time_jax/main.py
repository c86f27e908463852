r"""Trains or evaluates a model with TIME: flags -> config -> mesh -> train/evaluate.

    python -m time_jax.main --config configs/demo.py --workdir /tmp/demo
    python -m time_jax.main --config configs/ucf101_videomae.py:pretrain --workdir W/pretrain
    python -m time_jax.main --config configs/ucf101_videomae.py:finetune --workdir W/finetune \
        --config.optimizer.base_lr=1e-3 --config.dataset.root=/data/UCF101

Several processes (SLURM, Open MPI, or ``--coordinator_address --num_processes
--process_id``) call ``jax.distributed.initialize`` first; see launch/.

A mistake on the command line, in the config or in ``--workdir`` ends the run before
anything is built, with one line ``error: ...`` on stderr and exit status 2
(`time_jax.console`). The console shows our own log lines, warnings and a progress
line; ``--verbosity=0`` adds the libraries' INFO lines (Orbax, JAX, Grain).
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from time_jax import config as config_lib
from time_jax import console
from time_jax.train import loop

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
  console.quiet_libraries()
  _maybe_initialize_distributed()
  config = _CONFIG.value
  try:
    config_lib.validate(config)
  except ValueError as e:  # one line naming the field, no traceback
    console.usage_error(str(e))
  workdir = console.check_workdir(_WORKDIR.value)
  logging.info("Process %d of %d, %d local / %d global devices.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  result = loop.train_and_evaluate(config, workdir)
  logging.info("Done: %s", result)


if __name__ == "__main__":
  app.run(main, flags_parser=console.parse_flags)
