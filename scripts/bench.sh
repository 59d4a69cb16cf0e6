#!/usr/bin/env bash
# Cairn's benchmark suite (issue 8): builds in release mode, measures this machine's
# limits and every scenario in one run, prints one table (figure, limit, ratio, target,
# met) and writes the same as JSON to $CARGO_TARGET_DIR/bench/results.json (or
# target/bench/results.json).
#
#   scripts/bench.sh            # the full run (100,000-transfer chain, ~4 minutes once built)
#   scripts/bench.sh --quick    # smaller chains, under 1 minute once built
#   scripts/bench.sh --only import,miner
#   scripts/bench.sh --long     # adds a 1,000,000-transfer chain, imported and synced, memory
#                               # sampled throughout (generated once, cached under the target
#                               # dir's bench/cache/; --long-transfers N for another size)
#
# Data is generated from fixed seeds; all traffic is on 127.0.0.1. See docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --workspace --release --examples --bins -q
export CAIRN_BIN_DIR="$target/release"
exec "$target/release/examples/bench" --out "$target/bench/results.json" "$@"
