//! Protocol dissectors, one module each.
//!
//! A dissector sees the packets of one flow (both directions, in arrival order, payload-bearing
//! packets plus TCP SYNs) and answers with a [`Step`]. While the protocol is unknown, every
//! candidate sees every packet; one that answers [`Step::NotMine`] is dropped; the first to answer
//! [`Step::Identified`] or [`Step::Done`] takes the flow and alone sees later packets until it
//! answers `Done` (or the classifier's packet budget runs out).
//!
//! Rules for every dissector: read with bounds checks only (`get`, `split_at_checked`, the wire
//! helpers), never index blindly, never panic, never allocate in proportion to a length field the
//! peer controls without a cap. Set `facts.protocol` when identifying. Unit tests use real bytes.

use crate::facts::Facts;
use crate::view::PacketView;
use vigil_wire::L4Proto;

pub mod apps;
pub mod bittorrent;
pub mod dhcp;
pub mod dns;
pub mod dtls;
pub mod ftp;
pub mod http;
pub mod http2;
pub mod ipsec;
pub mod kerberos;
pub mod ldap;
pub mod mail;
pub mod mqtt;
pub mod netbios;
pub mod ntp;
pub mod openvpn;
pub mod quic;
pub mod rdp;
pub mod rtp;
pub mod sip;
pub mod smb;
pub mod ssdp;
pub mod ssh;
pub mod stun;
pub mod tls;
pub mod tor;
pub mod wireguard;

#[cfg(test)]
pub(crate) mod testutil;

/// A dissector's answer for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not this protocol: stop offering this flow's packets.
    NotMine,
    /// Cannot tell yet; offer the next packet.
    NeedMore,
    /// This protocol (`facts.protocol` is set) and there is more to extract: offer the next packets.
    Identified,
    /// This protocol, nothing more to extract.
    Done,
}

/// One protocol's recognizer, holding whatever per-flow state it needs.
pub trait Dissector: Send {
    /// Short name, for diagnostics and tests.
    fn name(&self) -> &'static str;
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step;
    /// True when [`Step::Identified`] already identifies the flow completely (its protocol carries
    /// no name, so a policy can decide on it at once) and later packets serve other purposes only,
    /// such as FTP control lines announcing data connections. By default a flow that is
    /// `Identified` but carries no name yet counts as identified only when its dissector is done.
    fn named_when_identified(&self) -> bool {
        false
    }
}

/// The candidates for a new flow, most specific first. Zero-sized dissectors cost no allocation.
// Uniform `::default()`: a stateless dissector may grow state without touching this list.
#[allow(clippy::default_constructed_unit_structs)]
pub fn candidates(l4: L4Proto) -> Vec<Box<dyn Dissector>> {
    match l4 {
        L4Proto::Tcp => vec![
            Box::new(tls::Tls::default()),
            Box::new(http::Http::default()),
            // After HTTP/1 (far more common, and it drops a flow starting "PRI" at once).
            Box::new(http2::Http2::default()),
            Box::new(ssh::Ssh::default()),
            Box::new(dns::Dns::default()),
            Box::new(ftp::Ftp::default()),
            Box::new(mail::Mail::default()),
            Box::new(mqtt::Mqtt::default()),
            Box::new(netbios::Netbios::default()),
            Box::new(smb::Smb::default()),
            Box::new(kerberos::Kerberos::default()),
            Box::new(ldap::Ldap::default()),
            Box::new(rdp::Rdp::default()),
            Box::new(bittorrent::BitTorrent::default()),
            Box::new(openvpn::OpenVpn::default()),
            Box::new(tor::Tor::default()),
            Box::new(stun::Stun::default()),
            Box::new(sip::Sip::default()),
            Box::new(apps::Apps::default()),
        ],
        L4Proto::Udp => vec![
            Box::new(quic::Quic::default()),
            Box::new(dns::Dns::default()),
            Box::new(dtls::Dtls::default()),
            Box::new(dhcp::Dhcp::default()),
            Box::new(ntp::Ntp::default()),
            Box::new(ssdp::Ssdp::default()),
            Box::new(netbios::Netbios::default()),
            Box::new(kerberos::Kerberos::default()),
            Box::new(ldap::Ldap::default()),
            Box::new(stun::Stun::default()),
            Box::new(rtp::Rtp::default()),
            Box::new(sip::Sip::default()),
            Box::new(wireguard::WireGuard::default()),
            Box::new(openvpn::OpenVpn::default()),
            Box::new(ipsec::Ipsec::default()),
            Box::new(bittorrent::BitTorrent::default()),
            Box::new(rdp::Rdp::default()),
            Box::new(mqtt::Mqtt::default()),
            Box::new(apps::Apps::default()),
        ],
        _ => Vec::new(),
    }
}
