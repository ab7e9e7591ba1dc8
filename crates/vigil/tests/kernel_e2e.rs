//! Real-kernel end-to-end tests of `vigil run`: a client/gateway/server lab (`vigil::lab`), vigil
//! inline on the gateway over NFQUEUE, real TCP/UDP traffic over IPv4 and IPv6.
//!
//! They need root (network namespaces, NFQUEUE, iptables). Without root they print a skip line,
//! except when `CI` is set: then not being root is a failure.
//!
//! Every test builds its own lab (unique namespace names, deleted on drop) and starts only
//! processes it tracks. vigil runs as a user runs it: `ip netns exec GW vigil run --config CFG`
//! (the rules go into the namespace vigil runs in). The lab harness is in `common/mod.rs`.
//!
//! The tests that run vigil (or `vigil rules`) hold `common::VIGIL_LOCK` while they do, so that bulk
//! transfers and stall measurements do not compete for the CPU of a small CI machine; the test that
//! drives its own queue (payload rewrite) runs alongside. (vigil keeps its firewall state per network
//! namespace, so running them at once would also be correct.)

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    check, root_or_skip, sh, signal, u, vigil_lock, wait_listen, wait_until, Env, Suite, VigilProc, V4_SERVER,
    V6_SERVER, VIGIL,
};
use serde_json::Value;

const SUITE: Suite = Suite { lab_prefix: "vke", name: "e2e", helper_modes: HELPER_PY_MODES };

/// The helper-script modes of these tests (beyond the shared ones in `common`).
const HELPER_PY_MODES: &str = r#"
elif mode == 'tcp-sink':          # PORT FILE ADDR...: append every connection's bytes as a line
    port, path = int(sys.argv[2]), sys.argv[3]
    lock = threading.Lock()
    def run(addr):
        s = tcp_listener(addr, port)
        while True:
            c, _ = s.accept()
            data = b''
            while True:
                b = c.recv(65535)
                if not b:
                    break
                data += b
            c.close()
            with lock, open(path, 'ab') as f:
                f.write(data + b'\n')
    serve_all(run, sys.argv[4:])
elif mode == 'udp-ask':           # HOST PORT MSG TIMEOUT: send, print the answer
    host, port, msg, t = sys.argv[2], int(sys.argv[3]), sys.argv[4].encode(), float(sys.argv[5])
    s = socket.socket(fam(host), socket.SOCK_DGRAM)
    s.settimeout(t)
    s.sendto(msg, (host, port))
    try:
        sys.stdout.write(s.recv(65535).decode())
    except OSError as e:
        sys.stderr.write('udp-ask: %s\n' % e)
        sys.exit(1)
elif mode == 'udp-send':          # HOST PORT MSG...: one datagram per MSG
    host, port = sys.argv[2], int(sys.argv[3])
    s = socket.socket(fam(host), socket.SOCK_DGRAM)
    for m in sys.argv[4:]:
        s.sendto(m.encode(), (host, port))
        time.sleep(0.05)
elif mode == 'tcp-send':          # HOST PORT MSG: connect, send, close
    host, port, msg = sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
    c = socket.create_connection((host, port), timeout=5)
    c.sendall(msg)
    c.shutdown(socket.SHUT_WR)
    c.recv(10)
    c.close()
"#;

/// `host:port` / `[v6]:port` for URLs.
fn hostport(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

impl Env {
    /// HTTP servers on `port` for both server addresses, serving `dir`.
    fn http_servers(&self, dir: &Path, port: u16) {
        let d = dir.to_str().unwrap();
        let p = port.to_string();
        for addr in [V4_SERVER, V6_SERVER] {
            self.lab
                .spawn_in(self.server(), ["python3", "-m", "http.server", &p, "--bind", addr, "--directory", d])
                .expect("spawn http server");
        }
        wait_listen(&self.lab, self.server(), "t", port, 2);
    }

    /// curl from the client: returns the downloaded size, panics on failure.
    fn curl_size(&self, addr: &str, port: u16, path: &str, extra: &[&str]) -> u64 {
        let url = format!("http://{}/{path}", hostport(addr, port));
        let mut args = vec!["curl", "-sS", "-g", "--max-time", "120", "-o", "/dev/null", "-w", "%{size_download}"];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = sh(&self.lab, self.client(), &args);
        out.trim().parse().unwrap_or_else(|_| panic!("curl {url}: unexpected output {out:?}"))
    }

    fn udp_ask(&self, addr: &str, port: u16, msg: &str) -> String {
        check(self.py(self.client(), &["udp-ask", addr, &port.to_string(), msg, "3"]))
    }

    /// `iptables-save` + `ip6tables-save` of the gateway, without comments and counters.
    fn ruleset(&self) -> String {
        let mut all = String::new();
        for tool in ["iptables-save", "ip6tables-save"] {
            all.push_str(&format!("## {tool}\n"));
            all.push_str(&normalize_save(&sh(&self.lab, self.gw(), &[tool])));
        }
        all
    }

    /// `vigil rules ACTION` inside the gateway.
    fn vigil_rules(&self, action: &[&str]) -> String {
        let mut args = vec![VIGIL, "rules"];
        args.extend_from_slice(action);
        sh(&self.lab, self.gw(), &args)
    }
}

fn normalize_save(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let line = if line.starts_with(':') {
            // ":FORWARD ACCEPT [12:3456]" -> ":FORWARD ACCEPT"
            match line.rfind(" [") {
                Some(i) if line.ends_with(']') => &line[..i],
                _ => line,
            }
        } else if line.starts_with('[') {
            line.find("] ").map(|i| &line[i + 2..]).unwrap_or(line)
        } else {
            line
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

impl VigilProc<'_> {
    /// SIGKILL; asserts it died of it.
    fn kill9(&mut self) {
        signal(self.pid(), libc::SIGKILL);
        let st = self.child.wait_timeout(Duration::from_secs(10)).unwrap().expect("vigil survived SIGKILL");
        self.done = true;
        assert_eq!(st.signal(), Some(libc::SIGKILL), "{st}");
    }
}

/// Flow records to `dst:dport` over `proto`.
fn flows_to<'v>(flows: &'v [Value], proto: &str, dst: &str, dport: u16) -> Vec<&'v Value> {
    flows
        .iter()
        .filter(|f| f["proto"] == proto && f["dst"] == dst && f["dport"].as_u64() == Some(u64::from(dport)))
        .collect()
}

