//! The netfilter rules vigil owns: the NFQUEUE hooks that hand packets to vigil and the connmark
//! rule that keeps a flow "offloaded" (decided, no longer queued) once vigil has marked it.
//!
//! # Layout
//!
//! For every selected hook (`forward`, `input`, `output`) and every family (IPv4 through
//! `iptables-restore`, IPv6 through `ip6tables-restore`) vigil installs:
//!
//! ```text
//! *mangle
//! :VIGIL_FORWARD - [0:0]
//! -A VIGIL_FORWARD -m connmark --mark 0x20000000/0x20000000 -j RETURN
//! -A VIGIL_FORWARD -m connbytes ! --connbytes 0:20 --connbytes-dir both --connbytes-mode packets -j RETURN
//! -A VIGIL_FORWARD -j NFQUEUE --queue-num 0 --queue-bypass
//! -A FORWARD -j VIGIL_FORWARD
//! COMMIT
//! *security
//! :VIGIL_SAVE_FORWARD - [0:0]
//! -A VIGIL_SAVE_FORWARD -m mark --mark 0x20000000/0x20000000 -j CONNMARK --save-mark --nfmask 0x20000000 --ctmask 0x20000000
//! -A FORWARD -j VIGIL_SAVE_FORWARD
//! COMMIT
//! ```
//!
//! * The queue rules live in **mangle**: an `NF_ACCEPT` verdict from the queue resumes at the next
//!   table of the same hook, so the admin's **filter** rules still apply to everything vigil accepts.
//!   The jump is *appended* to the built-in chain so the admin's own mangle rules (TCPMSS clamping,
//!   marks) run first.
//! * The connmark-saving rule lives in **security**, which runs after filter at the same hook: the
//!   packet mark vigil sets with its verdict is copied to the conntrack entry, and later packets of
//!   the flow skip the queue (first rule of `VIGIL_<HOOK>`).
//! * With `queue_packets = N > 0` only the first N packets of a connection (both directions counted
//!   together) are queued; this needs `net.netfilter.nf_conntrack_acct = 1`, which [`install`] sets
//!   (and [`remove`] restores).
//!
//! # Why iptables and not nft
//!
//! vigil always drives `iptables-restore`/`ip6tables-restore`, even where the native nft `queue`
//! statement exists. One backend works everywhere: with the nf_tables backend (`iptables-nft`,
//! which translates connmark/connbytes to native expressions and uses `nft_compat` for the
//! NFQUEUE target) and with the legacy x_tables backend alike, and on kernels built without
//! `nft_queue` (the native statement then fails with "No such file or directory" while the
//! iptables NFQUEUE target works). It also coexists with the admin's existing iptables ruleset,
//! which is what most gateways still run, and `iptables-restore --noflush` gives us atomic,
//! all-or-nothing transactions per family without touching other rules.
//!
//! # Atomicity
//!
//! Each family is installed by one `*tables-restore --noflush` run that first deletes any previous
//! vigil chains/jumps and then adds the new ones, so a re-install never duplicates rules. The tools
//! commit table by table (at each `COMMIT`), so when a run fails (or a later family fails), vigil
//! puts every family it touched back to the vigil rules it had before (and drops tables the
//! attempt created): the firewall is never half-applied.
//!
//! Everything named `VIGIL_*` in any table belongs to vigil: [`remove`] deletes every such chain and
//! every rule jumping to one, whatever the current configuration says.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::{Deserialize, Serialize};

/// Default bit vigil sets in the packet mark (and saves to the connmark) for offloaded flows.
pub const DEFAULT_OFFLOAD_MARK: u32 = 0x2000_0000;
/// Prefix of every chain vigil owns.
pub const CHAIN_PREFIX: &str = "VIGIL_";
/// Directory of the small state files written by [`install`] and consumed by [`remove`].
pub const STATE_DIR: &str = "/run/vigil";
const ACCT_SYSCTL: &str = "net.netfilter.nf_conntrack_acct";
/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Errors of the firewall module. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("`{tool}` not found in PATH (nor /usr/sbin, /sbin): install the iptables (and iproute2) package, or disable the family that needs it")]
    ToolMissing { tool: String },
    #[error("{family} ruleset rejected by {} (vigil's rules were rolled back to their previous state){}: {stderr}", family.restore_tool(), script_line.as_ref().map(|l| format!(" (failing line: `{l}`)")).unwrap_or_default())]
    Restore {
        family: Family,
        stderr: String,
        /// The line of the restore script named by the tool's "line N failed" message, if any.
        script_line: Option<String>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid firewall configuration: {0}")]
    InvalidSpec(String),
    #[error("`{command}` failed ({status}): {stderr} (is the network namespace present and are you root?)")]
    Command { command: String, status: String, stderr: String },
}

impl FirewallError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        FirewallError::Io { context: context.into(), source }
    }
}

pub type Result<T, E = FirewallError> = std::result::Result<T, E>;

/// Address family; each is installed with its own tool and transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// `iptables` / `ip6tables`.
    pub fn tool(self) -> &'static str {
        match self {
            Family::Ipv4 => "iptables",
            Family::Ipv6 => "ip6tables",
        }
    }
    pub fn restore_tool(self) -> &'static str {
        match self {
            Family::Ipv4 => "iptables-restore",
            Family::Ipv6 => "ip6tables-restore",
        }
    }
    pub fn save_tool(self) -> &'static str {
        match self {
            Family::Ipv4 => "iptables-save",
            Family::Ipv6 => "ip6tables-save",
        }
    }
    /// nft family of the tables iptables-nft creates.
    fn nft_family(self) -> &'static str {
        match self {
            Family::Ipv4 => "ip",
            Family::Ipv6 => "ip6",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        })
    }
}

/// Netfilter hook vigil queues from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Forward,
    Input,
    Output,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::Forward, Hook::Input, Hook::Output];

    /// Built-in chain name (`FORWARD`, ...).
    pub fn builtin_chain(self) -> &'static str {
        match self {
            Hook::Forward => "FORWARD",
            Hook::Input => "INPUT",
            Hook::Output => "OUTPUT",
        }
    }
    /// vigil's queue chain in mangle (`VIGIL_FORWARD`, ...).
    pub fn queue_chain(self) -> String {
        format!("{CHAIN_PREFIX}{}", self.builtin_chain())
    }
    /// vigil's connmark-saving chain in security (`VIGIL_SAVE_FORWARD`, ...).
    pub fn save_chain(self) -> String {
        format!("{CHAIN_PREFIX}SAVE_{}", self.builtin_chain())
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::Forward => "forward",
            Hook::Input => "input",
            Hook::Output => "output",
        })
    }
}

