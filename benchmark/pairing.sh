#!/usr/bin/env bash
# Direct Redis vs Redis through the pairing gateway (benchmark/pairing-gateway.mjs), with redis-benchmark:
#   bash benchmark/pairing.sh [redis-benchmark args]   (default: -t set -d 64 -r 100000 -c 50 -n 200000 -P 1)
# Needs redis-server, redis-benchmark and the built package (`npm run build`).
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(-t set -d 64 -r 100000 -c 50 -n 200000 -P 1)
port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
redis=$!
out=$(mktemp)
trap 'kill $redis ${gw:-} 2>/dev/null || true; rm -f "$out"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
node benchmark/pairing-gateway.mjs --upstream "127.0.0.1:$port" >"$out" &
gw=$!
until grep -q '^listening ' "$out"; do sleep 0.05; done
gwport=$(awk '/^listening /{print $2}' "$out")
echo "== direct (redis on $port): redis-benchmark ${args[*]}"
redis-benchmark -p "$port" "${args[@]}" -q
echo "== paired (gateway on $gwport, one upstream connection): redis-benchmark ${args[*]}"
redis-benchmark -p "$gwport" "${args[@]}" -q
