#!/usr/bin/env bash
# Installs the Debian packages vigil's demo and tests use. Idempotent; needs root.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/deps.sh: run as root (it installs Debian packages)" >&2
    exit 1
fi
packages=(
    iproute2 iptables nftables kmod procps      # namespaces, the firewall rules vigil installs, sysctl
    curl dnsutils dnsmasq-base python3 iperf3   # real clients and servers for the lab
    openssl ca-certificates                     # the lab's HTTPS server certificate
    socat netcat-openbsd tcpdump conntrack      # test helpers
    build-essential pkg-config                  # a C compiler for crates with C parts
    clickhouse-server clickhouse-client         # vigil-sinks' ClickHouse test runs a private server
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The kernel modules vigil needs; most kernels load them on demand, so failure here is not fatal.
for m in nfnetlink_queue xt_NFQUEUE xt_connbytes xt_connmark xt_mark nf_conntrack; do
    modprobe -q "$m" 2>/dev/null || true
done
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust (https://rustup.rs) and run this again" >&2
    exit 1
fi
