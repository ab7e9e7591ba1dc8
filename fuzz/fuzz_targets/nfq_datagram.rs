#![no_main]
//! Any bytes as a netlink datagram from the kernel: decoding never panics.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for msg in vigil_nfq::wire::messages(data) {
        if let Ok(msg) = msg {
            let _ = vigil_nfq::wire::parse_message(msg);
            let _ = vigil_nfq::wire::parse_packet(msg);
        }
    }
});
