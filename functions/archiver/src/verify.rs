//! Reads a month's export back from S3 and matches it against the recorded manifest and
//! against PostgreSQL, before anything is dropped.

use crate::parquet_file::{footer_facts, read_footer, FooterError};
use crate::{database, storage, ArchiveError};
use sentinel_domain::archive::{ArchiveBucket, HeldMonth, MonthFacts, Progress};
use sentinel_domain::manifest::Manifest;

/// How many bytes of each object's end are kept while hashing it, for the footer.
const TAIL_BYTES: usize = 256 * 1024;

/// The outcome of reading a month's export back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// S3 holds exactly what PostgreSQL holds for the month.
    Verified { rows: u64 },
    /// Rows arrived after the export (late events): export again.
    LateRows { exported: u64, present: u64 },
    /// The objects do not prove the export complete; the reason says why.
    Failed(String),
}

/// Verifies the current batch of `progress`: its objects' sizes and SHA-256 against the
/// manifest, their footers' row counts and `occurred_at` ranges against PostgreSQL.
pub async fn verify<H: HeldMonth, B: ArchiveBucket>(
    held: &mut H,
    bucket: &B,
    progress: &Progress,
) -> Result<Verdict, ArchiveError> {
    let month = progress.month;
    let (Some(manifest), Some(batch_rows)) = (&progress.manifest, progress.batch_rows) else {
        return Err(ArchiveError::Inconsistent {
            month,
            reason: "an exported month has no recorded manifest".into(),
        });
    };

    let stored = match bucket.get(&month.manifest_key()).await.map_err(storage)? {
        None => {
            return Ok(Verdict::Failed(format!(
                "{} is missing",
                month.manifest_key()
            )))
        }
        Some(bytes) => bytes,
    };
    match serde_json::from_slice::<Manifest>(&stored) {
        Ok(stored) if &stored == manifest => {}
        Ok(_) => {
            return Ok(Verdict::Failed(
                "the manifest in S3 differs from the one recorded at export".into(),
            ))
        }
        Err(e) => {
            return Ok(Verdict::Failed(format!(
                "the manifest in S3 is unreadable: {e}"
            )))
        }
    }

    let parts = manifest
        .parts
        .get(progress.first_part..)
        .unwrap_or_default();
    let listed: u64 = parts.iter().map(|p| p.rows).sum();
    if listed != batch_rows {
        return Ok(Verdict::Failed(format!(
            "the manifest lists {listed} rows for this batch but {batch_rows} were exported"
        )));
    }

    let MonthFacts {
        rows: present,
        min_occurred_at: pg_min,
        max_occurred_at: pg_max,
    } = held.facts().await.map_err(database)?;
    if present > batch_rows {
        return Ok(Verdict::LateRows {
            exported: batch_rows,
            present,
        });
    }
    if present < batch_rows {
        return Ok(Verdict::Failed(format!(
            "PostgreSQL holds {present} rows for the month but {batch_rows} were exported"
        )));
    }

    let (mut rows, mut min, mut max) = (0u64, None::<i64>, None::<i64>);
    for part in parts {
        let Some(read) = bucket
            .read_back(&part.key, TAIL_BYTES)
            .await
            .map_err(storage)?
        else {
            return Ok(Verdict::Failed(format!("{} is missing", part.key)));
        };
        if read.bytes != part.bytes {
            return Ok(Verdict::Failed(format!(
                "{} is {} bytes, the manifest says {}",
                part.key, read.bytes, part.bytes
            )));
        }
        if read.sha256 != part.sha256 {
            return Ok(Verdict::Failed(format!(
                "{} has SHA-256 {}, the manifest says {}",
                part.key, read.sha256, part.sha256
            )));
        }
        let metadata = match read_footer(&read.tail) {
            Ok(metadata) => metadata,
            Err(FooterError::NeedMore(n)) => {
                let end = bucket.get_last(&part.key, n).await.map_err(storage)?;
                match read_footer(&end) {
                    Ok(metadata) => metadata,
                    Err(e) => return Ok(Verdict::Failed(format!("{}: {e}", part.key))),
                }
            }
            Err(e) => return Ok(Verdict::Failed(format!("{}: {e}", part.key))),
        };
        let facts = match footer_facts(&metadata) {
            Ok(facts) => facts,
            Err(e) => return Ok(Verdict::Failed(format!("{}: {e}", part.key))),
        };
        if facts.rows != part.rows {
            return Ok(Verdict::Failed(format!(
                "{} holds {} rows, the manifest says {}",
                part.key, facts.rows, part.rows
            )));
        }
        let declared = (
            Some(part.min_occurred_at.timestamp_micros()),
            Some(part.max_occurred_at.timestamp_micros()),
        );
        if (facts.min_occurred_at, facts.max_occurred_at) != declared {
            return Ok(Verdict::Failed(format!(
                "{} spans {:?}..{:?} µs, the manifest says {:?}..{:?}",
                part.key, facts.min_occurred_at, facts.max_occurred_at, declared.0, declared.1
            )));
        }
        rows += facts.rows;
        min = facts.min_occurred_at.into_iter().chain(min).min();
        max = facts.max_occurred_at.into_iter().chain(max).max();
    }
    if rows != present {
        return Ok(Verdict::Failed(format!(
            "the Parquet files hold {rows} rows, PostgreSQL {present}"
        )));
    }
    if (min, max) != (pg_min, pg_max) {
        return Ok(Verdict::Failed(format!(
            "the Parquet files span {min:?}..{max:?} µs, PostgreSQL {pg_min:?}..{pg_max:?}"
        )));
    }
    Ok(Verdict::Verified { rows })
}
