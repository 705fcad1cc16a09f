//! Where the verifier reads from: the ports. PostgreSQL implements them now
//! ([`crate::pg`], [`crate::s3`]); an archived month's Parquet parts will be another
//! [`LeafSource`], merged with PostgreSQL's by log index.

use async_trait::async_trait;

use crate::checkpoints::StoredNote;
use crate::engine::LeafEntry;

/// Why a source could not be read: the run cannot finish (exit code 2), which is not a
/// finding about the log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

impl SourceError {
    pub fn new(context: &str, error: impl std::fmt::Display) -> Self {
        Self(format!("{context}: {error}"))
    }
}

/// The leaves of a tenant's log in log-index order, each with what its event's row gave.
#[async_trait]
pub trait LeafSource: Send {
    /// The next entries, in increasing log-index order; `None` once every entry was given.
    async fn next_batch(&mut self) -> Result<Option<Vec<LeafEntry>>, SourceError>;
}

/// A place that keeps a tenant's signed checkpoints.
#[async_trait]
pub trait CheckpointSource: Send + Sync {
    async fn checkpoints(
        &self,
        tenant: &sentinel_domain::fields::TenantId,
    ) -> Result<Vec<StoredNote>, SourceError>;
}
