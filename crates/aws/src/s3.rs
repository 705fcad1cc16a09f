//! The archive bucket: multipart uploads with bounded memory, reading objects back with their
//! checksum, and cleaning up what an interrupted export left behind: the archiver's
//! [`ArchiveBucket`].

use anyhow::{anyhow, Context};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
};
use bytes::Bytes;
use sentinel_domain::archive::{AdapterError, ArchiveBucket, MultipartUpload, ReadBack};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

/// S3's smallest part (all but the last part of an upload must be at least this big).
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;

/// Whole objects are hashed with SHA-256 here; the SDK cannot validate the composite
/// (per-part) CRC32 of a multipart object and would only warn that it cannot.
fn whole_object_reads() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default()
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
}

fn s3_error<E>(error: aws_sdk_s3::error::SdkError<E>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    anyhow!("{}", DisplayErrorContext(&error))
}

/// An S3 client from the shared config. `S3_FORCE_PATH_STYLE=true` selects path-style
/// addressing, which LocalStack needs; on AWS it stays unset.
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = std::env::var("S3_FORCE_PATH_STYLE").is_ok_and(|v| v == "true" || v == "1");
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

/// Keeps the last bytes of a stream, where a Parquet footer is.
pub struct Tail {
    keep: usize,
    bytes: Vec<u8>,
}

impl Tail {
    pub fn new(keep: usize) -> Self {
        Self {
            keep,
            bytes: Vec::new(),
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if chunk.len() >= self.keep {
            self.bytes.clear();
            self.bytes
                .extend_from_slice(&chunk[chunk.len() - self.keep..]);
            return;
        }
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * self.keep {
            self.bytes.drain(..self.bytes.len() - self.keep);
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The archive bucket.
#[derive(Clone)]
pub struct Bucket {
    client: aws_sdk_s3::Client,
    name: String,
}

impl Bucket {
    pub fn new(client: aws_sdk_s3::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    /// The object's body, or `None` if there is no such key.
    async fn open(&self, key: &str) -> anyhow::Result<Option<ByteStream>> {
        match self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .customize()
            .config_override(whole_object_reads())
            .send()
            .await
        {
            Ok(output) => Ok(Some(output.body)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => {
                Err(s3_error(e)).with_context(|| format!("failed to get s3://{}/{key}", self.name))
            }
        }
    }
}

#[async_trait::async_trait]
impl ArchiveBucket for Bucket {
    type Upload = Upload;

    fn name(&self) -> &str {
        &self.name
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), AdapterError> {
        self.client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(s3_error)
            .with_context(|| format!("failed to put s3://{}/{key}", self.name))?;
        Ok(())
    }

    /// A small object in full, or `None` if there is no such key.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, AdapterError> {
        let Some(body) = self.open(key).await? else {
            return Ok(None);
        };
        let body = body
            .collect()
            .await
            .with_context(|| format!("failed to read s3://{}/{key}", self.name))?;
        Ok(Some(body.to_vec()))
    }

    /// Streams an object through SHA-256, keeping only its last `keep` bytes; `None` if the
    /// key does not exist.
    async fn read_back(&self, key: &str, keep: usize) -> Result<Option<ReadBack>, AdapterError> {
        let Some(mut body) = self.open(key).await? else {
            return Ok(None);
        };
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let mut tail = Tail::new(keep);
        while let Some(chunk) = body
            .try_next()
            .await
            .with_context(|| format!("failed to read s3://{}/{key}", self.name))?
        {
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
            tail.push(&chunk);
        }
        Ok(Some(ReadBack {
            sha256: hex::encode(hasher.finalize()),
            bytes,
            tail: tail.into_bytes(),
        }))
    }

    /// The last `n` bytes of an object.
    async fn get_last(&self, key: &str, n: usize) -> Result<Vec<u8>, AdapterError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .range(format!("bytes=-{n}"))
            .customize()
            .config_override(whole_object_reads())
            .send()
            .await
            .map_err(s3_error)
            .with_context(|| format!("failed to get the end of s3://{}/{key}", self.name))?;
        let body = output.body.collect().await?;
        Ok(body.to_vec())
    }

    /// Every key under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, AdapterError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(s3_error)
                .with_context(|| format!("failed to list s3://{}/{prefix}", self.name))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        Ok(keys)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), AdapterError> {
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.name)
                .delete(
                    Delete::builder()
                        .set_objects(Some(objects))
                        .quiet(true)
                        .build()?,
                )
                .send()
                .await
                .map_err(s3_error)
                .with_context(|| format!("failed to delete objects in s3://{}", self.name))?;
            if let Some(error) = output.errors().first() {
                return Err(anyhow!(
                    "failed to delete s3://{}/{}: {}",
                    self.name,
                    error.key().unwrap_or(""),
                    error.message().unwrap_or("unknown error")
                )
                .into());
            }
        }
        Ok(())
    }

    /// Aborts every unfinished multipart upload under `prefix`; returns the keys it aborted.
    async fn abort_uploads(&self, prefix: &str) -> Result<Vec<String>, AdapterError> {
        let mut aborted = Vec::new();
        let (mut key_marker, mut upload_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.name)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(upload_marker.clone())
                .send()
                .await
                .map_err(s3_error)
                .with_context(|| {
                    format!("failed to list uploads in s3://{}/{prefix}", self.name)
                })?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.name)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
                    .map_err(s3_error)
                    .with_context(|| format!("failed to abort the upload of {key}"))?;
                aborted.push(key.to_string());
            }
            if page.is_truncated() != Some(true) {
                return Ok(aborted);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            upload_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && upload_marker.is_none() {
                return Ok(aborted);
            }
        }
    }

    /// Starts a multipart upload of `key`.
    async fn upload(&self, key: &str, max_in_flight: usize) -> Result<Upload, AdapterError> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.name)
            .key(key)
            .content_type("application/vnd.apache.parquet")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(s3_error)
            .with_context(|| format!("failed to start the upload of s3://{}/{key}", self.name))?;
        let upload_id = output
            .upload_id()
            .ok_or_else(|| anyhow!("S3 started an upload without an id"))?
            .to_string();
        Ok(Upload {
            bucket: self.clone(),
            key: key.to_string(),
            upload_id,
            in_flight: JoinSet::new(),
            max_in_flight: max_in_flight.max(1),
            done: Vec::new(),
            next_number: 1,
            hasher: Sha256::new(),
            bytes: 0,
        })
    }
}

