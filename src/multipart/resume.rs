//! The journal's open uploads: those gone stale are aborted before the run starts
//! ([`Multipart::sweep`]); the one of a file sent again is resumed, its stored parts found by
//! ListParts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::control::{parse, start_of};
use super::source::stamp_now;
use super::{
    Ending, Multipart, MultipartError, PartSent, Plan, Source, Step, Upload, UploadStarted,
};
use crate::request::{GaveUp, Requests};

/// A journalled upload older than this is aborted rather than resumed: a week is long enough
/// for a retry of last night's run, and parts kept longer only cost storage.
pub const STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

impl Multipart {
    /// Aborts the journal's open uploads that will not be resumed: all of them with
    /// `restart`, else those older than [`STALE_AFTER`] and those whose file changed or is gone.
    /// Uploads to another bucket are left alone (this run cannot sign for it). An abort that
    /// fails leaves the upload in the journal, for the next run to try again. Returns how many
    /// were aborted.
    pub async fn sweep(&self, restart: bool, now: SystemTime) -> usize {
        let ours: Vec<UploadStarted> = self
            .lock_resumable()
            .values()
            .filter(|u| u.started.bucket == self.s3.location().bucket)
            .map(|u| u.started.clone())
            .collect();
        let mut aborted = 0;
        for started in ours {
            if !restart && !stale(&started, now).await {
                continue;
            }
            self.lock_resumable().remove(&started.name);
            if self.abort(&started.key, &started.upload_id).await {
                aborted += 1;
            }
        }
        aborted
    }

    /// The journal's open upload of `file`, if it can be resumed: same bucket, key, stamp and
    /// SHA-256, and the store still has it; with the parts stored that the journal and ListParts
    /// agree on. Any other open upload of `file` is aborted.
    pub(super) async fn resume(
        &self,
        key: &str,
        file: &Source,
        requests: &Requests,
    ) -> Result<Option<(Upload, BTreeMap<u32, PartSent>)>, MultipartError> {
        let Some(open) = self.lock_resumable().remove(&file.name) else {
            return Ok(None);
        };
        let started = &open.started;
        if started.bucket != self.s3.location().bucket {
            return Ok(None); // not this run's to abort
        }
        let plan = Plan {
            size: started.size,
            part_size: started.part_size,
        };
        if !(same_file(started, key, file) && plan.valid()) {
            self.abort(&started.key, &started.upload_id).await;
            return Ok(None);
        }
        let listed = match self.list_parts(key, &started.upload_id, requests).await {
            Ok(listed) => listed,
            Err(err) if err.refusal().is_some_and(|r| r.status == 404) => {
                // Completed or aborted by someone else, or expired: start afresh.
                self.journal(|j| j.ended(&started.upload_id, Ending::Aborted));
                return Ok(None);
            }
            Err(err) => {
                // Try again next time: back in the map for a retry of this file.
                self.lock_resumable().insert(file.name.clone(), open);
                return Err(err);
            }
        };
        let id = started.upload_id.clone();
        Ok(Some((Upload { id, plan }, stored(open.parts, &listed))))
    }

    /// ListParts, every page: part number -> (size, ETag).
    pub(super) async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
        requests: &Requests,
    ) -> Result<BTreeMap<u32, (u64, String)>, MultipartError> {
        #[derive(Deserialize)]
        struct Listed {
            #[serde(rename = "Part", default)]
            parts: Vec<ListedPart>,
            #[serde(rename = "IsTruncated", default)]
            truncated: bool,
            #[serde(rename = "NextPartNumberMarker", default)]
            next: Option<u32>,
        }
        #[derive(Deserialize)]
        struct ListedPart {
            #[serde(rename = "PartNumber")]
            number: u32,
            #[serde(rename = "Size")]
            size: u64,
            #[serde(rename = "ETag")]
            etag: String,
        }
        let mut parts = BTreeMap::new();
        let mut marker = None;
        loop {
            let text = requests
                .send(|| async {
                    let signed = self
                        .s3
                        .list_parts(key, upload_id, marker, SystemTime::now())
                        .map_err(MultipartError::Sign)?;
                    self.call(&signed, None, Step::ListParts).await
                })
                .await
                .map_err(GaveUp::into_error)?;
            let page = parse::<Listed>(&text, "ListPartsResult").ok_or_else(|| {
                MultipartError::BadAnswer {
                    step: Step::ListParts,
                    message: format!("not a ListPartsResult: {:?}", start_of(&text)),
                }
            })?;
            let last = page.parts.last().map(|p| p.number);
            parts.extend(page.parts.into_iter().map(|p| (p.number, (p.size, p.etag))));
            match page.next.or(last) {
                Some(next) if page.truncated && Some(next) != marker => marker = Some(next),
                _ => return Ok(parts),
            }
        }
    }
}

/// Whether a journalled upload is of this `file` under this `key`: same stamp, size and SHA-256.
fn same_file(started: &UploadStarted, key: &str, file: &Source) -> bool {
    started.key == key
        && started.stamp == file.stamp
        && started.size == file.size()
        && started.sha256 == file.hex()
}

/// The journal's parts that the store still has, as ListParts gave them (`listed`: number ->
/// size and ETag).
fn stored(
    journalled: BTreeMap<u32, PartSent>,
    listed: &BTreeMap<u32, (u64, String)>,
) -> BTreeMap<u32, PartSent> {
    journalled
        .into_iter()
        .filter(|(number, part)| {
            listed.get(number).is_some_and(|(size, etag)| {
                *size == part.size && unquoted(etag) == unquoted(&part.etag)
            })
        })
        .collect()
}

/// Whether a journalled upload is too old to resume (or its time unreadable), or its file
/// changed or is gone.
async fn stale(started: &UploadStarted, now: SystemTime) -> bool {
    let old = crate::utc::parse_iso8601(&started.created)
        .is_none_or(|created| now.duration_since(created).unwrap_or_default() > STALE_AFTER);
    old || stamp_now(Path::new(&started.path)).await.ok() != Some(started.stamp)
}

fn unquoted(etag: &str) -> &str {
    etag.trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multipart::MIN_PART_SIZE;
    use crate::stamp::FileStamp;

    #[tokio::test]
    async fn stale_uploads_are_old_or_of_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"data").unwrap();
        let now = SystemTime::now();
        let started = |created: SystemTime, stamp: FileStamp| UploadStarted {
            name: "f".into(),
            path: path.to_string_lossy().into_owned(),
            bucket: "b".into(),
            key: "f".into(),
            upload_id: "u".into(),
            sha256: "00".repeat(32),
            size: 4,
            part_size: MIN_PART_SIZE,
            stamp,
            created: crate::utc::rfc3339_nanos(created),
        };
        let stamp = FileStamp::read(&path).unwrap();
        let day = Duration::from_secs(24 * 3600);
        assert!(!stale(&started(now - day, stamp), now).await);
        assert!(
            stale(&started(now - 8 * day, stamp), now).await,
            "older than 7 days"
        );
        let other = FileStamp { size: 5, ..stamp };
        assert!(
            stale(&started(now - day, other), now).await,
            "the file changed"
        );
        let mut unreadable = started(now, stamp);
        unreadable.created = "yesterday".into();
        assert!(stale(&unreadable, now).await);
        std::fs::remove_file(&path).unwrap();
        assert!(stale(&started(now, stamp), now).await, "the file is gone");
    }
}
