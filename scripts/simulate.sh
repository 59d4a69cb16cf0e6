#!/usr/bin/env bash
# Cairn's network simulator at scale (issue 21): builds in release mode, runs one
# scenario of cairn-sim (the real peer protocol over simulated links), prints its table
# and the simulator's own profile, and writes SCENARIO.json and SVG charts to
# $CARGO_TARGET_DIR/sim/ (or target/sim/).
#
#   scripts/simulate.sh propagation                      # 100 and 1,000 nodes
#   scripts/simulate.sh propagation --nodes 100,1000,10000
#   scripts/simulate.sh forks --nodes 1000 --seed 7      # also: partition, churn, transfer
#   scripts/simulate.sh forks --nodes 1000 --block-bytes 100000,1000000 --intervals 5,10,30
#   scripts/simulate.sh propagation --nodes 300 --no-share  # every node its own block copies
#   scripts/simulate.sh propagation --nodes 10000 --block-bytes 0,100000 --progress 30
#   scripts/simulate.sh propagation --from-json docs/scale/propagation-by-size.json
#                        # runs nothing: the by-size chart of earlier runs' results
#
# Progress (simulated time, events, resident memory, partial blocks, each block's row)
# goes to stderr every --progress simulated seconds (default 10; 0: none).
#
# These are simulations: see docs/SCALE.md for the model and what it leaves out.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: scripts/simulate.sh SCENARIO [--nodes N[,N...]] [--seed S] [--block-bytes B,...] [--intervals S,...] [--no-share] [--progress S] [--from-json F,...]" >&2
  echo "scenarios: propagation forks partition churn transfer" >&2
  exit 2
fi
scripts/setup.sh
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --workspace --release --examples --bins -q
exec "$target/release/cairn-sim" "$@" --out "$target/sim"
