#!/usr/bin/env bash
# Flash-sale purchases with `storage = "postgres"` against the embedded
# journal, in the same run (issue 6): two nodes, both `--shards 1` pinned to
# SERVER_CPU, one on the journal (its data directory on the VM's disk, every
# 201 fdatasync'ed) and one on PostgreSQL (a fresh schema, one transaction
# per batch), and the generator pinned to GEN_CPU running closed-loop
# flash-sale runs A = postgres node, B = journal node, A, B ... (PAIRS
# pairs). `rayltics-bench --baseline` sets a scripted scenario up on the
# target only, so each run is its own `rayltics-bench run`: each sets up a
# fresh sale and fresh users, so the per-user limit (10 000 x CONNS users) is
# per run. Every run must pass the correctness gate (units sold == 201s).
# Reported: purchases/s, p50 and p99 of each run, the per-pair ratios
# postgres/journal and their medians, and each node's /metrics before/after
# every run (batch sizes, flush = commit latency, 503s, CPU seconds).
#
# PostgreSQL comes from infra/local (`up.sh pg`, its own infra dir and port so
# it does not collide with the tests' server). It is NOT pinned: it runs on
# whatever core is free, and its CPU is part of the postgres node's cost (the
# summary reports its CPU seconds per run). infra/local configures it for
# tests (fsync, synchronous_commit and full_page_writes off); PG_DURABLE=1
# (the default) turns them on with ALTER SYSTEM in this infra dir, so a
# commit waits for a WAL flush as a journal batch waits for its fdatasync;
# PG_DURABLE=0 puts the test settings back (no flush at all); PG_DURABLE=keep
# leaves the server's settings alone (for a shared server, e.g. the tests').
#
# Extra arguments go to every `rayltics-bench run`.
#
# Environment (defaults in brackets):
#   SERVER_CPU [0]  GEN_CPU [1]  CONNS [64]  DURATION [6s]  WARMUP [1s]  PAIRS [3]
#   PAUSE [1] (seconds between runs)  PG_DURABLE [1]
#   SETTLE_MAX [60] (before each run, wait up to this many seconds until both
#   nodes and PostgreSQL are idle: a snapshot the previous run started, on
#   either node, is not measured in the next one; 0 = do not wait)
#   JOURNAL_PORT [18194]  PG_NODE_PORT [18195]
#   BENCH_INFRA_DIR [/tmp/infra-bench]  BENCH_PG_PORT [55452] (given to
#   infra/local as RAYLTICS_INFRA_DIR and RAYLTICS_PG_PORT; an exported
#   RAYLTICS_INFRA_DIR, e.g. the tests' env.sh, is not used)
#   KEEP_PG=1 (leave PostgreSQL running at the end when this script started
#   it)  WIPE_PG=1 (also delete its data directory then)
#   SKIP_BUILD=1  RAYLTICS_BIN [$CARGO_TARGET_DIR/release/rayltics]
#   BENCH_BIN [.../rayltics-bench]
#   OUT [target/bench-results/storage-<UTC stamp>]
set -euo pipefail
cd "$(dirname "$0")/../.."
export RAYLTICS_CACHE="${RAYLTICS_CACHE:-$HOME/.cache/rayltics}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RAYLTICS_CACHE/target}"
export PATH="$HOME/.cargo/bin:$PATH"

SERVER_CPU="${SERVER_CPU:-0}"
GEN_CPU="${GEN_CPU:-1}"
CONNS="${CONNS:-64}"
DURATION="${DURATION:-6s}"
WARMUP="${WARMUP:-1s}"
PAIRS="${PAIRS:-3}"
PAUSE="${PAUSE:-1}"
SETTLE_MAX="${SETTLE_MAX:-60}"
PG_DURABLE="${PG_DURABLE:-1}"
JOURNAL_PORT="${JOURNAL_PORT:-18194}"
PG_NODE_PORT="${PG_NODE_PORT:-18195}"
INFRA_DIR="${BENCH_INFRA_DIR:-/tmp/infra-bench}"
PG_PORT="${BENCH_PG_PORT:-55452}"

# shellcheck source=lib/prelude.sh
. bench/scripts/lib/prelude.sh
bench_prelude storage
command -v psql >/dev/null || die "psql is missing (apt-get install postgresql-client)"
[ "$PAIRS" -ge 1 ] || die "PAIRS must be at least 1"