impl std::str::FromStr for Hook {
    type Err = FirewallError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "forward" => Ok(Hook::Forward),
            "input" => Ok(Hook::Input),
            "output" => Ok(Hook::Output),
            other => Err(FirewallError::InvalidSpec(format!(
                "unknown chain `{other}`: use \"forward\", \"input\" or \"output\""
            ))),
        }
    }
}

/// NFQUEUE numbers; one queue (`--queue-num`) when `first == last`, else `--queue-balance`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRange {
    pub first: u16,
    pub last: u16,
}

/// What vigil installs. Build with `FirewallSpec::default()` and change fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FirewallSpec {
    /// Hooks to queue from; default `[forward]`.
    pub chains: Vec<Hook>,
    /// Queue traffic entering through any of these interfaces (`-i`): forward and input hooks.
    /// Each interface gets its own jump rule. Empty (and `interfaces_out` empty) = all traffic.
    pub interfaces_in: Vec<String>,
    /// Queue traffic leaving through any of these interfaces (`-o`): forward and output hooks.
    /// On the forward hook the jumps of both lists add up (a packet matching either is queued).
    /// Note that `interfaces_in = ["lan0"]` alone queues only the lan0 -> other direction of a
    /// forwarded flow; list the interface in both lists to see the replies too.
    pub interfaces_out: Vec<String>,
    pub queues: QueueRange,
    /// Mark bit(s) meaning "offloaded: vigil has decided, keep this flow in the kernel".
    pub offload_mark: u32,
    /// Queue only the first N packets of each connection (both directions counted together,
    /// `connbytes`); 0 = queue every packet until vigil offloads the flow (the default: a flow
    /// vigil has not decided is never let through unseen).
    pub queue_packets: u32,
    pub ipv4: bool,
    pub ipv6: bool,
    /// `--queue-bypass` is not optional and this must stay `true`: without it every queued packet
    /// is dropped whenever vigil is not running (crash, restart, upgrade), which on an inline
    /// gateway cuts the whole network off. With it the gateway fails open to the admin's own
    /// filter rules, which still apply. (A full queue while vigil runs is handled by the NFQUEUE
    /// runtime's fail-open flag, not by this option.)
    pub bypass: bool,
    /// Run every command as `ip netns exec NS <cmd>` (tests, `vigil demo`).
    pub netns: Option<String>,
}

impl Default for FirewallSpec {
    fn default() -> Self {
        FirewallSpec {
            chains: vec![Hook::Forward],
            interfaces_in: Vec::new(),
            interfaces_out: Vec::new(),
            queues: QueueRange::default(),
            offload_mark: DEFAULT_OFFLOAD_MARK,
            queue_packets: 0,
            ipv4: true,
            ipv6: true,
            bypass: true,
            netns: None,
        }
    }
}

impl FirewallSpec {
    /// Families enabled in the spec, IPv4 first.
    pub fn families(&self) -> Vec<Family> {
        let mut v = Vec::new();
        if self.ipv4 {
            v.push(Family::Ipv4);
        }
        if self.ipv6 {
            v.push(Family::Ipv6);
        }
        v
    }

    /// Hooks in a stable order without duplicates.
    fn hooks(&self) -> Vec<Hook> {
        let set: BTreeSet<Hook> = self.chains.iter().copied().collect();
        set.into_iter().collect()
    }

    /// Checks the spec; every error says how to fix it.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(FirewallError::InvalidSpec(m));
        if self.chains.is_empty() {
            return bad("`chains` is empty: select at least one of \"forward\", \"input\", \"output\"".into());
        }
        if !self.ipv4 && !self.ipv6 {
            return bad("both ipv4 and ipv6 are disabled: enable at least one family".into());
        }
        if !self.bypass {
            return bad("`bypass` must be true: vigil always uses --queue-bypass so that traffic is not dropped while vigil is not running".into());
        }
        if self.offload_mark == 0 {
            return bad("`offload_mark` must be a nonzero mask (default 0x20000000)".into());
        }
        if self.queues.first > self.queues.last {
            return bad(format!(
                "queue range {}:{} is reversed: `first` must be <= `last`",
                self.queues.first, self.queues.last
            ));
        }
        let hooks = self.hooks();
        if hooks.contains(&Hook::Input) && !self.interfaces_out.is_empty() {
            return bad(format!(
                "the input hook has no output interface but interfaces_out = {:?}: drop \"input\" from `chains` or leave interfaces_out empty",
                self.interfaces_out
            ));
        }
        if hooks.contains(&Hook::Output) && !self.interfaces_in.is_empty() {
            return bad(format!(
                "the output hook has no input interface but interfaces_in = {:?}: drop \"output\" from `chains` or leave interfaces_in empty",
                self.interfaces_in
            ));
        }
        for name in self.interfaces_in.iter().chain(&self.interfaces_out) {
            validate_ifname(name)?;
        }
        if let Some(ns) = &self.netns {
            if ns.is_empty() || ns.contains('/') || ns.contains(char::is_whitespace) || ns == "." || ns == ".." {
                return bad(format!("netns `{ns}` is not a valid network namespace name"));
            }
        }
        Ok(())
    }
}

/// Interface names as the kernel accepts them (`dev_valid_name`), plus iptables' `+` wildcard.
fn validate_ifname(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > IFNAME_MAX {
        Some(format!("is {} bytes long, the kernel allows at most {IFNAME_MAX}", name.len()))
    } else if name == "." || name == ".." {
        Some("is reserved".into())
    } else if let Some(c) =
        name.chars().find(|c| *c == '/' || *c == ':' || *c == '!' || c.is_whitespace() || c.is_control())
    {
        Some(format!("contains {c:?}"))
    } else if name.starts_with('-') {
        Some("starts with '-'".into())
    } else {
        None
    };
    match problem {
        Some(p) => Err(FirewallError::InvalidSpec(format!(
            "interface name {name:?} {p}: use the name shown by `ip link` (a trailing '+' matches a prefix)"
        ))),
        None => Ok(()),
    }
}

