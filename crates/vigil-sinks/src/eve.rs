//! EVE-style JSON lines: the records as Suricata's EVE log writes them, so that Filebeat's and
//! Vector's Suricata modules, Splunk's and Wazuh's decoders take them as they are.
//!
//! One JSON object per line. Every event has Suricata's common fields: `timestamp`
//! (`2026-11-26T18:31:45.123456+0000`, UTC), `flow_id` (vigil's session id), `in_iface`, `event_type`, `src_ip`, `src_port`, `dest_ip`,
//! `dest_port` (ports only for TCP/UDP/SCTP), `proto` ("TCP", "UDP", "ICMP", "IPv6-ICMP", ...),
//! `app_proto` (lowercase Suricata names: "tls", "http", "dns", "quic", "ssh", "smb", ...; absent
//! when unidentified), `community_id`. What Suricata has no field for is in a `vigil` object.
//!
//! Events per record:
//! - a session: `flow` (`flow { pkts_toserver, pkts_toclient, bytes_toserver, bytes_toclient,
//!   start, end, age, state, reason, alerted }`, `tcp { state }` for TCP, `vigil { ... }`), and,
//!   once per session (with its first record, interim or final), the application-layer event of
//!   its protocol, with what vigil saw of it:
//!   - TLS: `tls { sni, version, ja4, client_alpns, server_alpns }`; `version` in Suricata's words
//!     ("TLS 1.3", "TLS 1.2", "TLS 1.1", "TLSv1", "SSLv3"), only when the ServerHello was seen.
//!     Certificate names and ECH have no Suricata field (Suricata logs the certificate's subject
//!     and issuer, which vigil does not parse): they are in `vigil { cert_names, ech }`.
//!   - HTTP and HTTP/2 in clear (h2c, `app_proto` "http2"): `http { hostname, url, http_user_agent,
//!     http_method }` (the first request; `url` is the request target as sent, a path for a plain
//!     request, the `:path` for HTTP/2).
//!   - SSH: `ssh { client { proto_version, software_version }, server { ... } }` from the
//!     banners, split as Suricata splits them: "SSH-2.0-OpenSSH_9.2p1 Debian-2" is proto_version
//!     "2.0", software_version "OpenSSH_9.2p1" (the comment after the space is dropped; the whole
//!     banners are in `vigil { client_banner, server_banner }`). No event without a banner.
//!
//!   The flow event's `vigil` object carries all of the record's application-layer facts under
//!   the record's names (`tls_version`, `ech`, `cert_names`, `http_method`, `http_path`,
//!   `user_agent`, `client_banner`, `server_banner`, `dhcp_hostname`, `dhcp_vendor_class`), so
//!   that protocols without an event of their own (a SIP User-Agent, a DHCP hostname) keep them.
//! - a DNS transaction: a `dns` query event (client → server, at `ts - latency_us`) and an answer
//!   event (server → client, at `ts`) with `rrname`, `rrtype`, `rcode` as text and `answers` as
//!   Suricata's `[{rrname, rrtype, rdata}]` (rrtype: "A"/"AAAA" for addresses, "CNAME" for a
//!   name in an A/AAAA answer, else the query type).
//! - a block: a `drop` event (`drop { reason: "rules" }`, `vigil { rule, action, reason, ... }`).
//!
//! Writes are buffered: [`EveWriter`] flushes when `flush_interval` passed since the last flush
//! (checked on each write and on [`EveWriter::tick`]), on [`EveWriter::flush`] and on close. For
//! an interval flush while idle, run it on its own thread with [`EveSink::spawn`].
//!
//! **Log rotation**: the file is opened in append mode. With logrotate's default (rename, then
//! signal), call [`EveWriter::reopen`] (or [`EveHandle::reopen`]) on SIGHUP: it flushes to the
//! renamed file and opens a new one at the path. `copytruncate` also works without a signal
//! (appends go to the truncated file's end), at the usual risk of losing lines written between
//! the copy and the truncation.

use crate::record::{rcode_name, rrtype_name, BlockRecord, DnsRecord, FlowRecord, Record};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vigil_engine::{EndReason, FlowVerdict, L7Details, TcpState, Timestamp};

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    File(PathBuf),
    Stdout,
}

/// Writes records as EVE JSON lines. See the module doc.
pub struct EveWriter {
    target: Target,
    out: BufWriter<Box<dyn Write + Send>>,
    flush_interval: Duration,
    last_flush: Instant,
    /// Sessions whose app-layer event (tls/http/ssh) was written with an interim record.
    app_logged: HashSet<u64>,
    lines: u64,
}