JNODE="" PNODE="" PG_STARTED="" PG_URL="" SCHEMA=""
cleanup() {
    local pid
    for pid in "$PNODE" "$JNODE"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    if [ -d "$OUT" ]; then
        cp "$SCRATCH/journal-node.log" "$OUT/journal-node.log" 2>/dev/null
        cp "$SCRATCH/postgres-node.log" "$OUT/postgres-node.log" 2>/dev/null
    fi
    if [ -n "$SCHEMA" ]; then
        psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS \"$SCHEMA\" CASCADE" >/dev/null 2>&1 || true
    fi
    if [ -n "$PG_STARTED" ] && [ "${KEEP_PG:-0}" != 1 ]; then
        if [ "${WIPE_PG:-0}" = 1 ]; then
            infra down.sh --wipe pg >/dev/null 2>&1 || true
        else
            infra down.sh pg >/dev/null 2>&1 || true
        fi
    fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT INT TERM

# PostgreSQL: started here unless already up in this infra dir.
infra() { RAYLTICS_INFRA_DIR="$INFRA_DIR" RAYLTICS_PG_PORT="$PG_PORT" "infra/local/$1" "${@:2}"; }
pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null || PG_STARTED=1
infra up.sh pg >/dev/null
PG_URL="$(sed -n 's/^export RAYLTICS_TEST_PG_URL=//p' "$INFRA_DIR/env.sh")"
[ -n "$PG_URL" ] || die "no RAYLTICS_TEST_PG_URL in $INFRA_DIR/env.sh"
if [ "$PG_DURABLE" = 1 ]; then
    psql -q "$PG_URL" -c "ALTER SYSTEM SET fsync = on" -c "ALTER SYSTEM SET synchronous_commit = on" \
        -c "ALTER SYSTEM SET full_page_writes = on" -c "SELECT pg_reload_conf()" >/dev/null
elif [ "$PG_DURABLE" = 0 ]; then
    psql -q "$PG_URL" -c "ALTER SYSTEM RESET fsync" -c "ALTER SYSTEM RESET synchronous_commit" \
        -c "ALTER SYSTEM RESET full_page_writes" -c "SELECT pg_reload_conf()" >/dev/null
elif [ "$PG_DURABLE" != keep ]; then
    die "PG_DURABLE must be 1, 0 or keep"
fi
sleep 0.3 # the reload reaches the backends at their next command
PG_SETTINGS="$(psql -tA "$PG_URL" -c "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings
    WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'server_version')")"
PG_PID="$(head -n1 "$INFRA_DIR/pg/data/postmaster.pid")"
SCHEMA="bench_storage_$(date -u +%Y%m%d%H%M%S)_$$"

export RAYLTICS_ADMIN_EMAIL=admin@bench.test RAYLTICS_ADMIN_PASSWORD=admin-password-1
# Every role but `workers` (the shards alone, as flash-sale.sh measures them).
ROLES="${SHARD_ROLES:-gateway,auth,catalog,inventory,order,chat}"
start_node() { # NAME PORT [VAR=VALUE ...]: sets LAST_PID
    local name="$1" port="$2"
    shift 2
    require_free_port "$port"
    env RAYLTICS_COMMERCE__ARGON2_MEMORY_KIB=64 RAYLTICS_COMMERCE__ARGON2_ITERATIONS=1 "$@" \
        taskset -c "$SERVER_CPU" "$RAYLTICS_BIN" serve --roles "$ROLES" --shards 1 \
        --http-addr "127.0.0.1:$port" --grpc-addr 127.0.0.1:0 \
        --data-dir "$SCRATCH/$name-data" >"$SCRATCH/$name-node.log" 2>&1 &
    LAST_PID=$!
}
wait_ready() { # NAME PORT PID
    local i
    for i in $(seq 1 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2/readyz" || true)" = 200 ] && return 0
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    cat "$SCRATCH/$1-node.log" >&2
    die "the $1 node did not become ready"
}
start_node journal "$JOURNAL_PORT"
JNODE=$LAST_PID
start_node postgres "$PG_NODE_PORT" RAYLTICS_STORAGE=postgres \
    RAYLTICS_POSTGRES__URL="$PG_URL" RAYLTICS_POSTGRES__SCHEMA="$SCHEMA"
