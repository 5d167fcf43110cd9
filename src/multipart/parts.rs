//! The parts: each hashed in order (which also recomputes the whole file's SHA-256) and sent, a
//! few at once, each retried on its own; journalled as each is stored.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::{JoinError, JoinSet};

use super::source::blocking;
use super::{Multipart, MultipartError, PartSent, Plan, Source, Step, Upload, changed};
use crate::presign::s3::DirectS3;
use crate::request::{GaveUp, Requests};
use crate::transfer::Storage;

/// Bytes read at once when hashing a part.
const HASH_BUFFER: usize = 1 << 20;

impl Multipart {
    /// Hashes every part in order and sends those not `stored` yet, `parts_in_flight` at once;
    /// every part in order once all are stored and the file still hashes to what was hashed.
    pub(super) async fn send_parts(
        &self,
        storage: &Storage,
        file: &Source,
        key: &str,
        upload: &Upload,
        mut stored: BTreeMap<u32, PartSent>,
        requests: &Requests,
    ) -> Result<Vec<PartSent>, MultipartError> {
        let mut hashing = Hashing::open(file).await?;
        let mut sending = Sending::new(self);
        let sender = Arc::new(PartSender {
            s3: self.s3.clone(),
            storage: storage.clone(),
            path: file.path.clone(),
            key: key.to_string(),
            upload_id: upload.id.clone(),
            requests: requests.clone(),
        });
        for number in 1..=upload.plan.parts() {
            let (offset, len) = upload.plan.range(number);
            let checksum = match hashing.next(len).await {
                Ok(checksum) => checksum,
                Err(err) => {
                    sending.fail(MultipartError::Read(err));
                    break;
                }
            };
            if let Some(part) = stored.remove(&number)
                && part.size == len
                && part.checksum_sha256 == checksum
            {
                sending.done.push(part);
                continue;
            }
            let Some(share) = sending.room(requests).await else {
                break;
            };
            let part = Part {
                number,
                offset,
                len,
                checksum,
            };
            sending.start(sender.clone(), part, share);
        }
        sending.wait().await;
        self.all_sent(file, upload.plan, sending, hashing).await
    }

    /// The parts in order if every one was stored and together they hash to the SHA-256 the
    /// file was hashed to; else why not (a file that changed under a failed part: hash again).
    async fn all_sent(
        &self,
        file: &Source,
        plan: Plan,
        sending: Sending<'_>,
        hashing: Hashing,
    ) -> Result<Vec<PartSent>, MultipartError> {
        let Sending {
            mut done, failure, ..
        } = sending;
        if let Some(failure) = failure {
            // A part refused (BadDigest) or unreadable because the file changed under it: hash
            // it again.
            if !file.unchanged().await.unwrap_or(false) {
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
                resumable: self.journal.resumable(),
            });
        }
        if hashing.whole() != file.sha256 {
            return Err(changed(
                "the file changed after it was hashed (its parts hash to another SHA-256)",
            ));
        }
        done.sort_by_key(|p| p.number);
        Ok(done)
    }
}

/// The file read front to back, part by part, on a blocking thread: each part's SHA-256, and
/// the whole file's.
struct Hashing {
    reader: Arc<File>,
    /// The whole file's SHA-256 so far (taken while a part is hashed).
    whole: Option<Sha256>,
}

impl Hashing {
    async fn open(file: &Source) -> Result<Hashing, MultipartError> {
        let path = file.path.clone();
        let reader = blocking(move || File::open(path))
            .await
            .map_err(MultipartError::Read)?;
        Ok(Hashing {
            reader: Arc::new(reader),
            whole: Some(Sha256::new()),
        })
    }

    /// The base64 SHA-256 of the next `len` bytes.
    async fn next(&mut self, len: u64) -> io::Result<String> {
        let (reader, so_far) = (self.reader.clone(), self.whole.take().unwrap_or_default());
        let (digest, whole) = blocking(move || hash_next(&reader, len, so_far)).await?;
        self.whole = Some(whole);
        Ok(BASE64.encode(digest))
    }

    /// The whole file's SHA-256, from the parts hashed.
    fn whole(self) -> [u8; 32] {
        self.whole.unwrap_or_default().finalize().into()
    }
}

