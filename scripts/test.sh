#!/usr/bin/env bash
# Runs Cairn's whole test suite: formatting, lints, every unit, property, integration
# and end-to-end test (the end-to-end ones start real cairn-node and cairn-wallet
# processes on loopback), then each fuzz target briefly. Installs build prerequisites
# if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings
# Every cargo command here selects the whole workspace with all targets, so they all
# resolve the same dependency features and RocksDB's C++ build happens once.
echo "== cargo build (binaries the end-to-end tests run)"
cargo build --workspace --all-targets -q
echo "== cargo test"
cargo test --workspace --no-fail-fast
# Every fuzz target for a few seconds (a longer run: scripts/fuzz.sh 600).
echo "== fuzz"
scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
