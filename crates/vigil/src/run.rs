//! `vigil run`: the NFQUEUE shell around the pipeline.
//!
//! One worker thread per queue, each owning a [`Pipeline`] and its queue socket (the kernel's
//! queue-balance hash keeps both directions of a flow on one queue, so no flow state is shared).
//! The main thread owns the firewall rules, signals, reloads and the stats file. Order matters:
//! queues are bound before the rules go live, and the rules are removed before the queues are
//! drained and unbound, so no packet is ever queued to nobody (and `--queue-bypass` covers a crash).

use crate::config::{Config, DEFAULT_STATS_FILE};
use crate::firewall;
use anyhow::{bail, Context, Result};
use crossbeam_channel::{Sender, TrySendError};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vigil_dpi::{DnsCache, RelatedFlows, SignatureDb};
use vigil_engine::pipeline::PipelineConfig;
use vigil_engine::{Action, EndReason, Event, PacketMeta, Pipeline, PipelineStats, Policy, Timestamp};
use vigil_nfq::{Queue, QueueConfig, QueueStats, Verdict};
use vigil_sinks::Record;

/// What a reload replaces: the policy and the signature database, swapped together.
#[derive(Clone)]
pub struct Rulebook {
    pub policy: Arc<Policy>,
    pub sigdb: Arc<SignatureDb>,
}

/// The rulebook all workers use, swapped whole on reload. Workers poll `generation` (one atomic
/// load per batch) and take the lock only when it changed.
pub struct SharedPolicy {
    generation: AtomicU64,
    book: RwLock<Rulebook>,
}

