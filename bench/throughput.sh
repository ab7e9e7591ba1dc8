#!/usr/bin/env bash
# Throughput of a routed gateway with and without vigil inline, measured in one run.
#
#   client (198.18.1.2) -- gateway (forwards; vigil runs here) -- server (198.18.2.2)
#
# Modes, each with iperf3 -t $DURATION, 1 stream and 4 streams (client -> server):
#   kernel    no rules at all (the baseline)
#   offload   `vigil run` with the default config (offload on, first 32 packets queued)
#   queued    `vigil run` with offload = false and queue_packets = 0 (every packet through vigil)
# Prints Gbit/s (receiver side) and the ratio to the kernel baseline. With ROUNDS > 1 the three
# modes are measured in turn ROUNDS times (interleaved, so background load hits all of them alike)
# and the mean is reported; a veth lab on a small VM is noisy, look at the individual samples.
#
# Needs root, iproute2, iptables, iperf3, python3. Not part of `cargo test`.
# Usage: sudo bench/throughput.sh            (build first: cargo build --release -p vigil)
# Env:   VIGIL=path/to/vigil  DURATION=10  STREAMS="1 4"  ROUNDS=2
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VIGIL="${VIGIL:-$ROOT/target/release/vigil}"
DURATION="${DURATION:-10}"
STREAMS="${STREAMS:-1 4}"
ROUNDS="${ROUNDS:-2}"

[[ $(id -u) -eq 0 ]] || { echo "throughput.sh: needs root (network namespaces, NFQUEUE)" >&2; exit 1; }
[[ -x $VIGIL ]] || { echo "throughput.sh: $VIGIL not found: cargo build --release -p vigil" >&2; exit 1; }
for t in ip iperf3 python3 iptables; do
    command -v "$t" >/dev/null || { echo "throughput.sh: $t not found" >&2; exit 1; }
done

C="vbench$$c"; G="vbench$$g"; S="vbench$$s"
WORK="$(mktemp -d /tmp/vigil-bench.XXXXXX)"
VIGIL_PID=""; IPERF_PID=""

cleanup() {
    set +e
    if [[ -n $VIGIL_PID ]] && kill -0 "$VIGIL_PID" 2>/dev/null; then
        kill -TERM "$VIGIL_PID"; wait "$VIGIL_PID" 2>/dev/null
    fi
    [[ -n $IPERF_PID ]] && { kill "$IPERF_PID" 2>/dev/null; wait "$IPERF_PID" 2>/dev/null; }
    for ns in "$C" "$G" "$S"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- lab ------------------------------------------------------------------------------------
for ns in "$C" "$G" "$S"; do
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip -n "$ns" link set lo up
done
ip link add name lan0 netns "$G" type veth peer name eth0 netns "$C"
ip link add name wan0 netns "$G" type veth peer name eth0 netns "$S"
ip -n "$C" addr add 198.18.1.2/24 dev eth0; ip -n "$C" link set eth0 up
ip -n "$G" addr add 198.18.1.1/24 dev lan0; ip -n "$G" link set lan0 up
ip -n "$G" addr add 198.18.2.1/24 dev wan0; ip -n "$G" link set wan0 up
ip -n "$S" addr add 198.18.2.2/24 dev eth0; ip -n "$S" link set eth0 up
ip -n "$C" route add default via 198.18.1.1
ip -n "$S" route add default via 198.18.2.1
ip netns exec "$G" sysctl -qw net.ipv4.ip_forward=1

ip netns exec "$S" iperf3 -s -p 5201 >/dev/null 2>&1 &
IPERF_PID=$!
for _ in $(seq 100); do
    ip netns exec "$S" ss -Hlnt 'sport = :5201' | grep -q . && break
    sleep 0.1
done

# --- vigil ----------------------------------------------------------------------------------
start_vigil() { # $1 = config text
    printf '%s\n[report]\nstats_file = "%s/stats.json"\n' "$1" "$WORK" >"$WORK/vigil.toml"
    rm -f "$WORK/stats.json"
    ip netns exec "$G" "$VIGIL" --log warn run --config "$WORK/vigil.toml" 2>"$WORK/vigil.log" &
    VIGIL_PID=$!
    for _ in $(seq 200); do
        [[ -s $WORK/stats.json ]] && return 0
        kill -0 "$VIGIL_PID" 2>/dev/null || { cat "$WORK/vigil.log" >&2; echo "vigil exited" >&2; exit 1; }
        sleep 0.05
    done
    echo "vigil not ready after 10 s" >&2; cat "$WORK/vigil.log" >&2; exit 1
}

stop_vigil() {
    kill -TERM "$VIGIL_PID"
    local rc=0
    wait "$VIGIL_PID" || rc=$?
    VIGIL_PID=""
    [[ $rc -eq 0 ]] || { echo "vigil exited with $rc" >&2; cat "$WORK/vigil.log" >&2; exit 1; }
    if ip netns exec "$G" iptables-save | grep -q VIGIL_; then
        echo "vigil left rules behind" >&2; exit 1
    fi
}

vigil_packets() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"]["packets"])' "$WORK/stats.json"
}

# --- measurement ----------------------------------------------------------------------------
declare -A SAMPLES
run_iperf() { # $1 = mode, $2 = streams
    local out="$WORK/iperf-$1-$2.json" g
    ip netns exec "$C" iperf3 -J -c 198.18.2.2 -p 5201 -t "$DURATION" -P "$2" >"$out" || {
        echo "iperf3 failed ($1, $2 streams):" >&2; cat "$out" >&2; exit 1; }
    g=$(python3 -c 'import json,sys; print("%.3f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e9))' "$out")
    SAMPLES[$1,$2]="${SAMPLES[$1,$2]:-} $g"
    printf '  %-8s %d stream(s): %7.2f Gbit/s\n' "$1" "$2" "$g"
}

mean() { python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print("%.3f" % (sum(v)/len(v)))' $1; }

echo "vigil throughput bench: $(uname -r), $(nproc) CPU(s), iperf3 ${DURATION}s x $ROUNDS round(s), vigil $VIGIL"
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    for n in $STREAMS; do run_iperf kernel "$n"; done

    start_vigil '[engine]'
    for n in $STREAMS; do run_iperf offload "$n"; done
    sleep 1.2 # one stats period
    echo "  (offload: vigil saw $(vigil_packets) packets in total)"
    stop_vigil

    start_vigil $'[engine]\noffload = false\n[firewall]\nqueue_packets = 0'
    for n in $STREAMS; do run_iperf queued "$n"; done
    sleep 1.2
    echo "  (queued: vigil saw $(vigil_packets) packets in total)"
    stop_vigil
done

echo
echo "mean of $ROUNDS round(s), receiver side; ratio to the kernel alone in the same run:"
printf '%-10s' mode; for n in $STREAMS; do printf '%24s' "$n stream(s)"; done; echo
for m in kernel offload queued; do
    printf '%-10s' "$m"
    for n in $STREAMS; do
        v=$(mean "${SAMPLES[$m,$n]}"); b=$(mean "${SAMPLES[kernel,$n]}")
        printf '%24s' "$(python3 -c 'import sys; v,b=float(sys.argv[1]),float(sys.argv[2]); print("%.2f Gbit/s (%.2fx)" % (v, v/b))' "$v" "$b")"
    done
    echo
done