fn one_flow<'v>(flows: &'v [Value], proto: &str, dst: &str, dport: u16) -> &'v Value {
    let v = flows_to(flows, proto, dst, dport);
    assert_eq!(v.len(), 1, "expected exactly one {proto} flow to {dst}:{dport}, got {v:#?}\nall flows: {flows:#?}");
    v[0]
}

/// A file of `size` bytes in `dir` (sparse: nothing is written).
fn sized_file(dir: &Path, name: &str, size: u64) {
    let f = std::fs::File::create(dir.join(name)).unwrap();
    f.set_len(size).unwrap();
}

// ---------------------------------------------------------------------------------------------
// iperf3

/// Receiver-side intervals (`-R`) of an iperf3 JSON report: `(start, end, bytes)`.
fn iperf_intervals(report: &Value) -> Vec<(f64, f64, u64)> {
    report["intervals"]
        .as_array()
        .unwrap_or_else(|| panic!("iperf3 report without intervals: {report}"))
        .iter()
        .map(|i| {
            let s = &i["sum"];
            (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap(), u(&s["bytes"]))
        })
        .collect()
}

/// Longest run of consecutive zero-byte intervals, in seconds. Any stall longer than this plus
/// one interval length would have produced a longer run.
fn longest_stall(intervals: &[(f64, f64, u64)]) -> f64 {
    let (mut best, mut cur) = (0.0f64, 0.0f64);
    for &(s, e, b) in intervals {
        if b == 0 {
            cur += e - s;
            best = best.max(cur);
        } else {
            cur = 0.0;
        }
    }
    best
}

/// Runs an iperf3 client in the client namespace on a thread; join for the JSON report.
fn iperf_client(env: &Env, args: &[&str]) -> std::thread::JoinHandle<(Output, Instant)> {
    let mut cmd = env.lab.exec(env.client(), ["iperf3", "-J", "--connect-timeout", "5000"]);
    cmd.args(args).stdin(Stdio::null());
    std::thread::spawn(move || {
        let t0 = Instant::now();
        (cmd.output().expect("run iperf3"), t0)
    })
}

