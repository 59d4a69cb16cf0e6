#!/usr/bin/env bash
# A local Cairn testnet of real cairn-node processes on loopback.
#
#   scripts/testnet.sh start [N]   start N nodes (default 4); nodes 0 and 1 mine
#   scripts/testnet.sh status      height, tip and peer count of every node
#   scripts/testnet.sh stop        stop every node (SIGTERM)
#   scripts/testnet.sh clean       stop, then delete the testnet's data and logs
#
# Every node runs the dev chain (`--dev`: built-in genesis, ~1 s blocks, the 10 dev
# accounts funded) with its own data dir, P2P and RPC port. Only node 0 is given to the
# others as a seed (`--peer`); peer exchange does the rest. State lives in
# $CAIRN_TESTNET_DIR (default ./testnet); ports start at $CAIRN_TESTNET_PORT (default
# 17300): node i listens for P2P on base+2i and RPC on base+2i+1.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${CAIRN_TESTNET_DIR:-$PWD/testnet}"
base="${CAIRN_TESTNET_PORT:-17300}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
node_bin="$target/debug/cairn-node"

rpc() { # rpc PORT METHOD [PARAMS]
  curl -s --max-time 2 -H 'Content-Type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":${3:-[]}}" "http://127.0.0.1:$1/"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

nodes() { ls -d "$dir"/node* 2>/dev/null | sort -V; }

start() {
  local n="${1:-4}"
  scripts/setup.sh
  # The same cargo selection as scripts/test.sh, so both share one RocksDB build.
  cargo build --workspace --all-targets -q
  mkdir -p "$dir"
  for ((i = 0; i < n; i++)); do
    local p2p=$((base + 2 * i)) rpcp=$((base + 2 * i + 1)) d="$dir/node$i"
    if [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; then
      echo "node$i already running (pid $(cat "$d/pid"))"; continue
    fi
    for p in $p2p $rpcp; do
      port_free "$p" || { echo "port $p is in use; set CAIRN_TESTNET_PORT" >&2; exit 1; }
    done
    mkdir -p "$d"
    local args=(--dev --data-dir "$d" --listen "127.0.0.1:$p2p" --rpc-addr "127.0.0.1:$rpcp")
    [ "$i" -lt 2 ] || args+=(--no-mine)
    [ "$i" -eq 0 ] || args+=(--peer "127.0.0.1:$base")
    nohup "$node_bin" "${args[@]}" >"$d/node.log" 2>&1 &
    echo $! >"$d/pid"
    # Wait for the RPC port so the next node finds its seed listening.
    for _ in $(seq 1 200); do rpc "$rpcp" chain_getInfo >/dev/null && break; sleep 0.1; done
    echo "node$i  p2p 127.0.0.1:$p2p  rpc http://127.0.0.1:$rpcp  $([ "$i" -lt 2 ] && echo mining)  log $d/node.log"
  done
  cat <<MSG

Funded key (dev account 0): $(printf 'cairn dev account 0' | sha256sum | cut -d' ' -f1)
Try:  cairn-wallet --rpc http://127.0.0.1:$((base + 1)) balance <ADDRESS>
      scripts/testnet.sh status
MSG
}

status() {
  printf '%-6s %-7s %-8s %-66s %s\n' node pid height best_hash peers
  for d in $(nodes); do
    local i="${d##*node}" rpcp=$((base + 2 * ${d##*node} + 1)) pid="-" info peers
    [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null && pid="$(cat "$d/pid")"
    info="$(rpc "$rpcp" chain_getInfo || true)"
    if [ -z "$info" ]; then printf '%-6s %-7s %s\n' "node$i" "$pid" "(not answering)"; continue; fi
    peers="$(rpc "$rpcp" net_peers | grep -o '"addr"' | wc -l)"
    printf '%-6s %-7s %-8s %-66s %s\n' "node$i" "$pid" \
      "$(echo "$info" | grep -o '"height":[0-9]*' | cut -d: -f2)" \
      "$(echo "$info" | grep -o '"best_hash":"[0-9a-f]*"' | cut -d'"' -f4)" "$peers"
  done
}

stop() {
  for d in $(nodes); do
    [ -f "$d/pid" ] || continue
    local pid; pid="$(cat "$d/pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "stopped ${d##*/}"
    fi
    rm -f "$d/pid"
  done
}

case "${1:-}" in
  start) start "${2:-4}" ;;
  status) status ;;
  stop) stop ;;
  clean) stop; rm -rf "$dir"; echo "removed $dir" ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
