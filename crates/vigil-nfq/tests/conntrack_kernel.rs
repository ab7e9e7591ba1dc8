//! Root-only tests of the ctnetlink client against the running kernel. Each
//! test creates its own network namespace (deleted by a guard, also on
//! failure), makes conntrack entries with real connections over lo and
//! reads, re-marks and deletes them. Without root the tests print a skip
//! notice, unless `CI` is set, where they fail.
//!
//! With `VIGIL_WRITE_FIXTURES=1` the raw `CT_GET` answers are saved to
//! `tests/fixtures/ct_get_*.bin` (decoded by the unit tests of
//! `src/conntrack.rs`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::{maybe_write_fixture, require_root, NetNs};
use vigil_nfq::conntrack::{self, IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY};
use vigil_nfq::{Conntrack, CtTuple};

/// A namespace where conntrack tracks lo traffic with accounting on.
/// Conntrack only hooks into a namespace once a rule needs it, hence the
/// `-m conntrack` rule.
fn setup(v6: bool) -> NetNs {
    let ns = NetNs::new();
    ns.iptables(v6, &["-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT"]);
    ns.exec(&["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=1"]);
    ns
}

/// The `mark=N` of the entry with `sport=S dport=D` in `conntrack -L -o extended`.
fn cli_mark(ns: &NetNs, v6: bool, sport: u16, dport: u16) -> Option<u32> {
    let fam = if v6 { "ipv6" } else { "ipv4" };
    let out = ns.exec(&["conntrack", "-L", "-f", fam, "-o", "extended"]);
    let (s, d) = (format!("sport={sport} "), format!("dport={dport} "));
    let line = out.lines().find(|l| l.contains(&s) && l.contains(&d))?;
    line.split_whitespace().find_map(|w| w.strip_prefix("mark=")).and_then(|m| m.parse().ok())
}

fn tcp_scenario(v6: bool) {
    let ns = setup(v6);
    let ns_ref = &ns;
    ns.run(move || {
        let bind = if v6 { "[::1]:0" } else { "127.0.0.1:0" };
        let listener = TcpListener::bind(bind).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        client.write_all(b"hello conntrack").unwrap();
        let mut got = [0u8; 15];
        server.read_exact(&mut got).unwrap();
        server.write_all(b"reply").unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();

        let t = CtTuple::tcp(client.local_addr().unwrap(), client.peer_addr().unwrap());
        let mut ct = Conntrack::open().expect("open ctnetlink socket");

        // Lookup.
        let raw = ct.get_raw(&t).unwrap().expect("entry of the TCP connection");
        maybe_write_fixture(if v6 { "ct_get_ipv6_tcp.bin" } else { "ct_get_ipv4_tcp.bin" }, &raw);
        let e = conntrack::parse_entry(&raw).unwrap();
        assert_eq!(ct.get(&t).unwrap().map(|e| (e.id, e.orig)), Some((e.id, t)));
        eprintln!("{}: {e:?}", if v6 { "ipv6" } else { "ipv4" });
        assert_eq!(e.orig, t);
        assert_eq!(e.reply, t.reversed(), "no NAT");
        let want = IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED;
        assert_eq!(e.status & want, want, "status {:#x}", e.status);
        assert_eq!(e.mark, 0);
        let timeout = e.timeout.expect("timeout");
        assert!(timeout > 60 && timeout <= 432_000, "established TCP timeout {timeout}");
        // SYN, ACK, data (+ the ACK of the reply, maybe); L3 bytes.
        let (po, bo) = (e.packets_orig.expect("acct on"), e.bytes_orig.expect("acct on"));
        let (pr, br) = (e.packets_reply.expect("acct on"), e.bytes_reply.expect("acct on"));
        let hdr = if v6 { 60 } else { 40 };
        assert!((3..=10).contains(&po), "packets_orig {po}");
        assert!(bo >= po * hdr + 15 && bo < 2000, "bytes_orig {bo}");
        assert!((2..=10).contains(&pr), "packets_reply {pr}");
        assert!(br >= pr * hdr + 5 && br < 2000, "bytes_reply {br}");

        // Set the offload bit; the CLI sees it.
        let bit = 0x2000_0000;
        assert!(ct.set_mark(&t, bit, bit).unwrap());
        assert_eq!(ct.get(&t).unwrap().unwrap().mark, bit);
        assert_eq!(cli_mark(ns_ref, v6, t.sport, t.dport), Some(bit));
        // Other bits are left alone by a masked update...
        assert!(ct.set_mark(&t, 0xff, 0xff).unwrap());
        assert_eq!(ct.get(&t).unwrap().unwrap().mark, bit | 0xff);
        // ... and clearing the offload bit keeps them.
        assert!(ct.set_mark(&t, 0, bit).unwrap());
        assert_eq!(ct.get(&t).unwrap().unwrap().mark, 0xff);
        assert_eq!(cli_mark(ns_ref, v6, t.sport, t.dport), Some(0xff));
        assert!(ct.kernel_mark_mask(), "the kernel accepted CTA_MARK_MASK");
        // Bits of `mark` outside `mask` are not applied.
        assert!(ct.set_mark(&t, 0xffff_0000 | 0x100, 0x100).unwrap());
        assert_eq!(ct.get(&t).unwrap().unwrap().mark, 0x1ff);
        // Full mask replaces.
        assert!(ct.set_mark(&t, 0x1234, u32::MAX).unwrap());
        assert_eq!(ct.get(&t).unwrap().unwrap().mark, 0x1234);
        // Read-modify-write path gives the same results.
        ct.set_kernel_mark_mask(false);
        assert!(ct.set_mark(&t, bit, bit).unwrap());
        assert!(ct.set_mark(&t, 0, 0x1000).unwrap());
        assert_eq!(ct.get(&t).unwrap().unwrap().mark, bit | 0x0234);
        ct.set_kernel_mark_mask(true);

        // Delete; a second delete and updates find nothing.
        assert!(ct.delete(&t).unwrap());
        assert!(ct.get(&t).unwrap().is_none());
        assert!(!ct.delete(&t).unwrap());
        assert!(!ct.set_mark(&t, bit, bit).unwrap());
        assert!(!ct.set_mark(&t, bit, u32::MAX).unwrap());
        ct.set_kernel_mark_mask(false);
        assert!(!ct.set_mark(&t, bit, bit).unwrap(), "read-modify-write on an absent entry");
        ct.set_kernel_mark_mask(true);
        assert_eq!(cli_mark(ns_ref, v6, t.sport, t.dport), None);

        // The next packet of the connection creates a new entry (TCP loose
        // pickup): fresh counters, no mark. (Its CTA_ID may equal the old
        // one: the kernel derives ids from the entry's address and tuples,
        // and the freed slot is often reused.)
        client.write_all(b"again").unwrap();
        let mut got = [0u8; 5];
        server.read_exact(&mut got).unwrap();
        let e2 = ct.get(&t).unwrap().expect("entry re-created by the next packet");
        assert_eq!(e2.mark, 0);
        let p2 = e2.packets_orig.unwrap();
        assert!((1..=2).contains(&p2), "new entry counts from the re-creating packet: {p2}");
        if e2.id == e.id {
            eprintln!("note: re-created entry got the same CTA_ID {:#x}", e.id);
        }
        assert!(ct.delete(&t).unwrap());
    });
}

