#!/usr/bin/env bash
# The tables benchmark of issue 7 in one command: `buzzer serve` with
# TABLES tables (betting window 1 s) on a fresh data dir, then
# `buzzer bench tables` with PLAYERS players a table for DURATION after a
# WARMUP, and its JSON (with the audit backlog left at the end).
#
#   TABLES=1000 PLAYERS=5 DURATION=45s WARMUP=30s THINK=1s scripts/bench-tables.sh
#
# REDIS_URL=redis://127.0.0.1:6379/7 puts the tables in Redis (under a fresh
# key prefix, removed afterwards). BUZZER_BIN=/path/to/buzzer uses a binary
# built beforehand. PROFILE_DIR=/some/dir also saves a CPU profile of serve
# over the middle of the measured play (serve.pprof), the CPU seconds serve
# and the load generator used (cpu.txt) and serve's metrics at the end
# (metrics.txt; metrics0.txt is taken when the profile starts). EXTRA_CONFIG is appended to serve's YAML config (top-level
# sections other than tables:), e.g. EXTRA_CONFIG=$'wallet:\n  batch_lanes: 2'.
set -euo pipefail
cd "$(dirname "$0")/.."
TABLES="${TABLES:-1000}"
PLAYERS="${PLAYERS:-5}"
DURATION="${DURATION:-45s}"
WARMUP="${WARMUP:-30s}"
THINK="${THINK:-1s}"
work="$(mktemp -d)"
prefix="tbench-$(date +%s)-$$:"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  if [ -n "${REDIS_URL:-}" ]; then
    redis-cli -u "$REDIS_URL" --scan --pattern "${prefix}*" 2>/dev/null | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
. scripts/bench-lib.sh
bench_binary "$work"

{
  printf 'tables:\n  count: %s\n  betting_window: 1s\n' "$TABLES"
  [ -n "${REDIS_URL:-}" ] && printf '  key_prefix: "%s"\n' "$prefix"
  printf '%s\n' "${EXTRA_CONFIG:-}"
} >"$work/tables.yaml"
log "serve: $TABLES tables${REDIS_URL:+ in $REDIS_URL}"
"$work/buzzer" serve --data-dir "$work/data" --config "$work/tables.yaml" \
  --http-addr 127.0.0.1:27480 --admin-addr 127.0.0.1:27490 --log-level warn \
  ${REDIS_URL:+--redis-url "$REDIS_URL"} >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 1 150); do curl -sf 127.0.0.1:27480/readyz >/dev/null 2>&1 && break; sleep 0.2; done
curl -sf 127.0.0.1:27480/readyz >/dev/null || { cat "$work/serve.err" >&2; exit 1; }

prof_pid=""
if [ -n "${PROFILE_DIR:-}" ]; then
  mkdir -p "$PROFILE_DIR"
  admin_tok="$("$work/buzzer" dev admin-token --data-dir "$work/data")"
  wsecs="${WARMUP%s}"; dsecs="${DURATION%s}"
  psecs=$(( dsecs > 10 ? dsecs - 10 : dsecs ))
  ( sleep $(( wsecs + 8 ))
    curl -sf -H "Authorization: Bearer $admin_tok" -o "$PROFILE_DIR/metrics0.txt" "http://127.0.0.1:27490/metrics" || true
    # The load generator: every buzzer process but serve.
    bench_cpu() { ps -C buzzer -o pid=,cputimes= | awk -v s="$server_pid" '$1 != s {c+=$2} END {print c+0}'; }
    bench_profile http://127.0.0.1:27490 "$psecs" bench bench_cpu
  ) &
  prof_pid=$!
fi
log "bench tables: $TABLES × $PLAYERS, warmup $WARMUP, $DURATION, think $THINK"
out="$("$work/buzzer" bench tables --target http://127.0.0.1:27480 --admin http://127.0.0.1:27490 \
  --data-dir "$work/data" --tables "$TABLES" --players-per-table "$PLAYERS" \
  --duration "$DURATION" --warmup "$WARMUP" --think "$THINK" --json)"
[ -n "$prof_pid" ] && wait "$prof_pid"
if [ -n "${PROFILE_DIR:-}" ]; then
  admin_tok="${admin_tok:-$("$work/buzzer" dev admin-token --data-dir "$work/data")}"
  curl -sf -H "Authorization: Bearer $admin_tok" -o "$PROFILE_DIR/metrics.txt" "http://127.0.0.1:27490/metrics" || true
  cp "$work/serve.err" "$PROFILE_DIR/serve.err"
fi
printf '%s\n' "$out"
