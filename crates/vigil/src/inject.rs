//! Sends the packets `vigil_wire::build` makes (TCP resets, ICMP unreachables, the HTTP block
//! page) through raw sockets of the current network namespace.
//!
//! The packets are complete IP packets: `IPPROTO_RAW` sockets with header inclusion send them as
//! they are, with any source address (the gateway speaks for the client or the server). The kernel
//! only routes them by destination and fills nothing in (our checksums are complete).
//!
//! Injected packets are locally generated: they traverse OUTPUT and POSTROUTING, never FORWARD, so
//! vigil's FORWARD queue rules do not see (nor re-queue) them. They carry `SO_MARK` so that rules in
//! OUTPUT/POSTROUTING, or policy routing, can tell them apart when needed.
//!
//! IPv6 header inclusion (`IPV6_HDRINCL`) exists since Linux 4.5; without it [`Injector::open`]
//! keeps IPv4 only, logs a warning, and [`Injector::send`] fails for IPv6 packets.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one injector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectStats {
    pub sent: u64,
    pub errors: u64,
}

/// Raw sockets sending prebuilt IPv4/IPv6 packets. `send` takes `&self`: share it between threads.
#[derive(Debug)]
pub struct Injector {
    v4: OwnedFd,
    v6: Option<OwnedFd>,
    sent: AtomicU64,
    errors: AtomicU64,
}

impl Injector {
    /// Opens the raw sockets in the calling thread's network namespace (they stay bound to it).
    /// `mark` (0 = none) is set as `SO_MARK` on every packet; setting it needs CAP_NET_ADMIN, like
    /// the raw sockets need CAP_NET_RAW. An IPv4 failure is an error; an IPv6 failure only disables
    /// IPv6 injection, with a warning.
    pub fn open(mark: u32) -> io::Result<Injector> {
        let v4 = raw_socket(libc::AF_INET).map_err(|e| context(e, "raw IPv4 socket (needs CAP_NET_RAW)"))?;
        set_mark(&v4, mark)?;
        let v6 = match open_v6(mark) {
            Ok(fd) => Some(fd),
            Err(e) => {
                log::warn!("inject: IPv6 injection disabled (no IPv6 rejects/block pages): {e}");
                None
            }
        };
        Ok(Injector { v4, v6, sent: AtomicU64::new(0), errors: AtomicU64::new(0) })
    }

    /// True when IPv6 packets can be sent.
    pub fn ipv6_enabled(&self) -> bool {
        self.v6.is_some()
    }

    /// Sends one complete IP packet to its destination address, choosing the socket by the
    /// version nibble. Never blocks: a full socket buffer is an error (counted), not a stall of
    /// the caller.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        let r = self.send_inner(packet);
        let counter = if r.is_ok() { &self.sent } else { &self.errors };
        counter.fetch_add(1, Ordering::Relaxed);
        r
    }

    fn send_inner(&self, packet: &[u8]) -> io::Result<()> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("inject: {what}"));
        match packet.first().map(|b| b >> 4) {
            Some(4) if packet.len() >= 20 => {
                let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
                // SAFETY: all-zero is a valid sockaddr_in.
                let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
                send_to(&self.v4, packet, &sa)
            }
            Some(6) if packet.len() >= 40 => {
                let fd = self.v6.as_ref().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::Unsupported, "inject: IPv6 injection unavailable (no IPV6_HDRINCL)")
                })?;
                let mut a = [0u8; 16];
                a.copy_from_slice(&packet[24..40]);
                let dst = Ipv6Addr::from(a);
                // SAFETY: all-zero is a valid sockaddr_in6.
                let mut sa: libc::sockaddr_in6 = unsafe { mem::zeroed() };
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr = dst.octets();
                send_to(fd, packet, &sa)
            }
            Some(4 | 6) => Err(invalid("packet shorter than its IP header")),
            _ => Err(invalid("not an IPv4/IPv6 packet")),
        }
    }

    pub fn stats(&self) -> InjectStats {
        InjectStats { sent: self.sent.load(Ordering::Relaxed), errors: self.errors.load(Ordering::Relaxed) }
    }
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("inject: {what}: {e}"))
}

fn open_v6(mark: u32) -> io::Result<OwnedFd> {
    let fd = raw_socket(libc::AF_INET6).map_err(|e| context(e, "raw IPv6 socket"))?;
    // IPPROTO_RAW implies header inclusion for IPv6 too on recent kernels; ask explicitly anyway.
    setsockopt_u32(&fd, libc::IPPROTO_IPV6, libc::IPV6_HDRINCL, 1)
        .map_err(|e| context(e, "IPV6_HDRINCL (Linux >= 4.5)"))?;
    set_mark(&fd, mark)?;
    Ok(fd)
}

fn raw_socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_mark(fd: &OwnedFd, mark: u32) -> io::Result<()> {
    if mark == 0 {
        return Ok(());
    }
    setsockopt_u32(fd, libc::SOL_SOCKET, libc::SO_MARK, mark).map_err(|e| context(e, "SO_MARK (needs CAP_NET_ADMIN)"))
}

fn setsockopt_u32(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: u32) -> io::Result<()> {
    // SAFETY: the option value is a live u32 of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const u32).cast(),
            mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn send_to<A>(fd: &OwnedFd, packet: &[u8], addr: &A) -> io::Result<()> {
    // SAFETY: buffer and address are live for the call, with the lengths passed.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            libc::MSG_DONTWAIT,
            (addr as *const A).cast(),
            mem::size_of::<A>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else if n as usize != packet.len() {
        Err(io::Error::new(io::ErrorKind::WriteZero, format!("inject: sent {n} of {} bytes", packet.len())))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_ip_without_a_socket_call() {
        // Only runs the parsing path when raw sockets are available (root); otherwise nothing to test.
        let Ok(inj) = Injector::open(0) else { return };
        assert!(inj.send(&[]).is_err());
        assert!(inj.send(&[0x45, 0, 0]).is_err());
        assert!(inj.send(&[0x20; 40]).is_err());
        assert_eq!(inj.stats(), InjectStats { sent: 0, errors: 3 });
    }
}