PNODE=$LAST_PID
wait_ready journal "$JOURNAL_PORT" "$JNODE"
wait_ready postgres "$PG_NODE_PORT" "$PNODE"
mkdir -p "$OUT"
curl -s "http://127.0.0.1:$PG_NODE_PORT/readyz" >"$OUT/postgres-readyz.json"
{
    echo "loadavg_start $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "pg_settings $PG_SETTINGS"
    echo "pg_schema $SCHEMA"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty tree)')"
    echo "binaries $RAYLTICS_BIN ($(date -u -r "$RAYLTICS_BIN" +%FT%TZ)) $BENCH_BIN"
} >"$OUT/env.txt"
say "nodes on CPU $SERVER_CPU (journal :$JOURNAL_PORT, postgres :$PG_NODE_PORT schema $SCHEMA),"
say "generator on CPU $GEN_CPU, PostgreSQL (pid $PG_PID, unpinned: any free core) $PG_SETTINGS"
say "results in $OUT"

# CPU seconds of a process (utime + stime + those of its reaped children).
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{printf "%f", ($14 + $15 + $16 + $17) / hz}' "/proc/$1/stat"; }
# PostgreSQL: the postmaster (with its reaped children) and its live children.
pg_cpu() {
    local total pid
    total="$(cpu_of "$PG_PID")"
    for pid in $(pgrep -P "$PG_PID"); do
        total="$(awk -v a="$total" -v b="$(cpu_of "$pid" 2>/dev/null || echo 0)" 'BEGIN {printf "%f", a + b}')"
    done
    echo "$total"
}
# /metrics of node NAME (PORT, PID) into $OUT/RUN-NAME-WHEN.prom, with CPU
# seconds, PostgreSQL's CPU seconds, the load average and the time as comments.
metrics() { # RUN NAME PORT PID WHEN
    local f="$OUT/$1-$2-$5.prom"
    curl -s "http://127.0.0.1:$3/metrics" >"$f"
    {
        echo "#cpu $(cpu_of "$4")"
        echo "#pgcpu $(pg_cpu)"
        psql -tA -F' ' "$PG_URL" -c "SELECT '#pgwal', wal_records, wal_bytes, wal_write, wal_sync FROM pg_stat_wal" \
            -c "SELECT '#pgsize', pg_total_relation_size('\"$SCHEMA\".journal_batches'),
                pg_total_relation_size('\"$SCHEMA\".snapshots'), pg_total_relation_size('\"$SCHEMA\".outbox')" \
            2>/dev/null || true
        echo "#loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "#time $(date +%s.%N)"
    } >>"$f"
}
# Waits (up to SETTLE_MAX s) until the nodes and PostgreSQL together use
# less than 5 % of a core over half a second; prints the seconds waited.
settle() {
    local start now busy
    start="$(date +%s.%N)"
    while :; do
        busy="$( { cpu_of "$JNODE"; echo; cpu_of "$PNODE"; echo; pg_cpu; } | awk '{s += $1} END {printf "%f", s}')"
        sleep 0.5
        now="$( { cpu_of "$JNODE"; echo; cpu_of "$PNODE"; echo; pg_cpu; } | awk '{s += $1} END {printf "%f", s}')"
        awk -v a="$busy" -v b="$now" 'BEGIN {exit !(b - a < 0.025)}' && break
        awk -v s="$start" -v t="$(date +%s.%N)" -v m="$SETTLE_MAX" 'BEGIN {exit !(t - s >= m)}' && break
    done
    awk -v s="$start" -v t="$(date +%s.%N)" 'BEGIN {printf "%.1f", t - s}'
}
FAILED=""
run() { # RUN NAME PORT PID [rayltics-bench args]
    local id="$1" name="$2" port="$3" pid="$4"
    shift 4
    if [ "$SETTLE_MAX" != 0 ]; then
        echo "#settle $(settle)" >"$OUT/$id-$name.settle"
    fi
    metrics "$id" "$name" "$port" "$pid" before
    if ! taskset -c "$GEN_CPU" "$BENCH_BIN" run --scenario flash-sale \
        --target "http://127.0.0.1:$port" --target-name "$name" --cpus "$GEN_CPU" \
        --connections "$CONNS" --duration "$DURATION" --warmup "$WARMUP" --quiet \
        --out "$OUT/$id-$name" "$@" >"$OUT/$id-$name.txt" 2>&1; then
        FAILED="$FAILED $id-$name"
        say "$id $name: rayltics-bench failed (see $OUT/$id-$name.txt)"
        tail -n 5 "$OUT/$id-$name.txt" >&2
    fi
    metrics "$id" "$name" "$port" "$pid" after
    grep -E '^(target|flash-sale gate)' "$OUT/$id-$name.txt" | sed "s/^/  $name: /" >&2 || true
    sleep "$PAUSE"
}
for pair in $(seq 1 "$PAIRS"); do
    say "pair $pair/$PAIRS: A = postgres node, then B = journal node"
    run "pair$pair" postgres "$PG_NODE_PORT" "$PNODE" "$@"
    run "pair$pair" journal "$JOURNAL_PORT" "$JNODE" "$@"