fn iperf_report(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("iperf3 output is not JSON ({e}): {text}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    assert!(out.status.success() && v.get("error").is_none(), "iperf3 failed ({}): {}", out.status, v["error"]);
    v
}

fn nfqueue_proc(env: &Env) -> Vec<Vec<u64>> {
    sh(&env.lab, env.gw(), &["cat", "/proc/net/netfilter/nfnetlink_queue"])
        .lines()
        .map(|l| l.split_whitespace().filter_map(|t| t.parse().ok()).collect())
        .collect()
}

/// Packet counter of the NFQUEUE rule in mangle VIGIL_FORWARD (IPv4).
fn nfqueue_rule_packets(env: &Env) -> u64 {
    let out = sh(&env.lab, env.gw(), &["iptables", "-t", "mangle", "-L", "VIGIL_FORWARD", "-v", "-x", "-n"]);
    out.lines()
        .find(|l| l.contains("NFQUEUE"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no NFQUEUE rule in VIGIL_FORWARD:\n{out}"))
}

const NO_OFFLOAD: &str = "[engine]\noffload = false\n[firewall]\nqueue_packets = 0\n";

// ---------------------------------------------------------------------------------------------
// 1. allow / block, IPv4 + IPv6, flow log and counters

#[test]
fn allowed_tcp_udp_pass_blocked_port_fails_and_counters_agree() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "allow-block");
    let www = env.dir.path("www");
    std::fs::create_dir_all(&www).unwrap();
    const BODY: u64 = 4 << 20;
    sized_file(&www, "body", BODY);
    env.http_servers(&www, 8080);
    env.py_server(&["udp-echo", "5353", V4_SERVER, V6_SERVER]);
    env.py_server(&["tcp-banner", "23", V4_SERVER, V6_SERVER]);
    wait_listen(&env.lab, env.server(), "u", 5353, 2);
    wait_listen(&env.lab, env.server(), "t", 23, 2);

    // Without vigil the telnet listener answers on both families: the block below is vigil's.
    for addr in [V4_SERVER, V6_SERVER] {
        let (r, _) = env.tcp_get(addr, 23, 5.0);
        assert_eq!(r.expect("port 23 reachable without vigil"), "banner:23\n");
    }

    let config = format!(
        "{NO_OFFLOAD}[policy]\ndefault = \"allow\"\n[[policy.rules]]\nname = \"no-telnet\"\naction = \"block\"\ndst_ports = [23]\n"
    );
    let _lock = vigil_lock();
    let mut vigil = env.start_vigil("allow-block", &config);

    for addr in [V4_SERVER, V6_SERVER] {
        assert_eq!(env.curl_size(addr, 8080, "body", &[]), BODY, "HTTP over {addr}");
        assert_eq!(env.udp_ask(addr, 5353, &format!("ping-{addr}")), format!("echo:ping-{addr}"), "UDP over {addr}");
        let (r, took) = env.tcp_get(addr, 23, 2.0);
        assert!(r.is_err(), "port 23 on {addr} must be blocked, got {r:?}");
        assert!(took < Duration::from_secs(4), "blocked connection to {addr}:23 took {took:?} to fail");
    }
    let live = vigil.fresh_stats();
    assert!(u(&live["total"]["dropped"]) >= 1, "{live:#}");
    vigil.stop();

    // After a clean stop the listener answers again (rules gone).
    let (r, _) = env.tcp_get(V4_SERVER, 23, 5.0);
    assert_eq!(r.expect("port 23 reachable after vigil stopped"), "banner:23\n");

    let flows = vigil.flows();
    let stats = vigil.stats();
    println!("allow/block: {} flow records; total {}", flows.len(), stats["total"]);
    for addr in [V4_SERVER, V6_SERVER] {
        let http = one_flow(&flows, "tcp", addr, 8080);
        assert_eq!(http["verdict"], "allow", "{http:#}");
        assert_eq!(http["offloaded"], false, "{http:#}");
        let (pc, ps) = (u(&http["packets_c2s"]), u(&http["packets_s2c"]));
        let (bc, bs) = (u(&http["bytes_c2s"]), u(&http["bytes_s2c"]));
        assert!(pc > 0 && ps > 0 && bc > 0, "{http:#}");
        // IP bytes: body + HTTP headers + IP/TCP headers (<4 % with 1500-byte MTU and timestamps).
        assert!((BODY..=BODY + BODY * 6 / 100 + 4096).contains(&bs), "bytes_s2c {bs} vs body {BODY}: {http:#}");
        println!(
            "  http {addr}: packets {pc}/{ps} bytes {bc}/{bs} (body {BODY}, +{:.2} %)",
            (bs - BODY) as f64 * 100.0 / BODY as f64
        );

        let udp = one_flow(&flows, "udp", addr, 5353);
        assert_eq!(udp["verdict"], "allow", "{udp:#}");
        assert_eq!((u(&udp["packets_c2s"]), u(&udp["packets_s2c"])), (1, 1), "{udp:#}");

        let telnet = one_flow(&flows, "tcp", addr, 23);
        assert_eq!(telnet["verdict"], "block", "{telnet:#}");
        assert_eq!(telnet["rule"], "no-telnet", "{telnet:#}");
        assert!(u(&telnet["packets_c2s"]) >= 1 && u(&telnet["packets_s2c"]) == 0, "{telnet:#}");
    }
    let total = &stats["total"];
    assert!(u(&total["dropped"]) >= 2, "one SYN per family at least: {total:#}");
    let flow_packets: u64 = flows.iter().map(|f| u(&f["packets_c2s"]) + u(&f["packets_s2c"])).sum();
    assert_eq!(u(&total["packets"]), flow_packets, "stats total vs flow log: {total:#}");
    assert_eq!(u(&total["packets"]), u(&total["accepted"]) + u(&total["dropped"]), "{total:#}");
}

// ---------------------------------------------------------------------------------------------
// 2. the ruleset is left exactly as it was

#[test]
fn rules_removed_ruleset_identical() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "ruleset");
    // The admin's own rules, in the tables vigil uses and in filter.
    for tool in ["iptables", "ip6tables"] {
        sh(
            &env.lab,
            env.gw(),
            &[
                tool,
                "-t",
                "mangle",
                "-A",
                "FORWARD",
                "-p",
                "tcp",
                "--tcp-flags",
                "SYN,RST",
                "SYN",
                "-j",
                "TCPMSS",
                "--clamp-mss-to-pmtu",
            ],
        );
        sh(&env.lab, env.gw(), &[tool, "-t", "filter", "-A", "FORWARD", "-p", "tcp", "--dport", "9", "-j", "DROP"]);
    }
    let acct = || sh(&env.lab, env.gw(), &["sysctl", "-n", "net.netfilter.nf_conntrack_acct"]).trim().to_string();
    let before = env.ruleset();
    let acct_before = acct();
    assert!(before.contains("-A FORWARD -p tcp -m tcp --dport 9 -j DROP"), "{before}");

    let www = env.dir.path("www");
    std::fs::create_dir_all(&www).unwrap();
    sized_file(&www, "f", 100_000);
    env.http_servers(&www, 8080);

    // 1) vigil run + SIGTERM (default config: queue_packets = 32 switches nf_conntrack_acct on).
    let _lock = vigil_lock();
    let mut vigil = env.start_vigil("ruleset", "");
    let during = env.ruleset();
    assert!(during.contains("-j NFQUEUE --queue-num 0 --queue-bypass"), "{during}");
    assert!(
        during.contains("-A FORWARD -j VIGIL_FORWARD") && during.contains("-A FORWARD -j VIGIL_SAVE_FORWARD"),
        "{during}"
    );
    assert!(
        during.contains("--clamp-mss-to-pmtu") && during.contains("--dport 9 -j DROP"),
        "admin rules kept: {during}"
    );
    assert_eq!(acct(), "1");
    assert_eq!(env.curl_size(V4_SERVER, 8080, "f", &[]), 100_000);
    assert_eq!(env.curl_size(V6_SERVER, 8080, "f", &[]), 100_000);
    vigil.stop();
    let after = env.ruleset();
    assert_eq!(after, before, "ruleset after `vigil run` + SIGTERM differs");
    assert_eq!(acct(), acct_before, "nf_conntrack_acct not restored");
    assert!(vigil.flows().len() >= 2);

    // 2) vigil rules install / remove.
    let cfg = env.dir.write("rules.toml", "[engine]\nqueues = \"2-3\"\n");
    env.vigil_rules(&["install", "--config", cfg.to_str().unwrap()]);
    let installed = env.ruleset();
    assert!(installed.contains("--queue-balance 2:3 --queue-bypass"), "{installed}");
    let shown = env.vigil_rules(&["show"]);
    assert!(shown.contains("VIGIL_FORWARD"), "{shown}");
    env.vigil_rules(&["remove"]);
    assert_eq!(env.ruleset(), before, "ruleset after `vigil rules install` + `remove` differs");
    assert_eq!(acct(), acct_before);
    // Removing again is a no-op.
    env.vigil_rules(&["remove"]);
    assert_eq!(env.ruleset(), before);
    println!("ruleset: identical after run+SIGTERM and after rules install+remove ({} lines)", before.lines().count());
}

// ---------------------------------------------------------------------------------------------
// 3. offload: a 100 MB transfer while vigil sees only its first packets

#[test]
fn offload_100mb_transfer_sees_only_first_packets() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "offload");
    let www = env.dir.path("www");
    std::fs::create_dir_all(&www).unwrap();
    const SIZE: u64 = 100 << 20;
    sized_file(&www, "big", SIZE);
    env.http_servers(&www, 8080);

    let _lock = vigil_lock();
    let mut vigil = env.start_vigil("offload", "[engine]\noffload = true\n[firewall]\nqueue_packets = 32\n");
    let t0 = Instant::now();
    assert_eq!(env.curl_size(V4_SERVER, 8080, "big", &[]), SIZE, "100 MB over IPv4");
    let took = t0.elapsed();
    assert_eq!(env.curl_size(V6_SERVER, 8080, "big", &[]), SIZE, "100 MB over IPv6");
    let rule_packets = nfqueue_rule_packets(&env);
    vigil.stop();

    let flows = vigil.flows();
    let stats = vigil.stats();
    let total = &stats["total"];
    // What vigil itself processed: a handful of packets per connection (its pipeline counter).
    let seen = u(&total["packets"]);
    assert!(seen > 0 && seen < 200, "vigil processed {seen} packets of two 100 MB transfers: {total:#}");
    for addr in [V4_SERVER, V6_SERVER] {
        let f = one_flow(&flows, "tcp", addr, 8080);
        assert_eq!(f["offloaded"], true, "{f:#}");
        assert_eq!(f["verdict"], "allow", "{f:#}");
        // The session's counts are the kernel's accounting of the whole connection.
        assert_eq!(f["bytes_source"], "conntrack", "{f:#}");
        assert!(u(&f["bytes_s2c"]) >= SIZE, "{f:#}");
        println!(
            "offload {addr}: session counts {} bytes of a {SIZE}-byte transfer from conntrack",
            u(&f["bytes_s2c"])
        );
    }
    println!("offload: vigil processed {seen} packets in all");
    assert!(u(&total["packets"]) < 200, "{total:#}");
    assert!(u(&total["flows_offloaded"]) >= 2, "{total:#}");
    assert!(rule_packets < 100, "IPv4 NFQUEUE rule matched {rule_packets} packets");
    println!(
        "offload: 100 MB IPv4 in {took:.2?} ({:.2} Gbit/s); stats total packets {}, IPv4 NFQUEUE rule {rule_packets} packets",
        SIZE as f64 * 8.0 / took.as_secs_f64() / 1e9,
        u(&total["packets"])
    );
}

