//! `vigil demo`: a self-contained tour on network namespaces.
//!
//! Builds client, gateway and server namespaces, runs the real `vigil run` inline on the gateway
//! with a demo policy, drives real clients (curl, dig) at real servers (python3's http.server,
//! dnsmasq, a TCP listener on the telnet port), checks each outcome, prints vigil's flow records and
//! counters, and deletes everything, also on Ctrl-C. Nothing outside the namespaces is touched.

use crate::lab::Lab;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vigil_engine::FlowRecord;

const DEMO_POLICY: &str = r#"# The demo's config: what `vigil run --config` reads on a real gateway too.
[engine]
queues = "0-1"          # two queues, two worker threads (queue-balance spreads flows)

[firewall]
chains = ["forward"]    # a routed gateway: inspect what it forwards
queue_packets = 32      # only the first 32 packets of a connection ever reach vigil

[[policy.rules]]
name = "no-telnet"
action = "block"
dst_ports = [23]

[[policy.rules]]
name = "no-netbios"
action = "block"
l4 = ["tcp", "udp"]
dst_ports = ["137-139", 445]

[policy]
default = "allow"
"#;

const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("iptables-restore", "iptables"),
    ("ip6tables-restore", "iptables"),
    ("curl", "curl"),
    ("dig", "dnsutils"),
    ("dnsmasq", "dnsmasq-base"),
    ("python3", "python3"),
    ("openssl", "openssl"),
];

fn which(tool: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file()
}

/// One step of the tour: what was tried, what vigil should do, what happened.
struct Outcome {
    what: String,
    expect_pass: bool,
    passed: bool,
    detail: String,
}

