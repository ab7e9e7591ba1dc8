//! Time as the pipeline sees it: microseconds since the UNIX epoch, supplied by the caller
//! (the wall clock inline, the capture's timestamps in replay), so the pipeline stays pure.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const fn from_micros(us: u64) -> Self {
        Timestamp(us)
    }
    pub const fn from_secs(s: u64) -> Self {
        Timestamp(s * 1_000_000)
    }
    pub fn now() -> Self {
        // The one impure helper, for the shells' convenience; the pipeline never calls it.
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(d.as_micros() as u64)
    }
    pub fn micros(self) -> u64 {
        self.0
    }
    pub fn saturating_sub(self, other: Timestamp) -> std::time::Duration {
        std::time::Duration::from_micros(self.0.saturating_sub(other.0))
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

/// Serialized as seconds since the epoch with microsecond precision (what jq and SIEMs expect).
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_secs_f64())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(d)?;
        Ok(Timestamp((secs.max(0.0) * 1e6).round() as u64))
    }
}
