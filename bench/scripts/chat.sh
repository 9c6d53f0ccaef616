#!/usr/bin/env bash
# WebSocket figures of issue 5, on one node:
#  (a) memory per idle authenticated connection: ws-idle with IDLE_CONNS
#      connections, the node's RSS delta / connections;
#  (b) chat fan-out: one room of MEMBERS members (SENDERS of them send) at each
#      of RATES messages/s (open loop): deliveries/s, per server core and per
#      node CPU-second, p50/p99/p99.9 delivery latency, the node's and the
#      generator's CPU (the generator must not be the limit), the delivery
#      check (every member got every message once, in seq order);
#  (c) the same on a 2-shard node, as ratios to 1 shard.
#
# 1 shard: the node pinned to SERVER_CPU (`--shards 1`), the generator to
# GEN_CPU. 2 shards: the node on both CPUs and the generator on both too (two
# threads): they share the cores, so its figures mix the node's and the
# generator's work (say so when quoting them). Each configuration runs on a
# fresh node (data on the scratch disk: each message is journaled), with cheap
# password hashing (setup only) and the per-connection frame limit raised
# (RAYLTICS_REALTIME__MESSAGES_PER_SECOND / _MESSAGE_BURST; senders send more
# than the default 50/s). A fan-out run above the node's capacity queues: its
# drain after the window may take a while (--timeout 30s), and its latency
# shows the overload.
#
# Before anything the machine must be quiet: load average below LOAD_MAX
# (waits up to QUIET_WAIT seconds, then goes on and says so). Between runs it
# waits until the CPUs were at least 85 % idle over 2 s (the load average
# would still remember the previous run).
#
# Environment (defaults in brackets):
#   SERVER_CPU [0]  GEN_CPU [1]  IDLE_CONNS [10000]  IDLE_HOLD [10s]
#   MEMBERS [1000]  SENDERS [4]  RATES ["50 100 150 200 300"] (messages/s)
#   DURATION [10s]  WARMUP [2s]  SHARDS ["1 2"]  PORT [18190]
#   LOAD_MAX [0.7]  QUIET_WAIT [900]  SKIP_BUILD=1
#   RAYLTICS_BIN [$CARGO_TARGET_DIR/release/rayltics]  BENCH_BIN [.../rayltics-bench]
#   OUT [target/bench-results/chat-<UTC stamp>]
# Extra arguments go to every `rayltics-bench run`.
set -euo pipefail
cd "$(dirname "$0")/../.."
export RAYLTICS_CACHE="${RAYLTICS_CACHE:-$HOME/.cache/rayltics}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RAYLTICS_CACHE/target}"
export PATH="$HOME/.cargo/bin:$PATH"

SERVER_CPU="${SERVER_CPU:-0}"
GEN_CPU="${GEN_CPU:-1}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
IDLE_HOLD="${IDLE_HOLD:-10s}"
MEMBERS="${MEMBERS:-1000}"
SENDERS="${SENDERS:-4}"
RATES="${RATES:-50 100 150 200 300}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
SHARDS="${SHARDS:-1 2}"
PORT="${PORT:-18190}"
LOAD_MAX="${LOAD_MAX:-0.7}"
QUIET_WAIT="${QUIET_WAIT:-900}"

# shellcheck source=lib/prelude.sh
. bench/scripts/lib/prelude.sh
bench_prelude chat
# Both the node and the generator hold IDLE_CONNS sockets.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((IDLE_CONNS + 200)) ] \
    || die "the file limit ($(ulimit -n)) is below $IDLE_CONNS connections: raise the hard limit"

NODE=""
stop_node() {
    if [ -n "$NODE" ]; then
        kill "$NODE" 2>/dev/null && wait "$NODE" 2>/dev/null
        NODE=""
    fi
    return 0
}
cleanup() {
    stop_node
    [ -d "$OUT" ] && cp "$SCRATCH"/node-*.log "$OUT/" 2>/dev/null
    rm -rf "$SCRATCH"
}
trap cleanup EXIT INT TERM
mkdir -p "$OUT"

# The machine is quiet: load average below LOAD_MAX (once, before anything).
waited=0
while awk -v max="$LOAD_MAX" '{exit !($1 >= max)}' /proc/loadavg; do
    if [ "$waited" -ge "$QUIET_WAIT" ]; then
        say "WARNING: load average still $(cut -d' ' -f1 /proc/loadavg) after ${QUIET_WAIT}s: measuring anyway (noisy)"
        echo "noisy: load average $(cut -d' ' -f1-3 /proc/loadavg) at the start" >>"$OUT/notes.txt"
        break
    fi
    [ $((waited % 60)) = 0 ] && say "waiting for load average < $LOAD_MAX (now $(cut -d' ' -f1 /proc/loadavg))"
    sleep 5
    waited=$((waited + 5))
