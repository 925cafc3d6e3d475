#!/usr/bin/env bash
# Table of all runs in results/, in run order.
cd "$(dirname "$0")/results"
printf "| run | load avg (1m) before | p50 ms | p99 ms | max ms | all frames | writer CPU ms/event | reader CPU ms/event | writer fan-out ms p50/max | machine busy ms/event |\n|---|---:|---:|---:|---:|---|---:|---:|---:|---:|\n"
for f in $(ls -tr *.txt); do
  l=${f%.txt}
  load=$(grep UPTIME_BEFORE "$f" | sed -E 's/.*load average: ([0-9.]+),.*/\1/')
  w=$(grep 'side=writer' "$f"); r=$(grep 'side=reader' "$f")
  g() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
  printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |\n" "$l" "$load" \
    "$(g "$r" p50_ms)" "$(g "$r" p99_ms)" "$(g "$r" max_ms)" "$(g "$r" all)" \
    "$(g "$w" cpu_ms_per_event)" "$(g "$r" cpu_ms_per_event)" \
    "$(g "$w" fanout_ms_p50)" "$(g "$w" fanout_ms_max)" "$(g "$r" machine_busy_ms_per_event)"
done
