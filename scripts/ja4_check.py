#!/usr/bin/env python3
"""Independent JA4 of every TLS ClientHello in a pcap, to cross-check `vigil replay`.

Written from the public JA4 spec (FoxIO, technical_details/JA4.md), sharing no code with vigil:
classic pcap only (Ethernet with VLAN tags, Linux cooked, loopback or raw IP), TCP client streams
reassembled by sequence number, QUIC v1, v2 (RFC 9369) and draft 27-34 Initial packets decrypted
(RFC 9001, needs the `cryptography` package) and their CRYPTO frames put back in offset order (also
when the capture holds a UDP GSO train: datagrams back to back in one packet, as tcpdump records
them on the sending host).

Usage: python3 scripts/ja4_check.py FILE.pcap...   prints: file proto client_port sni alpn ja4
"""
import hashlib
import struct
import sys

GREASE = {0x0A0A + 0x1010 * i for i in range(16)}


def link_payload(linktype, frame):
    """The IP packet inside one captured frame, or None (other link types, non-IP, VLAN-tagged
    Ethernet unwrapped)."""
    if linktype == 1:  # Ethernet, with any 802.1Q/802.1ad tags
        etype, frame = struct.unpack(">H", frame[12:14])[0], frame[14:]
        while etype in (0x8100, 0x88A8) and len(frame) >= 4:
            etype, frame = struct.unpack(">H", frame[2:4])[0], frame[4:]
        return frame if etype in (0x0800, 0x86DD) else None
    if linktype == 113:  # Linux cooked v1: 16-byte header, protocol last
        return frame[16:] if struct.unpack(">H", frame[14:16])[0] in (0x0800, 0x86DD) else None
    if linktype == 0:  # BSD loopback: 4-byte address family in host order
        return frame[4:]
    if linktype in (12, 14, 101, 228, 229):  # raw IP
        return frame
    return None


def packets(path):
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off : off + 16])
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        frame = link_payload(linktype, frame)
        if not frame or len(frame) < 20:
            continue
        if frame[0] >> 4 == 4:
            ihl, proto = (frame[0] & 15) * 4, frame[9]
            if struct.unpack(">H", frame[6:8])[0] & 0x1FFF:
                continue  # a later fragment: no L4 header
            src, dst, l4 = frame[12:16], frame[16:20], frame[ihl : struct.unpack(">H", frame[2:4])[0]]
        elif frame[0] >> 4 == 6 and len(frame) >= 40:
            proto, src, dst, l4 = frame[6], frame[8:24], frame[24:40], frame[40 : 40 + struct.unpack(">H", frame[4:6])[0]]
        else:
            continue
        if len(l4) < (20 if proto == 6 else 8):
            continue  # truncated capture or extension headers this reader does not walk
        yield proto, src, dst, l4


def tcp_client_hellos(path):
    streams = {}  # (src, sport, dst, dport) -> {seq: payload}
    for proto, src, dst, l4 in packets(path):
        if proto != 6:
            continue
        sport, dport, seq = struct.unpack(">HHI", l4[:8])
        payload = l4[(l4[12] >> 4) * 4 :]
        if payload:
            streams.setdefault((src, sport, dst, dport), {})[seq] = payload
    for (src, sport, dst, dport), segs in streams.items():
        seqs = sorted(segs)
        buf = b""
        for s in seqs:  # contiguous bytes from the first segment
            if s - seqs[0] == len(buf):
                buf += segs[s]
        if len(buf) > 5 and buf[0] == 0x16 and buf[5] == 1:
            # a ClientHello may span several TLS records: concatenate their fragments
            hs, i = b"", 0
            while i + 5 <= len(buf) and buf[i] == 0x16:
                n = struct.unpack(">H", buf[i + 3 : i + 5])[0]
                hs += buf[i + 5 : i + 5 + n]
                i += 5 + n
            yield "t", sport, hs


def hkdf_label(secret, label, length):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


def varint(b, i):
    n = 1 << (b[i] >> 6)
    v = b[i] & 0x3F
    for k in range(1, n):
        v = (v << 8) | b[i + k]
    return v, i + n


