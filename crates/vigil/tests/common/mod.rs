//! The harness shared by the real-kernel tests of this crate.
//!
//! All of them use [`root_or_skip`]. `kernel_e2e.rs` and `kernel_policy.rs` also use the lab
//! harness below: an [`Env`] per test (a client/gateway/server [`Lab`] with unique namespace names,
//! deleted on drop, a temp dir and a Python helper script), command helpers, and [`VigilProc`],
//! `vigil run` inside the gateway. Each test file adds its own helpers to [`Env`] and
//! [`VigilProc`] in its own `impl` blocks.
//!
//! Cargo compiles this module into every test that declares `mod common;`: what one of them does
//! not use carries `#[allow(dead_code)]`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil::lab::{describe, Lab, LabChild};

/// `true` when the test may run. Without root it prints a skip line and returns `false`, except
/// when `CI` is set (and not empty, "0" or "false"): then not being root is a failure.
pub fn root_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").map(|v| !v.is_empty() && v != "0" && v != "false").unwrap_or(false) {
        panic!("CI is set but the kernel tests are not running as root: run them as root");
    }
    println!("skipped: needs root to create network namespaces, change iptables and bind NFQUEUE");
    false
}

#[allow(dead_code)]
pub const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

/// Held by every test while it runs vigil (or `vigil rules`), so that bulk transfers and timing
/// assertions do not compete for the CPU of a small CI machine.
#[allow(dead_code)]
pub static VIGIL_LOCK: Mutex<()> = Mutex::new(());

#[allow(dead_code)]
pub fn vigil_lock() -> std::sync::MutexGuard<'static, ()> {
    VIGIL_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// generic helpers

/// A private temporary directory, removed on drop.
#[allow(dead_code)]
pub struct TempDir(PathBuf);

