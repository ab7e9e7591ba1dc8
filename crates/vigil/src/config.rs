//! The configuration file (TOML). Every section and key has a default that suits a gateway, so an
//! empty file is a valid config: queue 0, FORWARD only, allow everything, offload on.
//!
//! Values are deserialized into checked types, so a mistake is reported by the parser with its
//! line and column; unknown keys are errors (a typo must not silently disable a rule).

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use vigil_engine::{FlowTableConfig, Policy, PolicyConfig};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub firewall: FirewallConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub report: ReportConfig,
    #[serde(default)]
    pub classify: ClassifyConfig,
    /// Named groups of clients: addresses, networks and MAC addresses (`groups = ["kids"]` in rules).
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    /// Named lists loaded from files: domains (plain, hosts-file or Adblock `||domain^` lines) or
    /// addresses (CIDR per line); `lists = ["ads"]` in rules. Relative paths are relative to the
    /// config file.
    #[serde(default)]
    pub lists: std::collections::BTreeMap<String, PathBuf>,
}

/// A config with everything it refers to loaded and compiled: what `vigil run` runs.
pub struct Loaded {
    pub config: Config,
    pub policy: Policy,
    pub sigdb: vigil_dpi::SignatureDb,
}

/// `[classify]`: naming flows (protocol, application, category, hostname).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyConfig {
    /// Off: policies and reports see addresses, ports and L4 only, and flows offload at once.
    pub enabled: bool,
    /// Packets of a flow offered to the dissectors before classification gives up.
    pub max_packets: u32,
    /// Addresses remembered from DNS answers (to name flows that carry no name of their own).
    pub dns_cache_entries: usize,
    /// What flows teach about other flows, remembered: data connections announced by FTP control
    /// connections, and the applications of call sockets (ICE/VoIP).
    pub related_cache_entries: usize,
    /// Extra signature files (same format as the shipped database, see docs/SIGNATURES.md); their
    /// applications and categories are added, and replace shipped ones of the same name.
    pub signatures: Vec<PathBuf>,
    /// Applications and categories written in the config itself (`[[classify.app]]`,
    /// `[[classify.category]]`), in the signature format; applied after the files.
    pub app: Vec<toml::Table>,
    pub category: Vec<toml::Table>,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        ClassifyConfig {
            enabled: true,
            max_packets: 32,
            dns_cache_entries: 65_536,
            related_cache_entries: vigil_dpi::related::DEFAULT_ENTRIES,
            signatures: Vec::new(),
            app: Vec::new(),
            category: Vec::new(),
        }
    }
}

impl ClassifyConfig {
    /// The shipped signature database plus the admin's files.
    pub fn load_signatures(&self) -> Result<vigil_dpi::SignatureDb, ConfigError> {
        let mut db = vigil_dpi::SignatureDb::builtin().map_err(|e| ConfigError::Invalid {
            path: PathBuf::from("(built-in signatures)"),
            message: e.to_string(),
        })?;
        for path in &self.signatures {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            let extra = vigil_dpi::SignatureDb::from_toml(&text, &path.display().to_string())
                .map_err(|e| ConfigError::Invalid { path: path.clone(), message: e.to_string() })?;
            db.merge(extra);
        }
        if !self.app.is_empty() || !self.category.is_empty() {
            #[derive(serde::Serialize)]
            struct Inline<'a> {
                category: &'a [toml::Table],
                app: &'a [toml::Table],
            }
            let origin = "the config's [[classify.app]] / [[classify.category]] entries";
            let invalid = |message: String| ConfigError::Invalid { path: PathBuf::from("[classify]"), message };
            let text = toml::to_string(&Inline { category: &self.category, app: &self.app })
                .map_err(|e| invalid(format!("{origin}: {e}")))?;
            db.merge_toml(&text, origin).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(db)
    }

    /// The pipeline's classification settings (fresh caches are made by the caller, which decides
    /// how long they live: the runtime's survive reloads, replay makes new ones per capture).
    pub fn classification(
        &self,
        sigdb: std::sync::Arc<vigil_dpi::SignatureDb>,
        dns_cache: std::sync::Arc<vigil_dpi::DnsCache>,
        related: std::sync::Arc<vigil_dpi::RelatedFlows>,
    ) -> Option<vigil_engine::pipeline::Classification> {
        self.enabled.then(|| vigil_engine::pipeline::Classification {
            sigdb,
            dns_cache,
            related,
            config: vigil_dpi::ClassifierConfig { max_packets: self.max_packets.max(1) },
        })
    }
}

