//! Helpers shared by the root-only kernel tests and the fixture capture
//! example: a network namespace guard, running code inside it, iptables.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// `true` when we may run; `false` to skip. Under `CI` not being root fails.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let msg = "needs root (CAP_NET_ADMIN) to create network namespaces and bind NFQUEUE";
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {msg}, and CI is set: not skipping");
    }
    eprintln!("{test}: skipped: {msg}");
    false
}

/// With `VIGIL_WRITE_FIXTURES=1`, saves the kernel's raw bytes as `tests/fixtures/<name>` (the
/// unit tests decode them).
pub fn maybe_write_fixture(name: &str, raw: &[u8]) {
    if std::env::var("VIGIL_WRITE_FIXTURES").map_or(true, |v| v != "1") {
        return;
    }
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::write(&p, raw).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    eprintln!("wrote {}", p.display());
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    out
}

fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A uniquely named network namespace, deleted on drop (also on panic).
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new() -> NetNs {
        let name = format!("vnfq-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        run_ok("ip", &["netns", "add", &name]);
        let ns = NetNs { name }; // guard exists from here on
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Run a command inside the namespace; panics when it fails.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut a = vec!["netns", "exec", &self.name];
        a.extend_from_slice(args);
        run_ok("ip", &a)
    }

    /// `iptables -w ARGS` (or ip6tables) inside the namespace.
    pub fn iptables(&self, v6: bool, args: &[&str]) -> String {
        let mut a = vec![if v6 { "ip6tables" } else { "iptables" }, "-w"];
        a.extend_from_slice(args);
        self.exec(&a)
    }

    /// Packet counter of rule number `rule` (1-based) of `table`/`chain`.
    pub fn rule_packets(&self, v6: bool, table: &str, chain: &str, rule: usize) -> u64 {
        let out = self.iptables(v6, &["-t", table, "-L", chain, "-v", "-x", "-n"]);
        let line =
            out.lines().skip(2).nth(rule - 1).unwrap_or_else(|| panic!("no rule {rule} in {table}/{chain}:\n{out}"));
        line.split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("cannot parse counter from {line:?}"))
    }

    /// Run `f` on a thread that has entered the namespace. Sockets it creates
    /// live in the namespace. Panics inside `f` propagate.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: valid namespace fd; affects only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let out = run("ip", &["netns", "del", &self.name]);
        if !out.status.success() {
            eprintln!("warning: ip netns del {} failed: {}", self.name, String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// Internet checksum (RFC 1071) over `data`, starting from `sum`.
pub fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

pub fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Recompute the UDP checksum of an IPv4 packet (no options assumed beyond
/// IHL) in place.
pub fn fix_udp4_checksum(pkt: &mut [u8]) {
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let udp_len = pkt.len() - ihl;
    pkt[ihl + 6] = 0;
    pkt[ihl + 7] = 0;
    let mut sum = csum_add(0, &pkt[12..20]); // src + dst
    sum += 17 + udp_len as u32;
    sum = csum_add(sum, &pkt[ihl..]);
    let mut c = csum_fold(sum);
    if c == 0 {
        c = 0xffff;
    }
    pkt[ihl + 6..ihl + 8].copy_from_slice(&c.to_be_bytes());
}
