use std::io;
use std::path::PathBuf;

/// Errors from [`CaptureReader`](crate::CaptureReader).
///
/// Every error returned by [`CaptureReader::next_packet`](crate::CaptureReader::next_packet) is
/// final: the reader yields `None` afterwards.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The capture file could not be opened.
    #[error("cannot open capture {}: {source}", path.display())]
    Open {
        /// The path given to [`CaptureReader::open`](crate::CaptureReader::open).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// Reading from the underlying reader failed.
    #[error("I/O error reading capture: {0}")]
    Io(#[from] io::Error),

    /// The input is neither pcap nor pcapng.
    #[error("not a pcap or pcapng capture: {detail} (first bytes {magic:02x?})")]
    UnknownFormat {
        /// The first four bytes of the input.
        magic: [u8; 4],
        /// What the magic looks like, if recognisable (e.g. gzip).
        detail: &'static str,
    },

    /// A pcap file whose link-layer type cannot be decapsulated to IP. Returned by
    /// [`CaptureReader::open`](crate::CaptureReader::open) /
    /// [`CaptureReader::from_reader`](crate::CaptureReader::from_reader). (In pcapng files,
    /// packets of such interfaces are skipped and counted instead, see
    /// [`CaptureStats::skipped_unsupported_link`](crate::CaptureStats::skipped_unsupported_link).)
    #[error(
        "unsupported link-layer type {0} (supported: Ethernet 1, RAW 101/12/14, IPv4 228, IPv6 229, \
         NULL 0, LOOP 108, Linux SLL 113, SLL2 276)"
    )]
    UnsupportedLinkType(u32),

    /// The file is damaged or truncated at `offset` (bytes from the start of the input; the start
    /// of the record or block that could not be read).
    #[error("corrupt capture at byte offset {offset}: {reason}")]
    Corrupt {
        /// Byte offset of the offending record/block.
        offset: u64,
        /// Human-readable description.
        reason: String,
    },
}

pub(crate) fn corrupt(offset: u64, reason: impl Into<String>) -> CaptureError {
    CaptureError::Corrupt { offset, reason: reason.into() }
}
