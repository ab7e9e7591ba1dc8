//! In-order reassembly of the first bytes of one TCP direction (for ClientHellos split across
//! segments), tolerant of retransmission, overlap and reordering, capped per flow.
