//! Real-kernel lab tests of FTP data connections inline: vigil learns them from the control
//! connection's PASV/EPSV/PORT/EPRT lines (vigil-dpi `related.rs`, `dissect/ftp.rs`) and names the
//! new TCP flow `FTP_DATA` (`app_source: "announced"`) at its SYN, so a policy on `FTP_DATA` stops
//! the transfer before it carries a byte while the control connection goes on.
//!
//! The FTP server is a minimal one in the helper script (Python stdlib, passive and active modes,
//! read-only), the client is curl from the client namespace, vigil runs inline on the gateway with
//! its default firewall settings (`queue_packets = 32`). The lab harness is in `common/mod.rs`.
//!
//! They need root (network namespaces, NFQUEUE, iptables). Without root they print a skip line,
//! except when `CI` is set: then not being root is a failure. The tests that run vigil hold
//! `common::VIGIL_LOCK` while they do.
//!
//! Run: `CI=true cargo test -p vigil --test kernel_ftp -- --nocapture` (as root).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    check, output, root_or_skip, signal, u, vigil_lock, wait_listen, wait_until, Env, Suite, V4_SERVER, V6_SERVER,
};
use serde_json::Value;
use vigil::lab::LabChild;
use vigil_capture::CaptureReader;

const SUITE: Suite = Suite { lab_prefix: "vkf", name: "ftp", helper_modes: HELPER_PY_MODES };

