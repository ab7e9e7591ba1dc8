//! A three-namespace lab: `client <-> gateway <-> server`, used by `vigil demo` and the kernel tests.
//!
//! ```text
//!  client (eth0)            gateway (lan0 | wan0)            server (eth0)
//!  198.18.1.2/24  ------  198.18.1.1/24 | 198.18.2.1/24  ------  198.18.2.2/24
//!  fd76:1::2/64           fd76:1::1/64  | fd76:2::1/64           fd76:2::2/64
//! ```
//!
//! Namespace names are `<prefix><pid>-<counter>c|g|s`, so [`cleanup_stale`] can tell leftovers of
//! dead processes. Interface names are fixed and short (`eth0`, `lan0`, `wan0`): each veth end is
//! created directly inside its namespace, so parallel labs never collide on them. Offloads (GSO,
//! TSO) are left at the veth defaults, the realistic case.
//!
//! Cleanup: [`Lab::destroy`], `Drop`, or [`LabHandle::destroy`] from another thread (signal handler
//! thread of `vigil demo`) — all idempotent. They SIGKILL and reap only the children started with
//! [`Lab::spawn_in`]/[`Lab::spawn_command`], then delete the namespaces. [`Lab::names`] gives the
//! plain names for a last-resort cleanup path.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Errors creating a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` failed ({status}): {stderr} (the lab needs root and iproute2)")]
    Command { command: String, status: String, stderr: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("IPv6 addresses in {ns} still tentative after {waited:?}")]
    Tentative { ns: String, waited: Duration },
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const GATEWAY_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
pub const GATEWAY_SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd76, 1, 0, 0, 0, 0, 0, 2);
pub const GATEWAY_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd76, 1, 0, 0, 0, 0, 0, 1);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd76, 2, 0, 0, 0, 0, 0, 2);
pub const GATEWAY_SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd76, 2, 0, 0, 0, 0, 0, 1);

/// Interface of the client (towards the gateway) and of the server (towards the gateway).
pub const HOST_IF: &str = "eth0";
/// Gateway interface towards the client.
pub const GW_CLIENT_IF: &str = "lan0";
/// Gateway interface towards the server.
pub const GW_SERVER_IF: &str = "wan0";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The three namespace names of a lab; enough to delete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNames {
    pub client: String,
    pub gateway: String,
    pub server: String,
}

impl LabNames {
    pub fn all(&self) -> [&str; 3] {
        [&self.client, &self.gateway, &self.server]
    }

    /// Deletes the namespaces that still exist (idempotent, never panics). Does not kill
    /// processes; prefer [`LabHandle::destroy`], which does for the lab's own children.
    pub fn delete_namespaces(&self) {
        for ns in self.all() {
            if netns_exists(ns) {
                if let Err(e) = run(ip().args(["netns", "delete", ns])) {
                    log::warn!("lab: cannot delete namespace {ns}: {e}");
                }
            }
        }
    }
}

/// A child process started in the lab; shared with the lab, which kills it on destroy if it is
/// still running.
#[derive(Debug, Clone)]
pub struct LabChild {
    inner: Arc<Mutex<Child>>,
    pid: u32,
}

impl LabChild {
    pub fn id(&self) -> u32 {
        self.pid
    }
    fn lock(&self) -> MutexGuard<'_, Child> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Takes the child's stdout pipe (once) when it was piped.
    pub fn take_stdout(&self) -> Option<ChildStdout> {
        self.lock().stdout.take()
    }
    /// SIGKILL and reap (no-op when already reaped).
    pub fn kill(&self) -> io::Result<()> {
        let mut c = self.lock();
        c.kill()?;
        c.wait().map(|_| ())
    }
    pub fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        self.lock().try_wait()
    }
    /// Waits for exit, polling, at most `timeout`; `Ok(None)` on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    children: Vec<LabChild>,
    destroyed: bool,
}

/// Thread-safe handle that can destroy the lab from elsewhere (signal-handling thread).
#[derive(Debug, Clone)]
pub struct LabHandle {
    names: LabNames,
    shared: Arc<Mutex<Shared>>,
}

