//! `vigil replay`: the pcap shell around the same pipeline the inline engine runs.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use vigil_capture::CaptureReader;
use vigil_engine::pipeline::{Classification, PipelineConfig};
use vigil_engine::{Action, EndReason, Event, FlowRecord, FlowTableConfig, PacketMeta, Pipeline, Policy, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON object per flow (stable field names: proto, src, sport, dst, dport, protocol, app,
    /// category, hostname, ja4, packets_c2s, packets_s2c, bytes_c2s, bytes_s2c, first_seen,
    /// last_seen, verdict, rule, ...).
    Jsonl,
}

/// Totals of one replay.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplaySummary {
    pub packets: u64,
    pub flows: u64,
    pub accepted: u64,
    pub dropped: u64,
    pub malformed: u64,
    pub skipped_frames: u64,
}

/// Runs one capture through a fresh pipeline; every flow record goes to `sink` (ended flows as
/// they end, the rest at the end of the capture). A damaged file still yields the flows read
/// before the damage, then the error.
pub fn replay_file(
    path: &Path,
    policy: Arc<Policy>,
    flows: FlowTableConfig,
    classify: Option<Classification>,
    sink: &mut dyn FnMut(FlowRecord) -> Result<()>,
) -> Result<ReplaySummary> {
    let mut reader = CaptureReader::open(path).with_context(|| format!("cannot read capture {}", path.display()))?;
    let mut pipeline = Pipeline::new(PipelineConfig { flows, offload: false, classify, ..Default::default() }, policy);
    let meta = PacketMeta::default();
    let mut summary = ReplaySummary::default();
    let mut last_poll = 0u64;
    let mut failure = None;
    while let Some(next) = reader.next_packet() {
        let pkt = match next {
            Ok(p) => p,
            Err(e) => {
                failure = Some(anyhow::Error::new(e).context(format!("{}: capture is damaged", path.display())));
                break;
            }
        };
        let now = Timestamp::from_micros(pkt.ts_micros);
        summary.packets += 1;
        match pipeline.process(pkt.l3.bytes(), &meta, now).action {
            // Offline nothing is held: a held packet would have passed or been dropped later.
            Action::Accept | Action::Hold => summary.accepted += 1,
            Action::Drop => summary.dropped += 1,
        }
        // Expire in capture time, so a long capture splits reused ports into separate flows.
        if pkt.ts_micros.saturating_sub(last_poll) >= 1_000_000 {
            pipeline.poll(now);
            last_poll = pkt.ts_micros;
        }
        emit(&mut pipeline, &mut summary, sink)?;
    }
    pipeline.finish(EndReason::Shutdown);
    emit(&mut pipeline, &mut summary, sink)?;
    let st = reader.stats();
    summary.skipped_frames = st.packets - st.ip_packets;
    summary.malformed = pipeline.stats().malformed;
    match failure {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

fn emit(p: &mut Pipeline, s: &mut ReplaySummary, sink: &mut dyn FnMut(FlowRecord) -> Result<()>) -> Result<()> {
    for ev in p.drain_events() {
        match ev {
            Event::FlowEnd(rec) => {
                s.flows += 1;
                sink(*rec)?;
            }
            // Offline there is no kernel state to revoke; replay reports sessions only.
            Event::Revoke(_) | Event::FlowUpdate(_) | Event::Dns(_) | Event::Block(_) | Event::Release { .. } => {}
        }
    }
    Ok(())
}

/// Writes records in the chosen format. Table output is buffered to align columns.
pub struct RecordWriter<W: Write> {
    out: W,
    format: Format,
    rows: Vec<FlowRecord>,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(out: W, format: Format) -> Self {
        RecordWriter { out, format, rows: Vec::new() }
    }

    pub fn write(&mut self, rec: FlowRecord) -> Result<()> {
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, &rec)?;
                self.out.write_all(b"\n")?;
            }
            Format::Table => self.rows.push(rec),
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<W> {
        if self.format == Format::Table {
            let mut rows = std::mem::take(&mut self.rows);
            rows.sort_by_key(|r| r.first_seen);
            write_table(&mut self.out, &rows)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn endpoint(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V6(_) => format!("[{ip}]:{port}"),
        std::net::IpAddr::V4(_) => format!("{ip}:{port}"),
    }
}

pub fn write_table(out: &mut dyn Write, rows: &[FlowRecord]) -> Result<()> {
    let header = ["PROTO", "CLIENT", "SERVER", "L7", "HOSTNAME", "PKTS C>S/S>C", "BYTES C>S/S>C", "VERDICT", "RULE"];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.proto.clone(),
                endpoint(r.src, r.sport),
                endpoint(r.dst, r.dport),
                // "?": guessed from the port, no payload confirmed it.
                format!(
                    "{}{}{}",
                    r.protocol,
                    if r.protocol_guessed { "?" } else { "" },
                    match &r.app {
                        Some(app) if **app != *r.protocol => format!("/{app}"),
                        _ => String::new(),
                    }
                ),
                r.hostname.as_deref().unwrap_or("-").to_string(),
                // "+": offloaded, the rest of the flow stayed in the kernel and is not counted here.
                format!("{}/{}{}", r.packets_c2s, r.packets_s2c, if r.offloaded { "+" } else { "" }),
                format!("{}/{}", r.bytes_c2s, r.bytes_s2c),
                r.verdict.to_string(),
                r.rule.as_deref().unwrap_or("-").to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, s) in widths.iter_mut().zip(c) {
            *w = (*w).max(s.len());
        }
    }
    let line = |out: &mut dyn Write, c: &[&str]| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, (cell, w)) in c.iter().zip(widths).enumerate() {
            if i + 1 == c.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, &header)?;
    for c in &cells {
        line(out, &c.each_ref().map(String::as_str))?;
    }
    Ok(())
}