impl std::fmt::Debug for EveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EveWriter").field("target", &self.target).field("lines", &self.lines).finish()
    }
}

fn open_target(target: &Target) -> io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        Target::Stdout => Box::new(io::stdout()),
        Target::File(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
    })
}

impl EveWriter {
    pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

    pub fn open(target: Target) -> io::Result<Self> {
        let out = BufWriter::with_capacity(64 * 1024, open_target(&target)?);
        Ok(EveWriter {
            target,
            out,
            flush_interval: Self::DEFAULT_FLUSH_INTERVAL,
            last_flush: Instant::now(),
            app_logged: HashSet::new(),
            lines: 0,
        })
    }

    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    pub fn flush_interval(&self) -> Duration {
        self.flush_interval
    }

    /// Lines written since open.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Writes the record's events, one line each; flushes if the interval passed.
    pub fn write(&mut self, rec: &Record) -> io::Result<()> {
        let app_event = match rec {
            Record::Flow(f) => {
                let first = !self.app_logged.contains(&f.id);
                if f.interim {
                    self.app_logged.insert(f.id);
                } else {
                    self.app_logged.remove(&f.id);
                }
                first
            }
            _ => false,
        };
        for ev in events(rec, app_event) {
            serde_json::to_writer(&mut self.out, &ev)?;
            self.out.write_all(b"\n")?;
            self.lines += 1;
        }
        self.tick()
    }

    /// Flushes if `flush_interval` passed since the last flush.
    pub fn tick(&mut self) -> io::Result<()> {
        if self.last_flush.elapsed() >= self.flush_interval {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.last_flush = Instant::now();
        self.out.flush()
    }

    /// Flushes, then opens the target path anew (after logrotate renamed it). A no-op for stdout.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.flush()?;
        if let Target::File(_) = self.target {
            let fresh = open_target(&self.target)?;
            // The old file's buffer is empty: swapping drops (closes) it.
            self.out = BufWriter::with_capacity(64 * 1024, fresh);
        }
        Ok(())
    }

    /// Flushes and closes.
    pub fn close(mut self) -> io::Result<()> {
        self.flush()
    }
}

/// Counters of an [`EveSink`].
#[derive(Debug, Default)]
pub struct EveStats {
    pub received: AtomicU64,
    /// Records refused because the queue was full.
    pub dropped_full: AtomicU64,
    pub write_errors: AtomicU64,
}

/// An [`EveWriter`] on its own thread: flushes on its interval even when idle.
pub struct EveSink;

/// The sending side of an [`EveSink`].
pub struct EveHandle {
    tx: Option<Sender<Record>>,
    reopen: Arc<AtomicBool>,
    stats: Arc<EveStats>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl EveSink {
    /// Runs `writer` on a thread fed by a bounded queue of `capacity` records.
    pub fn spawn(writer: EveWriter, capacity: usize) -> io::Result<EveHandle> {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let reopen = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(EveStats::default());
        let (r, s) = (reopen.clone(), stats.clone());
        let thread = std::thread::Builder::new().name("vigil-eve".into()).spawn(move || eve_loop(writer, rx, r, s))?;
        Ok(EveHandle { tx: Some(tx), reopen, stats, thread: Some(thread) })
    }
}

fn eve_loop(mut w: EveWriter, rx: Receiver<Record>, reopen: Arc<AtomicBool>, stats: Arc<EveStats>) -> io::Result<()> {
    let tick = w.flush_interval().clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        if reopen.swap(false, Ordering::AcqRel) {
            if let Err(e) = w.reopen() {
                log::error!("eve: reopen {:?}: {e}", w.target);
            }
        }
        let res = match rx.recv_timeout(tick) {
            Ok(rec) => w.write(&rec),
            Err(RecvTimeoutError::Timeout) => w.tick(),
            Err(RecvTimeoutError::Disconnected) => return w.close(),
        };
        if let Err(e) = res {
            if stats.write_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                log::error!("eve: write to {:?}: {e}", w.target);
            }
        }
    }
}

