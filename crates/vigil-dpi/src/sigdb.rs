//! The application signature database: applications and categories as data.

use crate::facts::Facts;
use std::net::IpAddr;
use vigil_wire::L4Proto;

#[derive(Debug, thiserror::Error)]
pub enum SigDbError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

#[derive(Debug, Default, Clone)]
pub struct SignatureDb {}

impl SignatureDb {
    /// The database shipped with vigil.
    pub fn builtin() -> Result<Self, SigDbError> {
        Ok(SignatureDb {})
    }
    /// Parses a database (or an admin's additions) in the documented TOML format.
    pub fn from_toml(_text: &str, _origin: &str) -> Result<Self, SigDbError> {
        Ok(SignatureDb {})
    }
    /// Adds `other`'s applications; on a name clash `other` wins (admins override the shipped data).
    pub fn merge(&mut self, _other: SignatureDb) {}
    /// Fills `facts.app` and `facts.category` from what is known (hostname, ALPN, JA4, ports,
    /// server address, a dissector's app hint). Leaves them alone when nothing matches.
    pub fn classify(&self, _facts: &mut Facts, _client: (IpAddr, u16), _server: (IpAddr, u16), _l4: L4Proto) {}
    pub fn app_count(&self) -> usize {
        0
    }
    pub fn category_count(&self) -> usize {
        0
    }
}
