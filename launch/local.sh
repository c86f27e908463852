#!/usr/bin/env bash
# One host, all its GPUs, one process (JAX drives every local device).
#   launch/local.sh configs/ucf101_videomae.py WORKDIR [--config.x=y ...]
# A two-phase config runs pretraining, then fine-tuning from it:
#   launch/local.sh configs/ucf101_videomae.py:pretrain W/pretrain
#   launch/local.sh configs/ucf101_videomae.py:finetune W/finetune
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
config="$1"; workdir="$2"; shift 2
# Let XLA use most of GPU memory without fragmenting it; keep the host's threads sane.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
source "$(dirname "${BASH_SOURCE[0]}")/console.sh"  # show_log
mkdir -p "$workdir"
# The log keeps absl's full prefix; a terminal shows the lines as show_log does.
python -m time_jax.main --config "$config" --workdir "$workdir" "$@" \
  2>&1 | tee -a "$workdir/log.txt" | show_log
