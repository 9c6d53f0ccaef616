#!/usr/bin/env bash
# Cross-check of rayltics-bench's open-loop latency against an independent
# tool, oha (crates.io), on the same `GET /healthz` load of a release node:
# A = rayltics-bench, B = oha, alternated A B A B ..., then the median of the
# per-pair ratios oha/rayltics-bench for p50, p90 and p99. Exits 1 when the
# agreed configuration's p50 or p99 ratio is off by more than TOLERANCE.
#
# The agreed configuration (why: BENCHMARKS.md, "Agreement with an independent
# tool (oha)"):
#   rayltics-bench run --rate RATE --connections CONNS --cpus GEN_CPU --warmup W --duration D
#       (default --spin 100us: sends leave on time, and at 1 ms gaps it still
#       sleeps while waiting for the answer, as oha does)
#   oha -q RATE -c CONNS --worker-threads 1 -z W+D --db-url ...   (no --latency-correction)
# with RATE <= 1000: oha's rate limiter sleeps on tokio's 1 ms timer wheel, so
# above 1 000 req/s it sends rate/1000 requests at once every millisecond, a
# different load from evenly spaced arrivals. oha's percentiles are computed
# from its per-request records (--db-url) after the warm-up, as rayltics-bench
# does; oha's own summary (whole run, first request of each connection with
# its TCP connect) is printed beside them. One connection by default: with
# one request at a time on one connection, both tools do the same thing.
#
# Every run is pinned: node on SERVER_CPU (`serve --shards 1`), generators on
# GEN_CPU; at rates <= 1000 both generators run under `chrt -f 1` (GEN_RT=1):
# on this VM kernel threads (kdamond.0: up to 8 ms at a time) otherwise take
# the generator's core about once a second, which rayltics-bench charges to
# the requests due meanwhile (from their intended time) and oha does not (its
# clock starts when it writes), a difference of method, not of the server. Before each pair the script waits for the 1-minute load average to
# fall below MAX_LOAD and for 2 s without foreign CPU use; a pair during which
# other processes used more than FOREIGN_MAX of a core is run again (up to
# RETRIES times). The machine is shared: never trust a run that was not quiet.
#
# EXPLAIN=1 adds EXPLAIN_PAIRS pair(s) of configurations that do NOT measure
# the same thing, to show the gaps: each tool's floor against
# `rayltics-bench null-server` (RATE, CONNS), RATE with EXPLAIN_CONNS
# connections, and at each of EXPLAIN_RATES (EXPLAIN_CONNS connections): oha
# without and with --latency-correction and with its default worker threads,
# rayltics-bench with its default --spin and with --spin 0s. Each oha run
# prints its burst share (requests written < 20 us after the previous one).
# oha's "aborted due to deadline" errors are its idle connection tasks
# cancelled at -z, not failed requests.
#
# Environment (defaults in brackets):
#   RATE [1000]  CONNS [1]  WARMUP [2] and DURATION [20] (seconds)  PAIRS [5]
#   TOLERANCE [0.10]  SERVER_CPU [0]  GEN_CPU [1]  PORT [18080]  NULL_PORT [18083]
#   MAX_LOAD [1.0]  FOREIGN_MAX [0.05] (cores)  RETRIES [3]  GEN_RT [1] (0: no chrt)
#   EXPLAIN=1  EXPLAIN_RATES ["5000 20000"]  EXPLAIN_CONNS [64]  EXPLAIN_PAIRS [1]
#   OHA_VERSION [1.16.0]  TOOLS [$HOME/.cache/rayltics/tools] (oha is
#   installed there with `cargo install --locked`, once)
#   SKIP_BUILD=1  RAYLTICS_BIN, BENCH_BIN [$CARGO_TARGET_DIR/release/...]
#   OUT [target/bench-results/oha-agreement-<UTC stamp>]
# Exit status: 0 agree, 1 disagree, 2 could not measure.
set -euo pipefail
cd "$(dirname "$0")/../.."
export RAYLTICS_CACHE="${RAYLTICS_CACHE:-$HOME/.cache/rayltics}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RAYLTICS_CACHE/target}"
export PATH="$HOME/.cargo/bin:$PATH"

