//! ClientHello and ServerHello parsing (RFC 8446 §4.1.2-4.1.3, RFC 6347 §4.2.1 for the DTLS
//! cookie), shared by TLS over TCP, QUIC and DTLS.
//!
//! Zero-copy: a parsed hello borrows the handshake bytes; lists (ciphers, extensions, ALPN,
//! versions, signature algorithms) stay raw slices, validated once at parse time and walked by
//! small iterators, so parsing allocates nothing whatever the peer sends.

use thiserror::Error;

/// Handshake message types this module reads.
pub const HS_CLIENT_HELLO: u8 = 1;
pub const HS_SERVER_HELLO: u8 = 2;
pub const HS_CERTIFICATE: u8 = 11;
pub const HS_CERTIFICATE_REQUEST: u8 = 13;
pub const HS_SERVER_HELLO_DONE: u8 = 14;

/// Extension numbers this module looks into.
pub const EXT_SERVER_NAME: u16 = 0x0000;
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
pub const EXT_ALPN: u16 = 0x0010;
pub const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
pub const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;

/// Why a hello could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TlsError {
    /// The input ends before the message does (more bytes may still come).
    #[error("truncated handshake message")]
    Truncated,
    /// A handshake message of another type.
    #[error("unexpected handshake type {0}")]
    UnexpectedType(u8),
    /// A length field or list is inconsistent: this is not a valid hello.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// RFC 8701 GREASE values (0x?a?a with both bytes equal) are noise by design; fingerprints skip them.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Bounds-checked big-endian reader over a borrowed slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], TlsError> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(TlsError::Truncated)?;
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, TlsError> {
        Ok(self.bytes(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, TlsError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u24(&mut self) -> Result<usize, TlsError> {
        let b = self.bytes(3)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
    /// A vector with a 1-byte length prefix.
    pub(crate) fn vec8(&mut self) -> Result<&'a [u8], TlsError> {
        let n = self.u8()?;
        self.bytes(usize::from(n))
    }
    /// A vector with a 2-byte length prefix.
    pub(crate) fn vec16(&mut self) -> Result<&'a [u8], TlsError> {
        let n = self.u16()?;
        self.bytes(usize::from(n))
    }
}

/// Iterator over a validated list of big-endian u16 values.
#[derive(Debug, Clone)]
pub struct U16s<'a>(std::slice::ChunksExact<'a, u8>);

impl<'a> U16s<'a> {
    fn new(raw: &'a [u8]) -> Self {
        U16s(raw.chunks_exact(2))
    }
}

impl Iterator for U16s<'_> {
    type Item = u16;
    fn next(&mut self) -> Option<u16> {
        self.0.next().map(|c| u16::from_be_bytes([c[0], c[1]]))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for U16s<'_> {}

/// Iterator over `(type, data)` of a validated extensions block; stops at the first framing error.
#[derive(Debug, Clone)]
pub struct Extensions<'a>(Reader<'a>);

impl<'a> Iterator for Extensions<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let ty = self.0.u16().ok()?;
        let data = self.0.vec16().ok()?;
        Some((ty, data))
    }
}

/// Iterator over the protocol names of a validated ALPN list (1-byte length prefixed strings).
#[derive(Debug, Clone)]
pub struct Alpns<'a>(Reader<'a>);

impl<'a> Iterator for Alpns<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        self.0.vec8().ok()
    }
}

/// A parsed ClientHello, borrowing the handshake bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// `legacy_version` (0x0303 for TLS 1.3 too; 0xfefd/0xfeff for DTLS).
    pub legacy_version: u16,
    pub random: &'a [u8],
    pub session_id: &'a [u8],
    /// DTLS only: the HelloVerifyRequest cookie (possibly empty). `None` for TLS and QUIC.
    pub cookie: Option<&'a [u8]>,
    pub compression_methods: &'a [u8],
    /// The first host_name of the server_name extension, when it is valid UTF-8.
    pub server_name: Option<&'a str>,
    /// A server_name extension is present (JA4's `d`/`i` flag), even if its content was unusable.
    pub has_server_name: bool,
    /// An encrypted_client_hello extension is present: `server_name` is the public (outer) name.
    pub ech: bool,
    cipher_suites: &'a [u8],
    /// `None` when the hello has no extensions block at all (SSLv3-style).
    extensions: Option<&'a [u8]>,
    alpn: &'a [u8],
    supported_versions: &'a [u8],
    signature_algorithms: &'a [u8],
}