impl LabHandle {
    /// Kills (SIGKILL + wait) the children the lab started, then deletes the namespaces.
    /// Idempotent, never panics.
    pub fn destroy(&self) {
        let mut sh = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if sh.destroyed {
            return;
        }
        for child in sh.children.drain(..) {
            if let Err(e) = child.kill() {
                log::warn!("lab: cannot kill child {}: {e}", child.id());
            }
        }
        for ns in self.names.all() {
            if let Ok(pids) = run(ip().args(["netns", "pids", ns])) {
                let left: Vec<&str> = pids.split_whitespace().collect();
                if !left.is_empty() {
                    log::warn!(
                        "lab: processes not started by the lab still run in {ns} ({}); the namespace lives on until they exit",
                        left.join(" ")
                    );
                }
            }
        }
        self.names.delete_namespaces();
        sh.destroyed = true;
    }

    pub fn names(&self) -> &LabNames {
        &self.names
    }
}

/// The lab. Dropping it destroys it.
#[derive(Debug)]
pub struct Lab {
    handle: LabHandle,
}

impl Lab {
    /// Creates the namespaces, links, addresses and routes, and waits until IPv6 is usable.
    /// On failure everything created so far is deleted.
    pub fn create(prefix: &str) -> Result<Lab> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("{prefix}{}-{n}", std::process::id());
        let names = LabNames { client: format!("{base}c"), gateway: format!("{base}g"), server: format!("{base}s") };
        let lab = Lab { handle: LabHandle { names, shared: Arc::new(Mutex::new(Shared::default())) } };
        lab.setup()?; // on error `lab` drops and cleans up
        Ok(lab)
    }

    fn setup(&self) -> Result<()> {
        let (c, g, s) = (self.client_ns(), self.gateway_ns(), self.server_ns());
        for ns in [c, g, s] {
            run(ip().args(["netns", "add", ns]))?;
            // Before any interface exists: no DAD (also for link-local), no RA noise.
            self.sysctl(
                ns,
                &[
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.accept_ra=0",
                    "net.ipv6.conf.default.accept_ra=0",
                ],
            )?;
            run(ip().args(["-n", ns, "link", "set", "lo", "up"]))?;
        }
        // Each end is created inside its namespace: names only need to be unique per namespace.
        for (gw_if, host_ns) in [(GW_CLIENT_IF, c), (GW_SERVER_IF, s)] {
            run(ip().args([
                "link", "add", "name", gw_if, "netns", g, "type", "veth", "peer", "name", HOST_IF, "netns", host_ns,
            ]))?;
        }
        let addrs: [(&str, &str, &str, &str); 4] = [
            (c, HOST_IF, "198.18.1.2/24", "fd76:1::2/64"),
            (g, GW_CLIENT_IF, "198.18.1.1/24", "fd76:1::1/64"),
            (g, GW_SERVER_IF, "198.18.2.1/24", "fd76:2::1/64"),
            (s, HOST_IF, "198.18.2.2/24", "fd76:2::2/64"),
        ];
        for (ns, dev, v4, v6) in addrs {
            run(ip().args(["-n", ns, "addr", "add", v4, "dev", dev]))?;
            run(ip().args(["-n", ns, "-6", "addr", "add", v6, "dev", dev, "nodad"]))?;
            run(ip().args(["-n", ns, "link", "set", dev, "up"]))?;
        }
        for (ns, gw4, gw6) in [(c, "198.18.1.1", "fd76:1::1"), (s, "198.18.2.1", "fd76:2::1")] {
            run(ip().args(["-n", ns, "route", "add", "default", "via", gw4]))?;
            run(ip().args(["-n", ns, "-6", "route", "add", "default", "via", gw6]))?;
        }
        self.sysctl(g, &["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
        let timeout = Duration::from_secs(10);
        for ns in [c, g, s] {
            wait_ipv6_ready(ns, timeout)?;
        }
        Ok(())
    }

    fn sysctl(&self, ns: &str, settings: &[&str]) -> Result<()> {
        let mut cmd = self.exec(ns, ["sysctl", "-q", "-w"]);
        cmd.args(settings);
        run(&mut cmd).map(|_| ())
    }

    pub fn client_ns(&self) -> &str {
        &self.handle.names.client
    }
    pub fn gateway_ns(&self) -> &str {
        &self.handle.names.gateway
    }
    pub fn server_ns(&self) -> &str {
        &self.handle.names.server
    }
    pub fn client_v4(&self) -> IpAddr {
        CLIENT_V4.into()
    }
    pub fn server_v4(&self) -> IpAddr {
        SERVER_V4.into()
    }
    pub fn client_v6(&self) -> IpAddr {
        CLIENT_V6.into()
    }
    pub fn server_v6(&self) -> IpAddr {
        SERVER_V6.into()
    }
    /// Gateway interface towards the client (`lan0`).
    pub fn gw_client_if(&self) -> &str {
        GW_CLIENT_IF
    }
    /// Gateway interface towards the server (`wan0`).
    pub fn gw_server_if(&self) -> &str {
        GW_SERVER_IF
    }
    /// Interface of the client and of the server (`eth0`).
    pub fn host_if(&self) -> &str {
        HOST_IF
    }

    /// The namespace names (for a cleanup path that has nothing else).
    pub fn names(&self) -> LabNames {
        self.handle.names.clone()
    }

    /// A handle that can destroy the lab from another thread.
    pub fn handle(&self) -> LabHandle {
        self.handle.clone()
    }

    /// `ip netns exec NS args...` as a `Command` (not tracked: use it for short-lived commands).
    pub fn exec<I, S>(&self, ns: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = ip();
        c.args(["netns", "exec", ns]).args(args);
        c
    }

    /// Starts `args` in `ns` and tracks it: stdin null, stdout piped (see
    /// [`LabChild::take_stdout`]; read it or keep output small), stderr discarded.
    pub fn spawn_in<I, S>(&self, ns: &str, args: I) -> io::Result<LabChild>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.exec(ns, args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        self.spawn_command(cmd)
    }

    /// Starts a command built with [`Lab::exec`] (stdio as configured) and tracks it.
    pub fn spawn_command(&self, mut cmd: Command) -> io::Result<LabChild> {
        let mut sh = self.handle.shared.lock().unwrap_or_else(|e| e.into_inner());
        if sh.destroyed {
            return Err(io::Error::other("lab already destroyed"));
        }
        let child = cmd.spawn()?;
        let lc = LabChild { pid: child.id(), inner: Arc::new(Mutex::new(child)) };
        sh.children.push(lc.clone());
        Ok(lc)
    }

    /// Kills the lab's children and deletes the namespaces.
    pub fn destroy(self) {
        self.handle.destroy();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.handle.destroy();
    }
}

fn ip() -> Command {
    Command::new(find_ip())
}

fn find_ip() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("ip")
}

