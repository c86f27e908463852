#!/usr/bin/env bash
# Rehearses a multi-host run on one machine: P processes, each with its own CPU devices,
# joined by JAX's multi-process runtime as the hosts of a cluster would be (gloo
# collectives on CPU), so a multi-host config is checked on a laptop before cluster time.
#   launch/local_multiprocess.sh P CONFIG WORKDIR [--config.x=y ...]
#   launch/local_multiprocess.sh 2 configs/demo.py /tmp/mh --config.mesh.data=1 --config.mesh.fsdp=-1
# Environment: DEVICES_PER_PROCESS (default 4, CPU devices each process gets),
# PORT (default: a free one). Each process logs to WORKDIR/logs/process_<i>.log; process
# 0's log is also shown here. When one process fails the others are stopped, and the
# script exits with the first non-zero code (0 when all succeed). Ctrl-C or SIGTERM to
# the script reaches every process (SIGTERM: they save one checkpoint at the same step).
set -uo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $0 P CONFIG WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
procs="$1"; config="$2"; workdir="$3"; shift 3
if ! [[ "$procs" =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: P must be a positive number of processes, got '$procs'" >&2
  exit 2
fi
python="${PYTHON:-python}"
port="${PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}"
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${DEVICES_PER_PROCESS:-4}"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
export JAX_CPU_COLLECTIVES_IMPLEMENTATION="${JAX_CPU_COLLECTIVES_IMPLEMENTATION:-gloo}"
mkdir -p "$workdir/logs"

pids=()
for ((i = 0; i < procs; i++)); do
  "$python" -m time_jax.main --config "$config" --workdir "$workdir" \
    --coordinator_address "localhost:$port" --num_processes "$procs" --process_id "$i" \
    "$@" >"$workdir/logs/process_$i.log" 2>&1 &
  pids+=("$!")
done
echo "Started $procs processes (coordinator localhost:$port); logs in $workdir/logs/." >&2
tail -n +1 -f "$workdir/logs/process_0.log" &
tailer=$!

forward() { kill -s "$1" "${pids[@]}" 2>/dev/null; }
trap 'forward TERM' TERM
trap 'forward INT' INT

code=0
running=("${pids[@]}")
while ((${#running[@]})); do
  done_pid=""
  wait -n -p done_pid "${running[@]}"
  rc=$?
  [[ -z "$done_pid" ]] && continue  # interrupted by a forwarded signal
  left=()
  for p in "${running[@]}"; do [[ "$p" != "$done_pid" ]] && left+=("$p"); done
  running=("${left[@]}")
  if ((rc != 0 && code == 0)); then
    code=$rc
    for ((i = 0; i < procs; i++)); do
      [[ "${pids[$i]}" == "$done_pid" ]] && echo "process $i exited with code $rc; stopping the others (see $workdir/logs/process_$i.log)." >&2
    done
    if ((${#running[@]})); then
      sleep 5  # they normally end on their own within a second or two; make sure
      kill "${running[@]}" 2>/dev/null
    fi
  fi
done
kill "$tailer" 2>/dev/null
exit "$code"
