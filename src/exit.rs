//! Named process exit codes, shared by every subcommand.

/// What a run ended with, as the process exit code a script can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Every file was processed successfully.
    Success = 0,
    /// The run finished, but at least one file failed.
    SomeFailed = 1,
    /// A usage, configuration or fatal error stopped the run.
    Fatal = 2,
    /// The run was interrupted (Ctrl-C).
    Interrupted = 130,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}
