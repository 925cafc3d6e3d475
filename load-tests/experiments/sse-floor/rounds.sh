#!/usr/bin/env bash
# 3 rounds, variants alternating within each round; a fresh port per run.
# Variant: LABEL WRITER READER READER_THREADS
cd "$(dirname "$0")"
VARIANTS=(
  "A single epoll 1"
  "A2 single epoll 2"
  "B tokio epoll 1"
  "C tokio tokio 1"
  "D two epoll 1"
)
# Optional: AUTOGROUP_NICE=-20 (run under setsid) lets this session's autogroup outweigh
# other sessions' (the builds') autogroups; CFS fairness among our own threads is kept.
if [ -n "${AUTOGROUP_NICE:-}" ]; then echo "$AUTOGROUP_NICE" > /proc/$$/autogroup; cat /proc/$$/autogroup; fi
ROUNDS=${ROUNDS:-3}
PORT=${PORT0:-20000}
for r in $(seq 1 "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    set -- $v
    PORT=$((PORT+1))
    ./run.sh "${PREFIX:-}$1-r$r" "$2" "$3" "$4" "$PORT" 10000 30 5
    sleep 2
  done
done
