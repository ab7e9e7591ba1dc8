//! Root-only tests against the running kernel. Each test creates its own
//! network namespace (deleted by a guard, also on failure). Without root the
//! tests print a skip notice, unless `CI` is set, where they fail.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::NetNs;
use vigil_nfq::{NfqError, Queue, QueueConfig, Verdict, VerdictAction};

/// Owned copy of what the tests need from a packet.
#[derive(Debug, Clone)]
struct Got {
    id: u32,
    hook: u8,
    hw_protocol: u16,
    payload: Vec<u8>,
}

/// Receive until `n` packets arrived or 3 s passed.
fn recv_n(q: &mut Queue, n: usize) -> Vec<Got> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < n && Instant::now() < deadline {
        let batch = q.recv(Duration::from_millis(100)).expect("recv");
        for p in batch.packets() {
            got.push(Got { id: p.id, hook: p.hook, hw_protocol: p.hw_protocol, payload: p.payload.to_vec() });
        }
    }
    assert_eq!(got.len(), n, "expected {n} queued packets, got {got:?}");
    got
}

fn receiver(port: u16, v6: bool) -> UdpSocket {
    let s = if v6 { UdpSocket::bind(("::1", port)).unwrap() } else { UdpSocket::bind(("127.0.0.1", port)).unwrap() };
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    s
}

fn recv_data(s: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    match s.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

fn sender(v6: bool) -> UdpSocket {
    UdpSocket::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).unwrap()
}

/// Namespace with `OUTPUT -p udp --dport PORT -j NFQUEUE --queue-num Q`.
fn setup(port: u16, queue: u16, v6: bool) -> NetNs {
    let ns = NetNs::new();
    let (p, q) = (port.to_string(), queue.to_string());
    ns.iptables(v6, &["-A", "OUTPUT", "-p", "udp", "--dport", &p, "-j", "NFQUEUE", "--queue-num", &q]);
    ns
}

#[test]
fn accept_with_mark() {
    if !common::require_root("accept_with_mark") {
        return;
    }
    let ns = setup(9001, 3, false);
    // Counts packets that leave with the mark (after the queue's hook).
    ns.iptables(
        false,
        &["-t", "mangle", "-A", "POSTROUTING", "-p", "udp", "--dport", "9001", "-m", "mark", "--mark", "0x2a"],
    );
    let data = ns.run(|| {
        let mut q = Queue::open(&QueueConfig::new(3)).expect("open");
        let rx = receiver(9001, false);
        sender(false).send_to(b"mark me", "127.0.0.1:9001").unwrap();
        let got = recv_n(&mut q, 1);
        assert_eq!(got[0].hw_protocol, 0x0800);
        assert_eq!(got[0].hook, 3, "NF_INET_LOCAL_OUT");
        assert!(got[0].payload.ends_with(b"mark me"));
        q.verdict(&Verdict::accept(got[0].id).with_mark(0x2a)).unwrap();
        let data = recv_data(&rx);
        let st = q.stats();
        assert_eq!((st.received, st.verdicts_sent, st.send_errors), (1, 1, 0));
        q.unbind().expect("unbind");
        data
    });
    assert_eq!(data.as_deref(), Some(&b"mark me"[..]));
    assert_eq!(ns.rule_packets(false, "mangle", "POSTROUTING", 1), 1);
}

#[test]
fn drop_verdict() {
    if !common::require_root("drop_verdict") {
        return;
    }
    let ns = setup(9002, 4, false);
    ns.run(|| {
        let mut q = Queue::open(&QueueConfig::new(4)).expect("open");
        let rx = receiver(9002, false);
        sender(false).send_to(b"drop me", "127.0.0.1:9002").unwrap();
        let got = recv_n(&mut q, 1);
        q.verdict(&Verdict::drop(got[0].id)).unwrap();
        assert_eq!(recv_data(&rx), None, "dropped datagram arrived");
    });
}

#[test]
fn payload_replacement() {
    if !common::require_root("payload_replacement") {
        return;
    }
    let ns = setup(9003, 5, false);
    let data = ns.run(|| {
        let mut q = Queue::open(&QueueConfig::new(5)).expect("open");
        let rx = receiver(9003, false);
        sender(false).send_to(b"original", "127.0.0.1:9003").unwrap();
        let got = recv_n(&mut q, 1);
        let mut pkt = got[0].payload.clone();
        let n = pkt.len();
        pkt[n - 8..].copy_from_slice(b"REPLACED");
        common::fix_udp4_checksum(&mut pkt);
        q.verdict(&Verdict::accept(got[0].id).with_payload(&pkt)).unwrap();
        recv_data(&rx)
    });
    assert_eq!(data.as_deref(), Some(&b"REPLACED"[..]));
}

