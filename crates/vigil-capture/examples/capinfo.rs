//! Prints per-file statistics: `cargo run -p vigil-capture --example capinfo -- FILE...`
//! (one line per file: name, format, IPv4, IPv6, first/last timestamp, stats).

use vigil_capture::{CaptureReader, L3};

fn main() {
    let mut failed = false;
    for path in std::env::args().skip(1) {
        let mut rd = match CaptureReader::open(&path) {
            Ok(rd) => rd,
            Err(e) => {
                println!("{path}\terror: {e}");
                failed = true;
                continue;
            }
        };
        let (mut v4, mut v6, mut first, mut last, mut err) = (0u64, 0u64, None, 0u64, None);
        while let Some(p) = rd.next_packet() {
            match p {
                Ok(p) => {
                    match p.l3 {
                        L3::Ipv4(_) => v4 += 1,
                        L3::Ipv6(_) => v6 += 1,
                    }
                    first.get_or_insert(p.ts_micros);
                    last = p.ts_micros;
                }
                Err(e) => err = Some(e),
            }
        }
        let first = first.unwrap_or(0);
        println!(
            "{path}\t{:?}\tv4={v4}\tv6={v6}\tfirst={}.{:06}\tlast={}.{:06}\t{:?}{}",
            rd.format(),
            first / 1_000_000,
            first % 1_000_000,
            last / 1_000_000,
            last % 1_000_000,
            rd.stats(),
            err.map(|e| format!("\terror: {e}")).unwrap_or_default()
        );
        failed |= rd.stats().errors > 0;
    }
    std::process::exit(i32::from(failed));
}
