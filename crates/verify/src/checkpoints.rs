//! The checkpoints' side of the verification: every copy's signature, PostgreSQL's copies
//! against S3's, and the order of sizes. What passes goes on to the tree check.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use sentinel_domain::checkpoint::{open_checkpoint, Origin, VerifierKey};
use sentinel_domain::fields::TenantId;
use sentinel_domain::log::{checkpoint_key, checkpoint_time};
use sentinel_domain::merkle::Hash;

use crate::findings::{CheckpointRef, Finding, Store};

/// A checkpoint's note as a store keeps it, with what the store says of it beside the note
/// (PostgreSQL's columns; S3's key).
#[derive(Debug, Clone)]
pub struct StoredNote {
    pub store: Store,
    /// S3: the key. PostgreSQL: `checkpoints row signed_at=…`.
    pub location: String,
    pub note: Vec<u8>,
    /// The size, root and time the store claims, if it claims them.
    pub claimed_size: Option<u64>,
    pub claimed_root: Option<Hash>,
    pub claimed_at: Option<DateTime<Utc>>,
}

/// A checkpoint whose signature verifies, to check against the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub signed_at: DateTime<Utc>,
    pub note: String,
    /// The S3 key it has, or should have: one identity for both copies.
    pub key: String,
}

impl ValidCheckpoint {
    pub fn reference(&self) -> CheckpointRef {
        CheckpointRef {
            size: Some(self.size),
            signed_at: Some(rfc3339(self.signed_at)),
            location: self.key.clone(),
        }
    }
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// What the checkpoint check found.
#[derive(Debug, Default)]
pub struct CheckedCheckpoints {
    /// Distinct checkpoints (a PostgreSQL copy and an S3 copy of the same key are one).
    pub total: u64,
    pub in_postgresql: u64,
    pub in_s3: u64,
    /// The checkpoints whose every copy verified and agreed, by S3 key.
    pub valid: Vec<ValidCheckpoint>,
    /// Keys of checkpoints that failed here (the tree check may fail more).
    pub failed: HashSet<String>,
    /// S3 checkpoints newer than the PostgreSQL snapshot, not compared.
    pub too_new: u64,
}

/// Checks every copy's signature and that PostgreSQL and S3 hold the same checkpoints. `s3`
/// is `None` when no bucket was given, `postgresql` when the database is not read
/// (`--s3-only`). S3 checkpoints signed at or after `newer_than` are
/// left out: the database snapshot was taken before they could have been committed.
pub fn check(
    tenant: &TenantId,
    origin: &Origin,
    keys: &[VerifierKey],
    postgresql: Option<Vec<StoredNote>>,
    s3: Option<Vec<StoredNote>>,
    newer_than: Option<DateTime<Utc>>,
    findings: &mut Vec<Finding>,
) -> CheckedCheckpoints {
    let pg_checked = postgresql.is_some();
    let postgresql = postgresql.unwrap_or_default();
    let mut checked = CheckedCheckpoints {
        in_postgresql: postgresql.len() as u64,
        ..CheckedCheckpoints::default()
    };
    // Both copies of a checkpoint under its S3 key.
    let mut by_key: BTreeMap<String, (Option<Opened>, Option<Opened>)> = BTreeMap::new();
    for stored in postgresql {
        let opened = open(tenant, origin, keys, stored, findings);
        let key = opened.key.clone();
        by_key.entry(key).or_default().0 = Some(opened);
    }
    let s3_checked = s3.is_some();
    for stored in s3.unwrap_or_default() {
        let opened = open(tenant, origin, keys, stored, findings);
        let in_pg = by_key.get(&opened.key).is_some_and(|(pg, _)| pg.is_some());
        let too_new = match (newer_than, opened.claimed_at) {
            (Some(limit), Some(at)) => at >= limit,
            _ => false,
        };
        if !in_pg && too_new {
            checked.too_new += 1;
            continue;
        }
        checked.in_s3 += 1;
        let key = opened.key.clone();
        by_key.entry(key).or_default().1 = Some(opened);
    }
    for (key, (pg, s3)) in by_key {
        checked.total += 1;
        let mut ok = true;
        if s3_checked && pg_checked {
            match (&pg, &s3) {
                (Some(pg), None) => {
                    ok = false;
                    findings.push(Finding::CheckpointMissing {
                        missing_from: Store::S3,
                        checkpoint: pg.reference(),
                    });
                }
                (None, Some(s3)) => {
                    ok = false;
                    findings.push(Finding::CheckpointMissing {
                        missing_from: Store::Postgresql,
                        checkpoint: s3.reference(),
                    });
                }
                (Some(pg), Some(s3)) if pg.note != s3.note => {
                    ok = false;
                    findings.push(Finding::CheckpointCopiesDiffer {
                        checkpoint: pg.reference(),
                    });
                }
                _ => {}
            }
        }
        let copies: Vec<&Opened> = pg.iter().chain(s3.iter()).collect();
        if copies.iter().any(|c| c.valid.is_none()) {
            ok = false;
        }
        // The tree is checked against every copy that verifies, even when another failed:
        // a valid signature on a root is a claim the log must still meet.
        let mut seen: Vec<&ValidCheckpoint> = Vec::new();
        for copy in &copies {
            if let Some(valid) = &copy.valid {
                if !seen.iter().any(|v| v.note == valid.note) {
                    seen.push(valid);
                    checked.valid.push(valid.clone());
                }
            }
        }
        if !ok {
            checked.failed.insert(key);
        }
    }
    // A log only grows: by signing time, sizes never decrease.
    let mut by_time: Vec<&ValidCheckpoint> = checked.valid.iter().collect();
    by_time.sort_by_key(|c| (c.signed_at, c.size));
    let mut largest: Option<&ValidCheckpoint> = None;
    for c in by_time {
        if let Some(earlier) = largest {
            if c.size < earlier.size {
                findings.push(Finding::CheckpointSizeDecreased {
                    earlier: earlier.reference(),
                    later: c.reference(),
                });
                continue;
            }
        }
        largest = Some(c);
    }
    checked.valid.sort_by_key(|c| (c.size, c.signed_at));
    checked
}

struct Opened {
    key: String,
    note: Vec<u8>,
    location: String,
    claimed_size: Option<u64>,
    claimed_at: Option<DateTime<Utc>>,
    valid: Option<ValidCheckpoint>,
}

impl Opened {
    fn reference(&self) -> CheckpointRef {
        match &self.valid {
            Some(v) => v.reference(),
            None => CheckpointRef {
                size: self.claimed_size,
                signed_at: self.claimed_at.map(rfc3339),
                location: self.location.clone(),
            },
        }
    }
}

/// Opens one copy: its signature, origin and time line, and that the store's labels match it.
fn open(
    tenant: &TenantId,
    origin: &Origin,
    keys: &[VerifierKey],
    stored: StoredNote,
    findings: &mut Vec<Finding>,
) -> Opened {
    let claimed_key = match (stored.store, stored.claimed_size, stored.claimed_at) {
        (Store::S3, ..) => Some(stored.location.clone()),
        (_, Some(size), Some(at)) => sentinel_domain::fields::Timestamp::new(at)
            .ok()
            .map(|at| checkpoint_key(tenant, size, at)),
        _ => None,
    };
    let mut opened = Opened {
        key: claimed_key
            .clone()
            .unwrap_or_else(|| stored.location.clone()),
        note: stored.note.clone(),
        location: stored.location.clone(),
        claimed_size: stored.claimed_size,
        claimed_at: stored.claimed_at,
        valid: None,
    };
    let invalid = |reason: String, findings: &mut Vec<Finding>, opened: &Opened| {
        findings.push(Finding::CheckpointInvalid {
            store: stored.store,
            checkpoint: opened.reference(),
            reason,
        });
    };
    let checkpoint = match open_checkpoint(&stored.note, origin, keys) {
        Ok(c) => c,
        Err(e) => {
            invalid(e.to_string(), findings, &opened);
            return opened;
        }
    };
    let Some(at) = checkpoint_time(&checkpoint) else {
        invalid(
            "the signed note has no single well-formed time line".into(),
            findings,
            &opened,
        );
        return opened;
    };
    let key = checkpoint_key(tenant, checkpoint.size(), at);
    let valid = ValidCheckpoint {
        size: checkpoint.size(),
        root: *checkpoint.root(),
        signed_at: at.get(),
        note: String::from_utf8_lossy(&stored.note).into_owned(),
        key: key.clone(),
    };
    let mut mislabeled = Vec::new();
    if let Some(size) = stored.claimed_size {
        if size != valid.size {
            mislabeled.push(format!(
                "the store says size {size}, the note {}",
                valid.size
            ));
        }
    }
    if let Some(root) = stored.claimed_root {
        if root != valid.root {
            mislabeled.push(format!(
                "the store says root {}, the note {}",
                root.to_base64(),
                valid.root.to_base64()
            ));
        }
    }
    if let Some(at) = stored.claimed_at {
        if at != valid.signed_at {
            mislabeled.push(format!(
                "the store says signed at {}, the note {}",
                rfc3339(at),
                rfc3339(valid.signed_at)
            ));
        }
    }
    if stored.store == Store::S3 && stored.location != key {
        mislabeled.push(format!("the note belongs under the key {key}"));
    }
    if !mislabeled.is_empty() {
        findings.push(Finding::CheckpointMislabeled {
            store: stored.store,
            checkpoint: valid.reference(),
            reason: mislabeled.join("; "),
        });
        // The copy is not valid; its label, not its note, decides which checkpoint it is.
        opened.key = claimed_key.unwrap_or(key);
        opened.valid = None;
        return opened;
    }
    opened.key = key;
    opened.valid = Some(valid);
    opened
}
