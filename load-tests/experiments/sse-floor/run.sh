#!/usr/bin/env bash
# One run: ./run.sh LABEL WRITER READER READER_THREADS PORT [CONNS] [EVENTS] [RATE]
# Writer and reader are separate processes (20,000 fd limit per process).
set -u
LABEL=$1 W=$2 R=$3 T=$4 PORT=$5 CONNS=${6:-10000} EVENTS=${7:-30} RATE=${8:-5}
BIN=${CARGO_TARGET_DIR:-$(dirname "$0")/target}/release/ssefloor
mkdir -p $(dirname "$0")/results
OUT=$(dirname "$0")/results/$LABEL.txt
ulimit -n 20000
{
  echo "LABEL=$LABEL writer=$W reader=$R threads=$T port=$PORT conns=$CONNS events=$EVENTS rate=$RATE"
  echo "UPTIME_BEFORE $(uptime)"
  echo "NICE=${NICE:-0} RT=${RT:-none} NAP=${NAP:-0}"
} > "$OUT"
nstat -n >/dev/null 2>&1
${NICE:+nice -n $NICE} ${RT:+chrt -f $RT} timeout 150 "$BIN" writer "$W" "$PORT" "$CONNS" "$EVENTS" "$RATE" > "$OUT.w" 2>&1 &
WP=$!
# wait (bounded) for the listener
for _ in $(seq 1 100); do grep -q LISTENING "$OUT.w" 2>/dev/null && break; sleep 0.05; done
${NICE:+nice -n $NICE} ${RT:+chrt -f $RT} timeout 150 "$BIN" reader "$R" "$PORT" "$CONNS" "$EVENTS" "$T" "${NAP:-0}" > "$OUT.r" 2>&1
wait $WP
cat "$OUT.w" "$OUT.r" >> "$OUT"
echo "NSTAT $(nstat 2>/dev/null | grep -E "TcpOutSegs|TcpInSegs|DelayedACKs|TcpExtTCPHPAcks|TCPPureAcks|IpExtInOctets" | tr -s " " | tr "\n" ";")" >> "$OUT"
echo "UPTIME_AFTER $(uptime)" >> "$OUT"
rm -f "$OUT.w" "$OUT.r"
grep -E 'RESULT|UPTIME|panic|error' "$OUT"
