#!/usr/bin/env bash
# Bench smoke test (part of scripts/test.sh): boots a real node, drives it
# with rayltics-bench for a few seconds (closed loop, then open loop with a
# pipelined burst off), and fails unless a report was written with traffic
# and no errors. Then the flash-sale scenario: a 300-unit sale bought out by
# 50 users must pass the correctness gate, and the same run checked against a
# stock of 299 (--gate-stock) must fail it. Then browse (searches and product
# pages over a 200-product catalog), checkout (cart, order, payment; every 4th
# declined) whose gate lists every order back and must pass (and must fail
# when told to expect declined orders paid), and mixed (bench/scenarios/
# shop.toml, open loop) with both gates. Then the WebSocket scenarios:
# ws-idle (200 connections held, the node's RSS per connection, each must
# answer a ping at the end) and chat-fanout (1 room x 20 members, 2 senders
# within the node's default 50 frames/s per connection) whose delivery check
# must pass. Then gRPC: grpc-who-owns (every answer checked against the
# node's /debug/shards/{key}) and grpc-health, 2 s each, with traffic and no
# errors. Then bench/scripts/storage.sh in a smoke mode (one 1 s flash-sale
# run on a node with storage = "postgres" and one on the journal, its own
# PostgreSQL from infra/local, wiped after): both gates must pass, with no
# errors. Uses the debug binaries of the current build.
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

# Browse: anonymous searches and Zipf-skewed product pages over a catalog of
# 200 products the admin creates (or finds from an earlier run).
"$bin/rayltics-bench" run --scenario browse --target "http://$http" --connections 8 \
  --products 200 --warmup 500ms --duration 2s --out "$work/browse" >/dev/null
check "$work/browse"
python3 - "$work/browse/result.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
steps = {s["step"]: s for s in doc["runs"][0]["steps"]}
assert set(steps) == {"search", "product"}, f"steps {list(steps)}"
for s in steps.values():
    assert s["requests"] > 0 and s["ok"] == s["requests"], f"step {s}"
assert doc["config"]["catalog"]["products"] == 200, doc["config"]["catalog"]
print(f"bench-smoke: browse: {steps['search']['requests']} searches, "
      f"{steps['product']['requests']} product pages")
PY

# Checkout: 16 users, each on its own connection, buy (cart line, order from
# the cart, payment); every 4th payment uses the declined card. The gate lists
# every user's orders back: each 201 must be there, paid or payment_failed as
# the card says (or pending if its payment was never sent).
checkout=(run --scenario checkout --target "http://$http" --connections 16 --products 200
  --decline-every 4 --warmup 500ms --duration 2s)
"$bin/rayltics-bench" "${checkout[@]}" --out "$work/checkout" >/dev/null
check "$work/checkout"
python3 - "$work/checkout/result.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
steps = {s["step"]: s for s in doc["runs"][0]["steps"]}
assert set(steps) == {"cart", "order", "pay"}, f"steps {list(steps)}"
gate = doc["checkout_gate"]
assert gate["passed"] is True, f"checkout gate: {gate}"
assert gate["orders_created"] > 0 and gate["confirmed"] == gate["orders_created"], gate
assert gate["expect_paid"] > 0 and gate["expect_payment_failed"] > 0, gate
assert gate["missing"] == 0 and gate["wrong_status"] == 0 and gate["unanswered"] == 0, gate
o = doc["runs"][0]["outcomes"]
assert o["paid"] > 0 and o["payment_failed"] > 0, o
print(f"bench-smoke: checkout: gate passed ({gate['detail']})")
PY
grep -q 'checkout gate: PASSED' "$work/checkout/summary.md" \
  || { echo "bench-smoke: no checkout gate in summary.md" >&2; exit 1; }
# The gate's self-test: expecting the declined orders paid must fail it.
if "$bin/rayltics-bench" "${checkout[@]}" --gate-expect-paid \
  --out "$work/checkout-bad" >/dev/null 2>"$work/checkout-bad.err"; then
  echo "bench-smoke: --gate-expect-paid did not fail the checkout run" >&2
  exit 1
fi
grep -q 'checkout correctness gate FAILED' "$work/checkout-bad.err" \
  || { echo "bench-smoke: failed, but not on the checkout gate:" >&2; cat "$work/checkout-bad.err" >&2; exit 1; }
echo "bench-smoke: checkout with --gate-expect-paid: gate failed as it must"

# Mixed: browse 80, checkout 15, flash-sale 5 (shares of the requests), open
# loop; both gates must pass and every kind of request must have been sent.
"$bin/rayltics-bench" run --scenario mixed --scenario-file bench/scenarios/shop.toml \
  --target "http://$http" --rate 1000 --connections 16 --products 200 \
  --warmup 500ms --duration 2s --out "$work/mixed" >/dev/null
check "$work/mixed"
python3 - "$work/mixed/result.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
run = doc["runs"][0]
steps = {s["step"]: s["requests"] for s in run["steps"]}
assert set(steps) == {"search", "product", "cart", "order", "pay", "purchase"}, f"steps {steps}"
browse = (steps["search"] + steps["product"]) / run["requests"]
assert 0.7 < browse < 0.9, f"browse share {browse:.2f} of {steps}"
assert doc["gate"]["passed"] is True, f"flash-sale gate: {doc['gate']}"
assert doc["checkout_gate"]["passed"] is True, f"checkout gate: {doc['checkout_gate']}"
print(f"bench-smoke: mixed: {steps}, both gates passed")
PY