pub fn run(hold: bool) -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and firewall rules inside them: run it as root (sudo vigil demo)");
    }
    let missing: Vec<String> =
        TOOLS.iter().filter(|(t, _)| !which(t)).map(|(t, p)| format!("{t} (apt-get install {p})")).collect();
    if !missing.is_empty() {
        bail!("the demo needs: {}", missing.join(", "));
    }
    let removed = crate::lab::cleanup_stale("vdemo");
    if !removed.is_empty() {
        println!("removed leftovers of an earlier interrupted demo: {}", removed.join(", "));
    }

    let dir = std::env::temp_dir().join(format!("vigil-demo-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("www")).context("creating the demo's temporary directory")?;
    println!("== building the lab: client 198.18.1.2 / fd76:1::2  ->  gateway  ->  server 198.18.2.2 / fd76:2::2");
    let lab = Lab::create("vdemo").context("creating the namespace lab")?;

    // Ctrl-C / SIGTERM: kill what the lab started (vigil included), delete the namespaces.
    let handle = lab.handle();
    let dir_for_signal = dir.clone();
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let signal_handle = signals.handle();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            eprintln!("\ninterrupted: tearing the lab down");
            handle.destroy();
            let _ = std::fs::remove_dir_all(&dir_for_signal);
            std::process::exit(130);
        }
    });

    let result = tour(&lab, &dir, hold);
    println!("== tearing down the lab");
    lab.destroy();
    signal_handle.close();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tour(lab: &Lab, dir: &Path, hold: bool) -> Result<()> {
    let (c, g, s) = (lab.client_ns().to_string(), lab.gateway_ns().to_string(), lab.server_ns().to_string());
    // Servers.
    std::fs::write(dir.join("www/index.html"), "<h1>hello from the server namespace</h1>\n")?;
    let big = vec![0x5au8; 20 << 20];
    std::fs::write(dir.join("www/big.bin"), &big)?;
    let www = dir.join("www");
    let _http = lab.spawn_in(
        &s,
        ["python3", "-m", "http.server", "80", "--bind", "::", "--directory"]
            .iter()
            .map(|a| a.to_string())
            .chain([www.display().to_string()]),
    )?;
    let _telnet = lab.spawn_in(
        &s,
        [
            "python3",
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET6);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('::',23));s.listen()\nwhile True:\n c,_=s.accept();c.sendall(b'login: ');c.close()",
        ],
    )?;
    let _dns = lab.spawn_in(
        &s,
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=198.18.2.2",
            "--address=/demo.test/198.18.2.2",
            "--user=root",
            "--pid-file",
            "--log-facility=-",
        ],
    )?;
    // HTTPS with a throwaway self-signed certificate that answers any name.
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=vigil-demo"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !made.success() {
        bail!("openssl could not make the demo's certificate");
    }
    let https = format!(
        "import http.server, ssl, functools\n\
         h = functools.partial(http.server.SimpleHTTPRequestHandler, directory={www:?})\n\
         s = http.server.ThreadingHTTPServer(('198.18.2.2', 443), h)\n\
         c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain({cert:?}, {key:?})\n\
         s.socket = c.wrap_socket(s.socket, server_side=True)\n\
         s.serve_forever()\n",
        www = www.display().to_string(),
        cert = cert.display().to_string(),
        key = key.display().to_string()
    );
    let _https = lab.spawn_in(&s, ["python3", "-c", &https])?;
    wait_for(Duration::from_secs(10), || {
        tcp_listening(lab, &s, 80) && tcp_listening(lab, &s, 23) && tcp_listening(lab, &s, 443)
    })
    .context("the demo's servers did not start")?;

    // Baseline: without vigil the lab forwards everything, so what is blocked later is vigil's doing.
    println!("== without vigil, the client reaches every server:");
    for addr in ["198.18.2.2", "fd76:2::2"] {
        let (ok, took) = tcp_connect(lab, &c, addr, 23);
        println!("    telnet port 23 on {addr}: {} ({took:.2?})", if ok { "connected" } else { "FAILED" });
        if !ok {
            bail!("the lab does not forward traffic even without vigil; is IPv4/IPv6 forwarding blocked on this host?");
        }
    }

    // vigil itself, inline on the gateway.
    let cfg_path = dir.join("vigil.toml");
    let flow_log = dir.join("flows.jsonl");
    let stats = dir.join("stats.json");
    let config = format!(
        "{DEMO_POLICY}\n[report]\nflow_log = \"{}\"\nstats_file = \"{}\"\nsqlite = \"{}\"\n",
        flow_log.display(),
        stats.display(),
        dir.join("vigil.db").display()
    );
    std::fs::write(&cfg_path, &config)?;
    println!("== starting `vigil run` on the gateway with this config:\n");
    for line in DEMO_POLICY.lines() {
        println!("    {line}");
    }
    let exe = std::env::current_exe().context("locating the vigil binary")?;
    let log_path = dir.join("vigil.log");
    let mut cmd = lab.exec(&g, [exe.as_os_str(), "run".as_ref(), "--config".as_ref(), cfg_path.as_os_str()]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(&log_path)?);
    let vigil = lab.spawn_command(cmd)?;
    if wait_for(Duration::from_secs(10), || stats.exists() || matches!(vigil.try_wait(), Ok(Some(_)))).is_err()
        || !stats.exists()
    {
        bail!("vigil did not start:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
    }
    let rules = Command::new(&exe).args(["rules", "show", "--netns", &g]).output()?;
    println!("\n== the rules vigil installed on the gateway (vigil rules show):\n");
    for line in String::from_utf8_lossy(&rules.stdout).lines() {
        println!("    {line}");
    }

    println!("\n== driving traffic from the client\n");
    let mut outcomes = Vec::new();
    let curl = |args: &[&str]| -> (bool, String, Duration) {
        let t = Instant::now();
        let mut a = vec![
            "curl",
            "-sSk", // -k: the lab's certificate is self-signed
            "-o",
            "/dev/null",
            "--connect-timeout",
            "2",
            "-m",
            "20",
            "-w",
            "%{http_code} %{size_download}",
        ];
        a.extend_from_slice(args);
        match lab.exec(&c, a).output() {
            Ok(o) => {
                let text = if o.status.success() {
                    String::from_utf8_lossy(&o.stdout).into_owned()
                } else {
                    String::from_utf8_lossy(&o.stderr).trim().to_string()
                };
                (o.status.success(), text, t.elapsed())
            }
            Err(e) => (false, e.to_string(), t.elapsed()),
        }
    };
    // Names are pinned with --resolve, as a browser would have resolved them: vigil reads them from
    // the HTTP Host header and the TLS ClientHello (SNI) and names the application.
    for (what, url, pin) in [
        ("HTTP over IPv4", "http://www.demo.test/", "www.demo.test:80:198.18.2.2"),
        ("HTTP over IPv6", "http://www.demo.test/", "www.demo.test:80:[fd76:2::2]"),
        ("HTTPS (TLS SNI)", "https://www.netflix.com/", "www.netflix.com:443:198.18.2.2"),
    ] {
        let (ok, text, took) = curl(&["--resolve", pin, url]);
        outcomes.push(Outcome {
            what: format!("{what}: GET {url}"),
            expect_pass: true,
            passed: ok,
            detail: format!("{text} bytes in {took:.2?}"),
        });
    }
    let t = Instant::now();
    let dig = lab.exec(&c, ["dig", "+short", "+time=2", "+tries=1", "@198.18.2.2", "www.demo.test", "A"]).output()?;
    let answer = String::from_utf8_lossy(&dig.stdout).trim().to_string();
    outcomes.push(Outcome {
        what: "DNS over UDP: dig www.demo.test @198.18.2.2".into(),
        expect_pass: true,
        passed: answer == "198.18.2.2",
        detail: format!("answer {answer:?} in {:.2?}", t.elapsed()),
    });
    let (ok, text, took) = curl(&["--resolve", "files.demo.test:80:198.18.2.2", "http://files.demo.test/big.bin"]);
    outcomes.push(Outcome {
        what: "20 MB download (offloaded to the kernel once named)".into(),
        expect_pass: true,
        passed: ok && text.ends_with(&(20u64 << 20).to_string()),
        detail: format!("{} in {took:.2?} ({:.0} Mbit/s)", text, (20u64 << 20) as f64 * 8.0 / took.as_secs_f64() / 1e6),
    });
    for (what, addr) in [("telnet over IPv4", "198.18.2.2"), ("telnet over IPv6", "fd76:2::2")] {
        let (ok, took) = tcp_connect(lab, &c, addr, 23);
        outcomes.push(Outcome {
            what: format!("{what}: connect to port 23"),
            expect_pass: false,
            passed: ok,
            detail: format!("{} after {took:.2?}", if ok { "connected" } else { "no connection" }),
        });
    }
    let (ok, _, took) = curl(&["--max-time", "2", "telnet://198.18.2.2:445"]);
    outcomes.push(Outcome {
        what: "SMB port 445 (nobody listens; blocked before the server could refuse)".into(),
        expect_pass: false,
        passed: ok,
        detail: format!("no answer after {took:.2?}"),
    });

    let mut unexpected = 0;
    for o in &outcomes {
        let label = match (o.passed, o.expect_pass) {
            (true, true) => "PASSED ",
            (false, false) => "BLOCKED",
            (true, false) => "PASSED (expected BLOCKED!)",
            (false, true) => "FAILED (expected to pass!)",
        };
        if o.passed != o.expect_pass {
            unexpected += 1;
        }
        println!("  [{label}] {:<70} {}", o.what, o.detail);
    }

    if hold {
        println!("\nthe lab is up: try `ip netns exec {c} curl http://198.18.2.2/` (Ctrl-C to end)");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    // Stop vigil cleanly: it removes its rules and writes every flow it still tracks.
    unsafe { libc::kill(vigil.id() as i32, libc::SIGTERM) };
    let status = vigil.wait_timeout(Duration::from_secs(10))?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Some(st) if st.success() => {}
        other => bail!("vigil did not stop cleanly ({other:?}):\n{log}"),
    }
    let flows = read_flows(&flow_log)?;
    println!("\n== vigil's flow records (the same fields as `vigil replay --format jsonl`)\n");
    let mut table = Vec::new();
    crate::replay::write_table(&mut table, &flows)?;
    for line in String::from_utf8_lossy(&table).lines() {
        println!("    {line}");
    }
    if flows.iter().any(|f| f.offloaded) {
        println!("    (+ offloaded: once decided, the rest of the flow stayed in the kernel and is not counted here;");
        println!("     ? protocol guessed from the port: the blocked flows never carried a payload)");
    }
    let st: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
    let total = &st["total"];
    println!(
        "\n== counters: {} packets seen by vigil ({} accepted, {} dropped), {} flows, {} offloaded to the kernel",
        total["packets"], total["accepted"], total["dropped"], total["flows_created"], total["flows_offloaded"]
    );
    for q in st["queues"].as_array().into_iter().flatten() {
        println!("   queue {}: {} packets received, {} ENOBUFS", q["queue"], q["received"], q["enobufs"]);
    }
    println!(
        "   (the kernel's queue-balance hash keeps each address pair on one queue; one client and one server use one)"
    );
    let after = Command::new(&exe).args(["rules", "show", "--netns", &g]).output()?;
    let leftover = String::from_utf8_lossy(&after.stdout).lines().filter(|l| l.contains("-A ")).count();
    println!("   rules left on the gateway after vigil exited: {leftover}");
    // The same reports an admin runs on a real gateway, from the session database.
    for (title, args) in [
        ("vigil report top-apps", vec!["report", "top-apps"]),
        ("vigil report blocked", vec!["report", "blocked"]),
        ("vigil report dns", vec!["report", "dns"]),
    ] {
        let out = Command::new(&exe).args(&args).arg("--config").arg(&cfg_path).output()?;
        println!("\n== {title}\n");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("    {line}");
        }
        if !out.status.success() {
            bail!("{title} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    if unexpected > 0 {
        bail!("{unexpected} step(s) did not go as the policy says; vigil's log:\n{log}");
    }
    if leftover > 0 {
        bail!("vigil left rules behind");
    }
    println!("\nall steps went as the policy says.");
    Ok(())
}

fn read_flows(path: &PathBuf) -> Result<Vec<FlowRecord>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<FlowRecord> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        out.push(serde_json::from_str(line).context("bad line in the flow log")?);
    }
    out.sort_by_key(|f| f.first_seen);
    Ok(out)
}

/// Opens a TCP connection from `ns` (bash's /dev/tcp: no extra tool), 2 s at most.
fn tcp_connect(lab: &Lab, ns: &str, addr: &str, port: u16) -> (bool, Duration) {
    let t = Instant::now();
    let script = format!("exec 3<>/dev/tcp/{addr}/{port}");
    let ok =
        lab.exec(ns, ["timeout", "2", "bash", "-c", &script]).output().map(|o| o.status.success()).unwrap_or(false);
    (ok, t.elapsed())
}

fn tcp_listening(lab: &Lab, ns: &str, port: u16) -> bool {
    lab.exec(ns, ["ss", "-Htln", &format!("sport = :{port}")])
        .output()
        .map(|o| !String::from_utf8_lossy(&o.stdout).trim().is_empty())
        .unwrap_or(false)
}

fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out after {limit:?}")
}
