//! The verifiable log's contracts (issue 11; docs/verifiable-log.md): how a tenant's
//! checkpoint is named and timed, what a proof answer holds, and the ports the checkpointer
//! and the query API use: [`LogReader`] (proofs, read as the tenant) and [`Signer`] (KMS).

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::checkpoint::{Checkpoint, CheckpointError, KeyName, Origin};
use crate::fields::{TenantId, Timestamp};
use crate::merkle::{Hash, Subtree};
use crate::store::StoreError;
use crate::AuditEvent;

/// A checkpoint's time is its one extension line: `time <RFC 3339, microseconds, Z>`.
pub const TIME_EXTENSION: &str = "time ";

/// Stored subtree hashes are at levels that are multiples of this (4, 8, 12, …); leaves are
/// level 0. A subtree between them is folded from at most `2^(STRIDE-1)` stored hashes.
pub const SUBTREE_LEVEL_STRIDE: u8 = 4;

/// The origin line of a tenant's log: `sentinel/<stack>/<tenant>`. Tenant ids hold no
/// character an origin refuses (letters, digits, `.`, `_`, `-`, `:`).
pub fn origin(stack: &str, tenant: &TenantId) -> Result<Origin, CheckpointError> {
    Origin::parse(&format!("sentinel/{stack}/{}", tenant.as_str()))
}

/// The name of the stack's signing key in signed notes: `sentinel/<stack>`.
pub fn key_name(stack: &str) -> Result<KeyName, CheckpointError> {
    KeyName::parse(&format!("sentinel/{stack}"))
}

/// The text of a checkpoint's time line.
pub fn time_line(at: Timestamp) -> String {
    format!(
        "{TIME_EXTENSION}{}",
        at.get().to_rfc3339_opts(SecondsFormat::Micros, true)
    )
}

/// The checkpoint of a tenant's tree at `size` with `root`, signed at `at`.
pub fn checkpoint(
    stack: &str,
    tenant: &TenantId,
    size: u64,
    root: Hash,
    at: Timestamp,
) -> Result<Checkpoint, CheckpointError> {
    Checkpoint::new(origin(stack, tenant)?, size, root).with_extensions(vec![time_line(at)])
}

/// The time a checkpoint carries, if it carries exactly one well-formed time line.
pub fn checkpoint_time(checkpoint: &Checkpoint) -> Option<Timestamp> {
    let mut times = checkpoint
        .extensions()
        .iter()
        .filter_map(|line| line.strip_prefix(TIME_EXTENSION));
    let text = times.next()?;
    if times.next().is_some() {
        return None;
    }
    let at = Timestamp::parse(text).ok()?;
    (at.get().to_rfc3339_opts(SecondsFormat::Micros, true) == text).then_some(at)
}

/// Where a tenant's checkpoint is kept in S3: ordered by tree size, then time, so a listing
/// of a tenant's prefix is the order a verifier checks them in.
pub fn checkpoint_key(tenant: &TenantId, size: u64, at: Timestamp) -> String {
    format!(
        "{}{size:020}-{}.note",
        checkpoint_prefix(tenant),
        at.get().format("%Y%m%dT%H%M%S%.6fZ")
    )
}

/// The S3 prefix of a tenant's checkpoints.
pub fn checkpoint_prefix(tenant: &TenantId) -> String {
    format!("checkpoints/{}/", tenant.as_str())
}

/// Where a perfect subtree's hash comes from when only leaves (level 0) and levels that are
/// multiples of [`SUBTREE_LEVEL_STRIDE`] are stored: the level of the stored subtrees it is
/// folded from, and their indexes at that level (1 to `2^(STRIDE-1)` of them). Fold their
/// hashes with [`crate::merkle::root`], which combines hashes as nodes.
pub fn stored_parts(subtree: Subtree) -> (u8, std::ops::Range<u64>) {
    let base = subtree.level() - subtree.level() % SUBTREE_LEVEL_STRIDE;
    let shift = subtree.level() - base;
    let first = subtree.index() << shift;
    (base, first..first + (1u64 << shift))
}

/// Whether the checkpointer stores the hash of `subtree` (leaves are in the log itself).
pub fn is_stored_level(level: u8) -> bool {
    level > 0 && level.is_multiple_of(SUBTREE_LEVEL_STRIDE)
}

/// Where a checkpoint's note is written besides PostgreSQL: S3, with Object Lock when
/// deployed, so that a deleted checkpoint is visible.
#[async_trait]
pub trait CheckpointArchive: Send + Sync {
    async fn put(
        &self,
        key: &str,
        note: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// A signed checkpoint as kept: the note exactly as signed, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub tenant_id: TenantId,
    pub size: u64,
    pub root: Hash,
    pub signed_at: DateTime<Utc>,
    pub note: String,
}

/// The answer of `GET /checkpoint`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointAnswer<'a> {
    pub tree_size: u64,
    pub root_hash: String,
    pub signed_at: String,
    /// The C2SP signed note: verify it with the stack's public key before trusting the rest.
    pub checkpoint: &'a str,
}

