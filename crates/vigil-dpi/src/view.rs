//! What a dissector sees of one packet.

use std::net::IpAddr;
use vigil_wire::L4Proto;

/// Direction relative to the flow's client (the side that opened it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    ToServer,
    ToClient,
}

impl Dir {
    pub fn index(self) -> usize {
        match self {
            Dir::ToServer => 0,
            Dir::ToClient => 1,
        }
    }
}

/// One packet of a flow, seen from the flow's point of view.
#[derive(Debug, Clone, Copy)]
pub struct PacketView<'a> {
    pub dir: Dir,
    pub l4: L4Proto,
    /// The client's address and port (ports are 0 for portless protocols).
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    /// Application payload (TCP/UDP payload; ICMP body; the whole L4 for other protocols).
    pub payload: &'a [u8],
    /// TCP sequence number and flags, for reassembly.
    pub tcp_seq: u32,
    pub tcp_flags: u8,
    /// Index of this packet in the flow (0 = first packet, either direction).
    pub index: u32,
    /// Microseconds since the UNIX epoch.
    pub ts_micros: u64,
}

impl PacketView<'_> {
    pub fn server_port(&self) -> u16 {
        self.server.1
    }
    pub fn client_port(&self) -> u16 {
        self.client.1
    }
    /// True when either port is `p`.
    pub fn has_port(&self, p: u16) -> bool {
        self.server.1 == p || self.client.1 == p
    }
    /// This packet's source and destination ports.
    pub fn src_port(&self) -> u16 {
        match self.dir {
            Dir::ToServer => self.client.1,
            Dir::ToClient => self.server.1,
        }
    }
    pub fn dst_port(&self) -> u16 {
        match self.dir {
            Dir::ToServer => self.server.1,
            Dir::ToClient => self.client.1,
        }
    }
    pub fn is_tcp(&self) -> bool {
        self.l4 == L4Proto::Tcp
    }
    pub fn is_udp(&self) -> bool {
        self.l4 == L4Proto::Udp
    }
}
