#!/usr/bin/env bash
# WebSocket conformance (part of scripts/test.sh): boots a real node with its
# echo endpoint on (RAYLTICS_REALTIME__ECHO_ENDPOINT=true; off by default) and
# runs the Autobahn|Testsuite fuzzing client against ws://HOST:PORT/ws/echo,
# core sections 1-7, 9 and 10 (12.* and 13.* test permessage-deflate, which
# the server does not offer). The report (index.html, index.json, a JSON and
# an HTML file per case, the runner's and the node's logs) is kept under
# target/autobahn/ as a CI artifact. Fails unless every case's behavior is OK,
# NON-STRICT or INFORMATIONAL and its closing behavior OK or INFORMATIONAL.
#
# The fuzzing client, installed on first use into a venv under $RAYLTICS_CACHE:
#   wstest   preferred: Autobahn|Testsuite 25.10.1 itself, the reference,
#            under Python 2.7 ($RAYLTICS_PYTHON2, else pyenv's 2.7.18, else
#            python2.7 on PATH). Debian 12 has no Python 2 package, and pyenv
#            builds 2.7 from python.org sources, which cannot be fetched here:
#            a machine without a Python 2.7 already on it uses the fallback.
#   kosoku   fallback: kosoku (PyPI), the Autobahn|Testsuite case files driven
#            by a Rust runner under Python 3; writes the same index.json.
#
#   RAYLTICS_AUTOBAHN_RUNNER=wstest|kosoku   force one (default: wstest when a
#                                            Python 2.7 is found, else kosoku)
#   RAYLTICS_AUTOBAHN_CASES='1.* 9.7.*'      the cases to run (default: the
#                                            core sections above)
#   RAYLTICS_AUTOBAHN_URL=ws://HOST:PORT/P   test that server instead of
#                                            booting a node
#   RAYLTICS_AUTOBAHN_TIMEOUT=SECONDS        stop the runner after this long
#                                            (default 1200)
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYLTICS_CACHE="${RAYLTICS_CACHE:-$HOME/.cache/rayltics}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RAYLTICS_CACHE/target}"

# Pinned: verdicts change between releases. The Python 2.7 dependencies are
# pinned too, to the set that installed and ran here (pip would otherwise pick
# whatever still claims Python 2 support).
AUTOBAHN_VERSION="25.10.1"
AUTOBAHN_PY27_PINS=(attrs==21.4.0 autobahn==0.10.9 Automat==22.10.0 cffi==1.15.1
  constantly==15.1.0 cryptography==3.3.2 enum34==1.1.10 hyperlink==21.0.0 idna==2.10
  incremental==16.10.1 ipaddress==1.0.23 Jinja2==2.11.3 klein==17.10.0 linecache2==1.0.0
  MarkupSafe==1.1.1 pyasn1==0.5.1 pyasn1-modules==0.3.0 pycparser==2.21 PyHamcrest==1.10.1
  pyOpenSSL==19.1.0 service-identity==18.1.0 six==1.16.0 traceback2==1.4.0 Twisted==19.10.0
  txaio==2.1.0 typing==3.10.0.0 ujson==2.0.3 unittest2==1.1.0 Werkzeug==1.0.1 wsaccel==0.6.6
  zope.interface==4.6.0)
KOSOKU_VERSION="0.1.0"
cases="${RAYLTICS_AUTOBAHN_CASES:-1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*}"
report="$PWD/target/autobahn"
pip_quiet=(-q --disable-pip-version-check --no-input)

find_python2() {
  local py
  for py in "${RAYLTICS_PYTHON2:-}" "$HOME/.pyenv/versions/2.7.18/bin/python" \
    "$(command -v python2.7 || true)"; do
    if [ -n "$py" ] && "$py" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
      echo "$py"
      return 0
    fi
  done
  return 1
}

