//! Flows named by other flows (`vigil_dpi::related`), on the nDPI corpus (skips when absent):
//! FTP data connections announced by their control connection (`ftp.pcap`), and the flows of a
//! call's UDP socket taking the application a TURN allocation revealed (`stun_signal.pcapng`,
//! `stun_wa_call.pcapng`).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::{replay, Capture, Expected, Flow, Key};
use vigil_dpi::{AppSource, ClassifierConfig, DnsCache, DpiContext, RelatedFlows};
use vigil_wire::L4Proto;

/// Replays one capture of the corpus with fresh caches: vigil's flows and nDPI's; None when the
/// corpus is absent.
fn capture(file: &str) -> Option<(HashMap<Key, Flow>, HashMap<Key, Expected>)> {
    let (captures, sigdb) = common::corpus()?;
    let Some(Capture { path, want, .. }) = captures.into_iter().find(|c| c.name == file) else {
        eprintln!("skipping: {file} not in the corpus");
        return None;
    };
    let (dns, related) = (DnsCache::new(1024), RelatedFlows::default());
    let ctx = DpiContext { sigdb: &sigdb, dns_cache: &dns, related: &related, config: ClassifierConfig::default() };
    Some((replay(&path, &ctx), want))
}

/// Every flow nDPI names `app` has that application in vigil too; returns how many.
fn agrees_with_ndpi(flows: &HashMap<Key, Flow>, want: &HashMap<Key, Expected>, app: &str) -> usize {
    let mut n = 0;
    for (k, e) in want.iter().filter(|(_, e)| e.app.as_deref() == Some(app) || e.master == app) {
        let f = flows.get(k).unwrap_or_else(|| panic!("flow {k:?} missing")).classifier.facts();
        assert_eq!(f.app.as_deref(), Some(app), "{k:?}: nDPI {}/{:?}", e.master, e.app);
        n += 1;
    }
    n
}

fn udp(a: &str, b: &str) -> Key {
    common::key(L4Proto::Udp, a.parse::<SocketAddr>().unwrap(), b.parse::<SocketAddr>().unwrap())
}

/// (protocol, app, app source) of a flow.
fn named(flows: &HashMap<Key, Flow>, k: &Key) -> (Option<&'static str>, Option<String>, Option<AppSource>) {
    let f = flows.get(k).unwrap_or_else(|| panic!("flow {k:?} missing")).classifier.facts();
    (f.protocol, f.app.as_deref().map(String::from), f.app_source)
}

#[test]
fn ftp_data_connections_are_announced() {
    let Some((flows, want)) = capture("ftp.pcap") else { return };
    assert_eq!(agrees_with_ndpi(&flows, &want, "FTP_DATA"), 1);
    let tcp = |a: &str, b: &str| common::key(L4Proto::Tcp, a.parse().unwrap(), b.parse().unwrap());
    let control = tcp("192.168.1.212:50694", "90.130.70.73:21");
    assert_eq!(named(&flows, &control), (Some("FTP_CONTROL"), Some("FTP_CONTROL".into()), None));
    // nDPI: FTP_DATA. Announced by "227 Entering Passive Mode (90,130,70,73,100,85)".
    let first = tcp("192.168.1.212:50695", "90.130.70.73:25685");
    assert_eq!(named(&flows, &first), (Some("FTP_DATA"), Some("FTP_DATA".into()), Some(AppSource::Announced)));
    assert_eq!(flows[&first].classifier.identified_after(), Some(1), "named at its SYN");
    // nDPI: Unknown. Announced by "227 Entering Passive Mode (90,130,70,73,95,203)", the control
    // connection's 32nd payload packet: still within the classifier's budget.
    let second = tcp("192.168.1.212:50696", "90.130.70.73:24523");
    assert_eq!(named(&flows, &second), (Some("FTP_DATA"), Some("FTP_DATA".into()), Some(AppSource::Announced)));
}

#[test]
fn signal_call_sockets_name_all_their_flows() {
    let Some((flows, want)) = capture("stun_signal.pcapng") else { return };
    assert_eq!(agrees_with_ndpi(&flows, &want, "SignalVoip"), 21);
    let client = "192.168.12.169";
    let mut own = 0;
    let mut inherited = 0;
    for (k, f) in &flows {
        assert_eq!(k.0, L4Proto::Udp, "{k:?}");
        let facts = f.classifier.facts();
        // nDPI: STUN.SignalVoip for every one of them.
        assert_eq!((facts.protocol, facts.app.as_deref()), (Some("STUN"), Some("SignalVoip")), "{k:?}");
        assert!(k.1.ip().to_string() == client || k.2.ip().to_string() == client);
        if k.1.port() == 3478 || k.2.port() == 3478 {
            // The TURN allocations carry REALM "signal.org" themselves.
            assert_eq!((facts.app_source, facts.hostname.as_deref()), (None, Some("signal.org")), "{k:?}");
            own += 1;
        } else {
            // ICE checks to Google's STUN server (started before the allocation), the unanswered
            // checks to the relay's port 443, the peer flows: the same sockets, no realm.
            assert_eq!((facts.app_source, facts.hostname.as_deref()), (Some(AppSource::Socket), None), "{k:?}");
            inherited += 1;
        }
    }
    assert_eq!((own, inherited), (6, 15));
    let early = udp("192.168.12.169:39518", "172.253.121.127:19302");
    assert_eq!(named(&flows, &early).2, Some(AppSource::Socket));
}

#[test]
fn whatsapp_call_socket_names_peer_and_media_flows() {
    let Some((flows, want)) = capture("stun_wa_call.pcapng") else { return };
    assert_eq!(agrees_with_ndpi(&flows, &want, "WhatsAppCall"), 12);
    // nDPI: STUN.WhatsAppCall and SRTP.WhatsAppCall (vigil does not tell SRTP from the STUN that
    // opens the flow); the allocations of socket 192.168.12.156:49526 name it.
    for peer in ["10.82.40.241:40436", "93.33.118.87:41107"] {
        let k = udp("192.168.12.156:49526", peer);
        assert_eq!(named(&flows, &k), (Some("STUN"), Some("WhatsAppCall".into()), Some(AppSource::Socket)), "{peer}");
    }
    let allocation = udp("192.168.12.156:49526", "157.240.203.62:3478");
    assert_eq!(named(&flows, &allocation), (Some("STUN"), Some("WhatsAppCall".into()), None));
}
