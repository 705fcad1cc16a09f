//! The S3 copies of a tenant's checkpoints, under `checkpoints/<tenant>/` (keys from
//! `sentinel_domain::log::checkpoint_key`).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use sentinel_aws::s3::Bucket;
use sentinel_domain::archive::ArchiveBucket;
use sentinel_domain::fields::TenantId;
use sentinel_domain::log::checkpoint_prefix;

use crate::checkpoints::StoredNote;
use crate::findings::Store;
use crate::source::{CheckpointSource, SourceError};

/// Notes read at once.
const CONCURRENT_GETS: usize = 16;

/// The checkpoint bucket.
pub struct S3Checkpoints {
    bucket: Bucket,
}

impl S3Checkpoints {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            bucket: Bucket::new(client, bucket),
        }
    }

    /// The bucket named `bucket`, with the SDK's configuration from the environment.
    pub async fn from_env(bucket: impl Into<String>) -> Self {
        let config = sentinel_aws::config().await;
        Self::new(sentinel_aws::s3::client(&config), bucket)
    }
}

#[async_trait]
impl CheckpointSource for S3Checkpoints {
    async fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<StoredNote>, SourceError> {
        let prefix = checkpoint_prefix(tenant);
        let keys = self.bucket.list(&prefix).await.map_err(|e| {
            SourceError::new(
                &format!("could not list s3://{}/{prefix}", self.bucket.name()),
                format!("{e:#}"),
            )
        })?;
        futures_util::stream::iter(keys)
            .map(|key| {
                let prefix = &prefix;
                async move {
                    let note = self.bucket.get(&key).await.map_err(|e| {
                        SourceError::new(
                            &format!("could not read s3://{}/{key}", self.bucket.name()),
                            format!("{e:#}"),
                        )
                    })?;
                    let (claimed_size, claimed_at) = parse_key(prefix, &key);
                    Ok(StoredNote {
                        store: Store::S3,
                        location: key,
                        // A key listed and then gone reads as an empty note: invalid, and named.
                        note: note.unwrap_or_default(),
                        claimed_size,
                        claimed_root: None,
                        claimed_at,
                    })
                }
            })
            .buffered(CONCURRENT_GETS)
            .try_collect()
            .await
    }
}

/// The size and time a checkpoint key names: `<prefix><size, 20 digits>-<YYYYmmddTHHMMSS.ffffffZ>.note`.
pub fn parse_key(prefix: &str, key: &str) -> (Option<u64>, Option<DateTime<Utc>>) {
    let Some(name) = key
        .strip_prefix(prefix)
        .and_then(|k| k.strip_suffix(".note"))
    else {
        return (None, None);
    };
    let Some((size, at)) = name.split_once('-') else {
        return (None, None);
    };
    let size = (size.len() == 20).then(|| size.parse().ok()).flatten();
    let at = NaiveDateTime::parse_from_str(at, "%Y%m%dT%H%M%S%.6fZ")
        .ok()
        .map(|at| at.and_utc());
    (size, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_domain::fields::Timestamp;

    #[test]
    fn a_checkpoint_key_gives_back_its_size_and_time() {
        let tenant: TenantId = "acme".parse().unwrap();
        let at = Timestamp::parse("2026-11-20T10:00:00.123456Z").unwrap();
        let key = sentinel_domain::log::checkpoint_key(&tenant, 1234, at);
        assert_eq!(
            parse_key("checkpoints/acme/", &key),
            (Some(1234), Some(at.get()))
        );
        assert_eq!(
            parse_key("checkpoints/acme/", "checkpoints/acme/junk"),
            (None, None)
        );
    }
}