impl EveHandle {
    /// Queues a record; false (and counted) when the queue is full.
    pub fn try_send(&self, rec: Record) -> bool {
        let Some(tx) = &self.tx else { return false };
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(rec) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
    /// Asks the writer thread to reopen its file (call it from the SIGHUP handler's loop).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }
    pub fn stats(&self) -> &EveStats {
        &self.stats
    }
    /// Writes what is queued, flushes and stops the thread.
    pub fn close(mut self) -> io::Result<()> {
        self.shutdown()
    }
    fn shutdown(&mut self) -> io::Result<()> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(io::Error::other("eve writer thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for EveHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

// ---- The events ----

/// One EVE line. Field order follows Suricata's.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_iface: Option<&'a str>,
    pub event_type: &'static str,
    pub src_ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    pub dest_ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<u16>,
    pub proto: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_proto: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<EveFlow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<EveTcp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<EveTls<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<EveHttp<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<EveSsh<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<EveDns<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop: Option<EveDrop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vigil: Option<Vigil<'a>>,
}

#[derive(Debug, Serialize)]
pub struct EveFlow {
    pub pkts_toserver: u64,
    pub pkts_toclient: u64,
    pub bytes_toserver: u64,
    pub bytes_toclient: u64,
    pub start: String,
    pub end: String,
    pub age: u64,
    pub state: &'static str,
    pub reason: &'static str,
    pub alerted: bool,
    /// Suricata's marker for a bypassed flow: here, offloaded to the kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bypass: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct EveTcp {
    pub state: &'static str,
}

#[derive(Debug, Serialize)]
pub struct EveTls<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub client_alpns: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_alpns: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct EveHttp<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_method: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct EveSsh<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<EveSshHost<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<EveSshHost<'a>>,
}

/// One side's SSH identification string, as Suricata splits it.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct EveSshHost<'a> {
    pub proto_version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub software_version: &'a str,
}

impl<'a> EveSshHost<'a> {
    /// Splits an SSH identification string ("SSH-2.0-OpenSSH_9.2p1 Debian-2") as Suricata does:
    /// the protocol version up to the next '-', the software version up to a space (what follows
    /// is a comment). None when it is not one ("SSH-" and a version).
    pub fn parse(banner: &'a str) -> Option<Self> {
        let rest = banner.strip_prefix("SSH-")?;
        let (proto_version, software) = rest.split_once('-')?;
        if proto_version.is_empty() {
            return None;
        }
        let software_version = software.split([' ', '\r', '\n']).next().unwrap_or_default();
        Some(EveSshHost { proto_version, software_version })
    }
}

#[derive(Debug, Serialize)]
pub struct EveDns<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub rrname: &'a str,
    pub rrtype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<EveAnswer<'a>>>,
}

#[derive(Debug, Serialize)]
pub struct EveAnswer<'a> {
    pub rrname: &'a str,
    pub rrtype: String,
    pub rdata: &'a str,
}

#[derive(Debug, Serialize)]
pub struct EveDrop {
    pub reason: &'static str,
}

/// vigil's own facts, under `vigil`.
#[derive(Debug, Default, Serialize)]
pub struct Vigil<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub protocol_guessed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<FlowVerdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<FlowVerdict>,
    /// Why a flow was blocked: "policy", "default", "revoked".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<&'a str>,
    /// A session's application-layer details, under the record's names; absent ones left out.
    #[serde(flatten)]
    pub details: Option<&'a L7Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interim: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub offloaded: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub midstream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_iface: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_mac: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpi_packets: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
}

/// The EVE events of one record. `app_event`: also the session's tls/http/ssh event.
pub fn events(rec: &Record, app_event: bool) -> Vec<Event<'_>> {
    match rec {
        Record::Flow(f) => flow_events(f, app_event),
        Record::Dns(d) => dns_events(d),
        Record::Block(b) => vec![drop_event(b)],
    }
}

fn base<'a>(ts: Timestamp, event_type: &'static str, l4: &str, src: (IpAddr, u16), dst: (IpAddr, u16)) -> Event<'a> {
    let ports = has_ports(l4);
    Event {
        timestamp: format_ts(ts),
        flow_id: None,
        in_iface: None,
        event_type,
        src_ip: src.0,
        src_port: ports.then_some(src.1),
        dest_ip: dst.0,
        dest_port: ports.then_some(dst.1),
        proto: eve_proto(l4),
        app_proto: None,
        community_id: None,
        flow: None,
        tcp: None,
        tls: None,
        http: None,
        ssh: None,
        dns: None,
        drop: None,
        vigil: None,
    }
}

