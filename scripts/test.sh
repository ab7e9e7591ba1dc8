#!/usr/bin/env bash
# One command: install what the tests need, then run every test: unit, pcap replay, and the
# real-kernel tests (network namespaces, NFQUEUE, iptables), which need root. With CI set,
# a kernel test that cannot run fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== build"
cargo build --locked --workspace --all-targets
echo "== fuzz targets compile (run them with cargo-fuzz: fuzz/README.md)"
cargo check --locked --manifest-path fuzz/Cargo.toml --bins
echo "== tests (unit, replay, kernel)"
# Kernel tests build their own namespaces; two threads keep a 2-core machine responsive.
cargo test --locked --workspace --no-fail-fast -- --test-threads=2