/// `[engine]`: how vigil talks to the kernel's queues.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// NFQUEUE numbers: `0`, `"3"` or `"0-3"`. One worker thread per queue.
    pub queues: QueueRange,
    /// Bytes of each packet copied to vigil (the rest stays in the kernel).
    pub copy_range: u32,
    /// Packets the kernel holds per queue before it fails open.
    pub queue_maxlen: u32,
    /// Let the kernel accept packets when the queue is full instead of dropping them.
    pub fail_open: bool,
    /// Receive GSO super-packets unsegmented (the difference between 0.1x and 0.8x throughput).
    pub gso: bool,
    /// Socket receive buffer per queue, bytes.
    pub rcvbuf: usize,
    /// Hand decided flows back to the kernel (connmark), so the rest of each flow never leaves it.
    pub offload: bool,
    /// Hold the payload packets of flows whose policy decision waits for classification, instead
    /// of passing them (the server then sees nothing of a flow that ends up blocked).
    pub hold_undecided: bool,
    /// How long a held packet waits for its flow's decision before it passes (fail open), ms.
    pub hold_timeout_ms: u64,
    pub flows: FlowTableConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            queues: QueueRange { first: 0, last: 0 },
            copy_range: 0xffff,
            queue_maxlen: 4096,
            fail_open: true,
            gso: true,
            rcvbuf: 8 << 20,
            offload: true,
            hold_undecided: false,
            hold_timeout_ms: 1000,
            flows: FlowTableConfig::default(),
        }
    }
}

/// A range of 16-bit queue numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRange {
    pub first: u16,
    pub last: u16,
}

impl QueueRange {
    pub fn iter(self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }
    pub fn len(self) -> usize {
        usize::from(self.last - self.first) + 1
    }
    pub fn is_empty(self) -> bool {
        false
    }
}

impl std::fmt::Display for QueueRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl std::str::FromStr for QueueRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |t: &str| {
            t.trim()
                .parse::<u16>()
                .map_err(|_| format!("`{t}` is not a queue number (0-65535); write queues as 0, \"3\" or \"0-3\""))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(s)?, num(s)?),
        };
        if first > last {
            return Err(format!("queue range `{s}` is backwards"));
        }
        if last - first >= 1024 {
            return Err(format!("queue range `{s}` has more than 1024 queues (one thread each)"));
        }
        Ok(QueueRange { first, last })
    }
}

impl<'de> Deserialize<'de> for QueueRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => u16::try_from(n)
                .map(|q| QueueRange { first: q, last: q })
                .map_err(|_| de::Error::custom(format!("queue {n} is outside 0-65535"))),
            Raw::Text(s) => s.parse().map_err(de::Error::custom),
        }
    }
}

/// `[firewall]`: the iptables rules vigil installs (see `vigil rules show`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FirewallConfig {
    /// Install the rules at start and remove them at exit. Off: you manage the rules yourself.
    pub manage: bool,
    /// Hooks whose traffic goes through vigil: "forward" (a gateway), "input", "output".
    pub chains: Vec<Chain>,
    /// Only traffic arriving on these interfaces (empty: all).
    pub interfaces_in: Vec<String>,
    /// Only traffic leaving on these interfaces (empty: all).
    pub interfaces_out: Vec<String>,
    /// Queue only the first N packets of each connection (0: every packet).
    pub queue_packets: u32,
    /// The connmark bit(s) that mean "decided, keep in the kernel".
    #[serde(deserialize_with = "de_mark")]
    pub offload_mark: u32,
    pub ipv4: bool,
    pub ipv6: bool,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            manage: true,
            chains: vec![Chain::Forward],
            interfaces_in: Vec::new(),
            interfaces_out: Vec::new(),
            queue_packets: 32,
            offload_mark: 0x2000_0000,
            ipv4: true,
            ipv6: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    Forward,
    Input,
    Output,
}

/// A mark as a number or a string ("0x20000000").
fn de_mark<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    // The same syntax and checks as a policy rule's `mark`.
    vigil_engine::policy::Mark::deserialize(d).map(|m| m.0)
}

/// `[report]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Report long sessions every this many seconds while they run (0: only when they end).
    pub interim_interval: u64,
    /// Session database (SQLite). Accepted now; written by the reports subsystem.
    pub sqlite: Option<PathBuf>,
    /// Append every finished flow as one JSON line (the `replay --format jsonl` fields).
    pub flow_log: Option<PathBuf>,
    /// Live counters, rewritten every second as JSON (read by `vigil status`).
    pub stats_file: Option<PathBuf>,
    /// EVE-style JSON lines (Suricata's format) for SIEM pipelines: a file path, or "-" for stdout.
    pub eve: Option<PathBuf>,
    /// Drop stored sessions, DNS and blocks older than this (days; 0 keeps everything).
    pub retention_days: u32,
    /// Keep the database under this share of its filesystem (0.10 = 10%; 0 = no cap).
    pub max_disk_share: f64,
    /// Stream records to ClickHouse (fleets of gateways).
    pub clickhouse: Option<ClickHouseReport>,
}

