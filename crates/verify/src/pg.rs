//! PostgreSQL as the verifier reads it, as the `sentinel_auditor` role can: every query of a
//! run in one read-only, repeatable-read transaction, so the checkpoints, the log and the rows
//! are one snapshot even while writers append.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::{pin_mut, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use sentinel_domain::fields::TenantId;
use sentinel_domain::merkle::Hash;
use sentinel_domain::{AuditEvent, Month};

use crate::checkpoints::StoredNote;
use crate::engine::{LeafEntry, RowCheck};
use crate::findings::Store;
use crate::source::{CheckpointSource, LeafSource, SourceError};

/// Rows converted per batch (one blocking task each).
const BATCH_ROWS: usize = 2048;
/// Batches in flight between the database and the tree: what bounds memory.
const BATCHES_IN_FLIGHT: usize = 4;

/// The event's columns, in the order [`event_from_row`] reads them from `first`.
const EVENT_COLUMNS: &str = "e.id, e.tenant_id, e.occurred_at, e.received_at, e.actor_id, \
     e.actor_type, e.action, e.resource_type, e.resource_id, e.changes, e.metadata";

/// A connection in a read-only snapshot.
pub struct PgLog {
    client: Arc<deadpool_postgres::Object>,
    /// A second connection in the same snapshot (`pg_export_snapshot`), so the rows and the
    /// log can be streamed at once ([`PgLog::rows`] beside [`PgLog::entries`]).
    second: Arc<deadpool_postgres::Object>,
    snapshot_at: DateTime<Utc>,
}

fn db(context: &str) -> impl Fn(tokio_postgres::Error) -> SourceError + '_ {
    move |e| {
        let message = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        SourceError::new(context, message)
    }
}

