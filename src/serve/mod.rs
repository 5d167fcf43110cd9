//! `hashup serve`: a PROMINENCE-compatible presign endpoint (stub, filled in by the serve work).

/// Everything `serve` needs, built once from the command line.
#[derive(Debug, Clone, Default)]
pub struct ServeConfig {}

/// Runs the server until it is stopped.
pub fn run(_config: ServeConfig) -> anyhow::Result<()> {
    anyhow::bail!("serve is not implemented yet")
}
