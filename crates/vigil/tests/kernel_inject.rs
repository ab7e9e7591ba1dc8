//! Kernel tests of `vigil::inject` with the packets of `vigil_wire::build`: from the gateway of a
//! lab, a TCP reset, an ICMP port unreachable and the HTTP block page must reach real sockets of
//! the client and the server, over IPv4 and IPv6. They need root; without it they print a skip
//! line, except under CI where not being root is a failure.
//!
//! The gateway drops the client's data (iptables, FORWARD), as vigil would drop the offending
//! packet, and captures it with tcpdump on its client-side interface; the replies are built from
//! that captured packet, as vigil builds them from the queued one.

mod common;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::root_or_skip;
use vigil::inject::Injector;
use vigil::lab::{Lab, LabChild};
use vigil_wire::build;

/// Mark of the injected packets; counted by a rule in the gateway's OUTPUT chain.
const MARK: u32 = 0x7e57;
/// How long a socket may take to notice an injected packet.
const PROMPT: Duration = Duration::from_secs(3);

/// Runs `f` in a thread that joined network namespace `ns`. Sockets opened there stay bound to
/// `ns`, so an Injector opened in `f` can be used from any thread afterwards.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = PathBuf::from("/var/run/netns").join(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        // SAFETY: setns on a live namespace fd; only this thread changes namespace.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {}: {}", path.display(), std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread panicked")
}

/// Lines of a lab child's stdout, read by a thread.
struct Lines {
    rx: Receiver<String>,
    child: LabChild,
    seen: Vec<String>,
}

impl Lines {
    fn of(child: LabChild) -> Lines {
        let out = child.take_stdout().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx, child, seen: Vec::new() }
    }

    /// Waits for a line starting with `prefix`; panics with everything seen on timeout.
    fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!("no line `{prefix}...` within {timeout:?}; seen: {:?}", self.seen),
            }
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A tcpdump writing a pcap file in a lab namespace.
struct Capture {
    path: PathBuf,
    _proc: Lines,
}

