#!/usr/bin/env bash
# Installs what is needed and runs one rayltics node on its embedded defaults
# (HTTP 127.0.0.1:8080, gRPC 127.0.0.1:50051, data in ./rayltics-data).
# Extra arguments go to `rayltics serve`, e.g. scripts/run.sh --shards 2
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYLTICS_CACHE="${RAYLTICS_CACHE:-$HOME/.cache/rayltics}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RAYLTICS_CACHE/target}"
scripts/install.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -p rayltics
exec "$CARGO_TARGET_DIR/release/rayltics" serve "$@"