#[test]
fn tcp_ipv4_get_mark_delete() {
    if !require_root("tcp_ipv4_get_mark_delete") {
        return;
    }
    tcp_scenario(false);
}

#[test]
fn tcp_ipv6_get_mark_delete() {
    if !require_root("tcp_ipv6_get_mark_delete") {
        return;
    }
    tcp_scenario(true);
}

fn udp_scenario(v6: bool) {
    let ns = setup(v6);
    ns.run(|| {
        let bind = if v6 { "[::1]:0" } else { "127.0.0.1:0" };
        let rx = UdpSocket::bind(bind).unwrap();
        let tx = UdpSocket::bind(bind).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let dst: SocketAddr = rx.local_addr().unwrap();
        for _ in 0..3 {
            tx.send_to(b"ping", dst).unwrap();
            let mut buf = [0u8; 16];
            rx.recv(&mut buf).unwrap();
        }
        let t = CtTuple::udp(tx.local_addr().unwrap(), dst);
        let mut ct = Conntrack::open().unwrap();
        let e = ct.get(&t).unwrap().expect("UDP entry");
        assert_eq!((e.orig, e.reply), (t, t.reversed()));
        assert_eq!(e.packets_orig, Some(3));
        let l3 = if v6 { 40 + 8 + 4 } else { 20 + 8 + 4 };
        assert_eq!(e.bytes_orig, Some(3 * l3));
        assert_eq!((e.packets_reply, e.bytes_reply), (Some(0), Some(0)));
        assert_eq!(e.status & IPS_SEEN_REPLY, 0);
        // The kernel looks tuples up in its hash of both directions: the
        // reply tuple finds the same entry.
        let by_reply = ct.get(&t.reversed()).unwrap().expect("found by the reply tuple");
        assert_eq!((by_reply.id, by_reply.orig), (e.id, t));
        assert!(ct.set_mark(&t, 0x2000_0000, 0x2000_0000).unwrap());
        assert_eq!(ct.get(&t).unwrap().unwrap().mark, 0x2000_0000);
        assert!(ct.delete(&t).unwrap());
        assert!(!ct.delete(&t).unwrap());
        assert!(ct.get(&t).unwrap().is_none());
    });
}

#[test]
fn udp_ipv4_get_mark_delete() {
    if !require_root("udp_ipv4_get_mark_delete") {
        return;
    }
    udp_scenario(false);
}

#[test]
fn udp_ipv6_get_mark_delete() {
    if !require_root("udp_ipv6_get_mark_delete") {
        return;
    }
    udp_scenario(true);
}

#[test]
fn absent_entries_and_errors() {
    if !require_root("absent_entries_and_errors") {
        return;
    }
    let ns = setup(false);
    ns.run(|| {
        let mut ct = Conntrack::open().unwrap();
        let t = CtTuple::tcp("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
        assert!(ct.get(&t).unwrap().is_none());
        assert!(!ct.delete(&t).unwrap());
        assert!(!ct.set_mark(&t, 1, 1).unwrap());
        // Mixed families are refused before anything is sent.
        let bad = CtTuple::tcp("127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap());
        let e = ct.delete(&bad).unwrap_err();
        assert!(e.to_string().contains("mixes address families"), "{e}");
        // An ICMP tuple with a type conntrack does not track: the kernel
        // refuses it, and the error names the operation and the tuple.
        let icmp = CtTuple::icmp("127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap(), 1, 3, 0);
        let e = ct.get(&icmp).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
        assert!(e.to_string().starts_with("kernel refused to get conntrack entry icmp 127.0.0.1 -> 127.0.0.1"), "{e}");
        // The socket is still usable afterwards.
        assert!(!ct.delete(&t).unwrap());
    });
}