impl Capture {
    fn start(lab: &Lab, ns: &str, iface: &str, filter: &str) -> Capture {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vinj-{}-{n}.pcap", std::process::id()));
        let _ = std::fs::remove_file(&path);
        // stderr to stdout: tcpdump says "listening on" there once the capture is active.
        let script = format!("exec tcpdump -Z root -i {iface} -Q in -U -n -w {} '{filter}' 2>&1", path.display());
        let mut cmd = lab.exec(ns, ["sh", "-c", &script]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut proc = Lines::of(lab.spawn_command(cmd).expect("start tcpdump"));
        proc.expect("tcpdump: listening on", Duration::from_secs(10));
        Capture { path, _proc: proc }
    }

    /// The first captured IP packet `pick` accepts, waiting for it.
    fn wait_for(&self, what: &str, pick: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = read_pcap(&self.path).into_iter().find(|p| pick(p)) {
                return p;
            }
            assert!(Instant::now() < end, "no {what} captured in {}", self.path.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// IP packets of an Ethernet pcap file (classic format, either byte order); a partly written
/// last record is ignored.
fn read_pcap(path: &PathBuf) -> Vec<Vec<u8>> {
    let Ok(data) = std::fs::read(path) else { return Vec::new() };
    if data.len() < 24 {
        return Vec::new();
    }
    let le = match data[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("not a pcap file: {}", path.display()),
    };
    let u32_at = |at: usize| {
        let b = [data[at], data[at + 1], data[at + 2], data[at + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    assert_eq!(u32_at(20), 1, "expected an Ethernet capture");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let len = u32_at(at + 8) as usize;
        let Some(frame) = data.get(at + 16..at + 16 + len) else { break };
        if frame.len() > 14 && matches!(frame[12..14], [0x08, 0x00] | [0x86, 0xdd]) {
            out.push(frame[14..].to_vec());
        }
        at += 16 + len;
    }
    out
}

const SERVER_PY: &str = r#"
import errno, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(4)
print('listening', flush=True)
c, _ = s.accept()
print('accepted', flush=True)
c.settimeout(15)
try:
    d = c.recv(4096)
    print('data ' + d.hex() if d else 'eof', flush=True)
except socket.timeout:
    print('timeout', flush=True)
except OSError as e:
    print('error ' + errno.errorcode.get(e.errno, str(e.errno)), flush=True)
"#;

const CLIENT_PY: &str = r#"
import errno, socket, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
if mode == 'udp':
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.send(b'q' * 100)
else:
    s = socket.socket(fam)
    s.settimeout(10)
    s.connect((host, port))
    s.send(b'x' * 100 if mode == 'tcp' else b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
print('sent', flush=True)
s.settimeout(10)
try:
    while True:
        d = s.recv(4096)
        if not d:
            print('eof', flush=True)
            break
        print('data ' + d.hex(), flush=True)
except socket.timeout:
    print('timeout', flush=True)
except OSError as e:
    print('error ' + errno.errorcode.get(e.errno, str(e.errno)), flush=True)
"#;

/// The lab with the gateway dropping the client's TCP data and UDP (as vigil drops the offending
/// packet), counting marked packets in OUTPUT and FORWARD, and an injector opened in it.
fn setup() -> (Lab, Injector) {
    let lab = Lab::create("vinj").expect("create lab");
    let g = lab.gateway_ns();
    // SYNs and pure ACKs are below 70 (v4) / 90 (v6) bytes; the test's data segments are above.
    for (tool, client, min_len) in [("iptables", "198.18.1.2", "70"), ("ip6tables", "fd76:1::2", "90")] {
        let rules: [&[&str]; 4] = [
            &["-A", "FORWARD", "-s", client, "-p", "tcp", "-m", "length", "--length", &format!("{min_len}:65535")],
            &["-A", "FORWARD", "-s", client, "-p", "udp"],
            &["-A", "OUTPUT", "-m", "mark", "--mark", &MARK.to_string()],
            &["-A", "FORWARD", "-m", "mark", "--mark", &MARK.to_string()],
        ];
        for (i, rule) in rules.iter().enumerate() {
            let mut args = vec![tool];
            args.extend_from_slice(rule);
            if i < 2 {
                args.extend_from_slice(&["-j", "DROP"]);
            }
            let out = lab.exec(g, &args).output().expect("run iptables");
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let inj = in_netns(g, || Injector::open(MARK)).expect("open injector in the gateway");
    assert!(inj.ipv6_enabled(), "IPV6_HDRINCL unavailable on this kernel");
    (lab, inj)
}

/// Packets counted by the rule matching MARK in `chain` of the gateway.
fn marked(lab: &Lab, v6: bool, chain: &str) -> u64 {
    let tool = if v6 { "ip6tables" } else { "iptables" };
    let out = lab.exec(lab.gateway_ns(), [tool, "-w", "-n", "-v", "-x", "-L", chain]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("mark match")).unwrap_or_else(|| panic!("no mark rule: {text}"));
    line.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bad line: {line}"))
}

fn addr(ip: IpAddr) -> String {
    ip.to_string()
}

fn start_server(lab: &Lab, ip: IpAddr, port: u16) -> Lines {
    let child = lab.spawn_in(lab.server_ns(), ["python3", "-c", SERVER_PY, &addr(ip), &port.to_string()]).unwrap();
    let mut lines = Lines::of(child);
    lines.expect("listening", Duration::from_secs(10));
    lines
}

fn start_client(lab: &Lab, ip: IpAddr, port: u16, mode: &str) -> Lines {
    let child =
        lab.spawn_in(lab.client_ns(), ["python3", "-c", CLIENT_PY, &addr(ip), &port.to_string(), mode]).unwrap();
    let mut lines = Lines::of(child);
    lines.expect("sent", Duration::from_secs(10));
    lines
}

fn has_payload(p: &[u8]) -> bool {
    vigil_wire::parse_l3(p).map(|i| !i.payload.is_empty()).unwrap_or(false)
}

fn families(lab: &Lab) -> [(bool, IpAddr, IpAddr); 2] {
    [(false, lab.client_v4(), lab.server_v4()), (true, lab.client_v6(), lab.server_v6())]
}

#[test]
fn tcp_reset_reaches_client_and_server() {
    if !root_or_skip() {
        return;
    }
    let (lab, inj) = setup();
    for (v6, client, server) in families(&lab) {
        let port = if v6 { 7061 } else { 7041 };
        let cap = Capture::start(&lab, lab.gateway_ns(), lab.gw_client_if(), &format!("tcp and dst port {port}"));
        let mut srv = start_server(&lab, server, port);
        let mut cli = start_client(&lab, server, port, "tcp");
        srv.expect("accepted", Duration::from_secs(10));
        let data = cap.wait_for("client data segment", has_payload);
        assert_eq!(vigil_wire::parse_l3(&data).unwrap().src, client);

        let reply = build::reject_tcp(&data).expect("build resets");
        let sent_at = Instant::now();
        for p in reply.packets() {
            inj.send(p).expect("inject reset");
        }
        assert_eq!(cli.expect("error", PROMPT), "error ECONNRESET", "client, v6={v6}");
        assert_eq!(srv.expect("error", PROMPT), "error ECONNRESET", "server, v6={v6}");
        println!("v6={v6}: both ends reset {:?} after injection", sent_at.elapsed());
        assert_eq!(marked(&lab, v6, "OUTPUT"), 2, "injected packets leave through OUTPUT with the mark");
        assert_eq!(marked(&lab, v6, "FORWARD"), 0, "injected packets never traverse FORWARD");
    }
    assert_eq!(inj.stats().sent, 4);
    assert_eq!(inj.stats().errors, 0);
}

#[test]
fn icmp_unreachable_refuses_connected_udp() {
    if !root_or_skip() {
        return;
    }
    let (lab, inj) = setup();
    for (v6, _client, server) in families(&lab) {
        let port = if v6 { 7062 } else { 7042 };
        let cap = Capture::start(&lab, lab.gateway_ns(), lab.gw_client_if(), &format!("udp and dst port {port}"));
        let mut cli = start_client(&lab, server, port, "udp");
        let dgram = cap.wait_for("client datagram", has_payload);
        let icmp = build::icmp_unreachable(&dgram).expect("build unreachable");
        inj.send(&icmp).expect("inject unreachable");
        assert_eq!(cli.expect("error", PROMPT), "error ECONNREFUSED", "v6={v6}");
        assert_eq!(marked(&lab, v6, "OUTPUT"), 1);
    }
    assert_eq!(inj.stats().sent, 2);
}

#[test]
fn http_block_page_reaches_client() {
    if !root_or_skip() {
        return;
    }
    let (lab, inj) = setup();
    for (v6, _client, server) in families(&lab) {
        let port = if v6 { 7063 } else { 7043 };
        let cap = Capture::start(&lab, lab.gateway_ns(), lab.gw_client_if(), &format!("tcp and dst port {port}"));
        let mut srv = start_server(&lab, server, port);
        let mut cli = start_client(&lab, server, port, "http");
        srv.expect("accepted", Duration::from_secs(10));
        let request = cap.wait_for("HTTP request", has_payload);
        assert!(vigil_wire::parse_l3(&request).unwrap().payload.starts_with(b"GET / HTTP/1.1\r\n"));

        let page = build::block_page_html("no-<http>", "x");
        let reply = build::http_block_page(&request, &page).expect("build block page");
        for p in reply.packets() {
            inj.send(p).expect("inject block page");
        }
        let mut received = Vec::new();
        loop {
            let line = cli.expect("", PROMPT);
            if let Some(hex) = line.strip_prefix("data ") {
                received.extend((0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()));
            } else {
                assert_eq!(line, "eof", "v6={v6}: the page ends with a clean EOF");
                break;
            }
        }
        let text = String::from_utf8(received).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
        assert!(text.contains(&format!("Content-Length: {}\r\n", page.len())));
        assert!(text.ends_with(&page) && text.contains("no-&lt;http&gt;"), "{text}");
        assert_eq!(srv.expect("error", PROMPT), "error ECONNRESET", "server, v6={v6}");
    }
}