/// The FTP server (beyond the shared helper modes in `common`).
const HELPER_PY_MODES: &str = r#"
elif mode == 'ftp':               # ROOT LOG ADDR...: FTP on ADDR:21, anonymous, read-only files of ROOT;
    import os, socketserver       # per transfer LOG gets "xfer CTRL_PEER_PORT HOW SRC SPORT DST DPORT"
    root, log_path = sys.argv[2], sys.argv[3]   # (the data connection, as opened) or "fail CTRL_PEER_PORT HOW ERROR"
    lock = threading.Lock()
    def log(line):
        with lock, open(log_path, 'a') as f:
            f.write(line + '\n')
    class H(socketserver.StreamRequestHandler):
        def reply(self, text):
            self.wfile.write((text + '\r\n').encode())
        def file(self, arg):
            p = os.path.join(root, os.path.basename(arg))
            return p if os.path.isfile(p) else None
        def handle(self):
            self.request.settimeout(30)
            here, peer = self.request.getsockname()[0], self.request.getpeername()
            pasv, active, how = None, None, None
            self.reply('220 vigil test FTP server')
            for raw in self.rfile:
                verb, _, arg = raw.decode('latin-1').rstrip('\r\n').partition(' ')
                verb = verb.upper()
                if verb == 'USER':
                    self.reply('331 Any password will do')
                elif verb == 'PASS':
                    self.reply('230 Logged in')
                elif verb == 'SYST':
                    self.reply('215 UNIX Type: L8')
                elif verb == 'PWD':
                    self.reply('257 "/" is the current directory')
                elif verb == 'CWD':
                    self.reply('250 OK')
                elif verb == 'TYPE':
                    self.reply('200 Type set')
                elif verb in ('EPSV', 'PASV'):
                    if pasv:
                        pasv.close()
                    pasv = socket.socket(fam(here), socket.SOCK_STREAM)
                    pasv.bind((here, 0))
                    pasv.listen(1)
                    pasv.settimeout(10)
                    port, active, how = pasv.getsockname()[1], None, verb
                    if verb == 'EPSV':
                        self.reply('229 Entering Extended Passive Mode (|||%d|)' % port)
                    elif ':' in here:
                        self.reply('522 Use EPSV')
                    else:
                        self.reply('227 Entering Passive Mode (%s,%d,%d)' % (here.replace('.', ','), port >> 8, port & 255))
                elif verb == 'PORT':
                    n = arg.split(',')
                    active, how = ('.'.join(n[:4]), int(n[4]) * 256 + int(n[5])), verb
                    self.reply('200 PORT command successful')
                elif verb == 'EPRT':
                    f = arg.split(arg[:1])
                    active, how = (f[2], int(f[3])), verb
                    self.reply('200 EPRT command successful')
                elif verb == 'SIZE':
                    p = self.file(arg)
                    self.reply('213 %d' % os.path.getsize(p) if p else '550 No such file')
                elif verb == 'RETR':
                    p = self.file(arg)
                    if not p:
                        self.reply('550 No such file')
                        continue
                    if not pasv and not active:
                        self.reply('425 Use PORT or PASV first')
                        continue
                    try:
                        if pasv:
                            d, _ = pasv.accept()
                            pasv.close()
                            pasv = None
                            ends = d.getpeername()[:2] + d.getsockname()[:2]
                        else:
                            d = socket.create_connection(active, timeout=10)
                            active = None
                            ends = d.getsockname()[:2] + d.getpeername()[:2]
                    except OSError as e:
                        log('fail %d %s %s' % (peer[1], how, e))
                        self.reply('425 Cannot open data connection')
                        continue
                    log('xfer %d %s %s %d %s %d' % ((peer[1], how) + ends))
                    self.reply('150 Opening BINARY mode data connection')
                    with d, open(p, 'rb') as f:
                        d.sendall(f.read())
                    self.reply('226 Transfer complete')
                elif verb == 'QUIT':
                    self.reply('221 Bye')
                    return
                else:
                    self.reply('502 Not implemented')
    class S(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        def handle_error(self, request, client_address):
            pass
    class S6(S):
        address_family = socket.AF_INET6
    for a in sys.argv[4:]:
        srv = (S6 if ':' in a else S)((a, 21), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    threading.Event().wait()
"#;

/// The served file: 200 KiB of known, incompressible-looking bytes.
const FILE_SIZE: usize = 200 * 1024;

fn file_bytes() -> Vec<u8> {
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    (0..FILE_SIZE)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

fn sha256(path: &Path) -> String {
    let mut c = std::process::Command::new("sha256sum");
    c.arg(path);
    check(c).split_whitespace().next().unwrap_or_default().to_string()
}

/// One way curl opens the data connection.
#[derive(Clone, Copy, Debug)]
struct Mode {
    /// What the control connection says: the helper server logs it, the test checks it.
    verb: &'static str,
    server: &'static str,
    curl_args: &'static [&'static str],
}

/// curl's defaults and fallbacks: EPSV, then (`--disable-epsv`) PASV; with `--ftp-port -`
/// (active, the control connection's own address) EPRT, then (`--disable-eprt`) PORT.
const MODES: [Mode; 6] = [
    Mode { verb: "EPSV", server: V4_SERVER, curl_args: &[] },
    Mode { verb: "PASV", server: V4_SERVER, curl_args: &["--disable-epsv"] },
    Mode { verb: "EPRT", server: V4_SERVER, curl_args: &["--ftp-port", "-"] },
    Mode { verb: "PORT", server: V4_SERVER, curl_args: &["--ftp-port", "-", "--disable-eprt"] },
    Mode { verb: "EPSV", server: V6_SERVER, curl_args: &[] },
    Mode { verb: "EPRT", server: V6_SERVER, curl_args: &["--ftp-port", "-"] },
];

impl Mode {
    /// The server opens the data connection.
    fn active(&self) -> bool {
        matches!(self.verb, "PORT" | "EPRT")
    }
    fn url_host(&self) -> String {
        if self.server.contains(':') {
            format!("[{}]", self.server)
        } else {
            self.server.to_string()
        }
    }
}

/// What one download did.
#[derive(Debug)]
struct Download {
    exit: Option<i32>,
    stderr: String,
    wall: Duration,
    out: PathBuf,
}

/// One transfer as the server logged it: the control connection's client port and the data
/// connection's ends as (initiator, responder).
#[derive(Debug, PartialEq)]
struct Xfer {
    ctrl_port: u16,
    how: String,
    src: String,
    sport: u16,
    dst: String,
    dport: u16,
}

impl Env {
    /// The FTP server on the server's v4 and v6 addresses, serving `file` (200 KiB); returns its
    /// path and the path of the server's transfer log.
    fn ftp_server(&self) -> (PathBuf, PathBuf) {
        let root = self.dir.path("ftproot");
        std::fs::create_dir_all(&root).unwrap();
        let file = root.join("file");
        std::fs::write(&file, file_bytes()).unwrap();
        let log = self.dir.write("ftp.log", "");
        self.py_server(&["ftp", root.to_str().unwrap(), log.to_str().unwrap(), V4_SERVER, V6_SERVER]);
        wait_listen(&self.lab, self.server(), "t", 21, 2);
        (file, log)
    }

    /// curl from the client: `ftp://SERVER/file` into a new file of the temp dir.
    fn ftp_get(&self, mode: &Mode, tag: &str, max_time: u32) -> Download {
        let out = self.dir.path(&format!("{tag}.out"));
        let _ = std::fs::remove_file(&out);
        let url = format!("ftp://{}/file", mode.url_host());
        let mt = max_time.to_string();
        let mut cmd = self.lab.exec(self.client(), ["curl", "-sS", "--max-time", mt.as_str()]);
        cmd.args(mode.curl_args).args(["-o", out.to_str().unwrap(), url.as_str()]);
        let t0 = Instant::now();
        let o = output(cmd);
        Download {
            exit: o.status.code(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            wall: t0.elapsed(),
            out,
        }
    }

    /// tcpdump on the gateway's client side, control connections only.
    fn capture_control(&self) -> (LabChild, PathBuf) {
        self.tcpdump(self.gw(), self.lab.gw_client_if(), "ctrl", "tcp port 21")
    }
}

fn xfers(log: &Path) -> Vec<Xfer> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"xfer") && f.len() == 7).then(|| Xfer {
                ctrl_port: f[1].parse().unwrap(),
                how: f[2].to_string(),
                src: f[3].to_string(),
                sport: f[4].parse().unwrap(),
                dst: f[5].to_string(),
                dport: f[6].parse().unwrap(),
            })
        })
        .collect()
}

