//! What `sentinel verify` finds: one [`Finding`] per failure, each naming what and where
//! (event id, log index, month, checkpoint), and the report they are part of.

use std::fmt;

use serde::Serialize;

/// Where a copy of a checkpoint is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    Postgresql,
    S3,
    /// The verifier's own state directory (the checkpoint it trusted on its last run).
    State,
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Store::Postgresql => "PostgreSQL",
            Store::S3 => "S3",
            Store::State => "the state directory",
        })
    }
}

/// A checkpoint as a finding names it: its tree size and signing time (RFC 3339), and where
/// it was found (the S3 key, or the PostgreSQL row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointRef {
    pub size: Option<u64>,
    pub signed_at: Option<String>,
    pub location: String,
}

impl fmt::Display for CheckpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.size, &self.signed_at) {
            (Some(size), Some(at)) => {
                write!(f, "checkpoint of size {} signed at {at}", group(size))
            }
            (Some(size), None) => write!(f, "checkpoint of size {}", group(size)),
            _ => write!(f, "checkpoint {}", self.location),
        }
    }
}

/// An event as a finding names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRef {
    pub event_id: String,
    pub log_index: Option<u64>,
    /// `YYYY-MM` of its `occurred_at`: the month partition it lives in.
    pub month: String,
}

impl fmt::Display for EventRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.log_index {
            Some(index) => write!(
                f,
                "event {} at log index {} (month {})",
                self.event_id,
                group(index),
                self.month
            ),
            None => write!(f, "event {} (month {})", self.event_id, self.month),
        }
    }
}

