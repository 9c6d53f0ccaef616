#!/usr/bin/env bash
# Flash-sale purchases on one rayltics shard: the peak rate (closed loop),
# its ratio to GET /healthz of the same node (A B A B ...), then the latency
# of an open loop at a fraction of that peak. Each phase ends with the
# correctness gate (rayltics-bench fails when the units sold do not match the
# 201s), and the node's /metrics are read before and after each phase: the
# server-side purchase latency and the journal's fdatasyncs, to see where the
# time goes.
#
# The node runs pinned to SERVER_CPU with `--shards 1`, its data directory on
# the scratch disk (fdatasync is real); the generator runs pinned to GEN_CPU.
# Password hashing is made cheap (setup speed only: no password is checked
# during the runs). Extra arguments go to every `rayltics-bench run`.
#
# Environment (defaults in brackets):
#   SERVER_CPU [0]  GEN_CPU [1]  CONNS [64]  DURATION [10s]  WARMUP [2s]  PAIRS [3]
#   OPEN_FRACTION [0.8]  OPEN_DURATION [10s]  RATE (open-loop rate instead of
#   OPEN_FRACTION of the measured peak; with PAIRS=0 only the open loop runs,
#   on a fresh node)  PORT [18180]  SKIP_BUILD=1
#   RAYLTICS_BIN [$CARGO_TARGET_DIR/release/rayltics]  BENCH_BIN [.../rayltics-bench]
#   OUT [target/bench-results/flash-sale-<UTC stamp>]
set -euo pipefail
cd "$(dirname "$0")/../.."
export RAYLTICS_CACHE="${RAYLTICS_CACHE:-$HOME/.cache/rayltics}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RAYLTICS_CACHE/target}"
export PATH="$HOME/.cargo/bin:$PATH"

SERVER_CPU="${SERVER_CPU:-0}"
GEN_CPU="${GEN_CPU:-1}"
CONNS="${CONNS:-64}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
PAIRS="${PAIRS:-3}"
OPEN_FRACTION="${OPEN_FRACTION:-0.8}"
OPEN_DURATION="${OPEN_DURATION:-10s}"
PORT="${PORT:-18180}"

# shellcheck source=lib/prelude.sh
. bench/scripts/lib/prelude.sh
bench_prelude flash-sale

NODE=""
cleanup() {
    [ -n "$NODE" ] && kill "$NODE" 2>/dev/null && wait "$NODE" 2>/dev/null
    [ -d "$OUT" ] && cp "$SCRATCH/node.log" "$OUT/node.log" 2>/dev/null
    rm -rf "$SCRATCH"
}
trap cleanup EXIT INT TERM

require_free_port "$PORT"
export RAYLTICS_ADMIN_EMAIL=admin@bench.test RAYLTICS_ADMIN_PASSWORD=admin-password-1
RAYLTICS_COMMERCE__ARGON2_MEMORY_KIB=64 RAYLTICS_COMMERCE__ARGON2_ITERATIONS=1 \
    taskset -c "$SERVER_CPU" "$RAYLTICS_BIN" serve --roles "$SHARD_ROLES" --shards 1 \
    --http-addr "127.0.0.1:$PORT" --grpc-addr 127.0.0.1:0 \
    --data-dir "$SCRATCH/data" >"$SCRATCH/node.log" 2>&1 &
NODE=$!
for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz" || true)" = 200 ] && break
    sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz" || true)" = 200 ] \
    || { cat "$SCRATCH/node.log" >&2; die "the node did not start"; }
mkdir -p "$OUT"
say "node on CPU $SERVER_CPU, generator on CPU $GEN_CPU; results in $OUT"

# /metrics, plus the node's CPU seconds and the machine's load average (a
# noisy neighbour shows there) as comments.
metrics() {
    curl -s "http://127.0.0.1:$PORT/metrics" >"$OUT/$1.prom"
    awk -v hz="$(getconf CLK_TCK)" '{printf "#cpu %f\n", ($14 + $15) / hz}' "/proc/$NODE/stat" >>"$OUT/$1.prom"
    echo "#loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/$1.prom"
    echo "#time $(date +%s.%N)" >>"$OUT/$1.prom"
}
# Every closed-loop run buys as its own CONNS users (the per-user limit of a
# sale is at most 10 000 units, which one fast run of 64 users can reach).
USERS=$((CONNS * (PAIRS > 0 ? PAIRS : 1)))
bench() { taskset -c "$GEN_CPU" "$BENCH_BIN" run --scenario flash-sale \
    --target "http://127.0.0.1:$PORT" --target-name purchase --cpus "$GEN_CPU" --users "$USERS" "$@"; }