# WebSocket: 200 idle authenticated connections (the node's RSS per
# connection), all alive after the hold; then a room of 20 members, 2 of them
# sending 20 messages/s each (under the node's default 50 frames/s per
# connection): every member must get every message once, in seq order.
"$bin/rayltics-bench" run --scenario ws-idle --target "http://$http" --connections 200 \
  --node-pid "$node_pid" --settle 500ms --duration 1s --out "$work/ws-idle" >/dev/null
"$bin/rayltics-bench" run --scenario chat-fanout --target "http://$http" --rooms 1 \
  --members 20 --senders 2 --rate 40 --node-pid "$node_pid" --warmup 500ms --duration 2s \
  --out "$work/chat-fanout" >/dev/null
python3 - "$work/ws-idle/result.json" "$work/chat-fanout/result.json" <<'PY'
import json, sys
idle, fan = (json.load(open(p)) for p in sys.argv[1:3])
for doc in (idle, fan):
    run = doc["runs"][0]
    errors = {k: v for k, v in run["errors"].items() if v}
    assert not errors, f"{doc['config']['scenario']}: errors {errors}"
    assert doc["ws_check"]["passed"] is True, f"{doc['config']['scenario']}: {doc['ws_check']}"
w = idle["runs"][0]["websocket"]
assert w["upgraded"] == 200 and w["alive_at_end"] == 200, w
bpc = w["idle"]["bytes_per_connection"]
assert bpc is not None, w["idle"]  # its value is a figure, not a check
run = fan["runs"][0]
f = run["websocket"]["fanout"]
assert f["acks"] == f["sends_total"] > 0 and run["unanswered_at_end"] == 0, f
assert f["deliveries_total"] == f["acks"] * 20, f
assert run["requests"] > 0 and run["latency"]["p99_us"] > 0, run["latency"]
print(f"bench-smoke: ws-idle: 200 connections, {bpc:.0f} bytes each (debug node); "
      f"chat-fanout: {f['acks']} messages x 20 members, delivery check passed, "
      f"p99 {run['latency']['p99_us']:.0f} us")
PY
for d in ws-idle chat-fanout; do
  grep -q 'websocket check: PASSED' "$work/$d/summary.md" \
    || { echo "bench-smoke: no passed websocket check in $d/summary.md" >&2; exit 1; }
done

# gRPC: NodeService/WhoOwns over 4 channels x 4 streams, keys sku-0..sku-199,
# each answer checked against the owner /debug/shards/{key} reports (2
# shards: both must own some); then Health/Check in an open loop.
"$bin/rayltics-bench" run --scenario grpc-who-owns --target "http://$grpc" \
  --http-target "http://$http" --keys 200 --connections 4 --pipeline 4 \
  --warmup 500ms --duration 2s --out "$work/grpc-who-owns" >/dev/null
check "$work/grpc-who-owns"
"$bin/rayltics-bench" run --scenario grpc-health --target "http://$grpc" \
  --rate 500 --connections 2 --warmup 500ms --duration 2s --out "$work/grpc-health" >/dev/null
check "$work/grpc-health"
python3 - "$work/grpc-who-owns/result.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
run = doc["runs"][0]
g = run["grpc"]
assert g["wrong_answers"] == 0 and g["checked_against_reference"] == run["requests"], g
assert doc["config"]["grpc"]["verified_keys"] == 200, doc["config"]["grpc"]
assert g["shard_count"] == 2 and all(n > 0 for n in g["answers_by_shard"]), g
print(f"bench-smoke: grpc-who-owns: {g['checked_against_reference']} answers checked against "
      f"/debug/shards, by owner shard {g['answers_by_shard']}")
PY
grep -q '## gRPC' "$work/grpc-who-owns/summary.md" \
  || { echo "bench-smoke: no gRPC section in summary.md" >&2; exit 1; }

# Flash sale on the PostgreSQL store next to the journal (issue 6's
# measurement script, kept running): its own PostgreSQL (infra/local, test
# settings, wiped at the end), 16 connections, one 1 s run per node; the
# script fails on a failed gate, an error answer or a dead node.
if compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then
  SKIP_BUILD=1 RAYLTICS_BIN="$bin/rayltics" BENCH_BIN="$bin/rayltics-bench" PAIRS=1 CONNS=16 \
    DURATION=1s WARMUP=500ms PAUSE=0 SETTLE_MAX=5 PG_DURABLE=0 BENCH_INFRA_DIR=/tmp/rayltics-smoke-infra \
    BENCH_PG_PORT=55453 WIPE_PG=1 OUT="$work/storage" bash bench/scripts/storage.sh >/dev/null 2>"$work/storage.err" \
    || { cat "$work/storage.err" >&2; echo "bench-smoke: bench/scripts/storage.sh failed" >&2; exit 1; }
  echo "bench-smoke: storage: $(grep '^median ratio' "$work/storage/summary.txt")"
else
  echo "bench-smoke: storage: skipped (PostgreSQL is not installed; infra/local/install.sh pg)"
fi