impl PgLog {
    /// Connects and opens the snapshot.
    pub async fn connect(database_url: &str) -> Result<Self, SourceError> {
        let pool = sentinel_postgres::pool(database_url, 2)
            .map_err(|e| SourceError::new("the database URL", format!("{e:#}")))?;
        let client = pool
            .get()
            .await
            .map_err(|e| SourceError::new("could not connect to the database", e))?;
        let second = pool
            .get()
            .await
            .map_err(|e| SourceError::new("could not connect to the database", e))?;
        client
            // The join is hashed and sorted by log index: in memory rather than in temporary
            // files (650 ms instead of 1,117 ms for 100,000 events, BENCHMARKS.md).
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL work_mem = '128MB'",
            )
            .await
            .map_err(db("could not open a read-only transaction"))?;
        let snapshot_at: DateTime<Utc> = client
            .query_one("SELECT now()", &[])
            .await
            .map_err(db("could not read the time"))?
            .get(0);
        let snapshot: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(db("could not export the snapshot"))?
            .get(0);
        // SET TRANSACTION SNAPSHOT takes no parameter; the id is the server's, checked anyway.
        if snapshot.is_empty() || !snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(SourceError(format!(
                "an unexpected snapshot id {snapshot:?}"
            )));
        }
        second
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{snapshot}'"
            ))
            .await
            .map_err(db("could not share the snapshot"))?;
        Ok(Self {
            client: Arc::new(client),
            second: Arc::new(second),
            snapshot_at,
        })
    }

    /// When the snapshot was taken (the transaction's start).
    pub fn snapshot_at(&self) -> DateTime<Utc> {
        self.snapshot_at
    }

    /// The log's size as tenant_logs records it.
    pub async fn recorded_size(&self, tenant: &TenantId) -> Result<Option<u64>, SourceError> {
        let row = self
            .client
            .query_opt(
                "SELECT size FROM tenant_logs WHERE tenant_id = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(db("could not read tenant_logs"))?;
        Ok(row.map(|r| r.get::<_, i64>(0).max(0) as u64))
    }

    /// The months the archiver moved to S3 (detached or dropped by it).
    pub async fn archived_months(&self) -> Result<BTreeSet<Month>, SourceError> {
        let rows = self
            .client
            .query(
                "SELECT month FROM archive_months WHERE state IN ('detached', 'dropped')",
                &[],
            )
            .await
            .map_err(db("could not read archive_months"))?;
        Ok(rows
            .iter()
            .filter_map(|r| Month::from_first_day(r.get::<_, NaiveDate>(0)))
            .collect())
    }

    /// The months whose partition is attached to audit_events (`audit_events_YYYY_MM`).
    pub async fn attached_months(&self) -> Result<BTreeSet<Month>, SourceError> {
        let rows = self
            .client
            .query(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = 'audit_events'::regclass",
                &[],
            )
            .await
            .map_err(db("could not list audit_events' partitions"))?;
        Ok(rows
            .iter()
            .filter_map(|r| partition_month(r.get::<_, &str>(0)))
            .collect())
    }

    /// The tenant's entries joined with their rows, in log-index order. Rows of events whose
    /// `occurred_at` is outside `[from, to)` are not read.
    pub async fn leaves(
        &self,
        tenant: &TenantId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        archived: BTreeSet<Month>,
    ) -> Result<PgLeaves, SourceError> {
        let (tx, rx) = mpsc::channel(BATCHES_IN_FLIGHT);
        let client = self.client.clone();
        let tenant = tenant.clone();
        let archived = Arc::new(archived);
        let reader = tokio::spawn(async move {
            let sql = format!(
                "SELECT l.log_index, l.leaf_hash, l.event_id, l.occurred_at, {EVENT_COLUMNS} \
                 FROM log_entries l LEFT JOIN audit_events e \
                   ON e.tenant_id = l.tenant_id AND e.id = l.event_id AND e.occurred_at = l.occurred_at \
                  AND ($2::timestamptz IS NULL OR l.occurred_at >= $2) \
                  AND ($3::timestamptz IS NULL OR l.occurred_at < $3) \
                 WHERE l.tenant_id = $1 ORDER BY l.log_index"
            );
            let params: [&(dyn ToSql + Sync); 3] = [&tenant.as_str(), &from, &to];
            let stream = client
                .query_raw(&sql, params)
                .await
                .map_err(db("could not read the log"))?;
            pin_mut!(stream);
            let mut batch = Vec::with_capacity(BATCH_ROWS);
            loop {
                let row = stream.next().await;
                let done = row.is_none();
                if let Some(row) = row {
                    batch.push(row.map_err(db("could not read the log"))?);
                }
                if batch.len() == BATCH_ROWS || (done && !batch.is_empty()) {
                    let rows = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                    let (tenant, archived) = (tenant.clone(), archived.clone());
                    let job = tokio::task::spawn_blocking(move || {
                        rows.iter()
                            .map(|row| entry(row, &tenant, from, to, &archived))
                            .collect::<Result<Vec<_>, _>>()
                    });
                    if tx.send(job).await.is_err() {
                        return Ok(());
                    }
                }
                if done {
                    return Ok(());
                }
            }
        });
        Ok(PgLeaves {
            rx,
            reader: Some(reader),
        })
    }

    /// The tenant's rows in `[from, to)` that have no log entry: each event id and time, in
    /// time order; `each` is called for every one.
    pub async fn unlogged_rows(
        &self,
        tenant: &TenantId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        mut each: impl FnMut(String, DateTime<Utc>),
    ) -> Result<(), SourceError> {
        let params: [&(dyn ToSql + Sync); 3] = [&tenant.as_str(), &from, &to];
        let stream = self
            .client
            .query_raw(
                "SELECT e.id, e.occurred_at FROM audit_events e \
                 WHERE e.tenant_id = $1 \
                   AND ($2::timestamptz IS NULL OR e.occurred_at >= $2) \
                   AND ($3::timestamptz IS NULL OR e.occurred_at < $3) \
                   AND NOT EXISTS (SELECT 1 FROM log_entries l WHERE l.tenant_id = e.tenant_id \
                       AND l.event_id = e.id AND l.occurred_at = e.occurred_at) \
                 ORDER BY e.occurred_at, e.id",
                params,
            )
            .await
            .map_err(db("could not look for rows without a log entry"))?;
        pin_mut!(stream);
        while let Some(row) = stream.next().await {
            let row = row.map_err(db("could not look for rows without a log entry"))?;
            each(row.get(0), row.get(1));
        }
        Ok(())
    }

    /// The entries `[start, end)` of the log: index, logged leaf, event id, occurred_at.
    pub async fn logged_leaves(
        &self,
        tenant: &TenantId,
        start: u64,
        end: u64,
        mut each: impl FnMut(u64, Hash, String, DateTime<Utc>),
    ) -> Result<(), SourceError> {
        let (start, end) = (start as i64, end as i64);
        let params: [&(dyn ToSql + Sync); 3] = [&tenant.as_str(), &start, &end];
        let stream = self
            .client
            .query_raw(
                "SELECT log_index, leaf_hash, event_id, occurred_at FROM log_entries \
                 WHERE tenant_id = $1 AND log_index >= $2 AND log_index < $3 ORDER BY log_index",
                params,
            )
            .await
            .map_err(db("could not read the log"))?;
        pin_mut!(stream);
        while let Some(row) = stream.next().await {
            let row = row.map_err(db("could not read the log"))?;
            let leaf = Hash::from_slice(row.get(1)).unwrap_or(Hash::from_bytes([0; 32]));
            each(row.get::<_, i64>(0) as u64, leaf, row.get(2), row.get(3));
        }
        Ok(())
    }

    /// The subtree hashes the checkpointer stored at `level` for `indexes`.
    pub async fn stored_subtrees(
        &self,
        tenant: &TenantId,
        level: u8,
        indexes: &[u64],
    ) -> Result<std::collections::HashMap<u64, Hash>, SourceError> {
        let indexes: Vec<i64> = indexes.iter().map(|&i| i as i64).collect();
        let rows = self
            .client
            .query(
                "SELECT idx, hash FROM log_subtrees \
                 WHERE tenant_id = $1 AND level = $2 AND idx = ANY($3)",
                &[&tenant.as_str(), &i16::from(level), &indexes],
            )
            .await
            .map_err(db("could not read log_subtrees"))?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.get::<_, i64>(0) as u64, Hash::from_slice(r.get(1)).ok()?)))
            .collect())
    }

    /// The archive's signed manifest notes as PostgreSQL keeps them: `(seq, note)` in order.
    pub async fn manifest_notes(&self) -> Result<Vec<(u64, Vec<u8>)>, SourceError> {
        let rows = self
            .client
            .query("SELECT seq, note FROM archive_manifests ORDER BY seq", &[])
            .await
            .map_err(db("could not read archive_manifests"))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0).max(0) as u64,
                    r.get::<_, &str>(1).as_bytes().to_vec(),
                )
            })
            .collect())
    }

    /// The tenant's log entries of events that occurred in `month`, in log-index order:
    /// index, logged leaf, event id, and whether the event's row is in PostgreSQL.
    pub async fn month_entries(
        &self,
        tenant: &TenantId,
        month: Month,
    ) -> Result<tokio_postgres::RowStream, SourceError> {
        let (start, end) = (month.start(), month.end());
        let params: [&(dyn ToSql + Sync); 3] = [&tenant.as_str(), &start, &end];
        self.client
            .query_raw(
                "SELECT l.log_index, l.leaf_hash, l.event_id, e.id IS NOT NULL \
                 FROM log_entries l LEFT JOIN audit_events e \
                   ON e.tenant_id = l.tenant_id AND e.id = l.event_id AND e.occurred_at = l.occurred_at \
                 WHERE l.tenant_id = $1 AND l.occurred_at >= $2 AND l.occurred_at < $3 \
                 ORDER BY l.log_index",
                params,
            )
            .await
            .map_err(db("could not read the log"))
    }

    /// The tenant's log entries in index order, without their rows: index, logged leaf,
    /// event id, occurred_at.
    pub async fn entries(
        &self,
        tenant: &TenantId,
    ) -> Result<tokio_postgres::RowStream, SourceError> {
        let params: [&(dyn ToSql + Sync); 1] = [&tenant.as_str()];
        self.client
            .query_raw(
                "SELECT log_index, leaf_hash, event_id, occurred_at FROM log_entries \
                 WHERE tenant_id = $1 ORDER BY log_index",
                params,
            )
            .await
            .map_err(db("could not read the log"))
    }

    /// The tenant's rows with `occurred_at` in `[from, to)`, in no particular order, on the
    /// second connection (same snapshot): the event's columns from 0, in the writer's order.
    pub async fn rows(
        &self,
        tenant: &TenantId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<tokio_postgres::RowStream, SourceError> {
        let params: [&(dyn ToSql + Sync); 3] = [&tenant.as_str(), &from, &to];
        self.second
            .query_raw(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM audit_events e WHERE e.tenant_id = $1 \
                     AND ($2::timestamptz IS NULL OR e.occurred_at >= $2) \
                     AND ($3::timestamptz IS NULL OR e.occurred_at < $3)"
                ),
                params,
            )
            .await
            .map_err(db("could not read the rows"))
    }

    /// Ends the snapshot.
    pub async fn close(&self) {
        let _ = self.second.batch_execute("COMMIT").await;
        let _ = self.client.batch_execute("COMMIT").await;
    }
}

