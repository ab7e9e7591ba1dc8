//! Replays the nDPI corpus (when present) through the full classifier and scores the tunnel, P2P,
//! real-time media and application dissectors (BitTorrent, WireGuard, OpenVPN, IPsec, STUN,
//! RTP/RTCP, SIP, Telegram, Discord, Zoom, TeamViewer, Spotify, Dropbox, Tailscale, WhatsApp)
//! against nDPI's per-flow results, and counts flows where one of these names appears although
//! nDPI says something else (precision matters more than recall). Skips when the corpus is absent.
//!
//! `cargo test -p vigil-dpi --test corpus_tunnels_media -- --nocapture` prints the table.

mod common;

use std::collections::BTreeMap;

use common::{replay, Capture};
use vigil_dpi::{ClassifierConfig, DnsCache, DpiContext, RelatedFlows};

/// Names (nDPI master protocols or applications) these dissectors produce.
const SCORED: &[&str] = &[
    "BitTorrent",
    "WireGuard",
    "OpenVPN",
    "IPSec",
    "STUN",
    "DTLS",
    "RTP",
    "RTCP",
    "SRTP",
    "SIP",
    "Telegram",
    "Discord",
    "Zoom",
    "TeamViewer",
    "Spotify",
    "Dropbox",
    "Tailscale",
    "WhatsApp",
    "Skype_TeamsCall",
    "WhatsAppCall",
    "SignalVoip",
    "GoogleCall",
    "FacebookVoip",
];

/// Protocol names only these dissectors set: seeing one where nDPI disagrees is a false positive.
const OWN: &[&str] = &[
    "BitTorrent",
    "WireGuard",
    "OpenVPN",
    "STUN",
    "RTP",
    "RTCP",
    "SIP",
    "Telegram",
    "Discord",
    "Zoom",
    "TeamViewer",
    "Spotify",
    "Dropbox",
    "Tailscale",
    "WhatsApp",
];

#[derive(Default, Debug)]
struct Score {
    flows: u32,
    protocol: u32,
}

#[test]
fn tunnels_and_media_match_ndpi() {
    let Some((captures, sigdb)) = common::corpus() else { return };
    let cache = DnsCache::new(65_536);
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut false_positives = Vec::new();
    for Capture { name, path, want } in captures {
        // Each capture is its own world: what its flows teach each other starts empty.
        let related = RelatedFlows::default();
        let ctx =
            DpiContext { sigdb: &sigdb, dns_cache: &cache, related: &related, config: ClassifierConfig::default() };
        let flows = replay(&path, &ctx);
        for (k, e) in &want {
            let facts = flows.get(k).map(|f| f.classifier.facts().clone()).unwrap_or_default();
            let got = facts.protocol.unwrap_or("Unknown");
            let names = [Some(e.master.as_str()), e.app.as_deref()];
            let ok = names.contains(&Some(got))
                || facts.app_hint.is_some() && names.contains(&facts.app_hint)
                || facts.app.as_deref().is_some_and(|a| names.contains(&Some(a)));
            let scored = names.iter().flatten().find(|n| SCORED.contains(n));
            if let Some(label) = scored {
                let s = scores.entry(label.to_string()).or_default();
                s.flows += 1;
                if ok {
                    s.protocol += 1;
                } else {
                    misses.push(format!("{name}: {:?} {} <-> {}: want {:?} got {got}", k.0, k.1, k.2, names));
                }
            } else if OWN.contains(&got) && !ok {
                false_positives.push(format!("{name}: {:?} {} <-> {}: nDPI {:?}, vigil {got}", k.0, k.1, k.2, names));
            }
        }
    }
    println!("{:<16} {:>6} {:>9}", "name", "flows", "right");
    let (mut total, mut right) = (0, 0);
    for (p, s) in &scores {
        println!("{p:<16} {:>6} {:>9}", s.flows, s.protocol);
        total += s.flows;
        right += s.protocol;
    }
    println!("total {right}/{total}, false positives {}", false_positives.len());
    for m in &misses {
        println!("  miss {m}");
    }
    for m in &false_positives {
        println!("  false positive {m}");
    }
    assert!(total == 0 || right * 10 >= total * 7, "only {right}/{total} flows right");
    assert!(false_positives.len() <= 2, "{} flows wrongly named: {false_positives:#?}", false_positives.len());
}
