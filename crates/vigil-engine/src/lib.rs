//! vigil's pure pipeline: packet + metadata + time -> decision + events.
//!
//! Nothing here touches a socket, a file or the clock: the NFQUEUE runtime and the pcap replay are
//! thin shells that feed [`Pipeline::process`] and act on what it returns (quinn-proto's split).
//! One `Pipeline` per worker: the kernel keeps both directions of a flow on one queue, so each
//! worker owns its flows and no locks are needed on the packet path.

pub mod flow;
pub mod pipeline;
pub mod policy;
pub mod table;
pub mod time;

pub use flow::{
    community_id, BlockRecord, Direction, DnsRecord, EndReason, Flow, FlowKey, FlowRecord, FlowVerdict, L7Details,
    TcpState,
};
pub use pipeline::{Action, ConnCounters, Connection, Decision, Event, PacketMeta, Pipeline, PipelineStats};
pub use policy::{Policy, PolicyConfig, PolicyError, RuleAction, RuleConfig};
pub use table::{FlowTable, FlowTableConfig};
pub use time::Timestamp;
