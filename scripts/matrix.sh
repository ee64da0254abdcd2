#!/usr/bin/env bash
# Runs a test command once more for each backend × shard count besides the default (auto backend, one shard):
# epoll with 1 and 2 shards, auto (io_uring where the kernel allows it) with 2 shards. Stops at the first failure.
#
#   bash scripts/matrix.sh COMMAND [ARGS...]
set -euo pipefail
for combo in "epoll 1" "epoll 2" "auto 2"; do
  read -r backend shards <<<"$combo"
  echo "== SOCKMAP_BACKEND=$backend SOCKMAP_SHARDS=$shards $*" >&2
  SOCKMAP_BACKEND="$backend" SOCKMAP_SHARDS="$shards" "$@"
done
