#![no_main]
//! A sequence of arbitrary packets through one pipeline with a policy (classification on or off,
//! undecided flows passed or held): never panics, every packet gets a decision, and the counters
//! add up.
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use vigil_dpi::{ClassifierConfig, DnsCache, RelatedFlows, SignatureDb};
use vigil_engine::pipeline::{Classification, PipelineConfig};
use vigil_engine::{EndReason, FlowTableConfig, PacketMeta, Pipeline, Policy, PolicyConfig, Timestamp};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else { return };
    let cfg: PolicyConfig = toml::from_str(
        "[[rules]]\nname='b'\naction='block'\ndst_ports=[23]\n\
         [[rules]]\nname='t'\naction='block'\nprotocols=['BitTorrent','FTP_DATA']\n",
    )
    .unwrap_or_default();
    let policy = Arc::new(Policy::compile(&cfg).unwrap_or_default());
    let flows = FlowTableConfig { max_flows: 8, ..Default::default() };
    // The first byte picks the shell's options: classification on or off, holding undecided flows.
    // The signature database is parsed once: it is not what this target explores.
    static SIGDB: OnceLock<Arc<SignatureDb>> = OnceLock::new();
    let classify = (flags & 1 != 0).then(|| Classification {
        sigdb: SIGDB.get_or_init(|| Arc::new(SignatureDb::builtin().expect("builtin signatures"))).clone(),
        dns_cache: Arc::new(DnsCache::new(64)),
        related: Arc::new(RelatedFlows::new(64)),
        config: ClassifierConfig::default(),
    });
    let cfg = PipelineConfig {
        flows,
        offload: true,
        classify,
        flow_id_salt: 0,
        interim_interval: None,
        hold_undecided: flags & 2 != 0,
    };
    let mut p = Pipeline::new(cfg, policy);
    // Each chunk: 1 length byte, 1 time step byte, then the packet.
    let mut rest = data;
    let mut now = 1_000_000u64;
    let mut n = 0u64;
    while rest.len() >= 2 {
        let len = usize::from(rest[0]).min(rest.len() - 2);
        now += u64::from(rest[1]) * 1_000_000;
        let pkt = &rest[2..2 + len];
        rest = &rest[2 + len..];
        p.process(pkt, &PacketMeta::default(), Timestamp::from_micros(now));
        p.poll(Timestamp::from_micros(now));
        n += 1;
    }
    p.finish(EndReason::Shutdown);
    let s = p.stats();
    assert_eq!(s.packets, n);
    // Held packets are answered by the shell when their flow's Release comes.
    assert_eq!(s.accepted + s.dropped + s.held, n);
    assert_eq!(s.flows_created, s.flows_ended);
});
