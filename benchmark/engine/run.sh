#!/usr/bin/env bash
# Engine benchmarks: installs the peers (Debian packages) when missing, builds the native load
# generators and the engine's proxy example, raises the open-file limit, then runs run.mjs.
#
#   benchmark/engine/run.sh [--quick] [--reps N] [--only raw,framed,latency,memory]
#                           [--framed-conns C] [--idle-conns N] [--proxy PATH] [--json FILE]
#                           [--backends epoll,io_uring] [--raw-rows LIST] [--raw-secs S] [--lat-rows LIST]
#                           [--framed-over tcp,unix]
#
# Prints markdown tables on stdout (progress on stderr) and keeps the raw samples in
# benchmark/results/. Every process it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/../.."

source benchmark/need-tools.sh
need_tools iperf3:iperf3 haproxy:haproxy sockperf:sockperf taskset:util-linux setpriv:util-linux

cargo build --release -q -p sockmap-bench >&2
if [[ -f crates/sockmap-core/examples/proxy.rs ]]; then
  cargo build --release -q -p sockmap-core --example proxy >&2 ||
    echo "the engine's proxy example failed to build: its rows will say so" >&2
fi

ulimit -n "$(ulimit -Hn)"
exec node benchmark/engine/run.mjs "$@"
