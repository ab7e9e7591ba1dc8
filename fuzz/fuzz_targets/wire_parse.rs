#![no_main]
//! Any bytes as an L3 packet: parsing must return, never panic, and what it returns must lie
//! inside the input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = vigil_wire::parse_l3(data) {
        let start = data.as_ptr() as usize;
        let p = info.payload.as_ptr() as usize;
        assert!(info.payload.is_empty() || (p >= start && p + info.payload.len() <= start + data.len()));
    }
});