// ---------------------------------------------------------------------------------------------
// 4. kill -9: traffic keeps flowing, new connections open, the rules can be removed

#[test]
fn kill_9_mid_transfer_and_idle_keeps_traffic_flowing() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "kill9");
    let www = env.dir.path("www");
    std::fs::create_dir_all(&www).unwrap();
    sized_file(&www, "f", 50_000);
    env.http_servers(&www, 8080);
    env.lab.spawn_in(env.server(), ["iperf3", "-s", "-p", "5201"]).unwrap();
    wait_listen(&env.lab, env.server(), "t", 5201, 1);

    // (a) mid-transfer: every packet is queued (offload off, queue_packets = 0).
    let _lock = vigil_lock();
    let mut vigil = env.start_vigil("kill9-a", NO_OFFLOAD);
    let iperf = iperf_client(&env, &["-c", V4_SERVER, "-p", "5201", "-R", "-t", "8", "-b", "50M", "-i", "0.1"]);
    let mut seen_before_kill = 0;
    wait_until("vigil to see the iperf3 transfer", Duration::from_secs(10), || {
        seen_before_kill = u(&vigil.fresh_stats()["total"]["packets"]);
        seen_before_kill > 200
    });
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = Instant::now();
    vigil.kill9();
    let (out, started) = iperf.join().unwrap();
    let report = iperf_report(&out);
    let intervals = iperf_intervals(&report);
    let kill_offset = killed_at.duration_since(started).as_secs_f64();
    let stall = longest_stall(&intervals);
    let after_kill: u64 = intervals.iter().filter(|(s, _, _)| *s > kill_offset + 0.5).map(|i| i.2).sum();
    let received = u(&report["end"]["sum_received"]["bytes"]);
    println!(
        "kill -9: vigil had seen {seen_before_kill} packets; killed ~{kill_offset:.1} s into the run; received {received} bytes; \
         {after_kill} bytes after the kill; longest stall {stall:.1} s ({} intervals)",
        intervals.len()
    );
    assert!(intervals.len() >= 70, "the run did not last its 8 s: {} intervals", intervals.len());
    assert!(intervals.last().unwrap().1 > kill_offset + 2.0, "the kill was not mid-transfer");
    assert!(after_kill > 0, "no bytes after the kill");
    assert!(stall < 1.0, "traffic stalled for {stall:.1} s (intervals {intervals:?})");
    // (c) new connections after the kill, both families.
    assert_eq!(env.curl_size(V4_SERVER, 8080, "f", &["--max-time", "10"]), 50_000);
    assert_eq!(env.curl_size(V6_SERVER, 8080, "f", &["--max-time", "10"]), 50_000);
    // The rules are still there (nobody removed them) and harmless thanks to --queue-bypass.
    assert!(env.ruleset().contains("--queue-bypass"), "rules should still be installed after kill -9");

    // (b) idle kill: start again over the leftover rules (re-install), kill between transfers.
    let mut vigil = env.start_vigil("kill9-b", NO_OFFLOAD);
    let during = env.ruleset();
    assert_eq!(during.matches("-j NFQUEUE").count(), 2, "re-install must not duplicate rules: {during}");
    assert_eq!(env.curl_size(V4_SERVER, 8080, "f", &[]), 50_000);
    vigil.kill9();
    for addr in [V4_SERVER, V6_SERVER] {
        let t0 = Instant::now();
        assert_eq!(
            env.curl_size(addr, 8080, "f", &["--max-time", "10"]),
            50_000,
            "new connection to {addr} after idle kill -9"
        );
        println!("kill -9 idle: new connection to {addr} in {:.2?}", t0.elapsed());
    }
    env.vigil_rules(&["remove"]);
    let left = env.ruleset();
    assert!(!left.contains("VIGIL_"), "`vigil rules remove` left rules: {left}");
}

// ---------------------------------------------------------------------------------------------
// 5. two queues, two workers, both used

