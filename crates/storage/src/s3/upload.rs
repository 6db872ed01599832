//! Puts: one request for a body smaller than a part, a multipart upload
//! otherwise, holding one part in memory at a time.

use super::S3;
use super::errors::{is_taken, sdk_error};
use crate::{ByteStream, Key, PutMode, StorageError, Stored};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

/// S3 numbers parts 1 to 10,000.
const MAX_PARTS: i32 = 10_000;

pub(super) async fn put(s3: &S3, key: &Key, body: ByteStream, mode: PutMode) -> Result<Stored, StorageError> {
    let mut parts =
        Parts { body, carry: Bytes::new(), ended: false, hasher: Sha256::new(), size: 0, part_size: s3.part_size };
    let first = parts.next_part().await?;
    if parts.at_end().await? {
        put_whole(s3, key, first, mode).await?;
    } else {
        put_multipart(s3, key, first, &mut parts, mode).await?;
    }
    Ok(Stored { size: parts.size, sha256: parts.hasher.finalize().into() })
}

async fn put_whole(s3: &S3, key: &Key, body: Bytes, mode: PutMode) -> Result<(), StorageError> {
    let mut request = s3.client.put_object().bucket(&s3.bucket).key(key.as_str()).body(SdkBody::from(body));
    if mode == PutMode::CreateNew {
        request = request.if_none_match("*");
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(error) if mode == PutMode::CreateNew && is_taken(&error) => Err(StorageError::AlreadyExists(key.clone())),
        Err(error) => Err(sdk_error("put", Some(key), error)),
    }
}

async fn put_multipart(s3: &S3, key: &Key, first: Bytes, parts: &mut Parts, mode: PutMode) -> Result<(), StorageError> {
    let created = s3
        .client
        .create_multipart_upload()
        .bucket(&s3.bucket)
        .key(key.as_str())
        .send()
        .await
        .map_err(|error| sdk_error("put", Some(key), error))?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| StorageError::Unavailable("the store started an upload without an id".to_owned()))?
        .to_owned();
    let guard =
        AbortOnDrop { client: s3.client.clone(), bucket: s3.bucket.clone(), key: key.clone(), upload_id, armed: true };
    match upload_parts(s3, key, first, parts, mode, &guard.upload_id).await {
        Ok(()) => {
            guard.disarm();
            Ok(())
        }
        Err(error) => {
            guard.abort().await;
            Err(error)
        }
    }
}

async fn upload_parts(
    s3: &S3,
    key: &Key,
    first: Bytes,
    parts: &mut Parts,
    mode: PutMode,
    upload_id: &str,
) -> Result<(), StorageError> {
    let mut completed = Vec::new();
    let mut part = first;
    for number in 1..=MAX_PARTS {
        let uploaded = s3
            .client
            .upload_part()
            .bucket(&s3.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(number)
            .body(SdkBody::from(part))
            .send()
            .await
            .map_err(|error| sdk_error("put", Some(key), error))?;
        completed
            .push(CompletedPart::builder().set_e_tag(uploaded.e_tag().map(str::to_owned)).part_number(number).build());
        if parts.at_end().await? {
            let mut request = s3
                .client
                .complete_multipart_upload()
                .bucket(&s3.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build());
            if mode == PutMode::CreateNew {
                request = request.if_none_match("*");
            }
            return match request.send().await {
                Ok(_) => Ok(()),
                Err(error) if mode == PutMode::CreateNew && is_taken(&error) => {
                    Err(StorageError::AlreadyExists(key.clone()))
                }
                Err(error) => Err(sdk_error("put", Some(key), error)),
            };
        }
        part = parts.next_part().await?;
    }
    Err(StorageError::io(
        "put",
        Some(key),
        std::io::Error::other(format!("body exceeds {MAX_PARTS} parts of {} bytes", parts.part_size)),
    ))
}

/// Cuts the body into parts, hashing every byte on the way.
struct Parts {
    body: ByteStream,
    /// Bytes read from the body but not yet handed out in a part.
    carry: Bytes,
    ended: bool,
    hasher: Sha256,
    size: u64,
    part_size: usize,
}

impl Parts {
    /// The next `part_size` bytes, or what is left at the end of the body.
    async fn next_part(&mut self) -> Result<Bytes, StorageError> {
        let mut part = BytesMut::new();
        while part.len() < self.part_size && self.fill().await? {
            if part.is_empty() && self.carry.len() >= self.part_size {
                return Ok(self.carry.split_to(self.part_size));
            }
            let take = (self.part_size - part.len()).min(self.carry.len());
            if part.capacity() == 0 {
                part.reserve(self.part_size);
            }
            part.extend_from_slice(&self.carry.split_to(take));
        }
        Ok(part.freeze())
    }

    /// Whether the body has no bytes left; reads ahead one chunk to know.
    async fn at_end(&mut self) -> Result<bool, StorageError> {
        Ok(!self.fill().await?)
    }

    /// Makes `carry` non-empty unless the body has ended; false at the end.
    async fn fill(&mut self) -> Result<bool, StorageError> {
        while self.carry.is_empty() && !self.ended {
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    self.hasher.update(&chunk);
                    self.size += chunk.len() as u64;
                    self.carry = chunk;
                }
                Some(Err(error)) => return Err(StorageError::Body(error)),
                None => self.ended = true,
            }
        }
        Ok(!self.carry.is_empty())
    }
}

/// Aborts the multipart upload unless disarmed, so no parts linger (and are
/// billed) after a failed or cancelled put. When the put's future is dropped
/// nothing can be awaited, so the abort runs as a task of its own.
struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: Key,
    upload_id: String,
    armed: bool,
}

impl AbortOnDrop {
    fn disarm(mut self) {
        self.armed = false;
    }

    async fn abort(mut self) {
        self.armed = false;
        abort(&self.client, &self.bucket, &self.key, &self.upload_id).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (client, bucket, key, upload_id) =
            (self.client.clone(), self.bucket.clone(), self.key.clone(), std::mem::take(&mut self.upload_id));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { abort(&client, &bucket, &key, &upload_id).await });
            }
            Err(_) => tracing::warn!(%key, upload_id, "no runtime to abort an interrupted upload; it lingers"),
        }
    }
}

async fn abort(client: &Client, bucket: &str, key: &Key, upload_id: &str) {
    let result = client.abort_multipart_upload().bucket(bucket).key(key.as_str()).upload_id(upload_id).send().await;
    if let Err(error) = result {
        tracing::warn!(%key, upload_id, error = %aws_sdk_s3::error::DisplayErrorContext(&error), "cannot abort an interrupted upload");
    }
}
