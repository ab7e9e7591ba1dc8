//! Error type of the crate.

use std::fmt;
use std::io;

use crate::wire::WireError;

/// Everything that can go wrong talking to nfnetlink_queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NfqError {
    /// A system call failed (`op` names what we were doing).
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The kernel answered a configuration request with an error.
    #[error("{}", KernelRefusal { op, errno: *errno, ext_msg: ext_msg.as_deref() })]
    Kernel {
        /// What was refused, e.g. `"bind queue 3"`.
        op: String,
        /// Positive errno value.
        errno: i32,
        /// Extended-ack text from the kernel, when it sent one.
        ext_msg: Option<String>,
    },
    /// The kernel did not acknowledge a configuration request in time.
    #[error("no answer from the kernel to {op} within {timeout_ms} ms")]
    NoAck { op: String, timeout_ms: u64 },
    /// A message could not be encoded/decoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The request needs a feature this queue does not have.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A conntrack request could not be encoded or its answer decoded.
    #[error(transparent)]
    Conntrack(#[from] crate::conntrack::CtError),
}

impl NfqError {
    /// The errno of a kernel refusal or failed system call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NfqError::Kernel { errno, .. } => Some(*errno),
            NfqError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str) -> Self {
        NfqError::Io { op, source: io::Error::last_os_error() }
    }
}

struct KernelRefusal<'a> {
    op: &'a str,
    errno: i32,
    ext_msg: Option<&'a str>,
}

impl fmt::Display for KernelRefusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let err = io::Error::from_raw_os_error(self.errno);
        // io::Error's Display appends " (os error N)"; keep only the text.
        let text = err.to_string();
        let text = text.split(" (os error").next().unwrap_or(&text);
        write!(f, "kernel refused to {}: {}", self.op, text)?;
        if let Some(m) = self.ext_msg {
            write!(f, " [{m}]")?;
        }
        if let Some(h) = hint(self.op, self.errno) {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

fn hint(op: &str, errno: i32) -> Option<&'static str> {
    if op.contains("conntrack") {
        return match errno {
            libc::EPERM => Some("needs CAP_NET_ADMIN in the network namespace"),
            libc::EOPNOTSUPP => Some("the running kernel lacks this feature"),
            _ => None,
        };
    }
    match errno {
        libc::EPERM if op.starts_with("bind") => {
            Some("is another process bound to it? binding also needs CAP_NET_ADMIN")
        }
        libc::EPERM => Some("needs CAP_NET_ADMIN, and the queue must be bound by this socket"),
        libc::EBUSY => Some("this socket already has the queue bound"),
        libc::ENODEV => Some("the queue is not bound"),
        libc::EOPNOTSUPP => Some("the running kernel lacks this feature"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_refusal_message() {
        let e = NfqError::Kernel { op: "bind queue 3".into(), errno: libc::EPERM, ext_msg: None };
        assert_eq!(
            e.to_string(),
            "kernel refused to bind queue 3: Operation not permitted \
             (is another process bound to it? binding also needs CAP_NET_ADMIN)"
        );
        assert_eq!(e.errno(), Some(libc::EPERM));
    }
}
