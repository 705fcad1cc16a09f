//! `_manifest.json`: what a month's archive holds, written beside its Parquet files.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::month::Month;

/// Version of the Parquet schema and of this manifest's layout. Version 2 added each row's
/// `log_index` and `leaf_hash`, each part's [`PartLog`]s, and the signed manifest notes.
pub const SCHEMA_VERSION: u32 = 2;

/// The archive's columns: name, type as the manifest documents it, nullable.
pub const COLUMNS: [(&str, &str, bool); 14] = [
    ("id", "string", false),
    ("tenant_id", "string", false),
    ("occurred_at", "timestamp[us, UTC]", false),
    ("received_at", "timestamp[us, UTC]", false),
    ("stored_at", "timestamp[us, UTC]", false),
    ("actor_id", "string", false),
    ("actor_type", "string", true),
    ("action", "string", false),
    ("resource_type", "string", false),
    ("resource_id", "string", false),
    ("changes", "string (JSON object)", false),
    ("metadata", "string (JSON object)", false),
    // The event's place in its tenant's verifiable log; null only for an event stored
    // before the log existed.
    ("log_index", "int64", true),
    ("leaf_hash", "fixed_size_binary[32]", true),
];

/// One Parquet file of a month's archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The object key, e.g. `audit_events/year=2024/month=02/part-00000.parquet`.
    pub key: String,
    pub rows: u64,
    /// Object size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole object, lowercase hex.
    pub sha256: String,
    pub min_occurred_at: DateTime<Utc>,
    pub max_occurred_at: DateTime<Utc>,
    /// The smallest and largest id, in byte order.
    pub min_id: String,
    pub max_id: String,
    /// The export that wrote this file: 1 for the month's first, more for late events.
    pub batch: u32,
    /// Each tenant's rows in the file, by tenant (rows are sorted by tenant, then log index).
    #[serde(default)]
    pub logs: Vec<PartLog>,
}

/// One tenant's rows in a part: how many, the log indexes they hold, and the checkpoint that
/// covered them when the part was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartLog {
    pub tenant_id: String,
    pub rows: u64,
    /// Rows without a log entry (stored before the log existed, or inserted since: `sentinel
    /// verify` names them).
    pub unlogged: u64,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// The tenant's newest checkpoint when the part was written; it covers `last_index`.
    pub checkpoint: Option<CoveringCheckpoint>,
}

/// A signed checkpoint, as a manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoveringCheckpoint {
    pub tree_size: u64,
    /// Base64, as the checkpoint's note writes it.
    pub root_hash: String,
    pub signed_at: DateTime<Utc>,
}

/// One tenant's rows in a month: its parts' [`PartLog`]s summed, the checkpoint the largest of
/// theirs.
pub type TenantLog = PartLog;

/// A column of the Parquet schema, as documented in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub nullable: bool,
}

/// The manifest of one month. Totals always derive from `parts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub table: String,
    /// `YYYY-MM`
    pub month: String,
    /// The partition bounds the rows came from: `[range_start, range_end)`.
    pub range_start: DateTime<Utc>,
    pub range_end: DateTime<Utc>,
    pub rows: u64,
    pub bytes: u64,
    pub min_occurred_at: Option<DateTime<Utc>>,
    pub max_occurred_at: Option<DateTime<Utc>>,
    pub min_id: Option<String>,
    pub max_id: Option<String>,
    /// How many exports wrote parts: 1, plus one per batch of late events.
    pub batches: u32,
    pub columns: Vec<Column>,
    pub parts: Vec<Part>,
    /// Each tenant's rows in the month (from the parts), by tenant.
    #[serde(default)]
    pub logs: Vec<TenantLog>,
    pub created_at: DateTime<Utc>,
}

impl Manifest {
    pub fn new(month: Month, batches: u32, parts: Vec<Part>, created_at: DateTime<Utc>) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            table: "audit_events".to_string(),
            month: month.to_string(),
            range_start: month.start(),
            range_end: month.end(),
            rows: parts.iter().map(|p| p.rows).sum(),
            bytes: parts.iter().map(|p| p.bytes).sum(),
            min_occurred_at: parts.iter().map(|p| p.min_occurred_at).min(),
            max_occurred_at: parts.iter().map(|p| p.max_occurred_at).max(),
            min_id: parts.iter().map(|p| &p.min_id).min().cloned(),
            max_id: parts.iter().map(|p| &p.max_id).max().cloned(),
            batches,
            columns: COLUMNS
                .iter()
                .map(|(name, kind, nullable)| Column {
                    name: name.to_string(),
                    kind: kind.to_string(),
                    nullable: *nullable,
                })
                .collect(),
            logs: tenant_logs(&parts),
            parts,
            created_at,
        }
    }

    /// The month's rows of one tenant, if it has any.
    pub fn log_of(&self, tenant: &str) -> Option<&TenantLog> {
        self.logs.iter().find(|l| l.tenant_id == tenant)
    }

    /// The manifest as it was before the export that wrote parts from `first_part` on.
    pub fn before(&self, month: Month, first_part: usize) -> Self {
        let parts: Vec<Part> = self.parts.iter().take(first_part).cloned().collect();
        let batches = parts.iter().map(|p| p.batch).max().unwrap_or(0);
        Self::new(month, batches, parts, self.created_at)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serializes")
    }

    /// The manifest without the time it was written, to compare two exports of the same rows.
    pub fn content(&self) -> Self {
        Self {
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            ..self.clone()
        }
    }
}

