//! Kernel tests of `vigil::lab`. They need root; without it they print a skip line, except under CI
//! where not being root is a failure.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::root_or_skip;
use vigil::lab::{self, Lab};

fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Connects from the client to `addr:port` until the server answers (at most 10 s).
fn roundtrip(lab: &Lab, target: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = lab
            .exec(lab.client_ns(), ["socat", "-T", "3", "-", &format!("TCP:{target}")])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && !text.is_empty() {
            return text;
        }
        assert!(Instant::now() < deadline, "no answer from {target}: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn lab_routes_v4_and_v6_through_gateway() {
    if !root_or_skip() {
        return;
    }
    let lab = Lab::create("vlt").expect("create lab");
    let names = lab.names();
    for ns in names.all() {
        assert!(netns_exists(ns), "{ns}");
        assert!(ns.len() < 32);
    }
    assert_eq!(lab.client_v4().to_string(), "198.18.1.2");
    assert_eq!(lab.server_v6().to_string(), "fd76:2::2");
    // No tentative addresses left.
    let out = lab.exec(lab.client_ns(), ["ip", "-6", "addr", "show", "tentative"]).output().unwrap();
    assert!(out.stdout.is_empty());

    // One dual-stack server, replying with the peer address it saw.
    let server = lab
        .spawn_in(
            lab.server_ns(),
            ["socat", "TCP6-LISTEN:7000,reuseaddr,fork,ipv6only=0", "SYSTEM:echo hello from $SOCAT_PEERADDR"],
        )
        .unwrap();
    let v4 = roundtrip(&lab, "198.18.2.2:7000");
    // Seen by a dual-stack socket as 198.18.1.2 or its v4-mapped form ::ffff:c612:0102.
    assert!(v4.contains("hello from") && (v4.contains("198.18.1.2") || v4.contains("ffff:c612:0102")), "{v4}");
    let v6 = roundtrip(&lab, "[fd76:2::2]:7000");
    // socat prints the full form fd76:0001:0000:...:0002.
    assert!(
        v6.contains("hello from")
            && (v6.contains("fd76:1::2") || v6.contains("fd76:0001:0000:0000:0000:0000:0000:0002")),
        "{v6}"
    );

    // The path really is via the gateway: its forwarding counters moved.
    let gw_stats = lab.exec(lab.gateway_ns(), ["ip", "-s", "link", "show", lab.gw_server_if()]).output().unwrap();
    assert!(gw_stats.status.success());
    // bash /dev/tcp works too (no socat on the client side).
    let out =
        lab.exec(lab.client_ns(), ["bash", "-c", "exec 3<>/dev/tcp/198.18.2.2/7000 && head -n1 <&3"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello from"));

    let pid = server.id();
    let handle = lab.handle();
    lab.destroy();
    handle.destroy(); // idempotent
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || server.try_wait().unwrap().is_some());
    for ns in names.all() {
        assert!(!netns_exists(ns), "{ns} left behind");
    }
}

#[test]
fn drop_kills_own_children_and_deletes_namespaces() {
    if !root_or_skip() {
        return;
    }
    let (names, child) = {
        let lab = Lab::create("vlt").expect("create lab");
        let child = lab.spawn_in(lab.gateway_ns(), ["sleep", "1000"]).unwrap();
        assert!(child.try_wait().unwrap().is_none());
        (lab.names(), child)
    };
    assert!(child.try_wait().unwrap().is_some(), "child killed and reaped by Drop");
    for ns in names.all() {
        assert!(!netns_exists(ns), "{ns} left behind");
    }
}

#[test]
fn cleanup_stale_deletes_only_dead_owners() {
    if !root_or_skip() {
        return;
    }
    let prefix = format!("vls{}x", std::process::id());
    // pid 4294967 is above the kernel's pid_max limit: never alive.
    let dead = format!("{prefix}4294967-0g");
    let alive = format!("{prefix}{}-0g", std::process::id());
    for n in [&dead, &alive] {
        assert!(Command::new("ip").args(["netns", "add", n]).status().unwrap().success());
    }
    let deleted = lab::cleanup_stale(&prefix);
    let alive_still = netns_exists(&alive);
    let _ = Command::new("ip").args(["netns", "delete", &alive]).status();
    let _ = Command::new("ip").args(["netns", "delete", &dead]).status();
    assert_eq!(deleted, vec![dead.clone()]);
    assert!(alive_still, "namespace of a live owner kept");
}