#[test]
fn batch_verdict_accepts_all() {
    if !common::require_root("batch_verdict_accepts_all") {
        return;
    }
    let ns = setup(9004, 6, false);
    ns.run(|| {
        let mut q = Queue::open(&QueueConfig::new(6)).expect("open");
        let rx = receiver(9004, false);
        let tx = sender(false);
        for i in 0..5u8 {
            tx.send_to(&[b'b', b'0' + i], "127.0.0.1:9004").unwrap();
        }
        let got = recv_n(&mut q, 5);
        let max = got.iter().map(|g| g.id).max().unwrap();
        q.push_batch_accept(max, None);
        assert_eq!(q.pending_verdicts(), 1);
        q.flush().unwrap();
        let mut arrived: Vec<_> = (0..5).filter_map(|_| recv_data(&rx)).collect();
        arrived.sort();
        let want: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'b', b'0' + i]).collect();
        assert_eq!(arrived, want);
        assert_eq!(q.stats().batch_verdicts, 1);
        assert_eq!(q.stats().verdicts_sent, 0);
    });
}

#[test]
fn many_verdicts_one_flush() {
    if !common::require_root("many_verdicts_one_flush") {
        return;
    }
    let ns = setup(9009, 12, false);
    ns.run(|| {
        let mut q = Queue::open(&QueueConfig::new(12)).expect("open");
        let rx = receiver(9009, false);
        let tx = sender(false);
        for i in 0..20u8 {
            tx.send_to(&[i; 1000], "127.0.0.1:9009").unwrap();
        }
        let got = recv_n(&mut q, 20);
        // Send every packet back as a replacement payload: 20 x ~1 KiB
        // verdicts. The kernel marks a mangled skb CHECKSUM_NONE, and these
        // were CHECKSUM_PARTIAL (only the pseudo-header sum is in the UDP
        // header), so the checksum must be completed or the receiver drops
        // them.
        for g in &got {
            let mut pkt = g.payload.clone();
            common::fix_udp4_checksum(&mut pkt);
            q.push_verdict(&Verdict::accept(g.id).with_payload(&pkt)).unwrap();
        }
        assert_eq!(q.pending_verdicts(), 20);
        q.flush().unwrap();
        let n = (0..20).filter_map(|_| recv_data(&rx)).count();
        assert_eq!(n, 20);
        assert_eq!(q.stats().verdicts_sent, 20);
    });
}

#[test]
fn capabilities_conntrack_degrades() {
    if !common::require_root("capabilities_conntrack_degrades") {
        return;
    }
    let ns = setup(9005, 8, false);
    ns.run(|| {
        let cfg = QueueConfig { conntrack: true, ..QueueConfig::new(8) };
        let mut q = Queue::open(&cfg).expect("conntrack must never make open fail");
        let caps = q.capabilities();
        eprintln!("capabilities: {caps:?}");
        assert!(caps.fail_open && caps.gso);
        if !caps.conntrack {
            let e = q.push_verdict(&Verdict::accept(1).with_connmark(1)).unwrap_err();
            assert!(matches!(e, NfqError::Unsupported(_)), "{e}");
        }
        let q2 = Queue::open(&QueueConfig { conntrack: false, fail_open: false, gso: false, ..QueueConfig::new(9) })
            .unwrap();
        assert_eq!(q2.capabilities(), vigil_nfq::Capabilities::default());
    });
}

#[test]
fn out_of_order_verdicts() {
    if !common::require_root("out_of_order_verdicts") {
        return;
    }
    let ns = setup(9006, 10, false);
    ns.run(|| {
        let mut q = Queue::open(&QueueConfig::new(10)).expect("open");
        let rx = receiver(9006, false);
        let tx = sender(false);
        tx.send_to(b"first", "127.0.0.1:9006").unwrap();
        tx.send_to(b"second", "127.0.0.1:9006").unwrap();
        let got = recv_n(&mut q, 2);
        assert!(got[0].payload.ends_with(b"first") && got[1].payload.ends_with(b"second"));
        // Hold the first, release the second.
        q.verdict(&Verdict::accept(got[1].id)).unwrap();
        assert_eq!(recv_data(&rx).as_deref(), Some(&b"second"[..]));
        assert_eq!(recv_data(&rx), None, "held packet leaked");
        q.verdict(&Verdict::accept(got[0].id)).unwrap();
        assert_eq!(recv_data(&rx).as_deref(), Some(&b"first"[..]));
    });
}