impl SharedPolicy {
    pub fn new(book: Rulebook) -> Self {
        SharedPolicy { generation: AtomicU64::new(0), book: RwLock::new(book) }
    }
    pub fn replace(&self, book: Rulebook) {
        *self.book.write().unwrap_or_else(|e| e.into_inner()) = book;
        self.generation.fetch_add(1, Ordering::Release);
    }
    fn current(&self) -> (u64, Rulebook) {
        let generation = self.generation.load(Ordering::Acquire);
        (generation, self.book.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Counters one worker publishes about once a second.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WorkerStats {
    pub queue: u16,
    pub pipeline: PipelineStats,
    pub received: u64,
    pub enobufs: u64,
    pub verdicts_sent: u64,
    pub batch_verdicts: u64,
    pub send_errors: u64,
    pub unknown_ids: u64,
    pub parse_errors: u64,
    /// Verdicts that asked the kernel to offload a connection.
    pub offload_verdicts: u64,
    pub gso_packets: u64,
    /// Reject answers sent (resets, ICMP unreachable, block pages).
    pub injected: u64,
    /// Packets held until their flow's decision, and those released by the hold timeout.
    pub held: u64,
    pub hold_timeouts: u64,
    /// Offloaded connections sent back from the kernel after a policy change.
    pub revoked: u64,
    pub revoke_errors: u64,
    /// Decision latency over the last samples: packet received by vigil -> verdict sent.
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    pub latency_max_us: u64,
}

/// The most recent decision latencies (one per packet), for percentiles in the stats file.
struct LatencySamples {
    ring: Vec<u32>,
    next: usize,
}

impl Default for LatencySamples {
    fn default() -> Self {
        LatencySamples { ring: Vec::with_capacity(8192), next: 0 }
    }
}

impl LatencySamples {
    const CAP: usize = 8192;
    fn record(&mut self, latency: Duration, packets: usize) {
        let us = latency.as_micros().min(u128::from(u32::MAX)) as u32;
        for _ in 0..packets.min(Self::CAP) {
            if self.ring.len() < Self::CAP {
                self.ring.push(us);
            } else {
                self.ring[self.next] = us;
                self.next = (self.next + 1) % Self::CAP;
            }
        }
    }
    fn percentiles(&self) -> (u64, u64, u64) {
        if self.ring.is_empty() {
            return (0, 0, 0);
        }
        let mut v = self.ring.clone();
        v.sort_unstable();
        let at = |q: f64| u64::from(v[((v.len() - 1) as f64 * q) as usize]);
        (at(0.5), at(0.99), u64::from(*v.last().unwrap_or(&0)))
    }
}

/// The kernel's name for an interface index.
fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    Some(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// Sends an offloaded, now blocked connection back to userspace: deleting its conntrack entry
/// makes its next packet a new, unmarked connection that the queue rules send to vigil, where the
/// flow's (new) decision drops it.
fn revoke(ct: &mut Option<vigil_nfq::conntrack::Conntrack>, conn: &vigil_engine::Connection, stats: &mut WorkerStats) {
    let Some(ct) = ct.as_mut() else { return };
    let tuple = vigil_nfq::conntrack::CtTuple {
        proto: conn.l4.number(),
        src: conn.client.0,
        dst: conn.server.0,
        sport: conn.client.1,
        dport: conn.server.1,
    };
    match ct.delete(&tuple) {
        Ok(found) => {
            stats.revoked += 1;
            log::debug!("revoked {tuple}: conntrack entry {}", if found { "deleted" } else { "already gone" });
        }
        Err(e) => {
            stats.revoke_errors += 1;
            log::warn!("could not revoke {tuple:?}: {e}");
        }
    }
}

impl WorkerStats {
    fn absorb_queue(&mut self, q: QueueStats) {
        self.received = q.received;
        self.enobufs = q.enobufs;
        self.verdicts_sent = q.verdicts_sent;
        self.batch_verdicts = q.batch_verdicts;
        self.send_errors = q.send_errors;
        self.unknown_ids = q.unknown_ids;
        self.parse_errors = q.parse_errors;
    }
}

#[derive(Debug, Serialize)]
struct OutputDropped {
    sqlite: u64,
    eve: u64,
    clickhouse: u64,
}

/// What `vigil status` reads.
#[derive(Debug, Serialize)]
struct StatsFile<'a> {
    pid: u32,
    started: Timestamp,
    now: Timestamp,
    queues: &'a [WorkerStats],
    total: PipelineStats,
    enobufs: u64,
    flow_records_dropped: u64,
    /// Records a sink could not queue (full), per sink.
    output_dropped: OutputDropped,
    reloads: u64,
    conntrack_verdicts: bool,
}

struct Shared {
    policy: SharedPolicy,
    stop: AtomicBool,
    stats: Mutex<Vec<WorkerStats>>,
    records_dropped: AtomicU64,
}

/// Knobs of `vigil run` that are not in the config file.
pub struct RunOptions {
    pub config_path: PathBuf,
}

pub fn firewall_spec(cfg: &Config, netns: Option<String>) -> firewall::FirewallSpec {
    use crate::config::Chain;
    let fw = &cfg.firewall;
    firewall::FirewallSpec {
        chains: fw
            .chains
            .iter()
            .map(|c| match c {
                Chain::Forward => firewall::Hook::Forward,
                Chain::Input => firewall::Hook::Input,
                Chain::Output => firewall::Hook::Output,
            })
            .collect(),
        interfaces_in: fw.interfaces_in.clone(),
        interfaces_out: fw.interfaces_out.clone(),
        queues: firewall::QueueRange { first: cfg.engine.queues.first, last: cfg.engine.queues.last },
        offload_mark: fw.offload_mark,
        queue_packets: fw.queue_packets,
        ipv4: fw.ipv4,
        ipv6: fw.ipv6,
        netns,
        ..firewall::FirewallSpec::default()
    }
}

pub fn run(opts: RunOptions) -> Result<()> {
    let crate::config::Loaded { config: cfg, policy, sigdb } = Config::load(&opts.config_path)?;
    let sigdb = Arc::new(sigdb);
    // One DNS cache for all workers: a client's lookup and its connection may hash to different queues.
    let dns_cache = Arc::new(DnsCache::new(cfg.classify.dns_cache_entries));
    // Likewise what flows teach about related flows (an FTP control connection and its data
    // connection, the flows of one call socket may land on different queues). Both survive reloads.
    let related = Arc::new(RelatedFlows::new(cfg.classify.related_cache_entries));
    let started = Timestamp::now();
    let shared = Arc::new(Shared {
        policy: SharedPolicy::new(Rulebook { policy: Arc::new(policy), sigdb: sigdb.clone() }),
        stop: AtomicBool::new(false),
        stats: Mutex::new(cfg.engine.queues.iter().map(|q| WorkerStats { queue: q, ..Default::default() }).collect()),
        records_dropped: AtomicU64::new(0),
    });

    // Signals first, so a Ctrl-C during start-up still cleans up.
    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;

    // Reports: every record fans out to the configured sinks on one output thread.
    let (rec_tx, rec_rx) = crossbeam_channel::bounded::<Record>(65_536);
    let output_drops = Arc::new(crate::output::OutputDrops::default());
    let writer = crate::output::spawn(&cfg.report, rec_rx, output_drops.clone())?;
    let outputs = crate::output::describe(&cfg.report);
    if !outputs.is_empty() {
        log::info!("reporting to {}", outputs.join(", "));
    }

    let mut ct_inboxes: Vec<Sender<CtAccount>> = Vec::new();
    // Bind every queue before any rule sends traffic to it.
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(cfg.engine.queues.len());
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    for (slot, queue_num) in cfg.engine.queues.iter().enumerate() {
        let qcfg = QueueConfig {
            copy_range: cfg.engine.copy_range,
            max_len: cfg.engine.queue_maxlen,
            fail_open: cfg.engine.fail_open,
            gso: cfg.engine.gso,
            rcvbuf: cfg.engine.rcvbuf,
            ..QueueConfig::new(queue_num)
        };
        let pcfg = PipelineConfig {
            flows: cfg.engine.flows.clone(),
            offload: cfg.engine.offload,
            classify: cfg.classify.classification(sigdb.clone(), dns_cache.clone(), related.clone()),
            // Session ids: 24 bits that differ per worker and per run, 40 bits of counter.
            flow_id_salt: ((started.micros() / 1_000_000) ^ (u64::from(std::process::id()) << 8))
                .wrapping_add(slot as u64)
                & 0xff_ffff,
            interim_interval: (cfg.report.interim_interval > 0)
                .then(|| Duration::from_secs(cfg.report.interim_interval)),
            hold_undecided: cfg.engine.hold_undecided,
        };
        let (ct_tx, ct_rx) = crossbeam_channel::bounded(65_536);
        ct_inboxes.push(ct_tx);
        let worker = Worker {
            hold_timeout: Duration::from_millis(cfg.engine.hold_timeout_ms),
            ct_inbox: ct_rx,
            slot,
            qcfg,
            pcfg,
            offload_mark: cfg.firewall.offload_mark,
            shared: shared.clone(),
            records: rec_tx.clone(),
        };
        let ready = ready_tx.clone();
        workers.push(std::thread::Builder::new().name(format!("vigil-q{queue_num}")).spawn(move || worker.run(ready))?);
    }
    drop(ready_tx);
    drop(rec_tx);
    let mut conntrack_verdicts = true;
    let mut bind_error = None;
    for _ in 0..workers.len() {
        match ready_rx.recv() {
            Ok(Ok(caps)) => conntrack_verdicts &= caps,
            Ok(Err(e)) => bind_error = Some(e),
            Err(_) => bind_error = Some(anyhow::anyhow!("a worker thread died during start-up")),
        }
    }
    if let Some(e) = bind_error {
        shared.stop.store(true, Ordering::SeqCst);
        for w in workers {
            let _ = w.join();
        }
        return Err(e.context("cannot start the queue workers"));
    }
    log::info!(
        "bound queue(s) {} ({} worker(s)); connmark via {}",
        cfg.engine.queues,
        workers.len(),
        if conntrack_verdicts {
            "NFQA_CT in verdicts and CONNMARK --save-mark"
        } else {
            "packet mark + CONNMARK --save-mark (kernel lacks NFQA_CT)"
        }
    );

    // Rules go into the network namespace vigil runs in, where its queue sockets are bound.
    let spec = firewall_spec(&cfg, None);
    let mut rules_installed = false;
    if cfg.firewall.manage {
        match firewall::install(&spec) {
            Ok(report) => {
                rules_installed = true;
                log::info!("firewall rules installed: {report}");
            }
            Err(e) => {
                shared.stop.store(true, Ordering::SeqCst);
                for w in workers {
                    let _ = w.join();
                }
                return Err(
                    anyhow::Error::new(e).context("cannot install vigil's firewall rules (nothing was changed)")
                );
            }
        }
    } else {
        log::info!("[firewall] manage = false: point your own rules at queue(s) {}", cfg.engine.queues);
    }

    // Accurate bytes for offloaded flows: the kernel's conntrack accounting (DESTROY events, a
    // periodic dump of offloaded connections, and a last dump at shutdown).
    let ct_stop = Arc::new(AtomicBool::new(false));
    let accounting = if cfg.engine.offload {
        match spawn_accounting(ct_inboxes.clone(), cfg.firewall.offload_mark, ct_stop.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                log::warn!("conntrack accounting unavailable ({e:#}): offloaded sessions report the packets vigil saw");
                None
            }
        }
    } else {
        None
    };

    let stats_path = cfg.report.stats_file.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_STATS_FILE));
    let mut reloads = 0u64;
    let mut last_stats = Instant::now() - Duration::from_secs(2);
    let write_stats = |reloads: u64| {
        let queues = shared.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut total = PipelineStats::default();
        let mut enobufs = 0;
        for q in &queues {
            total += q.pipeline;
            enobufs += q.enobufs;
        }
        let file = StatsFile {
            pid: std::process::id(),
            started,
            now: Timestamp::now(),
            queues: &queues,
            total,
            enobufs,
            flow_records_dropped: shared.records_dropped.load(Ordering::Relaxed),
            output_dropped: OutputDropped {
                sqlite: output_drops.sqlite.load(Ordering::Relaxed),
                eve: output_drops.eve.load(Ordering::Relaxed),
                clickhouse: output_drops.clickhouse.load(Ordering::Relaxed),
            },
            reloads,
            conntrack_verdicts,
        };
        if let Err(e) = write_atomic_json(&stats_path, &file) {
            log::debug!("cannot write stats file {}: {e}", stats_path.display());
        }
    };
    while !term.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        if hup.swap(false, Ordering::SeqCst) {
            match Config::load(&opts.config_path) {
                Ok(crate::config::Loaded { config: new_cfg, policy: new_policy, sigdb: new_sigdb }) => {
                    shared.policy.replace(Rulebook { policy: Arc::new(new_policy), sigdb: Arc::new(new_sigdb) });
                    reloads += 1;
                    log::info!(
                        "reloaded policy from {} ({} rules)",
                        opts.config_path.display(),
                        new_cfg.policy.rules.len()
                    );
                    let restart_needed = new_cfg.engine != cfg.engine
                        || new_cfg.firewall != cfg.firewall
                        || new_cfg.classify.enabled != cfg.classify.enabled
                        || new_cfg.classify.max_packets != cfg.classify.max_packets
                        || new_cfg.classify.dns_cache_entries != cfg.classify.dns_cache_entries
                        || new_cfg.classify.related_cache_entries != cfg.classify.related_cache_entries;
                    if restart_needed {
                        log::warn!("[engine], [firewall] and [classify] settings take effect at the next restart; the policy and signatures were applied now");
                    }
                }
                Err(e) => log::error!("reload refused, the running policy stays: {e}"),
            }
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            write_stats(reloads);
            last_stats = Instant::now();
        }
        if workers.iter().any(|w| w.is_finished()) {
            log::error!("a queue worker stopped unexpectedly; shutting down (traffic passes via --queue-bypass)");
            break;
        }
    }

    log::info!("stopping: removing rules, then answering every queued packet");
    let mut result = Ok(());
    if rules_installed {
        if let Err(e) = firewall::remove(None) {
            log::error!("could not remove vigil's rules: {e}; run `vigil rules remove`");
            result = Err(anyhow::Error::new(e).context("removing firewall rules"));
        }
    }
    // The last accounting: a dump of the offloaded connections the kernel still tracks, so sessions
    // ended by this shutdown carry the kernel's counts.
    ct_stop.store(true, Ordering::SeqCst);
    if let Some(t) = accounting {
        let _ = t.join();
    }
    drop(ct_inboxes);
    shared.stop.store(true, Ordering::SeqCst);
    for w in workers {
        if w.join().is_err() {
            log::error!("a queue worker panicked");
        }
    }
    if writer.join().is_err() {
        log::error!("the flow log writer panicked");
    }
    write_stats(reloads);
    let queues = shared.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut total = PipelineStats::default();
    for q in &queues {
        total += q.pipeline;
    }
    log::info!(
        "stopped: {} packets, {} accepted, {} dropped, {} flows ({} offloaded)",
        total.packets,
        total.accepted,
        total.dropped,
        total.flows_created,
        total.flows_offloaded
    );
    result
}

