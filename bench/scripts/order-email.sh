#!/usr/bin/env bash
# Order -> email latency (issue 6): a node with the Kafka outbox relay and the
# workers role (email sender over SMTP) turns every `order.created` into a
# confirmation mail; this measures, per order, the time from the order's 201
# to the mail being stored by the SMTP server, at fixed order rates.
#
# Method (exact, per order; no histogram buckets):
#   - start of an order's latency: the wall clock (CLOCK_REALTIME, ns) when
#     the generator read the order's `201` (`rayltics-bench run --scenario
#     checkout --order-times FILE`). The order was committed (journal
#     fdatasync) before its 201 was written, so this start is slightly late:
#     the figure under-states commit -> mail by the commit -> 201-read delay
#     (bounded by the `order` step's latency the bench prints, sent -> 201).
#   - end: the mtime (ns) of the mail's file in the maildir of aiosmtpd
#     (infra/local backend `smtp`, handler `Mailbox`), which writes the file
#     before it answers `250` to DATA: "accepted by the SMTP server". The
#     subject `[shop] Order {id} received` names the order.
#   Every order answered 201 is expected to get exactly one mail; the report
#   counts mails received, missing and duplicated. The workers' own
#   `rayltics_worker_event_age_seconds` (event `at`, ms resolution -> SMTP
#   250 seen by the worker) is read from /metrics as a cross-check, with the
#   relay's and the email sender's batch figures, to see where time goes.
#
# Load: `rayltics-bench run --scenario checkout` in an open loop at a fixed
# arrival rate. A checkout is three requests (cart line, order, payment), so
# `--rate` is 3x the order rate. Only `order.created` mails (the payments use
# the card that pays: `order.paid` sends no mail). Each rate's run starts
# from a drained worker: the script waits until the previous mails arrived.
# Before the rates, a warm-up run (WARM_RATE orders/s for WARM_DURATION)
# makes the worker's consumer join its group (about 1 s on tansu with
# session.timeout.ms 2000) and its SMTP pool connect; it is reported apart.
#
# Backends: `infra/local/up.sh kafka smtp` on their own infra dir and ports
# (so tests using the defaults are not disturbed), pinned to BACKEND_CPU;
# they are stopped and wiped at the end unless KEEP_INFRA=1. The maildir's
# `new/` is emptied at start. The node runs pinned to SERVER_CPU with
# `--shards 1` (its relay and workers threads too), the generator on GEN_CPU.
# Password hashing is made cheap (setup speed only). Extra arguments go to
# every `rayltics-bench run`.
#
# Environment (defaults in brackets):
#   ORDER_RATES ["200 1000"] orders/s (bench --rate = 3x)  DURATION [10s]
#   WARMUP [1s] (the bench's own warm-up of each run; its orders count too)
#   WARM_RATE [20]  WARM_DURATION [3s]  CONNS [64]  DRAIN_TIMEOUT [60] s
#   SERVER_CPU [0]  GEN_CPU [1]  BACKEND_CPU [$GEN_CPU]  PORT [18190]
#   RAYLTICS_INFRA_DIR [/tmp/infra-oe]  KAFKA_PORT [59132]  SMTP_PORT [52545]
#   MAX_WAIT_MS (workers.email.max_wait_ms; unset: the node's default, 10)
#   MAX_BATCH (workers.email.max_batch; default 100)
#   CONCURRENCY (workers.email.concurrency; default 8)
#   LINGER_MS (kafka.linger_ms; default 5)
#   KEEP_INFRA=1  SKIP_BUILD=1
#   RAYLTICS_BIN [$CARGO_TARGET_DIR/release/rayltics]  BENCH_BIN [.../rayltics-bench]
#   OUT [target/bench-results/order-email-<UTC stamp>]
set -euo pipefail
cd "$(dirname "$0")/../.."
export RAYLTICS_CACHE="${RAYLTICS_CACHE:-$HOME/.cache/rayltics}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RAYLTICS_CACHE/target}"
export PATH="$HOME/.cargo/bin:$PATH"

