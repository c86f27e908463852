r"""Trains or evaluates a model with TIME: flags -> config -> mesh -> train/evaluate.

    python -m time_jax.main --config configs/demo.py --workdir /tmp/demo
    python -m time_jax.main --config configs/ucf101_videomae.py:pretrain --workdir W/pretrain
    python -m time_jax.main --config configs/ucf101_videomae.py:finetune --workdir W/finetune \
        --config.optimizer.base_lr=1e-3 --config.dataset.root=/data/UCF101

Several processes (SLURM, Open MPI, or ``--coordinator_address --num_processes
--process_id``) call ``jax.distributed.initialize`` first; see launch/ (and
launch/local_multiprocess.sh to rehearse a multi-host run on one machine). When one
process fails, every process exits promptly with code 1, the failure named in the logs;
a process that dies without a word is named by the others once its heartbeats have
been missing for ``--heartbeat_timeout`` seconds (`time_jax.train.multihost`).

A mistake on the command line, in the config, in ``--workdir``, in the dataset's
protocol files (labels, classes) or in the data (a batch larger than the training set,
more undecodable files than ``dataset.max_bad_fraction`` allows: `pipeline.InputError`)
ends the run with one line ``error: ...`` on stderr and exit status 2
(`time_jax.console`). So do a workdir another run holds (one run per
workdir: `time_jax.train.workdir`), resuming a run with a changed model, clip size, TIME
layer, dataset or normalisation (other fields may change; the changes are logged and
every start is kept in ``runs.jsonl``), and ``--config.mode=eval`` on a workdir with no
checkpoint and no ``checkpoint.init_from``. The console shows our own log lines, warnings and a
progress line; ``--verbosity=0`` adds the libraries' INFO lines (Orbax, JAX, Grain).

Exit status: 0 when the run finished; `EXIT_PREEMPTED` (75) when SIGTERM or Ctrl-C
stopped it with its checkpoint saved, so a scheduler can requeue it (the same command
resumes); 2 for a mistake a user fixes (one ``error:`` line), 1 for any other failure.
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
from time_jax import console
from time_jax.data import base
from time_jax.data import pipeline
from time_jax.train import loop
from time_jax.train import multihost
from time_jax.train import workdir as workdir_lib

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
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout", multihost.HEARTBEAT_TIMEOUT_S,
    "Seconds without a heartbeat after which a process counts as dead (multi-process).")
flags.mark_flags_as_required(["config", "workdir"])

# Raised once the run is under way, caused by the user: one line, exit status 2.
_USER_ERRORS = (base.ProtocolError, pipeline.InputError, checkpoints.CheckpointError,
                workdir_lib.WorkdirError)


def _run():
  config = _CONFIG.value
  try:
    config_lib.validate(config)
  except ValueError as e:  # one line naming the field, no traceback
    console.usage_error(str(e))
  try:  # before the workdir is made: a mistyped one must not appear
    workdir_lib.check_evaluable(config, os.path.abspath(_WORKDIR.value))
  except workdir_lib.WorkdirError as e:
    console.usage_error(str(e))
  workdir = console.check_workdir(_WORKDIR.value)
  logging.info("Process %d of %d, %d local / %d global devices.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  try:
    result = loop.train_and_evaluate(config, workdir)
  except _USER_ERRORS as e:  # one line: what to fix
    if jax.process_count() > 1:
      raise  # run_or_exit names it and ends every process
    console.usage_error(str(e))
  if "preempted_at" in result:
    # srun ends the other tasks with SIGTERM when one exits non-zero; this status stays.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(EXIT_PREEMPTED)
  logging.info("Done: %s", result)


def main(argv):
  del argv
  console.quiet_libraries()
  multihost.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                       heartbeat_timeout_s=_HEARTBEAT.value)
  multihost.run_or_exit(_run, user_errors=_USER_ERRORS,
                        heartbeat_timeout_s=_HEARTBEAT.value, together=(0, EXIT_PREEMPTED))


if __name__ == "__main__":
  app.run(main, flags_parser=console.parse_flags)