#[test]
fn two_queues_both_used() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "twoq");
    // xt_NFQUEUE's --queue-balance hashes the address pair (and protocol), not the ports: use many
    // client addresses so that both queues get flows (all 16 on one queue: p = 2^-15).
    let sources: Vec<String> = (10..26).map(|i| format!("198.18.1.{i}")).collect();
    for s in &sources {
        sh(&env.lab, env.client(), &["ip", "addr", "add", &format!("{s}/24"), "dev", "eth0"]);
    }
    env.py_server(&["tcp-banner", "8000", V4_SERVER]);
    env.py_server(&["tcp-banner", "8001", V4_SERVER]);
    wait_listen(&env.lab, env.server(), "t", 8000, 1);
    wait_listen(&env.lab, env.server(), "t", 8001, 1);

    let _lock = vigil_lock();
    let mut vigil =
        env.start_vigil("twoq", "[engine]\nqueues = \"0-1\"\noffload = false\n[firewall]\nqueue_packets = 0\n");
    let mut n = 0;
    for s in &sources {
        for port in [8000u16, 8001] {
            let out =
                sh(&env.lab, env.client(), &["socat", "-T", "5", "-", &format!("TCP:{V4_SERVER}:{port},bind={s}")]);
            assert_eq!(out, format!("banner:{port}\n"), "from {s} to port {port}");
            n += 1;
        }
    }
    assert_eq!(n, 32);
    vigil.stop();
    let stats = vigil.stats();
    let queues = stats["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 2, "{stats:#}");
    let per_queue: Vec<(u64, u64, u64)> =
        queues.iter().map(|q| (u(&q["queue"]), u(&q["received"]), u(&q["pipeline"]["flows_created"]))).collect();
    println!("two queues: (queue, received, flows) = {per_queue:?}");
    for (q, received, flows) in &per_queue {
        assert!(*received > 0 && *flows > 0, "queue {q} unused: {stats:#}");
    }
    // The balance hash is symmetric: each flow's two directions met on one worker, so each
    // connection is exactly one flow record with packets both ways (no midstream duplicates).
    let flows = vigil.flows();
    for port in [8000u16, 8001] {
        let f = flows_to(&flows, "tcp", V4_SERVER, port);
        assert_eq!(f.len(), 16, "flows to port {port}: {f:#?}");
        for r in f {
            assert!(u(&r["packets_c2s"]) > 0 && u(&r["packets_s2c"]) > 0 && r["midstream"] == false, "{r:#}");
        }
    }
    let total_flows: u64 = per_queue.iter().map(|q| q.2).sum();
    assert_eq!(total_flows, 32, "{stats:#}");
}

// ---------------------------------------------------------------------------------------------
// 6. SIGSTOP: fail-open keeps traffic flowing

#[test]
fn sigstop_fail_open_keeps_traffic_flowing() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "sigstop");
    env.lab.spawn_in(env.server(), ["iperf3", "-s", "-p", "5201"]).unwrap();
    wait_listen(&env.lab, env.server(), "t", 5201, 1);
    const MAXLEN: u64 = 64;
    let _lock = vigil_lock();
    let mut vigil = env.start_vigil(
        "sigstop",
        &format!("[engine]\noffload = false\nqueue_maxlen = {MAXLEN}\n[firewall]\nqueue_packets = 0\n"),
    );
    // "Under load": a single TCP stream alone never fills the queue (its cwnd's worth of packets
    // is held and it waits for them), so 16 streams; fail-open only starts once the queue is full.
    let iperf =
        iperf_client(&env, &["-c", V4_SERVER, "-p", "5201", "-R", "-t", "8", "-P", "16", "-b", "20M", "-i", "0.5"]);
    wait_until("vigil to see the iperf3 transfer", Duration::from_secs(10), || {
        u(&vigil.fresh_stats()["total"]["packets"]) > 200
    });
    let stopped_at = Instant::now();
    signal(vigil.pid(), libc::SIGSTOP);
    // Kernel view while vigil is stopped: the queue fills to maxlen and stays there, and the
    // NFQUEUE rule keeps matching packets that pass (fail-open). (id_sequence, the 8th column,
    // does not move: a packet refused by a full queue gets no id.)
    let mut samples = Vec::new();
    for _ in 0..7 {
        std::thread::sleep(Duration::from_millis(500));
        let q = nfqueue_proc(&env);
        assert_eq!(q.len(), 1, "one queue bound: {q:?}");
        samples.push((q[0][2], q[0][7], nfqueue_rule_packets(&env)));
    }
    let resumed_at = Instant::now();
    signal(vigil.pid(), libc::SIGCONT);
    let (out, started) = iperf.join().unwrap();
    let report = iperf_report(&out);
    vigil.stop();

    println!("SIGSTOP samples (queue_total, id_sequence, NFQUEUE rule packets): {samples:?}");
    let full =
        samples.iter().position(|s| s.0 == MAXLEN).unwrap_or_else(|| panic!("the queue never filled: {samples:?}"));
    assert!(full <= 2, "the queue filled late: {samples:?}");
    for (total, _, _) in &samples[full..] {
        assert_eq!(*total, MAXLEN, "queue_total should stay at maxlen while vigil is stopped: {samples:?}");
    }
    for w in samples[full..].windows(2) {
        assert!(w[1].2 > w[0].2, "NFQUEUE rule counter stopped rising: {samples:?}");
    }
    let intervals = iperf_intervals(&report);
    let (from, to) =
        (stopped_at.duration_since(started).as_secs_f64(), resumed_at.duration_since(started).as_secs_f64());
    // Offsets are from the spawn of iperf3; its own clock starts a little later (connection set-up),
    // so keep a 0.5 s margin before the SIGCONT.
    let inside: Vec<&(f64, f64, u64)> = intervals.iter().filter(|(s, e, _)| *s >= from && *e <= to - 0.5).collect();
    let bytes_stopped: u64 = inside.iter().map(|i| i.2).sum();
    let received = u(&report["end"]["sum_received"]["bytes"]);
    println!(
        "SIGSTOP: stopped {from:.1}-{to:.1} s; {bytes_stopped} bytes received in the {} intervals inside ({:.0} Mbit/s); \
         total {received} bytes ({:.0} Mbit/s)",
        inside.len(),
        bytes_stopped as f64 * 8.0 / (inside.len() as f64 * 0.5) / 1e6,
        received as f64 * 8.0 / report["end"]["sum_received"]["seconds"].as_f64().unwrap_or(8.0) / 1e6
    );
    assert!(inside.len() >= 4, "stop window too short for the report: {intervals:?}");
    assert!(bytes_stopped >= 1 << 20, "only {bytes_stopped} bytes passed while vigil was stopped: {intervals:?}");
    assert!(inside.last().unwrap().2 > 0, "traffic had stopped by the end of the SIGSTOP: {intervals:?}");
    let stats = vigil.stats();
    assert!(u(&stats["queues"][0]["received"]) > 0, "{stats:#}");
}

// ---------------------------------------------------------------------------------------------
// 7. a verdict with a modified payload arrives modified, with valid checksums

/// Joins the network namespace `ns` (this thread only).
fn enter_netns(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("open netns");
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd; affects only the calling thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Replaces every occurrence of `from` in the L4 payload region of `pkt` (simple byte search).
fn replace_bytes(pkt: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    let pos = pkt.windows(from.len()).position(|w| w == from)?;
    let mut out = pkt[..pos].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&pkt[pos + from.len()..]);
    Some(out)
}

/// Packets of a classic pcap file (Ethernet link type), without the Ethernet header.
fn pcap_ip_packets(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.len() < 24 {
        return Vec::new();
    }
    let le = match &bytes[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        m => panic!("not a pcap file: magic {m:02x?}"),
    };
    let rd = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    assert_eq!(rd(&bytes[20..24]), 1, "link type must be Ethernet");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let caplen = rd(&bytes[off + 8..off + 12]) as usize;
        let start = off + 16;
        if start + caplen > bytes.len() {
            break;
        }
        let frame = &bytes[start..start + caplen];
        if frame.len() > 14 && matches!(u16::from_be_bytes([frame[12], frame[13]]), 0x0800 | 0x86dd) {
            out.push(frame[14..].to_vec());
        }
        off = start + caplen;
    }
    out
}