/// The flow record of the TCP connection `src:sport -> dst:dport` (exactly one).
fn tcp_flow<'v>(flows: &'v [Value], src: &str, sport: u16, dst: &str, dport: u16) -> &'v Value {
    let v: Vec<&Value> = flows
        .iter()
        .filter(|f| f["proto"] == "tcp" && f["src"] == src && f["dst"] == dst)
        .filter(|f| f["sport"].as_u64() == Some(sport.into()) && f["dport"].as_u64() == Some(dport.into()))
        .collect();
    assert_eq!(v.len(), 1, "one record of tcp {src}:{sport} -> {dst}:{dport}; all flows: {flows:#?}");
    v[0]
}

/// The control connections' records (to port 21 of `server`).
fn control_flows<'v>(flows: &'v [Value], server: &str) -> Vec<&'v Value> {
    flows.iter().filter(|f| f["proto"] == "tcp" && f["dst"] == server && f["dport"] == 21).collect()
}

fn client_of(server: &str) -> &'static str {
    if server.contains(':') {
        "fd76:1::2"
    } else {
        "198.18.1.2"
    }
}

/// For each control connection in the capture (by client port): the 1-based position, among the
/// connection's packets in both directions (what `queue_packets` counts), of the packet that
/// carries the data connection's announcement (a 227/229 reply, a PORT/EPRT command).
fn announcement_positions(pcap: &Path) -> Vec<(u16, usize, &'static str)> {
    struct Conn {
        client_port: u16,
        packets: usize,
        /// The announcement's position and kind.
        announced: Option<(usize, &'static str)>,
    }
    let mut conns: Vec<Conn> = Vec::new();
    let mut reader = CaptureReader::open(pcap).expect("open capture");
    while let Some(p) = reader.next_packet() {
        let p = p.expect("read capture");
        let b = p.l3.bytes();
        let (tcp, end) = if p.l3.is_ipv6() {
            (40, 40 + usize::from(u16::from_be_bytes([b[4], b[5]])))
        } else {
            (usize::from(b[0] & 0x0f) * 4, usize::from(u16::from_be_bytes([b[2], b[3]])))
        };
        let (sport, dport) = (u16::from_be_bytes([b[tcp], b[tcp + 1]]), u16::from_be_bytes([b[tcp + 2], b[tcp + 3]]));
        let end = end.min(b.len());
        let payload = &b[(tcp + usize::from(b[tcp + 12] >> 4) * 4).min(end)..end];
        let client_port = if dport == 21 { sport } else { dport };
        let i = conns.iter().position(|c| c.client_port == client_port).unwrap_or_else(|| {
            conns.push(Conn { client_port, packets: 0, announced: None });
            conns.len() - 1
        });
        let c = &mut conns[i];
        c.packets += 1;
        if c.announced.is_none() {
            let what =
                ["229", "227", "EPRT", "PORT"].into_iter().find(|m| payload.starts_with(format!("{m} ").as_bytes()));
            c.announced = what.map(|m| (c.packets, m));
        }
    }
    conns.into_iter().filter_map(|c| c.announced.map(|(pos, m)| (c.client_port, pos, m))).collect()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn ftp_data_connections_are_ftp_data_inline_in_every_mode() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "classify");
    let (file, log) = env.ftp_server();
    let want = sha256(&file);
    let _lock = vigil_lock();
    let (tcpdump, pcap) = env.capture_control();
    let mut vigil = env.start_vigil("classify", "");
    for (i, mode) in MODES.iter().enumerate() {
        let d = env.ftp_get(mode, &format!("get{i}"), 20);
        println!("{} via {}: curl exit {:?} in {:?}", mode.verb, mode.server, d.exit, d.wall);
        assert_eq!(d.exit, Some(0), "{mode:?}: {d:?}");
        let len = std::fs::metadata(&d.out).map(|m| m.len()).unwrap_or(0);
        assert_eq!(len, FILE_SIZE as u64, "{mode:?}: size of {}", d.out.display());
        assert_eq!(sha256(&d.out), want, "{mode:?}: content of {}", d.out.display());
    }
    vigil.stop();
    let _ = std::panic::catch_unwind(|| {
        wait_until("tcpdump to write every announcement", Duration::from_secs(10), || {
            announcement_positions(&pcap).len() >= MODES.len()
        })
    });
    signal(tcpdump.id(), libc::SIGTERM);
    let _ = tcpdump.wait_timeout(Duration::from_secs(5));

    let flows = vigil.flows();
    let xfers = xfers(&log);
    assert_eq!(
        xfers.iter().map(|x| x.how.as_str()).collect::<Vec<_>>(),
        MODES.iter().map(|m| m.verb).collect::<Vec<_>>(),
        "the server saw one transfer per download, in the modes asked for: {xfers:#?}"
    );
    // Exactly the control and the data connection of each download.
    let tcp = flows.iter().filter(|f| f["proto"] == "tcp").count();
    assert_eq!(tcp, 2 * MODES.len(), "all flows: {flows:#?}");
    for (mode, x) in MODES.iter().zip(&xfers) {
        let client = client_of(mode.server);
        let ctrl = tcp_flow(&flows, client, x.ctrl_port, mode.server, 21);
        assert_eq!(ctrl["protocol"], "FTP_CONTROL", "{mode:?}: {ctrl:#}");
        assert_eq!(ctrl["verdict"], "allow", "{mode:?}: {ctrl:#}");
        // The data connection, opened by the client (passive) or the server (active).
        let (src, dst) = if mode.active() { (mode.server, client) } else { (client, mode.server) };
        assert_eq!((x.src.as_str(), x.dst.as_str()), (src, dst), "{mode:?}: {x:?}");
        let data = tcp_flow(&flows, &x.src, x.sport, &x.dst, x.dport);
        assert_eq!(
            (data["protocol"].as_str(), data["app_source"].as_str(), data["verdict"].as_str()),
            (Some("FTP_DATA"), Some("announced"), Some("allow")),
            "{mode:?}: {data:#}"
        );
        // Named at its SYN: the first packet.
        assert_eq!(data["dpi_packets"].as_u64(), Some(1), "{mode:?}: {data:#}");
        println!(
            "{} via {}: control {}:{} {} ({} packets queued), data {}:{} -> {}:{} {} app_source {}",
            mode.verb,
            mode.server,
            client,
            x.ctrl_port,
            ctrl["protocol"],
            u(&ctrl["packets_c2s"]) + u(&ctrl["packets_s2c"]),
            x.src,
            x.sport,
            x.dst,
            x.dport,
            data["protocol"],
            data["app_source"]
        );
    }

    // curl's announcements come well within the first `queue_packets` (32, the default) packets
    // of the control connection, both directions counted as connbytes counts them. Seen on the
    // gateway: the 229 (EPSV) and 227 (PASV) replies are packet 14, the EPRT and PORT commands
    // packet 13 (handshake, 220, USER/331, PASS/230, PWD/257 and ACKs first), over IPv4 and IPv6;
    // a whole download's control connection is 28-29 packets, all queued. Announcements later
    // than packet 32 (a second transfer on a long-lived control connection) are not seen inline.
    let positions = announcement_positions(&pcap);
    println!("announcement positions on the gateway (client port, packet, line): {positions:?}");
    assert_eq!(positions.len(), MODES.len(), "one announcement per control connection: {positions:?}");
    for (port, pos, what) in &positions {
        assert!(*pos <= 32, "control connection from port {port}: {what} is packet {pos}, beyond queue_packets 32");
    }
}