ORDER_RATES="${ORDER_RATES:-200 1000}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-1s}"
WARM_RATE="${WARM_RATE:-20}"
WARM_DURATION="${WARM_DURATION:-3s}"
CONNS="${CONNS:-64}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-60}"
SERVER_CPU="${SERVER_CPU:-0}"
GEN_CPU="${GEN_CPU:-1}"
BACKEND_CPU="${BACKEND_CPU:-$GEN_CPU}"
PORT="${PORT:-18190}"
export RAYLTICS_INFRA_DIR="${RAYLTICS_INFRA_DIR:-/tmp/infra-oe}"
export RAYLTICS_KAFKA_PORT="${KAFKA_PORT:-59132}"
export RAYLTICS_SMTP_PORT="${SMTP_PORT:-52545}"

# shellcheck source=lib/prelude.sh
. bench/scripts/lib/prelude.sh
bench_prelude order-email

NODE=""
INFRA_UP=0
cleanup() {
    [ -n "$NODE" ] && kill "$NODE" 2>/dev/null && wait "$NODE" 2>/dev/null
    [ -d "$OUT" ] && cp "$SCRATCH/node.log" "$OUT/node.log" 2>/dev/null
    if [ "$INFRA_UP" = 1 ] && [ "${KEEP_INFRA:-0}" != 1 ]; then
        infra/local/down.sh --wipe kafka smtp >/dev/null 2>&1 || true
    fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT INT TERM

mkdir -p "$OUT"
say "backends kafka + smtp in $RAYLTICS_INFRA_DIR (ports $RAYLTICS_KAFKA_PORT, $RAYLTICS_SMTP_PORT) on CPU $BACKEND_CPU"
INFRA_UP=1
taskset -c "$BACKEND_CPU" infra/local/up.sh kafka smtp >"$OUT/infra-up.txt" 2>&1 \
    || { cat "$OUT/infra-up.txt" >&2; die "infra/local/up.sh kafka smtp failed"; }
# shellcheck disable=SC1091
. "$RAYLTICS_INFRA_DIR/env.sh"
MAILDIR="$RAYLTICS_TEST_SMTP_MAILDIR"
[ -d "$MAILDIR/new" ] || die "no maildir at $MAILDIR"
find "$MAILDIR/new" "$MAILDIR/cur" -type f -delete

export RAYLTICS_ADMIN_EMAIL=admin@bench.test RAYLTICS_ADMIN_PASSWORD=admin-password-1
node_env=(
    RAYLTICS_COMMERCE__ARGON2_MEMORY_KIB=64 RAYLTICS_COMMERCE__ARGON2_ITERATIONS=1
    RAYLTICS_KAFKA__BROKERS="$RAYLTICS_TEST_KAFKA_BROKERS"
    RAYLTICS_WORKERS__SESSION_TIMEOUT_MS=2000
    RAYLTICS_WORKERS__EMAIL__TRANSPORT=smtp
    RAYLTICS_WORKERS__EMAIL__SMTP_HOST=127.0.0.1
    RAYLTICS_WORKERS__EMAIL__SMTP_PORT="$RAYLTICS_SMTP_PORT"
)
[ -n "${MAX_WAIT_MS:-}" ] && node_env+=(RAYLTICS_WORKERS__EMAIL__MAX_WAIT_MS="$MAX_WAIT_MS")
[ -n "${MAX_BATCH:-}" ] && node_env+=(RAYLTICS_WORKERS__EMAIL__MAX_BATCH="$MAX_BATCH")
[ -n "${CONCURRENCY:-}" ] && node_env+=(RAYLTICS_WORKERS__EMAIL__CONCURRENCY="$CONCURRENCY")
[ -n "${LINGER_MS:-}" ] && node_env+=(RAYLTICS_KAFKA__LINGER_MS="$LINGER_MS")
printf '%s\n' "${node_env[@]}" >"$OUT/node-env.txt"
require_free_port "$PORT"
env "${node_env[@]}" taskset -c "$SERVER_CPU" "$RAYLTICS_BIN" serve --shards 1 \
    --http-addr "127.0.0.1:$PORT" --grpc-addr 127.0.0.1:0 \
    --data-dir "$SCRATCH/data" >"$SCRATCH/node.log" 2>&1 &
NODE=$!
for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz" || true)" = 200 ] && break
    sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz" || true)" = 200 ] \
    || { cat "$SCRATCH/node.log" >&2; die "the node did not become ready"; }
curl -s "http://127.0.0.1:$PORT/readyz" >"$OUT/readyz.json" || true
say "node on CPU $SERVER_CPU, generator on CPU $GEN_CPU; results in $OUT"