/// A multipart upload in progress. Parts go up concurrently, at most `max_in_flight` at a
/// time, so memory stays bounded by that many chunks.
pub struct Upload {
    bucket: Bucket,
    key: String,
    upload_id: String,
    in_flight: JoinSet<anyhow::Result<CompletedPart>>,
    max_in_flight: usize,
    done: Vec<CompletedPart>,
    next_number: i32,
    hasher: Sha256,
    bytes: u64,
}

impl Upload {
    async fn join_one(&mut self) -> anyhow::Result<()> {
        if let Some(joined) = self.in_flight.join_next().await {
            self.done.push(joined.context("an upload task panicked")??);
        }
        Ok(())
    }

    /// Waits for every part sent so far.
    pub async fn settle(&mut self) -> anyhow::Result<()> {
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl MultipartUpload for Upload {
    fn key(&self) -> &str {
        &self.key
    }

    /// Sends the next chunk of the object (every chunk but the last must be at least
    /// [`MIN_PART_BYTES`]).
    async fn send(&mut self, chunk: Vec<u8>) -> Result<(), AdapterError> {
        self.hasher.update(&chunk);
        self.bytes += chunk.len() as u64;
        while self.in_flight.len() >= self.max_in_flight {
            self.join_one().await?;
        }
        let number = self.next_number;
        self.next_number += 1;
        let (client, bucket, key, id) = (
            self.bucket.client.clone(),
            self.bucket.name.clone(),
            self.key.clone(),
            self.upload_id.clone(),
        );
        let body = Bytes::from(chunk);
        self.in_flight.spawn(async move {
            let output = client
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(s3_error)
                .with_context(|| {
                    format!("failed to upload part {number} of s3://{bucket}/{key}")
                })?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(output.e_tag().map(str::to_string))
                .set_checksum_crc32(output.checksum_crc32().map(str::to_string))
                .build())
        });
        Ok(())
    }

    /// Completes the upload; returns the object's SHA-256 and size.
    async fn complete(mut self) -> Result<(String, u64), AdapterError> {
        self.settle().await?;
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.part_number());
        self.bucket
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket.name)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(s3_error)
            .with_context(|| {
                format!(
                    "failed to complete the upload of s3://{}/{}",
                    self.bucket.name, self.key
                )
            })?;
        Ok((hex::encode(self.hasher.clone().finalize()), self.bytes))
    }

    /// Abandons the upload, best effort (a rerun aborts whatever is left).
    async fn abort(mut self) {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        let result = self
            .bucket
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket.name)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        if let Err(error) = result {
            tracing::warn!(key = %self.key, error = %DisplayErrorContext(&error), "failed to abort an upload");
        }
    }
}

/// Checkpoints are written to their own bucket (Object Lock when deployed), one object each.
#[async_trait::async_trait]
impl sentinel_domain::log::CheckpointArchive for Bucket {
    async fn put(
        &self,
        key: &str,
        note: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        ArchiveBucket::put(self, key, note.to_vec(), "text/plain; charset=utf-8")
            .await
            .map_err(|e| format!("{e:#}").into())
    }
}
