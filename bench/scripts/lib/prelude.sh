# Sourced by the measurement scripts after their defaults are set:
#   bench_prelude NAME
# defines say/die (messages prefixed with NAME), defaults RAYLTICS_BIN and
# BENCH_BIN to the release binaries and OUT to
# target/bench-results/NAME-<UTC stamp>, checks the tools they use, builds
# the release binaries unless SKIP_BUILD=1, checks that $RAYLTICS_BIN and
# $BENCH_BIN exist, and makes a scratch directory $SCRATCH (the script's
# cleanup removes it).
# Every role but `workers`: the shard benchmarks measure the shards alone
# (the email sender would write a mail per order on the node's core).
# shellcheck disable=SC2034 # used by the scripts that source this file
SHARD_ROLES="gateway,auth,catalog,inventory,order,chat"

# Dies unless port $1 on 127.0.0.1 is free: a node left running there would
# share it (the shards listen with SO_REUSEPORT) and answer part of a run.
require_free_port() {
    if curl -s -o /dev/null "http://127.0.0.1:$1/"; then
        die "something already answers on port $1 (a node left running?)"
    fi
}

bench_prelude() {
    BENCH_SCRIPT_NAME="$1"
    say() { printf '%s: %s\n' "$BENCH_SCRIPT_NAME" "$*" >&2; }
    die() { say "$*"; exit 1; }
    RAYLTICS_BIN="${RAYLTICS_BIN:-$CARGO_TARGET_DIR/release/rayltics}"
    BENCH_BIN="${BENCH_BIN:-$CARGO_TARGET_DIR/release/rayltics-bench}"
    OUT="${OUT:-target/bench-results/$BENCH_SCRIPT_NAME-$(date -u +%Y%m%dT%H%M%SZ)}"
    command -v taskset >/dev/null || die "taskset is missing (apt-get install util-linux)"
    command -v curl >/dev/null || die "curl is missing (apt-get install curl)"
    command -v python3 >/dev/null || die "python3 is missing"
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        say "building release binaries into $CARGO_TARGET_DIR"
        cargo build --release --locked -p rayltics -p rayltics-bench
    fi
    local bin
    for bin in "$RAYLTICS_BIN" "$BENCH_BIN"; do
        [ -x "$bin" ] || die "$bin is missing (build it, or unset SKIP_BUILD)"
    done
    SCRATCH="$(mktemp -d -t "$BENCH_SCRIPT_NAME.XXXXXX")"
}