# /metrics, plus the node's CPU seconds and the machine's load average.
metrics() {
    curl -s "http://127.0.0.1:$PORT/metrics" >"$OUT/$1.prom"
    awk -v hz="$(getconf CLK_TCK)" '{printf "#cpu %f\n", ($14 + $15) / hz}' "/proc/$NODE/stat" >>"$OUT/$1.prom"
    echo "#loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/$1.prom"
    echo "#time $(date +%s.%N)" >>"$OUT/$1.prom"
}
bench() { taskset -c "$GEN_CPU" "$BENCH_BIN" run --scenario checkout \
    --target "http://127.0.0.1:$PORT" --target-name checkout --cpus "$GEN_CPU" \
    --connections "$CONNS" "$@"; }
# Waits until the maildir holds at least $1 mails or DRAIN_TIMEOUT passed.
drain() {
    local want="$1" t0 have
    t0=$(date +%s)
    while :; do
        have=$(find "$MAILDIR/new" -type f | wc -l)
        [ "$have" -ge "$want" ] && return 0
        [ $(($(date +%s) - t0)) -ge "$DRAIN_TIMEOUT" ] && {
            say "drain: $have mails of $want after ${DRAIN_TIMEOUT}s"
            return 0
        }
        sleep 0.5
    done
}
orders_in() { wc -l <"$1" | tr -d ' '; }

phase() { # NAME ORDER_RATE DURATION WARMUP [bench args]
    local name="$1" rate="$2" dur="$3" warm="$4"
    shift 4
    local before
    before=$(find "$MAILDIR/new" -type f | wc -l)
    metrics "$name-before"
    say "$name: $rate orders/s (--rate $((rate * 3))) for $dur after $warm"
    bench --rate "$((rate * 3))" --duration "$dur" --warmup "$warm" \
        --order-times "$OUT/$name.orders.tsv" --out "$OUT/$name" "$@" | tee "$OUT/$name.txt"
    drain $((before + $(orders_in "$OUT/$name.orders.tsv")))
    metrics "$name-after"
}

phase warm "$WARM_RATE" "$WARM_DURATION" 0s "$@"
PHASES=(warm)
for r in $ORDER_RATES; do
    phase "rate-$r" "$r" "$DURATION" "$WARMUP" "$@"
    PHASES+=("rate-$r")
done

python3 - "$OUT" "$MAILDIR" "${PHASES[@]}" <<'PY' | tee "$OUT/latency.txt"
import email, email.policy, json, math, os, re, sys
out, maildir, phases = sys.argv[1], sys.argv[2], sys.argv[3:]

# Mails: order id -> arrival times (ns), from the subject of each file.
SUBJECT = re.compile(r"Order (\S+) received")
arrived = {}
for sub in ("new", "cur"):
    d = os.path.join(maildir, sub)
    for f in os.listdir(d):
        p = os.path.join(d, f)
        with open(p, "rb") as fh:
            msg = email.message_from_binary_file(fh, policy=email.policy.default)
        m = SUBJECT.search(str(msg.get("subject", "")))
        if m:
            arrived.setdefault(m.group(1), []).append(os.stat(p).st_mtime_ns)

