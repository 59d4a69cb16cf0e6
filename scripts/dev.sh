#!/usr/bin/env bash
# Builds Cairn (if needed) and starts a single-node development chain:
# `cairn-node --dev`, mining ~1 s blocks, 10 funded dev accounts printed at start.
# Extra arguments go to cairn-node, e.g. `scripts/dev.sh --data-dir /tmp/devchain`.
# Prometheus metrics are served on http://127.0.0.1:7334/metrics (the node prints the
# URL at start) unless the arguments name another --metrics-addr.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The same cargo selection as scripts/test.sh, so both share one RocksDB build.
cargo build --workspace --all-targets -q
metrics=(--metrics-addr 127.0.0.1:7334)
for a in "$@"; do
  case "$a" in --metrics-addr | --metrics-addr=*) metrics=() ;; esac
done
exec "${CARGO_TARGET_DIR:-$PWD/target}/debug/cairn-node" --dev "${metrics[@]}" "$@"