impl<'a> From<&'a StoredCheckpoint> for CheckpointAnswer<'a> {
    fn from(c: &'a StoredCheckpoint) -> Self {
        Self {
            tree_size: c.size,
            root_hash: c.root.to_base64(),
            signed_at: c.signed_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            checkpoint: &c.note,
        }
    }
}

/// An event's place in its tenant's log, and its inclusion proof if a checkpoint covers it.
#[derive(Debug, Clone)]
pub struct EventInLog {
    pub event: AuditEvent,
    pub log_index: u64,
    /// The latest checkpoint and the proof against it; none while no checkpoint covers the
    /// event yet (checkpoints follow within a minute).
    pub proof: Option<(StoredCheckpoint, Vec<Hash>)>,
}

/// Why a consistency proof cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum ConsistencyError {
    #[error("no checkpoint has been signed for this tenant yet")]
    NoCheckpoint,
    #[error("{0}")]
    Range(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The log as the query API reads it, always for one tenant (the caller's).
#[async_trait]
pub trait LogReader: Send + Sync {
    /// The tenant's latest signed checkpoint (the largest tree, then the latest time).
    async fn latest_checkpoint(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// The event, its index, and its inclusion proof against the latest checkpoint. None if
    /// the tenant has no such event.
    async fn event_in_log(
        &self,
        tenant: &TenantId,
        event_id: &str,
    ) -> Result<Option<EventInLog>, StoreError>;

    /// The consistency proof from tree size `from` to `to` (the latest checkpoint's size if
    /// none), with the checkpoint of `to`'s size it is against.
    async fn consistency(
        &self,
        tenant: &TenantId,
        from: u64,
        to: Option<u64>,
    ) -> Result<(StoredCheckpoint, Vec<Hash>), ConsistencyError>;
}

/// Signs a message with the stack's key (ECDSA P-256 over SHA-256), answering the DER
/// signature: KMS when deployed and locally; a key in memory in unit tests.
#[async_trait]
pub trait Signer: Send + Sync {
    async fn sign(
        &self,
        message: &[u8],
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn tenant() -> TenantId {
        "acme".parse().unwrap()
    }

    #[test]
    fn a_checkpoint_carries_its_time_and_reads_it_back() {
        let at = Timestamp::new(Utc.timestamp_micros(1_764_000_000_123_456).unwrap()).unwrap();
        let c = checkpoint("local", &tenant(), 7, Hash::leaf(b"x"), at).unwrap();
        let text = c.to_text();
        assert!(text.starts_with("sentinel/local/acme\n7\n"), "{text}");
        assert!(
            text.ends_with("\ntime 2025-11-24T16:00:00.123456Z\n"),
            "{text}"
        );
        let parsed = Checkpoint::parse(&text).unwrap();
        assert_eq!(checkpoint_time(&parsed), Some(at));
    }

    #[test]
    fn a_checkpoint_without_one_exact_time_has_none() {
        let base = |lines: Vec<String>| {
            Checkpoint::new(origin("local", &tenant()).unwrap(), 1, Hash::empty())
                .with_extensions(lines)
                .unwrap()
        };
        assert_eq!(checkpoint_time(&base(vec![])), None);
        let one = "time 2025-11-24T16:00:00.000000Z".to_string();
        assert!(checkpoint_time(&base(vec![one.clone()])).is_some());
        assert_eq!(checkpoint_time(&base(vec![one.clone(), one])), None);
        for other in [
            "time 2025-11-24T16:00:00Z",
            "time 2025-11-24T17:00:00.000000+01:00",
            "time soon",
        ] {
            assert_eq!(checkpoint_time(&base(vec![other.into()])), None, "{other}");
        }
    }

    #[test]
    fn keys_of_checkpoints_sort_by_size_then_time() {
        let at = |micros| Timestamp::new(Utc.timestamp_micros(micros).unwrap()).unwrap();
        let mut keys = vec![
            checkpoint_key(&tenant(), 10, at(3_000_000)),
            checkpoint_key(&tenant(), 9, at(5_000_000)),
            checkpoint_key(&tenant(), 10, at(2_000_000)),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                "checkpoints/acme/00000000000000000009-19700101T000005.000000Z.note",
                "checkpoints/acme/00000000000000000010-19700101T000002.000000Z.note",
                "checkpoints/acme/00000000000000000010-19700101T000003.000000Z.note",
            ]
        );
    }

    #[test]
    fn every_subtree_folds_from_the_stored_levels() {
        use crate::merkle::{root, MemoryLog};
        let log =
            MemoryLog::from_leaves((0..300u32).map(|i| Hash::leaf(&i.to_be_bytes())).collect());
        for level in 0..=8u8 {
            for index in 0..(300u64 >> level) {
                let subtree = Subtree::new(level, index).unwrap();
                let (base, parts) = stored_parts(subtree);
                assert!(base == 0 || is_stored_level(base));
                assert!(parts.end - parts.start <= 8);
                let hashes: Vec<Hash> = parts
                    .map(|i| log.subtree(Subtree::new(base, i).unwrap()).unwrap())
                    .collect();
                assert_eq!(root(&hashes), log.subtree(subtree).unwrap(), "{subtree:?}");
            }
        }
    }
}
