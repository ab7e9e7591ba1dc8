#![no_main]
//! Rewriting checksums of arbitrary packets: no panic, and a fixed packet verifies.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut p = data.to_vec();
    if vigil_wire::checksum::fix_packet(&mut p).is_ok() {
        assert!(vigil_wire::checksum::verify_packet(&p));
    }
});
