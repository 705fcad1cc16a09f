//! The archiver's ports: the ledger where each month's progress and partition are kept
//! (PostgreSQL), and the bucket its Parquet files and manifest go to (S3). The archiver's
//! state machine decides every step through these traits, so in-memory fakes can drive it
//! through every state and every crash without a database or object store.

use async_trait::async_trait;

use crate::manifest::{CoveringCheckpoint, Manifest};
use crate::merkle::Hash;
use crate::month::Month;

/// An adapter's failure, with its cause chain. The archiver reports which side failed; a
/// retry may help either way.
pub type AdapterError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a month's archiving stands. Each step commits before the next one starts, so a
/// crash anywhere resumes from the last committed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Parts are being written; S3 may hold partial or stray objects for this batch.
    Exporting,
    /// Parts and manifest are in S3 and the manifest is recorded; not yet read back.
    Exported,
    /// Read back from S3 and matched against PostgreSQL.
    Verified,
    /// Detached from `audit_events` after a last count under lock; not yet dropped.
    Detached,
    /// The partition is gone; S3 holds the month.
    Dropped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Exporting => "exporting",
            State::Exported => "exported",
            State::Verified => "verified",
            State::Detached => "detached",
            State::Dropped => "dropped",
        }
    }

    /// The state named `s` (as [`State::as_str`] spells it).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "exporting" => State::Exporting,
            "exported" => State::Exported,
            "verified" => State::Verified,
            "detached" => State::Detached,
            "dropped" => State::Dropped,
            _ => return None,
        })
    }
}

/// A month's recorded progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub month: Month,
    pub state: State,
    /// 1 for the month's first export, one more for each batch of late events.
    pub batch: u32,
    /// Parts before this index belong to earlier, finished batches.
    pub first_part: usize,
    /// Rows of the current batch, once exported.
    pub batch_rows: Option<u64>,
    pub manifest: Option<Manifest>,
    pub error: Option<String>,
}

/// How a month's partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Attached,
    /// A table of the partition's name exists but is not a partition of `audit_events`.
    Detached,
    Absent,
}

/// What the database holds for a month: its rows and their `occurred_at` range in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthFacts {
    pub rows: u64,
    pub min_occurred_at: Option<i64>,
    pub max_occurred_at: Option<i64>,
}

/// The archive's bookkeeping: month partitions, and the per-month lock that keeps two
/// archivers off the same month.
#[async_trait]
pub trait ArchiveLedger: Send + Sync {
    /// A month held under its lock.
    type Held: HeldMonth;

    /// Creates the month's partition unless it exists; whether it created it.
    async fn ensure_partition(&self, month: Month) -> Result<bool, AdapterError>;

    /// Months with an attached partition.
    async fn attached_months(&self) -> Result<Vec<Month>, AdapterError>;

    /// Months whose archiving started and has not reached `dropped`.
    async fn unfinished_months(&self) -> Result<Vec<Month>, AdapterError>;

    /// Takes the month's lock; `None` if another archiver holds it.
    async fn try_lock(&self, month: Month) -> Result<Option<Self::Held>, AdapterError>;

    /// The newest signed checkpoint of each of `tenants` that has one.
    async fn latest_checkpoints(
        &self,
        tenants: &[String],
    ) -> Result<Vec<(String, CoveringCheckpoint)>, AdapterError>;

    /// The leaf hashes the log holds for `tenant` at indexes `from` to `to - 1`, in order.
    /// Fails if any index in between has no entry (the log has a gap).
    async fn log_leaves(&self, tenant: &str, from: u64, to: u64)
        -> Result<Vec<Hash>, AdapterError>;

    /// The newest note of the manifests' chain, if any was signed.
    async fn chain_tip(&self) -> Result<Option<ChainedNote>, AdapterError>;

    /// Appends `note` to the chain: `false` if its sequence number is taken already (another
    /// archiver signed one first; sign again after the new tip).
    async fn append_note(&self, note: &ChainedNote) -> Result<bool, AdapterError>;

    /// The newest note that names `month`'s manifest, if any.
    async fn note_of(&self, month: Month) -> Result<Option<ChainedNote>, AdapterError>;
}

/// One month, held under its lock until [`HeldMonth::release`]. Every step that changes
/// something commits on its own, and each transition is refused unless the month is in
/// the state it starts from.
#[async_trait]
pub trait HeldMonth: Send {
    fn month(&self) -> Month;

