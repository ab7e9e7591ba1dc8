//! vigil-wire
