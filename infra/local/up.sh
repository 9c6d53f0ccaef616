#!/usr/bin/env bash
# Start the local test backends that are not already up, on 127.0.0.1, then write and print
# $RAYLTICS_INFRA_DIR/env.sh. Usage: infra/local/up.sh [pg,redis,kafka,mongo,smtp]   (default: all)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# require_free NAME PORT: the port must not be taken by something that is not ours.
require_free() {
  if tcp_open "$2"; then
    die "$1: 127.0.0.1:$2 is already taken by another process; pick another port (see infra/local/README.md)"
  fi
}

# already_up NAME PIDFILE PATTERN PORT: true if our process runs on PORT; dies if it runs on another port.
already_up() {
  local dir have
  dir="$(backend_dir "$1")"
  pid_alive "$2" "$3" || return 1
  have="$(cat "$dir/port" 2>/dev/null || true)"
  [[ "$have" == "$4" ]] || die "$1: already running on port ${have:-?} (wanted $4); run infra/local/down.sh $1 first"
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres; }
pg_running() { pid_alive "$1/postmaster.pid" postgres; }

# A postmaster.pid left by a killed server: postgres refuses to start while its pid still exists (a
# zombie not yet reaped), so wait for that, then drop the file if the pid lingers.
pg_clear_stale_pid() {
  local pidf="$1/postmaster.pid" pid i
  [[ -f "$pidf" ]] || return 0
  pid="$(head -n1 "$pidf")"
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pg: removing stale $pidf (pid $pid is not a running postgres)"
  rm -f "$pidf"
}

