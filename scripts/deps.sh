#!/usr/bin/env bash
# Installs what vigil's tests use (`deps.sh`) or only what the demo needs (`deps.sh --demo`):
# Debian packages, and for the tests a ClickHouse server and a current ClickHouse engine.
# Idempotent; needs root.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/deps.sh: run as root (it installs Debian packages)" >&2
    exit 1
fi
tests=1
[ "${1:-}" = "--demo" ] && tests=0
packages=(
    iproute2 iptables nftables kmod procps      # namespaces, the firewall rules vigil installs, sysctl
    curl dnsutils dnsmasq-base python3 iperf3   # real clients and servers for the lab
    openssl ca-certificates                     # the lab's HTTPS server certificate
    build-essential pkg-config                  # a C compiler for crates with C parts
)
if [ "$tests" = 1 ]; then
    packages+=(
        socat netcat-openbsd tcpdump conntrack  # test helpers
        clickhouse-server clickhouse-client     # vigil-sinks' ClickHouse test runs a private server
        python3-venv                            # the venv for chdb (below)
    )
fi
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
# vigil-sinks' test against a current ClickHouse (tests/clickhouse_current.rs): no current server
# is packaged, so scripts/chdb_http.py serves ClickHouse 26.9's engine from PyPI's chdb-core, in a
# venv of Debian's python3. Owned like the work tree, so that its owner can still clean target/.
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/chdb-venv"
if [ "$tests" = 1 ] && ! "$venv/bin/python" -c 'import chdb' 2>/dev/null; then
    echo "installing chdb-core 26.9.0 into $venv"
    [ -d "$root/target" ] || { mkdir "$root/target"; chown --reference="$root" "$root/target"; }
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --no-cache-dir --no-deps chdb-core==26.9.0
    chown -R --reference="$root" "$venv"
fi
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust (https://rustup.rs) and run this again" >&2
    exit 1
fi