#[test]
fn a_policy_on_ftp_data_stops_the_transfer_not_the_login() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "block");
    let (file, log) = env.ftp_server();
    // Without vigil every mode works: what fails below is vigil's doing.
    for (i, mode) in MODES.iter().enumerate() {
        let d = env.ftp_get(mode, &format!("before{i}"), 20);
        println!("{} via {} without vigil: curl exit {:?} in {:?}", mode.verb, mode.server, d.exit, d.wall);
        assert_eq!(d.exit, Some(0), "{mode:?} without vigil: {d:?}");
        assert_eq!(sha256(&d.out), sha256(&file), "{mode:?} without vigil");
    }
    let before = xfers(&log).len();

    let _lock = vigil_lock();
    let config = "[[policy.rules]]\nname = \"no-ftp-data\"\naction = \"block\"\nprotocols = [\"FTP_DATA\"]\n";
    let mut vigil = env.start_vigil("block", config);
    let modes = [MODES[0], MODES[2]]; // EPSV (passive) and EPRT (active)
    for (i, mode) in modes.iter().enumerate() {
        let d = env.ftp_get(mode, &format!("blocked{i}"), 4);
        println!("blocked {}: curl exit {:?} ({}) after {:?}", mode.verb, d.exit, d.stderr.trim(), d.wall);
        assert!(d.exit.is_some_and(|c| c != 0), "{mode:?} must fail: {d:?}");
        let len = std::fs::metadata(&d.out).map(|m| m.len()).unwrap_or(0);
        assert!(len < FILE_SIZE as u64, "{mode:?}: {len} bytes arrived");
    }
    // Passive: curl never got its data connection, so it never sent RETR. Active: the server
    // connects on RETR and gives up after 10 s; wait for that, so that its SYNs stop before
    // vigil (and its rules) do.
    wait_until("the server to give up the active transfer", Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("fail ") && l.contains(" EPRT "))
    });
    vigil.stop();
    assert_eq!(xfers(&log).len(), before, "no data connection was opened: {}", std::fs::read_to_string(&log).unwrap());

    let flows = vigil.flows();
    // Both logins went on: the control connections are allowed.
    let ctrl = control_flows(&flows, V4_SERVER);
    assert_eq!(ctrl.len(), modes.len(), "{flows:#?}");
    for c in &ctrl {
        assert_eq!(
            (c["protocol"].as_str(), c["verdict"].as_str(), c["rule"].as_str()),
            (Some("FTP_CONTROL"), Some("allow"), None),
            "{c:#}"
        );
    }
    for mode in &modes {
        let client = client_of(mode.server);
        // The data connection: the client to the server (passive) or back (active), not port 21.
        let (src, dst) = if mode.active() { (mode.server, client) } else { (client, mode.server) };
        let data: Vec<&Value> = flows
            .iter()
            .filter(|f| f["proto"] == "tcp" && f["src"] == src && f["dst"] == dst && f["dport"] != 21)
            .collect();
        assert_eq!(data.len(), 1, "{mode:?}: one data connection; all flows: {flows:#?}");
        let data = data[0];
        assert_eq!(
            (data["protocol"].as_str(), data["app_source"].as_str(), data["verdict"].as_str(), data["rule"].as_str()),
            (Some("FTP_DATA"), Some("announced"), Some("block"), Some("no-ftp-data")),
            "{mode:?}: {data:#}"
        );
        assert_eq!(
            (u(&data["packets_s2c"]), u(&data["bytes_s2c"])),
            (0, 0),
            "{mode:?}: the SYN never passed: {data:#}"
        );
        println!(
            "blocked {}: data {}:{} -> {}:{} {} rule {} ({} SYNs dropped)",
            mode.verb,
            data["src"],
            data["sport"],
            data["dst"],
            data["dport"],
            data["verdict"],
            data["rule"],
            data["packets_c2s"]
        );
    }
}