/// One failure. Each renders as one line ([`fmt::Display`]) and as a JSON object tagged by
/// `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// A copy of a checkpoint does not open: malformed, truncated, a signature that fails,
    /// no signature by the key, another log's origin, no time line.
    CheckpointInvalid {
        store: Store,
        checkpoint: CheckpointRef,
        reason: String,
    },
    /// What PostgreSQL's row or S3's key says of a checkpoint is not what its signed note says.
    CheckpointMislabeled {
        store: Store,
        checkpoint: CheckpointRef,
        reason: String,
    },
    /// A checkpoint kept in one store and not in the other.
    CheckpointMissing {
        missing_from: Store,
        checkpoint: CheckpointRef,
    },
    /// PostgreSQL's and S3's copies of a checkpoint are different notes.
    CheckpointCopiesDiffer { checkpoint: CheckpointRef },
    /// A later checkpoint of a smaller tree: a log only grows.
    CheckpointSizeDecreased {
        earlier: CheckpointRef,
        later: CheckpointRef,
    },
    /// The root rebuilt from the log at a checkpoint's size is not the signed root.
    RootMismatch {
        checkpoint: CheckpointRef,
        rebuilt_root: String,
        signed_root: String,
    },
    /// A checkpoint's root could not be rebuilt: a leaf before its size is missing.
    CheckpointUnverifiable {
        checkpoint: CheckpointRef,
        reason: String,
    },
    /// The newest signed checkpoint covers more leaves than the log holds.
    NewestEventsDeleted {
        checkpoint: CheckpointRef,
        log_entries: u64,
        missing: u64,
    },
    /// The checkpoint this verifier trusted on an earlier run is larger than any now.
    RolledBack {
        trusted: CheckpointRef,
        largest_size: Option<u64>,
    },
    /// The tree at the size of the checkpoint trusted on an earlier run is not that tree.
    InconsistentWithTrusted {
        trusted: CheckpointRef,
        rebuilt_root: String,
    },
    /// An event's row gives another leaf than the one logged for it, and the signed tree has
    /// the logged one: the row was changed after it was stored.
    RowEdited { event: EventRef },
    /// An event's logged leaf hash is not its row's, and the signed tree has the row's: the
    /// log entry was changed.
    LogEntryEdited { event: EventRef },
    /// An event's row and its logged leaf differ, and no checkpoint that verifies tells
    /// which is right (none covers it yet, or the tree matches neither).
    RowDiffersFromLog { event: EventRef, covered: bool },
    /// An event's row no longer passes the event's rules (a field changed to something the
    /// writer would never store).
    RowUnreadable { event: EventRef, reason: String },
    /// Two log indexes point at each other's events.
    Swapped { first: EventRef, second: EventRef },
    /// A log entry whose event's row is gone (and its month is not archived).
    RowDeleted { event: EventRef },
    /// Every logged event of a month is missing and archive_months does not list the month
    /// as archived: its partition was dropped (or detached) outside the archiver.
    MonthMissing {
        month: String,
        missing: u64,
        first_log_index: u64,
        last_log_index: u64,
        partition_attached: bool,
    },
    /// More deleted rows of one month than are listed one by one.
    MoreRowsDeleted { month: String, more: u64 },
    /// A row of the tenant with no log entry: stored outside the writer.
    RowInserted { event: EventRef },
    /// Log indexes with no entry: leaves deleted from the log.
    LogGap { first_index: u64, last_index: u64 },
    /// The log's recorded size (tenant_logs) and its entries disagree.
    LogSizeMismatch {
        recorded_size: u64,
        log_entries: u64,
    },
    /// Leaves of a 16-leaf block that differ from the subtree hash the checkpointer stored
    /// for it (where a checkpoint's root fails with no edited row to explain it).
    BlockDiffers {
        first_index: u64,
        last_index: u64,
        event_ids: Vec<String>,
    },
    /// A signed manifest note (the archive's chain) that does not open: malformed, a
    /// signature that fails or is not the archive key's, another stack's origin.
    ManifestNoteInvalid {
        store: Store,
        location: String,
        reason: String,
    },
    /// A manifest note kept in one store and not in the other, or a number of the chain
    /// that neither keeps.
    ManifestNoteMissing { missing_from: Vec<Store>, seq: u64 },
    /// PostgreSQL's and S3's copies of a manifest note differ.
    ManifestNoteCopiesDiffer { seq: u64 },
    /// A manifest note does not name the note before it.
    ManifestChainBroken { seq: u64, reason: String },
    /// A month's `_manifest.json` is not the one its newest signed note names (edited,
    /// replaced, unreadable or deleted), or an archived month has no signed note at all.
    ManifestInvalid {
        month: String,
        key: String,
        reason: String,
    },
    /// An archived Parquet part the manifest lists is gone.
    PartMissing { month: String, part: String },
    /// An archived Parquet part is not the object the signed manifest lists (its size or
    /// SHA-256 differ): replaced or rewritten.
    PartReplaced {
        month: String,
        part: String,
        reason: String,
    },
    /// An archived row gives another leaf than the one logged (and signed) for its event.
    ArchivedRowEdited { event: EventRef, part: String },
    /// An archived row no longer passes the event's rules.
    ArchivedRowUnreadable {
        event: EventRef,
        part: String,
        reason: String,
    },
    /// A logged event of an archived month is neither in the archive nor in PostgreSQL.
    ArchivedRowMissing { event: EventRef },
    /// An archived row with no log entry, or one the log gives another event.
    ArchivedRowInserted { event: EventRef, part: String },
    /// A manifest names a covering checkpoint that is not one of the tenant's valid
    /// checkpoints, or that does not cover the month's rows.
    ArchiveCheckpointUnknown { month: String, reason: String },
    /// A month archived before the archive carried the log (manifest schema 1): its rows
    /// cannot be verified.
    ArchiveUnverifiable { month: String, reason: String },
    /// A tile of the tenant's log in S3 (`log/<tenant>/tile/0/…`) is not a tile: a stray key,
    /// or not the length its width needs.
    LogTileInvalid { key: String, reason: String },
    /// A tile of the tenant's log is missing from S3, with tiles after it.
    LogTileMissing { key: String, reason: String },
    /// The leaves of the log's tiles in S3 do not rebuild a signed checkpoint's root.
    LogTilesRootMismatch { checkpoint: CheckpointRef },
    /// Findings of one kind past the number listed.
    NotListed { of_kind: String, more: u64 },
}