/// The parts' tenant rows summed per tenant, in tenant order.
fn tenant_logs(parts: &[Part]) -> Vec<TenantLog> {
    let mut logs: std::collections::BTreeMap<&str, TenantLog> = Default::default();
    for log in parts.iter().flat_map(|p| &p.logs) {
        let entry = logs
            .entry(log.tenant_id.as_str())
            .or_insert_with(|| TenantLog {
                tenant_id: log.tenant_id.clone(),
                rows: 0,
                unlogged: 0,
                first_index: None,
                last_index: None,
                checkpoint: None,
            });
        entry.rows += log.rows;
        entry.unlogged += log.unlogged;
        entry.first_index = entry.first_index.into_iter().chain(log.first_index).min();
        entry.last_index = entry.last_index.into_iter().chain(log.last_index).max();
        if let Some(c) = &log.checkpoint {
            if entry
                .checkpoint
                .as_ref()
                .is_none_or(|e| (e.tree_size, e.signed_at) < (c.tree_size, c.signed_at))
            {
                entry.checkpoint = Some(c.clone());
            }
        }
    }
    logs.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: usize, rows: u64, from: &str, to: &str, ids: (&str, &str), batch: u32) -> Part {
        Part {
            key: Month::new(2024, 2).unwrap().part_key(n),
            rows,
            bytes: rows * 10,
            sha256: format!("{n:064}"),
            min_occurred_at: from.parse().unwrap(),
            max_occurred_at: to.parse().unwrap(),
            min_id: ids.0.into(),
            max_id: ids.1.into(),
            batch,
            logs: vec![],
        }
    }

    /// February 2024 in two batches: 5 rows, then 2 rows that are earlier in time and id.
    fn two_batches(month: Month) -> Manifest {
        Manifest::new(
            month,
            2,
            vec![
                part(
                    0,
                    5,
                    "2024-02-03T00:00:00Z",
                    "2024-02-20T00:00:00Z",
                    ("b", "y"),
                    1,
                ),
                part(
                    1,
                    2,
                    "2024-02-01T00:00:00Z",
                    "2024-02-10T00:00:00Z",
                    ("a", "c"),
                    2,
                ),
            ],
            Utc::now(),
        )
    }

    #[test]
    fn totals_and_ranges_come_from_the_parts() {
        let month = Month::new(2024, 2).unwrap();
        let manifest = two_batches(month);
        assert_eq!((manifest.rows, manifest.bytes), (7, 70));
        assert_eq!(
            manifest.min_occurred_at,
            Some("2024-02-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            manifest.max_occurred_at,
            Some("2024-02-20T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            (manifest.min_id.as_deref(), manifest.max_id.as_deref()),
            (Some("a"), Some("y"))
        );
        assert_eq!(
            manifest.range_end,
            "2024-03-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn an_empty_month_has_a_manifest_with_no_parts_and_no_range() {
        let manifest = Manifest::new(Month::new(2024, 2).unwrap(), 1, vec![], Utc::now());
        assert_eq!(
            (manifest.rows, manifest.bytes, manifest.parts.len()),
            (0, 0, 0)
        );
        assert_eq!(manifest.min_occurred_at, None);
        assert_eq!(manifest.columns.len(), 14);
    }

    #[test]
    fn the_manifest_before_a_batch_keeps_only_the_earlier_parts() {
        let month = Month::new(2024, 2).unwrap();
        let manifest = two_batches(month);
        let before = manifest.before(month, 1);
        assert_eq!((before.rows, before.batches, before.parts.len()), (5, 1, 1));
        assert_eq!(before.min_id.as_deref(), Some("b"));
    }

    #[test]
    fn a_manifest_survives_json() {
        let manifest = Manifest::new(
            Month::new(2024, 2).unwrap(),
            1,
            vec![part(
                0,
                5,
                "2024-02-03T00:00:00.000001Z",
                "2024-02-20T00:00:00Z",
                ("b", "y"),
                1,
            )],
            Utc::now(),
        );
        let back: Manifest = serde_json::from_slice(&manifest.to_json()).unwrap();
        assert_eq!(back, manifest);
    }
}