    /// The recorded progress; `None` before the month's archiving begins.
    async fn progress(&mut self) -> Result<Option<Progress>, AdapterError>;

    async fn partition(&mut self) -> Result<Partition, AdapterError>;

    /// The database's rows for the month, counted now.
    async fn facts(&mut self) -> Result<MonthFacts, AdapterError>;

    /// Starts the month's first export (`exporting`, batch 1).
    async fn begin(&mut self) -> Result<(), AdapterError>;

    /// `dropped` → `exporting`: a further batch for late events, its parts from `first_part`.
    async fn begin_late_batch(&mut self, first_part: usize) -> Result<(), AdapterError>;

    /// `exporting` → `exported`, recording the manifest and the batch's rows.
    async fn mark_exported(
        &mut self,
        manifest: &Manifest,
        batch_rows: u64,
    ) -> Result<(), AdapterError>;

    /// `exported` → `verified`.
    async fn mark_verified(&mut self) -> Result<(), AdapterError>;

    /// `from` → `exporting`, keeping the partition, with the reason.
    async fn mark_for_export(&mut self, from: State, why: &str) -> Result<(), AdapterError>;

    /// Records why the last attempt failed, leaving the state as it is.
    async fn record_error(&mut self, error: &str) -> Result<(), AdapterError>;

    /// `verified` → `detached` if the partition still holds exactly the batch's rows,
    /// counted under a lock that holds off new rows. `Ok(false)`: rows arrived after the
    /// export, and the month is back to `exporting`.
    async fn detach(&mut self) -> Result<bool, AdapterError>;

    /// `detached` → `dropped`: drops the detached table. A month already dropped is left
    /// as it is.
    async fn drop_detached(&mut self) -> Result<(), AdapterError>;

    /// Releases the lock. It never fails: an adapter that cannot release it otherwise
    /// gives up whatever holds it (a database session, say).
    async fn release(self)
    where
        Self: Sized;
}

/// An object read back in full: its SHA-256 (lowercase hex), its size, and its last bytes
/// (at least the `keep` asked for, or the whole object if it is smaller).
/// A signed manifest note as the ledger keeps it (see [`crate::archive_chain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedNote {
    pub seq: u64,
    pub month: Month,
    /// SHA-256 of the manifest it signs.
    pub manifest: Hash,
    pub signed_at: chrono::DateTime<chrono::Utc>,
    /// The whole signed note, as written to S3.
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    pub sha256: String,
    pub bytes: u64,
    pub tail: Vec<u8>,
}

/// The archive bucket.
#[async_trait]
pub trait ArchiveBucket: Send + Sync {
    type Upload: MultipartUpload;

    fn name(&self) -> &str;

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), AdapterError>;

    /// A small object in full; `None` if there is no such key.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, AdapterError>;

    /// Reads an object through SHA-256, keeping its last `keep` bytes; `None` if there is no
    /// such key.
    async fn read_back(&self, key: &str, keep: usize) -> Result<Option<ReadBack>, AdapterError>;

    /// The last `n` bytes of an object.
    async fn get_last(&self, key: &str, n: usize) -> Result<Vec<u8>, AdapterError>;

    /// Every key under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, AdapterError>;

    async fn delete(&self, keys: &[String]) -> Result<(), AdapterError>;

    /// Aborts every unfinished multipart upload under `prefix`; the keys it aborted.
    async fn abort_uploads(&self, prefix: &str) -> Result<Vec<String>, AdapterError>;

    /// Starts a multipart upload of `key`, with at most `max_in_flight` parts going up at
    /// once.
    async fn upload(&self, key: &str, max_in_flight: usize) -> Result<Self::Upload, AdapterError>;
}

/// A multipart upload in progress: nothing is visible under its key until it completes.
#[async_trait]
pub trait MultipartUpload: Send {
    fn key(&self) -> &str;

    /// Sends the object's next chunk (every chunk but the last must be at least S3's 5 MiB).
    async fn send(&mut self, chunk: Vec<u8>) -> Result<(), AdapterError>;

    /// Completes the upload; the object's SHA-256 (lowercase hex) and size.
    async fn complete(self) -> Result<(String, u64), AdapterError>
    where
        Self: Sized;

    /// Abandons the upload, best effort (the next export aborts whatever is left).
    async fn abort(self)
    where
        Self: Sized;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_name() {
        for state in [
            State::Exporting,
            State::Exported,
            State::Verified,
            State::Detached,
            State::Dropped,
        ] {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        assert_eq!(State::parse("archived"), None);
    }
}