/// `[report.clickhouse]`.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseReport {
    /// The HTTP interface, e.g. "http://10.0.0.5:8123".
    pub url: String,
    #[serde(default = "default_ch_database")]
    pub database: String,
    #[serde(default)]
    pub user: String,
    /// Never logged. Prefer `password_file` to keep it out of the config.
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// This gateway's name on every row (default: the host name).
    #[serde(default)]
    pub gateway_id: Option<String>,
    /// Batches wait here while ClickHouse is unreachable, and are replayed in order.
    #[serde(default = "default_ch_spool")]
    pub spool_dir: PathBuf,
    /// Beyond this, the oldest spooled batches are dropped (counted and logged).
    #[serde(default = "default_ch_spool_max")]
    pub spool_max_bytes: u64,
}

fn default_ch_database() -> String {
    "vigil".into()
}
fn default_ch_spool() -> PathBuf {
    PathBuf::from("/var/lib/vigil/spool/clickhouse")
}
fn default_ch_spool_max() -> u64 {
    1 << 30
}

impl std::fmt::Debug for ClickHouseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseReport")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("gateway_id", &self.gateway_id)
            .field("spool_dir", &self.spool_dir)
            .finish_non_exhaustive()
    }
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            interim_interval: 300,
            sqlite: None,
            flow_log: None,
            stats_file: None,
            eve: None,
            retention_days: 90,
            max_disk_share: 0.10,
            clickhouse: None,
        }
    }
}

pub const DEFAULT_STATS_FILE: &str = "/run/vigil/stats.json";

/// A config error, formatted for a human: where and what.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Parses and validates; the policy is compiled here too so that a config that loads is one
    /// that runs.
    pub fn from_toml(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let cfg: Config = toml::from_str(text).map_err(|e| invalid(format_toml_error(&e, text)))?;
        cfg.validate().map_err(invalid)?;
        let sigdb = cfg.classify.load_signatures()?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut lists = std::collections::HashMap::new();
        for (name, file) in &cfg.lists {
            let file = if file.is_relative() { base.join(file) } else { file.clone() };
            let started = std::time::Instant::now();
            let (list, stats) =
                vigil_engine::policy::lists::load_list(&file).map_err(|e| invalid(format!("[lists] {name}: {e}")))?;
            log::info!("list {name}: {} entries from {} in {:?}", list.len(), file.display(), started.elapsed());
            if stats.skipped > 0 {
                log::warn!(
                    "list {name}: {} malformed line(s) skipped in {} (first: {:?})",
                    stats.skipped,
                    file.display(),
                    stats.first_skipped_lines
                );
            }
            lists.insert(name.clone(), std::sync::Arc::new(list));
        }
        let ctx = vigil_engine::policy::CompileContext { groups: &cfg.groups, lists: &lists, sigdb: Some(&sigdb) };
        let policy = Policy::compile_with(&cfg.policy, &ctx).map_err(|e| invalid(e.to_string()))?;
        Ok(Loaded { config: cfg, policy, sigdb })
    }

    /// Reads, validates and compiles a config and everything it refers to (signatures, lists).
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_toml(&text, path)
    }

    fn validate(&self) -> Result<(), String> {
        let fw = &self.firewall;
        if fw.chains.is_empty() {
            return Err("[firewall] chains is empty: name at least one of \"forward\", \"input\", \"output\"".into());
        }
        if !fw.ipv4 && !fw.ipv6 {
            return Err("[firewall] ipv4 and ipv6 are both false: vigil would see no traffic".into());
        }
        for name in fw.interfaces_in.iter().chain(&fw.interfaces_out) {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\t']) {
                return Err(format!("interface name `{name}` is not valid (1-15 characters, no spaces or slashes)"));
            }
        }
        let e = &self.engine;
        if e.copy_range < 128 {
            return Err(format!(
                "[engine] copy_range = {} is too small to see TCP/IP headers (use at least 128)",
                e.copy_range
            ));
        }
        if e.queue_maxlen == 0 {
            return Err("[engine] queue_maxlen must be at least 1".into());
        }
        if self.classify.dns_cache_entries == 0 {
            return Err("[classify] dns_cache_entries must be at least 1".into());
        }
        if self.classify.related_cache_entries == 0 {
            return Err("[classify] related_cache_entries must be at least 1".into());
        }
        if e.flows.max_flows == 0 {
            return Err("[engine.flows] max_flows must be at least 1".into());
        }
        Ok(())
    }
}