#[test]
fn modified_payload_verdict_arrives_with_valid_checksums() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "mangle");
    let udp_out = env.dir.path("udp.txt");
    let tcp_out = env.dir.path("tcp.txt");
    env.py_server(&["udp-sink", "7777", udp_out.to_str().unwrap(), V4_SERVER, V6_SERVER]);
    env.py_server(&["tcp-sink", "7778", tcp_out.to_str().unwrap(), V4_SERVER, V6_SERVER]);
    wait_listen(&env.lab, env.server(), "u", 7777, 2);
    wait_listen(&env.lab, env.server(), "t", 7778, 2);

    // Capture what the server receives.
    let (tcpdump, pcap) = env.tcpdump(env.server(), "eth0", "server", "udp port 7777 or tcp port 7778");

    // Our own queue 9 in the gateway, on a thread that joined the gateway's namespace.
    let gw = env.gw().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            enter_netns(&gw);
            let mut q = vigil_nfq::Queue::open(&vigil_nfq::QueueConfig::new(9)).expect("open queue 9");
            ready_tx.send(()).unwrap();
            let mut modified = 0u32;
            let mut seen = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let mut batch = match q.recv(Duration::from_millis(100)) {
                    Ok(b) => b,
                    Err(e) => panic!("recv: {e}"),
                };
                let pkts: Vec<(u32, Vec<u8>, bool)> =
                    batch.packets().map(|p| (p.id, p.payload.to_vec(), p.is_gso())).collect();
                for (id, payload, gso) in pkts {
                    seen += 1;
                    assert!(!gso, "unexpected GSO packet");
                    let new = replace_bytes(&payload, b"hello", b"HELLO")
                        .or_else(|| replace_bytes(&payload, b"grow-me", b"grown-by-vigil-0123456789"))
                        .or_else(|| replace_bytes(&payload, b"shrink-me-please", b"shrunk"));
                    match new {
                        Some(mut buf) => {
                            vigil_wire::checksum::fix_packet(&mut buf).expect("fix_packet");
                            assert!(vigil_wire::checksum::verify_packet(&buf));
                            batch.push_verdict(&vigil_nfq::Verdict::accept(id).with_payload(&buf)).unwrap();
                            modified += 1;
                        }
                        None => batch.push_verdict(&vigil_nfq::Verdict::accept(id)).unwrap(),
                    }
                }
                batch.flush().expect("flush verdicts");
            }
            let st = q.stats();
            (seen, modified, st)
        })
    };
    ready_rx.recv_timeout(Duration::from_secs(10)).expect("queue 9 open");
    for tool in ["iptables", "ip6tables"] {
        sh(
            &env.lab,
            env.gw(),
            &[
                tool,
                "-t",
                "mangle",
                "-A",
                "FORWARD",
                "-p",
                "udp",
                "--dport",
                "7777",
                "-j",
                "NFQUEUE",
                "--queue-num",
                "9",
            ],
        );
        sh(
            &env.lab,
            env.gw(),
            &[
                tool,
                "-t",
                "mangle",
                "-A",
                "FORWARD",
                "-p",
                "tcp",
                "--dport",
                "7778",
                "-j",
                "NFQUEUE",
                "--queue-num",
                "9",
            ],
        );
    }

    for addr in [V4_SERVER, V6_SERVER] {
        check(env.py(
            env.client(),
            &[
                "udp-send",
                addr,
                "7777",
                &format!("hello udp {addr}"),
                &format!("grow-me {addr}"),
                &format!("shrink-me-please {addr}"),
            ],
        ));
        check(env.py(env.client(), &["tcp-send", addr, "7778", &format!("hello tcp {addr}")]));
    }
    let expect_udp: Vec<String> = [V4_SERVER, V6_SERVER]
        .iter()
        .flat_map(|a| [format!("HELLO udp {a}"), format!("grown-by-vigil-0123456789 {a}"), format!("shrunk {a}")])
        .collect();
    let expect_tcp: Vec<String> = [V4_SERVER, V6_SERVER].iter().map(|a| format!("HELLO tcp {a}")).collect();
    let lines = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_to_string(p).unwrap_or_default().lines().map(String::from).collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (eu, et) = (sorted(expect_udp.clone()), sorted(expect_tcp.clone()));
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the server to receive the modified payloads", Duration::from_secs(10), || {
            lines(&udp_out) == eu && lines(&tcp_out) == et
        });
    }));
    stop.store(true, Ordering::SeqCst);
    let (seen, modified, qstats) = worker.join().expect("queue thread");
    println!("mangle: queue 9 saw {seen} packets, modified {modified}; stats {qstats:?}");
    assert!(res.is_ok(), "server got udp {:?} / tcp {:?}, expected {eu:?} / {et:?}", lines(&udp_out), lines(&tcp_out));
    assert_eq!(modified, 8, "6 UDP datagrams + 2 TCP segments modified");
    assert_eq!(qstats.send_errors, 0, "{qstats:?}");

    // The captured modified packets carry valid checksums (the server kernel accepted them too).
    // tcpdump writes each packet as it reads it (-U): wait until all 8 are in the file.
    let captured = || {
        let pkts = pcap_ip_packets(&std::fs::read(&pcap).unwrap_or_default());
        let mut checked: BTreeMap<&str, u32> = BTreeMap::new();
        for p in &pkts {
            for marker in ["HELLO", "grown-by-vigil", "shrunk"] {
                if p.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                    assert!(
                        vigil_wire::checksum::verify_packet(p),
                        "bad checksum on captured {marker} packet: {p:02x?}"
                    );
                    *checked.entry(marker).or_insert(0) += 1;
                }
            }
        }
        (pkts, checked)
    };
    let _ = std::panic::catch_unwind(|| {
        wait_until("tcpdump to write the 8 modified packets", Duration::from_secs(10), || {
            captured().1.values().sum::<u32>() >= 8
        })
    });
    signal(tcpdump.id(), libc::SIGTERM);
    let _ = tcpdump.wait_timeout(Duration::from_secs(5));
    let (pkts, checked) = captured();
    println!("mangle: {} packets captured at the server; verified checksums: {checked:?}", pkts.len());
    assert_eq!(checked.get("HELLO"), Some(&4), "{checked:?}");
    assert_eq!(checked.get("grown-by-vigil"), Some(&2), "{checked:?}");
    assert_eq!(checked.get("shrunk"), Some(&2), "{checked:?}");
}

// ---------------------------------------------------------------------------------------------
// 8. SIGHUP reload: a good config applies to new flows, a bad one is refused whole

