//! vigil-capture