up_pg() {
  local port="$RAYLTICS_PG_PORT" dir data logf sockdir have
  dir="$(backend_dir pg)" data="$(backend_dir pg)/data" logf="$(backend_dir pg)/postgres.log"
  pg_bin || die "pg: PostgreSQL is not installed; run infra/local/install.sh pg"
  if pg_running "$data"; then
    have="$(sed -n 4p "$data/postmaster.pid")"
    [[ "$have" == "$port" ]] || die "pg: already running on port $have (wanted $port); run infra/local/down.sh pg first"
    wait_ready pg "$logf" - pg_ready "$port"
    log "pg: already up on 127.0.0.1:$port"
    return 0
  fi
  require_free pg "$port"
  pg_clear_stale_pid "$data"
  mkdir -p "$dir"
  [[ $EUID -ne 0 ]] || chown postgres: "$dir"
  as_pg test -w "$dir" || die "pg: user postgres cannot write $dir (a parent directory not searchable?); set RAYLTICS_INFRA_DIR"
  if [[ ! -s "$data/PG_VERSION" ]]; then
    log "pg: initdb $data"
    rm -rf "$data" "$dir/data.init"
    as_pg "$PG_BIN/initdb" -D "$dir/data.init" -U postgres -A trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
      die "pg: initdb failed; see log $dir/initdb.log"
    echo "include_if_exists = 'rayltics.conf'" >>"$dir/data.init/postgresql.conf"
    mv "$dir/data.init" "$data"
  fi
  # The unix socket lives in the data dir unless that path is too long for sun_path (107 bytes).
  sockdir="$data"
  if ((${#data} + 20 > 107)); then sockdir=""; fi
  # Test settings: loopback only; fsync off is safe against process kills, only an OS crash loses data.
  as_pg tee "$data/rayltics.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sockdir'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  log "pg: starting on 127.0.0.1:$port"
  as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$logf" -w -t "$RAYLTICS_INFRA_TIMEOUT" start >/dev/null 2>&1 || {
    tail -n 20 "$logf" >&2 2>/dev/null || true
    die "pg: pg_ctl start failed; see log $logf"
  }
  wait_ready pg "$logf" - pg_ready "$port"
  if [[ "$("$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
    "select 1 from pg_database where datname = 'rayltics'")" != 1 ]]; then
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres rayltics || die "pg: createdb rayltics failed"
  fi
  log "pg: up on 127.0.0.1:$port"
}

redis_ready() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]; }

up_redis() {
  local port="$RAYLTICS_REDIS_PORT" dir pidf logf
  dir="$(backend_dir redis)" pidf="$(backend_dir redis)/redis.pid" logf="$(backend_dir redis)/redis.log"
  command -v redis-server >/dev/null || die "redis: not installed; run infra/local/install.sh redis"
  if already_up redis "$pidf" redis-server "$port"; then
    wait_ready redis "$logf" "$pidf" redis_ready "$port"
    log "redis: already up on 127.0.0.1:$port"
    return 0
  fi
  require_free redis "$port"
  mkdir -p "$dir"
  echo "$port" >"$dir/port"
  log "redis: starting on 127.0.0.1:$port"
  rm -f "$pidf"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --protected-mode yes \
    --save "" --appendonly no --dir "$dir" --pidfile "$pidf" --logfile "$logf" ||
    die "redis: redis-server failed to start; see log $logf"
  wait_ready redis "$logf" - redis_ready "$port"
  log "redis: up on 127.0.0.1:$port"
}

kafka_ready() { tcp_open "$1" && probe kafka "$1"; }

up_kafka() {
  local port="$RAYLTICS_KAFKA_PORT" dir pidf logf url
  dir="$(backend_dir kafka)" pidf="$(backend_dir kafka)/tansu.pid" logf="$(backend_dir kafka)/tansu.log"
  [[ -x "$TANSU_BIN" ]] || die "kafka: $TANSU_BIN missing; run infra/local/install.sh kafka"
  if already_up kafka "$pidf" tansu "$port"; then
    wait_ready kafka "$logf" "$pidf" kafka_ready "$port"
    log "kafka: already up on 127.0.0.1:$port"
    return 0
  fi
  require_free kafka "$port"
  mkdir -p "$dir"
  echo "$port" >"$dir/port"
  url="tcp://127.0.0.1:$port"
  log "kafka: starting tansu on $url (memory storage: topics are lost on restart)"
  rm -f "$pidf"
  spawn "$pidf" "$logf" env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT \
    "$TANSU_BIN" broker --listener-url "$url" --advertised-listener-url "$url" --storage-engine memory://tansu/
  wait_ready kafka "$logf" "$pidf" kafka_ready "$port"
  log "kafka: up on 127.0.0.1:$port"
}

mongo_ready() { tcp_open "$1" && probe mongo "$1"; }

up_mongo() {
  local port="$RAYLTICS_MONGO_PORT" dir pidf logf
  dir="$(backend_dir mongo)" pidf="$(backend_dir mongo)/secantusd.pid" logf="$(backend_dir mongo)/secantusd.log"
  [[ -x "$MONGO_VENV/bin/secantusd-py" ]] || die "mongo: secantusdb missing; run infra/local/install.sh mongo"
  if already_up mongo "$pidf" secantusd "$port"; then
    wait_ready mongo "$logf" "$pidf" mongo_ready "$port"
    log "mongo: already up on 127.0.0.1:$port"
    return 0
  fi
  require_free mongo "$port"
  mkdir -p "$dir/data"
  echo "$port" >"$dir/port"
  # An explicit (empty) config turns off secantusd's discovery of ./ ~/.secantus/ /etc/secantus/ configs.
  [[ -f "$dir/secantusd.toml" ]] || echo "# settings come from infra/local/up.sh flags" >"$dir/secantusd.toml"
  log "mongo: starting secantusdb on 127.0.0.1:$port"
  rm -f "$pidf"
  spawn "$pidf" "$logf" "$MONGO_VENV/bin/secantusd-py" --config "$dir/secantusd.toml" \
    --host 127.0.0.1 --port "$port" --storage-path "$dir/data"
  wait_ready mongo "$logf" "$pidf" mongo_ready "$port"
  log "mongo: up on 127.0.0.1:$port"
}

smtp_ready() { tcp_open "$1" && probe smtp "$1"; }

up_smtp() {
  local port="$RAYLTICS_SMTP_PORT" dir pidf logf
  dir="$(backend_dir smtp)" pidf="$(backend_dir smtp)/aiosmtpd.pid" logf="$(backend_dir smtp)/aiosmtpd.log"
  [[ -x "$SMTP_VENV/bin/python" ]] || die "smtp: aiosmtpd missing; run infra/local/install.sh smtp"
  if already_up smtp "$pidf" aiosmtpd "$port"; then
    wait_ready smtp "$logf" "$pidf" smtp_ready "$port"
    log "smtp: already up on 127.0.0.1:$port"
    return 0
  fi
  require_free smtp "$port"
  mkdir -p "$dir"
  echo "$port" >"$dir/port"
  log "smtp: starting aiosmtpd on 127.0.0.1:$port (every mail kept in the maildir $dir/maildir)"
  rm -f "$pidf"
  # -n: no setuid to nobody; the Mailbox handler adds X-MailFrom / X-RcptTo headers to what it stores.
  spawn "$pidf" "$logf" "$SMTP_VENV/bin/python" -m aiosmtpd -n -l "127.0.0.1:$port" \
    -c aiosmtpd.handlers.Mailbox "$dir/maildir"
  wait_ready smtp "$logf" "$pidf" smtp_ready "$port"
  log "smtp: up on 127.0.0.1:$port"
}

# env.sh lists every backend of ours that runs now, with the port it runs on.
write_env() {
  local envf="$RAYLTICS_INFRA_DIR/env.sh" p
  {
    echo "# Written by infra/local/up.sh: source it before running the tests."
    # Tests that stop and start a backend (down.sh / up.sh) find this infra dir and its ports here.
    echo "export RAYLTICS_INFRA_DIR=$RAYLTICS_INFRA_DIR"
    if pg_bin && pg_running "$(backend_dir pg)/data"; then
      p="$(sed -n 4p "$(backend_dir pg)/data/postmaster.pid")"
      echo "export RAYLTICS_TEST_PG_URL=postgres://postgres@127.0.0.1:$p/rayltics"
    fi
    if pid_alive "$(backend_dir redis)/redis.pid" redis-server; then
      echo "export RAYLTICS_TEST_REDIS_URL=redis://127.0.0.1:$(cat "$(backend_dir redis)/port")"
    fi
    if pid_alive "$(backend_dir kafka)/tansu.pid" tansu; then
      echo "export RAYLTICS_TEST_KAFKA_BROKERS=127.0.0.1:$(cat "$(backend_dir kafka)/port")"
      echo "export RAYLTICS_KAFKA_PORT=$(cat "$(backend_dir kafka)/port")"
    fi
    if pid_alive "$(backend_dir mongo)/secantusd.pid" secantusd; then
      echo "export RAYLTICS_TEST_MONGO_URL=mongodb://127.0.0.1:$(cat "$(backend_dir mongo)/port")"
      echo "export RAYLTICS_MONGO_PORT=$(cat "$(backend_dir mongo)/port")"
    fi
    if pid_alive "$(backend_dir smtp)/aiosmtpd.pid" aiosmtpd; then
      echo "export RAYLTICS_TEST_SMTP_ADDR=127.0.0.1:$(cat "$(backend_dir smtp)/port")"
      echo "export RAYLTICS_SMTP_PORT=$(cat "$(backend_dir smtp)/port")"
      echo "export RAYLTICS_TEST_SMTP_MAILDIR=$(backend_dir smtp)/maildir"
    fi
  } >"$envf.tmp"
  mv -f "$envf.tmp" "$envf"
  log "wrote $envf"
  cat "$envf"
}

parse_backends "$@"
check_ports
mkdir -p "$RAYLTICS_INFRA_DIR"
RAYLTICS_INFRA_DIR="$(cd "$RAYLTICS_INFRA_DIR" && pwd)"
serialize "$0" "$@"
for b in "${BACKENDS[@]}"; do
  t0=$SECONDS
  "up_$b"
  log "$b: ready after $((SECONDS - t0)) s"
done
write_env
