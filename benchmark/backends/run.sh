#!/usr/bin/env bash
# The engine's backends (epoll, io_uring) next to HAProxy and twemproxy: installs the peers
# (Debian packages) when missing, builds the native load generators and the engine's proxy
# example, raises the open-file limit, waits (bounded) for a quiet machine, then runs run.mjs.
#
#   benchmark/backends/run.sh [--quick] [--reps N] [--only redis,many,bulk,counts]
#                             [--redis-n1 N] [--redis-n16 N] [--many-conns C] [--many-secs S]
#                             [--raw-secs S] [--quiet PCT] [--quiet-wait S] [--json FILE]
#
# QUIET_LOAD (default 0.5): the 1-minute load average to wait for before starting, at most
# QUIET_WAIT seconds (default 600; then it starts anyway and says so). --quiet PCT makes run.mjs
# also wait, before every round, until others leave the CPUs less than PCT % busy over 2 s
# (at most --quiet-wait seconds, default 120).
# Prints markdown tables on stdout (progress on stderr) and keeps the raw samples in
# benchmark/results/. Every process it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/../.."

source benchmark/need-tools.sh
need_tools redis-server:redis-server redis-benchmark:redis-tools nutcracker:nutcracker haproxy:haproxy iperf3:iperf3 perf:linux-perf taskset:util-linux setpriv:util-linux

cargo build --release -q -p sockmap-bench >&2
cargo build --release -q -p sockmap-core --example proxy >&2

ulimit -n "$(ulimit -Hn)"

quiet_load=${QUIET_LOAD:-0.5}
quiet_wait=${QUIET_WAIT:-600}
waited=0
load=$(cut -d' ' -f1 /proc/loadavg)
while awk -v l="$load" -v q="$quiet_load" 'BEGIN { exit !(l >= q) }' && ((waited < quiet_wait)); do
  ((waited == 0)) && echo "load average $load, waiting (at most ${quiet_wait} s) for less than $quiet_load" >&2
  sleep 5
  waited=$((waited + 5))
  load=$(cut -d' ' -f1 /proc/loadavg)
done
echo "load average $load after waiting ${waited} s" >&2

exec node benchmark/backends/run.mjs "$@"
