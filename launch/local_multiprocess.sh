#!/usr/bin/env bash
# Rehearses a multi-host run on one machine: P processes, each with its own CPU devices,
# joined by JAX's multi-process runtime as the hosts of a cluster would be (gloo
# collectives on CPU), so a multi-host config is checked on a laptop before cluster time.
#   launch/local_multiprocess.sh P CONFIG WORKDIR [--config.x=y ...]
#   launch/local_multiprocess.sh 2 configs/demo.py /tmp/mh --config.mesh.data=1 --config.mesh.fsdp=-1
# Environment: DEVICES_PER_PROCESS (default 4, CPU devices each process gets),
# PORT (default: a free one), PYTHON (default: python). Each process logs to
# WORKDIR/logs/process_<i>.log; process 0's log is shown here from its first line (as
# launch/console.sh's show_log shows it: on a terminal with the time for absl's prefix,
# without gloo's "[Gloo] Rank ... connected" lines; the log keeps them).
# Exit status: 0 when all succeed; 75 when they stopped on SIGTERM / Ctrl-C with their
# checkpoint saved (run the same command to resume); else the first failure's code,
# after stopping the others. A process killed by a signal (SIGKILL: the out-of-memory
# killer?) is named here and in every process's log. Ctrl-C or SIGTERM to the script
# reaches every process (they save one checkpoint at the same step).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/console.sh"  # show_log
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
EXIT_PREEMPTED=75  # time_jax.main: stopped on a signal with its checkpoint saved
# After a failure the others end by themselves, a lost process's peers once its
# heartbeats have been missing for --heartbeat_timeout (time_jax.main's default: 30 s).
heartbeat=30
for ((k = 1; k <= $#; k++)); do
  case "${!k}" in
    --heartbeat_timeout=*) heartbeat="${!k#*=}" ;;
    --heartbeat_timeout) next=$((k + 1)); heartbeat="${!next:-30}" ;;
  esac
done
mkdir -p "$workdir/logs"
log() { echo "$workdir/logs/process_$1.log"; }

pids=()
for ((i = 0; i < procs; i++)); do
  # Created before the process starts (the view below opens it at once) and written in
  # append mode, so the notes this script adds are never overwritten.
  : >"$(log "$i")"
  "$python" -m time_jax.main --config "$config" --workdir "$workdir" \
    --coordinator_address "localhost:$port" --num_processes "$procs" --process_id "$i" \
    "$@" >>"$(log "$i")" 2>&1 &
  pids+=("$!")
done
echo "Started $procs processes (pids ${pids[*]}; coordinator localhost:$port); logs in $workdir/logs/." >&2
# Ends by itself after process 0 has ended and its last lines are shown.
tail -n +1 -f --pid="${pids[0]}" "$(log 0)" > >(show_log) &
tailer=$!

# From here this script's messages go to fd 3 (stderr): bash's own job notices
# ("... Killed  python -m ...") would otherwise repeat the notes below.
exec 3>&2 2>/dev/null
forward() { kill -s "$1" "${pids[@]}" 2>/dev/null; }
trap 'forward TERM' TERM
trap 'forward INT' INT

# A note in every process's log and here.
note() {
  echo "$1" >&3
  for ((j = 0; j < procs; j++)); do echo "local_multiprocess.sh: $1" >>"$(log "$j")"; done
}

code=0
coordinator_lost=0
stopped=0  # 1 once this script has stopped the processes left after a failure
running=("${pids[@]}")
while ((${#running[@]})); do
  sleep 0.2
  left=()
  for p in "${running[@]}"; do
    if kill -0 "$p" 2>/dev/null; then left+=("$p"); continue; fi
    wait "$p"
    rc=$?
    for ((i = 0; i < procs; i++)); do [[ "${pids[$i]}" == "$p" ]] && break; done
    if ((rc == 0)); then
      continue
    elif ((rc == EXIT_PREEMPTED)); then
      echo "process $i stopped with its checkpoint saved (exit $rc); run the same command to resume." >&3
      ((code == 0)) && code=$rc
      continue
    elif ((rc > 128 && ! stopped)); then
      sig="SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
      if [[ "$sig" == SIGKILL ]]; then
        note "process $i (pid $p) was lost: killed by $sig (exit $rc; the out-of-memory killer?)."
        ((i == 0)) && coordinator_lost=1
      elif [[ "$sig" == SIGABRT ]] && ((coordinator_lost)); then
        note "process $i (pid $p) ended by $sig (exit $rc): JAX ends every process when process 0, which hosts the coordination service, is lost."
      else
        note "process $i (pid $p) ended by $sig (exit $rc; see $(log "$i"))."
      fi
    elif ((! stopped)); then
      echo "process $i failed with exit code $rc (see $(log "$i"))." >&3
    fi
    if ((code == 0 || code == EXIT_PREEMPTED)); then
      code=$rc
      stop_at=$((SECONDS + heartbeat + 15))  # then make sure
    fi
  done
  running=("${left[@]}")
  if ((code != 0 && code != EXIT_PREEMPTED && ${#running[@]})) && ((SECONDS >= stop_at)); then
    echo "stopping the processes still running (pids ${running[*]})." >&3
    kill "${running[@]}" 2>/dev/null
    stopped=1
    stop_at=$((SECONDS + 3600))
  fi
done
wait "$tailer" 2>/dev/null
exit "$code"
