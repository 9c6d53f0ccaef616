#!/usr/bin/env bash
# Installs what building and testing rayltics needs on Debian, skipping what
# is already there: a C toolchain, protoc (tonic code generation), promtool
# (metrics check in tests), Python 3 with venv (local backends, test tools).
# The Rust toolchain itself comes from rustup (see README).
set -euo pipefail

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need cc build-essential
need make build-essential
need pkg-config pkg-config
need protoc protobuf-compiler
need promtool prometheus
need python3 python3
need curl curl
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "install.sh: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "install.sh: no Rust toolchain. Install rustup (Debian 13: apt-get install rustup;" >&2
    echo "  otherwise see rustup.rs), then: rustup default stable" >&2
    exit 1
  fi
fi