#[allow(dead_code)]
impl TempDir {
    /// `vigil-SUITE-PID-N-TAG` under the system temp dir.
    pub fn new(suite: &str, tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "vigil-{suite}-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[allow(dead_code)]
pub fn output(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null());
    cmd.output().unwrap_or_else(|e| panic!("cannot run `{}`: {e}", describe(&cmd)))
}

/// Runs to completion, asserts exit 0, returns stdout.
#[allow(dead_code)]
pub fn check(cmd: Command) -> String {
    let what = describe(&cmd);
    let out = output(cmd);
    assert!(
        out.status.success(),
        "`{what}` failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[allow(dead_code)]
pub fn sh(lab: &Lab, ns: &str, args: &[&str]) -> String {
    check(lab.exec(ns, args))
}

#[allow(dead_code)]
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) on a pid this test started.
    let r = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
}

#[allow(dead_code)]
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `count` sockets listen on `port` in `ns` (`proto`: "t" or "u").
#[allow(dead_code)]
pub fn wait_listen(lab: &Lab, ns: &str, proto: &str, port: u16, count: usize) {
    let flag = format!("-Hln{proto}");
    let filter = format!("sport = :{port}");
    wait_until(&format!("{count} listener(s) on {proto}/{port}"), Duration::from_secs(15), || {
        let out = output(lab.exec(ns, ["ss", flag.as_str(), filter.as_str()]));
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count() >= count
    });
}

#[allow(dead_code)]
pub fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[allow(dead_code)]
pub const V4_SERVER: &str = "198.18.2.2";
#[allow(dead_code)]
pub const V6_SERVER: &str = "fd76:2::2";

// ---------------------------------------------------------------------------------------------
// the lab fixture

/// The start of the helper script (Python servers and clients, one script, several modes) with
/// the modes every suite uses; [`Env::new`] appends the suite's own `elif mode == ...` branches
/// ([`Suite::helper_modes`]) and the final `else`.
const HELPER_PY: &str = r#"
import socket, sys, threading, time

def fam(addr):
    return socket.AF_INET6 if ':' in addr else socket.AF_INET

def serve_all(fn, addrs):
    for a in addrs:
        threading.Thread(target=fn, args=(a,), daemon=True).start()
    threading.Event().wait()

def tcp_listener(addr, port):
    s = socket.socket(fam(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(128)
    return s

mode = sys.argv[1]
if mode == 'tcp-banner':          # PORT ADDR...: answer "banner:PORT\n" and close
    port = int(sys.argv[2])
    def run(addr):
        s = tcp_listener(addr, port)
        while True:
            c, _ = s.accept()
            try:
                c.sendall(b'banner:%d\n' % port)
            except OSError:
                pass
            c.close()
    serve_all(run, sys.argv[3:])
elif mode == 'udp-echo':          # PORT ADDR...: answer "echo:" + datagram
    port = int(sys.argv[2])
    def run(addr):
        s = socket.socket(fam(addr), socket.SOCK_DGRAM)
        s.bind((addr, port))
        while True:
            d, peer = s.recvfrom(65535)
            s.sendto(b'echo:' + d, peer)
    serve_all(run, sys.argv[3:])
elif mode == 'udp-sink':          # PORT FILE ADDR...: append every datagram as a line
    port, path = int(sys.argv[2]), sys.argv[3]
    lock = threading.Lock()
    def run(addr):
        s = socket.socket(fam(addr), socket.SOCK_DGRAM)
        s.bind((addr, port))
        while True:
            d, _ = s.recvfrom(65535)
            with lock, open(path, 'ab') as f:
                f.write(d + b'\n')
    serve_all(run, sys.argv[4:])
elif mode == 'tcp-get':           # HOST PORT TIMEOUT: print what the server sends; exit 1 on failure
    host, port, t = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    try:
        c = socket.create_connection((host, port), timeout=t)
        data = b''
        while True:
            b = c.recv(4096)
            if not b:
                break
            data += b
        sys.stdout.write(data.decode())
        sys.exit(0 if data else 1)
    except OSError as e:
        sys.stderr.write('tcp-get %s:%d: %s\n' % (host, port, e))
        sys.exit(1)
"#;

const HELPER_PY_END: &str = "else:\n    sys.exit('unknown mode ' + mode)\n";

/// What sets one test file's labs apart.
#[allow(dead_code)]
pub struct Suite {
    /// Prefix of the lab's namespace names (`<prefix><pid>-<n>c|g|s`, see `vigil::lab`).
    pub lab_prefix: &'static str,
    /// Temp dirs are `vigil-<name>-<pid>-<n>-<tag>`.
    pub name: &'static str,
    /// The suite's own helper-script modes: `elif mode == '...':` branches.
    pub helper_modes: &'static str,
}

/// A per-test fixture: lab + temp dir + helper script.
#[allow(dead_code)]
pub struct Env {
    pub lab: Lab,
    pub dir: TempDir,
    pub helper: PathBuf,
}

#[allow(dead_code)]
impl Env {
    pub fn new(suite: &Suite, tag: &str) -> Env {
        let dir = TempDir::new(suite.name, tag);
        let helper = dir.write("helper.py", &format!("{HELPER_PY}{}{HELPER_PY_END}", suite.helper_modes));
        Env { lab: Lab::create(suite.lab_prefix).expect("create lab (needs root and iproute2)"), dir, helper }
    }
    pub fn client(&self) -> &str {
        self.lab.client_ns()
    }
    pub fn gw(&self) -> &str {
        self.lab.gateway_ns()
    }
    pub fn server(&self) -> &str {
        self.lab.server_ns()
    }

    /// Command running the helper script in `ns`.
    pub fn py(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = self.lab.exec(ns, ["python3", "-u"]);
        c.arg(&self.helper).args(args);
        c
    }

    /// Starts a helper-script server in the server namespace (tracked by the lab).
    pub fn py_server(&self, args: &[&str]) -> LabChild {
        let mut c = self.py(self.server(), args);
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        self.lab.spawn_command(c).expect("spawn helper server")
    }

    /// `tcp-get` from the client: Ok(banner) or Err(stderr), with the time it took.
    pub fn tcp_get(&self, addr: &str, port: u16, timeout_s: f64) -> (Result<String, String>, Duration) {
        let t0 = Instant::now();
        let out = output(self.py(self.client(), &["tcp-get", addr, &port.to_string(), &timeout_s.to_string()]));
        let took = t0.elapsed();
        if out.status.success() {
            (Ok(String::from_utf8_lossy(&out.stdout).into_owned()), took)
        } else {
            (Err(String::from_utf8_lossy(&out.stderr).into_owned()), took)
        }
    }

    /// dnsmasq on the server, answering every name under `domain` with the server's address.
    pub fn dns_server(&self, domain: &str) {
        let address = format!("--address=/{domain}/{V4_SERVER}");
        let listen = format!("--listen-address={V4_SERVER}");
        let args = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces"];
        let mut cmd = self.lab.exec(self.server(), args);
        cmd.args([listen.as_str(), address.as_str(), "--user=root", "--pid-file"]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        self.lab.spawn_command(cmd).expect("spawn dnsmasq");
    }

    /// tcpdump in namespace `ns` on `iface` into `DIR/NAME.pcap`, writing every packet as it arrives
    /// (`--immediate-mode -U`), started once it listens. Stop it with SIGTERM.
    pub fn tcpdump(&self, ns: &str, iface: &str, name: &str, filter: &str) -> (LabChild, PathBuf) {
        let pcap = self.dir.path(&format!("{name}.pcap"));
        let err = self.dir.path(&format!("{name}.tcpdump.err"));
        let args = ["tcpdump", "--immediate-mode", "-i", iface, "-n", "-U", "-s", "0", "-w"];
        let mut cmd = self.lab.exec(ns, args.into_iter().chain([pcap.to_str().unwrap(), filter]));
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(&err).unwrap());
        let child = self.lab.spawn_command(cmd).expect("spawn tcpdump");
        wait_until("tcpdump to listen", Duration::from_secs(10), || {
            std::fs::read_to_string(&err).unwrap_or_default().contains("listening on")
        });
        (child, pcap)
    }

    pub fn start_vigil(&self, name: &str, config: &str) -> VigilProc<'_> {
        VigilProc::start(&self.lab, &self.dir, name, config)
    }
}

// ---------------------------------------------------------------------------------------------
// vigil process

/// `vigil run` inside a lab's gateway, with its stats file, flow log and stderr in a temp dir.
#[allow(dead_code)]
pub struct VigilProc<'a> {
    /// vigil lives in this lab (which also kills it when destroyed).
    _lab: &'a Lab,
    pub child: LabChild,
    pub config: PathBuf,
    pub stats: PathBuf,
    pub flows: PathBuf,
    pub stderr: PathBuf,
    /// The extra `[report]` keys it was started with (a reload writes them again).
    pub report: String,
    /// Stopped by the test (no clean-up on drop).
    pub done: bool,
}

#[allow(dead_code)]
impl<'a> VigilProc<'a> {
    /// The config as written: `config` plus the `[report]` section pointing into the temp dir,
    /// with the extra keys `report` (TOML lines for that table).
    pub fn full_config(config: &str, flows: &Path, stats: &Path, report: &str) -> String {
        format!(
            "{config}\n[report]\nflow_log = {:?}\nstats_file = {:?}\n{report}\n",
            flows.to_str().unwrap(),
            stats.to_str().unwrap()
        )
    }

