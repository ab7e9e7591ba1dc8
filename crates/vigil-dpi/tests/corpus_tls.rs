//! Replays the nDPI corpus (when present) through the full classifier for TLS over TCP: flows
//! picked up mid-stream, named from their record framing, and the precision of every TLS flow
//! named from its payload (not a port guess). Skips when the corpus is absent.
//!
//! `cargo test -p vigil-dpi --test corpus_tls -- --nocapture` prints the disagreements.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{key, replay, Capture};
use vigil_dpi::{ClassifierConfig, DnsCache, DpiContext, RelatedFlows};
use vigil_wire::L4Proto;

/// Flows whose capture starts after their handshake: only TLS records (nDPI: TLS).
const MIDSTREAM: &[(&str, &str, &str)] = &[
    // TLS 1.2 application data on port 80, both ways (a port guess said HTTP).
    ("anydesk.pcapng", "192.168.149.129:36351", "51.83.239.144:80"),
    // TLS 1.0 records one way only, retransmitted, then an alert (no guess for port 5223).
    ("whatsapp_login_chat.pcap", "17.110.229.14:5223", "192.168.2.4:49193"),
];

#[test]
fn midstream_flows_are_tls() {
    let Some((_, sigdb)) = common::corpus() else { return };
    let cache = DnsCache::new(1024);
    let related = RelatedFlows::default();
    let ctx = DpiContext { sigdb: &sigdb, dns_cache: &cache, related: &related, config: ClassifierConfig::default() };
    for (file, a, b) in MIDSTREAM {
        let flows = replay(&Path::new(common::CORPUS).join(file), &ctx);
        let (a, b): (SocketAddr, SocketAddr) = (a.parse().unwrap(), b.parse().unwrap());
        let flow = flows.get(&key(L4Proto::Tcp, a, b)).unwrap_or_else(|| panic!("{file}: no flow {a} <-> {b}"));
        let facts = flow.classifier.facts();
        assert_eq!(facts.protocol, Some("TLS"), "{file} {a} <-> {b}");
        assert!(!facts.protocol_guessed, "{file} {a} <-> {b}: TLS from the payload, not the port");
        assert_eq!(facts.hostname, None, "{file} {a} <-> {b}: no name in the records");
    }
}

/// TLS flows without SNI named by their certificates' subject or issuer (the `cert` hints):
/// AnyDesk's peer-to-peer connections (mutual TLS, self-signed "AnyDesk Client" on both ends) and
/// a relay connection ("AnyNet Relay" issued by "AnyNet Root CA") on port 80. nDPI: TLS.AnyDesk.
const NAMED_BY_CERTIFICATE: &[(&str, &str, &str, &str)] = &[
    ("anydesk.pcapng", "192.168.1.187:54164", "192.168.1.178:7070", "AnyDesk"),
    ("anydesk.pcapng", "192.168.1.178:52039", "192.168.1.187:7070", "AnyDesk"),
    ("anydesk.pcapng", "192.168.149.129:43535", "51.83.238.219:80", "AnyDesk"),
];

#[test]
fn certificate_identities_name_the_application() {
    let Some((_, sigdb)) = common::corpus() else { return };
    let cache = DnsCache::new(1024);
    let related = RelatedFlows::default();
    let ctx = DpiContext { sigdb: &sigdb, dns_cache: &cache, related: &related, config: ClassifierConfig::default() };
    for (file, a, b, app) in NAMED_BY_CERTIFICATE {
        let flows = replay(&Path::new(common::CORPUS).join(file), &ctx);
        let (a, b): (SocketAddr, SocketAddr) = (a.parse().unwrap(), b.parse().unwrap());
        let flow = flows.get(&key(L4Proto::Tcp, a, b)).unwrap_or_else(|| panic!("{file}: no flow {a} <-> {b}"));
        let facts = flow.classifier.facts();
        assert_eq!(facts.protocol, Some("TLS"), "{file} {a} <-> {b}");
        assert_eq!(facts.hostname, None, "{file} {a} <-> {b}: no SNI, no host name in the certificate");
        assert_eq!(facts.app.as_deref(), Some(*app), "{file} {a} <-> {b}: {:?}", facts.cert_ids);
        // Named by the time the flow counted as identified (when a policy decides).
        assert!(flow.classifier.identified_after().is_some(), "{file} {a} <-> {b}");
    }
}

/// Every TCP flow named TLS from its payload is TLS to nDPI too (master protocol or application),
/// so the mid-stream record check names no other protocol's flow TLS.
#[test]
fn tls_from_payload_agrees_with_ndpi() {
    let Some((captures, sigdb)) = common::corpus() else { return };
    let cache = DnsCache::new(65_536);
    let related = RelatedFlows::default();
    let ctx = DpiContext { sigdb: &sigdb, dns_cache: &cache, related: &related, config: ClassifierConfig::default() };
    let (mut named, mut wrong) = (0, Vec::new());
    for Capture { name, path, want } in captures {
        let flows = replay(&path, &ctx);
        for (k, flow) in &flows {
            let facts = flow.classifier.facts();
            if k.0 != L4Proto::Tcp || facts.protocol != Some("TLS") || facts.protocol_guessed {
                continue;
            }
            let Some(e) = want.get(k) else { continue };
            named += 1;
            if e.master != "TLS" && e.app.as_deref() != Some("TLS") {
                wrong.push(format!("{name}: {} <-> {}: nDPI {}.{:?}", k.1, k.2, e.master, e.app));
            }
        }
    }
    println!("{named} TCP flows named TLS from their payload, {} not TLS to nDPI", wrong.len());
    for w in &wrong {
        println!("  {w}");
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