metrics closed-before
if [ "$PAIRS" -gt 0 ]; then
    bench --connections "$CONNS" --duration "$DURATION" --warmup "$WARMUP" \
        --baseline-scenario healthz --pairs "$PAIRS" --out "$OUT/closed" "${@}" | tee "$OUT/closed.txt"
    PEAK="$(python3 -c '
import json, statistics, sys
doc = json.load(open(sys.argv[1]))
print(round(statistics.median(r["throughput_rps"] for r in doc["runs"] if r["role"] == "target")))
' "$OUT/closed/result.json")"
    RATE="${RATE:-$(python3 -c "print(round($PEAK * $OPEN_FRACTION))")}"
    say "peak (median of $PAIRS) $PEAK purchases/s; open loop at $RATE/s"
else
    [ -n "${RATE:-}" ] || die "PAIRS=0 needs RATE"
    PEAK="not measured (PAIRS=0)"
fi
metrics closed-after
bench --rate "$RATE" --connections "$CONNS" --duration "$OPEN_DURATION" --warmup "$WARMUP" \
    --out "$OUT/open" "${@}" | tee "$OUT/open.txt"
metrics open-after

# Where the time goes: the node's own view of each phase (deltas of /metrics).
python3 - "$OUT" <<'PY' | tee "$OUT/server.txt"
import re, sys
out = sys.argv[1]
def load(name):
    m = {}
    for line in open(f"{out}/{name}.prom"):
        if line.startswith(("#cpu ", "#time ")):
            m[line[1:].split()[0]] = float(line.split()[1])
        if line.startswith("#loadavg "):
            load_avg[name] = line.split(" ", 1)[1].strip()
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.rpartition(" ")
        m[key] = float(value)
    return m
load_avg = {}
def delta(a, b):
    return {k: v - a.get(k, 0.0) for k, v in b.items()}
PURCHASE = 'route="/api/v1/flash-sales/{id}/purchase",shard="0",status="201"'
HEALTHZ = 'route="/healthz",shard="0",status="200"'
def route(d, sel, label):
    n = d.get(f"rayltics_http_request_duration_seconds_count{{{sel}}}", 0)
    if not n:
        return
    mean = d[f"rayltics_http_request_duration_seconds_sum{{{sel}}}"] / n * 1e3
    buckets = sorted(
        (float(re.search(r'le="([^"]+)"', k).group(1)), v)
        for k, v in d.items()
        if k.startswith("rayltics_http_request_duration_seconds_bucket{") and sel in k
    )
    def q(p):
        return next((le for le, c in buckets if c >= p * n), float("inf")) * 1e3
    print(f"  {label}: {n:.0f} answers, server-side mean {mean:.3f} ms, "
          f"p50 <= {q(0.5):g} ms, p99 <= {q(0.99):g} ms (histogram bucket bounds)")
def journal(d):
    get = lambda kind: d.get(f'rayltics_journal_events_total{{kind="{kind}",shard="0"}}', 0)
    batches, records = get("batches"), get("records")
    secs = d.get('rayltics_journal_fdatasync_seconds_total{shard="0"}', 0)
    if batches:
        print(f"  journal: {batches:.0f} fdatasyncs, {records / batches:.1f} records each, "
              f"mean fdatasync {secs / batches * 1e3:.2f} ms, {secs:.2f} s syncing in total")
for title, a, b in [("closed loop (all pairs, warm-ups included)", "closed-before", "closed-after"),
                    ("open loop (warm-up included)", "closed-after", "open-after")]:
    d = delta(load(a), load(b))
    if not d["time"] or not any("purchase" in k and v for k, v in d.items()):
        continue
    print(f"{title}: node CPU {d['cpu']:.1f} s over {d['time']:.1f} s ({d['cpu'] / d['time']:.0%} of a core); "
          f"load average {load_avg[a]} -> {load_avg[b]}")
    route(d, PURCHASE, "purchase 201")
    route(d, HEALTHZ, "healthz")
    journal(d)
PY

echo
echo "== flash-sale purchases, node on CPU $SERVER_CPU (1 shard), generator on CPU $GEN_CPU, $CONNS connections $*"
[ "$PAIRS" -gt 0 ] && grep -E '^(median|flash-sale gate)' "$OUT/closed.txt"
echo "peak (median closed-loop purchases/s): $PEAK"
grep -E '^(purchase|flash-sale gate)' "$OUT/open.txt"
echo "details: $OUT/*/summary.md, $OUT/server.txt"