    /// Writes `config` (without a `[report]` section: added here) and starts vigil; returns once
    /// the stats file exists (written after the queues are bound and the rules installed).
    pub fn start(lab: &'a Lab, dir: &TempDir, name: &str, config: &str) -> VigilProc<'a> {
        Self::start_reporting(lab, dir, name, config, "")
    }

    /// Like `start`, with more `[report]` keys (`report` is TOML lines for that table).
    pub fn start_reporting(lab: &'a Lab, dir: &TempDir, name: &str, config: &str, report: &str) -> VigilProc<'a> {
        let stats = dir.path(&format!("{name}-stats.json"));
        let flows = dir.path(&format!("{name}-flows.jsonl"));
        let stderr = dir.path(&format!("{name}-stderr.log"));
        let _ = std::fs::remove_file(&stats);
        let _ = std::fs::remove_file(&flows);
        let cfg = dir.write(&format!("{name}.toml"), &Self::full_config(config, &flows, &stats, report));
        let mut cmd = lab.exec(lab.gateway_ns(), [VIGIL, "--log", "debug", "run", "--config", cfg.to_str().unwrap()]);
        let err = std::fs::File::create(&stderr).unwrap();
        cmd.stdin(Stdio::null()).stdout(err.try_clone().unwrap()).stderr(err);
        let child = lab.spawn_command(cmd).expect("spawn vigil");
        let v =
            VigilProc { _lab: lab, child, config: cfg, stats, flows, stderr, report: report.to_string(), done: false };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = v.child.try_wait().unwrap() {
                panic!("vigil exited during start-up ({st}):\n{}", v.stderr_text());
            }
            if std::fs::read_to_string(&v.stats).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()).is_some() {
                break;
            }
            assert!(Instant::now() < end, "vigil not ready after 30 s:\n{}", v.stderr_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        v
    }

    pub fn pid(&self) -> u32 {
        // `ip netns exec` execs the program: the child is vigil itself.
        self.child.id()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The current stats file.
    pub fn stats(&self) -> Value {
        let text = std::fs::read_to_string(&self.stats).expect("stats file");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stats file is not JSON ({e}): {text}"))
    }

    /// Waits until the stats file is rewritten (its `now` changes) and returns it.
    pub fn fresh_stats(&self) -> Value {
        let before = self.stats()["now"].clone();
        let mut v = self.stats();
        wait_until("the stats file to be rewritten", Duration::from_secs(10), || {
            v = std::fs::read_to_string(&self.stats)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            !v.is_null() && v["now"] != before
        });
        v
    }

    /// The flow log (one JSON object per line).
    pub fn flows(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.flows).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("flow log line is not JSON ({e}): {l}")))
            .collect()
    }

    /// SIGTERM; asserts a clean exit (status 0) within 10 s.
    pub fn stop(&mut self) {
        signal(self.pid(), libc::SIGTERM);
        let st = self.child.wait_timeout(Duration::from_secs(10)).unwrap();
        self.done = true;
        match st {
            Some(st) => assert!(st.success(), "vigil exited with {st} after SIGTERM:\n{}", self.stderr_text()),
            None => {
                let _ = self.child.kill();
                panic!("vigil did not exit within 10 s of SIGTERM:\n{}", self.stderr_text());
            }
        }
    }
}

impl Drop for VigilProc<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- vigil stderr ({}) ----\n{}\n---- end ----", self.config.display(), self.stderr_text());
        }
        if !self.done {
            // SIGTERM first, so that vigil removes its rules and its state file.
            // SAFETY: kill(2) on the pid of the child this struct owns.
            unsafe { libc::kill(self.pid() as i32, libc::SIGCONT) };
            unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
            if !matches!(self.child.wait_timeout(Duration::from_secs(10)), Ok(Some(_))) {
                let _ = self.child.kill();
            }
        }
    }
}
