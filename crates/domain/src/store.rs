//! The port to event storage, as the writer sees it.

use async_trait::async_trait;

use crate::event::AuditEvent;

/// A record that can never be stored, kept with its raw bytes and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRecord {
    /// Where it came from, e.g. the stream ARN.
    pub source: String,
    /// Its identity within the source, e.g. the shard and sequence number. Quarantining the
    /// same record twice keeps one copy.
    pub record_key: String,
    pub reason: String,
    pub payload: Vec<u8>,
}

/// How a write went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreReport {
    /// Events newly stored.
    pub inserted: u64,
    /// Events already stored (redeliveries and client retries).
    pub duplicates: u64,
}

/// Why a write failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or failed for reasons unrelated to the data:
    /// a retry may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database refused the data itself: retrying the same data cannot succeed.
    #[error("storage refused the data: {0}")]
    Refused(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Idempotent batch storage of events and quarantine of poison records.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores the events once each: events already stored are skipped, not duplicated.
    async fn store(&self, events: &[AuditEvent]) -> Result<StoreReport, StoreError>;

    /// Keeps records that can never be stored; returns how many were new.
    async fn quarantine(&self, records: &[RejectedRecord]) -> Result<u64, StoreError>;
}