/// toml's message already says "line L, column C" and shows the line; keep it, one error per config.
fn format_toml_error(e: &toml::de::Error, text: &str) -> String {
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("line {line}, column {col}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("test.toml")).map(|l| l.config).map_err(|e| e.to_string())
    }

    #[test]
    fn the_issue_example_loads_as_is() {
        let cfg = parse(
            r#"
[engine]
queues = "0-1"

[firewall]
chains = ["forward"]

[[policy.rules]]
name = "no-telnet"
action = "block"
dst_ports = [23]

[report]
sqlite = "/var/lib/vigil/vigil.db"
"#,
        )
        .unwrap();
        assert_eq!(cfg.engine.queues, QueueRange { first: 0, last: 1 });
        assert_eq!(cfg.firewall.chains, vec![Chain::Forward]);
        assert_eq!(cfg.policy.rules.len(), 1);
        assert_eq!(cfg.report.sqlite.as_deref(), Some(Path::new("/var/lib/vigil/vigil.db")));
    }

    #[test]
    fn empty_config_has_gateway_defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.engine.queues.to_string(), "0");
        assert!(cfg.engine.fail_open && cfg.engine.gso && cfg.engine.offload && cfg.firewall.manage);
        assert_eq!(cfg.firewall.chains, vec![Chain::Forward]);
        assert_eq!(cfg.firewall.queue_packets, 32);
        assert_eq!(cfg.classify.related_cache_entries, vigil_dpi::related::DEFAULT_ENTRIES);
        let cfg = parse("[classify]\nrelated_cache_entries = 100\n").unwrap();
        assert_eq!(cfg.classify.related_cache_entries, 100);
        assert!(parse("[classify]\nrelated_cache_entries = 0\n").unwrap_err().contains("related_cache_entries"));
    }

    #[test]
    fn queues_accept_numbers_and_ranges() {
        assert_eq!(parse("[engine]\nqueues = 7").unwrap().engine.queues.to_string(), "7");
        assert_eq!(parse("[engine]\nqueues = \"65534-65535\"").unwrap().engine.queues.len(), 2);
        let e = parse("[engine]\nqueues = \"3-1\"").unwrap_err();
        assert!(e.contains("line 2, column 10") && e.contains("backwards"), "{e}");
        let e = parse("[engine]\nqueues = 70000").unwrap_err();
        assert!(e.contains("line 2") && e.contains("70000"), "{e}");
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = parse("[engine]\nqueues = \"0-1\"\nfail_opne = true\n").unwrap_err();
        assert!(e.starts_with("test.toml: line 3, column 1:") && e.contains("fail_opne"), "{e}");
        let e = parse("[firewall]\nchains = [\"prerouting\"]\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("prerouting"), "{e}");
        let e = parse("[firewall]\noffload_mark = \"0xzz\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("0xzz"), "{e}");
        let e = parse("[policy]\ndefault = \"allow\"\n[[policy.rules]]\nname = \"a\"\naction = \"block\"\n[[policy.rules]]\nname = \"a\"\naction = \"allow\"\n").unwrap_err();
        assert!(e.contains("`a`"), "{e}");
        let e = parse("[firewall]\nchains = []\n").unwrap_err();
        assert!(e.contains("chains is empty"), "{e}");
        let e = parse("[firewall]\ninterfaces_in = [\"a very long interface\"]\n").unwrap_err();
        assert!(e.contains("not valid"), "{e}");
    }

    #[test]
    fn admins_add_apps_and_categories_inline() {
        let cfg = parse(
            r#"
[[classify.category]]
name = "Homework"
description = "School tools"

[[classify.app]]
name = "SchoolPortal"
category = "Homework"
domains = ["school.example"]
"#,
        )
        .unwrap();
        let db = cfg.classify.load_signatures().unwrap();
        let builtin = vigil_dpi::SignatureDb::builtin().unwrap();
        assert_eq!(db.app_count(), builtin.app_count() + 1);
        let mut facts = vigil_dpi::Facts { protocol: Some("TLS"), ..Default::default() };
        facts.set_hostname("www.school.example", vigil_dpi::NameSource::Sni);
        let any = ("192.0.2.1".parse().unwrap(), 40000);
        db.classify(&mut facts, any, ("192.0.2.2".parse().unwrap(), 443), vigil_wire::L4Proto::Tcp);
        assert_eq!((facts.app.as_deref(), facts.category.as_deref()), (Some("SchoolPortal"), Some("Homework")));

        // A bad entry fails the whole config, at load (and so at reload: the old config stays).
        let e = parse("[[classify.app]]\nname = \"X\"\ncategory = \"NoSuchCategory\"\n").unwrap_err();
        assert!(e.contains("NoSuchCategory") && e.contains("classify"), "{e}");
    }

    #[test]
    fn marks_accept_hex_strings() {
        assert_eq!(parse("[firewall]\noffload_mark = \"0x100\"").unwrap().firewall.offload_mark, 0x100);
        assert_eq!(parse("[firewall]\noffload_mark = 4096").unwrap().firewall.offload_mark, 4096);
        assert!(parse("[firewall]\noffload_mark = 0").unwrap_err().contains("mark of 0"));
    }
}
