//! CreateMultipartUpload: a new upload of a file, journalled so a later run can resume it.

use std::time::SystemTime;

use serde::Deserialize;
use tokio::sync::watch;

use super::control::{parse, start_of, with_retries};
use super::{Multipart, MultipartError, Plan, Step, Upload, part_size};
use crate::hash::HashedFile;
use crate::manifest::{UploadLine, UploadStarted};
use crate::stop::StopLevel;

impl Multipart {
    /// CreateMultipartUpload, journalled.
    pub(super) async fn create(
        &self,
        name: &str,
        key: &str,
        file: &HashedFile,
        stop: &watch::Receiver<StopLevel>,
    ) -> Result<Upload, MultipartError> {
        let sha256 = file.hex();
        let plan = Plan {
            size: file.stamp.size,
            part_size: part_size(file.stamp.size, self.options.part_size).ok_or(
                MultipartError::TooLarge {
                    size: file.stamp.size,
                },
            )?,
        };
        let text = with_retries(self.options.retry, &self.s3, stop, || {
            let signed = self
                .s3
                .create_multipart(key, &sha256, SystemTime::now())
                .map_err(MultipartError::Sign);
            async move { self.call(&signed?, None, Step::Create).await }
        })
        .await?;
        #[derive(Deserialize)]
        struct Initiated {
            #[serde(rename = "UploadId")]
            upload_id: String,
        }
        let id = parse::<Initiated>(&text, "InitiateMultipartUploadResult")
            .map(|i| i.upload_id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| MultipartError::BadAnswer {
                step: Step::Create,
                message: format!("no UploadId in {:?}", start_of(&text)),
            })?;
        self.journal(&UploadLine::Multipart(UploadStarted {
            name: name.to_string(),
            // Absolute: the next run, which checks the file is unchanged, may start elsewhere.
            path: std::path::absolute(&file.path)
                .unwrap_or_else(|_| file.path.clone())
                .to_string_lossy()
                .into_owned(),
            bucket: self.s3.location().bucket.clone(),
            key: key.to_string(),
            upload_id: id.clone(),
            sha256,
            size: file.stamp.size,
            part_size: plan.part_size,
            stamp: file.stamp,
            created: crate::utc::rfc3339_nanos(SystemTime::now()),
        }));
        Ok(Upload { id, plan })
    }
}
