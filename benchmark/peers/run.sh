#!/usr/bin/env bash
# `npm run bench:peers`: installs the peers it needs from Debian when missing, builds, and runs benchmark/peers/run.mjs.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benchmark/need-tools.sh
need_tools redis-server:redis-server redis-benchmark:redis-tools nutcracker:nutcracker haproxy:haproxy wrk:wrk
npm run build >&2
exec node benchmark/peers/run.mjs "$@"
