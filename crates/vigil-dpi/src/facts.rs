//! What classification learns about a flow.

use std::net::IpAddr;
use std::sync::Arc;

/// Where a flow's hostname came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// TLS ClientHello server_name (also inside QUIC and DTLS).
    Sni,
    /// HTTP Host header (or CONNECT target).
    Http,
    /// The query name of a DNS flow itself.
    Dns,
    /// Learned from a DNS answer that resolved the server's address.
    DnsCache,
    /// A certificate name (TLS 1.2 server certificate).
    Certificate,
    /// Another protocol's own name field (DHCP hostname, SSDP/mDNS names, STUN realm, ...).
    Protocol,
}

impl NameSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::Sni => "sni",
            NameSource::Http => "http",
            NameSource::Dns => "dns",
            NameSource::DnsCache => "dns-cache",
            NameSource::Certificate => "certificate",
            NameSource::Protocol => "protocol",
        }
    }
}

/// A DNS answer record worth remembering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAnswer {
    Addr { name: String, addr: IpAddr, ttl: u32 },
    Cname { name: String, target: String, ttl: u32 },
}

/// DNS facts of the last message seen on a DNS flow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsFacts {
    pub query: Option<String>,
    /// Query type number (1 A, 28 AAAA, 5 CNAME, 65 HTTPS, 64 SVCB, ...).
    pub qtype: Option<u16>,
    pub rcode: Option<u8>,
    pub is_response: bool,
    pub answers: Vec<DnsAnswer>,
    /// Transaction id, to pair queries with responses.
    pub id: u16,
}

/// Everything known about a flow's application layer. Dissectors fill what their protocol carries.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// L7 protocol, named as nDPI names it where one exists ("TLS", "QUIC", "HTTP", "DNS", "SSH",
    /// "BitTorrent", "STUN", ...), so reports line up with other tools.
    pub protocol: Option<&'static str>,
    /// The protocol was guessed from the port because no dissector recognised the payload (the
    /// flow carried none, or too little): weaker evidence, reported as such.
    pub protocol_guessed: bool,
    /// Application and category, from the signature database (or a dissector that knows).
    pub app: Option<Arc<str>>,
    pub category: Option<Arc<str>>,
    pub hostname: Option<String>,
    pub name_source: Option<NameSource>,
    /// JA4 fingerprint of the TLS/QUIC/DTLS ClientHello.
    pub ja4: Option<String>,
    /// ALPN protocols offered by the client, in order.
    pub alpn_offered: Vec<String>,
    /// ALPN chosen by the server, when seen.
    pub alpn: Option<String>,
    /// Negotiated TLS version as text ("TLSv1.3"), when seen.
    pub tls_version: Option<&'static str>,
    /// The ClientHello carried an encrypted_client_hello extension (hostname is the outer SNI).
    pub ech: bool,
    /// Names from the server certificate (TLS 1.2: subject CN and SANs).
    pub cert_names: Vec<String>,
    pub user_agent: Option<String>,
    pub http_method: Option<String>,
    pub http_path: Option<String>,
    /// SSH or other banners ("SSH-2.0-OpenSSH_9.2p1").
    pub client_banner: Option<String>,
    pub server_banner: Option<String>,
    /// DNS message facts (DNS, mDNS, LLMNR flows).
    pub dns: Option<DnsFacts>,
    /// DHCP: client hostname, vendor class, parameter request list (device identification).
    pub dhcp_hostname: Option<String>,
    pub dhcp_vendor_class: Option<String>,
    pub dhcp_params: Vec<u8>,
    /// Application a dissector identified on its own (STUN vendor attributes, Telegram, ...),
    /// used when the signature database has nothing better.
    pub app_hint: Option<&'static str>,
}

impl Facts {
    /// Sets the hostname unless one from a better source is already there.
    pub fn set_hostname(&mut self, name: &str, source: NameSource) {
        let name = name.trim().trim_end_matches('.');
        if name.is_empty() || self.hostname.is_some() && source == NameSource::DnsCache {
            return;
        }
        if self.hostname.is_none() || self.name_source == Some(NameSource::DnsCache) {
            self.hostname = Some(name.to_ascii_lowercase());
            self.name_source = Some(source);
        }
    }
}