impl<'a> ClientHello<'a> {
    /// Offered cipher suites in order, GREASE included.
    pub fn cipher_suites(&self) -> U16s<'a> {
        U16s::new(self.cipher_suites)
    }
    /// Extensions `(type, data)` in order, GREASE included.
    pub fn extensions(&self) -> Extensions<'a> {
        Extensions(Reader::new(self.extensions.unwrap_or(&[])))
    }
    /// ALPN protocol names offered, in order.
    pub fn alpn_protocols(&self) -> Alpns<'a> {
        Alpns(Reader::new(self.alpn))
    }
    /// supported_versions entries in order, GREASE included.
    pub fn supported_versions(&self) -> U16s<'a> {
        U16s::new(self.supported_versions)
    }
    /// signature_algorithms entries in order, GREASE included.
    pub fn signature_algorithms(&self) -> U16s<'a> {
        U16s::new(self.signature_algorithms)
    }
    /// The highest version offered: the largest non-GREASE supported_versions entry, else
    /// `legacy_version`. DTLS numbers count down (0xfefc is newer than 0xfefd), hence the flip.
    pub fn max_version(&self) -> u16 {
        let key = |v: u16| if v >> 8 == 0xfe { 0x0400 + (0xff - (v & 0xff)) } else { v };
        self.supported_versions().filter(|v| !is_grease(*v)).max_by_key(|v| key(*v)).unwrap_or(self.legacy_version)
    }
}

/// Parses a TLS (or QUIC CRYPTO) ClientHello handshake message: 1-byte type, 3-byte length, body.
/// Bytes after the message are ignored. `Err(Truncated)` means more bytes could make it parse.
pub fn parse_client_hello(handshake: &[u8]) -> Result<ClientHello<'_>, TlsError> {
    parse_client_hello_with(handshake, false)
}

/// [`parse_client_hello`] for DTLS when `dtls` is set: the body has a cookie between session id
/// and cipher suites. The header is still the 4-byte TLS one: the DTLS dissector passes the
/// defragmented message with the message_seq and fragment fields stripped.
pub fn parse_client_hello_with(handshake: &[u8], dtls: bool) -> Result<ClientHello<'_>, TlsError> {
    let mut r = Reader::new(handshake);
    let ty = r.u8()?;
    if ty != HS_CLIENT_HELLO {
        return Err(TlsError::UnexpectedType(ty));
    }
    let len = r.u24()?;
    parse_client_hello_body(r.bytes(len)?, dtls)
}

/// Parses a ClientHello body (after the handshake header).
pub fn parse_client_hello_body(body: &[u8], dtls: bool) -> Result<ClientHello<'_>, TlsError> {
    // Inside a complete message, running short means a bad length, not missing bytes.
    let short = |e: TlsError| if e == TlsError::Truncated { TlsError::Malformed("client hello length") } else { e };
    let mut r = Reader::new(body);
    let legacy_version = r.u16().map_err(short)?;
    let random = r.bytes(32).map_err(short)?;
    let session_id = r.vec8().map_err(short)?;
    if session_id.len() > 32 {
        return Err(TlsError::Malformed("session id"));
    }
    let cookie = if dtls { Some(r.vec8().map_err(short)?) } else { None };
    let cipher_suites = r.vec16().map_err(short)?;
    if cipher_suites.len() % 2 != 0 {
        return Err(TlsError::Malformed("cipher suites"));
    }
    let compression_methods = r.vec8().map_err(short)?;
    let mut ch = ClientHello {
        legacy_version,
        random,
        session_id,
        cookie,
        compression_methods,
        server_name: None,
        has_server_name: false,
        ech: false,
        cipher_suites,
        extensions: None,
        alpn: &[],
        supported_versions: &[],
        signature_algorithms: &[],
    };
    if r.is_empty() {
        return Ok(ch); // no extensions (SSLv3, old TLS 1.0 clients)
    }
    let exts = r.vec16().map_err(short)?;
    ch.extensions = Some(exts);
    let mut er = Reader::new(exts);
    let (mut sni, mut alpn, mut sv, mut sa) = (false, false, false, false);
    while !er.is_empty() {
        let ty = er.u16().map_err(|_| TlsError::Malformed("extension header"))?;
        let data = er.vec16().map_err(|_| TlsError::Malformed("extension length"))?;
        // Duplicates are illegal (RFC 8446 §4.2); the first one counts, like most stacks read it.
        match ty {
            EXT_SERVER_NAME if !sni => {
                sni = true;
                ch.has_server_name = true;
                ch.server_name = server_name(data);
            }
            EXT_ALPN if !alpn => {
                alpn = true;
                ch.alpn = valid_alpn(data).unwrap_or(&[]);
            }
            EXT_SUPPORTED_VERSIONS if !sv => {
                sv = true;
                ch.supported_versions = Reader::new(data).vec8().ok().filter(|l| l.len() % 2 == 0).unwrap_or(&[]);
            }
            EXT_SIGNATURE_ALGORITHMS if !sa => {
                sa = true;
                ch.signature_algorithms = Reader::new(data).vec16().ok().filter(|l| l.len() % 2 == 0).unwrap_or(&[]);
            }
            EXT_ENCRYPTED_CLIENT_HELLO => ch.ech = true,
            _ => {}
        }
    }
    Ok(ch)
}