done
echo "start: load average $(cut -d' ' -f1-3 /proc/loadavg); tree $(git describe --always --dirty 2>/dev/null || echo unknown); node binary $(stat -c %y "$RAYLTICS_BIN")" >>"$OUT/notes.txt"

# Between runs: every CPU at least 85 % idle over 2 s (up to 60 s).
settle() {
    for _ in $(seq 1 30); do
        if python3 - <<'PY'; then return 0; fi
import time
def snap():
    f = open("/proc/stat").readline().split()[1:]
    v = [int(x) for x in f]
    return sum(v), v[3] + v[4]
t0, i0 = snap(); time.sleep(2); t1, i1 = snap()
raise SystemExit(0 if (i1 - i0) / max(t1 - t0, 1) >= 0.85 else 1)
PY
    done
    say "WARNING: the CPUs did not go idle between runs"
    echo "noisy: CPUs busy before a run ($(cut -d' ' -f1-3 /proc/loadavg))" >>"$OUT/notes.txt"
}

start_node() { # $1 = shards
    local shards="$1" cpus="$SERVER_CPU"
    [ "$shards" -gt 1 ] && cpus="$SERVER_CPU,$GEN_CPU"
    rm -rf "$SCRATCH/data"
    require_free_port "$PORT"
    RAYLTICS_COMMERCE__ARGON2_MEMORY_KIB=64 RAYLTICS_COMMERCE__ARGON2_ITERATIONS=1 \
    RAYLTICS_REALTIME__MESSAGES_PER_SECOND=1000000 RAYLTICS_REALTIME__MESSAGE_BURST=1000000 \
        taskset -c "$cpus" "$RAYLTICS_BIN" serve --roles "$SHARD_ROLES" --shards "$shards" \
        --http-addr "127.0.0.1:$PORT" --grpc-addr 127.0.0.1:0 \
        --data-dir "$SCRATCH/data" >"$SCRATCH/node-$shards.log" 2>&1 &
    NODE=$!
    for _ in $(seq 1 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz" || true)" = 200 ] && break
        sleep 0.1
    done
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz" || true)" = 200 ] \
        || { cat "$SCRATCH/node-$shards.log" >&2; die "the node did not start"; }
    say "node: $shards shard(s) on CPU(s) $cpus, pid $NODE"
}

for shards in $SHARDS; do
    if [ "$shards" = 1 ]; then
        gen=(taskset -c "$GEN_CPU" "$BENCH_BIN" run --cpus "$GEN_CPU")
    else
        # Shares both cores with the node: no busy polling.
        gen=("$BENCH_BIN" run --cpus "$SERVER_CPU,$GEN_CPU" --spin 0s)
    fi
    common=(--target "http://127.0.0.1:$PORT" --target-name "rayltics-${shards}shard"
        --server-cores "$shards")
    start_node "$shards"
    settle
    "${gen[@]}" --scenario ws-idle "${common[@]}" --connections "$IDLE_CONNS" \
        --node-pid "$NODE" --duration "$IDLE_HOLD" --out "$OUT/idle-$shards" "$@" \
        | tee "$OUT/idle-$shards.txt" \
        || say "ws-idle on $shards shard(s) FAILED (see above)"
    for rate in $RATES; do
        settle
        "${gen[@]}" --scenario chat-fanout "${common[@]}" --rooms 1 --members "$MEMBERS" \
            --senders "$SENDERS" --rate "$rate" --node-pid "$NODE" \
            --warmup "$WARMUP" --duration "$DURATION" --timeout 30s \
            --out "$OUT/fanout-$shards-$rate" "$@" \
            | tee "$OUT/fanout-$shards-$rate.txt" \
            || say "chat-fanout at $rate/s on $shards shard(s) FAILED (see above)"
    done
    stop_node
done
echo "end: load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/notes.txt"

python3 - "$OUT" "$SHARDS" "$RATES" "$IDLE_CONNS" "$MEMBERS" "$SENDERS" <<'PY' | tee "$OUT/figures.txt"
import json, os, sys
out, shards, rates, idle, members, senders = sys.argv[1:7]
shards = shards.split(); rates = rates.split()
def load(name):
    p = os.path.join(out, name, "result.json")
    return json.load(open(p)) if os.path.exists(p) else None
