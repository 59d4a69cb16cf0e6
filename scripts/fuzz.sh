#!/usr/bin/env bash
# Fuzzes Cairn's decoders and validators (the fuzz/ crate) with libFuzzer, on the stable
# toolchain: the coverage instrumentation cargo-fuzz would add is passed as plain
# `-C passes` / `-C llvm-args` flags, so neither nightly nor cargo-fuzz is needed.
#
#   scripts/fuzz.sh                 every target for 15 s each (what CI runs)
#   scripts/fuzz.sh 600             every target for 10 minutes each
#   scripts/fuzz.sh 600 wire rpc    only these targets
#
# Corpora accumulate in $CARGO_TARGET_DIR/fuzz/corpus/<target> (started from
# fuzz/seeds/<target>). A crash, panic or timeout saves its input under
# $CARGO_TARGET_DIR/fuzz/artifacts/<target>/ and makes the script fail; replay it with
# `$CARGO_TARGET_DIR/fuzz/<host>/release/<target> <file>`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-${FUZZ_SECONDS:-15}}"
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(wire transfer ecmult block protocol genesis keystore rpc mempool)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}/fuzz"
host="$(rustc -vV | sed -n 's/^host: //p')"
# Building for an explicit --target keeps build scripts and proc macros
# uninstrumented (they run on the host), as cargo-fuzz does.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cforce-frame-pointers"
echo "== fuzz: building ${#targets[@]} targets"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --release --locked --target "$host" "${bins[@]}" -q

failed=0
for t in "${targets[@]}"; do
  corpus="$CARGO_TARGET_DIR/corpus/$t"
  artifacts="$CARGO_TARGET_DIR/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  dirs=("$corpus")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  log="$CARGO_TARGET_DIR/$t.log"
  if "$CARGO_TARGET_DIR/$host/release/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" "${dirs[@]}" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz $t: ok, ${runs:-?} runs in ${secs}s, $cov, corpus $(ls "$corpus" | wc -l) inputs"
  else
    echo "fuzz $t: FAILED (input saved in $artifacts/):"
    tail -n 40 "$log"
    failed=1
  fi
done
exit $failed
