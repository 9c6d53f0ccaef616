# Sourced by the measurement scripts after their defaults are set:
#   bench_prelude NAME
# defines say/die (messages prefixed with NAME), checks the tools they use,
# builds the release binaries unless SKIP_BUILD=1, and checks that
# $RAYLTICS_BIN and $BENCH_BIN exist.
bench_prelude() {
    BENCH_SCRIPT_NAME="$1"
    say() { printf '%s: %s\n' "$BENCH_SCRIPT_NAME" "$*" >&2; }
    die() { say "$*"; exit 1; }
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
}
