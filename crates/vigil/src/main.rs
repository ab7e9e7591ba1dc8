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
    /// Show the running engine's counters (from its stats file).
    Status {
        /// Stats file written by `vigil run` ([report] stats_file).
        #[arg(long, default_value = DEFAULT_STATS_FILE)]
        stats_file: PathBuf,
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
            let (cfg, policy) = Config::load(&file)?;
            let sigdb = cfg.classify.load_signatures()?;
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
                let (cfg, _) = Config::load(&config)?;
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
                    let (cfg, _) = Config::load(&path)?;
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
            let (cfg, policy) = match &config {
                Some(path) => Config::load(path)?,
                None => (Config::default(), Default::default()),
            };
            let sigdb = Arc::new(cfg.classify.load_signatures()?);
            let policy = Arc::new(policy);
            let flows = cfg.engine.flows.clone();
            let stdout = std::io::stdout().lock();
            let mut writer = RecordWriter::new(std::io::BufWriter::new(stdout), format);
            let mut failed = 0;
            for path in &pcaps {
                // Each capture is its own world: a fresh DNS cache per file.
                let dns = Arc::new(vigil_dpi::DnsCache::new(cfg.classify.dns_cache_entries));
                let classify = cfg.classify.classification(sigdb.clone(), dns);
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
        Command::Demo { hold } => demo::run(hold),
        Command::Status { stats_file } => {
            print!("{}", run::status(&stats_file)?);
            Ok(())
        }
    }
}