def quic_client_hellos(path):
    import hmac

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from cryptography.exceptions import InvalidTag

    v1_salt = "38762cf7f55934b34d179ae6a4c80cadccbb7f0a"  # RFC 9001 §5.2
    draft29_salt = "afbfec289993d24c9e9786f19c6111e04390a899"  # draft-ietf-quic-tls-29..32
    draft27_salt = "c3eef712c72ebb5a11a7d2432bb46365bef9f502"  # draft-ietf-quic-tls-23..28
    # version -> (initial salt, HKDF label prefix, long-header type of Initial packets)
    versions = {1: (v1_salt, b"quic ", 0), 0x6B3343CF: ("0dede3def700a6db819381be6e269dcbf9bd2ed9", b"quicv2 ", 1)}
    versions.update({0xFF000000 + d: (v1_salt, b"quic ", 0) for d in (33, 34)})
    versions.update({0xFF000000 + d: (draft29_salt, b"quic ", 0) for d in (29, 30, 31, 32)})
    versions.update({0xFF000000 + d: (draft27_salt, b"quic ", 0) for d in (27, 28)})
    crypto = {}  # (src, sport, dcid) -> {offset: data}
    for proto, src, dst, l4 in packets(path):
        if proto != 17:
            continue
        sport, _dport = struct.unpack(">HH", l4[:4])
        dgram = l4[8:]
        while True:
            # UDP GSO, as recorded on the sending host: one "datagram" holding several back to
            # back, each Initial followed by zero padding (Firefox pads after the packet): skip
            # the zeros to the next long header.
            while dgram[:1] == b"\x00":
                dgram = dgram[1:]
            if len(dgram) <= 7 or not dgram[0] & 0x80:  # coalesced long-header packets
                break
            version = struct.unpack(">I", dgram[1:5])[0]
            dcid = dgram[6 : 6 + dgram[5]]
            i = 6 + dgram[5]
            i += 1 + dgram[i]  # scid
            ptype = (dgram[0] >> 4) & 3
            salt, label, initial_type = versions.get(version, (None, b"", 0))
            if salt and ptype == initial_type:
                toklen, i = varint(dgram, i)
                i += toklen
            length, pn_off = varint(dgram, i)
            pkt, dgram = dgram[: pn_off + length], dgram[pn_off + length :]
            if not salt or ptype != initial_type:
                continue
            initial = hmac.new(bytes.fromhex(salt), dcid, "sha256").digest()
            client = hkdf_label(initial, b"client in", 32)
            key, iv, hp = (hkdf_label(client, label + b"key", 16), hkdf_label(client, label + b"iv", 12),
                           hkdf_label(client, label + b"hp", 16))
            enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
            mask = enc.update(pkt[pn_off + 4 : pn_off + 20]) + enc.finalize()
            first = pkt[0] ^ (mask[0] & 0x0F)
            pnlen = (first & 3) + 1
            pn = bytes(a ^ b for a, b in zip(pkt[pn_off : pn_off + pnlen], mask[1:]))
            header = bytes([first]) + pkt[1:pn_off] + pn
            nonce = bytes(a ^ b for a, b in zip(iv, b"\x00" * (12 - pnlen) + pn))
            try:
                plain = AESGCM(key).decrypt(nonce, pkt[pn_off + pnlen :], header)
            except InvalidTag:
                continue  # a server's Initial (keyed by the server's CIDs), not a client's
            j = 0
            while j < len(plain):
                ftype, j = varint(plain, j)
                if ftype in (0x00, 0x01):  # PADDING, PING
                    continue
                if ftype == 0x06:  # CRYPTO
                    off, j = varint(plain, j)
                    n, j = varint(plain, j)
                    parts = crypto.setdefault((src, sport, dcid), {})
                    if n > len(parts.get(off, b"")):  # retransmissions may cut frames differently
                        parts[off] = plain[j : j + n]
                    j += n
                elif ftype in (0x02, 0x03):  # ACK
                    _, j = varint(plain, j)
                    _, j = varint(plain, j)
                    cnt, j = varint(plain, j)
                    _, j = varint(plain, j)
                    for _ in range(2 * cnt):
                        _, j = varint(plain, j)
                    if ftype == 0x03:
                        for _ in range(3):
                            _, j = varint(plain, j)
                elif ftype == 0x1C:  # CONNECTION_CLOSE (the client giving up)
                    break
                else:
                    raise ValueError(f"unexpected frame type {ftype:#x} in an Initial")
    for (src, sport, dcid), parts in crypto.items():
        buf = b""
        for off in sorted(parts):
            if off <= len(buf):
                buf = buf[:off] + parts[off] if off + len(parts[off]) > len(buf) else buf
        if len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[1:4], "big"):
            print(f"{path}: udp {sport}: ClientHello incomplete ({len(buf)} bytes in order)", file=sys.stderr)
            continue
        yield "q", sport, buf


