#!/usr/bin/env bash
# Splice against copy, and one I/O thread against two, through the engine's proxy example, interleaved.
#
#   bash benchmark/splice-shards.sh [REPS] [SECONDS]
#
# - splice: iperf3 (1 stream, writes of 16 KiB, 64 KiB and 1 MiB) through `proxy --backend epoll` with
#   `--splice-min 16384` and with `--splice-min off`: Gbit/s and proxy CPU-s per GB.
#   Next to them, HAProxy (TCP mode, one thread) with and without `option splice-auto`, 64 KiB writes.
# - shards: `many-pingpong client --conns 1000` (64-byte round trips) and iperf3 with 4 streams through
#   `proxy --backend io_uring` with `--shards 1` and `--shards 2`: round trips/s or Gbit/s, and proxy CPU.
# Prints one line per run (rows interleaved, REPS rounds, default 3; SECONDS per run, default 5) and the medians.
# Needs iperf3 (Debian) and builds the proxy example and the load generators. Every process it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
SECS=${2:-5}
source benchmark/need-tools.sh
need_tools iperf3:iperf3 haproxy:haproxy
cargo build --release -q -p sockmap-core --example proxy
cargo build --release -q -p sockmap-bench
TARGET=${CARGO_TARGET_DIR:-target}
PROXY=$TARGET/release/examples/proxy
MANY=$TARGET/release/many-pingpong
ulimit -n "$(ulimit -Hn)"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }

IPERF_PORT=$(free_port)
ECHO_PORT=$(free_port)
"$MANY" echo --listen "127.0.0.1:$ECHO_PORT" --duration 3600 >/dev/null 2>&1 &
pids+=($!)
sleep 0.3

# run_proxy UPSTREAM_PORT ARGS... : starts the proxy, sets PROXY_PID and PROXY_PORT, waits for "ready".
run_proxy() {
  local up=$1
  shift
  PROXY_PORT=$(free_port)
  coproc PX { exec "$PROXY" --listen "127.0.0.1:$PROXY_PORT" --upstream "127.0.0.1:$up" --mode raw "$@" 2>/dev/null; }
  PROXY_PID=$PX_PID
  local line
  read -r -t 10 line <&"${PX[0]}"
  [[ $line == ready ]] || { echo "proxy did not start: $*" >&2; exit 1; }
}
# run_haproxy UPSTREAM_PORT EXTRA_OPTION : HAProxy in TCP mode as the proxy (PROXY_PID, PROXY_PORT).
run_haproxy() {
  PROXY_PORT=$(free_port)
  local cfg
  cfg=$(mktemp)
  printf 'global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  %s\nlisten p\n  bind 127.0.0.1:%s\n  server s 127.0.0.1:%s\n' \
    "$2" "$PROXY_PORT" "$1" >"$cfg"
  haproxy -db -f "$cfg" >/dev/null 2>&1 &
  PROXY_PID=$!
  local i
  for i in $(seq 100); do
    # Listening, seen without connecting (a connection would use up the one-off iperf3 server).
    ss -ltnH "sport = :$PROXY_PORT" | grep -q . && return 0
    sleep 0.05
  done
  echo "haproxy did not start" >&2
  exit 1
}
stop_proxy() {
  kill "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
}

iperf_row() { # NAME LEN STREAMS PROXY_ARGS... (or: haproxy OPTION)
  local name=$1 len=$2 streams=$3
  shift 3
  iperf3 -s -p "$IPERF_PORT" -1 >/dev/null 2>&1 &
  local srv=$!
  sleep 0.2
  if [[ $1 == haproxy ]]; then run_haproxy "$IPERF_PORT" "$2"; else run_proxy "$IPERF_PORT" "$@"; fi
  local c0 bps bytes c1
  c0=$(cpu_of "$PROXY_PID")
  read -r bps bytes < <(iperf3 -c 127.0.0.1 -p "$PROXY_PORT" -t "$SECS" -l "$len" -P "$streams" -J |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const e=JSON.parse(s).end.sum_received;console.log(e.bits_per_second,e.bytes)})')
  c1=$(cpu_of "$PROXY_PID")
  stop_proxy
  wait "$srv" 2>/dev/null || true
  awk -v n="$name" -v b="$bps" -v by="$bytes" -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%s\t%.2f Gbit/s\t%.3f CPU-s/GB\n", n, b / 1e9, (c / hz) / (by / 1e9) }'
}

many_row() { # NAME PROXY_ARGS...
  local name=$1
  shift
  run_proxy "$ECHO_PORT" "$@"
  local c0 out c1
  c0=$(cpu_of "$PROXY_PID")
  out=$("$MANY" client --connect "127.0.0.1:$PROXY_PORT" --conns 1000 --warmup 1 --duration "$SECS")
  c1=$(cpu_of "$PROXY_PID")
  stop_proxy
  local rate total
  rate=$(grep -o '"msgs_per_sec":[0-9.]*' <<<"$out" | cut -d: -f2)
  total=$(grep -o '"all_msgs":[0-9]*' <<<"$out" | cut -d: -f2)
  awk -v n="$name" -v r="$rate" -v t="$total" -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%s\t%.0f round trips/s\t%.2f CPU-s per M\n", n, r, (c / hz) / (t / 1e6) }'
}

results=$(mktemp)
for rep in $(seq "$REPS"); do
  echo "round $rep" >&2
  for len in 16K 64K 1M; do
    iperf_row "splice $len" "$len" 1 --backend epoll --splice-min 16384 | tee -a "$results"
    iperf_row "copy $len" "$len" 1 --backend epoll --splice-min off | tee -a "$results"
  done
  iperf_row "haproxy splice-auto 64K" 64K 1 haproxy "option splice-auto" | tee -a "$results"
  iperf_row "haproxy copy 64K" 64K 1 haproxy "" | tee -a "$results"
  many_row "1000 conns, 1 shard" --backend io_uring --shards 1 | tee -a "$results"
  many_row "1000 conns, 2 shards" --backend io_uring --shards 2 | tee -a "$results"
  iperf_row "4 streams, 1 shard" 128K 4 --backend io_uring --shards 1 | tee -a "$results"
  iperf_row "4 streams, 2 shards" 128K 4 --backend io_uring --shards 2 | tee -a "$results"
done
echo
echo "medians over $REPS rounds:"
node -e '
const rows = new Map()
for (const line of require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n")) {
  const [name, a, b] = line.split("\t")
  const r = rows.get(name) ?? { a: [], b: [], ua: a.replace(/^[0-9.]+ /, ""), ub: b.replace(/^[0-9.]+ /, "") }
  r.a.push(parseFloat(a)); r.b.push(parseFloat(b)); rows.set(name, r)
}
const med = (v) => { const s = [...v].sort((x, y) => x - y); return s[(s.length - 1) >> 1] }
for (const [name, r] of rows) console.log(`${name.padEnd(22)} ${String(med(r.a)).padStart(10)} ${r.ua}   ${String(med(r.b)).padStart(8)} ${r.ub}   (${r.a.join(", ")})`)
' "$results"
rm -f "$results"
