//! The `vigil` command line. Errors end here as `anyhow` reports; everything below is typed.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use vigil::config::{Config, DEFAULT_STATS_FILE};
use vigil::replay::{Format, RecordWriter};
use vigil::{demo, firewall, replay, run};

/// vigil: an open next-generation firewall engine for Linux gateways.
///
/// The kernel queues packets to vigil over NFQUEUE; vigil tracks each flow, applies your policy and
/// answers with a verdict. Decided flows are handed back to the kernel (connmark), so most packets
/// never leave it. If vigil stops or falls behind, traffic passes (--queue-bypass, fail-open).
#[derive(Parser)]
#[command(name = "vigil", version, about, long_about, propagate_version = true)]
struct Cli {
    /// Log level: error, warn, info, debug, trace (or set RUST_LOG).
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run inline: bind the queues, install the firewall rules, decide packets until SIGTERM.
    ///
    /// SIGHUP reloads the policy from the config file (a bad file is reported and the running
    /// policy stays). SIGTERM/SIGINT remove the rules, answer every queued packet and exit.
    Run {
        /// Config file (TOML). See `vigil check-config`.
        #[arg(long, short, default_value = "/etc/vigil/vigil.toml")]
        config: PathBuf,
    },
    /// Install, remove or show the iptables rules vigil owns (chains VIGIL_*).
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
    /// Validate a config file: syntax (with line and column), values and the policy.
    CheckConfig {
        /// Config file (TOML).
        file: PathBuf,
    },
    /// Run captures (pcap or pcapng) through the pipeline and print one record per flow.
    ///
    /// Use it to test a policy on recorded traffic before it goes live.
    Replay {
        /// Config file whose policy to apply (default: allow everything).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, short, value_enum, default_value = "table")]
        format: Format,
        /// Capture files (pcap or pcapng; Ethernet, raw IP, Linux cooked, loopback).
        #[arg(required = true)]
        pcaps: Vec<PathBuf>,
    },
    /// Build a three-namespace lab (client, gateway, server), run vigil inline on the gateway,
    /// drive real traffic through it, show what passed and what was blocked, and tear it down.
    ///
    /// Needs root. Touches nothing outside the namespaces it creates.
    Demo {
        /// Keep going after the summary until Ctrl-C, so you can explore the lab.
        #[arg(long)]
        hold: bool,
    },
    /// Try a policy on recorded traffic before it goes live.
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// List stored sessions, newest first (from the database in `[report] sqlite`).
    Sessions {
        #[command(flatten)]
        store: StoreWindow,
        /// Client address or network.
        #[arg(long)]
        client: Option<String>,
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        category: Option<String>,
        /// Exact name, or "*.example.com" for the domain and every name below.
        #[arg(long)]
        hostname: Option<String>,
        /// allow, block, reject, mark.
        #[arg(long)]
        verdict: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, short, value_enum, default_value = "table")]
        format: OutFormat,
    },
    /// Reports from the stored sessions: top applications, categories, clients, domains; blocks; DNS.
    Report {
        /// top-apps, top-categories, top-clients, top-domains, blocked, blocked-rules, dns.
        kind: ReportKind,
        #[command(flatten)]
        store: StoreWindow,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, short, value_enum, default_value = "table")]
        format: OutFormat,
    },
    /// Show the running engine's counters (from its stats file).
    Status {
        /// Stats file written by `vigil run` ([report] stats_file).
        #[arg(long, default_value = DEFAULT_STATS_FILE)]
        stats_file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportKind {
    TopApps,
    TopCategories,
    TopClients,
    TopDomains,
    Blocked,
    BlockedRules,
    Dns,
}

fn render<T: vigil_report::format::Tabular + serde::Serialize>(rows: &[T], format: OutFormat) -> String {
    match format {
        OutFormat::Table => vigil_report::format::format_table(rows),
        OutFormat::Csv => vigil_report::format::format_csv(rows),
        OutFormat::Json => vigil_report::format::format_jsonl(rows),
    }
}

/// The report database named by a config, opened read-only.
/// The report database (named by the config) and the time window of `vigil sessions` / `report`.
#[derive(clap::Args)]
struct StoreWindow {
    #[arg(long, short, default_value = "/etc/vigil/vigil.toml")]
    config: PathBuf,
    /// Start of the window: "24h", "7d", "30m" ago, or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    since: String,
    /// End of the window (default: now).
    #[arg(long)]
    until: Option<String>,
}

impl StoreWindow {
    /// The database in `[report] sqlite`, and the window as [since, until) in microseconds.
    fn open(&self) -> Result<(vigil_report::Reader, i64, i64)> {
        let cfg = Config::load(&self.config)?.config;
        let path = cfg.report.sqlite.with_context(|| {
            format!("{}: [report] sqlite is not set: vigil stores no sessions", self.config.display())
        })?;
        let db = vigil_report::Reader::open(&path)
            .with_context(|| format!("cannot open the report database {}", path.display()))?;
        let now = vigil_engine::Timestamp::now().micros() as i64;
        let since = vigil_report::parse_since(&self.since, now).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
        let until = match &self.until {
            Some(u) => vigil_report::parse_time(u, now).map_err(|e| anyhow::anyhow!("--until: {e}"))?,
            None => now,
        };
        Ok((db, since, until))
    }
}

#[derive(Subcommand)]
enum PolicyAction {
    /// What the policy would have done to the flows of these captures: each flow with its verdict
    /// and rule, then the totals by rule.
    Test {
        /// Config file whose policy (and lists, groups, signatures) to apply.
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, short, value_enum, default_value = "table")]
        format: Format,
        /// Capture files (pcap or pcapng).
        #[arg(required = true)]
        pcaps: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesAction {
    /// Install (or replace) vigil's rules atomically, as `vigil run` does at start.
    Install {
        #[arg(long, short, default_value = "/etc/vigil/vigil.toml")]
        config: PathBuf,
        #[arg(long, hide = true)]
        netns: Option<String>,
    },
    /// Remove every rule and chain vigil installed; leaves no trace.
    Remove {
        #[arg(long, hide = true)]
        netns: Option<String>,
    },
    /// Print vigil's chains and jump rules with their packet counters; with --config, also
    /// print the rules that config would install.
    Show {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long, hide = true)]
        netns: Option<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .parse_filters(&std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone()))
        .format_target(false)
        .init();
    if let Err(e) = dispatch(cli.command) {
        eprintln!("vigil: error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cmd: Command) -> Result<()> {
    match cmd {
        Command::Run { config } => run::run(run::RunOptions { config_path: config }),
        Command::CheckConfig { file } => {
            let vigil::config::Loaded { config: cfg, policy, sigdb } = Config::load(&file)?;
            println!(
                "{}: OK: queues {}, chains {:?}, {} rule(s), default {}, {} applications in {} categories",
                file.display(),
                cfg.engine.queues,
                cfg.firewall.chains,
                policy.rules.len(),
                policy.default.verdict_name(),
                sigdb.app_count(),
                sigdb.category_count()
            );
            Ok(())
        }
        Command::Rules { action } => match action {
            RulesAction::Install { config, netns } => {
                let cfg = Config::load(&config)?.config;
                let report = firewall::install(&run::firewall_spec(&cfg, netns))?;
                println!("{report}");
                Ok(())
            }
            RulesAction::Remove { netns } => {
                firewall::remove(netns.as_deref())?;
                println!("vigil's rules removed");
                Ok(())
            }
            RulesAction::Show { config, netns } => {
                if let Some(path) = config {
                    let cfg = Config::load(&path)?.config;
                    let spec = run::firewall_spec(&cfg, netns.clone());
                    for fam in spec.families() {
                        println!("# what `vigil rules install --config {}` applies ({fam}):", path.display());
                        println!("{}", firewall::render(&spec, fam));
                    }
                    println!("# installed now:");
                }
                print!("{}", firewall::show(netns.as_deref())?);
                Ok(())
            }
        },
        Command::Replay { config, format, pcaps } => {
            let (cfg, policy, sigdb) = match &config {
                Some(path) => {
                    let l = Config::load(path)?;
                    (l.config, l.policy, l.sigdb)
                }
                None => (Config::default(), Default::default(), Config::default().classify.load_signatures()?),
            };
            let sigdb = Arc::new(sigdb);
            let policy = Arc::new(policy);
            let flows = cfg.engine.flows.clone();
            let stdout = std::io::stdout().lock();
            let mut writer = RecordWriter::new(std::io::BufWriter::new(stdout), format);
            let mut failed = 0;
            for path in &pcaps {
                // Each capture is its own world: fresh caches per file.
                let dns = Arc::new(vigil_dpi::DnsCache::new(cfg.classify.dns_cache_entries));
                let related = Arc::new(vigil_dpi::RelatedFlows::new(cfg.classify.related_cache_entries));
                let classify = cfg.classify.classification(sigdb.clone(), dns, related);
                let res = replay::replay_file(path, policy.clone(), flows.clone(), classify, &mut |r| writer.write(r));
                match res {
                    Ok(s) => log::info!(
                        "{}: {} packets, {} flows, {} dropped by policy, {} non-IP frames skipped",
                        path.display(),
                        s.packets,
                        s.flows,
                        s.dropped,
                        s.skipped_frames
                    ),
                    Err(e) => {
                        failed += 1;
                        log::error!("{e:#}");
                    }
                }
            }
            writer.finish().context("writing output")?;
            if failed > 0 {
                bail!("{failed} of {} capture(s) could not be read completely (flows read before the damage were printed)", pcaps.len());
            }
            Ok(())
        }
        Command::Policy { action: PolicyAction::Test { config, format, pcaps } } => {
            let l = Config::load(&config)?;
            let sigdb = Arc::new(l.sigdb);
            let policy = Arc::new(l.policy);
            let mut totals: std::collections::BTreeMap<(String, String), [u64; 3]> = Default::default();
            let stdout = std::io::stdout().lock();
            let mut writer = RecordWriter::new(std::io::BufWriter::new(stdout), format);
            for path in &pcaps {
                let dns = Arc::new(vigil_dpi::DnsCache::new(l.config.classify.dns_cache_entries));
                let related = Arc::new(vigil_dpi::RelatedFlows::new(l.config.classify.related_cache_entries));
                let classify = l.config.classify.classification(sigdb.clone(), dns, related);
                replay::replay_file(path, policy.clone(), l.config.engine.flows.clone(), classify, &mut |r| {
                    let key = (r.rule.as_deref().unwrap_or("(default)").to_string(), r.verdict.to_string());
                    let t = totals.entry(key).or_default();
                    t[0] += 1;
                    t[1] += r.packets_c2s + r.packets_s2c;
                    t[2] += r.bytes_c2s + r.bytes_s2c;
                    writer.write(r)
                })?;
            }
            let mut out = writer.finish()?;
            use std::io::Write;
            match format {
                Format::Table => {
                    writeln!(
                        out,
                        "\n{:<24} {:<10} {:>8} {:>10} {:>14}",
                        "RULE", "VERDICT", "FLOWS", "PACKETS", "BYTES"
                    )?;
                    for ((rule, verdict), [f, p, b]) in &totals {
                        writeln!(out, "{rule:<24} {verdict:<10} {f:>8} {p:>10} {b:>14}")?;
                    }
                }
                Format::Jsonl => {
                    for ((rule, verdict), [f, p, b]) in &totals {
                        let v = serde_json::json!({"summary": "rule", "rule": rule, "verdict": verdict, "flows": f, "packets": p, "bytes": b});
                        writeln!(out, "{v}")?;
                    }
                }
            }
            Ok(())
        }
        Command::Sessions { store, client, app, category, hostname, verdict, limit, format } => {
            let (db, since, until) = store.open()?;
            let client = client.map(|c| c.parse()).transpose().map_err(|e| anyhow::anyhow!("--client: {e}"))?;
            let f = vigil_report::SessionFilter {
                since: Some(since),
                until: Some(until),
                client,
                app,
                category,
                hostname,
                verdict,
                limit,
            };
            print!("{}", render(&db.sessions(&f)?, format));
            Ok(())
        }
        Command::Report { kind, store, limit, format } => {
            let (db, since, until) = store.open()?;
            use vigil_report::Dim;
            let out = match kind {
                ReportKind::TopApps => render(&db.top(Dim::Apps, since, until, limit)?, format),
                ReportKind::TopCategories => render(&db.top(Dim::Categories, since, until, limit)?, format),
                ReportKind::TopClients => render(&db.top(Dim::Clients, since, until, limit)?, format),
                ReportKind::TopDomains => render(&db.top(Dim::Domains, since, until, limit)?, format),
                ReportKind::Blocked => render(&db.blocked(since, until, limit)?, format),
                ReportKind::BlockedRules => render(&db.blocked_by_rule(since, until, limit)?, format),
                ReportKind::Dns => {
                    let f =
                        vigil_report::DnsFilter { since: Some(since), until: Some(until), limit, ..Default::default() };
                    render(&db.dns(&f)?, format)
                }
            };
            print!("{out}");
            Ok(())
        }
        Command::Demo { hold } => demo::run(hold),
        Command::Status { stats_file } => {
            print!("{}", run::status(&stats_file)?);
            Ok(())
        }
    }
}
