//! The output thread: every record the workers produce (sessions, interim updates, DNS answers,
//! blocks) fans out to the configured sinks: the flow log (JSON lines of finished sessions), the
//! SQLite store, EVE JSON and ClickHouse. Workers hand records over through a bounded channel and
//! never wait; each sink has its own bounded queue and counts what it had to drop.

use crate::config::ReportConfig;
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use vigil_sinks::Record;

/// Records each sink could not take (its queue was full), for the stats file.
#[derive(Debug, Default)]
pub struct OutputDrops {
    pub sqlite: AtomicU64,
    pub eve: AtomicU64,
    pub clickhouse: AtomicU64,
}

struct Sinks {
    flow_log: Option<std::io::BufWriter<std::fs::File>>,
    sqlite: Option<(vigil_report::SqliteSink, JoinHandle<()>)>,
    eve: Option<vigil_sinks::EveHandle>,
    clickhouse: Option<vigil_sinks::ClickHouseHandle>,
}

/// Opens every configured sink (an error names the sink: vigil does not start half-reporting).
fn open_sinks(cfg: &ReportConfig) -> Result<Sinks> {
    let flow_log = match &cfg.flow_log {
        Some(p) => {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).ok();
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open flow log {}", p.display()))?;
            Some(std::io::BufWriter::new(f))
        }
        None => None,
    };
    let sqlite = match &cfg.sqlite {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).ok();
            }
            let opts = vigil_report::SinkOptions {
                retention: vigil_report::Retention {
                    max_age_days: (cfg.retention_days > 0).then_some(cfg.retention_days),
                    max_share_of_disk: (cfg.max_disk_share > 0.0).then_some(cfg.max_disk_share),
                    ..Default::default()
                },
                ..Default::default()
            };
            Some(
                vigil_report::SqliteSink::open(path, opts)
                    .with_context(|| format!("cannot open the report database {}", path.display()))?,
            )
        }
        None => None,
    };
    let eve = match &cfg.eve {
        Some(p) => {
            let target =
                if p.as_os_str() == "-" { vigil_sinks::Target::Stdout } else { vigil_sinks::Target::File(p.clone()) };
            let writer = vigil_sinks::EveWriter::open(target)
                .with_context(|| format!("cannot open EVE output {}", p.display()))?;
            Some(vigil_sinks::EveSink::spawn(writer, 65_536).context("cannot start the EVE writer")?)
        }
        None => None,
    };
    let clickhouse = match &cfg.clickhouse {
        Some(ch) => {
            let password = match &ch.password_file {
                Some(f) => std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read [report.clickhouse] password_file {}", f.display()))?
                    .trim()
                    .to_string(),
                None => ch.password.clone(),
            };
            let gateway_id = ch.gateway_id.clone().unwrap_or_else(hostname);
            let config = vigil_sinks::ClickHouseConfig {
                url: ch.url.clone(),
                database: ch.database.clone(),
                user: ch.user.clone(),
                password,
                gateway_id,
                spool_dir: ch.spool_dir.clone(),
                spool_max_bytes: ch.spool_max_bytes,
                ..Default::default()
            };
            Some(vigil_sinks::ClickHouseSink::start(config).context("cannot start the ClickHouse sink")?)
        }
        None => None,
    };
    Ok(Sinks { flow_log, sqlite, eve, clickhouse })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "vigil".into())
}

/// Starts the output thread. It ends when every sender is gone, after flushing every sink.
pub fn spawn(cfg: &ReportConfig, rx: Receiver<Record>, drops: Arc<OutputDrops>) -> Result<JoinHandle<()>> {
    let mut sinks = open_sinks(cfg)?;
    Ok(std::thread::Builder::new().name("vigil-output".into()).spawn(move || {
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(rec) => dispatch(&mut sinks, rec, &drops),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(w) = sinks.flow_log.as_mut() {
                        let _ = w.flush();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        close(sinks);
    })?)
}

fn dispatch(s: &mut Sinks, rec: Record, drops: &OutputDrops) {
    if let (Some(w), Record::Flow(f)) = (s.flow_log.as_mut(), &rec) {
        if !f.interim && serde_json::to_writer(&mut *w, &**f).is_ok() {
            let _ = w.write_all(b"\n");
        }
    }
    if let Some((db, _)) = &s.sqlite {
        let ok = match &rec {
            Record::Flow(f) => db.try_send(vigil_report::SessionRow::from(&**f)),
            Record::Dns(d) => db.try_send(vigil_report::DnsRow::from(&**d)),
            Record::Block(b) => db.try_send(vigil_report::BlockRow::from(&**b)),
        };
        if !ok {
            drops.sqlite.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(eve) = &s.eve {
        if !eve.try_send(rec.clone()) {
            drops.eve.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(ch) = &s.clickhouse {
        if !ch.try_send(rec) {
            drops.clickhouse.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn close(s: Sinks) {
    if let Some(mut w) = s.flow_log {
        let _ = w.flush();
    }
    if let Some((db, thread)) = s.sqlite {
        if !db.flush_and_close() {
            log::error!("the report database did not confirm its last records");
        }
        let _ = thread.join();
    }
    if let Some(eve) = s.eve {
        if let Err(e) = eve.close() {
            log::error!("closing EVE output: {e}");
        }
    }
    if let Some(ch) = s.clickhouse {
        let st = ch.close();
        log::info!("ClickHouse sink closed: {st:?}");
    }
}

/// The EVE path from the config, for log messages.
pub fn describe(cfg: &ReportConfig) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(p) = &cfg.flow_log {
        v.push(format!("flow log {}", p.display()));
    }
    if let Some(p) = &cfg.sqlite {
        v.push(format!("sqlite {}", p.display()));
    }
    if let Some(p) = &cfg.eve {
        v.push(format!("eve {}", p.display()));
    }
    if let Some(c) = &cfg.clickhouse {
        v.push(format!("clickhouse {}", c.url));
    }
    v
}
