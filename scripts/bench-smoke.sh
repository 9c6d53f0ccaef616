#!/usr/bin/env bash
# Bench smoke test (part of scripts/test.sh): boots a real node, drives it
# with rayltics-bench for a few seconds (closed loop, then open loop with a
# pipelined burst off), and fails unless a report was written with traffic
# and no errors. Uses the debug binaries of the current build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${RAYLTICS_CACHE:-$HOME/.cache/rayltics}/target}"

cargo build --locked -q -p rayltics -p rayltics-bench --bins
bin="$CARGO_TARGET_DIR/debug"
work="$(mktemp -d -t rayltics-smoke.XXXXXX)"
node_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/rayltics" serve --http-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --shards 2 \
  --data-dir "$work/data" >"$work/node.out" 2>"$work/node.err" &
node_pid=$!
for _ in $(seq 1 200); do
  grep -q '^rayltics listening' "$work/node.out" 2>/dev/null && break
  sleep 0.1
done
http="$(sed -n 's/^rayltics listening http=\([^ ]*\).*/\1/p' "$work/node.out")"
[ -n "$http" ] || { echo "bench-smoke: node did not start:" >&2; tail -20 "$work/node.err" >&2; exit 1; }

check() { # $1 = results dir: a report with traffic and no errors
  python3 - "$1/result.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["schema_version"] == 1, "schema_version"
for run in doc["runs"]:
    assert run["ok"] > 0, f"{run['name']}: no successful requests"
    errors = {k: v for k, v in run["errors"].items() if v}
    assert not errors, f"{run['name']}: errors {errors}"
    print(f"bench-smoke: {run['name']}: {run['ok']} ok, {run['throughput_rps']:.0f} req/s, "
          f"p99 {run['latency']['p99_us']:.0f} us")
PY
  [ -s "$1/summary.md" ] || { echo "bench-smoke: no summary.md in $1" >&2; exit 1; }
}

"$bin/rayltics-bench" run --scenario healthz --target "http://$http" \
  --connections 8 --warmup 1s --duration 2s --out "$work/closed" >/dev/null
check "$work/closed"
"$bin/rayltics-bench" run --scenario healthz --target "http://$http" \
  --rate 2000 --connections 8 --warmup 1s --duration 2s --out "$work/open" >/dev/null
check "$work/open"
