//! Objects in an S3 bucket, or any S3-compatible store (MinIO, Ceph, R2).

mod errors;
mod upload;

use crate::{ByteRange, ByteStream, Key, Object, ObjectMeta, Prefix, PutMode, Storage, StorageError, Stored};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::presigning::PresigningConfig;
use errors::{is_missing, sdk_error};
use futures_util::stream::{self, BoxStream, StreamExt};
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};
use stockflow_config::S3Settings;
use tokio_util::io::ReaderStream;

/// S3's own limit on presigned URLs.
pub const MAX_PRESIGN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const READ_CHUNK_BYTES: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct S3 {
    client: Client,
    /// Signs URLs for the host clients reach, which may not be the one the
    /// services use; presigning makes no request, so this client never
    /// connects anywhere.
    presigner: Client,
    bucket: String,
    part_size: usize,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3").field("bucket", &self.bucket).field("part_size", &self.part_size).finish_non_exhaustive()
    }
}

impl S3 {
    /// Builds the clients; nothing is contacted until the first request, so
    /// a service starts while the store is down and reports it on `/readyz`.
    pub fn new(settings: &S3Settings) -> Result<Self, StorageError> {
        let part_size = usize::try_from(settings.part_size.bytes())
            .map_err(|_| StorageError::Unavailable("part size does not fit in memory".to_owned()))?;
        let client = Client::from_conf(config(settings, settings.endpoint.as_ref().map(|url| url.as_str())));
        let public = settings.public_endpoint.as_ref().or(settings.endpoint.as_ref());
        let presigner = Client::from_conf(config(settings, public.map(|url| url.as_str())));
        Ok(Self { client, presigner, bucket: settings.bucket.as_str().to_owned(), part_size })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Multipart uploads begun and neither completed nor aborted: what an
    /// interrupted put would leave behind (and bill for) if it did not clean up.
    pub async fn unfinished_uploads(&self) -> Result<Vec<String>, StorageError> {
        let output = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|error| sdk_error("list uploads", None, error))?;
        Ok(output.uploads().iter().filter_map(|upload| upload.key().map(str::to_owned)).collect())
    }

    async fn size_of(&self, key: &Key) -> Result<u64, StorageError> {
        self.head(key).await?.map(|meta| meta.size).ok_or_else(|| StorageError::NotFound(key.clone()))
    }
}

fn config(settings: &S3Settings, endpoint: Option<&str>) -> aws_sdk_s3::Config {
    let credentials = Credentials::new(
        &settings.access_key_id,
        settings.secret_access_key.expose(),
        settings.session_token.as_ref().map(|token| token.expose().clone()),
        None,
        "stockflow-settings",
    );
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .credentials_provider(credentials)
        .force_path_style(settings.force_path_style)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(settings.read_timeout)
                .operation_timeout(settings.operation_timeout)
                .build(),
        )
        // We hash every body with sha256 ourselves; the SDK's default CRC
        // trailers (aws-chunked bodies) are refused by several S3-compatible
        // stores.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    builder.build()
}