/// The kernel's counters for a connection, broadcast to every worker (the one that owns the
/// flow applies them).
#[derive(Debug, Clone, Copy)]
struct CtAccount {
    conn: vigil_engine::Connection,
    counters: vigil_engine::ConnCounters,
    /// The kernel destroyed the connection (a DESTROY event), not a periodic dump.
    ended: bool,
}

struct Worker {
    /// How long a held packet waits for its flow's decision before it passes.
    hold_timeout: Duration,
    /// Conntrack accounting for the flows this worker may own.
    ct_inbox: crossbeam_channel::Receiver<CtAccount>,
    slot: usize,
    qcfg: QueueConfig,
    pcfg: PipelineConfig,
    offload_mark: u32,
    shared: Arc<Shared>,
    records: Sender<Record>,
}

impl Worker {
    fn run(self, ready: Sender<Result<bool>>) {
        let mut queue = match Queue::open(&self.qcfg) {
            Ok(q) => q,
            Err(e) => {
                let _ = ready.send(Err(anyhow::Error::new(e)));
                return;
            }
        };
        let caps = queue.capabilities();
        if self.qcfg.gso && !caps.gso {
            log::warn!("queue {}: kernel refused GSO; throughput will suffer", self.qcfg.queue_num);
        }
        let _ = ready.send(Ok(caps.conntrack));
        drop(ready);

        // Reject answers go out through raw sockets; revocations through ctnetlink. Without them
        // (no privilege, old kernel) reject degrades to a silent drop and revocation to waiting
        // for the flow to end, with a warning.
        let injector = match crate::inject::Injector::open(self.offload_mark) {
            Ok(i) => Some(i),
            Err(e) => {
                log::warn!("queue {}: cannot open raw sockets ({e}): `reject` will drop silently", self.qcfg.queue_num);
                None
            }
        };
        let mut conntrack = match vigil_nfq::conntrack::Conntrack::open() {
            Ok(c) => Some(c),
            Err(e) => {
                log::warn!(
                    "queue {}: cannot open ctnetlink ({e}): reloads cannot cut offloaded flows",
                    self.qcfg.queue_num
                );
                None
            }
        };
        let mut latency = LatencySamples::default();
        // Packets held until their flow's decision: flow id -> (packet id, since), in order.
        let mut held: std::collections::HashMap<u64, Vec<(u32, Instant)>> = Default::default();
        let (mut generation, book) = self.shared.policy.current();
        let mut pipeline = Pipeline::new(self.pcfg.clone(), book.policy);
        let mut stats = WorkerStats { queue: self.qcfg.queue_num, ..Default::default() };
        let mut last_poll = Instant::now();
        let mut stopping_since: Option<Instant> = None;
        loop {
            let stop = self.shared.stop.load(Ordering::Relaxed);
            if stop && stopping_since.is_none() {
                stopping_since = Some(Instant::now());
            }
            let g = self.shared.policy.generation.load(Ordering::Acquire);
            if g != generation {
                let (g2, book) = self.shared.policy.current();
                generation = g2;
                pipeline.set_signatures(book.sigdb);
                pipeline.set_policy(book.policy, Timestamp::now());
            }
            let timeout = if stopping_since.is_some() { Duration::from_millis(20) } else { Duration::from_millis(100) };
            let got = match queue.recv(timeout) {
                Ok(mut batch) => {
                    let received_at = Instant::now();
                    let now = Timestamp::now();
                    let n = batch.len();
                    let mut plain_accepts: Vec<u32> = Vec::new();
                    for pkt in batch.packets() {
                        if pkt.is_gso() {
                            stats.gso_packets += 1;
                        }
                        let meta = PacketMeta {
                            in_ifindex: pkt.indev,
                            out_ifindex: pkt.outdev,
                            mark: pkt.mark,
                            src_mac: pkt.hw_addr,
                        };
                        for idx in [pkt.indev, pkt.outdev].into_iter().flatten() {
                            if !pipeline.knows_interface(idx) {
                                if let Some(name) = interface_name(idx) {
                                    pipeline.set_interface_name(idx, &name);
                                }
                            }
                        }
                        let d = pipeline.process(pkt.payload, &meta, now);
                        // A decision releases the flow's held packets: answered before this
                        // packet, so that an accepted flow keeps its order.
                        for ev in pipeline.drain_events() {
                            match ev {
                                Event::Release { flow_id, pass, mark } => {
                                    for (id, _) in held.remove(&flow_id).unwrap_or_default() {
                                        let v = match (pass, mark) {
                                            (true, None) => Verdict::accept(id),
                                            (true, Some(m)) => Verdict::accept(id).with_mark(m),
                                            (false, _) => Verdict::drop(id),
                                        };
                                        if let Err(e) = batch.push_verdict(&v) {
                                            log::warn!(
                                                "queue {}: held packet {id} not answered: {e}",
                                                self.qcfg.queue_num
                                            );
                                        }
                                    }
                                }
                                Event::Revoke(conn) => revoke(&mut conntrack, &conn, &mut stats),
                                other => send_record(&self.records, other, &self.shared.records_dropped),
                            }
                        }
                        for answer in &d.inject {
                            match injector.as_ref().map(|i| i.send(answer)) {
                                Some(Ok(())) => stats.injected += 1,
                                Some(Err(e)) => {
                                    log::debug!("queue {}: reject answer not sent: {e}", self.qcfg.queue_num)
                                }
                                None => {}
                            }
                        }
                        let res = match (d.action, d.offload, d.mark) {
                            (Action::Accept, false, None) => {
                                plain_accepts.push(pkt.id);
                                Ok(())
                            }
                            (Action::Hold, _, _) => {
                                held.entry(d.flow_id).or_default().push((pkt.id, Instant::now()));
                                stats.held += 1;
                                Ok(())
                            }
                            (Action::Accept, false, Some(m)) => {
                                batch.push_verdict(&Verdict::accept(pkt.id).with_mark(pkt.mark | m))
                            }
                            (Action::Accept, true, _) => {
                                stats.offload_verdicts += 1;
                                let mark = pkt.mark | self.offload_mark;
                                let mut v = Verdict::accept(pkt.id).with_mark(mark);
                                if caps.conntrack {
                                    v = v.with_connmark(pkt.ct_mark.unwrap_or(0) | self.offload_mark);
                                }
                                batch.push_verdict(&v)
                            }
                            (Action::Drop, _, _) => batch.push_verdict(&Verdict::drop(pkt.id)),
                        };
                        if let Err(e) = res {
                            log::warn!("queue {}: verdict for packet {} not queued: {e}", self.qcfg.queue_num, pkt.id);
                        }
                    }
                    // Every packet up to the last one is answered in this round, so one batch
                    // verdict covers the plain accepts (individual verdicts precede it).
                    // Every packet up to the last one is answered in this round, so one batch
                    // verdict covers the plain accepts, unless packets are held: a batch verdict
                    // would answer them too.
                    if held.is_empty() {
                        if let Some(&id) = plain_accepts.last() {
                            batch.push_batch_accept(id, None);
                        }
                    } else {
                        for id in plain_accepts {
                            if let Err(e) = batch.push_verdict(&Verdict::accept(id)) {
                                log::warn!("queue {}: verdict for packet {id} not queued: {e}", self.qcfg.queue_num);
                            }
                        }
                    }
                    if let Err(e) = batch.flush() {
                        log::warn!("queue {}: sending verdicts failed: {e}", self.qcfg.queue_num);
                    }
                    // Decision latency: from the batch's arrival in vigil to its verdicts' send.
                    if n > 0 {
                        latency.record(received_at.elapsed(), n);
                    }
                    n
                }
                Err(e) => {
                    log::warn!("queue {}: receive failed: {e}", self.qcfg.queue_num);
                    std::thread::sleep(Duration::from_millis(10));
                    0
                }
            };
            while let Ok(a) = self.ct_inbox.try_recv() {
                pipeline.account(&a.conn, a.counters, a.ended, Timestamp::now());
            }
            // Held packets whose flow is still undecided after the hold timeout pass (fail open),
            // and all of them at shutdown.
            if !held.is_empty() {
                let expired: Vec<u64> = held
                    .iter()
                    .filter(|(_, pkts)| stopping_since.is_some() || pkts[0].1.elapsed() >= self.hold_timeout)
                    .map(|(&f, _)| f)
                    .collect();
                for f in expired {
                    for (id, _) in held.remove(&f).unwrap_or_default() {
                        stats.hold_timeouts += 1;
                        let _ = queue.push_verdict(&Verdict::accept(id));
                    }
                }
                let _ = queue.flush();
            }
            for ev in pipeline.drain_events() {
                match ev {
                    Event::Revoke(conn) => revoke(&mut conntrack, &conn, &mut stats),
                    other => send_record(&self.records, other, &self.shared.records_dropped),
                }
            }
            if last_poll.elapsed() >= Duration::from_secs(1) {
                pipeline.poll(Timestamp::now());
                last_poll = Instant::now();
                stats.pipeline = pipeline.stats();
                stats.absorb_queue(queue.stats());
                (stats.latency_p50_us, stats.latency_p99_us, stats.latency_max_us) = latency.percentiles();
                self.publish(stats);
            }
            if let Some(since) = stopping_since {
                // Drain what the kernel queued before the rules went away, then stop.
                if got == 0 || since.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
        }
        // The shutdown dump was sent before the stop flag: apply it before the last records.
        while let Ok(a) = self.ct_inbox.try_recv() {
            pipeline.account(&a.conn, a.counters, a.ended, Timestamp::now());
        }
        pipeline.finish(EndReason::Shutdown);
        for ev in pipeline.drain_events() {
            match ev {
                Event::Revoke(conn) => revoke(&mut conntrack, &conn, &mut stats),
                other => send_record(&self.records, other, &self.shared.records_dropped),
            }
        }
        stats.pipeline = pipeline.stats();
        stats.absorb_queue(queue.stats());
        self.publish(stats);
        if let Err(e) = queue.unbind() {
            log::debug!("queue {}: unbind: {e}", self.qcfg.queue_num);
        }
    }

    fn publish(&self, stats: WorkerStats) {
        if let Some(s) = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()).get_mut(self.slot) {
            *s = stats;
        }
    }
}