/// The `(table, lines)` sections vigil installs for a family, without `*table`/`COMMIT`.
fn render_sections(spec: &FirewallSpec, _family: Family) -> Vec<(&'static str, Vec<String>)> {
    let mark = format!("{:#x}/{:#x}", spec.offload_mark, spec.offload_mark);
    let queue = if spec.queues.first == spec.queues.last {
        format!("--queue-num {}", spec.queues.first)
    } else {
        format!("--queue-balance {}:{}", spec.queues.first, spec.queues.last)
    };
    let hooks = spec.hooks();
    let mut mangle = Vec::new();
    let mut security = Vec::new();
    for hook in &hooks {
        mangle.push(format!(":{} - [0:0]", hook.queue_chain()));
        security.push(format!(":{} - [0:0]", hook.save_chain()));
    }
    for hook in &hooks {
        let chain = hook.queue_chain();
        mangle.push(format!("-A {chain} -m connmark --mark {mark} -j RETURN"));
        if spec.queue_packets > 0 {
            mangle.push(format!(
                "-A {chain} -m connbytes ! --connbytes 0:{} --connbytes-dir both --connbytes-mode packets -j RETURN",
                spec.queue_packets
            ));
        }
        mangle.push(format!("-A {chain} -j NFQUEUE {queue} --queue-bypass"));
        let builtin = hook.builtin_chain();
        let mut matches: Vec<String> = Vec::new();
        if *hook != Hook::Output {
            matches.extend(spec.interfaces_in.iter().map(|i| format!("-i {i} ")));
        }
        if *hook != Hook::Input {
            matches.extend(spec.interfaces_out.iter().map(|i| format!("-o {i} ")));
        }
        if matches.is_empty() {
            matches.push(String::new());
        }
        for m in matches {
            mangle.push(format!("-A {builtin} {m}-j {chain}"));
        }
        let save = hook.save_chain();
        security.push(format!(
            "-A {save} -m mark --mark {mark} -j CONNMARK --save-mark --nfmask {m:#x} --ctmask {m:#x}",
            m = spec.offload_mark
        ));
        security.push(format!("-A {builtin} -j {save}"));
    }
    vec![("mangle", mangle), ("security", security)]
}

/// The `iptables-restore --noflush` script installing `spec` for `family` (pure).
pub fn render(spec: &FirewallSpec, family: Family) -> String {
    join_sections(&render_sections(spec, family))
}

fn join_sections<S: AsRef<str>>(sections: &[(S, Vec<String>)]) -> String {
    let mut out = String::new();
    for (table, lines) in sections {
        if lines.is_empty() {
            continue;
        }
        out.push('*');
        out.push_str(table.as_ref());
        out.push('\n');
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// iptables-save parsing

/// One table of `iptables-save` output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SavedTable {
    name: String,
    /// `(chain, policy)`; policy is `-` for user chains.
    chains: Vec<(String, String)>,
    /// Rule lines (`-A CHAIN ...`) without the `[p:b] ` counter prefix.
    rules: Vec<String>,
    /// Rule lines as printed (with counters when saved with `-c`).
    raw_rules: Vec<String>,
}

fn parse_save(text: &str) -> Vec<SavedTable> {
    let mut tables = Vec::new();
    let mut cur: Option<SavedTable> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(name) = line.strip_prefix('*') {
            cur = Some(SavedTable { name: name.to_string(), ..Default::default() });
        } else if line == "COMMIT" {
            if let Some(t) = cur.take() {
                tables.push(t);
            }
        } else if let Some(t) = cur.as_mut() {
            if let Some(decl) = line.strip_prefix(':') {
                let mut it = decl.split_whitespace();
                if let (Some(c), Some(p)) = (it.next(), it.next()) {
                    t.chains.push((c.to_string(), p.to_string()));
                }
            } else {
                let rule = strip_counters(line);
                if rule.starts_with("-A ") {
                    t.rules.push(rule.to_string());
                    t.raw_rules.push(line.to_string());
                }
            }
        }
    }
    tables
}

fn strip_counters(line: &str) -> &str {
    if line.starts_with('[') {
        if let Some(end) = line.find("] ") {
            return &line[end + 2..];
        }
    }
    line
}

/// Chain of an `-A CHAIN ...` rule.
fn rule_chain(rule: &str) -> &str {
    rule.split_whitespace().nth(1).unwrap_or("")
}

/// Target of a rule when it is a jump/goto to a vigil chain.
fn rule_vigil_target(rule: &str) -> Option<&str> {
    let mut it = rule.split_whitespace();
    while let Some(tok) = it.next() {
        if matches!(tok, "-j" | "--jump" | "-g" | "--goto") {
            if let Some(t) = it.next() {
                if t.starts_with(CHAIN_PREFIX) {
                    return Some(t);
                }
            }
        }
    }
    None
}

fn is_vigil_chain(name: &str) -> bool {
    name.starts_with(CHAIN_PREFIX)
}

fn is_vigil_rule(rule: &str) -> bool {
    is_vigil_chain(rule_chain(rule)) || rule_vigil_target(rule).is_some()
}

/// Restore lines deleting every vigil chain and every jump to one in `table`.
fn removal_lines(table: &SavedTable) -> Vec<String> {
    let mut out = Vec::new();
    for rule in &table.rules {
        if !is_vigil_chain(rule_chain(rule)) && rule_vigil_target(rule).is_some() {
            out.push(format!("-D{}", &rule[2..]));
        }
    }
    let vigil: Vec<&str> = table.chains.iter().map(|(c, _)| c.as_str()).filter(|c| is_vigil_chain(c)).collect();
    out.extend(vigil.iter().map(|c| format!("-F {c}")));
    out.extend(vigil.iter().map(|c| format!("-X {c}")));
    out
}

/// Restore lines re-creating vigil's part of `table` as saved (for rollback).
fn snapshot_lines(table: &SavedTable) -> Vec<String> {
    let mut out: Vec<String> =
        table.chains.iter().filter(|(c, _)| is_vigil_chain(c)).map(|(c, _)| format!(":{c} - [0:0]")).collect();
    // Rules inside vigil chains first, then the jumps into them.
    out.extend(table.rules.iter().filter(|r| is_vigil_chain(rule_chain(r))).cloned());
    out.extend(
        table.rules.iter().filter(|r| !is_vigil_chain(rule_chain(r)) && rule_vigil_target(r).is_some()).cloned(),
    );
    out
}

/// True when a table holds nothing but its built-in chains with ACCEPT policy and no rules.
fn table_is_pristine(table: &SavedTable) -> bool {
    table.rules.is_empty() && table.chains.iter().all(|(_, p)| p == "ACCEPT")
}

/// Merges per-table line lists in order, tables of `first` first.
fn merge_sections(parts: Vec<Vec<(String, Vec<String>)>>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in parts {
        for (table, lines) in part {
            match out.iter_mut().find(|(t, _)| *t == table) {
                Some((_, l)) => l.extend(lines),
                None => out.push((table, lines)),
            }
        }
    }
    out.retain(|(_, l)| !l.is_empty());
    out
}

