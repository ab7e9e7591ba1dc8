#![no_main]
//! Any bytes as a capture file: the reader yields packets or one error, then stops.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut rd) = vigil_capture::CaptureReader::from_reader(data) {
        let mut n = 0usize;
        while let Some(r) = rd.next_packet() {
            n += 1;
            if r.is_err() || n > 1_000_000 {
                break;
            }
        }
    }
});
