#!/usr/bin/env bash
# Side-by-side wallet benchmark on one PostgreSQL server, in one run:
#   1. pgbench TPC-B (scale 10) with CLIENTS clients for DURATION — the baseline;
#   2. `buzzer bench bets` with the same client count for the same duration,
#      against `buzzer serve` on a fresh database of the same server (every bet
#      at SERIALIZABLE, with idempotency keys and a share of re-sent requests);
# then prints both figures and their ratio as JSON. Safe to rerun: it makes
# and drops its own databases.
#
#   PGURL=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable \
#   CLIENTS=64 DURATION=30s RETRY_RATE=0.1 scripts/bench-wallet.sh
#
# BUZZER_BIN=/path/to/buzzer uses a binary built beforehand instead of
# building one from the work tree. PROFILE_DIR=/some/dir also saves a CPU
# profile of `serve` over the middle of the load (serve.pprof, from the
# admin listener's /debug/pprof) and the CPU seconds that serve, the load
# generator and PostgreSQL used during it (cpu.txt), so a run shows where
# the two shared cores went, plus a 2 s execution trace (serve.trace) and
# the metrics at its end (metrics.txt). EXTRA_CONFIG is YAML for serve's
# --config, e.g. EXTRA_CONFIG=$'wallet:\n  batch_lanes: 8'.
set -euo pipefail
cd "$(dirname "$0")/.."
PGURL="${PGURL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-30s}"
RETRY_RATE="${RETRY_RATE:-0.1}"
PLAYERS="${PLAYERS:-1000}"
secs="${DURATION%s}"
stamp="$(date +%s)"
PGB_DB="pgbench_${stamp}"
BZ_DB="buzzer_bench_${stamp}"
work="$(mktemp -d)"
db_url() { python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$PGURL" "$1"; }
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  psql "$PGURL" -qc "DROP DATABASE IF EXISTS $PGB_DB WITH (FORCE)" >/dev/null 2>&1 || true
  psql "$PGURL" -qc "DROP DATABASE IF EXISTS $BZ_DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
. scripts/bench-lib.sh
bench_binary "$work"

log "pgbench: init scale 10"
psql "$PGURL" -qc "CREATE DATABASE $PGB_DB" >/dev/null
pgbench -i -s 10 -q "$(db_url "$PGB_DB")" >/dev/null 2>&1
log "pgbench: TPC-B, $CLIENTS clients, ${secs}s"
pgb_out="$(pgbench -c "$CLIENTS" -j 2 -T "$secs" -M prepared -P 5 "$(db_url "$PGB_DB")" 2>&1)"
pgb_tps="$(printf '%s\n' "$pgb_out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n1)"
pgb_lat="$(printf '%s\n' "$pgb_out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' | head -n1)"
log "pgbench: tps=$pgb_tps latency_avg_ms=$pgb_lat"

log "buzzer: serve on $BZ_DB"
psql "$PGURL" -qc "CREATE DATABASE $BZ_DB" >/dev/null
printf '%s\n' "${EXTRA_CONFIG:-}" >"$work/serve.yaml"
"$work/buzzer" serve --data-dir "$work/data" --store "$(db_url "$BZ_DB")" --config "$work/serve.yaml" \
  --http-addr 127.0.0.1:18080 --admin-addr 127.0.0.1:19090 --log-level warn >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 1 100); do curl -sf 127.0.0.1:18080/readyz >/dev/null 2>&1 && break; sleep 0.2; done
curl -sf 127.0.0.1:18080/readyz >/dev/null || { cat "$work/serve.err" >&2; exit 1; }
log "buzzer: bench bets, $CLIENTS clients, $DURATION, retry rate $RETRY_RATE"
prof_pid=""
if [ -n "${PROFILE_DIR:-}" ]; then
  mkdir -p "$PROFILE_DIR"
  admin_tok="$("$work/buzzer" dev admin-token --data-dir "$work/data")"
  # Funding the players takes a few seconds before the bets start; the
  # profile covers the middle of the betting.
  psecs=$(( secs > 8 ? secs - 6 : secs ))
  ( sleep 4
    pg_cpu() { ps -C postgres -o cputimes= 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
    bench_profile http://127.0.0.1:19090 "$psecs" postgres pg_cpu
    curl -sf -H "Authorization: Bearer $admin_tok" -o "$PROFILE_DIR/serve.trace" \
      "http://127.0.0.1:19090/debug/pprof/trace?seconds=2" || true
    curl -sf -H "Authorization: Bearer $admin_tok" -o "$PROFILE_DIR/metrics.txt" \
      "http://127.0.0.1:19090/metrics" || true
  ) &
  prof_pid=$!
fi
bz_json="$(${PROFILE_DIR:+/usr/bin/time -f "bench_bets_cpu user_s %U sys_s %S elapsed_s %e" -a -o "$PROFILE_DIR/bench-time.txt"} "$work/buzzer" bench bets --target http://127.0.0.1:18080 --admin http://127.0.0.1:19090 \
  --data-dir "$work/data" --clients "$CLIENTS" --duration "$DURATION" --players "$PLAYERS" \
  --retry-rate "$RETRY_RATE" --json)"
[ -n "$prof_pid" ] && wait "$prof_pid"
log "buzzer: ledger check"
"$work/buzzer" ledger check --store "$(db_url "$BZ_DB")" >&2

python3 - "$bz_json" "$pgb_tps" "$pgb_lat" "$CLIENTS" "$DURATION" <<'PY'
import json, sys
bz = json.loads(sys.argv[1]); tps = float(sys.argv[2]); lat = float(sys.argv[3])
out = {"clients": int(sys.argv[4]), "duration": sys.argv[5],
       "pgbench_tpcb_tps": tps, "pgbench_latency_avg_ms": lat,
       "buzzer": bz, "ratio_bets_per_s_to_tps": round(bz["bets_per_s"] / tps, 3) if tps else None}
print(json.dumps(out, indent=2))
PY