#[async_trait::async_trait]
impl Storage for S3 {
    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, key: &Key, body: ByteStream, mode: PutMode) -> Result<Stored, StorageError> {
        // Only an early answer, to spare uploading a body for nothing: the
        // `If-None-Match: *` of the final request is what decides.
        if mode == PutMode::CreateNew && self.head(key).await?.is_some() {
            return Err(StorageError::AlreadyExists(key.clone()));
        }
        upload::put(self, key, body, mode).await
    }

    async fn get(&self, key: &Key, range: Option<ByteRange>) -> Result<Object, StorageError> {
        let mut request = self.client.get_object().bucket(&self.bucket).key(key.as_str());
        // Resolved against the real size first, so a range means the same
        // here as on LocalFs (S3 would answer some bad ranges with the whole
        // object instead of an error).
        let whole_size = match range {
            None => None,
            Some(range) => {
                let size = self.size_of(key).await?;
                let range = range.resolve(size)?;
                request = request.range(format!("bytes={}-{}", range.start(), range.end()));
                Some(size)
            }
        };
        let output = match request.send().await {
            Ok(output) => output,
            Err(error) if is_missing(&error) => return Err(StorageError::NotFound(key.clone())),
            Err(error) => return Err(sdk_error("get", Some(key), error)),
        };
        let size =
            whole_size.unwrap_or_else(|| output.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0));
        let modified = output.last_modified().and_then(|at| SystemTime::try_from(*at).ok());
        let body = ReaderStream::with_capacity(output.body.into_async_read(), READ_CHUNK_BYTES).boxed();
        Ok(Object { meta: ObjectMeta { key: key.clone(), size, modified }, body })
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, StorageError> {
        match self.client.head_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(output) => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: output.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                modified: output.last_modified().and_then(|at| SystemTime::try_from(*at).ok()),
            })),
            Err(error) if is_missing(&error) => Ok(None),
            Err(error) => Err(sdk_error("head", Some(key), error)),
        }
    }

    async fn discard_incomplete(&self, key: &Key) -> Result<u64, StorageError> {
        let listed = self.client.list_multipart_uploads().bucket(&self.bucket).prefix(key.as_str()).send().await;
        let listed = match listed {
            Ok(listed) => listed,
            // Some S3-compatible stores cannot list uploads; their bucket's
            // lifecycle rule (AbortIncompleteMultipartUpload) is the cleanup.
            Err(error) if error.as_service_error().and_then(|e| e.meta().code()) == Some("NotImplemented") => {
                tracing::debug!(%key, "the store cannot list unfinished uploads; leaving them to its lifecycle rule");
                return Ok(0);
            }
            Err(error) => return Err(sdk_error("list uploads", Some(key), error)),
        };
        let mut aborted = 0;
        for upload in listed.uploads() {
            let (Some(upload_key), Some(upload_id)) = (upload.key(), upload.upload_id()) else { continue };
            if upload_key != key.as_str() {
                continue;
            }
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(upload_key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(|error| sdk_error("abort upload", Some(key), error))?;
            aborted += 1;
        }
        Ok(aborted)
    }

    async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        match self.client.delete_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(_) => Ok(()),
            Err(error) if is_missing(&error) => Ok(()),
            Err(error) => Err(sdk_error("delete", Some(key), error)),
        }
    }

    fn list(&self, prefix: &Prefix) -> BoxStream<'static, Result<ObjectMeta, StorageError>> {
        let pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix.as_str()).into_paginator().send();
        let state = (pages, VecDeque::new(), false);
        stream::try_unfold(state, |(mut pages, mut ready, mut done)| async move {
            loop {
                if let Some(meta) = ready.pop_front() {
                    return Ok(Some((meta, (pages, ready, done))));
                }
                if done {
                    return Ok(None);
                }
                let Some(page) = pages.next().await else {
                    done = true;
                    continue;
                };
                let page = page.map_err(|error| sdk_error("list", None, error))?;
                ready.extend(page.contents().iter().filter_map(object_meta));
            }
        })
        .boxed()
    }

    async fn presign_get(&self, key: &Key, ttl: Duration, filename: &str) -> Result<Option<url::Url>, StorageError> {
        let ttl = ttl.clamp(Duration::from_secs(1), MAX_PRESIGN_TTL);
        let config = PresigningConfig::expires_in(ttl)
            .map_err(|error| StorageError::Unavailable(format!("cannot presign for {ttl:?}: {error}")))?;
        let request = self
            .presigner
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .response_content_disposition(crate::content_disposition(filename))
            .presigned(config)
            .await
            .map_err(|error| sdk_error("presign", Some(key), error))?;
        let url = url::Url::parse(request.uri())
            .map_err(|error| StorageError::Unavailable(format!("presigned URL does not parse: {error}")))?;
        Ok(Some(url))
    }

    async fn health_check(&self) -> Result<(), StorageError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(error) if is_missing(&error) => {
                Err(StorageError::Unavailable(format!("bucket {} does not exist", self.bucket)))
            }
            Err(error) => Err(sdk_error("health check", None, error)),
        }
    }
}

fn object_meta(object: &aws_sdk_s3::types::Object) -> Option<ObjectMeta> {
    let raw = object.key()?;
    match Key::parse(raw) {
        Ok(key) => Some(ObjectMeta {
            key,
            size: object.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            modified: object.last_modified().and_then(|at| SystemTime::try_from(*at).ok()),
        }),
        Err(error) => {
            tracing::warn!(%error, "skipping an object whose name cannot be a key");
            None
        }
    }
}