fn removal_sections(tables: &[SavedTable]) -> Vec<(String, Vec<String>)> {
    tables.iter().map(|t| (t.name.clone(), removal_lines(t))).filter(|(_, l)| !l.is_empty()).collect()
}

// ---------------------------------------------------------------------------------------------
// commands

/// Finds a program in PATH, falling back to the sbin directories (PATH of non-login shells often
/// lacks them).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn require_tool(name: &str) -> Result<PathBuf> {
    find_tool(name).ok_or_else(|| FirewallError::ToolMissing { tool: name.to_string() })
}

/// `program` as a command, run inside `netns` through `ip netns exec` when set.
fn tool_command(netns: Option<&str>, program: &str) -> Result<Command> {
    let prog = require_tool(program)?;
    Ok(match netns {
        Some(ns) => {
            let mut c = Command::new(require_tool("ip")?);
            c.args(["netns", "exec", ns]).arg(prog);
            c
        }
        None => Command::new(prog),
    })
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command with optional stdin, returning its output whatever the exit status.
fn run_raw(mut cmd: Command, stdin: Option<&str>) -> Result<Output> {
    let what = describe(&cmd);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| FirewallError::io(format!("cannot run `{what}`"), e))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        pipe.write_all(input.as_bytes()).map_err(|e| FirewallError::io(format!("cannot write to `{what}`"), e))?;
    }
    child.wait_with_output().map_err(|e| FirewallError::io(format!("waiting for `{what}`"), e))
}

/// Runs a command and fails unless it exits 0; returns stdout.
fn run_ok(cmd: Command) -> Result<String> {
    let what = describe(&cmd);
    let out = run_raw(cmd, None)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(FirewallError::Command {
            command: what,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn family_tools_present(family: Family) -> Option<&'static str> {
    [family.restore_tool(), family.save_tool()].into_iter().find(|t| find_tool(t).is_none())
}

fn save(netns: Option<&str>, family: Family, counters: bool) -> Result<String> {
    let mut cmd = tool_command(netns, family.save_tool())?;
    if counters {
        cmd.arg("-c");
    }
    run_ok(cmd)
}

fn restore(netns: Option<&str>, family: Family, script: &str) -> Result<()> {
    let mut cmd = tool_command(netns, family.restore_tool())?;
    cmd.arg("--noflush");
    log::debug!("{} script:\n{script}", family.restore_tool());
    let out = run_raw(cmd, Some(script))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let script_line = failing_line(&stderr).and_then(|n| script.lines().nth(n.checked_sub(1)?).map(str::to_string));
    Err(FirewallError::Restore { family, stderr, script_line })
}

/// Line number from "iptables-restore: line 5 failed".
fn failing_line(stderr: &str) -> Option<usize> {
    let idx = stderr.find("line ")?;
    let digits: String = stderr[idx + 5..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// nf_conntrack_acct and state

fn read_acct(netns: Option<&str>) -> Result<Option<String>> {
    let mut cmd = tool_command(netns, "sysctl")?;
    cmd.args(["-n", ACCT_SYSCTL]);
    let out = run_raw(cmd, None)?;
    if out.status.success() {
        Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_string()))
    } else {
        // nf_conntrack not loaded yet: the sysctl appears once a conntrack rule exists.
        Ok(None)
    }
}

fn write_acct(netns: Option<&str>, value: &str) -> Result<()> {
    let mut cmd = tool_command(netns, "sysctl")?;
    cmd.args(["-q", "-w", &format!("{ACCT_SYSCTL}={value}")]);
    run_ok(cmd).map(|_| ())
}

/// What [`install`] changed outside the rules, so that [`remove`] can undo it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    acct_prev: Option<String>,
    created_tables: BTreeMap<Family, BTreeSet<String>>,
}

/// The state file of the network namespace the rules live in. Keyed by the namespace's identity
/// (device and inode of its nsfs file), so `vigil run` inside a namespace and `vigil rules --netns`
/// from outside find the same file, and vigils in different namespaces never share one.
fn state_path(netns: Option<&str>) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let ns_file = match netns {
        Some(ns) => PathBuf::from("/var/run/netns").join(ns),
        None => PathBuf::from("/proc/self/ns/net"),
    };
    // (Comparing with /proc/1/ns/net to spot the initial namespace fails in some sandboxes, so every
    // namespace, the host's included, is named by its identity.)
    let name = match std::fs::metadata(&ns_file) {
        Ok(m) => format!("netns-{}-{}.state", m.dev(), m.ino()),
        // The namespace is gone (or /proc is unreadable): fall back to its name.
        Err(_) => format!("netns-{}.state", netns.unwrap_or("self")),
    };
    Path::new(STATE_DIR).join(name)
}

impl State {
    fn parse(text: &str) -> State {
        let mut st = State::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            match k.trim() {
                "nf_conntrack_acct_prev" => st.acct_prev = Some(v.trim().to_string()),
                k => {
                    for fam in Family::ALL {
                        if k == format!("created_tables_{}", fam.key()) {
                            st.created_tables.insert(
                                fam,
                                v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
                            );
                        }
                    }
                }
            }
        }
        st
    }

    fn render(&self) -> String {
        let mut s = String::from("# vigil firewall state: written by install, consumed by remove\n");
        if let Some(v) = &self.acct_prev {
            s.push_str(&format!("nf_conntrack_acct_prev={v}\n"));
        }
        for (fam, tables) in &self.created_tables {
            let list: Vec<&str> = tables.iter().map(String::as_str).collect();
            s.push_str(&format!("created_tables_{}={}\n", fam.key(), list.join(",")));
        }
        s
    }

    fn load(netns: Option<&str>) -> Result<Option<State>> {
        let path = state_path(netns);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(State::parse(&t))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FirewallError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Atomic write: temp file + fsync + rename.
    fn store(&self, netns: Option<&str>) -> Result<()> {
        let path = state_path(netns);
        let ctx = |e| FirewallError::io(format!("writing {}", path.display()), e);
        std::fs::create_dir_all(STATE_DIR).map_err(ctx)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp).map_err(ctx)?;
            f.write_all(self.render().as_bytes()).map_err(ctx)?;
            f.sync_all().map_err(ctx)?;
        }
        std::fs::rename(&tmp, &path).map_err(ctx)
    }

    fn delete(netns: Option<&str>) -> Result<()> {
        let path = state_path(netns);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FirewallError::io(format!("removing {}", path.display()), e)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// install / remove / show / detect

/// What [`install`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallReport {
    /// Families whose rules are now installed.
    pub families: Vec<Family>,
    /// Families skipped (with the reason) because their tool or table is missing.
    pub skipped: Vec<(Family, String)>,
    /// True when vigil rules were already present and got replaced (re-install).
    pub replaced_existing: bool,
    /// `nf_conntrack_acct` change as `(before, after)`, when install wrote it.
    pub conntrack_acct: Option<(String, String)>,
    /// Human-readable list of every change, for logs.
    pub changes: Vec<String>,
}

