//! clap definitions for `hashup serve`.

use clap::Args;
use hashup::serve::ServeConfig;

/// Flags of `hashup serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {}

impl ServeArgs {
    /// Converts the parsed flags into the core's plain configuration.
    pub fn into_config(self) -> anyhow::Result<ServeConfig> {
        Ok(ServeConfig {})
    }
}
