# Shared by the bench-*.sh scripts (sourced, not run): a timestamped log on
# stderr, and the buzzer binary under test put at $1/buzzer: a copy of
# BUZZER_BIN when set (a binary built beforehand, e.g. for A/B runs), else
# a build of the work tree.
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

bench_binary() {
  if [ -n "${BUZZER_BIN:-}" ]; then
    log "using $BUZZER_BIN"
    cp "$BUZZER_BIN" "$1/buzzer"
  else
    log "building buzzer"
    go build -o "$1/buzzer" ./cmd/buzzer
  fi
}

# bench_profile ADMIN_URL SECONDS LABEL OTHER_CPU: a CPU profile of serve
# (pid $server_pid) over SECONDS into $PROFILE_DIR/serve.pprof (with the
# binary beside it), and in $PROFILE_DIR/cpu.txt the CPU seconds serve
# and the other side (LABEL, whose cumulative CPU seconds the command
# OTHER_CPU prints) used meanwhile. Uses $admin_tok and $work.
bench_profile() {
  local admin="$1" secs="$2" label="$3" other="$4" s0 s1 o0 o1 t0 t1
  s0="$(ps -p "$server_pid" -o cputimes= | tr -d ' ')"; o0="$($other)"; t0="$(date +%s.%N)"
  curl -sf -H "Authorization: Bearer $admin_tok" -o "$PROFILE_DIR/serve.pprof" \
    "$admin/debug/pprof/profile?seconds=$secs" || log "profile failed"
  s1="$(ps -p "$server_pid" -o cputimes= | tr -d ' ')"; o1="$($other)"; t1="$(date +%s.%N)"
  python3 -c 'import sys; l=sys.argv[1]; s0,s1,o0,o1,t0,t1=map(float,sys.argv[2:]); w=t1-t0; print("window_s %.1f serve_cpu_s %.1f (%.2f cores) %s_cpu_s %.1f (%.2f cores)" % (w,s1-s0,(s1-s0)/w,l,o1-o0,(o1-o0)/w))' \
    "$label" "$s0" "$s1" "$o0" "$o1" "$t0" "$t1" >"$PROFILE_DIR/cpu.txt"
  cp "$work/buzzer" "$PROFILE_DIR/buzzer"
}
