//! Deleting what `--delete` decided, through the run's [`Remote`]: [`DELETES_IN_FLIGHT`]
//! deletions at once, each journalled first (a `deleted` line, [`crate::manifest::Deleted`])
//! before its request is sent, each told in the objects' order. The remote retries each
//! deletion as every request is retried ([`crate::request`]); a stop request starts no new
//! deletion and retries none.

use std::sync::Mutex;
use std::time::SystemTime;

use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::StoredObject;
use crate::manifest::{Deleted, Manifest};
use crate::remote::{Remote, RemoteError};
use crate::stop::{StopLevel, reached};

/// Deletions in flight at once: enough that a hundred objects far away take a few round trips,
/// few enough not to look like a flood to an API. (DeleteObjects would take 1,000 keys a
/// request, but wants a `Content-MD5` and answers per key in XML; `--max-delete` keeps the
/// sets small.)
pub const DELETES_IN_FLIGHT: usize = 16;

/// Why deleting stopped before every object was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// Ctrl-C or SIGTERM: no new deletion was started (a second one cancelled those in flight).
    Interrupted,
    /// A failure that dooms every deletion ([`RemoteError::Fatal`]).
    Fatal(String),
    /// A `deleted` line could not be written: nothing more is deleted unjournalled.
    JournalLost(String),
}

/// What [`execute`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Executed {
    /// Objects deleted.
    pub deleted: u64,
    /// Deletions that failed.
    pub failed: u64,
    /// Why it stopped early, if it did.
    pub halt: Option<Halt>,
}

/// What [`execute`] tells as it goes: each object deleted, each failure.
pub enum Event<'a> {
    /// Deleted.
    Deleted(&'a StoredObject),
    /// Not deleted, and why.
    Failed(&'a StoredObject, &'a str),
}

/// Deletes `objects`, [`DELETES_IN_FLIGHT`] at once, telling each outcome in the objects'
/// order. Each one is journalled first: a `deleted`
/// line is written and flushed before its request goes out (a journal that cannot take it
/// stops the deleting), and a failure adds a second line with its `error`. A stop request
/// starts no new deletion; an abort cancels those in flight (they count as failed).
pub async fn execute(
    remote: &Remote,
    objects: &[StoredObject],
    manifest: &Manifest,
    stop: watch::Receiver<StopLevel>,
    tell: &(dyn Fn(Event<'_>) + Sync),
) -> Executed {
    let halt: Mutex<Option<Halt>> = Mutex::new(None);
    let halted = || halt.lock().unwrap_or_else(|e| e.into_inner()).is_some();
    let set_halt = |why: Halt| {
        halt.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
    };
    // In flight together, told in order (a log reads the same from one run to the next). Each
    // object's outcome: `None` when it was not tried.
    let mut outcomes = futures_util::stream::iter(objects)
        .map(|object| {
            let stop = stop.clone();
            async move {
                let outcome: Option<Result<(), String>> = async {
                    if *stop.borrow() > StopLevel::Run {
                        set_halt(Halt::Interrupted);
                        return None;
                    }
                    if halted() {
                        return None;
                    }
                    let mut line = Deleted {
                        name: object.name.clone(),
                        key: object.key.clone(),
                        size: object.size,
                        time: crate::utc::rfc3339_nanos(SystemTime::now()),
                        error: None,
                    };
                    if let Err(err) = manifest.deleted(&line) {
                        set_halt(Halt::JournalLost(crate::message::plain_io_message(&err)));
                        return None;
                    }
                    let result = tokio::select! {
                        result = remote.delete(object) => result,
                        () = reached(stop.clone(), StopLevel::Abort) => {
                            set_halt(Halt::Interrupted);
                            Err(RemoteError::Failed("interrupted while deleting: aborted".into()))
                        }
                    };
                    let error = match result {
                        Ok(()) => return Some(Ok(())),
                        Err(RemoteError::Fatal(message)) => {
                            set_halt(Halt::Fatal(message.clone()));
                            message
                        }
                        Err(RemoteError::Failed(message)) => message,
                        Err(stopped @ RemoteError::Stopped(_)) => {
                            set_halt(Halt::Interrupted);
                            stopped.to_string()
                        }
                    };
                    line.time = crate::utc::rfc3339_nanos(SystemTime::now());
                    line.error = Some(error.clone());
                    if let Err(err) = manifest.deleted(&line) {
                        set_halt(Halt::JournalLost(crate::message::plain_io_message(&err)));
                    }
                    Some(Err(error))
                }
                .await;
                (object, outcome)
            }
        })
        .buffered(DELETES_IN_FLIGHT);
    let (mut deleted, mut failed) = (0, 0);
    while let Some((object, outcome)) = outcomes.next().await {
        match outcome {
            None => {}
            Some(Ok(())) => {
                deleted += 1;
                tell(Event::Deleted(object));
            }
            Some(Err(error)) => {
                failed += 1;
                tell(Event::Failed(object, &error));
            }
        }
    }
    drop(outcomes);
    Executed {
        deleted,
        failed,
        halt: halt.into_inner().unwrap_or_else(|e| e.into_inner()),
    }
}
