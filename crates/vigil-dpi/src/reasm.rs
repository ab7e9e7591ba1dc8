//! In-order reassembly of the first bytes of one TCP direction (for ClientHellos split across
//! segments), tolerant of retransmission, overlap and reordering, capped per flow.
//!
//! Classification needs only a stream's first few KiB, so instead of a general segment queue this
//! keeps one window `[start, start + cap)` of stream bytes with a bitmap of which bytes arrived.
//! That makes every case the same code: retransmissions and overlaps write only bytes not yet
//! present (the first copy wins, as in most OS stacks and in Suricata's default policy), reordered
//! segments simply fill holes, and sequence numbers are compared as wrapping 32-bit distances, so
//! wraparound needs nothing special. Memory is bounded by `cap` (plus `cap / 8` for the bitmap).
//!
//! Where the stream starts: the byte after the SYN's sequence number when the SYN was seen
//! ([`StreamReassembler::on_syn`]). When it was missed (capture started mid-handshake, or the
//! classifier only saw data), the first payload segment sets the start; a segment arriving later
//! that begins up to [`REBASE_WINDOW`] bytes *before* that start moves the start back, because
//! the usual cause is the 2nd segment overtaking the 1st. With a known ISN nothing before it is
//! ever accepted.

/// Default number of stream bytes kept.
pub const DEFAULT_CAP: usize = 16 * 1024;

/// Without a SYN, how far before the first seen segment an earlier one may start (about three
/// full-size segments: enough for a reordered split ClientHello, small enough not to adopt stale
/// data from a previous connection reusing the ports).
pub const REBASE_WINDOW: u32 = 4 * 1024;

/// Reassembles the first `cap` bytes of one TCP direction.
#[derive(Debug, Clone)]
pub struct StreamReassembler {
    cap: usize,
    /// Sequence number of `buf[0]`, once known.
    start: Option<u32>,
    /// The start came from a SYN, so it is final.
    isn_known: bool,
    /// Stream bytes from `start`, up to the highest byte received (never longer than `cap`).
    buf: Vec<u8>,
    /// One bit per byte of `buf`: the byte has arrived.
    present: Vec<u64>,
    /// Length of the gap-free prefix of `buf`.
    contiguous: usize,
}

impl Default for StreamReassembler {
    fn default() -> Self {
        Self::with_cap(DEFAULT_CAP)
    }
}

