//! How far a run has been asked to stop, shared by the stages that must react to it (the
//! pipeline's loop, each upload, the multipart engine): a `tokio::sync::watch` of a
//! [`StopLevel`] that only goes up.

/// How far a run has been asked to stop; levels only go up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum StopLevel {
    /// Keep going.
    #[default]
    Run,
    /// Take no new file and retry nothing; let the uploads in flight finish (first Ctrl-C).
    Drain,
    /// End the uploads in flight too (second Ctrl-C).
    Abort,
}

/// Resolves once `stop` reaches `level` (never, if its sender is gone).
pub async fn reached(mut stop: tokio::sync::watch::Receiver<StopLevel>, level: StopLevel) {
    if stop.wait_for(|now| *now >= level).await.is_err() {
        std::future::pending::<()>().await;
    }
}
