#!/usr/bin/env bash
# Installs what building Cairn needs on a fresh Debian machine, when it is missing:
# a C/C++ compiler and libclang (RocksDB's bindings are generated with bindgen). With
# --test (scripts/test.sh), also what the tests need: iproute2 and nftables
# (tests/tests/it/connections.rs cuts a link between two nodes in a network namespace),
# and promtool (Debian package prometheus: tests/tests/it/metrics.rs checks a real
# /metrics scrape and contrib/prometheus.yml). The package also brings a Prometheus
# server; on a machine run by systemd, its service is disabled again, since only the
# tool is wanted. Also chromium (tests/tests/it/explorer.rs loads the block explorer in
# headless Chromium).
# Safe to run again: it installs nothing that is already there.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found. Install Rust (https://rustup.rs) and run this again." >&2
  exit 1
fi

missing=()
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v curl >/dev/null 2>&1 || missing+=(curl)
new_promtool=false
new_chromium=false
if [ "${1:-}" = "--test" ]; then
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v nft >/dev/null 2>&1 || missing+=(nftables)
  command -v promtool >/dev/null 2>&1 || new_promtool=true
  command -v chromium >/dev/null 2>&1 || new_chromium=true
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if $new_promtool; then
  echo "setup: installing prometheus (for promtool)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    prometheus >/dev/null
  if [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
fi
if $new_chromium; then
  echo "setup: installing chromium" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium >/dev/null
fi