/// One file's parts on their way: those in flight, those stored, the first failure.
struct Sending<'a> {
    engine: &'a Multipart,
    in_flight: JoinSet<Result<PartSent, MultipartError>>,
    done: Vec<PartSent>,
    failure: Option<MultipartError>,
}

impl<'a> Sending<'a> {
    fn new(engine: &'a Multipart) -> Self {
        Sending {
            engine,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            failure: None,
        }
    }

    fn fail(&mut self, err: MultipartError) {
        self.failure.get_or_insert(err);
    }

    /// Waits for room for one more part: fewer than `parts_in_flight` of this file's, then a
    /// share of all files' parts (held until the part is done; this file's parts finish
    /// meanwhile). `None` when no more should start: a part failed, or with a journal the run
    /// is stopping (the upload is left to resume).
    async fn room(&mut self, requests: &Requests) -> Option<OwnedSemaphorePermit> {
        while self.in_flight.len() >= self.engine.options.parts_in_flight {
            let joined = self.in_flight.join_next().await.expect("a part in flight");
            self.collect(joined);
        }
        if self.failure.is_some() || (self.engine.journal.resumable() && requests.stopping()) {
            return None;
        }
        let share = loop {
            tokio::select! {
                share = self.engine.all_parts.clone().acquire_owned() => {
                    break share.expect("the semaphore is never closed");
                }
                Some(joined) = self.in_flight.join_next() => self.collect(joined),
            }
        };
        self.failure.is_none().then_some(share)
    }

    /// Sends `part` as a task of its own, holding `share` until it is done.
    fn start(&mut self, sender: Arc<PartSender>, part: Part, share: OwnedSemaphorePermit) {
        self.in_flight.spawn(async move {
            let sent = sender.send(part).await;
            drop(share);
            sent
        });
    }

    /// Waits for the parts in flight; once one is refused, the others are dropped: the upload
    /// is doomed and they need not finish.
    async fn wait(&mut self) {
        while let Some(joined) = self.in_flight.join_next().await {
            self.collect(joined);
            if self.failure.as_ref().is_some_and(|f| !f.is_transient()) {
                self.in_flight.abort_all();
            }
        }
    }

    /// A part's outcome: stored (and journalled), or the upload's failure if it is the first.
    fn collect(&mut self, joined: Result<Result<PartSent, MultipartError>, JoinError>) {
        match joined {
            Ok(Ok(part)) => {
                self.engine.journal(|j| j.part_sent(&part));
                self.done.push(part);
            }
            Ok(Err(err)) => self.fail(err),
            Err(err) => self.fail(MultipartError::Task(err.to_string())),
        }
    }
}

/// Sends the parts of one upload (shared by its parts' tasks).
struct PartSender {
    s3: Arc<DirectS3>,
    storage: Storage,
    path: PathBuf,
    key: String,
    upload_id: String,
    /// The upload's requests: retried, and stopped with the run.
    requests: Requests,
}

/// One part to send.
struct Part {
    number: u32,
    offset: u64,
    len: u64,
    /// Base64 SHA-256 of the part's bytes.
    checksum: String,
}

impl PartSender {
    /// UploadPart, signed afresh for every try; what the journal keeps of it.
    async fn send(&self, part: Part) -> Result<PartSent, MultipartError> {
        let step = Step::Part(part.number);
        let part = &part;
        let headers = self
            .requests
            .send(|| async {
                let signed = self
                    .s3
                    .upload_part(
                        &self.key,
                        &self.upload_id,
                        part.number,
                        &part.checksum,
                        SystemTime::now(),
                    )
                    .map_err(MultipartError::Sign)?;
                self.storage
                    .put_range(
                        &signed.url,
                        &signed.headers,
                        &self.path,
                        part.offset,
                        part.len,
                    )
                    .await
                    .map_err(|error| MultipartError::Request { step, error })
            })
            .await
            .map_err(GaveUp::into_error)?;
        let etag = headers
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| MultipartError::BadAnswer {
                step,
                message: "no ETag".into(),
            })?;
        Ok(PartSent {
            upload_id: self.upload_id.clone(),
            number: part.number,
            size: part.len,
            checksum_sha256: part.checksum.clone(),
            etag: etag.to_string(),
        })
    }
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