fn flow_events(r: &FlowRecord, app_event: bool) -> Vec<Event<'_>> {
    let app_proto = app_proto(&r.protocol);
    let common = |event_type| {
        let mut e = base(r.first_seen, event_type, &r.proto, (r.src, r.sport), (r.dst, r.dport));
        e.flow_id = Some(r.id);
        e.in_iface = r.in_if.as_deref();
        e.app_proto = app_proto.clone();
        e.community_id = (!r.community_id.is_empty()).then_some(Cow::Borrowed(r.community_id.as_str()));
        e
    };
    let mut out = Vec::with_capacity(2);
    if app_event {
        match &*r.protocol {
            "TLS" => {
                let mut e = common("tls");
                e.tls = Some(EveTls {
                    sni: r.hostname.as_deref(),
                    version: r.details.tls_version.as_deref().map(tls_version_name),
                    ja4: r.ja4.as_deref(),
                    client_alpns: &r.alpn,
                    server_alpns: r.alpn_selected.as_deref().into_iter().collect(),
                });
                out.push(e);
            }
            // Suricata logs HTTP/2 requests as `http` events too (app_proto "http2").
            "HTTP" | "HTTP2" => {
                let mut e = common("http");
                e.http = Some(EveHttp {
                    hostname: r.hostname.as_deref(),
                    url: r.details.http_path.as_deref(),
                    http_user_agent: r.details.user_agent.as_deref(),
                    http_method: r.details.http_method.as_deref(),
                });
                out.push(e);
            }
            "SSH" => {
                let client = r.details.client_banner.as_deref().and_then(EveSshHost::parse);
                let server = r.details.server_banner.as_deref().and_then(EveSshHost::parse);
                if client.is_some() || server.is_some() {
                    let mut e = common("ssh");
                    e.ssh = Some(EveSsh { client, server });
                    out.push(e);
                }
            }
            _ => {}
        }
    }
    let mut e = common("flow");
    let tcp = r.proto == "tcp";
    let state = if r.offloaded {
        "bypassed"
    } else {
        match r.tcp_state {
            Some(TcpState::SynSent | TcpState::SynReceived) => "new",
            Some(TcpState::Established | TcpState::Closing) => "established",
            Some(TcpState::Closed) => "closed",
            None if r.packets_s2c > 0 => "established",
            None => "new",
        }
    };
    e.flow = Some(EveFlow {
        pkts_toserver: r.packets_c2s,
        pkts_toclient: r.packets_s2c,
        bytes_toserver: r.bytes_c2s,
        bytes_toclient: r.bytes_s2c,
        start: format_ts(r.first_seen),
        end: format_ts(r.last_seen),
        age: r.last_seen.micros().saturating_sub(r.first_seen.micros()) / 1_000_000,
        state,
        // Suricata's vocabulary: why the flow was logged. A FIN/RST-ended flow is logged by
        // Suricata when its (short) closed timeout fires: "timeout". vigil's exact reason is in
        // vigil.end_reason.
        reason: match r.end_reason {
            EndReason::Fin | EndReason::Rst | EndReason::Timeout => "timeout",
            EndReason::Eviction => "forced",
            EndReason::Shutdown => "shutdown",
        },
        alerted: false,
        bypass: r.offloaded.then_some("capture"),
    });
    if tcp {
        e.tcp = r.tcp_state.map(|s| EveTcp {
            state: match s {
                TcpState::SynSent => "syn_sent",
                TcpState::SynReceived => "syn_recv",
                TcpState::Established => "established",
                TcpState::Closing => "closing",
                TcpState::Closed => "closed",
            },
        });
    }
    e.vigil = Some(Vigil {
        protocol: Some(&r.protocol),
        protocol_guessed: r.protocol_guessed,
        app: r.app.as_deref(),
        category: r.category.as_deref(),
        hostname: r.hostname.as_deref(),
        name_source: r.name_source.as_deref(),
        verdict: Some(r.verdict),
        rule: r.rule.as_deref(),
        ja4: r.ja4.as_deref(),
        details: Some(&r.details),
        end_reason: (!r.interim).then_some(r.end_reason),
        interim: r.interim,
        offloaded: r.offloaded,
        midstream: r.midstream,
        out_iface: r.out_if.as_deref(),
        client_mac: r.client_mac.as_deref(),
        dpi_packets: r.dpi_packets,
        ..Vigil::default()
    });
    out.push(e);
    out
}

