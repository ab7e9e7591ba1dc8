#!/usr/bin/env python3
"""Builds a large classification benchmark capture from small ones.

Reads pcap files with Ethernet framing (other link types and pcapng are skipped), and writes
`--copies` replicas of all their packets into one pcap. Each replica shifts IPv4 addresses (the
second octet is XORed with the replica number; checksums are not recomputed: neither vigil nor
nDPI verifies them) so every replica's flows are new flows that need classification again, and
shifts timestamps so replicas follow each other in time. IPv6 packets are copied as they are.

Usage: replicate_pcap.py --copies 200 --out big.pcap IN.pcap...
"""
import argparse
import struct
import sys


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return None
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        endian, nanos = "<", False
    elif magic == b"\xa1\xb2\xc3\xd4":
        endian, nanos = ">", False
    elif magic == b"\x4d\x3c\xb2\xa1":
        endian, nanos = "<", True
    elif magic == b"\xa1\xb2\x3c\x4d":
        endian, nanos = ">", True
    else:
        return None  # pcapng or unknown
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0xFFFF
    if linktype != 1:
        return None
    packets = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            break
        usec = frac // 1000 if nanos else frac
        packets.append((sec * 1_000_000 + usec, data[off:off + incl], orig))
        off += incl
    return packets


def shift_v4(frame, n):
    # Ethernet (optionally one VLAN tag) carrying IPv4: XOR the second octet of both addresses.
    et_off = 12
    ethertype = struct.unpack(">H", frame[et_off:et_off + 2])[0]
    if ethertype == 0x8100 and len(frame) >= 18:
        et_off = 16
        ethertype = struct.unpack(">H", frame[et_off:et_off + 2])[0]
    ip = et_off + 2
    if ethertype != 0x0800 or len(frame) < ip + 20:
        return frame
    b = bytearray(frame)
    b[ip + 13] ^= n & 0xFF
    b[ip + 17] ^= n & 0xFF
    b[ip + 12] ^= (n >> 8) & 0xFF
    b[ip + 16] ^= (n >> 8) & 0xFF
    return bytes(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--out", required=True)
    ap.add_argument("inputs", nargs="+")
    args = ap.parse_args()
    base = []
    for p in args.inputs:
        pk = read_pcap(p)
        if pk:
            t0 = min(t for t, _, _ in pk)
            rel = [(t - t0, d, o) for t, d, o in pk]
            if max(t for t, _, _ in rel) > 3600 * 1_000_000:
                print(f"skipping {p}: spans more than an hour", file=sys.stderr)
                continue
            base.extend(rel)
    if not base:
        sys.exit("no usable (Ethernet pcap) input")
    span = max(t for t, _, _ in base) + 1_000_000
    start = 1_700_000_000 * 1_000_000
    count = 0
    with open(args.out, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n in range(args.copies):
            # Replicas interleave nothing: replica n starts after replica n-1 ends.
            for t, d, o in sorted(base, key=lambda x: x[0]):
                ts = start + n * span + t
                frame = shift_v4(d, n + 1)
                out.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), o))
                out.write(frame)
                count += 1
    print(f"{args.out}: {count} packets from {len(base)} x {args.copies}", file=sys.stderr)


if __name__ == "__main__":
    main()
