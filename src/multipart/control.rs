//! The small requests (create, list, complete, abort): their client, sending, and reading
//! their XML answers. Parts go through the run's [`crate::transfer::Storage`] instead.

use super::{Multipart, MultipartError, Step};
use crate::http::Timeouts;
use crate::presign::s3::Signed;
use crate::s3xml::root_element;
use crate::transfer::TransferError;

impl Multipart {
    /// Sends a small signed request; the answer's body.
    pub(super) async fn call(
        &self,
        signed: &Signed,
        body: Option<String>,
        step: Step,
    ) -> Result<String, MultipartError> {
        send_signed(&self.control, signed, body)
            .await
            .map_err(|error| MultipartError::Request { step, error })
    }
}

/// The client of the small requests, with the run's timeouts.
#[derive(Clone)]
pub(super) struct Control {
    pub(super) client: reqwest::Client,
    pub(super) timeouts: Timeouts,
}

/// The most of a success answer that is read: ListParts of 1,000 parts is about 250 KB; a
/// server sending more is not answering these requests.
const ANSWER_LIMIT: usize = 4 << 20;

/// Sends a signed request with an optional body; the body of a success answer.
pub(super) async fn send_signed(
    control: &Control,
    signed: &Signed,
    body: Option<String>,
) -> Result<String, TransferError> {
    let bytes = body.as_ref().map_or(0, |b| b.len()) + ANSWER_LIMIT;
    let mut request =
        crate::transfer::signed_request(&control.client, control.timeouts, signed, bytes as u64);
    if let Some(body) = body {
        request = request.body(body);
    }
    crate::transfer::small_answer(request, ANSWER_LIMIT).await
}

/// Parses an S3 XML answer whose root element must be `root`.
pub(super) fn parse<T: serde::de::DeserializeOwned>(text: &str, root: &str) -> Option<T> {
    if root_element(text).as_deref() != Some(root) {
        return None;
    }
    quick_xml::de::from_str(text).ok()
}

/// The start of an answer that makes no sense, for the message.
pub(super) fn start_of(text: &str) -> String {
    text.chars().take(120).collect()
}
