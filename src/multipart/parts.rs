//! The parts: each hashed in order (feeding the whole file's SHA-256) and sent, a few at once.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::control::with_retries;
use super::{Multipart, MultipartError, Step, Upload, changed, current_stamp};
use crate::hash::HashedFile;
use crate::manifest::{PartSent, UploadLine};
use crate::presign::s3::DirectS3;
use crate::retry::RetryPolicy;
use crate::stop::StopLevel;
use crate::transfer::Storage;

/// Bytes read at once when hashing a part.
const HASH_BUFFER: usize = 1 << 20;

impl Multipart {
    /// Hashes every part in order and sends those not `stored` yet, `parts_in_flight` at once;
    /// every part in order once all are stored and the file still hashes to what was hashed.
    pub(super) async fn send_parts(
        &self,
        storage: &Storage,
        file: &HashedFile,
        key: &str,
        upload: &Upload,
        mut stored: BTreeMap<u32, PartSent>,
        stop: &watch::Receiver<StopLevel>,
    ) -> Result<Vec<PartSent>, MultipartError> {
        let plan = upload.plan;
        let reader = Arc::new(File::open(&file.path).map_err(MultipartError::Read)?);
        // The whole file's SHA-256, fed part by part (taken while a part is hashed).
        let mut whole = Some(Sha256::new());
        let mut done: Vec<PartSent> = Vec::new();
        let mut in_flight = JoinSet::new();
        let mut failure: Option<MultipartError> = None;
        let journalled = self.manifest.is_journal();
        let collect = |joined: Result<Result<PartSent, MultipartError>, tokio::task::JoinError>,
                       done: &mut Vec<PartSent>,
                       failure: &mut Option<MultipartError>| {
            match joined {
                Ok(Ok(part)) => {
                    self.journal(&UploadLine::Part(part.clone()));
                    done.push(part);
                }
                Ok(Err(err)) => {
                    failure.get_or_insert(err);
                }
                Err(err) => {
                    failure.get_or_insert(MultipartError::Sign(format!("part task: {err}")));
                }
            }
        };
        for number in 1..=plan.parts() {
            let (offset, len) = plan.range(number);
            let hashed = {
                let (reader, so_far) = (reader.clone(), whole.take().unwrap_or_default());
                tokio::task::spawn_blocking(move || hash_next(&reader, len, so_far))
                    .await
                    .map_err(|e| MultipartError::Read(std::io::Error::other(e.to_string())))?
            };
            let (digest, rest) = match hashed {
                Ok(hashed) => hashed,
                Err(err) => {
                    failure.get_or_insert(MultipartError::Read(err));
                    break;
                }
            };
            whole = Some(rest);
            let checksum = BASE64.encode(digest);
            if let Some(part) = stored.remove(&number)
                && part.size == len
                && part.checksum_sha256 == checksum
            {
                done.push(part);
                continue;
            }
            while in_flight.len() >= self.options.parts_in_flight {
                let joined = in_flight.join_next().await.expect("a part in flight");
                collect(joined, &mut done, &mut failure);
            }
            if failure.is_some() {
                break;
            }
            if journalled && *stop.borrow() > StopLevel::Run {
                break;
            }
            // A share of the parts in flight across all files, held until this part is done;
            // parts of this file finish meanwhile.
            let share = loop {
                tokio::select! {
                    share = self.all_parts.clone().acquire_owned() => {
                        break share.expect("the semaphore is never closed");
                    }
                    Some(joined) = in_flight.join_next() => {
                        collect(joined, &mut done, &mut failure);
                    }
                }
            };
            if failure.is_some() {
                break;
            }
            let job = PartJob {
                s3: self.s3.clone(),
                storage: storage.clone(),
                path: file.path.clone(),
                key: key.to_string(),
                upload_id: upload.id.clone(),
                number,
                offset,
                len,
                checksum,
                retry: self.options.retry,
                stop: stop.clone(),
            };
            in_flight.spawn(async move {
                let sent = send_part(job).await;
                drop(share);
                sent
            });
        }
        while let Some(joined) = in_flight.join_next().await {
            collect(joined, &mut done, &mut failure);
            // A refused part dooms the upload: the others need not finish.
            if failure.as_ref().is_some_and(|f| !f.is_transient()) {
                in_flight.abort_all();
            }
        }
        if let Some(failure) = failure {
            // A part refused (BadDigest) or unreadable because the file changed under it: hash
            // it again.
            if current_stamp(&file.path).ok() != Some(file.stamp) {
                return Err(changed(&format!(
                    "the file changed while it was sent ({failure})"
                )));
            }
            return Err(failure);
        }
        if done.len() < plan.parts() as usize {
            return Err(MultipartError::Interrupted {
                stored: done.len(),
                parts: plan.parts(),
                resumable: journalled,
            });
        }
        let whole = whole.unwrap_or_default().finalize();
        if <[u8; 32]>::from(whole) != file.sha256 {
            return Err(changed(
                "the file changed after it was hashed (its parts hash to another SHA-256)",
            ));
        }
        done.sort_by_key(|p| p.number);
        Ok(done)
    }
}