#[async_trait]
impl CheckpointSource for PgLog {
    async fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<StoredNote>, SourceError> {
        let rows = self
            .client
            .query(
                "SELECT tree_size, root_hash, signed_at, note FROM checkpoints \
                 WHERE tenant_id = $1 ORDER BY tree_size, signed_at",
                &[&tenant.as_str()],
            )
            .await
            .map_err(db("could not read the checkpoints"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let at: DateTime<Utc> = r.get(2);
                StoredNote {
                    store: Store::Postgresql,
                    location: format!(
                        "checkpoints row signed_at={}",
                        crate::checkpoints::rfc3339(at)
                    ),
                    note: r.get::<_, &str>(3).as_bytes().to_vec(),
                    claimed_size: u64::try_from(r.get::<_, i64>(0)).ok(),
                    claimed_root: Hash::from_slice(r.get(1)).ok(),
                    claimed_at: Some(at),
                }
            })
            .collect())
    }
}

/// The month of a partition named `audit_events_YYYY_MM`.
fn partition_month(name: &str) -> Option<Month> {
    let rest = name.strip_prefix("audit_events_")?;
    let (year, month) = rest.split_once('_')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    Month::new(year.parse().ok()?, month.parse().ok()?)
}

/// The log's entries from PostgreSQL, converted on blocking threads a batch at a time.
pub struct PgLeaves {
    rx: mpsc::Receiver<JoinHandle<Result<Vec<LeafEntry>, SourceError>>>,
    reader: Option<JoinHandle<Result<(), SourceError>>>,
}

