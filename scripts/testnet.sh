#!/usr/bin/env bash
# A local Cairn testnet of real cairn-node processes on loopback.
#
#   scripts/testnet.sh start [N]   start N nodes (default 4); nodes 0 and 1 mine
#   scripts/testnet.sh status      height, tip and peer count of every node
#   scripts/testnet.sh partition 0,1 2,3
#                                  cut the links between two groups of nodes: each node
#                                  blocks the other group (admin RPC net_blockPeer)
#   scripts/testnet.sh heal        lift every block and reconnect every node to node 0
#   scripts/testnet.sh stop        stop every node (SIGTERM)
#   scripts/testnet.sh clean       stop, then delete the testnet's data and logs
#
# Every node runs the dev chain (`--dev`: built-in genesis, ~1 s blocks, the 10 dev
# accounts funded) with its own data dir, P2P and RPC port. Only node 0 is given to the
# others as a seed (`--peer`); peer exchange does the rest. State lives in
# $CAIRN_TESTNET_DIR (default ./testnet); ports start at $CAIRN_TESTNET_PORT (default
# 17300): node i listens for P2P on base+2i and RPC on base+2i+1, and serves Prometheus
# metrics on http://127.0.0.1:base+1000+i/metrics (contrib/prometheus.yml scrapes those
# of the default 4 nodes; contrib/grafana/cairn.json is a dashboard over them).
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

admin() { # admin NODE METHOD PARAMS: an admin call with the node's cookie
  local d="$dir/node$1"
  [ -f "$d/.cookie" ] || { echo "node$1 is not running (no $d/.cookie)" >&2; return 1; }
  curl -s --max-time 5 --user "$(cat "$d/.cookie")" -H 'Content-Type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":$3}" \
    "http://127.0.0.1:$((base + 2 * $1 + 1))/"
}

failed=0
admin_ok() { # like admin, but reports a JSON-RPC error (or no answer) and counts it
  local out; out="$(admin "$@" || true)"
  case "$out" in
    *'"result"'*) ;;
    *) echo "node$1 $2 $3: ${out:-no answer}" >&2; failed=$((failed + 1)) ;;
  esac
}

p2p_addr() { echo "127.0.0.1:$((base + 2 * $1))"; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

nodes() { ls -d "$dir"/node* 2>/dev/null | sort -V; }

start() {
  local n="${1:-4}"
  scripts/setup.sh
  # The same cargo selection as scripts/test.sh, so both share one RocksDB build.
  cargo build --workspace --all-targets -q
  mkdir -p "$dir"
  for ((i = 0; i < n; i++)); do
    local p2p=$((base + 2 * i)) rpcp=$((base + 2 * i + 1)) metp=$((base + 1000 + i)) d="$dir/node$i"
    if [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; then
      echo "node$i already running (pid $(cat "$d/pid"))"; continue
    fi
    for p in $p2p $rpcp $metp; do
      port_free "$p" || { echo "port $p is in use; set CAIRN_TESTNET_PORT" >&2; exit 1; }
    done
    mkdir -p "$d"
    local args=(--dev --data-dir "$d" --listen "127.0.0.1:$p2p" --rpc-addr "127.0.0.1:$rpcp")
    args+=(--metrics-addr "127.0.0.1:$metp")
    [ "$i" -lt 2 ] || args+=(--no-mine)
    [ "$i" -eq 0 ] || args+=(--peer "127.0.0.1:$base")
    nohup "$node_bin" "${args[@]}" >"$d/node.log" 2>&1 &
    echo $! >"$d/pid"
    # Wait for the RPC port so the next node finds its seed listening.
    for _ in $(seq 1 200); do rpc "$rpcp" chain_getInfo >/dev/null && break; sleep 0.1; done
    echo "node$i  p2p 127.0.0.1:$p2p  rpc http://127.0.0.1:$rpcp  metrics http://127.0.0.1:$metp/metrics  $([ "$i" -lt 2 ] && echo mining)  log $d/node.log"
  done
  # The dev banner of node 0 lists the funded accounts: (0) ADDRESS, later (0) KEY.
  local lines; lines="$(grep '^(0) ' "$dir/node0/node.log" || true)"
  cat <<MSG

Funded dev account 0: address $(echo "$lines" | sed -n 1p | cut -d' ' -f2)
                      private key $(echo "$lines" | sed -n 2p | cut -d' ' -f2)
Try:  $target/debug/cairn-wallet --rpc http://127.0.0.1:$((base + 1)) balance $(echo "$lines" | sed -n 1p | cut -d' ' -f2)
      scripts/testnet.sh status
MSG
}

# partition "0,1" "2,3": every node of each group blocks every node of the other.
partition() {
  local a="${1:?usage: partition NODES NODES (e.g. 0,1 2,3)}" b="${2:?usage: partition NODES NODES}" i j
  for i in ${a//,/ }; do
    for j in ${b//,/ }; do
      admin_ok "$i" net_blockPeer "[\"$(p2p_addr "$j")\"]"
      admin_ok "$j" net_blockPeer "[\"$(p2p_addr "$i")\"]"
    done
  done
  [ "$failed" = 0 ] || { echo "$failed calls failed" >&2; exit 1; }
  echo "blocked links between nodes {$a} and {$b}; see: scripts/testnet.sh status"
}

# heal: every node unblocks every other, then dials node 0 (as at start).
heal() {
  local all i j
  all="$(for d in $(nodes); do echo "${d##*node}"; done)"
  for i in $all; do
    for j in $all; do
      [ "$i" = "$j" ] || admin_ok "$i" net_unblockPeer "[\"$(p2p_addr "$j")\"]"
    done
    [ "$i" = 0 ] || admin_ok "$i" net_addPeer "[\"$(p2p_addr 0)\"]"
  done
  [ "$failed" = 0 ] || { echo "$failed calls failed" >&2; exit 1; }
  echo "lifted every block; see: scripts/testnet.sh status"
}

status() {
  printf '%-6s %-7s %-8s %-66s %s\n' node pid height best_hash peers
  for d in $(nodes); do
    local i="${d##*node}" rpcp=$((base + 2 * ${d##*node} + 1)) pid="-" info peers
    [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null && pid="$(cat "$d/pid")"
    info="$(rpc "$rpcp" chain_getInfo || true)"
    if [ -z "$info" ]; then printf '%-6s %-7s %s\n' "node$i" "$pid" "(not answering)"; continue; fi
    # grep finds nothing for a node without peers: not an error (pipefail).
    peers="$(rpc "$rpcp" net_peers | { grep -o '"addr"' || true; } | wc -l)"
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
  partition) partition "${2:-}" "${3:-}" ;;
  heal) heal ;;
  stop) stop ;;
  clean) stop; rm -rf "$dir"; echo "removed $dir" ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