impl StreamReassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// A reassembler keeping at most `cap` bytes.
    pub fn with_cap(cap: usize) -> Self {
        StreamReassembler { cap, start: None, isn_known: false, buf: Vec::new(), present: Vec::new(), contiguous: 0 }
    }

    /// Learns the initial sequence number from this direction's SYN (or SYN-ACK): data starts at
    /// `seq + 1`. Ignored once the start is final; if data arrived first, it is re-based.
    pub fn on_syn(&mut self, seq: u32) {
        if self.isn_known {
            return;
        }
        let first = seq.wrapping_add(1);
        match self.start {
            None => self.start = Some(first),
            Some(start) => {
                let behind = start.wrapping_sub(first) as i32;
                if behind > 0 {
                    self.shift_right(behind as usize);
                    self.start = Some(first);
                } else if behind < 0 {
                    // Data arrived from before the SYN's position: it cannot belong to this stream's
                    // start (a stale SYN retransmission); keep what we have.
                    return;
                }
            }
        }
        self.isn_known = true;
    }

    /// Adds one segment's payload at sequence number `seq`.
    pub fn push(&mut self, seq: u32, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        let start = *self.start.get_or_insert(seq);
        let mut offset = seq.wrapping_sub(start) as i32;
        let mut data = payload;
        if offset < 0 {
            let before = offset.unsigned_abs();
            if !self.isn_known && before <= REBASE_WINDOW {
                // A missed first segment, overtaken by a later one: move the start back.
                self.shift_right(before as usize);
                self.start = Some(seq);
                offset = 0;
            } else {
                // Retransmitted bytes from before the start: keep only what lies after it.
                let Some(rest) = data.get(before as usize..) else { return };
                data = rest;
                offset = 0;
            }
        }
        self.write(offset as usize, data);
    }

    /// The gap-free stream prefix received so far.
    pub fn contiguous(&self) -> &[u8] {
        self.buf.get(..self.contiguous).unwrap_or(&[])
    }

    /// The cap is reached: the prefix will not grow any more.
    pub fn is_full(&self) -> bool {
        self.contiguous >= self.cap
    }

    /// Bytes received beyond a hole (reordering is pending).
    pub fn has_gap(&self) -> bool {
        self.buf.len() > self.contiguous
    }

    /// The sequence number of the first byte not yet received, once the start is known.
    pub fn next_seq(&self) -> Option<u32> {
        self.start.map(|s| s.wrapping_add(self.contiguous as u32))
    }

    /// True when no payload byte has been stored.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn is_present(&self, i: usize) -> bool {
        self.present.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    /// Stores `data` at `offset`, keeping bytes already present (first copy wins) and anything
    /// beyond the cap out.
    fn write(&mut self, offset: usize, data: &[u8]) {
        if offset >= self.cap {
            return;
        }
        let data = &data[..data.len().min(self.cap - offset)];
        let end = offset + data.len();
        // Fast path, the common case: the next in-order segment with nothing buffered beyond it.
        if offset == self.buf.len() && self.contiguous == self.buf.len() {
            self.buf.extend_from_slice(data);
            self.mark(offset, end);
            self.contiguous = end;
            return;
        }
        if end > self.buf.len() {
            self.buf.resize(end, 0);
        }
        for (i, b) in (offset..end).zip(data) {
            if !self.is_present(i) {
                if let Some(slot) = self.buf.get_mut(i) {
                    *slot = *b;
                }
            }
        }
        self.mark(offset, end);
        while self.contiguous < self.buf.len() && self.is_present(self.contiguous) {
            self.contiguous += 1;
        }
    }

    fn mark(&mut self, from: usize, to: usize) {
        let words = to.div_ceil(64);
        if self.present.len() < words {
            self.present.resize(words, 0);
        }
        for i in from..to {
            if let Some(w) = self.present.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
    }

    /// Moves everything `by` bytes later (the start moved back), dropping what falls past the cap.
    fn shift_right(&mut self, by: usize) {
        let old_buf = std::mem::take(&mut self.buf);
        let old_present = std::mem::take(&mut self.present);
        self.contiguous = 0;
        for (i, b) in old_buf.iter().enumerate() {
            let was = old_present.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1);
            if was {
                self.write(i + by, std::slice::from_ref(b));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn in_order_after_syn() {
        let s = stream(300);
        let mut r = StreamReassembler::new();
        r.on_syn(1000);
        r.push(1001, &s[..100]);
        r.push(1101, &s[100..]);
        assert_eq!(r.contiguous(), &s[..]);
        assert!(!r.has_gap());
        assert_eq!(r.next_seq(), Some(1301));
    }

    #[test]
    fn reordered_segments_wait_for_the_hole() {
        let s = stream(300);
        let mut r = StreamReassembler::new();
        r.on_syn(5);
        r.push(6 + 200, &s[200..]);
        r.push(6 + 100, &s[100..200]);
        assert!(r.contiguous().is_empty());
        assert!(r.has_gap());
        r.push(6, &s[..100]);
        assert_eq!(r.contiguous(), &s[..]);
        assert!(!r.has_gap());
    }

    #[test]
    fn retransmission_and_overlap_first_copy_wins() {
        let s = stream(300);
        let mut r = StreamReassembler::new();
        r.on_syn(0);
        r.push(1, &s[..150]);
        r.push(1, &s[..150]); // plain retransmission
        let mut forged = s[100..250].to_vec();
        forged[..50].fill(0xee); // overlap carrying different bytes for 100..150
        r.push(101, &forged);
        assert_eq!(&r.contiguous()[..150], &s[..150]);
        assert_eq!(&r.contiguous()[150..250], &s[150..250]);
        // Out-of-order overlap: the first buffered copy wins too.
        let mut r = StreamReassembler::new();
        r.on_syn(0);
        r.push(101, &s[100..200]);
        let mut other = s[50..250].to_vec();
        other[50..150].fill(0xee); // conflicts with the buffered 100..200
        r.push(51, &other);
        r.push(1, &s[..50]);
        assert_eq!(r.contiguous(), &s[..250]);
    }

    #[test]
    fn sequence_wraparound() {
        let s = stream(400);
        let mut r = StreamReassembler::new();
        let isn = u32::MAX - 150;
        r.on_syn(isn);
        let first = isn.wrapping_add(1);
        r.push(first.wrapping_add(200), &s[200..]);
        r.push(first, &s[..200]); // crosses 2^32
        assert_eq!(r.contiguous(), &s[..]);
        assert_eq!(r.next_seq(), Some(first.wrapping_add(400)));
    }

    #[test]
    fn cap_stops_buffering() {
        let s = stream(100);
        let mut r = StreamReassembler::with_cap(64);
        r.on_syn(0);
        r.push(1, &s[..50]);
        assert!(!r.is_full());
        r.push(51, &s[50..]);
        assert!(r.is_full());
        assert_eq!(r.contiguous(), &s[..64]);
        r.push(200, &s); // far beyond the cap: ignored
        assert_eq!(r.contiguous().len(), 64);
        assert!(!r.has_gap());
    }

    #[test]
    fn missed_syn_starts_at_first_segment_and_rebases() {
        let s = stream(300);
        let mut r = StreamReassembler::new();
        r.push(10_100, &s[100..]); // 2nd segment first, SYN never seen
        assert_eq!(r.contiguous(), &s[100..]);
        r.push(10_000, &s[..100]); // the 1st arrives late: the start moves back
        assert_eq!(r.contiguous(), &s[..]);
        // Too far back: treated as old data, not adopted.
        r.push(10_000 - REBASE_WINDOW - 1, &s[..1]);
        assert_eq!(r.contiguous(), &s[..]);
    }

    #[test]
    fn known_isn_rejects_data_before_it() {
        let s = stream(100);
        let mut r = StreamReassembler::new();
        r.on_syn(999);
        r.push(950, &s[..10]); // entirely before the start
        assert!(r.is_empty());
        r.push(990, &s[..20]); // straddles: only bytes from seq 1000 on are kept
        assert_eq!(r.contiguous(), &s[10..20]);
    }

    #[test]
    fn late_syn_rebases_data() {
        let s = stream(100);
        let mut r = StreamReassembler::new();
        r.push(51, &s[50..]);
        r.on_syn(0);
        assert!(r.contiguous().is_empty());
        r.push(1, &s[..50]);
        assert_eq!(r.contiguous(), &s[..]);
    }

    #[test]
    fn zero_cap_and_empty_pushes_are_harmless() {
        let mut r = StreamReassembler::with_cap(0);
        r.push(1, b"abc");
        r.push(1, b"");
        assert!(r.contiguous().is_empty());
        assert!(r.is_full());
    }
}