RATE="${RATE:-1000}"
CONNS="${CONNS:-1}"
EXPLAIN_CONNS="${EXPLAIN_CONNS:-64}"
WARMUP="${WARMUP:-2}"
DURATION="${DURATION:-20}"
PAIRS="${PAIRS:-5}"
TOLERANCE="${TOLERANCE:-0.10}"
SERVER_CPU="${SERVER_CPU:-0}"
GEN_CPU="${GEN_CPU:-1}"
PORT="${PORT:-18080}"
NULL_PORT="${NULL_PORT:-18083}"
MAX_LOAD="${MAX_LOAD:-1.0}"
FOREIGN_MAX="${FOREIGN_MAX:-0.05}"
RETRIES="${RETRIES:-3}"
EXPLAIN="${EXPLAIN:-0}"
GEN_RT="${GEN_RT:-1}"
EXPLAIN_RATES="${EXPLAIN_RATES:-5000 20000}"
EXPLAIN_PAIRS="${EXPLAIN_PAIRS:-1}"
OHA_VERSION="${OHA_VERSION:-1.16.0}"
TOOLS="${TOOLS:-$RAYLTICS_CACHE/tools}"
RAYLTICS_BIN="${RAYLTICS_BIN:-$CARGO_TARGET_DIR/release/rayltics}"
BENCH_BIN="${BENCH_BIN:-$CARGO_TARGET_DIR/release/rayltics-bench}"
OUT="${OUT:-target/bench-results/oha-agreement-$(date -u +%Y%m%dT%H%M%SZ)}"
OHA="$TOOLS/bin/oha"

