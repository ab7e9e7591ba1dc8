#!/usr/bin/env python3
"""How early vigil names flows: the distribution of `dpi_packets` (flow packets until the protocol,
and the name where the flow carries one, were known) per protocol, over `vigil replay` of captures.

Usage: bench/dpi_packets.py [--vigil target/release/vigil] CAPTURE...
"""
import argparse
import collections
import json
import subprocess

ap = argparse.ArgumentParser()
ap.add_argument("--vigil", default="target/release/vigil")
ap.add_argument("captures", nargs="+")
args = ap.parse_args()
dist = collections.defaultdict(collections.Counter)
for cap in args.captures:
    out = subprocess.run([args.vigil, "--log", "error", "replay", "--format", "jsonl", cap],
                         capture_output=True, text=True)
    for line in out.stdout.splitlines():
        r = json.loads(line)
        if r["protocol"] == "Unknown" or r.get("protocol_guessed") or r.get("dpi_packets") is None:
            continue
        dist[r["protocol"]][r["dpi_packets"]] += 1
print(f"{'protocol':14} {'flows':>6} {'p50':>4} {'p90':>4} {'max':>4}  packets: flows")
for proto, c in sorted(dist.items(), key=lambda kv: -sum(kv[1].values())):
    vals = sorted(c.elements())
    p = lambda q: vals[min(len(vals) - 1, int(q * len(vals)))]
    hist = " ".join(f"{k}:{v}" for k, v in sorted(c.items()))
    print(f"{proto:14} {len(vals):6} {p(0.5):4} {p(0.9):4} {vals[-1]:4}  {hist}")
