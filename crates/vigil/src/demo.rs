//! `vigil demo` (being written).
pub fn run(_hold: bool) -> anyhow::Result<()> { anyhow::bail!("demo not yet written") }
