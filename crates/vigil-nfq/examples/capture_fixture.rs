//! Root-only: record the raw datagrams the kernel sends for queued packets
//! into `tests/fixtures/*.bin`, for the decoder unit tests.
//!
//! ```text
//! cargo run -p vigil-nfq --example capture_fixture
//! ```
//!
//! Creates a throw-away network namespace `vnfq-<pid>-N` (deleted on exit,
//! also on panic), queues UDP to 127.0.0.1:9999 and [::1]:9999 at OUTPUT and
//! UDP to 127.0.0.1:9998 at INPUT on queue 7, captures one datagram each,
//! accepts them, then provokes an `ENOENT` verdict error and records it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use vigil_nfq::{Queue, QueueConfig, Verdict};

const QUEUE: u16 = 7;

fn capture_one(q: &mut Queue, send: impl FnOnce()) -> (Vec<u8>, u32) {
    send();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let batch = q.recv(Duration::from_millis(200)).expect("recv");
        if let Some(p) = batch.get(0) {
            let raw = batch.datagrams().next().expect("datagram").to_vec();
            return (raw, p.id);
        }
    }
    panic!("no packet queued within 3 s");
}

fn main() {
    if !common::require_root("capture_fixture") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::create_dir_all(&dir).expect("mkdir fixtures");

    let ns = common::NetNs::new();
    let q = QUEUE.to_string();
    ns.iptables(false, &["-A", "OUTPUT", "-p", "udp", "--dport", "9999", "-j", "NFQUEUE", "--queue-num", &q]);
    ns.iptables(false, &["-A", "INPUT", "-p", "udp", "--dport", "9998", "-j", "NFQUEUE", "--queue-num", &q]);
    ns.iptables(true, &["-A", "OUTPUT", "-p", "udp", "--dport", "9999", "-j", "NFQUEUE", "--queue-num", &q]);

    let files = ns.run(|| {
        let cfg = QueueConfig { uid_gid: true, ..QueueConfig::new(QUEUE) };
        let mut q = Queue::open(&cfg).expect("open queue");
        println!("capabilities: {:?}", q.capabilities());
        let s4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s6 = UdpSocket::bind("[::1]:0").unwrap();
        let mut files = Vec::new();

        let (raw, id) = capture_one(&mut q, || {
            s4.send_to(b"vigil-fixture-v4", "127.0.0.1:9999").unwrap();
        });
        q.verdict(&Verdict::accept(id)).unwrap();
        files.push(("ipv4_udp_local_out.bin", raw));

        let (raw, id) = capture_one(&mut q, || {
            s6.send_to(b"vigil-fixture-v6", "[::1]:9999").unwrap();
        });
        q.verdict(&Verdict::accept(id)).unwrap();
        files.push(("ipv6_udp_local_out.bin", raw));

        let (raw, id) = capture_one(&mut q, || {
            s4.send_to(b"vigil-fixture-in", "127.0.0.1:9998").unwrap();
        });
        q.verdict(&Verdict::accept(id)).unwrap();
        files.push(("ipv4_udp_local_in.bin", raw));

        // A verdict for an id the kernel does not hold: ENOENT arrives as
        // NLMSG_ERROR in the receive stream.
        q.verdict(&Verdict::accept(0xdead)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            assert!(Instant::now() < deadline, "no NLMSG_ERROR for the bogus verdict");
            let batch = q.recv(Duration::from_millis(200)).unwrap();
            if !batch.verdict_errors().is_empty() {
                println!("verdict errors: {:?}", batch.verdict_errors());
                files.push(("verdict_enoent.bin", batch.datagrams().next().unwrap().to_vec()));
                break;
            }
        }
        println!("stats: {:?}", q.stats());
        q.unbind().expect("unbind");
        files
    });

    for (name, raw) in files {
        let path = dir.join(name);
        std::fs::write(&path, &raw).expect("write fixture");
        println!("wrote {} ({} bytes)", path.display(), raw.len());
    }
}