#[test]
fn sighup_reload_applies_good_config_and_refuses_bad_one() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "reload");
    env.py_server(&["tcp-banner", "2323", V4_SERVER, V6_SERVER]);
    wait_listen(&env.lab, env.server(), "t", 2323, 2);
    let _lock = vigil_lock();
    let mut vigil = env.start_vigil("reload", NO_OFFLOAD);
    let (r, _) = env.tcp_get(V4_SERVER, 2323, 3.0);
    assert_eq!(r.expect("allowed before the reload"), "banner:2323\n");

    let reloads = |v: &VigilProc<'_>| u(&v.fresh_stats()["reloads"]);
    let write_config = |body: &str| {
        // Rewrite the very file vigil was started with (its [report] section included).
        let text = std::fs::read_to_string(&vigil.config).unwrap();
        let report = &text[text.find("[report]").unwrap()..];
        std::fs::write(&vigil.config, format!("{body}\n{report}")).unwrap();
    };

    write_config(&format!(
        "{NO_OFFLOAD}[[policy.rules]]\nname = \"no-2323\"\naction = \"block\"\ndst_ports = [2323]\n"
    ));
    signal(vigil.pid(), libc::SIGHUP);
    wait_until("the reload to be counted", Duration::from_secs(10), || reloads(&vigil) == 1);
    for addr in [V4_SERVER, V6_SERVER] {
        let (r, _) = env.tcp_get(addr, 2323, 2.0);
        assert!(r.is_err(), "new connections to {addr}:2323 are blocked after the reload: {r:?}");
    }

    // A broken file: reported, and the running policy (blocking 2323) stays.
    write_config("[[policy.rules]]\nname = \"broken\"\naction = \"allow\"\ndst_ports = [\"not-a-port\"]\n");
    signal(vigil.pid(), libc::SIGHUP);
    wait_until("the refusal to be logged", Duration::from_secs(10), || vigil.stderr_text().contains("reload refused"));
    let log = vigil.stderr_text();
    assert!(log.contains("not-a-port") && log.contains("line 4"), "the refusal says what and where:\n{log}");
    assert_eq!(reloads(&vigil), 1, "a refused reload is not counted");
    let (r, _) = env.tcp_get(V4_SERVER, 2323, 2.0);
    assert!(r.is_err(), "the old policy stays after a refused reload: {r:?}");
    vigil.stop();

    let flows = vigil.flows();
    let blocked = flows.iter().filter(|f| f["dport"] == 2323 && f["verdict"] == "block").count();
    let allowed = flows.iter().filter(|f| f["dport"] == 2323 && f["verdict"] == "allow").count();
    assert_eq!((allowed, blocked), (1, 3), "{flows:#?}");
    assert!(flows.iter().filter(|f| f["verdict"] == "block").all(|f| f["rule"] == "no-2323"));
}

// ---------------------------------------------------------------------------------------------
// 9. classification inline: TLS SNI, HTTP Host and DNS-learned names name real flows

#[test]
fn inline_classification_names_tls_http_and_dns_learned_flows() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "classify");
    // An HTTPS server with a self-signed certificate that answers any name, an HTTP server, a DNS
    // server that resolves the test names to the server, and a plain TCP service with no name.
    let key = env.dir.path("key.pem");
    let cert = env.dir.path("cert.pem");
    check({
        let mut c = Command::new("openssl");
        c.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vigil-test"]).args([
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        c
    });
    let https = format!(
        "import http.server, ssl\n\
         s = http.server.HTTPServer(('{V4_SERVER}', 8443), http.server.SimpleHTTPRequestHandler)\n\
         ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain({:?}, {:?})\n\
         s.socket = ctx.wrap_socket(s.socket, server_side=True)\n\
         s.serve_forever()\n",
        cert.to_str().unwrap(),
        key.to_str().unwrap()
    );
    let https_py = env.dir.write("https.py", &https);
    env.lab.spawn_in(env.server(), ["python3", https_py.to_str().unwrap()]).unwrap();
    let www = env.dir.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello\n").unwrap();
    env.http_servers(&www, 8080);
    env.py_server(&["tcp-banner", "2323", V4_SERVER, V6_SERVER]);
    env.dns_server("dropbox.com");
    wait_listen(&env.lab, env.server(), "t", 8443, 1);
    wait_listen(&env.lab, env.server(), "t", 2323, 2);
    wait_listen(&env.lab, env.server(), "u", 53, 1);

    let _lock = vigil_lock();
    let mut vigil = env.start_vigil("classify", "");
    let curl = |args: &[&str]| {
        let mut a = vec!["curl", "-sS", "-k", "--max-time", "10", "-o", "/dev/null"];
        a.extend_from_slice(args);
        sh(&env.lab, env.client(), &a);
    };
    curl(&["--resolve", "www.netflix.com:8443:198.18.2.2", "https://www.netflix.com:8443/"]);
    curl(&["--resolve", "portal.example.org:8080:198.18.2.2", "http://portal.example.org:8080/index.html"]);
    // The client resolves a name through the gateway, then connects to the address it got: that
    // connection carries no name of its own, vigil names it from the DNS answer.
    let answer = sh(&env.lab, env.client(), &["dig", "+short", "@198.18.2.2", "files.dropbox.com", "A"]);
    assert_eq!(answer.trim(), V4_SERVER, "the lab's DNS server answers");
    let (r, _) = env.tcp_get(V4_SERVER, 2323, 3.0);
    assert_eq!(r.expect("plain TCP service"), "banner:2323\n");
    vigil.stop();

    let flows = vigil.flows();
    let tls = one_flow(&flows, "tcp", V4_SERVER, 8443);
    assert_eq!(tls["protocol"], "TLS", "{tls:#}");
    assert_eq!(tls["hostname"], "www.netflix.com", "{tls:#}");
    assert_eq!(tls["name_source"], "sni", "{tls:#}");
    assert_eq!(tls["app"], "NetFlix", "{tls:#}");
    assert!(tls["category"].is_string(), "{tls:#}");
    assert!(tls["ja4"].as_str().is_some_and(|j| j.starts_with("t1")), "{tls:#}");
    assert!(tls["dpi_packets"].as_u64().is_some_and(|n| n <= 10), "named from the first packets: {tls:#}");

    let http = one_flow(&flows, "tcp", V4_SERVER, 8080);
    assert_eq!(
        (http["protocol"].as_str(), http["hostname"].as_str()),
        (Some("HTTP"), Some("portal.example.org")),
        "{http:#}"
    );
    assert_eq!(http["name_source"], "http", "{http:#}");

    let dns = one_flow(&flows, "udp", V4_SERVER, 53);
    assert_eq!(
        (dns["protocol"].as_str(), dns["hostname"].as_str()),
        (Some("DNS"), Some("files.dropbox.com")),
        "{dns:#}"
    );

    let plain = one_flow(&flows, "tcp", V4_SERVER, 2323);
    assert_eq!(plain["hostname"], "files.dropbox.com", "named by the DNS answer: {plain:#}");
    assert_eq!(plain["name_source"], "dns-cache", "{plain:#}");
    assert_eq!(plain["app"], "Dropbox", "{plain:#}");
}