done
for pid in "$PNODE" "$JNODE"; do
    kill -0 "$pid" 2>/dev/null || { FAILED="$FAILED node-$pid-died"; say "node pid $pid died"; }
done
echo "loadavg_end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"

if python3 - "$OUT" "$PAIRS" <<'PY' | tee "$OUT/summary.txt"
import json, os, re, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
env = dict(l.rstrip("\n").split(" ", 1) for l in open(f"{out}/env.txt"))

def prom(path):
    m = {}
    for line in open(path):
        if line.startswith("#") and " " in line and line[1:].split()[0] in ("cpu", "pgcpu", "time"):
            m[line[1:].split()[0]] = float(line.split()[1])
        elif line.startswith("#pgwal "):
            f = line.split()
            m.update(wal_records=float(f[1]), wal_bytes=float(f[2]), wal_writes=float(f[3]), wal_syncs=float(f[4]))
        elif line.startswith("#pgsize "):
            f = line.split()
            m.update(pg_batches_mb=float(f[1]) / 2**20, pg_snapshots_mb=float(f[2]) / 2**20,
                     pg_outbox_mb=float(f[3]) / 2**20)
        elif line.startswith("#loadavg "):
            m["loadavg"] = line.split(" ", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            m[k] = float(v)
    return m

def server(run, node):
    a, b = prom(f"{out}/{run}-{node}-before.prom"), prom(f"{out}/{run}-{node}-after.prom")
    d = {k: v - a.get(k, 0.0) for k, v in b.items() if isinstance(v, float)}
    settle = open(f"{out}/{run}-{node}.settle").read().split()[1] if os.path.exists(f"{out}/{run}-{node}.settle") else "-"
    j = lambda kind: d.get(f'rayltics_journal_events_total{{kind="{kind}",shard="0"}}', 0)
    batches, records, commits = j("batches"), j("records"), j("fdatasyncs")
    flush = d.get('rayltics_journal_fdatasync_seconds_total{shard="0"}', 0)
    status = lambda s: sum(v for k, v in d.items()
                           if k.startswith("rayltics_http_request_duration_seconds_count{")
                           and re.search(f'status="{s}"', k))
    sel = 'route="/api/v1/flash-sales/{id}/purchase",shard="0",status="201"'
    n = d.get(f"rayltics_http_request_duration_seconds_count{{{sel}}}", 0)
    server_ms = d.get(f"rayltics_http_request_duration_seconds_sum{{{sel}}}", 0) / n * 1e3 if n else 0
    return {
        "server_ms": server_ms, "wal_syncs": d.get("wal_syncs", 0), "wal_bytes": d.get("wal_bytes", 0),
        "batches": batches, "records_per_batch": records / batches if batches else 0,
        "bytes_per_batch": j("bytes") / batches if batches else 0,
        "mean_flush_ms": flush / commits * 1e3 if commits else 0, "flush_s": flush,
        "snapshots": j("snapshots"), "s5xx": status("5.."), "s503": status("503"),
        "cpu_s": d["cpu"], "pg_cpu_s": d["pgcpu"], "wall_s": d["time"],
        "load": (a["loadavg"], b["loadavg"]), "settle": settle,
        "tables_mb": (b.get("pg_batches_mb", 0), b.get("pg_snapshots_mb", 0), b.get("pg_outbox_mb", 0)),
    }

rows, bad = [], []
for p in range(1, pairs + 1):
    for node in ("postgres", "journal"):
        path = f"{out}/pair{p}-{node}/result.json"
        if not os.path.exists(path):
            bad.append(f"pair{p}-{node}: no result.json")
            continue
        doc = json.load(open(path))
        r = doc["runs"][0]
        errs = {k: v for k, v in r["errors"].items() if v}
        o = r["outcomes"]
        gate = doc.get("gate") or {}
        if errs or o.get("limit_exceeded") or o.get("sold_out") or not gate.get("passed"):
            bad.append(f"pair{p}-{node}: errors {errs}, outcomes {o}, gate {gate.get('detail')}")
        rows.append(dict(pair=p, node=node, rps=r["throughput_rps"], p50=r["latency"]["p50_us"] / 1e3,
                         p99=r["latency"]["p99_us"] / 1e3, p999=r["latency"]["p99_9_us"] / 1e3,
                         **server(f"pair{p}", node)))

print(f"storage: flash-sale purchases, postgres vs journal node ({env.get('commit')}), "
      f"both --shards 1 on the same core; PostgreSQL unpinned (any free core; its CPU is part of "
      f"the postgres node's cost): {env.get('pg_settings')}")
print(f"load average at start {env.get('loadavg_start')}, at end {env.get('loadavg_end')}")
print()
n = lambda x: f"{x:,.0f}".replace(",", " ")
print("(each run's window: setup + warm-up + measured run; batches, flush and CPU are /metrics and /proc deltas)")
print()
print("| pair | node | purchases/s | p50 ms | p99 ms | server mean ms | batches | records/batch "
      "| mean flush (commit) ms | snapshots | 5xx | node CPU s | PostgreSQL CPU s | WAL syncs | settled after s | load |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for r in rows:
    print(f"| {r['pair']} | {r['node']} | {n(r['rps'])} | {r['p50']:.2f} | {r['p99']:.2f} | {r['server_ms']:.2f} | "
          f"{n(r['batches'])} | {r['records_per_batch']:.1f} | {r['mean_flush_ms']:.3f} | "
          f"{r['snapshots']:.0f} | {r['s5xx']:.0f} | {r['cpu_s']:.1f} | {r['pg_cpu_s']:.1f} | {n(r['wal_syncs'])} | "
          f"{r['settle']} | {r['load'][0].split()[0]} |")
last = rows[-1] if rows else None
if last:
    b, sn, ob = last["tables_mb"]
    print(f"PostgreSQL tables of the postgres node at the end: journal_batches {b:.0f} MiB, snapshots {sn:.0f} MiB, "
          f"outbox {ob:.0f} MiB")
ratios = []
for p in range(1, pairs + 1):
    a = next((r for r in rows if r["pair"] == p and r["node"] == "postgres"), None)
    b = next((r for r in rows if r["pair"] == p and r["node"] == "journal"), None)
    if a and b:
        ratios.append((a["rps"] / b["rps"], a["p99"] / b["p99"], a["p50"] / b["p50"]))
print()
for p, (t, q99, q50) in enumerate(ratios, 1):
    print(f"pair {p}: postgres/journal throughput x{t:.3f}, p99 x{q99:.2f}, p50 x{q50:.2f}")
med = lambda xs: statistics.median(xs) if xs else float("nan")
for node in ("postgres", "journal"):
    rs = [r for r in rows if r["node"] == node]
    print(f"median {node}: {n(med([r['rps'] for r in rs]))} purchases/s, p50 {med([r['p50'] for r in rs]):.2f} ms, "
          f"p99 {med([r['p99'] for r in rs]):.2f} ms; {med([r['records_per_batch'] for r in rs]):.1f} records/batch, "
          f"mean flush {med([r['mean_flush_ms'] for r in rs]):.3f} ms")
print(f"median ratio postgres/journal: throughput x{med([t for t, _, _ in ratios]):.3f} (target >= x0.5), "
      f"p99 x{med([q for _, q, _ in ratios]):.2f}, p50 x{med([q for _, _, q in ratios]):.2f}")
for b in bad:
    print(f"PROBLEM: {b}")
sys.exit(1 if bad else 0)
PY
then :; else FAILED="$FAILED summary"; fi
[ -z "$FAILED" ] || die "failed:$FAILED (details in $OUT)"