/// A command as a shell line, for error messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs to completion; error unless exit 0. Returns stdout.
fn run(cmd: &mut Command) -> Result<String> {
    let what = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Io { context: format!("cannot run `{what}`"), source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: what,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn netns_exists(ns: &str) -> bool {
    std::path::Path::new("/run/netns").join(ns).exists()
}

fn wait_ipv6_ready(ns: &str, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let out = run(ip().args(["-n", ns, "-6", "addr", "show", "tentative"]))?;
        if out.trim().is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(LabError::Tentative { ns: ns.to_string(), waited: timeout });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lists namespaces, from `/run/netns`.
fn list_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Owning pid encoded in a lab namespace name `<prefix><pid>-<counter><role>`.
fn owner_pid(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, tail) = rest.split_once('-')?;
    let role = tail.chars().last()?;
    let counter = &tail[..tail.len() - 1];
    if !matches!(role, 'c' | 'g' | 's') || counter.is_empty() || !counter.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if pid.is_empty() || !pid.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new("/proc").join(pid.to_string()).exists()
}

/// Deletes namespaces named `<prefix><pid>-...` whose owning pid no longer exists, killing the
/// processes left inside them (leftovers of that dead run). Returns the names deleted.
pub fn cleanup_stale(prefix: &str) -> Vec<String> {
    let mut deleted = Vec::new();
    for name in list_netns() {
        let Some(pid) = owner_pid(prefix, &name) else { continue };
        if pid_alive(pid) {
            continue;
        }
        if let Ok(pids) = run(ip().args(["netns", "pids", &name])) {
            for p in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: plain kill(2) on a pid found inside the stale namespace.
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
        }
        match run(ip().args(["netns", "delete", &name])) {
            Ok(_) => deleted.push(name),
            Err(e) => log::warn!("lab: cannot delete stale namespace {name}: {e}"),
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parsing() {
        assert_eq!(owner_pid("vl", "vl1234-0c"), Some(1234));
        assert_eq!(owner_pid("vl", "vl1234-17s"), Some(1234));
        assert_eq!(owner_pid("vl", "vlx1234-0c"), None);
        assert_eq!(owner_pid("vl", "vl1234-0x"), None);
        assert_eq!(owner_pid("vl", "vl1234-c"), None);
        assert_eq!(owner_pid("vl", "other"), None);
    }

    #[test]
    fn interface_names_fit_ifnamsiz() {
        for n in [HOST_IF, GW_CLIENT_IF, GW_SERVER_IF] {
            assert!(n.len() <= 15);
        }
    }
}
