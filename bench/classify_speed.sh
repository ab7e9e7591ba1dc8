#!/usr/bin/env bash
# Classification speed: `vigil replay` against nDPI's `ndpiReader` (Debian's libndpi-bin) on the
# same large capture, one core each (taskset), measured in the same run. Prints packets per second
# of each and the ratio vigil/nDPI. The capture is built from the shared nDPI corpus by
# bench/replicate_pcap.py (every replica's IPv4 flows are new flows, so both tools classify again).
#
# Usage: bench/classify_speed.sh            (build first: cargo build --release -p vigil)
# Env:   VIGIL=target/release/vigil  CORPUS=../shared/corpus/ndpi  COPIES=200  RUNS=3
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VIGIL="${VIGIL:-$ROOT/target/release/vigil}"
CORPUS="${CORPUS:-$ROOT/../shared/corpus/ndpi}"
COPIES="${COPIES:-200}"
RUNS="${RUNS:-3}"
command -v ndpiReader >/dev/null || { echo "needs ndpiReader: apt-get install libndpi-bin" >&2; exit 1; }
[[ -x $VIGIL ]] || { echo "$VIGIL not found: cargo build --release -p vigil" >&2; exit 1; }
WORK="$(mktemp -d /tmp/vigil-speed.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
python3 "$ROOT/bench/replicate_pcap.py" --copies "$COPIES" --out "$WORK/big.pcap" "$CORPUS"/*.pcap 2>"$WORK/build.log"
PACKETS=$(tail -1 "$WORK/build.log" | awk '{print $2}')
echo "capture: $PACKETS packets ($(du -h "$WORK/big.pcap" | cut -f1)), $COPIES replicas of the corpus's Ethernet pcaps"
cat "$WORK/big.pcap" > /dev/null   # warm the page cache for both

seconds() { # command... -> wall seconds (best of RUNS is taken by the caller)
    local t0 t1
    t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
best_v=""; best_n=""
for r in $(seq "$RUNS"); do
    v=$(seconds taskset -c 0 "$VIGIL" --log error replay --format jsonl "$WORK/big.pcap")
    n=$(seconds taskset -c 0 ndpiReader -q -i "$WORK/big.pcap")
    printf "run %d: vigil %.3f s, ndpiReader %.3f s\n" "$r" "$v" "$n"
    if [[ -z $best_v ]] || (( $(echo "$v < $best_v" | bc -l) )); then best_v=$v; fi
    if [[ -z $best_n ]] || (( $(echo "$n < $best_n" | bc -l) )); then best_n=$n; fi
done
pv=$(echo "$PACKETS / $best_v" | bc -l); pn=$(echo "$PACKETS / $best_n" | bc -l)
printf "vigil:      %10.0f packets/s (best of %d)\n" "$pv" "$RUNS"
printf "ndpiReader: %10.0f packets/s (best of %d, %s)\n" "$pn" "$RUNS" "$(ndpiReader -h 2>&1 | grep -o 'nDPI [0-9.]*' | head -1)"
printf "ratio vigil/nDPI: %.2fx\n" "$(echo "$pv / $pn" | bc -l)"