#[async_trait]
impl LeafSource for PgLeaves {
    async fn next_batch(&mut self) -> Result<Option<Vec<LeafEntry>>, SourceError> {
        match self.rx.recv().await {
            Some(job) => job
                .await
                .map_err(|e| SourceError::new("converting rows failed", e))?
                .map(Some),
            None => match self.reader.take() {
                Some(reader) => {
                    reader
                        .await
                        .map_err(|e| SourceError::new("reading the log failed", e))??;
                    Ok(None)
                }
                None => Ok(None),
            },
        }
    }
}

/// One joined row: the entry, and the event's leaf recomputed from its row.
fn entry(
    row: &Row,
    tenant: &TenantId,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    archived: &BTreeSet<Month>,
) -> Result<LeafEntry, SourceError> {
    let index: i64 = row
        .try_get(0)
        .map_err(|e| SourceError::new("a log entry", e))?;
    let occurred_at: DateTime<Utc> = row
        .try_get(3)
        .map_err(|e| SourceError::new("a log entry", e))?;
    let event_id: String = row
        .try_get(2)
        .map_err(|e| SourceError::new("a log entry", e))?;
    let logged = Hash::from_slice(row.get(1));
    let in_range = from.is_none_or(|f| occurred_at >= f) && to.is_none_or(|t| occurred_at < t);
    let present = row.get::<_, Option<&str>>(4).is_some();
    let check = match &logged {
        Err(e) => RowCheck::Unreadable(format!("its logged leaf hash is unreadable: {e}")),
        Ok(_) if !in_range => RowCheck::OutOfRange,
        Ok(_) if !present && archived.contains(&Month::of(occurred_at)) => RowCheck::Archived,
        Ok(_) if !present => RowCheck::Missing,
        Ok(_) => match event_from_row(row, 4) {
            Ok(event) if event.tenant_id == *tenant => RowCheck::Recomputed(event.leaf_hash()),
            Ok(event) => {
                RowCheck::Unreadable(format!("it belongs to tenant {}", event.tenant_id.as_str()))
            }
            Err(why) => RowCheck::Unreadable(why),
        },
    };
    Ok(LeafEntry {
        index: index.max(0) as u64,
        logged: logged.unwrap_or(Hash::from_bytes([0; 32])),
        event_id,
        occurred_at,
        row: check,
    })
}

/// An event from its row's columns from `first` on, in the writer's column order.
pub fn event_from_row(row: &Row, first: usize) -> Result<AuditEvent, String> {
    fn text<'a>(row: &'a Row, index: usize, name: &str) -> Result<&'a str, String> {
        row.try_get(index)
            .map_err(|e| format!("{name} is unreadable: {e}"))
    }
    let time = |index: usize, name: &str| -> Result<DateTime<Utc>, String> {
        row.try_get(index)
            .map_err(|e| format!("{name} is unreadable: {e}"))
    };
    let json = |index: usize, name: &str| -> Result<Value, String> {
        row.try_get(index)
            .map_err(|e| format!("{name} is unreadable: {e}"))
    };
    let f = first;
    crate::rows::event_from_columns(crate::rows::Columns {
        id: text(row, f, "id")?,
        tenant_id: text(row, f + 1, "tenant_id")?,
        occurred_at: time(f + 2, "occurred_at")?,
        received_at: time(f + 3, "received_at")?,
        actor_id: text(row, f + 4, "actor_id")?,
        actor_type: row
            .try_get::<_, Option<&str>>(f + 5)
            .map_err(|e| format!("actor_type is unreadable: {e}"))?,
        action: text(row, f + 6, "action")?,
        resource_type: text(row, f + 7, "resource_type")?,
        resource_id: text(row, f + 8, "resource_id")?,
        changes: json(f + 9, "changes")?,
        metadata: json(f + 10, "metadata")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_name_gives_its_month() {
        assert_eq!(
            partition_month("audit_events_2026_11"),
            Month::new(2026, 11)
        );
        assert_eq!(partition_month("audit_events_2026_1"), None);
        assert_eq!(partition_month("event_ids"), None);
    }
}
