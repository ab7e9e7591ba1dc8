#!/usr/bin/env python3
"""Score JA4 three ways on the nDPI corpus: the corpus's expected value, vigil's, and the value
computed from the public JA4 spec by scripts/ja4_check.py (an independent calculator that shares
no code with vigil).

corpus-eval compares vigil's JA4 with the expected `[JA4: ...]` of each `.out` file, which was
printed by the nDPI build the corpus was made with. Where that build and the spec disagree, this
shows which one vigil follows, flow by flow, and why the two differ (which JA4 field).

Usage: python3 bench/ja4_spec_eval.py [--vigil target/release/vigil] [--corpus ../shared/corpus/ndpi]
                                      [--flows]   also list every flow where the three are not equal
Needs: editcap (wireshark-common) for pcapng files, python3-cryptography for QUIC. Flows whose
ClientHello ja4_check.py cannot read (STARTTLS, DTLS, QUIC drafts and v2) have no spec value and
are counted apart.
"""
import argparse
import collections
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def load(name, path):
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def spec_values(ja4_check, pcap, tmp):
    """(l4, client port) -> set of JA4s the spec gives for the ClientHellos from that port."""
    path = pcap
    if pcap.endswith(".pcapng"):
        path = os.path.join(tmp, os.path.basename(pcap) + ".pcap")
        conv = subprocess.run(["editcap", "-F", "pcap", pcap, path], capture_output=True, text=True)
        if conv.returncode != 0:  # e.g. interfaces with different link types
            print(f"note: {os.path.basename(pcap)}: not converted to pcap: {conv.stderr.strip()[:120]}",
                  file=sys.stderr)
            return {}
    out = collections.defaultdict(set)
    hellos = []
    for reader in (ja4_check.tcp_client_hellos, ja4_check.quic_client_hellos):
        try:
            hellos += list(reader(path))
        except Exception as err:  # what the independent reader cannot read has no spec value
            print(f"note: {os.path.basename(pcap)}: {reader.__name__}: {err!r}", file=sys.stderr)
    for proto, port, hs in hellos:
        try:
            j, _, _ = ja4_check.ja4(proto, hs)
        except Exception:
            continue
        out[("tcp" if proto == "t" else "udp", str(port))].add(j)
    return out


def field_diff(a, b):
    """Which JA4 parts differ: 'proto/version', 'sni', 'counts', 'alpn', 'ciphers', 'extensions'."""
    if not a or not b or len(a) < 10 or len(b) < 10:
        return ["missing"]
    parts = []
    if a[:3] != b[:3]:
        parts.append("proto/version")
    if a[3] != b[3]:
        parts.append("sni d/i")
    if a[4:8] != b[4:8]:
        parts.append("counts")
    if a[8:10] != b[8:10]:
        parts.append("alpn chars")
    ah, bh = a.split("_"), b.split("_")
    if len(ah) == 3 and len(bh) == 3:
        if ah[1] != bh[1]:
            parts.append("ciphers")
        if ah[2] != bh[2]:
            parts.append("extensions")
    return parts or ["equal"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vigil", default=os.path.join(ROOT, "target", "release", "vigil"))
    ap.add_argument("--corpus", default=os.path.join(ROOT, "..", "shared", "corpus", "ndpi"))
    ap.add_argument("--flows", action="store_true")
    args = ap.parse_args()
    if not shutil.which("editcap"):
        sys.exit("editcap not found (apt-get install wireshark-common)")
    ce = load("corpus_eval", os.path.join(args.corpus, "..", "..", "tools", "corpus-eval"))
    ja4_check = load("ja4_check", os.path.join(ROOT, "scripts", "ja4_check.py"))

    t = collections.Counter()
    why_expected_differs = collections.Counter()
    why_vigil_differs = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for fname in sorted(os.listdir(args.corpus)):
            pcap = os.path.join(args.corpus, fname)
            if not fname.endswith((".pcap", ".pcapng")) or not os.path.exists(pcap + ".out"):
                continue
            expected = {k: e for k, e in ce.parse_out(pcap + ".out").items() if e["ja4"]}
            if not expected:
                continue
            got = ce.run_vigil(args.vigil, pcap)
            spec = spec_values(ja4_check, pcap, tmp)
            for key, e in expected.items():
                t["flows"] += 1
                g = got.get(key) or {}
                mine = g.get("ja4")
                l4 = key[0]
                port = str(g.get("sport", ""))
                candidates = spec.get((l4, port), set())
                truth = next(iter(candidates)) if len(candidates) == 1 else None
                t["vigil == expected"] += mine == e["ja4"]
                if truth is None:
                    t["no spec value"] += 1
                    t["no spec value, vigil == expected"] += mine == e["ja4"]
                    if args.flows and mine != e["ja4"]:
                        print(f"{fname} {key}: expected {e['ja4']} vigil {mine} spec n/a")
                    continue
                t["with spec value"] += 1
                t["expected == spec"] += e["ja4"] == truth
                t["vigil == spec"] += mine == truth
                if e["ja4"] != truth:
                    why_expected_differs.update(field_diff(e["ja4"], truth))
                if mine != truth:
                    why_vigil_differs.update(field_diff(mine, truth))
                if args.flows and not (mine == truth == e["ja4"]):
                    print(f"{fname} {key}: expected {e['ja4']} vigil {mine} spec {truth}")
    n = t["with spec value"]
    print(f"flows with an expected JA4: {t['flows']}; vigil == expected: {t['vigil == expected']}")
    print(f"with a spec value from ja4_check.py: {n}")
    print(f"  expected == spec: {t['expected == spec']}/{n}   vigil == spec: {t['vigil == spec']}/{n}")
    print(f"  where expected != spec, the fields that differ: {dict(why_expected_differs)}")
    print(f"  where vigil != spec, the fields that differ: {dict(why_vigil_differs)}")
    print(f"without a spec value (STARTTLS, DTLS, QUIC drafts/v2): {t['no spec value']};"
          f" vigil == expected on {t['no spec value, vigil == expected']}")


if __name__ == "__main__":
    main()