fn dns_events(d: &DnsRecord) -> Vec<Event<'_>> {
    let l4 = vigil_wire::L4Proto::from_name(&d.proto);
    let community =
        l4.map(|l4| Cow::<str>::Owned(vigil_engine::community_id(l4, (d.client, d.sport), (d.server, d.dport))));
    let common = |ts, event_type, src, dst| {
        let mut e = base(ts, event_type, &d.proto, src, dst);
        e.flow_id = Some(d.flow_id);
        e.app_proto = Some("dns".into());
        e.community_id = community.clone();
        e
    };
    // `ts` is the answer's; the query was `latency_us` earlier, when it was seen.
    let query_ts = Timestamp(d.ts.micros().saturating_sub(d.latency_us.unwrap_or(0)));
    let mut q = common(query_ts, "dns", (d.client, d.sport), (d.server, d.dport));
    q.dns = Some(EveDns { kind: "query", rrname: &d.query, rrtype: rrtype_name(d.qtype), rcode: None, answers: None });

    let mut a = common(d.ts, "dns", (d.server, d.dport), (d.client, d.sport));
    let answers = d
        .answers
        .iter()
        .map(|s| EveAnswer { rrname: &d.query, rrtype: answer_type(d.qtype, s), rdata: s })
        .collect::<Vec<_>>();
    a.dns = Some(EveDns {
        kind: "answer",
        rrname: &d.query,
        rrtype: rrtype_name(d.qtype),
        rcode: Some(rcode_name(d.rcode.into())),
        answers: (!answers.is_empty()).then_some(answers),
    });
    if d.latency_us.is_some() {
        a.vigil = Some(Vigil { latency_us: d.latency_us, ..Vigil::default() });
    }
    vec![q, a]
}

/// An answer's type from its text: an address is A/AAAA, a name in an A/AAAA answer a CNAME.
fn answer_type(qtype: u16, rdata: &str) -> String {
    match rdata.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => "A".into(),
        Ok(IpAddr::V6(_)) => "AAAA".into(),
        Err(_) if qtype == 1 || qtype == 28 => "CNAME".into(),
        Err(_) => rrtype_name(qtype),
    }
}

fn drop_event(b: &BlockRecord) -> Event<'_> {
    let mut e = base(b.ts, "drop", &b.proto, (b.client, b.sport), (b.server, b.dport));
    e.flow_id = Some(b.flow_id);
    e.app_proto = b.protocol.as_deref().and_then(app_proto);
    e.community_id = vigil_wire::L4Proto::from_name(&b.proto)
        .map(|l4| Cow::Owned(vigil_engine::community_id(l4, (b.client, b.sport), (b.server, b.dport))));
    e.drop = Some(EveDrop { reason: "rules" });
    e.vigil = Some(Vigil {
        protocol: b.protocol.as_deref(),
        rule: b.rule.as_deref(),
        action: Some(b.action),
        reason: Some(&b.reason),
        app: b.app.as_deref(),
        category: b.category.as_deref(),
        hostname: b.hostname.as_deref(),
        ..Vigil::default()
    });
    e
}

fn has_ports(l4: &str) -> bool {
    matches!(l4, "tcp" | "udp" | "sctp")
}

/// Suricata's `proto`: the IANA name in upper case ("IPv6-ICMP" for ICMPv6).
pub fn eve_proto(l4: &str) -> String {
    match l4 {
        "icmpv6" => "IPv6-ICMP".into(),
        "ip-58" => "IPv6-ICMP".into(),
        other => other.to_ascii_uppercase(),
    }
}

/// Suricata's `app_proto` for a vigil protocol name; None when unidentified.
pub fn app_proto(protocol: &str) -> Option<String> {
    Some(
        match protocol {
            "" | "Unknown" => return None,
            "SMTPS" | "IMAPS" | "POP3S" | "SSL" | "SSLv3" | "TLSv1" => "tls",
            "SMBv1" | "SMBv23" => "smb",
            "Kerberos" => "krb5",
            "MDNS" | "LLMNR" => "dns",
            "DHCPV6" => "dhcp",
            other => return Some(other.to_ascii_lowercase()),
        }
        .to_string(),
    )
}

/// Suricata's name of a TLS version ("TLS 1.3"; "TLSv1" and "SSLv3" as it writes them) for
/// vigil's ("TLSv1.3"); others (DTLS) as they are.
pub fn tls_version_name(v: &str) -> &str {
    match v {
        "TLSv1.3" => "TLS 1.3",
        "TLSv1.2" => "TLS 1.2",
        "TLSv1.1" => "TLS 1.1",
        other => other,
    }
}

/// RFC 3339 with microseconds in UTC, as Suricata writes it: `2026-11-26T18:31:45.123456+0000`.
pub fn format_ts(ts: Timestamp) -> String {
    let us = ts.micros();
    let secs = us / 1_000_000;
    let (days, sod) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+0000", sod / 3600, sod / 60 % 60, sod % 60, us % 1_000_000)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