// ---------------------------------------------------------------------------------------------
// 10. reports: known transfers end up in the session database within 1%, with and without
//     offload; DNS answers in the DNS log; blocked attempts as blocks with their rule

#[test]
fn reports_count_transfers_within_one_percent_and_log_dns_and_blocks() {
    if !root_or_skip() {
        return;
    }
    let env = Env::new(&SUITE, "reports");
    let www = env.dir.path("www");
    std::fs::create_dir_all(&www).unwrap();
    const BIG: u64 = 100 << 20;
    const SMALL: u64 = 20 << 20;
    sized_file(&www, "big", BIG);
    sized_file(&www, "small", SMALL);
    env.http_servers(&www, 8080);
    env.py_server(&["tcp-banner", "23", V4_SERVER, V6_SERVER]);
    env.dns_server("reports.test");
    env.lab.spawn_in(env.server(), ["iperf3", "-s", "-p", "5201"]).unwrap();
    wait_listen(&env.lab, env.server(), "t", 23, 2);
    wait_listen(&env.lab, env.server(), "u", 53, 1);
    wait_listen(&env.lab, env.server(), "t", 5201, 1);
    let _lock = vigil_lock();
    for (name, config, size) in [
        // Offloaded: vigil sees the first packets; the bytes come from conntrack.
        ("offload", "[[policy.rules]]\nname = \"no-telnet\"\naction = \"block\"\ndst_ports = [23]\n", BIG),
        // Every packet through vigil.
        (
            "queued",
            &*format!("{NO_OFFLOAD}[[policy.rules]]\nname = \"no-telnet\"\naction = \"block\"\ndst_ports = [23]\n"),
            SMALL,
        ),
    ] {
        let db = env.dir.path(&format!("{name}.db"));
        let report = format!("sqlite = {:?}\n", db.to_str().unwrap());
        let mut vigil = VigilProc::start_reporting(&env.lab, &env.dir, name, config, &report);
        let file = if size == BIG { "big" } else { "small" };
        assert_eq!(env.curl_size(V4_SERVER, 8080, file, &[]), size);
        // An upload measured by iperf3 itself (client to server). With -n the client stops after
        // writing 30 MiB and the server stops reading at the test's end, closing with unread data
        // (RST) when the path was slow: what crossed the wire lies between what the server read
        // and what the client wrote.
        let (out, _) = iperf_client(&env, &["-c", V4_SERVER, "-p", "5201", "-n", "30M"]).join().unwrap();
        let iperf = iperf_report(&out);
        let (iperf_sent, iperf_received) =
            (u(&iperf["end"]["sum_sent"]["bytes"]), u(&iperf["end"]["sum_received"]["bytes"]));
        let answer =
            sh(&env.lab, env.client(), &["dig", "+short", "@198.18.2.2", &format!("{name}.reports.test"), "A"]);
        assert_eq!(answer.trim(), V4_SERVER);
        let (r, _) = env.tcp_get(V4_SERVER, 23, 2.0);
        assert!(r.is_err(), "port 23 is blocked");
        vigil.stop();

        let cfg = vigil.config.to_str().unwrap().to_string();
        let sessions: Vec<Value> = check({
            let mut c = Command::new(VIGIL);
            c.args(["sessions", "--config", &cfg, "--since", "1h", "--format", "json"]);
            c
        })
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let http: Vec<&Value> = sessions.iter().filter(|s| s["dport"] == 8080 && s["dst"] == V4_SERVER).collect();
        assert_eq!(http.len(), 1, "one session for the transfer: {sessions:#?}");
        let bs = u(&http[0]["bytes_s2c"]);
        let over = (bs as f64 - size as f64) / size as f64 * 100.0;
        println!("{name}: body {size} B, session bytes_s2c {bs} B (+{over:.2} %), source {}", http[0]["bytes_source"]);
        // The session counts IP bytes: the body plus HTTP, TCP and IP headers (GSO on veth makes
        // the header share small). Within 1% of the body, and never less than it.
        assert!(
            bs >= size && over < 1.0,
            "{name}: bytes_s2c {bs} for a {size}-byte body (+{over:.2} %): {:#}",
            http[0]
        );
        // iperf3 opens a control and a data connection; the data one carries the upload.
        let data = sessions
            .iter()
            .filter(|s| s["dport"] == 5201)
            .max_by_key(|s| u(&s["bytes_c2s"]))
            .unwrap_or_else(|| panic!("no iperf3 session: {sessions:#?}"));
        let bc = u(&data["bytes_c2s"]);
        println!(
            "{name}: iperf3 wrote {iperf_sent} B, server read {iperf_received} B, session bytes_c2s {bc} B \
             ({:+.2} % of written), source {}",
            (bc as f64 - iperf_sent as f64) / iperf_sent as f64 * 100.0,
            data["bytes_source"]
        );
        // At least what the server read, at most what was written plus 1% (headers); when the
        // server read everything, that is within 1% of the transfer.
        assert!(
            bc >= iperf_received && bc as f64 <= iperf_sent as f64 * 1.01,
            "{name}: iperf3 wrote {iperf_sent} B, server read {iperf_received} B: {data:#}"
        );

        let dns = check({
            let mut c = Command::new(VIGIL);
            c.args(["report", "dns", "--config", &cfg, "--since", "1h", "--format", "csv"]);
            c
        });
        assert!(dns.contains(&format!("{name}.reports.test")) && dns.contains(V4_SERVER), "{dns}");
        let blocked = check({
            let mut c = Command::new(VIGIL);
            c.args(["report", "blocked", "--config", &cfg, "--since", "1h", "--format", "json"]);
            c
        });
        assert!(blocked.contains("no-telnet"), "{blocked}");
        let top = check({
            let mut c = Command::new(VIGIL);
            c.args(["report", "top-clients", "--config", &cfg, "--since", "1h", "--format", "csv"]);
            c
        });
        assert!(top.contains("198.18.1.2"), "{top}");
    }
}