print(f"== WebSocket figures (issue 5), results in {out}")
print(f"(a) memory per idle authenticated connection, {idle} connections (target <= 8192 bytes):")
bpc = {}
for s in shards:
    d = load(f"idle-{s}")
    if not d:
        print(f"  {s} shard(s): no result"); continue
    w = d["runs"][0]["websocket"]; i = w["idle"]
    bpc[s] = i["bytes_per_connection"]
    print(f"  {s} shard(s): {i['bytes_per_connection']:.0f} bytes/connection after {i['settle_s']} s "
          f"({i['bytes_per_connection_end']:.0f} at the end of the hold); RSS {i['rss_before_bytes']/2**20:.1f} -> "
          f"{i['rss_after_bytes']/2**20:.1f} MiB; {w['alive_at_end']} of {w['connections']} answered the final ping; "
          f"check {'passed' if d['ws_check']['passed'] else 'FAILED'}")
print(f"(b) fan-out, 1 room x {members} members, {senders} senders (target >= 500 000 deliveries/s/core, p99 < 10 ms):")
print("  shards  msg/s  deliveries/s  per core  per node CPU-s  p50 ms  p99 ms  p99.9 ms  node CPU  gen busy  gen ceiling  check")
best = {}
for s in shards:
    for r in rates:
        d = load(f"fanout-{s}-{r}")
        if not d:
            print(f"  {s:>6} {r:>6}  no result"); continue
        run = d["runs"][0]; f = run["websocket"]["fanout"]; l = run["latency"]
        node = run["websocket"]["node_cpu"]["cpu_fraction"] if run["websocket"]["node_cpu"] else float("nan")
        ok = d["ws_check"]["passed"]
        print(f"  {s:>6} {r:>6} {f['deliveries_per_s']:>13.0f} {f['deliveries_per_s_per_server_core']:>9.0f} "
              f"{(f['deliveries_per_server_cpu_s'] or 0):>15.0f} {l['p50_us']/1e3:>7.2f} {l['p99_us']/1e3:>7.2f} "
              f"{l['p99_9_us']/1e3:>9.2f} {node:>9.2f} {run['generator_busy_total']:>9.2f} "
              f"{(f['generator_ceiling_deliveries_per_s'] or 0):>12.0f}  {'passed' if ok else 'FAILED'}")
        held = ok and f["deliveries_per_s"] >= 0.99 * f["offered_deliveries_per_s"] and l["p99_us"] < 10_000
        if held and f["deliveries_per_s"] > best.get(s, {}).get("rate", 0):
            best[s] = {"rate": f["deliveries_per_s"], "msgs": float(r), "p99": l["p99_us"] / 1e3,
                       "per_cpu": f["deliveries_per_server_cpu_s"] or 0}
for s in shards:
    b = best.get(s)
    if b:
        print(f"  {s} shard(s): highest rate holding p99 < 10 ms: {b['msgs']:.0f} msg/s = {b['rate']:.0f} deliveries/s "
              f"({b['rate']/int(s):.0f} per core, {b['per_cpu']:.0f} per node CPU-second), p99 {b['p99']:.2f} ms")
    else:
        print(f"  {s} shard(s): no rate held p99 < 10 ms with every message delivered")
if "1" in shards and "2" in shards:
    print("(c) 2 shards / 1 shard (the 2-shard node shares its cores with the generator):")
    if "1" in bpc and "2" in bpc:
        print(f"  bytes per idle connection: x{bpc['2']/bpc['1']:.2f}")
    if "1" in best and "2" in best:
        print(f"  highest deliveries/s holding p99 < 10 ms: x{best['2']['rate']/best['1']['rate']:.2f}; "
              f"per node CPU-second at that rate: x{best['2']['per_cpu']/max(best['1']['per_cpu'],1):.2f}")
    for r in rates:
        a, b = load(f"fanout-1-{r}"), load(f"fanout-2-{r}")
        if a and b:
            la, lb = a["runs"][0]["latency"], b["runs"][0]["latency"]
            fa, fb = a["runs"][0]["websocket"]["fanout"], b["runs"][0]["websocket"]["fanout"]
            print(f"  at {r} msg/s: deliveries/s x{fb['deliveries_per_s']/max(fa['deliveries_per_s'],1):.2f}, "
                  f"p99 x{lb['p99_us']/max(la['p99_us'],1):.2f}, per node CPU-second "
                  f"x{(fb['deliveries_per_server_cpu_s'] or 0)/max(fa['deliveries_per_server_cpu_s'] or 1,1):.2f}")
PY
cat "$OUT/notes.txt"
