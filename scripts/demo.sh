#!/usr/bin/env bash
# One command: install what the demo needs, build vigil, run `vigil demo` (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --demo
cargo build --release --locked -p vigil
exec ./target/release/vigil demo "$@"
