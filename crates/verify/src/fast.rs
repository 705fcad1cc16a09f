//! The verifier's fast path: the log and the rows streamed apart, at once, each in the order
//! PostgreSQL gives it cheapest (the log by its primary key, the rows by a scan, no join and
//! no sort), in one snapshot (`pg_export_snapshot`).
//!
//! - The tree is built from the logged leaves, in index order, and checked against every
//!   checkpoint as on the slow path.
//! - Each row's leaf is recomputed (on blocking threads), and the multiset of (event, leaf)
//!   of the rows is compared with that of the log entries the rows should match (in
//!   `[from, to)`, not archived), by a keyed digest ([`crate::multiset`]).
//!
//! Equal digests mean every row is exactly its logged leaf, and every logged event in range
//! has its row: the report is the slow path's. Any difference (an edited, deleted, inserted
//! or unreadable row, an edited log entry, a row in an archived month) sends the run down the
//! slow path (the join, [`crate::pg::PgLog::leaves`]), which names each one.

use std::collections::{BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use futures_util::{pin_mut, StreamExt};
use tokio::task::JoinHandle;
use tokio_postgres::Row;

use sentinel_domain::merkle::Hash;
use sentinel_domain::Month;

use crate::engine::{Check, Engine, LeafEntry, RowCheck};
use crate::multiset::Multiset;
use crate::pg::{event_from_row, PgLog};
use crate::source::SourceError;
use crate::{Config, Progress};

/// Rows hashed per blocking job, and jobs in flight.
const BATCH_ROWS: usize = 2048;
const JOBS_IN_FLIGHT: usize = 4;

/// What the rows gave: their digest, or that they cannot match (a row unreadable, or in an
/// archived month).
type RowsDigest = Option<Multiset>;

/// Builds the tree from the log and compares the rows with it. `Some(engine)` when every
/// row matched its logged leaf (the engine holds the tree's findings, if any); `None` when
/// the slow path must name what differs.
pub async fn check(
    pg: &PgLog,
    config: &Config,
    archived: &BTreeSet<Month>,
    checks: Vec<Check>,
    recorded: Option<u64>,
    progress: &dyn Progress,
) -> Result<Option<Engine>, SourceError> {
    let (tenant, from, to) = (&config.tenant, config.from, config.to);
    let key = Multiset::random_key();
    let in_range = |at: DateTime<Utc>| from.is_none_or(|f| at >= f) && to.is_none_or(|t| at < t);

    let log = async {
        let mut engine = Engine::new(checks);
        let mut logged = Multiset::new(key);
        let mut readable = true;
        progress.start(recorded.unwrap_or(0));
        let entries = pg.entries(tenant).await?;
        pin_mut!(entries);
        let mut n = 0u64;
        while let Some(row) = entries.next().await {
            let row = row.map_err(|e| SourceError::new("could not read the log", e))?;
            let index: i64 = row.get(0);
            let Ok(leaf) = Hash::from_slice(row.get(1)) else {
                readable = false;
                break;
            };
            let event_id: String = row.get(2);
            let occurred_at: DateTime<Utc> = row.get(3);
            let check = if !in_range(occurred_at) {
                RowCheck::OutOfRange
            } else if archived.contains(&Month::of(occurred_at)) {
                RowCheck::Archived
            } else {
                logged.add(&event_id, occurred_at, &leaf);
                // Taken for the row's until the digests say otherwise.
                RowCheck::Recomputed(leaf)
            };
            engine.push(LeafEntry {
                index: index.max(0) as u64,
                logged: leaf,
                event_id,
                occurred_at,
                row: check,
            });
            n += 1;
            if n.is_multiple_of(BATCH_ROWS as u64) {
                progress.advance(BATCH_ROWS as u64);
            }
        }
        progress.advance(n % BATCH_ROWS as u64);
        progress.finish();
        Ok::<_, SourceError>((engine, readable.then_some(logged)))
    };

    let rows = async {
        let stream = pg.rows(tenant, from, to).await?;
        pin_mut!(stream);
        let mut total = Multiset::new(key);
        let mut jobs: VecDeque<JoinHandle<RowsDigest>> = VecDeque::new();
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        let mut matches = true;
        let mut collect = |digest: RowsDigest, total: &mut Multiset| match digest {
            Some(part) => total.merge(&part),
            None => matches = false,
        };
        loop {
            let row = stream.next().await;
            let done = row.is_none();
            if let Some(row) = row {
                batch.push(row.map_err(|e| SourceError::new("could not read the rows", e))?);
            }
            if batch.len() == BATCH_ROWS || (done && !batch.is_empty()) {
                let rows = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                let archived = archived.clone();
                jobs.push_back(tokio::task::spawn_blocking(move || {
                    digest(&rows, key, &archived)
                }));
                if jobs.len() >= JOBS_IN_FLIGHT {
                    let job = jobs.pop_front().expect("a job");
                    let digest = job
                        .await
                        .map_err(|e| SourceError::new("hashing rows failed", e))?;
                    collect(digest, &mut total);
                }
            }
            if done {
                break;
            }
        }
        while let Some(job) = jobs.pop_front() {
            let digest = job
                .await
                .map_err(|e| SourceError::new("hashing rows failed", e))?;
            collect(digest, &mut total);
        }
        Ok::<_, SourceError>(matches.then_some(total))
    };

    let ((engine, logged), rows) = tokio::try_join!(log, rows)?;
    Ok(match (logged, rows) {
        (Some(logged), Some(rows)) if logged == rows => Some(engine),
        _ => None,
    })
}

/// The digest of a batch of rows; `None` if one is unreadable or in an archived month.
fn digest(rows: &[Row], key: [u8; 32], archived: &BTreeSet<Month>) -> RowsDigest {
    let mut digest = Multiset::new(key);
    for row in rows {
        let event = event_from_row(row, 0).ok()?;
        let at = event.occurred_at.get();
        if archived.contains(&Month::of(at)) {
            return None;
        }
        digest.add(event.id.as_str(), at, &event.leaf_hash());
    }
    Some(digest)
}