def load(name):
    m, meta = {}, {}
    for line in open(f"{out}/{name}.prom"):
        if line.startswith(("#cpu ", "#time ")):
            m[line[1:].split()[0]] = float(line.split()[1])
        elif line.startswith("#loadavg "):
            meta["loadavg"] = line.split(" ", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            m[key] = float(value)
    return m, meta

def hist(d, family, sel=""):
    """(count, sum, [(le, cumulative)]) of a histogram family in delta d."""
    n = sum(v for k, v in d.items() if k.startswith(family + "_count") and sel in k)
    s = sum(v for k, v in d.items() if k.startswith(family + "_sum") and sel in k)
    by_le = {}
    for k, v in d.items():
        if k.startswith(family + "_bucket{") and sel in k:
            le = float(re.search(r'le="([^"]+)"', k).group(1))
            by_le[le] = by_le.get(le, 0) + v
    return n, s, sorted(by_le.items())

def bucket_q(buckets, n, p):
    return next((le for le, c in buckets if c >= p * n), float("inf"))

def pct(xs, p):  # nearest rank on sorted xs
    return xs[min(len(xs) - 1, max(0, math.ceil(p * len(xs)) - 1))]

summary = []
for name in phases:
    rows = [l.split("\t") for l in open(f"{out}/{name}.orders.tsv").read().splitlines() if l]
    lat, missing, dup = [], 0, 0
    for oid, ns in rows:
        got = arrived.get(oid)
        if not got:
            missing += 1
            continue
        dup += len(got) - 1
        lat.append((min(got) - int(ns)) / 1e6)
    lat.sort()
    (a, ma), (b, mb) = load(f"{name}-before"), load(f"{name}-after")
    d = {k: v - a.get(k, 0.0) for k, v in b.items()}
    r = {"phase": name, "orders": len(rows), "mails": len(lat), "missing": missing,
         "duplicates": dup, "loadavg": [ma.get("loadavg"), mb.get("loadavg")],
         "node_cpu_share": d["cpu"] / d["time"] if d.get("time") else None}
    print(f"{name}: {len(rows)} orders answered 201, {len(lat)} with a mail, {missing} without, "
          f"{dup} duplicate mails; load average {ma.get('loadavg')} -> {mb.get('loadavg')}; "
          f"node CPU {d['cpu']:.1f} s over {d['time']:.1f} s (incl. drain)")
    if lat:
        r.update({k: pct(lat, p) for k, p in
                  [("p50_ms", .5), ("p90_ms", .9), ("p99_ms", .99), ("p999_ms", .999)]})
        r.update(min_ms=lat[0], max_ms=lat[-1], mean_ms=sum(lat) / len(lat))
        print(f"  201 read -> mail stored (exact, per order): p50 {r['p50_ms']:.1f} ms, "
              f"p90 {r['p90_ms']:.1f}, p99 {r['p99_ms']:.1f}, p99.9 {r['p999_ms']:.1f}, "
              f"max {r['max_ms']:.1f}, min {r['min_ms']:.1f}, mean {r['mean_ms']:.1f} ms")
    n, s, bk = hist(d, "rayltics_worker_event_age_seconds", 'worker="email"')
    if n:
        r["worker_event_age"] = {"n": n, "mean_ms": s / n * 1e3,
                                 "p50_le_ms": bucket_q(bk, n, .5) * 1e3,
                                 "p99_le_ms": bucket_q(bk, n, .99) * 1e3}
        print(f"  worker_event_age_seconds (event at -> SMTP 250, ms clock): {n:.0f} mails, "
              f"mean {s / n * 1e3:.1f} ms, p50 <= {bucket_q(bk, n, .5) * 1e3:g} ms, "
              f"p99 <= {bucket_q(bk, n, .99) * 1e3:g} ms (bucket bounds)")
    n, s, bk = hist(d, "rayltics_worker_batch_size", 'worker="email"')
    n2, s2, _ = hist(d, "rayltics_worker_batch_duration_seconds", 'worker="email"')
    if n:
        print(f"  email sender: {n:.0f} batches, {s / n:.1f} events each (created + paid), "
              f"mean batch handling (mails + sent-log fsync + offset commit) {s2 / max(n2, 1) * 1e3:.1f} ms")
    n, s, bk = hist(d, "rayltics_outbox_publish_lag_seconds")
    if n:
        print(f"  relay: {n:.0f} events acknowledged by the broker, commit -> ack mean "
              f"{s / n * 1e3:.1f} ms, p99 <= {bucket_q(bk, n, .99) * 1e3:g} ms (bucket bounds)")
    n, s, bk = hist(d, "rayltics_kafka_publish_batch_events")
    if n:
        print(f"  relay: {n:.0f} publish batches, {s / n:.1f} events each")
    summary.append(r)
json.dump(summary, open(f"{out}/latency.json", "w"), indent=1)
PY

echo
echo "== order -> email (SMTP accepted), node on CPU $SERVER_CPU (1 shard), generator on CPU $GEN_CPU, backends on CPU $BACKEND_CPU $*"
echo "node settings: $(grep -E 'MAX_WAIT|MAX_BATCH|CONCURRENCY|LINGER' "$OUT/node-env.txt" | tr '\n' ' ')(others default)"
grep -E '^(warm|rate-|  201 read)' "$OUT/latency.txt"
echo "details: $OUT/latency.txt, $OUT/latency.json, $OUT/*/summary.md"
