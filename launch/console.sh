# Sourced by the launch scripts: how a terminal shows a run's log (the log file keeps
# everything as written).
#
# show_log: on a terminal, absl's prefix ("I1207 06:55:38.047231 140666736794496
# console.py:269] ") becomes the time ("06:55:38 "; warnings and errors keep their
# level: "06:55:38 warning: "), as time_jax.main writes its lines on a terminal itself;
# gloo's "[Gloo] Rank ... connected" lines and JAX's note on recoverable tasks are left
# out. Elsewhere (a pipe, a file) the lines pass unchanged.
show_log() {
  local hide='^\[Gloo\] Rank [0-9]* is connected to|coordination_service\.cc:[0-9]*\] .*Using experimental recoverable task'
  if [[ -t 1 ]]; then
    grep --line-buffered -v -E "$hide" | sed -u -E \
      -e 's/^I[0-9]{4} ([0-9:]{8})\.[0-9]+ +[0-9]+ [^]]+\] /\1 /' \
      -e 's/^W[0-9]{4} ([0-9:]{8})\.[0-9]+ +[0-9]+ [^]]+\] /\1 warning: /' \
      -e 's/^E[0-9]{4} ([0-9:]{8})\.[0-9]+ +[0-9]+ [^]]+\] /\1 error: /' \
      -e 's/^F[0-9]{4} ([0-9:]{8})\.[0-9]+ +[0-9]+ [^]]+\] /\1 fatal: /'
  else
    grep --line-buffered -v -E "$hide" || true  # (no line left is no failure)
  fi
}
