#!/usr/bin/env bash
# Follow-up: the epoll reader with and without a nap between batches (fewer wake-ups).
# Variant: LABEL WRITER READER READER_THREADS NAP_US
cd "$(dirname "$0")"
VARIANTS=(
  "A-nap0 single epoll 1 0"
  "A-nap1ms single epoll 1 1000"
  "D-nap0 two epoll 1 0"
  "D-nap1ms two epoll 1 1000"
  "B-nap1ms tokio epoll 1 1000"
)
if [ -n "${AUTOGROUP_NICE:-}" ]; then echo "$AUTOGROUP_NICE" > /proc/$$/autogroup; cat /proc/$$/autogroup; fi
ROUNDS=${ROUNDS:-3}
PORT=${PORT0:-23000}
for r in $(seq 1 "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    set -- $v
    PORT=$((PORT+1))
    NAP=$5 ./run.sh "${PREFIX:-}$1-r$r" "$2" "$3" "$4" "$PORT" 10000 30 5
    sleep 2
  done
done
