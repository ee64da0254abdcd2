#!/usr/bin/env bash
# The UDP echo benchmark: installs its peers (Debian's nginx with the stream module, socat) when missing, builds
# the native load generator (crates/sockmap-bench: udp-load), then runs run.mjs. The sockmap row needs the built
# package (`npm run build`). Settings come from the environment (UDP_SECONDS, UDP_REPS, UDP_CLIENTS, UDP_WINDOW,
# UDP_SIZES, UDP_ROWS, UDP_WARMUP, UDP_JSON; see run.mjs).
#
#   bash benchmark/udp/run.sh
#
# Prints markdown tables on stdout (progress on stderr) and keeps the raw samples in benchmark/results/. Every
# process it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/../.."

source benchmark/need-tools.sh
need_tools nginx:nginx socat:socat setpriv:util-linux
need_files /usr/lib/nginx/modules/ngx_stream_module.so:libnginx-mod-stream

cargo build --release -q -p sockmap-bench --bin udp-load >&2
exec node benchmark/udp/run.mjs "$@"
