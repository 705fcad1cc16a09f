//! The port to event storage, as the writer sees it.

use async_trait::async_trait;

use crate::event::{AuditEvent, HashedEvent};

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
    /// Events already stored with the same content (redeliveries and client retries).
    pub duplicates: u64,
    /// Events whose (tenant, id) was already stored with other content: not stored as
    /// events, but newly kept as conflicts, with both contents, for an operator to see.
    pub conflicts: u64,
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
    /// Stores the events once each: events already stored are skipped, not duplicated, and a
    /// copy whose content differs from the stored one is kept as a conflict.
    async fn store(&self, events: &[AuditEvent]) -> Result<StoreReport, StoreError>;

    /// [`EventStore::store`] for events whose leaf hashes are known already (the writer
    /// hashes the canonical records it decoded), so that a store that keeps a log need not
    /// encode the events again to hash them. The default stores the events and leaves the
    /// hashes unused.
    async fn store_hashed(&self, events: &[HashedEvent]) -> Result<StoreReport, StoreError> {
        let events: Vec<AuditEvent> = events.iter().map(|e| e.event().clone()).collect();
        self.store(&events).await
    }

    /// Keeps records that can never be stored; returns how many were new.
    async fn quarantine(&self, records: &[RejectedRecord]) -> Result<u64, StoreError>;

    /// A write in parts that commits once: the writer stores the first part of a batch
    /// while it decodes the rest. Nothing is kept unless [`StoreTransaction::commit`]
    /// succeeds. The default buffers the parts and stores them whole at the commit.
    async fn begin(&self) -> Result<Box<dyn StoreTransaction + '_>, StoreError> {
        Ok(Box::new(Buffered {
            store: self,
            events: Vec::new(),
        }))
    }
}

/// Writes that commit together ([`EventStore::begin`]).
#[async_trait]
pub trait StoreTransaction: Send {
    /// Writes events, in order after those written before; within the transaction the
    /// first copy of an id wins.
    async fn write(&mut self, events: &[HashedEvent]) -> Result<(), StoreError>;

    /// Commits every write, answering how they went.
    async fn commit(self: Box<Self>) -> Result<StoreReport, StoreError>;
}

struct Buffered<'a, S: EventStore + ?Sized> {
    store: &'a S,
    events: Vec<HashedEvent>,
}

#[async_trait]
impl<S: EventStore + ?Sized> StoreTransaction for Buffered<'_, S> {
    async fn write(&mut self, events: &[HashedEvent]) -> Result<(), StoreError> {
        self.events.extend_from_slice(events);
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<StoreReport, StoreError> {
        self.store.store_hashed(&self.events).await
    }
}