impl Finding {
    /// The `kind` tag, as JSON has it.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::CheckpointInvalid { .. } => "checkpoint_invalid",
            Finding::CheckpointMislabeled { .. } => "checkpoint_mislabeled",
            Finding::CheckpointMissing { .. } => "checkpoint_missing",
            Finding::CheckpointCopiesDiffer { .. } => "checkpoint_copies_differ",
            Finding::CheckpointSizeDecreased { .. } => "checkpoint_size_decreased",
            Finding::RootMismatch { .. } => "root_mismatch",
            Finding::CheckpointUnverifiable { .. } => "checkpoint_unverifiable",
            Finding::NewestEventsDeleted { .. } => "newest_events_deleted",
            Finding::RolledBack { .. } => "rolled_back",
            Finding::InconsistentWithTrusted { .. } => "inconsistent_with_trusted",
            Finding::RowEdited { .. } => "row_edited",
            Finding::LogEntryEdited { .. } => "log_entry_edited",
            Finding::RowDiffersFromLog { .. } => "row_differs_from_log",
            Finding::RowUnreadable { .. } => "row_unreadable",
            Finding::Swapped { .. } => "swapped",
            Finding::RowDeleted { .. } => "row_deleted",
            Finding::MonthMissing { .. } => "month_missing",
            Finding::MoreRowsDeleted { .. } => "more_rows_deleted",
            Finding::RowInserted { .. } => "row_inserted",
            Finding::LogGap { .. } => "log_gap",
            Finding::LogSizeMismatch { .. } => "log_size_mismatch",
            Finding::BlockDiffers { .. } => "block_differs",
            Finding::NotListed { .. } => "not_listed",
            Finding::ManifestNoteInvalid { .. } => "manifest_note_invalid",
            Finding::ManifestNoteMissing { .. } => "manifest_note_missing",
            Finding::ManifestNoteCopiesDiffer { .. } => "manifest_note_copies_differ",
            Finding::ManifestChainBroken { .. } => "manifest_chain_broken",
            Finding::ManifestInvalid { .. } => "manifest_invalid",
            Finding::PartMissing { .. } => "part_missing",
            Finding::PartReplaced { .. } => "part_replaced",
            Finding::ArchivedRowEdited { .. } => "archived_row_edited",
            Finding::ArchivedRowUnreadable { .. } => "archived_row_unreadable",
            Finding::ArchivedRowMissing { .. } => "archived_row_missing",
            Finding::ArchivedRowInserted { .. } => "archived_row_inserted",
            Finding::ArchiveCheckpointUnknown { .. } => "archive_checkpoint_unknown",
            Finding::ArchiveUnverifiable { .. } => "archive_unverifiable",
            Finding::LogTileInvalid { .. } => "log_tile_invalid",
            Finding::LogTileMissing { .. } => "log_tile_missing",
            Finding::LogTilesRootMismatch { .. } => "log_tiles_root_mismatch",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::CheckpointInvalid {
                store,
                checkpoint,
                reason,
            }
            | Finding::CheckpointMislabeled {
                store,
                checkpoint,
                reason,
            } => write!(
                f,
                "{store}: {checkpoint} ({}) INVALID: {reason}",
                checkpoint.location
            ),
            Finding::CheckpointMissing {
                missing_from,
                checkpoint,
            } => write!(
                f,
                "{missing_from}: {checkpoint} NOT FOUND: the other store has it ({}); a checkpoint was deleted",
                checkpoint.location
            ),
            Finding::CheckpointCopiesDiffer { checkpoint } => write!(
                f,
                "{checkpoint} ({}) INVALID: PostgreSQL's and S3's copies are different notes",
                checkpoint.location
            ),
            Finding::CheckpointSizeDecreased { earlier, later } => write!(
                f,
                "{later} INVALID: it is smaller than the earlier {earlier}; a log only grows"
            ),
            Finding::RootMismatch {
                checkpoint,
                rebuilt_root,
                signed_root,
            } => write!(
                f,
                "{checkpoint} INVALID: the root rebuilt from the log is {rebuilt_root}, the signed root is {signed_root}"
            ),
            Finding::CheckpointUnverifiable { checkpoint, reason } => {
                write!(f, "{checkpoint} NOT VERIFIED: {reason}")
            }
            Finding::NewestEventsDeleted {
                checkpoint,
                log_entries,
                missing,
            } => write!(
                f,
                "{checkpoint} covers {} leaves but the log holds {}: the newest {} events were deleted",
                group(checkpoint.size.unwrap_or(0)),
                group(*log_entries),
                group(*missing)
            ),
            Finding::RolledBack {
                trusted,
                largest_size,
            } => write!(
                f,
                "ROLLED BACK: the last run verified the {trusted}, but the largest checkpoint now is {}",
                match largest_size {
                    Some(size) => format!("of size {}", group(*size)),
                    None => "none".into(),
                }
            ),
            Finding::InconsistentWithTrusted {
                trusted,
                rebuilt_root,
            } => write!(
                f,
                "INCONSISTENT: the last run verified the {trusted}, but the tree at that size now has root {rebuilt_root}"
            ),
            Finding::RowEdited { event } => write!(
                f,
                "{event} INVALID: its row was changed after it was logged (its leaf is not the one the signed tree holds)"
            ),
            Finding::LogEntryEdited { event } => write!(
                f,
                "{event} INVALID: its log entry's leaf hash was changed (the row matches the signed tree)"
            ),
            Finding::RowDiffersFromLog { event, covered } => write!(
                f,
                "{event} INVALID: its row gives another leaf than the logged one ({})",
                if *covered {
                    "the signed tree matches neither"
                } else {
                    "no checkpoint covers it yet"
                }
            ),
            Finding::RowUnreadable { event, reason } => {
                write!(f, "{event} INVALID: its row breaks the event's rules: {reason}")
            }
            Finding::Swapped { first, second } => write!(
                f,
                "{first} and {second} INVALID: swapped (each index holds the other's event)"
            ),
            Finding::RowDeleted { event } => {
                write!(f, "{event} NOT FOUND: its row was deleted")
            }
            Finding::MonthMissing {
                month,
                missing,
                first_log_index,
                last_log_index,
                partition_attached,
            } => write!(
                f,
                "month {month} NOT FOUND: all {} logged events of the month are missing (log indexes {} to {}); \
                 archive_months does not list it as archived, and {}: dropped outside the archiver",
                group(*missing),
                group(*first_log_index),
                group(*last_log_index),
                if *partition_attached {
                    "its partition is attached but holds none of them"
                } else {
                    "its partition is gone"
                }
            ),
            Finding::MoreRowsDeleted { month, more } => write!(
                f,
                "month {month}: {} more events NOT FOUND (rows deleted; not listed one by one)",
                group(*more)
            ),
            Finding::RowInserted { event } => write!(
                f,
                "{event} INVALID: the row has no log entry (inserted outside the writer)"
            ),
            Finding::LogGap {
                first_index,
                last_index,
            } => {
                if first_index == last_index {
                    write!(
                        f,
                        "log index {} NOT FOUND: its log entry was deleted",
                        group(*first_index)
                    )
                } else {
                    write!(
                        f,
                        "log indexes {} to {} NOT FOUND: their log entries were deleted",
                        group(*first_index),
                        group(*last_index)
                    )
                }
            }
            Finding::LogSizeMismatch {
                recorded_size,
                log_entries,
            } => write!(
                f,
                "the log's recorded size is {} but it holds {} entries",
                group(*recorded_size),
                group(*log_entries)
            ),
            Finding::BlockDiffers {
                first_index,
                last_index,
                event_ids,
            } => write!(
                f,
                "log indexes {} to {} INVALID: their leaves differ from the subtree stored when they were checkpointed (events {})",
                group(*first_index),
                group(*last_index),
                event_ids.join(", ")
            ),
            Finding::NotListed { of_kind, more } => {
                write!(f, "{} more {of_kind} findings not listed", group(*more))
            }
            Finding::ManifestNoteInvalid {
                store,
                location,
                reason,
            } => write!(f, "manifest note {location} in {store} INVALID: {reason}"),
            Finding::ManifestNoteMissing { missing_from, seq } => {
                let stores: Vec<String> = missing_from.iter().map(|s| s.to_string()).collect();
                write!(
                    f,
                    "manifest note {seq} NOT FOUND in {}: deleted",
                    stores.join(" or ")
                )
            }
            Finding::ManifestNoteCopiesDiffer { seq } => write!(
                f,
                "manifest note {seq} INVALID: PostgreSQL's and S3's copies differ"
            ),
            Finding::ManifestChainBroken { seq, reason } => {
                write!(f, "manifest note {seq} INVALID: the chain is broken: {reason}")
            }
            Finding::ManifestInvalid { month, key, reason } => {
                write!(f, "month {month}: manifest {key} INVALID: {reason}")
            }
            Finding::PartMissing { month, part } => {
                write!(f, "month {month}: part {part} NOT FOUND: deleted")
            }
            Finding::PartReplaced {
                month,
                part,
                reason,
            } => write!(f, "month {month}: part {part} INVALID: {reason}"),
            Finding::ArchivedRowEdited { event, part } => write!(
                f,
                "{event} INVALID: its archived row in {part} was changed (it gives another leaf than the log's)"
            ),
            Finding::ArchivedRowUnreadable {
                event,
                part,
                reason,
            } => write!(f, "{event} INVALID: its archived row in {part} is unreadable: {reason}"),
            Finding::ArchivedRowMissing { event } => write!(
                f,
                "{event} NOT FOUND: neither in the archive nor in PostgreSQL"
            ),
            Finding::ArchivedRowInserted { event, part } => write!(
                f,
                "{event} INVALID: the archived row in {part} is not the log's event at its index (inserted)"
            ),
            Finding::ArchiveCheckpointUnknown { month, reason } => {
                write!(f, "month {month}: the manifest's covering checkpoint INVALID: {reason}")
            }
            Finding::ArchiveUnverifiable { month, reason } => {
                write!(f, "month {month}: archive NOT VERIFIABLE: {reason}")
            }
            Finding::LogTileInvalid { key, reason } => {
                write!(f, "log tile {key} INVALID: {reason}")
            }
            Finding::LogTileMissing { key, reason } => {
                write!(f, "log tile {key} NOT FOUND: {reason}")
            }
            Finding::LogTilesRootMismatch { checkpoint } => write!(
                f,
                "{checkpoint} INVALID: the log's tiles in S3 do not rebuild its root (a tile was changed)"
            ),
        }
    }
}

/// A number with thousands separators: 1,000,000.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_000_000), "1,000,000");
        assert_eq!(group(12_345_678), "12,345,678");
    }
}