install_wstest() { # $1 = Python 2.7; sets runner_bin
  local venv="$RAYLTICS_CACHE/venv-autobahn-py27" boot
  runner_bin="$venv/bin/wstest"
  if "$runner_bin" -a 2>/dev/null | grep -qx "AutobahnTestSuite $AUTOBAHN_VERSION"; then
    return 0
  fi
  echo "autobahn.sh: installing autobahntestsuite $AUTOBAHN_VERSION (Python 2.7: $1) into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$RAYLTICS_CACHE"
  # Python 3's venv cannot make a Python 2 environment; virtualenv before 20.22
  # still can. It is needed only to create the venv.
  boot="$(mktemp -d -t rayltics-virtualenv.XXXXXX)"
  "${RAYLTICS_PYTHON:-python3}" -m venv "$boot"
  "$boot/bin/python" -m pip install "${pip_quiet[@]}" 'virtualenv<20.22'
  "$boot/bin/virtualenv" -q -p "$1" "$venv"
  rm -rf "$boot"
  # pip on Python 2.7 prints a deprecation banner on every call.
  "$venv/bin/python" -m pip install "${pip_quiet[@]}" "autobahntestsuite==$AUTOBAHN_VERSION" \
    "${AUTOBAHN_PY27_PINS[@]}" 2> >(grep -v 'DEPRECATION: Python 2.7' >&2)
  "$runner_bin" -a | grep -qx "AutobahnTestSuite $AUTOBAHN_VERSION"
}

install_kosoku() { # sets runner_bin
  local venv="$RAYLTICS_CACHE/venv-kosoku"
  runner_bin="$venv/bin/kosoku"
  if [ -x "$runner_bin" ] && [ "$("$venv/bin/python" -c \
    'import importlib.metadata as m; print(m.version("kosoku"))' 2>/dev/null)" = "$KOSOKU_VERSION" ]; then
    return 0
  fi
  echo "autobahn.sh: installing kosoku $KOSOKU_VERSION into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$RAYLTICS_CACHE"
  "${RAYLTICS_PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install "${pip_quiet[@]}" "kosoku==$KOSOKU_VERSION"
  "$runner_bin" --help >/dev/null
}

runner="${RAYLTICS_AUTOBAHN_RUNNER:-}"
if [ -z "$runner" ]; then
  if python2="$(find_python2)"; then runner=wstest; else runner=kosoku; fi
fi
case "$runner" in
  wstest)
    python2="${python2:-$(find_python2)}" || {
      echo "autobahn.sh: RAYLTICS_AUTOBAHN_RUNNER=wstest, but no Python 2.7 found" \
        "(set RAYLTICS_PYTHON2)" >&2
      exit 1
    }
    install_wstest "$python2"
    runner_version="Autobahn|Testsuite $AUTOBAHN_VERSION (wstest, Python 2.7)"
    ;;
  kosoku)
    install_kosoku
    runner_version="kosoku $KOSOKU_VERSION (Autobahn|Testsuite cases, Python 3)"
    ;;
  *)
    echo "autobahn.sh: RAYLTICS_AUTOBAHN_RUNNER must be wstest or kosoku, not '$runner'" >&2
    exit 1
    ;;
esac

