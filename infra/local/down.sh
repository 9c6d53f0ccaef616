#!/usr/bin/env bash
# Stop the local test backends; no error for those not running. --wipe also deletes their data.
# Usage: infra/local/down.sh [--wipe] [pg,redis,kafka,mongo,smtp]   (default: all)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

down_pg() {
  local data
  data="$(backend_dir pg)/data"
  if pid_alive "$data/postmaster.pid" postgres && pg_bin; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$data" -m fast -w -t "$RAYLTICS_INFRA_TIMEOUT" >/dev/null ||
      die "pg: pg_ctl stop failed; see log $(backend_dir pg)/postgres.log"
    log "pg: stopped"
  else
    log "pg: not running"
  fi
}

down_redis() { stop_pidfile redis "$(backend_dir redis)/redis.pid" redis-server; }
down_kafka() { stop_pidfile kafka "$(backend_dir kafka)/tansu.pid" tansu; }
down_mongo() { stop_pidfile mongo "$(backend_dir mongo)/secantusd.pid" secantusd; }
down_smtp() { stop_pidfile smtp "$(backend_dir smtp)/aiosmtpd.pid" aiosmtpd; }

wipe=0
args=()
for arg in "$@"; do
  if [[ "$arg" == --wipe ]]; then wipe=1; else args+=("$arg"); fi
done
parse_backends "${args[@]}"
if [[ -d "$RAYLTICS_INFRA_DIR" ]]; then
  RAYLTICS_INFRA_DIR="$(cd "$RAYLTICS_INFRA_DIR" && pwd)"
  serialize "$0" "$@"
fi
for b in "${BACKENDS[@]}"; do
  "down_$b"
  if [[ $wipe -eq 1 && -d "$(backend_dir "$b")" ]]; then
    rm -rf "$(backend_dir "$b")"
    log "$b: wiped $(backend_dir "$b")"
  fi
done
# Once no backend's directory is left, env.sh and the (then empty) infra dir go too.
if [[ $wipe -eq 1 && -d "$RAYLTICS_INFRA_DIR" ]]; then
  left=0
  for b in "${ALL_BACKENDS[@]}"; do
    [[ ! -d "$(backend_dir "$b")" ]] || left=1
  done
  if [[ $left -eq 0 ]]; then
    rm -f "$RAYLTICS_INFRA_DIR/env.sh" "$RAYLTICS_INFRA_DIR/.lock"
    rmdir "$RAYLTICS_INFRA_DIR" 2>/dev/null || log "left $RAYLTICS_INFRA_DIR in place: it holds other files"
  fi
fi
