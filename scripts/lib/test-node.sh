# Sourced by scripts that drive a live node (bench-smoke.sh, schemathesis.sh).
#
# start_test_node NAME BIN_DIR WORK_DIR
#   Starts "$BIN_DIR/rayltics serve" on loopback port 0 with 2 shards, data in
#   WORK_DIR/data, the admin from RAYLTICS_ADMIN_EMAIL / RAYLTICS_ADMIN_PASSWORD
#   (the caller exports them) and cheap password hashing; waits for its
#   "rayltics listening" line. Sets node_pid, http and grpc (HOST:PORT); output goes
#   to WORK_DIR/node.out and WORK_DIR/node.err. NAME prefixes error messages.
#   The caller's EXIT trap should call stop_test_node.

start_test_node() {
  local name="$1" bin="$2" work="$3"
  RAYLTICS_COMMERCE__ARGON2_MEMORY_KIB=64 RAYLTICS_COMMERCE__ARGON2_ITERATIONS=1 \
  RAYLTICS_COMMERCE__LOGIN_BURST=100000 \
  "$bin/rayltics" serve --http-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --shards 2 \
    --data-dir "$work/data" >"$work/node.out" 2>"$work/node.err" &
  node_pid=$!
  for _ in $(seq 1 200); do
    grep -q '^rayltics listening' "$work/node.out" 2>/dev/null && break
    sleep 0.1
  done
  http="$(sed -n 's/^rayltics listening http=\([^ ]*\).*/\1/p' "$work/node.out")"
  grpc="$(sed -n 's/^rayltics listening .*grpc=\([^ ]*\).*/\1/p' "$work/node.out")"
  if [ -z "$http" ]; then
    echo "$name: node did not start:" >&2
    tail -20 "$work/node.err" >&2
    exit 1
  fi
}

# stop_test_node: kills the node started by start_test_node, if any.
stop_test_node() {
  if [ -n "${node_pid:-}" ]; then
    kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
  fi
  return 0
}
