//! The SDK's errors, mapped onto `StorageError`.

use crate::{Key, StorageError};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use std::io;

fn status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    error.raw_response().map(|response| response.status().as_u16())
}

/// A missing key or bucket. Checked on the HTTP status because HEAD answers
/// carry no error code, and stores differ in the codes they do send.
pub(super) fn is_missing<E>(error: &SdkError<E, HttpResponse>) -> bool {
    status(error) == Some(404)
}

/// `If-None-Match: *` refused: the key exists (412), or another conditional
/// write to it is in flight (409).
pub(super) fn is_taken<E>(error: &SdkError<E, HttpResponse>) -> bool {
    matches!(status(error), Some(412 | 409))
}

pub(super) fn sdk_error<E>(op: &'static str, key: Option<&Key>, error: SdkError<E, HttpResponse>) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    // DisplayErrorContext walks the source chain: the top-level message of
    // an SdkError alone is often just "dispatch failure".
    StorageError::io(op, key, io::Error::other(DisplayErrorContext(error).to_string()))
}