work="$(mktemp -d -t rayltics-autobahn.XXXXXX)"
node_pid=""
# shellcheck source=lib/test-node.sh
. scripts/lib/test-node.sh
cleanup() {
  stop_test_node
  [ -f "$work/node.err" ] && cp "$work/node.err" "$report/node.log" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

rm -rf "$report"
mkdir -p "$report"

if [ -n "${RAYLTICS_AUTOBAHN_URL:-}" ]; then
  url="$RAYLTICS_AUTOBAHN_URL"
else
  cargo build --locked -q -p rayltics --bins
  export RAYLTICS_REALTIME__ECHO_ENDPOINT=true
  start_test_node autobahn.sh "$CARGO_TARGET_DIR/debug" "$work"
  url="ws://$http/ws/echo"
fi

echo "autobahn.sh: $runner_version against $url, cases: $cases" >&2
read -r -a case_list <<<"$cases"
started=$SECONDS
status=0
if [ "$runner" = wstest ]; then
  # The spec: the cases, and the report's directory (wstest writes it there).
  python3 - "$report" "$url" "${case_list[@]}" >"$report/spec.json" <<'PY'
import json, sys
outdir, url, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
json.dump({"outdir": outdir, "servers": [{"agent": "rayltics", "url": url}],
           "cases": cases, "exclude-cases": ["12.*", "13.*"],
           "exclude-agent-cases": {}}, sys.stdout, indent=2)
PY
  # From $work: wstest may leave files in its working directory.
  (cd "$work" && timeout "${RAYLTICS_AUTOBAHN_TIMEOUT:-1200}" \
    "$runner_bin" -m fuzzingclient -s "$report/spec.json") >"$report/runner.log" 2>&1 || status=$?
else
  # kosoku exits 1 when a case fails: the report below says which.
  kosoku_args=()
  for c in "${case_list[@]}"; do kosoku_args+=(-i "$c"); done
  (cd "$work" && timeout "${RAYLTICS_AUTOBAHN_TIMEOUT:-1200}" \
    "$runner_bin" "$url" "${kosoku_args[@]}" -x '12.*' -x '13.*' -o "$report") \
    >"$report/runner.log" 2>&1 || status=$?
fi
elapsed=$((SECONDS - started))

if [ ! -s "$report/index.json" ]; then
  echo "autobahn.sh: $runner exited $status after ${elapsed}s and wrote no report;" \
    "last lines of its log ($report/runner.log):" >&2
  tail -20 "$report/runner.log" >&2
  exit 1
fi

# Verdicts: every case of every requested pattern must be there, with an
# acceptable behavior and closing behavior.
check=0
python3 - "$report" "$runner" "$elapsed" "${case_list[@]}" <<'PY' || check=$?
import fnmatch, json, os, re, sys

report, runner, elapsed, patterns = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
GOOD = {"OK", "NON-STRICT", "INFORMATIONAL"}
GOOD_CLOSE = {"OK", "INFORMATIONAL"}
index = json.load(open(os.path.join(report, "index.json")))
results = [(agent, case_id, r) for agent, cases in index.items() for case_id, r in cases.items()]

def key(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]

def text(s):  # the case files' descriptions carry a little HTML
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", s or "")).strip()

errors = []
missing = [p for p in patterns if not any(fnmatch.fnmatchcase(c, p) for _, c, _ in results)]
if missing:
    errors.append(f"no case ran for {' '.join(missing)}")
    log = open(os.path.join(report, "runner.log"), errors="replace").read().splitlines()
    print("autobahn.sh: last lines of the runner's log:", *log[-5:], sep="\n  ", file=sys.stderr)
counts = {"OK": 0, "NON-STRICT": 0, "INFORMATIONAL": 0, "FAILED": 0}
failed = []
for agent, case_id, r in sorted(results, key=lambda t: key(t[1])):
    if r["behavior"] in GOOD and r["behaviorClose"] in GOOD_CLOSE:
        counts[r["behavior"]] += 1
    else:
        counts["FAILED"] += 1
        failed.append((agent, case_id, r))

print(f"autobahn.sh: {len(results)} cases run: {counts['OK']} OK, {counts['NON-STRICT']} NON-STRICT, "
      f"{counts['INFORMATIONAL']} INFORMATIONAL, {counts['FAILED']} FAILED ({runner}, {elapsed}s)")
if failed:
    errors.append(f"{len(failed)} cases failed: {' '.join(c for _, c, _ in failed)}")
    shown = 25
    for agent, case_id, r in failed[:shown]:
        detail = {}
        try:
            detail = json.load(open(os.path.join(report, r["reportfile"])))
        except (KeyError, OSError, ValueError):
            pass
        print(f"  {case_id}: behavior {r['behavior']}, close {r['behaviorClose']}"
              f" (remote close code {r.get('remoteCloseCode')})", file=sys.stderr)
        for field in ("description", "expectation", "result", "resultClose"):
            if detail.get(field):
                print(f"      {field}: {text(detail[field])}", file=sys.stderr)
    if len(failed) > shown:
        print(f"  ... and {len(failed) - shown} more", file=sys.stderr)
    print(f"  details: {report}/index.html", file=sys.stderr)
for e in errors:
    print(f"autobahn.sh: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

if [ "$elapsed" -gt 180 ]; then
  echo "autobahn.sh: note: the run took ${elapsed}s (over 3 minutes)" >&2
fi
if [ "$check" -ne 0 ]; then
  exit "$check"
fi
if [ "$runner" = wstest ] && [ "$status" -ne 0 ]; then
  echo "autobahn.sh: wstest exited $status; last lines of $report/runner.log:" >&2
  tail -20 "$report/runner.log" >&2
  exit 1
fi
if [ -n "$node_pid" ]; then
  if ! kill -0 "$node_pid" 2>/dev/null; then
    echo "autobahn.sh: the node exited during the run; last lines of its log:" >&2
    tail -20 "$work/node.err" >&2
    exit 1
  fi
  if grep -q 'ERROR\|panicked' "$work/node.err"; then
    echo "autobahn.sh: the node logged errors:" >&2
    grep 'ERROR\|panicked' "$work/node.err" | head -20 >&2
    exit 1
  fi
fi
echo "autobahn.sh: passed; report in $report/index.html"