def ja4(proto, hs):
    assert hs[0] == 1, "not a ClientHello"
    body = hs[4 : 4 + int.from_bytes(hs[1:4], "big")]
    legacy = struct.unpack(">H", body[:2])[0]
    i = 2 + 32
    i += 1 + body[i]  # session id
    n = struct.unpack(">H", body[i : i + 2])[0]
    ciphers = [struct.unpack(">H", body[i + 2 + k : i + 4 + k])[0] for k in range(0, n, 2)]
    i += 2 + n
    i += 1 + body[i]  # compression methods
    end = i + 2 + struct.unpack(">H", body[i : i + 2])[0]
    i += 2
    exts, sni, alpn, versions, sigalgs = [], None, [], [], []
    while i < end:
        t, n = struct.unpack(">HH", body[i : i + 4])
        d = body[i + 4 : i + 4 + n]
        i += 4 + n
        exts.append(t)
        if t == 0:
            sni = d[5 : 5 + struct.unpack(">H", d[3:5])[0]].decode()
        elif t == 16:
            k = 2
            while k < len(d):
                alpn.append(d[k + 1 : k + 1 + d[k]].decode("latin-1"))
                k += 1 + d[k]
        elif t == 43:
            versions = [struct.unpack(">H", d[1 + k : 3 + k])[0] for k in range(0, d[0], 2)]
        elif t == 13:
            sigalgs = [struct.unpack(">H", d[2 + k : 4 + k])[0] for k in range(0, struct.unpack(">H", d[:2])[0], 2)]
    version = max([v for v in versions if v not in GREASE] or [legacy])
    ver = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"}.get(version, "00")
    ciphers = [c for c in ciphers if c not in GREASE]
    # GREASE is dropped from the signature algorithms too (Chrome 15x sends one there): the
    # reference implementation's sigalg-grease test expects it gone.
    sigalgs = [s for s in sigalgs if s not in GREASE]
    exts = [e for e in exts if e not in GREASE]
    if alpn and alpn[0]:
        a = alpn[0]
        alp = a[0] + a[-1] if a[0].isalnum() and a[-1].isalnum() and a.isascii() else (a.encode("latin-1").hex()[0] + a.encode("latin-1").hex()[-1])
    else:
        alp = "00"
    part_a = f"{proto}{ver}{'d' if sni is not None else 'i'}{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{alp}"

    def h(s):
        return hashlib.sha256(s.encode()).hexdigest()[:12] if s else "000000000000"

    part_b = h(",".join(f"{c:04x}" for c in sorted(ciphers)))
    ext_s = ",".join(f"{e:04x}" for e in sorted(e for e in exts if e not in (0, 16)))
    if sigalgs:
        ext_s += "_" + ",".join(f"{s:04x}" for s in sigalgs)
    return f"{part_a}_{part_b}_{h(ext_s) if exts else '000000000000'}", sni, alpn


if __name__ == "__main__":
    for path in sys.argv[1:]:
        for proto, port, hs in list(tcp_client_hellos(path)) + list(quic_client_hellos(path)):
            j, sni, alpn = ja4(proto, hs)
            print(path.rsplit("/", 1)[-1], "tcp" if proto == "t" else "udp", port, sni, ",".join(alpn) or "-", j)
