//! Flow classification: what protocol a flow speaks, which application and category it belongs to,
//! and which name it carries (TLS SNI, QUIC SNI, HTTP Host, DNS-learned names).
//!
//! Pure and I/O-free like the rest of the pipeline. Per flow, a [`Classifier`] offers each packet's
//! payload to the candidate [`dissect::Dissector`]s for the flow's transport; candidates that say
//! "not mine" drop out, the first to identify the protocol takes the flow, and it keeps extracting
//! facts until it is done. Then the [`sigdb::SignatureDb`] names the application and category from
//! the facts (hostname, ALPN, JA4, ports, addresses). What one flow teaches about others (DNS
//! answers, FTP data connections, the application of a call's socket) goes to shared caches
//! ([`DnsCache`], [`RelatedFlows`]). Each dissector is its own module, parses with
//! bounds-checked reads only, and never panics on any input.

pub mod classify;
pub mod dissect;
pub mod dns_cache;
pub mod facts;
pub mod ja4;
pub mod reasm;
pub mod related;
mod sharded;
pub mod sigdb;
pub mod view;

pub use classify::{Classifier, ClassifierConfig, DnsLogEntry, DpiContext};
pub use dns_cache::DnsCache;
pub use facts::{AppSource, CertField, CertId, Facts, NameSource};
pub use related::RelatedFlows;
pub use sigdb::SignatureDb;
pub use view::{Dir, PacketView};
