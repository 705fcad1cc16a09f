//! The IAM principal directory on S3: one object per principal,
//! `s3://PRINCIPALS_BUCKET/principals/<ARN>.json` holding `{"tenant": …, "scopes": […]}`.
//! One object per principal, so granting one never races with granting another, and the
//! bucket's versioning keeps every change.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use sentinel_domain::identity::{DirectoryError, Grant, PrincipalDirectory};

const PREFIX: &str = "principals/";

/// Grants kept in an S3 bucket.
#[derive(Clone)]
pub struct S3PrincipalDirectory {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3PrincipalDirectory {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// The directory in `PRINCIPALS_BUCKET`.
    pub fn from_env(config: &aws_config::SdkConfig) -> anyhow::Result<Self> {
        let bucket = std::env::var("PRINCIPALS_BUCKET")
            .ok()
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| anyhow::anyhow!("PRINCIPALS_BUCKET must be set (AUTH_MODE=iam)"))?;
        Ok(Self::new(crate::s3::client(config), bucket))
    }

    fn key(principal: &str) -> String {
        format!("{PREFIX}{principal}.json")
    }

    /// Grants `principal` its tenant and scopes (replacing any earlier grant).
    pub async fn grant(&self, principal: &str, grant: &Grant) -> anyhow::Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(Self::key(principal))
            .content_type("application/json")
            .body(ByteStream::from(serde_json::to_vec(grant)?))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "failed to write the grant of {principal}: {}",
                    e.into_service_error()
                )
            })?;
        Ok(())
    }

    /// Removes `principal`'s grant; answers whether there was one.
    pub async fn revoke(&self, principal: &str) -> anyhow::Result<bool> {
        let existed = self.lookup(principal).await?.is_some();
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(Self::key(principal))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "failed to remove the grant of {principal}: {}",
                    e.into_service_error()
                )
            })?;
        Ok(existed)
    }

    /// Every grant, by principal.
    pub async fn list(&self) -> anyhow::Result<Vec<(String, Grant)>> {
        let mut grants = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(PREFIX)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                anyhow::anyhow!("failed to list grants: {}", e.into_service_error())
            })?;
            for object in page.contents() {
                let Some(principal) = object
                    .key()
                    .and_then(|k| k.strip_prefix(PREFIX))
                    .and_then(|k| k.strip_suffix(".json"))
                else {
                    continue;
                };
                if let Some(grant) = self.lookup(principal).await? {
                    grants.push((principal.to_string(), grant));
                }
            }
        }
        Ok(grants)
    }
}

#[async_trait]
impl PrincipalDirectory for S3PrincipalDirectory {
    async fn lookup(&self, principal: &str) -> Result<Option<Grant>, DirectoryError> {
        let object = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(Self::key(principal))
            .send()
            .await
        {
            Ok(object) => object,
            Err(error) => {
                let error = error.into_service_error();
                if error.is_no_such_key() {
                    return Ok(None);
                }
                return Err(DirectoryError(error.to_string()));
            }
        };
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| DirectoryError(e.to_string()))?
            .into_bytes();
        // A grant that does not parse is a directory fault, never a grant of nothing.
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DirectoryError(format!("the grant of {principal} is malformed: {e}")))
    }
}
