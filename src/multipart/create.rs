//! CreateMultipartUpload: a new upload of a file, journalled so a later run can resume it.

use std::time::SystemTime;

use serde::Deserialize;

use super::control::{parse, start_of};
use super::{Multipart, MultipartError, Plan, Source, Step, Upload, UploadStarted, part_size};
use crate::request::{GaveUp, Requests};

impl Multipart {
    /// CreateMultipartUpload, journalled.
    pub(super) async fn create(
        &self,
        key: &str,
        file: &Source,
        requests: &Requests,
    ) -> Result<Upload, MultipartError> {
        let size = file.size();
        let plan = Plan {
            size,
            part_size: part_size(size, self.options.part_size)
                .ok_or(MultipartError::TooLarge { size })?,
        };
        let id = self.initiate(key, &file.hex(), requests).await?;
        self.journal(|j| j.started(&self.started(key, &id, file, plan)));
        Ok(Upload { id, plan })
    }

    /// CreateMultipartUpload with the whole file's SHA-256 in its metadata: the new UploadId.
    async fn initiate(
        &self,
        key: &str,
        sha256: &str,
        requests: &Requests,
    ) -> Result<String, MultipartError> {
        #[derive(Deserialize)]
        struct Initiated {
            #[serde(rename = "UploadId")]
            upload_id: String,
        }
        let text = requests
            .send(|| async {
                let signed = self
                    .s3
                    .create_multipart(key, sha256, SystemTime::now())
                    .map_err(MultipartError::Sign)?;
                self.call(&signed, None, Step::Create).await
            })
            .await
            .map_err(GaveUp::into_error)?;
        parse::<Initiated>(&text, "InitiateMultipartUploadResult")
            .map(|i| i.upload_id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| MultipartError::BadAnswer {
                step: Step::Create,
                message: format!("no UploadId in {:?}", start_of(&text)),
            })
    }

    /// What the journal keeps of upload `id` of `file`: what a later run needs to resume it.
    fn started(&self, key: &str, id: &str, file: &Source, plan: Plan) -> UploadStarted {
        UploadStarted {
            name: file.name.clone(),
            // Absolute: the next run, which checks the file is unchanged, may start elsewhere.
            path: std::path::absolute(&file.path)
                .unwrap_or_else(|_| file.path.clone())
                .to_string_lossy()
                .into_owned(),
            bucket: self.s3.location().bucket.clone(),
            key: key.to_string(),
            upload_id: id.to_string(),
            sha256: file.hex(),
            size: plan.size,
            part_size: plan.part_size,
            stamp: file.stamp,
            created: crate::utc::rfc3339_nanos(SystemTime::now()),
        }
    }
}