impl fmt::Display for InstallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        for (fam, why) in &self.skipped {
            writeln!(f, "{fam} skipped: {why}")?;
        }
        Ok(())
    }
}

/// Installs (or re-installs) vigil's rules. Idempotent: existing `VIGIL_*` chains and jumps are
/// removed in the same `iptables-restore --noflush` run that adds the new ones, so a second
/// install leaves exactly one copy. If any family fails, every family touched (including the
/// failing one, whose earlier tables were already committed) is rolled back to its previous vigil
/// rules, so the firewall is never half-applied, and the error is returned.
pub fn install(spec: &FirewallSpec) -> Result<InstallReport> {
    install_inner(spec, None)
}

/// Test hook: like [`install`] but appends an invalid rule to `fail`'s script, so that its real
/// `*tables-restore` rejects it and the rollback path runs.
#[doc(hidden)]
pub fn install_with_injected_failure(spec: &FirewallSpec, fail: Family) -> Result<InstallReport> {
    install_inner(spec, Some(fail))
}

fn install_inner(spec: &FirewallSpec, inject: Option<Family>) -> Result<InstallReport> {
    spec.validate()?;
    let netns = spec.netns.as_deref();
    if netns.is_some() {
        require_tool("ip")?;
    }
    let mut report = InstallReport::default();

    // Families we can do.
    let mut families = Vec::new();
    for fam in spec.families() {
        if let Some(tool) = family_tools_present(fam) {
            log::warn!("{fam}: `{tool}` not found, skipping {fam} rules");
            report.skipped.push((fam, format!("`{tool}` not found")));
            continue;
        }
        match save(netns, fam, false) {
            Ok(text) => families.push((fam, parse_save(&text))),
            Err(e) => {
                if netns.is_some() && matches!(e, FirewallError::Command { .. }) && fam == Family::Ipv4 {
                    return Err(e); // most likely the namespace is missing: not a family problem
                }
                log::warn!("{fam}: cannot read the current ruleset ({e}), skipping {fam} rules");
                report.skipped.push((fam, e.to_string()));
            }
        }
    }
    if families.is_empty() {
        return Err(match report.skipped.first() {
            Some((fam, _)) => FirewallError::ToolMissing { tool: fam.restore_tool().to_string() },
            None => FirewallError::InvalidSpec("no family enabled".into()),
        });
    }

    let mut state = State::load(netns)?.unwrap_or_default();
    let had_state = state != State::default();

    // nf_conntrack_acct before the rules so that connections are counted from their first packet.
    let mut acct_written_now: Option<String> = None;
    let mut acct_pending = false;
    if spec.queue_packets > 0 {
        match read_acct(netns)? {
            Some(prev) if prev != "1" => {
                write_acct(netns, "1")?;
                acct_written_now = Some(prev);
            }
            Some(_) => {}
            None => acct_pending = true,
        }
    }

    let mut done: Vec<(Family, Vec<SavedTable>)> = Vec::new();
    for (fam, before) in &families {
        let mut sections = merge_sections(vec![
            removal_sections(before),
            render_sections(spec, *fam).into_iter().map(|(t, l)| (t.to_string(), l)).collect(),
        ]);
        if inject == Some(*fam) {
            if let Some((_, lines)) = sections.last_mut() {
                lines.push("-A VIGIL_INJECTED_FAILURE -j ACCEPT".to_string());
            }
        }
        let script = join_sections(&sections);
        if let Err(e) = restore(netns, *fam, &script) {
            // `*tables-restore` commits table by table (each COMMIT), so a failure in a later
            // table leaves the earlier tables applied: roll the failed family back as well.
            let failed = (*fam, before.clone());
            for (done_fam, done_before) in done.iter().chain(std::iter::once(&failed)).rev() {
                if let Err(re) = rollback(netns, *done_fam, done_before) {
                    log::error!("{done_fam}: rollback after failed {fam} install failed too: {re}");
                }
            }
            if let Some(prev) = &acct_written_now {
                if let Err(re) = write_acct(netns, prev) {
                    log::error!("cannot restore {ACCT_SYSCTL}={prev}: {re}");
                }
            }
            return Err(e);
        }
        if before.iter().any(|t| !removal_lines(t).is_empty()) {
            report.replaced_existing = true;
        }
        // Tables this install brought into existence (removed again by `remove` when empty).
        let existing: BTreeSet<&str> = before.iter().map(|t| t.name.as_str()).collect();
        for (table, _) in render_sections(spec, *fam) {
            if !existing.contains(table) {
                state.created_tables.entry(*fam).or_default().insert(table.to_string());
                report.changes.push(format!("{fam}: created table {table}"));
            }
        }
        report.changes.push(format!(
            "{fam}: {} vigil rules ({} hooks: {})",
            if report.replaced_existing { "replaced" } else { "installed" },
            spec.hooks().len(),
            spec.hooks().iter().map(Hook::to_string).collect::<Vec<_>>().join(",")
        ));
        report.families.push(*fam);
        done.push((*fam, before.clone()));
    }

    if acct_pending {
        // The connbytes rule loaded nf_conntrack; the sysctl exists now.
        if let Some(prev) = read_acct(netns)? {
            if prev != "1" {
                write_acct(netns, "1")?;
                acct_written_now = Some(prev);
            }
        } else {
            log::warn!("{ACCT_SYSCTL} not available: queue_packets (connbytes) will not limit queueing");
        }
    }
    if let Some(prev) = &acct_written_now {
        report.conntrack_acct = Some((prev.clone(), "1".into()));
        report.changes.push(format!("{ACCT_SYSCTL}: {prev} -> 1 (restored by remove)"));
        if state.acct_prev.is_none() {
            state.acct_prev = Some(prev.clone());
        }
    } else if spec.queue_packets == 0 {
        // Re-install without connbytes: give back the sysctl we changed earlier.
        if let Some(prev) = state.acct_prev.take() {
            write_acct(netns, &prev)?;
            report.changes.push(format!("{ACCT_SYSCTL}: restored to {prev} (queue_packets = 0)"));
        }
    }
    if state != State::default() {
        state.store(netns)?;
    } else if had_state {
        State::delete(netns)?;
    }
    Ok(report)
}

