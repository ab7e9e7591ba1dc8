//! vigil-nfq
