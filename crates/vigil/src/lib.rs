//! vigil: the binary's library half. The pure pipeline lives in `vigil-engine`; this crate holds the
//! shells around it (NFQUEUE runtime, pcap replay), the firewall rules vigil owns, the namespace lab
//! used by `vigil demo` and the kernel tests, and the CLI's building blocks.

pub mod config;
pub mod demo;
pub mod firewall;
pub mod inject;
pub mod lab;
pub mod output;
pub mod replay;
pub mod run;