fn ct_account(e: &vigil_nfq::conntrack::CtEntry, ended: bool) -> Option<CtAccount> {
    let l4 = vigil_wire::L4Proto::from_number(e.orig.proto);
    if !matches!(l4, vigil_wire::L4Proto::Tcp | vigil_wire::L4Proto::Udp | vigil_wire::L4Proto::Other(132)) {
        return None;
    }
    Some(CtAccount {
        conn: vigil_engine::Connection { l4, client: (e.orig.src, e.orig.sport), server: (e.orig.dst, e.orig.dport) },
        counters: vigil_engine::ConnCounters {
            packets_c2s: e.packets_orig?,
            bytes_c2s: e.bytes_orig?,
            packets_s2c: e.packets_reply.unwrap_or(0),
            bytes_s2c: e.bytes_reply.unwrap_or(0),
        },
        ended,
    })
}

/// Conntrack accounting: DESTROY events (with counters, as `nf_conntrack_acct` is on) end the
/// sessions of offloaded connections with the kernel's counts; a dump of the offloaded
/// connections every 30 s (and after lost events) keeps live sessions' counts current; a last
/// dump when `stop` is set (shutdown). Every account goes to every worker's inbox.
fn spawn_accounting(
    inboxes: Vec<Sender<CtAccount>>,
    offload_mark: u32,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    use vigil_nfq::conntrack::Conntrack;
    use vigil_nfq::{CtEvents, CtGroups};
    // Events for connections that existed before vigil subscribed need nf_conntrack_events = 1
    // (2, the default, only sends them for connections created while someone listens); the
    // previous value is put back when the thread ends.
    const EVENTS: &str = "/proc/sys/net/netfilter/nf_conntrack_events";
    let events_before = std::fs::read_to_string(EVENTS).ok().map(|v| v.trim().to_string());
    if events_before.as_deref() == Some("2") {
        let _ = std::fs::write(EVENTS, "1");
    }
    let mut events = CtEvents::subscribe(CtGroups::DESTROY).context("subscribing to conntrack events")?;
    let mut ct = Conntrack::open().context("opening ctnetlink")?;
    let send = move |a: CtAccount, inboxes: &[Sender<CtAccount>]| {
        for tx in inboxes {
            let _ = tx.try_send(a);
        }
    };
    Ok(std::thread::Builder::new().name("vigil-conntrack".into()).spawn(move || {
        let mut last_dump = Instant::now();
        let mut dump_now = true;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            if dump_now || stopping || last_dump.elapsed() >= Duration::from_secs(30) {
                let r = ct.dump_marked(offload_mark, offload_mark, |e| {
                    if let Some(a) = ct_account(&e, false) {
                        send(a, &inboxes);
                    }
                });
                if let Err(e) = r {
                    log::debug!("conntrack dump failed: {e}");
                }
                last_dump = Instant::now();
                dump_now = false;
            }
            if stopping {
                if events_before.as_deref() == Some("2") {
                    let _ = std::fs::write(EVENTS, "2");
                }
                break;
            }
            match events.recv(Duration::from_millis(200)) {
                Ok(batch) => {
                    dump_now = batch.overrun;
                    for ev in &batch.events {
                        if let Some(a) = ct_account(&ev.entry, true) {
                            send(a, &inboxes);
                        }
                    }
                }
                Err(e) => {
                    log::debug!("conntrack events: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    })?)
}

fn send_record(tx: &Sender<Record>, ev: Event, dropped: &AtomicU64) {
    let Some(rec) = Record::from_event(ev) else { return };
    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(rec) {
        // The packet path never waits on output; a full queue is counted.
        dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn write_atomic_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    serde_json::to_writer_pretty(&mut f, value)?;
    f.write_all(b"\n")?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `vigil status`: prints the running engine's counters.
pub fn status(stats_file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(stats_file)
        .with_context(|| format!("cannot read {} (is vigil running?)", stats_file.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).context("stats file is not valid JSON")?;
    if let Some(pid) = v.get("pid").and_then(|p| p.as_u64()) {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("vigil (pid {pid}) is not running; last counters were:\n{text}");
        }
    }
    Ok(text)
}