/// Puts a family's vigil rules back to the `before` snapshot.
fn rollback(netns: Option<&str>, family: Family, before: &[SavedTable]) -> Result<()> {
    let now = parse_save(&save(netns, family, false)?);
    let restore_part: Vec<(String, Vec<String>)> = before.iter().map(|t| (t.name.clone(), snapshot_lines(t))).collect();
    let script = join_sections(&merge_sections(vec![removal_sections(&now), restore_part]));
    if !script.is_empty() {
        restore(netns, family, &script)?;
    }
    // Tables the failed install brought into existence go too.
    let existed: BTreeSet<String> = before.iter().map(|t| t.name.clone()).collect();
    let created: BTreeSet<String> = now.iter().map(|t| t.name.clone()).filter(|t| !existed.contains(t)).collect();
    drop_created_tables(netns, family, &created)?;
    log::warn!("{family}: rolled back to the previous vigil rules");
    Ok(())
}

/// Removes every `VIGIL_*` chain and every rule jumping to one, in every table of both families,
/// whatever configuration installed them; then deletes tables that install created and that are
/// now empty (nf_tables backend), and restores `nf_conntrack_acct` when install changed it.
/// Nothing installed is a no-op success.
pub fn remove(netns: Option<&str>) -> Result<()> {
    if let Some(ns) = netns {
        require_tool("ip")?;
        if !Path::new("/run/netns").join(ns).exists() {
            // The rules and the sysctl died with the namespace; only our state file is left.
            log::info!("network namespace {ns} does not exist: nothing to remove");
            return State::delete(netns);
        }
    }
    let state = State::load(netns)?;
    let mut first_err = None;
    for fam in Family::ALL {
        if family_tools_present(fam).is_some() {
            continue; // no tool: nothing of ours can be there
        }
        let res = (|| -> Result<()> {
            let tables = parse_save(&save(netns, fam, false)?);
            let sections = removal_sections(&tables);
            if !sections.is_empty() {
                restore(netns, fam, &join_sections(&sections))?;
                log::info!("{fam}: vigil rules removed");
            }
            if let Some(created) = state.as_ref().and_then(|s| s.created_tables.get(&fam)) {
                drop_created_tables(netns, fam, created)?;
            }
            Ok(())
        })();
        if let Err(e) = res {
            log::error!("{fam}: {e}");
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e); // keep the state file: a retry still knows what to restore
    }
    if let Some(prev) = state.as_ref().and_then(|s| s.acct_prev.as_deref()) {
        write_acct(netns, prev)?;
        log::info!("{ACCT_SYSCTL} restored to {prev}");
    }
    if state.is_some() {
        State::delete(netns)?;
    }
    Ok(())
}

fn drop_created_tables(netns: Option<&str>, fam: Family, created: &BTreeSet<String>) -> Result<()> {
    if detect_backend(netns, fam) != Some(Backend::Nft) || find_tool("nft").is_none() {
        return Ok(()); // legacy tables are kernel modules: nothing to delete
    }
    let tables = parse_save(&save(netns, fam, false)?);
    for t in tables.iter().filter(|t| created.contains(&t.name)) {
        if !table_is_pristine(t) {
            log::info!("{fam}: table {} is in use by other rules now, leaving it", t.name);
            continue;
        }
        let mut cmd = tool_command(netns, "nft")?;
        cmd.args(["delete", "table", fam.nft_family(), &t.name]);
        if let Err(e) = run_ok(cmd) {
            log::warn!("{fam}: could not delete empty table {}: {e}", t.name);
        }
    }
    Ok(())
}

/// vigil's chains and jumps as `iptables-save -c` prints them (`[packets:bytes] -A ...`), per
/// family, for the admin to read.
pub fn show(netns: Option<&str>) -> Result<String> {
    let mut out = String::new();
    for fam in Family::ALL {
        out.push_str(&format!("# {fam} ({} -c)\n", fam.save_tool()));
        if let Some(tool) = family_tools_present(fam) {
            out.push_str(&format!("# `{tool}` not found\n"));
            continue;
        }
        let tables = parse_save(&save(netns, fam, true)?);
        let mut any = false;
        for t in &tables {
            let chains: Vec<&(String, String)> = t.chains.iter().filter(|(c, _)| is_vigil_chain(c)).collect();
            let rules: Vec<&String> = t.raw_rules.iter().filter(|r| is_vigil_rule(strip_counters(r))).collect();
            if chains.is_empty() && rules.is_empty() {
                continue;
            }
            any = true;
            out.push_str(&format!("*{}\n", t.name));
            for (c, p) in chains {
                out.push_str(&format!(":{c} {p}\n"));
            }
            for r in rules {
                out.push_str(r);
                out.push('\n');
            }
            out.push_str("COMMIT\n");
        }
        if !any {
            out.push_str("# no vigil rules installed\n");
        }
    }
    Ok(out)
}

/// Which x_tables implementation `iptables` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backend {
    /// `iptables-nft`: rules are nf_tables rules (`nft list ruleset` shows them).
    Nft,
    /// `iptables-legacy`: classic x_tables.
    Legacy,
}

/// What this kernel and userland support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `None` when iptables is missing.
    pub iptables: Option<Backend>,
    pub ip6tables: bool,
    /// Native nft `queue` statement (nft_queue); vigil does not need it.
    pub nft_queue: bool,
    /// connbytes matching (needed for `queue_packets > 0`).
    pub connbytes: bool,
}

fn detect_backend(netns: Option<&str>, fam: Family) -> Option<Backend> {
    let mut cmd = tool_command(netns, fam.tool()).ok()?;
    cmd.arg("-V");
    let v = run_ok(cmd).ok()?;
    if v.contains("nf_tables") {
        Some(Backend::Nft)
    } else {
        Some(Backend::Legacy)
    }
}

/// Probes the tools and kernel features vigil can use. The probes leave nothing behind: the nft
/// probe table `vigil_probe_<pid>` is always deleted.
pub fn detect(netns: Option<&str>) -> Result<Capabilities> {
    if netns.is_some() {
        require_tool("ip")?;
    }
    let iptables = detect_backend(netns, Family::Ipv4);
    let ip6tables = detect_backend(netns, Family::Ipv6).is_some();
    let nft_queue = nft_probe(netns, "queue num 0 bypass");
    let connbytes = match iptables {
        // iptables-nft turns connbytes into the native `ct packets` expression.
        Some(Backend::Nft) => nft_probe(netns, "ct packets 0-20 counter"),
        Some(Backend::Legacy) => legacy_connbytes_probe(netns),
        None => false,
    };
    Ok(Capabilities { iptables, ip6tables, nft_queue, connbytes })
}