say() { printf 'oha-agreement: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

command -v taskset >/dev/null || die "taskset is missing (apt-get install util-linux)"
command -v curl >/dev/null || die "curl is missing (apt-get install curl)"
command -v python3 >/dev/null || die "python3 is missing"
python3 -c 'import sqlite3' 2>/dev/null || die "python3 lacks sqlite3 (oha's --db-url records are read with it)"
[ "$(nproc)" -ge 2 ] || say "warning: $(nproc) CPU(s): generators and node will share a core"

# oha, from crates.io, once, at a pinned version.
if ! "$OHA" --version 2>/dev/null | grep -qx "oha $OHA_VERSION"; then
    say "installing oha $OHA_VERSION into $TOOLS"
    cargo install --locked oha --version "$OHA_VERSION" --root "$TOOLS"
fi
say "$("$OHA" --version)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    say "building release binaries into $CARGO_TARGET_DIR"
    if ! cargo build --release --locked -p rayltics -p rayltics-bench --bins; then
        [ -x "$RAYLTICS_BIN" ] && [ -x "$BENCH_BIN" ] || die "build failed and no earlier binaries"
        say "warning: the build failed (someone mid-edit?): using the last good binaries"
    fi
fi
for bin in "$RAYLTICS_BIN" "$BENCH_BIN"; do
    [ -x "$bin" ] || die "$bin is missing (build it, or unset SKIP_BUILD)"
done

SCRATCH="$(mktemp -d -t oha-agreement.XXXXXX)"
# Private copies: a concurrent build must not swap a binary between two runs.
cp "$RAYLTICS_BIN" "$SCRATCH/rayltics"
cp "$BENCH_BIN" "$SCRATCH/rayltics-bench"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -d "$OUT" ] && cp "$SCRATCH"/*.log "$OUT/" 2>/dev/null
    rm -rf "$SCRATCH"
}
trap cleanup EXIT INT TERM

wait_healthy() {
    local port="$1" name="$2" i
    for i in $(seq 1 100); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz" || true)" = 200 ]; then
            return 0
        fi
        sleep 0.1
    done
    cat "$SCRATCH/$name.log" >&2 || true
    die "$name did not answer GET /healthz on port $port"
}

mkdir -p "$OUT"
taskset -c "$SERVER_CPU" "$SCRATCH/rayltics" serve --shards 1 --http-addr "127.0.0.1:$PORT" \
    --grpc-addr 127.0.0.1:0 --data-dir "$SCRATCH/data" >"$SCRATCH/node.log" 2>&1 &
PIDS+=("$!")
NODE_PID="$!"
wait_healthy "$PORT" node
NULL_PID=0
if [ "$EXPLAIN" = 1 ]; then
    taskset -c "$SERVER_CPU" "$SCRATCH/rayltics-bench" null-server --addr "127.0.0.1:$NULL_PORT" \
        >"$SCRATCH/null-server.log" 2>&1 &
    PIDS+=("$!")
    NULL_PID="$!"
    wait_healthy "$NULL_PORT" null-server
fi
say "node on CPU $SERVER_CPU (pid $NODE_PID), generators on CPU $GEN_CPU; results in $OUT"

cat >"$SCRATCH/driver.py" <<'PY'
import json, os, sqlite3, statistics, subprocess, sys, time

E = os.environ
OUT, SCRATCH, OHA = E["OUT"], E["SCRATCH"], E["OHA"]
BENCH = os.path.join(SCRATCH, "rayltics-bench")
GEN_CPU = E["GEN_CPU"]
WARMUP, DURATION = int(E["WARMUP"]), int(E["DURATION"])
OURS = {int(E["NODE_PID"]), int(E["NULL_PID"]), os.getpid()}
TICK = os.sysconf("SC_CLK_TCK")
NODE = f"http://127.0.0.1:{E['PORT']}/healthz"
NULL = f"http://127.0.0.1:{E['NULL_PORT']}/healthz"


def rt(rate):
    """Real-time priority for the generator at low rates (GEN_RT=1): kernel threads
    (kdamond.0 runs up to 8 ms at a time here) then cannot hold the generator's
    core; rayltics-bench would charge such a stall to the requests due during it,
    oha would not (its clock starts when it writes)."""
    return ["chrt", "-f", "1"] if E["GEN_RT"] == "1" and float(rate) <= 1000 else []


def fail(msg):
    print(f"oha-agreement: {msg}", file=sys.stderr)
    sys.exit(2)


def snapshot():
    """CPU ticks of every process but ours (children they reaped included)."""
    d = {}
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) in OURS:
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        d[int(p)] = (s[19], sum(int(x) for x in s[11:15]))
    return d


def foreign(a, b, secs):
    """Cores used by other processes between two snapshots."""
    t = 0
    for p, (start, ticks) in b.items():
        t += ticks - a[p][1] if p in a and a[p][0] == start else ticks
    return t / TICK / secs


def wait_quiet():
    t0 = time.time()
    while True:
        if os.getloadavg()[0] < float(E["MAX_LOAD"]):
            a = snapshot(); time.sleep(2)
            if foreign(a, snapshot(), 2) < 0.03:
                return
        else:
            time.sleep(5)
        if time.time() - t0 > 1800:
            print("oha-agreement: warning: no quiet moment in 30 min, measuring anyway", file=sys.stderr)
            return


def pct(v, p):
    return v[min(len(v) - 1, int(p / 100 * len(v)))] if v else float("nan")


def run_rb(name, url, rate, conns, extra):
    out = os.path.join(OUT, "runs", name)
    cmd = [*rt(rate), "taskset", "-c", GEN_CPU, BENCH, "run", "--target", url, "--target-name", name,
           "--rate", str(rate), "--connections", str(conns), "--cpus", GEN_CPU,
           "--warmup", f"{WARMUP}s", "--duration", f"{DURATION}s", "--out", out, "--quiet", *extra]
    a = snapshot(); t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    f = foreign(a, snapshot(), time.time() - t0)
    if p.returncode != 0:
        fail(f"rayltics-bench failed: {p.stderr[-2000:]}")
    r = json.load(open(os.path.join(out, "result.json")))["runs"][0]
    l = r["latency"]
    return dict(tool="rayltics-bench", name=name, cmd=" ".join(cmd), rps=r["throughput_rps"],
                n=l["count"], p50=l["p50_us"], p90=l["p90_us"], p99=l["p99_us"], p999=l["p99_9_us"],
                errors=sum(r["errors"].values()), gen_cpu=r["generator_cpu_total"],
                lag_p99=r["send_lag"]["generator_p99_us"], lag_max=r["send_lag"]["generator_max_us"],
                late_1ms=r["send_lag"]["late_over_1ms"], queued=r["send_lag"]["queued"], foreign=f)


def run_oha(name, url, rate, conns, extra):
    os.makedirs(os.path.join(OUT, "runs"), exist_ok=True)
    js, db = (os.path.join(OUT, "runs", f"{name}.{x}") for x in ("json", "db"))
    if os.path.exists(db):
        os.remove(db)
    cmd = [*rt(rate), "taskset", "-c", GEN_CPU, OHA, "--no-tui", "-q", str(rate), "-c", str(conns),
           "-z", f"{WARMUP + DURATION}s", *extra, "--output-format", "json", "-o", js,
           "--db-url", db, url]
    a = snapshot(); t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    f = foreign(a, snapshot(), time.time() - t0)
    if p.returncode != 0:
        fail(f"oha failed: {p.stderr[-2000:]}")
    own = json.load(open(js))
    c = sqlite3.connect(db)
    # Requests (successful ones: all that --db-url stores) that started after the warm-up.
    # `duration` runs from the send, or with --latency-correction from the rate
    # limiter's wake-up (oha's own definition); `start` is the send.
    rows = c.execute("select start, duration from oha where start >= ? order by start",
                     (WARMUP,)).fetchall()
    v = sorted(d * 1e6 for _, d in rows)
    starts = [s for s, _ in rows]
    burst = sum(1 for x, y in zip(starts, starts[1:]) if y - x < 20e-6) / max(1, len(starts) - 1)
    op = own["latencyPercentiles"]
    return dict(tool="oha", name=name, cmd=" ".join(cmd), rps=len(rows) / DURATION, n=len(v),
                p50=pct(v, 50), p90=pct(v, 90), p99=pct(v, 99), p999=pct(v, 99.9),
                errors=sum(own["errorDistribution"].values()), error_kinds=own["errorDistribution"],
                burst=burst,
                own_p50=op["p50"] * 1e6, own_p99=op["p99"] * 1e6, foreign=f)


def line(r):
    extra = (f"  burst {r['burst']:.2f}  (oha's own p50 {r['own_p50']:.1f} p99 {r['own_p99']:.1f})"
             if r["tool"] == "oha" else f"  gen cpu {r['gen_cpu']:.2f} lag p99/max {r['lag_p99']:.1f}/"
             f"{r['lag_max']:.0f} late>1ms {r['late_1ms']} queued {r['queued']}")
    return (f"  {r['name']:<34} {r['rps']:>8.0f}/s  p50 {r['p50']:7.1f}  p90 {r['p90']:7.1f}  "
            f"p99 {r['p99']:7.1f}  p99.9 {r['p999']:7.1f} us  err {r['errors']}  "
            f"foreign {r['foreign']:.2f}{extra}")


def pairs(title, n, a, b):
    """n clean pairs of runs a() then b(); returns the list of (ra, rb)."""
    print(f"== {title}", flush=True)
    got = []
    for i in range(n):
        for attempt in range(int(E["RETRIES"]) + 1):
            wait_quiet()
            ra, rb = a(i), b(i)
            noisy = max(ra["foreign"], rb["foreign"]) > float(E["FOREIGN_MAX"])
            print(line(ra)); print(line(rb), flush=True)
            if not noisy:
                break
            print(f"  (pair {i + 1}: other processes were busy; "
                  f"{'again' if attempt < int(E['RETRIES']) else 'kept, marked noisy'})", flush=True)
        ra["noisy"] = rb["noisy"] = noisy
        got.append((ra, rb))
        print(f"  pair {i + 1}: {b(None)} / {a(None)}  p50 x{rb['p50'] / ra['p50']:.3f}  "
              f"p90 x{rb['p90'] / ra['p90']:.3f}  p99 x{rb['p99'] / ra['p99']:.3f}", flush=True)
    return got


def summary(title, got):
    med = lambda k: statistics.median(y[k] / x[k] for x, y in got)
    m = {k: med(k) for k in ("p50", "p90", "p99")}
    print(f"   median ratio over {len(got)} pair(s): p50 x{m['p50']:.3f}  p90 x{m['p90']:.3f}  "
          f"p99 x{m['p99']:.3f}", flush=True)
    return dict(title=title, ratios=m, runs=[[x, y] for x, y in got])


def tool(fn, label, url, rate, conns, extra):
    return lambda i: label if i is None else fn(f"{label}-{rate}-c{conns}-{i + 1}", url, rate, conns, extra)


RATE, CONNS, TOL = float(E["RATE"]), int(E["CONNS"]), float(E["TOLERANCE"])
rate = int(RATE) if RATE == int(RATE) else RATE
results = []
rb_a = tool(run_rb, "rayltics-bench", NODE, rate, CONNS, [])
oha_b = tool(run_oha, "oha", NODE, rate, CONNS, ["--worker-threads", "1"])
agreed = summary("agreed", pairs(f"agreed configuration: {rate} req/s, {CONNS} connection(s), "
                                 f"{WARMUP} s warm-up + {DURATION} s", int(E["PAIRS"]), rb_a, oha_b))
results.append(agreed)

if E["EXPLAIN"] == "1":
    n, xc = int(E["EXPLAIN_PAIRS"]), int(E["EXPLAIN_CONNS"])
    results.append(summary("floor", pairs(
        f"floors: null-server, {rate} req/s, {CONNS} connection(s)", n,
        tool(run_rb, "null-rayltics-bench", NULL, rate, CONNS, []),
        tool(run_oha, "null-oha", NULL, rate, CONNS, ["--worker-threads", "1"]))))
    if xc != CONNS:
        results.append(summary(f"{rate}, {xc} connections", pairs(
            f"{rate} req/s, {xc} connections: rayltics-bench vs oha", n,
            tool(run_rb, "rayltics-bench", NODE, rate, xc, []),
            tool(run_oha, "oha", NODE, rate, xc, ["--worker-threads", "1"]))))
    for r in map(int, E["EXPLAIN_RATES"].split()):
        for ta, tb in (
            (tool(run_rb, "rayltics-bench", NODE, r, xc, []),
             tool(run_oha, "oha", NODE, r, xc, ["--worker-threads", "1"])),
            (tool(run_rb, "rayltics-bench-spin0", NODE, r, xc, ["--spin", "0s"]),
             tool(run_oha, "oha-lc", NODE, r, xc, ["--worker-threads", "1", "--latency-correction"])),
            (tool(run_rb, "rayltics-bench-b", NODE, r, xc, []),
             tool(run_oha, "oha-2threads-lc", NODE, r, xc, ["--latency-correction"])),
        ):
            results.append(summary(f"{r}, {xc} connections: {ta(None)} vs {tb(None)}",
                                   pairs(f"{r} req/s, {xc} connections: {ta(None)} vs {tb(None)}",
                                         n, ta, tb)))

json.dump(dict(rate=rate, connections=CONNS, warmup_s=WARMUP, duration_s=DURATION,
               tolerance=TOL, oha=subprocess.run([OHA, "--version"], capture_output=True,
                                                  text=True).stdout.strip(), results=results),
          open(os.path.join(OUT, "results.json"), "w"), indent=2)
m = agreed["ratios"]
ok = abs(m["p50"] - 1) <= TOL and abs(m["p99"] - 1) <= TOL
noisy = sum(1 for x, _ in agreed["runs"] if x["noisy"])
print(f"\n== agreed configuration ({rate} req/s, {CONNS} connection(s)): oha / rayltics-bench "
      f"p50 x{m['p50']:.3f}  p90 x{m['p90']:.3f}  p99 x{m['p99']:.3f}  (tolerance {TOL:.0%}"
      f"{f', {noisy} noisy pair(s)' if noisy else ''}): {'AGREE' if ok else 'DISAGREE'}")
sys.exit(0 if ok else 1)
PY

export OUT SCRATCH OHA GEN_CPU WARMUP DURATION NODE_PID NULL_PID PORT NULL_PORT MAX_LOAD \
    FOREIGN_MAX RETRIES RATE CONNS TOLERANCE PAIRS EXPLAIN EXPLAIN_RATES EXPLAIN_PAIRS EXPLAIN_CONNS GEN_RT
python3 "$SCRATCH/driver.py" 2>&1 | tee "$OUT/summary.txt"
exit "${PIPESTATUS[0]}"