/// First host_name (type 0) of a server_name extension (RFC 6066 §3), if well-formed UTF-8.
fn server_name(data: &[u8]) -> Option<&str> {
    let mut r = Reader::new(Reader::new(data).vec16().ok()?);
    while !r.is_empty() {
        let ty = r.u8().ok()?;
        let name = r.vec16().ok()?;
        if ty == 0 {
            return std::str::from_utf8(name).ok().filter(|n| !n.is_empty());
        }
    }
    None
}

/// The protocol name list of an ALPN extension (RFC 7301 §3.1) if every entry is well-formed.
fn valid_alpn(data: &[u8]) -> Option<&[u8]> {
    let list = Reader::new(data).vec16().ok()?;
    let mut r = Reader::new(list);
    while !r.is_empty() {
        r.vec8().ok()?;
    }
    Some(list)
}

/// The fields of a ServerHello that classification uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHello<'a> {
    pub legacy_version: u16,
    pub cipher_suite: u16,
    /// supported_versions' selected_version (TLS 1.3, DTLS 1.3).
    pub selected_version: Option<u16>,
    /// The ALPN protocol the server selected.
    pub alpn: Option<&'a [u8]>,
    /// The random is RFC 8446's HelloRetryRequest marker: another ServerHello follows.
    pub hello_retry: bool,
}

impl ServerHello<'_> {
    /// The negotiated version: selected_version when present, else legacy_version.
    pub fn version(&self) -> u16 {
        self.selected_version.unwrap_or(self.legacy_version)
    }
}

/// SHA-256("HelloRetryRequest"), the random of a HelloRetryRequest (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11,
    0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Parses a ServerHello handshake message (4-byte header + body; `dtls` as for the ClientHello
/// only changes nothing in the body, the flag exists for symmetry with the DTLS dissector).
pub fn parse_server_hello(handshake: &[u8]) -> Result<ServerHello<'_>, TlsError> {
    let mut r = Reader::new(handshake);
    let ty = r.u8()?;
    if ty != HS_SERVER_HELLO {
        return Err(TlsError::UnexpectedType(ty));
    }
    let len = r.u24()?;
    parse_server_hello_body(r.bytes(len)?)
}

/// Parses a ServerHello body (after the handshake header).
pub fn parse_server_hello_body(body: &[u8]) -> Result<ServerHello<'_>, TlsError> {
    let short = |e: TlsError| if e == TlsError::Truncated { TlsError::Malformed("server hello length") } else { e };
    let mut r = Reader::new(body);
    let legacy_version = r.u16().map_err(short)?;
    let random = r.bytes(32).map_err(short)?;
    let session_id = r.vec8().map_err(short)?;
    if session_id.len() > 32 {
        return Err(TlsError::Malformed("session id"));
    }
    let cipher_suite = r.u16().map_err(short)?;
    let _compression = r.u8().map_err(short)?;
    let mut sh = ServerHello {
        legacy_version,
        cipher_suite,
        selected_version: None,
        alpn: None,
        hello_retry: random == HRR_RANDOM,
    };
    if r.is_empty() {
        return Ok(sh);
    }
    let mut er = Reader::new(r.vec16().map_err(short)?);
    while !er.is_empty() {
        let ty = er.u16().map_err(|_| TlsError::Malformed("extension header"))?;
        let data = er.vec16().map_err(|_| TlsError::Malformed("extension length"))?;
        match ty {
            EXT_SUPPORTED_VERSIONS if data.len() == 2 => {
                sh.selected_version = Some(u16::from_be_bytes([data[0], data[1]]))
            }
            EXT_ALPN => sh.alpn = valid_alpn(data).and_then(|l| Reader::new(l).vec8().ok()),
            _ => {}
        }
    }
    Ok(sh)
}

/// The version's name as nDPI prints it ("TLSv1.3", "DTLSv1.2").
pub fn version_name(v: u16) -> Option<&'static str> {
    Some(match v {
        0x0300 => "SSLv3",
        0x0301 => "TLSv1",
        0x0302 => "TLSv1.1",
        0x0303 => "TLSv1.2",
        0x0304 => "TLSv1.3",
        0xfeff => "DTLSv1.0",
        0xfefd => "DTLSv1.2",
        0xfefc => "DTLSv1.3",
        _ => return None,
    })
}
