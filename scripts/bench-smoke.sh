#!/usr/bin/env bash
# Bench smoke test (part of scripts/test.sh): boots a real node, drives it
# with rayltics-bench for a few seconds (closed loop, then open loop with a
# pipelined burst off), and fails unless a report was written with traffic
# and no errors. Then the flash-sale scenario: a 300-unit sale bought out by
# 50 users must pass the correctness gate, and the same run checked against a
# stock of 299 (--gate-stock) must fail it. Uses the debug binaries of the
# current build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${RAYLTICS_CACHE:-$HOME/.cache/rayltics}/target}"

cargo build --locked -q -p rayltics -p rayltics-bench --bins
bin="$CARGO_TARGET_DIR/debug"
work="$(mktemp -d -t rayltics-smoke.XXXXXX)"
node_pid=""
# shellcheck source=lib/test-node.sh
. scripts/lib/test-node.sh
cleanup() {
  stop_test_node
  rm -rf "$work"
}
trap cleanup EXIT

# An admin for the flash-sale setup; cheap password hashing for its 50 users.
export RAYLTICS_ADMIN_EMAIL=admin@bench.test RAYLTICS_ADMIN_PASSWORD=admin-password-1
start_test_node bench-smoke "$bin" "$work"

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

# Flash sale: 300 units, at most 10 per user, 50 users on 50 connections
# (room for 500: it sells out). Expected answers (201, 409 sold_out, 403
# limit_exceeded) are not errors; the gate must pass.
flash=(run --scenario flash-sale --target "http://$http" --connections 50 --users 50
  --sale-quantity 300 --per-user-limit 10 --warmup 500ms --duration 2s)
"$bin/rayltics-bench" "${flash[@]}" --out "$work/flash" >/dev/null
python3 - "$work/flash/result.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for run in doc["runs"]:  # the 300 units may all go during the warm-up: no `ok` check
    assert run["requests"] > 0, f"{run['name']}: no answers"
    errors = {k: v for k, v in run["errors"].items() if v}
    assert not errors, f"{run['name']}: errors {errors}"
gate = doc["gate"]
assert gate["passed"] is True, f"gate: {gate}"
assert gate["sold"] == 300 and gate["successful_201s"] == 300, f"not sold out: {gate}"
assert gate["max_per_user"] <= 10 and gate["unanswered"] == 0, f"gate: {gate}"
sold_out = sum(r["outcomes"]["sold_out"] for r in doc["runs"])
assert sold_out > 0, f"no sold_out answers: {[r['outcomes'] for r in doc['runs']]}"
print(f"bench-smoke: flash sale: gate passed ({gate['detail']}), {sold_out} sold_out answers")
PY
grep -q 'gate: PASSED' "$work/flash/summary.md" || { echo "bench-smoke: no gate in summary.md" >&2; exit 1; }

# The same against a gate stock of 299: rayltics-bench must fail, on the gate.
if "$bin/rayltics-bench" "${flash[@]}" --gate-stock 299 --out "$work/flash-bad" \
  >/dev/null 2>"$work/flash-bad.err"; then
  echo "bench-smoke: --gate-stock 299 did not fail the run" >&2
  exit 1
fi
grep -q 'correctness gate FAILED' "$work/flash-bad.err" \
  || { echo "bench-smoke: failed, but not on the gate:" >&2; cat "$work/flash-bad.err" >&2; exit 1; }
python3 - "$work/flash-bad/result.json" <<'PY'
import json, sys
gate = json.load(open(sys.argv[1]))["gate"]
assert gate["passed"] is False and gate["gate_stock"] == 299, f"gate: {gate}"
print(f"bench-smoke: flash sale with --gate-stock 299: gate failed as it must ({gate['detail']})")
PY
grep -q 'gate: FAILED' "$work/flash-bad/summary.md" || { echo "bench-smoke: no failed gate in summary.md" >&2; exit 1; }
