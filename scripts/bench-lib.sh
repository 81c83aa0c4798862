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
