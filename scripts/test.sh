#!/usr/bin/env bash
# Runs the whole test suite the way CI does: installs what is missing, starts
# the local backends (PostgreSQL, Redis, a Kafka-protocol broker, a
# MongoDB-wire server) under target/infra, then formatting, lints, tests, and
# against a live node: schemathesis (scripts/schemathesis.sh), the Autobahn
# WebSocket conformance cases (scripts/autobahn.sh, report in target/autobahn)
# and a bench smoke run.
#
#   RAYLTICS_TEST_BACKENDS=pg,redis   start only these (default: all four)
#   RAYLTICS_TEST_BACKENDS=none       start none (tests that need one fail)
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYLTICS_CACHE="${RAYLTICS_CACHE:-$HOME/.cache/rayltics}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RAYLTICS_CACHE/target}"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Absolute, so tests that stop and start a backend (infra/local/down.sh pg, up.sh pg)
# from another directory reach the same servers.
export RAYLTICS_INFRA_DIR="${RAYLTICS_INFRA_DIR:-$PWD/target/infra}"

step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS" >&2; }

step "install"
scripts/install.sh

backends="${RAYLTICS_TEST_BACKENDS:-pg,redis,kafka,mongo,smtp}"
export RAYLTICS_TEST_BACKENDS="$backends"
if [ "$backends" != "none" ]; then
  step "backends: $backends"
  infra/local/install.sh "$backends"
  trap 'infra/local/down.sh "$backends" >/dev/null 2>&1 || true' EXIT
  infra/local/up.sh "$backends"
  # shellcheck disable=SC1091
  source "$RAYLTICS_INFRA_DIR/env.sh"
fi

step "fmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked

# One suite, two stores: the commerce and chat suites again, every node on PostgreSQL.
if [ -n "${RAYLTICS_TEST_PG_URL:-}" ]; then
  step "tests on the PostgreSQL store"
  RAYLTICS_TEST_STORAGE=postgres cargo test -p rayltics --locked \
    --test orders --test flash_sale --test durability --test realtime
fi

step "schemathesis"
scripts/schemathesis.sh

step "autobahn"
scripts/autobahn.sh

step "bench smoke"
scripts/bench-smoke.sh

step "done"
