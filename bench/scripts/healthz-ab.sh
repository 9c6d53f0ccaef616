#!/usr/bin/env bash
# GET /healthz, rayltics against nginx and against a minimal hyper server, on
# the same machine in the same session, A B A B ... with medians of the ratios.
#
# Every server runs pinned to SERVER_CPU (one shard / one worker / one thread);
# the generator runs pinned to GEN_CPU with the same connection count against
# each. Extra arguments go to every `rayltics-bench run`, e.g.
#   bench/scripts/healthz-ab.sh --rate 20000      # open loop instead of closed
#   bench/scripts/healthz-ab.sh --pipeline 4
#
# Environment (defaults in brackets):
#   SERVER_CPU [0]  GEN_CPU [1]  CONNS [64]  DURATION [10s]  WARMUP [2s]  PAIRS [3]
#   RAYLTICS_PORT [18080]  NGINX_PORT [18081]  HYPER_PORT [18082]
#   SKIP_BUILD=1      use the binaries already built
#   RAYLTICS_BIN      server binary under test [$CARGO_TARGET_DIR/release/rayltics];
#                     a hyper-healthz path works too, for trying the script out
#   SKIP_NGINX=1 / SKIP_HYPER=1   leave a baseline out
#   OUT               results directory [target/bench-results/healthz-ab-<UTC stamp>]
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
RAYLTICS_PORT="${RAYLTICS_PORT:-18080}"
NGINX_PORT="${NGINX_PORT:-18081}"
HYPER_PORT="${HYPER_PORT:-18082}"
RAYLTICS_BIN="${RAYLTICS_BIN:-$CARGO_TARGET_DIR/release/rayltics}"
BENCH_BIN="$CARGO_TARGET_DIR/release/rayltics-bench"
HYPER_BIN="$CARGO_TARGET_DIR/release/hyper-healthz"
OUT="${OUT:-target/bench-results/healthz-ab-$(date -u +%Y%m%dT%H%M%SZ)}"

say() { printf 'healthz-ab: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

if [ "$(nproc)" -lt 2 ]; then
    say "warning: $(nproc) CPU(s): the generator and the servers will share a core"
fi
command -v taskset >/dev/null || die "taskset is missing (apt-get install util-linux)"
command -v curl >/dev/null || die "curl is missing (apt-get install curl)"
if [ "${SKIP_NGINX:-0}" != 1 ] && ! command -v nginx >/dev/null; then
    die "nginx is missing: apt-get install -y nginx-light (or SKIP_NGINX=1)"
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    say "building release binaries into $CARGO_TARGET_DIR"
    cargo build --release --locked -p rayltics -p rayltics-bench
fi
for bin in "$RAYLTICS_BIN" "$BENCH_BIN" "$HYPER_BIN"; do
    [ -x "$bin" ] || die "$bin is missing (build it, or unset SKIP_BUILD)"
done

SCRATCH="$(mktemp -d -t healthz-ab.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT INT TERM

# Waits until http://127.0.0.1:$1/healthz answers 200; $2 names the server.
wait_healthy() {
    local port="$1" name="$2" i
    for i in $(seq 1 100); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz" || true)" = 200 ]; then
            return 0
        fi
        sleep 0.1
    done
    say "$name did not answer GET /healthz on port $port; its log:"
    cat "$SCRATCH/$name.log" >&2 || true
    exit 1
}

mkdir -p "$OUT"
say "servers on CPU $SERVER_CPU, generator on CPU $GEN_CPU; results in $OUT"

if [ "$(basename "$RAYLTICS_BIN")" = hyper-healthz ]; then
    say "RAYLTICS_BIN is hyper-healthz: trying the script out with it as the target"
    taskset -c "$SERVER_CPU" "$RAYLTICS_BIN" --addr "127.0.0.1:$RAYLTICS_PORT" \
        >"$SCRATCH/rayltics.log" 2>&1 &
else
    taskset -c "$SERVER_CPU" "$RAYLTICS_BIN" serve --shards 1 \
        --http-addr "127.0.0.1:$RAYLTICS_PORT" --grpc-addr 127.0.0.1:0 \
        --data-dir "$SCRATCH/rayltics-data" >"$SCRATCH/rayltics.log" 2>&1 &
fi
PIDS+=("$!")
wait_healthy "$RAYLTICS_PORT" rayltics

BASELINES=()
if [ "${SKIP_NGINX:-0}" != 1 ]; then
    mkdir -p "$SCRATCH/nginx/tmp"
    sed "s/__PORT__/$NGINX_PORT/" bench/baselines/nginx.conf >"$SCRATCH/nginx/nginx.conf"
    taskset -c "$SERVER_CPU" nginx -p "$SCRATCH/nginx/" -c "$SCRATCH/nginx/nginx.conf" \
        -e "$SCRATCH/nginx/error.log" >"$SCRATCH/nginx.log" 2>&1 &
    PIDS+=("$!")
    wait_healthy "$NGINX_PORT" nginx
    BASELINES+=("nginx:$NGINX_PORT")
fi
if [ "${SKIP_HYPER:-0}" != 1 ]; then
    taskset -c "$SERVER_CPU" "$HYPER_BIN" --addr "127.0.0.1:$HYPER_PORT" >"$SCRATCH/hyper.log" 2>&1 &
    PIDS+=("$!")
    wait_healthy "$HYPER_PORT" hyper
    BASELINES+=("hyper:$HYPER_PORT")
fi
[ "${#BASELINES[@]}" -gt 0 ] || die "no baseline left (SKIP_NGINX and SKIP_HYPER both set)"

SUMMARY=()
for baseline in "${BASELINES[@]}"; do
    name="${baseline%%:*}"
    port="${baseline##*:}"
    say "rayltics vs $name: $PAIRS pair(s) of $WARMUP + $DURATION, $CONNS connections"
    taskset -c "$GEN_CPU" "$BENCH_BIN" run --scenario healthz \
        --target "http://127.0.0.1:$RAYLTICS_PORT" --target-name rayltics \
        --baseline "http://127.0.0.1:$port" --baseline-name "$name" --pairs "$PAIRS" \
        --connections "$CONNS" --duration "$DURATION" --warmup "$WARMUP" \
        --cpus "$GEN_CPU" --out "$OUT/rayltics-vs-$name" "$@" | tee "$OUT/rayltics-vs-$name.txt"
    SUMMARY+=("$(grep '^median' "$OUT/rayltics-vs-$name.txt")")
done

echo
echo "== GET /healthz, servers on CPU $SERVER_CPU, generator on CPU $GEN_CPU, $CONNS connections $*"
for line in "${SUMMARY[@]}"; do
    echo "$line"
done
echo "details: $OUT/*/summary.md"