/// One part to send, owned (it runs as a task of its own).
struct PartJob {
    s3: Arc<DirectS3>,
    storage: Storage,
    path: PathBuf,
    key: String,
    upload_id: String,
    number: u32,
    offset: u64,
    len: u64,
    /// Base64 SHA-256 of the part's bytes.
    checksum: String,
    retry: RetryPolicy,
    stop: watch::Receiver<StopLevel>,
}

/// UploadPart, signed afresh for every try; what the journal keeps of it.
async fn send_part(job: PartJob) -> Result<PartSent, MultipartError> {
    let step = Step::Part(job.number);
    let job = &job;
    let headers = with_retries(job.retry, &job.s3, &job.stop, || {
        let signed = job
            .s3
            .upload_part(
                &job.key,
                &job.upload_id,
                job.number,
                &job.checksum,
                SystemTime::now(),
            )
            .map_err(MultipartError::Sign);
        async move {
            let signed = signed?;
            job.storage
                .put_range(&signed.url, &signed.headers, &job.path, job.offset, job.len)
                .await
                .map_err(|error| MultipartError::Request { step, error })
        }
    })
    .await?;
    let etag = headers
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| MultipartError::BadAnswer {
            step,
            message: "no ETag".into(),
        })?;
    Ok(PartSent {
        upload_id: job.upload_id.clone(),
        number: job.number,
        size: job.len,
        checksum_sha256: job.checksum.clone(),
        etag: etag.to_string(),
    })
}

/// Reads the next `len` bytes of `file`: their SHA-256, and `whole` fed with them. Parts are
/// hashed strictly in order, so one descriptor read front to back does (its position shows
/// how far hashing has got, as for any sequential reader).
fn hash_next(file: &File, len: u64, mut whole: Sha256) -> std::io::Result<([u8; 32], Sha256)> {
    let mut buf = vec![0u8; HASH_BUFFER.min(len.max(1) as usize)];
    let mut part = Sha256::new();
    let mut left = len;
    let mut reader = file;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while uploading",
            ));
        }
        part.update(&buf[..n]);
        whole.update(&buf[..n]);
        left -= n as u64;
    }
    Ok((part.finalize().into(), whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_hashes_its_range_and_feeds_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let (a, whole) = hash_next(&file, 2_000_000, Sha256::new()).unwrap();
        let (b, whole) = hash_next(&file, 1_000_000, whole).unwrap();
        assert_eq!(a, <[u8; 32]>::from(Sha256::digest(&data[..2_000_000])));
        assert_eq!(b, <[u8; 32]>::from(Sha256::digest(&data[2_000_000..])));
        assert_eq!(
            <[u8; 32]>::from(whole.finalize()),
            <[u8; 32]>::from(Sha256::digest(&data))
        );
        let err = hash_next(&file, 1, Sha256::new()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