#[test]
fn queue_number_above_255() {
    if !common::require_root("queue_number_above_255") {
        return;
    }
    let ns = setup(9007, 40000, false);
    ns.run(|| {
        let mut q = Queue::open(&QueueConfig::new(40000)).expect("open queue 40000");
        assert_eq!(q.queue_num(), 40000);
        let rx = receiver(9007, false);
        sender(false).send_to(b"big queue", "127.0.0.1:9007").unwrap();
        let got = recv_n(&mut q, 1);
        q.verdict(&Verdict::accept(got[0].id)).unwrap();
        assert_eq!(recv_data(&rx).as_deref(), Some(&b"big queue"[..]));
    });
}

#[test]
fn ipv6_accept_and_repeat() {
    if !common::require_root("ipv6_accept_and_repeat") {
        return;
    }
    let ns = setup(9008, 11, true);
    ns.run(|| {
        let mut q = Queue::open(&QueueConfig::new(11)).expect("open");
        let rx = receiver(9008, true);
        sender(true).send_to(b"six", "[::1]:9008").unwrap();
        let got = recv_n(&mut q, 1);
        assert_eq!(got[0].hw_protocol, 0x86dd);
        // NF_REPEAT runs the hook again: the packet is queued a second time.
        q.verdict(&Verdict::new(got[0].id, VerdictAction::Repeat)).unwrap();
        let again = recv_n(&mut q, 1);
        assert_ne!(again[0].id, got[0].id);
        assert_eq!(again[0].payload, got[0].payload);
        q.verdict(&Verdict::accept(again[0].id)).unwrap();
        assert_eq!(recv_data(&rx).as_deref(), Some(&b"six"[..]));
    });
}

#[test]
fn stale_verdict_is_counted_not_fatal() {
    if !common::require_root("stale_verdict_is_counted_not_fatal") {
        return;
    }
    let ns = setup(9010, 13, false);
    ns.run(|| {
        let mut q = Queue::open(&QueueConfig::new(13)).expect("open");
        q.verdict(&Verdict::accept(777)).expect("send succeeds; error is async");
        let deadline = Instant::now() + Duration::from_secs(3);
        let errs = loop {
            assert!(Instant::now() < deadline, "no async error reported");
            let b = q.recv(Duration::from_millis(100)).unwrap();
            assert!(b.is_empty(), "error message must not look like a packet");
            if !b.verdict_errors().is_empty() {
                break b.verdict_errors().to_vec();
            }
        };
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].packet_id, 777);
        assert_eq!(errs[0].errno, libc::ENOENT);
        let st = q.stats();
        assert_eq!((st.send_errors, st.unknown_ids, st.parse_errors), (1, 1, 0));
    });
}

#[test]
fn second_bind_is_refused_with_named_op() {
    if !common::require_root("second_bind_is_refused_with_named_op") {
        return;
    }
    let ns = NetNs::new();
    ns.run(|| {
        let _q = Queue::open(&QueueConfig::new(14)).expect("open");
        let e = Queue::open(&QueueConfig::new(14)).expect_err("second bind must fail");
        eprintln!("second bind: {e}");
        match &e {
            NfqError::Kernel { op, errno, .. } => {
                assert_eq!(op, "bind queue 14");
                assert_eq!(*errno, libc::EPERM);
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(e.to_string().starts_with("kernel refused to bind queue 14: Operation not permitted"));
    });
}

#[test]
fn enobufs_is_counted_and_fail_open_accepts() {
    if !common::require_root("enobufs_is_counted_and_fail_open_accepts") {
        return;
    }
    let ns = setup(9011, 15, false);
    ns.run(|| {
        let cfg = QueueConfig {
            rcvbuf: 4096, // a few packets at most
            ..QueueConfig::new(15)
        };
        let mut q = Queue::open(&cfg).expect("open");
        assert!(q.capabilities().fail_open);
        let rx = receiver(9011, false);
        let tx = sender(false);
        for _ in 0..50 {
            tx.send_to(&[7u8; 500], "127.0.0.1:9011").unwrap();
        }
        // The queue overflowed: fail-open let the rest through.
        let passed = (0..50).map_while(|_| recv_data(&rx)).count();
        assert!(passed > 0 && passed < 50, "passed {passed}");
        // Drain: ENOBUFS is counted, never an error; the queued packets are
        // still delivered and accepted.
        let mut queued = 0;
        for _ in 0..20 {
            let mut b = q.recv(Duration::from_millis(50)).expect("ENOBUFS must not be fatal");
            let ids: Vec<u32> = b.packets().map(|p| p.id).collect();
            for id in &ids {
                b.push_verdict(&Verdict::accept(*id)).unwrap();
            }
            b.flush().unwrap();
            queued += ids.len();
        }
        let st = q.stats();
        eprintln!("passed by fail-open {passed}, queued {queued}, stats {st:?}");
        assert!(st.enobufs >= 1, "{st:?}");
        assert_eq!(passed + queued, 50);
    });
}
