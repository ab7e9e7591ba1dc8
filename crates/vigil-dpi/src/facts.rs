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

/// Which identity field of a certificate a [`CertId`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertField {
    SubjectCn,
    SubjectOrg,
    IssuerCn,
    IssuerOrg,
}

impl CertField {
    pub fn as_str(self) -> &'static str {
        match self {
            CertField::SubjectCn => "subject-cn",
            CertField::SubjectOrg => "subject-o",
            CertField::IssuerCn => "issuer-cn",
            CertField::IssuerOrg => "issuer-o",
        }
    }
}

/// A certificate's subject or issuer commonName or organizationName, as text (a label, never
/// trusted: the certificate is not validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertId {
    pub field: CertField,
    pub value: String,
}

/// At most this many certificate identities per flow (the leaf certificates of both directions,
/// four fields each, repeated attributes included).
pub const MAX_CERT_IDS: usize = 8;

/// Where a flow's protocol or application came from when another flow taught it (see
/// [`crate::related`]); a flow named by its own evidence has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppSource {
    /// A control connection announced this connection (FTP PASV/EPSV/PORT/EPRT): protocol and
    /// application.
    Announced,
    /// An earlier flow of the same UDP socket was identified as a call application (STUN realm or
    /// vendor attributes): the application.
    Socket,
}

impl AppSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AppSource::Announced => "announced",
            AppSource::Socket => "socket",
        }
    }
}

/// A connection a control flow announced (FTP PASV/EPSV/PORT/EPRT): `from` will open a TCP
/// connection to `to`, from a port nobody announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    /// The protocol the connection will carry ("FTP_DATA").
    pub protocol: &'static str,
    pub from: IpAddr,
    pub to: (IpAddr, u16),
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
    /// Subject and issuer CN and O of the leaf certificates (TLS <= 1.2, server's then client's),
    /// de-duplicated, at most [`MAX_CERT_IDS`]: for the signature database's `cert` hints only.
    /// Empty (no allocation) for flows without certificates.
    pub cert_ids: Vec<CertId>,
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
    /// Application of a call whose UDP socket this flow shares (learned by an earlier flow, see
    /// [`crate::related`]): evidence below the flow's own hostname and app hint.
    pub related_app: Option<&'static str>,
    /// `app` (or for announced connections `protocol` too) came from another flow.
    pub app_source: Option<AppSource>,
    /// Connections this flow announced since the classifier last took them (FTP control).
    pub announced: Vec<Announced>,
    /// The flow's ends that sent STUN requests, by the requests' direction (`Dir::index`: 0 the
    /// client, 1 the server): those ran a STUN/ICE agent on their socket. A TURN or STUN server
    /// only answers (and sends indications), so it is never one.
    pub stun_requesters: [bool; 2],
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