fn nft_probe(netns: Option<&str>, statement: &str) -> bool {
    let Ok(mut cmd) = tool_command(netns, "nft") else {
        return false;
    };
    let table = format!("vigil_probe_{}", std::process::id());
    cmd.args(["-f", "-"]);
    let script =
        format!("add table inet {table}\nadd chain inet {table} probe\nadd rule inet {table} probe {statement}\n");
    let ok = run_raw(cmd, Some(&script)).map(|o| o.status.success()).unwrap_or(false);
    if let Ok(mut del) = tool_command(netns, "nft") {
        // The batch is atomic, so after a failure the table normally does not exist: ignore errors.
        del.args(["delete", "table", "inet", &table]);
        let _ = run_raw(del, None);
    }
    ok
}

fn legacy_connbytes_probe(netns: Option<&str>) -> bool {
    let chain = format!("VIGIL_PROBE_{}", std::process::id());
    let add = format!(
        "*mangle\n:{chain} - [0:0]\n-A {chain} -m connbytes --connbytes 0:20 --connbytes-dir both --connbytes-mode packets -j RETURN\nCOMMIT\n"
    );
    let ok = restore(netns, Family::Ipv4, &add).is_ok();
    let _ = restore(netns, Family::Ipv4, &format!("*mangle\n-F {chain}\n-X {chain}\nCOMMIT\n"));
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    #[test]
    fn render_forward_default() {
        let spec = FirewallSpec { queue_packets: 20, ..Default::default() };
        assert_eq!(
            lines(&render(&spec, Family::Ipv4)),
            vec![
                "*mangle",
                ":VIGIL_FORWARD - [0:0]",
                "-A VIGIL_FORWARD -m connmark --mark 0x20000000/0x20000000 -j RETURN",
                "-A VIGIL_FORWARD -m connbytes ! --connbytes 0:20 --connbytes-dir both --connbytes-mode packets -j RETURN",
                "-A VIGIL_FORWARD -j NFQUEUE --queue-num 0 --queue-bypass",
                "-A FORWARD -j VIGIL_FORWARD",
                "COMMIT",
                "*security",
                ":VIGIL_SAVE_FORWARD - [0:0]",
                "-A VIGIL_SAVE_FORWARD -m mark --mark 0x20000000/0x20000000 -j CONNMARK --save-mark --nfmask 0x20000000 --ctmask 0x20000000",
                "-A FORWARD -j VIGIL_SAVE_FORWARD",
                "COMMIT",
            ]
        );
    }

    #[test]
    fn render_ipv6_same_rules() {
        let spec = FirewallSpec::default();
        assert_eq!(render(&spec, Family::Ipv6), render(&spec, Family::Ipv4));
    }

    #[test]
    fn render_queue_packets_zero_has_no_connbytes() {
        let spec = FirewallSpec::default();
        let s = render(&spec, Family::Ipv6);
        assert!(!s.contains("connbytes"), "{s}");
        assert!(s.contains("-A VIGIL_FORWARD -j NFQUEUE --queue-num 0 --queue-bypass\n"));
    }

    #[test]
    fn render_queue_balance() {
        let spec = FirewallSpec { queues: QueueRange { first: 0, last: 3 }, ..Default::default() };
        let s = render(&spec, Family::Ipv4);
        assert!(s.contains("-A VIGIL_FORWARD -j NFQUEUE --queue-balance 0:3 --queue-bypass\n"), "{s}");
        assert!(!s.contains("--queue-num"));
    }

    #[test]
    fn render_input_output_with_interfaces() {
        let spec = FirewallSpec {
            chains: vec![Hook::Output, Hook::Input],
            interfaces_in: vec!["eth0".into(), "wg+".into()],
            interfaces_out: vec![],
            offload_mark: 0x4,
            ..Default::default()
        };
        assert!(spec.validate().is_err(), "output with interfaces_in is impossible");
        let spec = FirewallSpec {
            chains: vec![Hook::Input],
            interfaces_in: vec!["eth0".into(), "wg+".into()],
            offload_mark: 0x4,
            queue_packets: 5,
            ..Default::default()
        };
        spec.validate().unwrap();
        let s = render(&spec, Family::Ipv4);
        assert_eq!(
            lines(&s),
            vec![
                "*mangle",
                ":VIGIL_INPUT - [0:0]",
                "-A VIGIL_INPUT -m connmark --mark 0x4/0x4 -j RETURN",
                "-A VIGIL_INPUT -m connbytes ! --connbytes 0:5 --connbytes-dir both --connbytes-mode packets -j RETURN",
                "-A VIGIL_INPUT -j NFQUEUE --queue-num 0 --queue-bypass",
                "-A INPUT -i eth0 -j VIGIL_INPUT",
                "-A INPUT -i wg+ -j VIGIL_INPUT",
                "COMMIT",
                "*security",
                ":VIGIL_SAVE_INPUT - [0:0]",
                "-A VIGIL_SAVE_INPUT -m mark --mark 0x4/0x4 -j CONNMARK --save-mark --nfmask 0x4 --ctmask 0x4",
                "-A INPUT -j VIGIL_SAVE_INPUT",
                "COMMIT",
            ]
        );
        let spec = FirewallSpec {
            chains: vec![Hook::Output, Hook::Forward],
            interfaces_out: vec!["wan0".into()],
            ..Default::default()
        };
        spec.validate().unwrap();
        let s = render(&spec, Family::Ipv4);
        assert!(s.contains("-A FORWARD -o wan0 -j VIGIL_FORWARD\n"), "{s}");
        assert!(s.contains("-A OUTPUT -o wan0 -j VIGIL_OUTPUT\n"), "{s}");
        assert!(s.contains("-A OUTPUT -j VIGIL_SAVE_OUTPUT\n"), "{s}");
        // Chains are declared before any rule, forward before output.
        let decl_fwd = s.find(":VIGIL_FORWARD").unwrap();
        let decl_out = s.find(":VIGIL_OUTPUT").unwrap();
        let first_rule = s.find("-A ").unwrap();
        assert!(decl_fwd < decl_out && decl_out < first_rule);
    }

    #[test]
    fn render_forward_in_and_out_one_jump_each() {
        let spec = FirewallSpec {
            interfaces_in: vec!["lan0".into()],
            interfaces_out: vec!["wan0".into(), "wan1".into()],
            ..Default::default()
        };
        spec.validate().unwrap();
        let s = render(&spec, Family::Ipv6);
        let jumps: Vec<&str> = s.lines().filter(|l| l.ends_with("-j VIGIL_FORWARD")).collect();
        assert_eq!(
            jumps,
            vec![
                "-A FORWARD -i lan0 -j VIGIL_FORWARD",
                "-A FORWARD -o wan0 -j VIGIL_FORWARD",
                "-A FORWARD -o wan1 -j VIGIL_FORWARD"
            ]
        );
    }

    #[test]
    fn validation_errors() {
        let err = |spec: FirewallSpec| match spec.validate() {
            Err(FirewallError::InvalidSpec(m)) => m,
            other => panic!("expected InvalidSpec, got {other:?}"),
        };
        assert!(err(FirewallSpec { chains: vec![], ..Default::default() }).contains("chains"));
        assert!(err(FirewallSpec { offload_mark: 0, ..Default::default() }).contains("offload_mark"));
        assert!(err(FirewallSpec { bypass: false, ..Default::default() }).contains("bypass"));
        assert!(
            err(FirewallSpec { queues: QueueRange { first: 4, last: 1 }, ..Default::default() }).contains("reversed")
        );
        assert!(err(FirewallSpec { ipv4: false, ipv6: false, ..Default::default() }).contains("family"));
        assert!(err(FirewallSpec {
            chains: vec![Hook::Input],
            interfaces_out: vec!["eth0".into()],
            ..Default::default()
        })
        .contains("input hook has no output interface"));
        assert!(err(FirewallSpec {
            chains: vec![Hook::Output],
            interfaces_in: vec!["eth0".into()],
            ..Default::default()
        })
        .contains("output hook has no input interface"));
        for bad in ["", "this-name-is-too-long", "eth 0", "a/b", "a:1", "-i", "!eth0", "."] {
            let m = err(FirewallSpec { interfaces_in: vec![bad.into()], ..Default::default() });
            assert!(m.contains("interface name"), "{bad:?}: {m}");
        }
        FirewallSpec {
            interfaces_in: vec!["fifteen-chars15".into(), "eth+".into(), "br-lan.10".into()],
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert!(err(FirewallSpec { netns: Some("a/b".into()), ..Default::default() }).contains("netns"));
    }

    #[test]
    fn hook_parse_and_serde_names() {
        assert_eq!("Forward".parse::<Hook>().unwrap(), Hook::Forward);
        assert!("prerouting".parse::<Hook>().is_err());
    }

    const SAVED: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 18:34:57 2026
*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:VIGIL_FORWARD - [0:0]
:VIGIL_INPUT - [0:0]
[5:300] -A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
[1:60] -A FORWARD -i eth0 -j VIGIL_FORWARD
[0:0] -A VIGIL_FORWARD -m connmark --mark 0x20000000/0x20000000 -j RETURN
[1:60] -A VIGIL_FORWARD -j NFQUEUE --queue-num 0 --queue-bypass
COMMIT
# Completed on Thu Nov 26 18:34:57 2026
*filter
:INPUT DROP [0:0]
-A INPUT -p tcp --dport 22 -j ACCEPT
COMMIT
";

    #[test]
    fn parse_and_removal_lines() {
        let t = parse_save(SAVED);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "mangle");
        assert_eq!(t[0].rules[1], "-A FORWARD -i eth0 -j VIGIL_FORWARD");
        assert_eq!(
            removal_lines(&t[0]),
            vec![
                "-D FORWARD -i eth0 -j VIGIL_FORWARD",
                "-F VIGIL_FORWARD",
                "-F VIGIL_INPUT",
                "-X VIGIL_FORWARD",
                "-X VIGIL_INPUT"
            ]
        );
        assert!(removal_lines(&t[1]).is_empty());
        assert_eq!(
            snapshot_lines(&t[0]),
            vec![
                ":VIGIL_FORWARD - [0:0]",
                ":VIGIL_INPUT - [0:0]",
                "-A VIGIL_FORWARD -m connmark --mark 0x20000000/0x20000000 -j RETURN",
                "-A VIGIL_FORWARD -j NFQUEUE --queue-num 0 --queue-bypass",
                "-A FORWARD -i eth0 -j VIGIL_FORWARD",
            ]
        );
        assert!(!table_is_pristine(&t[0]));
    }

    #[test]
    fn install_script_removes_then_adds() {
        let before = parse_save(SAVED);
        let spec = FirewallSpec::default();
        let sections = merge_sections(vec![
            removal_sections(&before),
            render_sections(&spec, Family::Ipv4).into_iter().map(|(t, l)| (t.to_string(), l)).collect(),
        ]);
        let script = join_sections(&sections);
        let mangle: Vec<&str> = script.split("COMMIT\n").next().unwrap().lines().collect();
        assert_eq!(mangle[0], "*mangle");
        assert_eq!(mangle[1], "-D FORWARD -i eth0 -j VIGIL_FORWARD");
        assert_eq!(mangle[5], "-X VIGIL_INPUT");
        assert_eq!(mangle[6], ":VIGIL_FORWARD - [0:0]");
        assert_eq!(script.matches("*mangle").count(), 1);
        assert!(script.contains("*security\n"));
    }

    #[test]
    fn failing_line_parse() {
        assert_eq!(failing_line("iptables-restore: line 2 failed: Bad rule"), Some(2));
        assert_eq!(failing_line("iptables-restore v1.8.9 (nf_tables): unknown option"), None);
    }

    #[test]
    fn state_roundtrip() {
        let mut st = State { acct_prev: Some("0".into()), ..Default::default() };
        st.created_tables.entry(Family::Ipv6).or_default().extend(["security".to_string(), "mangle".to_string()]);
        assert_eq!(State::parse(&st.render()), st);
        // A namespace that does not exist falls back to its name; our own is named by identity.
        assert_eq!(state_path(Some("no-such-ns-vigil")), Path::new("/run/vigil/netns-no-such-ns-vigil.state"));
        let own = state_path(None);
        assert!(own.to_string_lossy().starts_with("/run/vigil/netns-") && own != state_path(Some("x")), "{own:?}");
        assert_eq!(own, state_path(None));
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let e = FirewallError::Restore {
            family: Family::Ipv6,
            stderr: "ip6tables-restore: line 3 failed".into(),
            script_line: Some("-A FORWARD -i x -j Y".into()),
        };
        let m = e.to_string();
        assert!(m.contains("ip6tables-restore") && m.contains("line 3") && m.contains("-A FORWARD -i x -j Y"), "{m}");
        assert!(FirewallError::ToolMissing { tool: "iptables-restore".into() }.to_string().contains("install"));
    }
}
