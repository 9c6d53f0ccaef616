#!/usr/bin/env bash
# Schemathesis run (part of scripts/test.sh): boots a real node, and fuzzes
# every operation of its own GET /openapi.json with schemathesis (from PyPI,
# in a venv cached under $RAYLTICS_CACHE), as the bootstrapped admin. Fails
# on any 5xx, on a response that does not match the documented schema, status
# code or content type.
#
#   RAYLTICS_SCHEMATHESIS_EXAMPLES=N   test cases per operation and phase (default 100)
#   RAYLTICS_SCHEMATHESIS_SEED=N       a fixed seed (default: random, printed)
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYLTICS_CACHE="${RAYLTICS_CACHE:-$HOME/.cache/rayltics}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RAYLTICS_CACHE/target}"

# Pinned: checks and CLI flags change between releases.
SCHEMATHESIS_VERSION="4.32.5"
venv="$RAYLTICS_CACHE/venv-schemathesis"
st="$venv/bin/schemathesis"
if ! "$st" --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
  echo "schemathesis.sh: installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$RAYLTICS_CACHE"
  "${RAYLTICS_PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
    "schemathesis==$SCHEMATHESIS_VERSION"
  "$st" --version >/dev/null
fi

cargo build --locked -q -p rayltics --bins
bin="$CARGO_TARGET_DIR/debug"
work="$(mktemp -d -t rayltics-schemathesis.XXXXXX)"
node_pid=""
# shellcheck source=lib/test-node.sh
. scripts/lib/test-node.sh
cleanup() {
  stop_test_node
  rm -rf "$work"
}
trap cleanup EXIT

admin_email=admin@schemathesis.test admin_password=admin-password-1
export RAYLTICS_ADMIN_EMAIL="$admin_email" RAYLTICS_ADMIN_PASSWORD="$admin_password"
start_test_node schemathesis.sh "$bin" "$work"
base="http://$http"

# The admin's token, and the product the document's examples name (so that
# the examples of orders and flash sales reach past "unknown sku").
token="$(curl -sfS -X POST "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$admin_email\",\"password\":\"$admin_password\"}" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"
curl -sfS -o /dev/null -X POST "$base/api/v1/products" -H 'content-type: application/json' \
  -H "authorization: Bearer $token" \
  -d '{"sku":"TSHIRT-RED-M","name":"T-shirt, red, M","price_cents":1999,"currency":"USD",
       "category":"apparel","stock":1000000}'

seed="${RAYLTICS_SCHEMATHESIS_SEED:-$((RANDOM * 32768 + RANDOM))}"
status=0
# From $work: schemathesis keeps its state (.hypothesis, .schemathesis) in
# the working directory.
(cd "$work" && "$st" run "$base/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "${RAYLTICS_SCHEMATHESIS_EXAMPLES:-100}" --seed "$seed" \
  --generation-database none --request-timeout 10 --no-color \
  -H "Authorization: Bearer $token") || status=$?

if [ "$status" -ne 0 ]; then
  echo "schemathesis.sh: failed (seed $seed; rerun with RAYLTICS_SCHEMATHESIS_SEED=$seed)" >&2
  echo "schemathesis.sh: last lines of the node's log:" >&2
  tail -20 "$work/node.err" >&2
  exit "$status"
fi
if grep -q 'ERROR\|panicked' "$work/node.err"; then
  echo "schemathesis.sh: the node logged errors:" >&2
  grep 'ERROR\|panicked' "$work/node.err" | head -20 >&2
  exit 1
fi
echo "schemathesis.sh: passed (seed $seed)"
