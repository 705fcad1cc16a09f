//! The writer's storage: idempotent batch inserts and the quarantine of poison records.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{LazyLock, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures_util::pin_mut;
use postgres_types::{Json, ToSql, Type};
use tokio_postgres::binary_copy::BinaryCopyInWriter;

use sentinel_domain::fields::{Changes, Metadata};
use sentinel_domain::store::{
    EventStore, RejectedRecord, StoreError, StoreReport, StoreTransaction,
};
use sentinel_domain::{AuditEvent, Month};

use crate::{classify, pool_error};

/// Keys of client ids are kept at least this long (the contract promises 24 hours).
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 25;
const PURGE_EVERY_SECONDS: i64 = 600;

/// How a batch reaches the table. Both are kept so the benchmark can compare them;
/// [`WriteMethod::default`] is the measured winner: UNNEST, one round trip, 3-6% faster
/// than COPY + staging here with every index in place (see BENCHMARKS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMethod {
    /// Binary COPY into a temporary staging table, then one `INSERT … SELECT`.
    CopyStaging,
    /// One `INSERT … SELECT FROM unnest($1, $2, …)` statement.
    #[default]
    Unnest,
}

/// The writer's storage on PostgreSQL.
pub struct PgEventStore {
    pool: Pool,
    method: WriteMethod,
    /// Whether stored events are appended to their tenants' logs: always, except in the
    /// benchmark's comparison ([`PgEventStore::with_log`]).
    log: bool,
    known_months: Mutex<HashSet<Month>>,
    last_purge: AtomicI64,
}

/// The columns a writer sets, with their SQL types: the one list that the COPY, the staging
/// table, UNNEST, the reader and the benchmarks derive theirs from.
const COLUMN_TYPES: [(&str, Type); 11] = [
    ("id", Type::TEXT),
    ("tenant_id", Type::TEXT),
    ("occurred_at", Type::TIMESTAMPTZ),
    ("received_at", Type::TIMESTAMPTZ),
    ("actor_id", Type::TEXT),
    ("actor_type", Type::TEXT),
    ("action", Type::TEXT),
    ("resource_type", Type::TEXT),
    ("resource_id", Type::TEXT),
    ("changes", Type::JSONB),
    ("metadata", Type::JSONB),
];

/// The column names of [`COLUMN_TYPES`], comma-separated.
pub static COLUMNS: LazyLock<String> = LazyLock::new(|| {
    COLUMN_TYPES
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
});

/// The binary COPY types of [`COLUMNS`].
pub static COPY_TYPES: LazyLock<Vec<Type>> =
    LazyLock::new(|| COLUMN_TYPES.iter().map(|(_, t)| t.clone()).collect());

/// `name type, …` of [`COLUMN_TYPES`], for a table shaped like the writer's rows.
fn column_definitions() -> String {
    COLUMN_TYPES
        .iter()
        .map(|(name, kind)| format!("{name} {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One event's values in the order of [`COLUMNS`].
pub struct RowValues<'a> {
    texts: [&'a str; 6],
    actor_type: Option<&'a str>,
    times: [DateTime<Utc>; 2],
    changes: Json<&'a Changes>,
    metadata: Json<&'a Metadata>,
}

impl<'a> RowValues<'a> {
    pub fn new(e: &'a AuditEvent) -> Self {
        Self {
            texts: [
                e.id.as_str(),
                e.tenant_id.as_str(),
                e.actor_id.as_str(),
                e.action.as_str(),
                e.resource_type.as_str(),
                e.resource_id.as_str(),
            ],
            actor_type: e.actor_type.as_deref(),
            times: [e.occurred_at.get(), e.received_at.get()],
            changes: Json(&e.changes),
            metadata: Json(&e.metadata),
        }
    }

    pub fn refs(&self) -> [&(dyn ToSql + Sync); 11] {
        let [id, tenant, actor, action, resource_type, resource_id] = &self.texts;
        [
            id,
            tenant,
            &self.times[0],
            &self.times[1],
            actor,
            &self.actor_type,
            action,
            resource_type,
            resource_id,
            &self.changes,
            &self.metadata,
        ]
    }
}

/// Keeps only ids not seen before (recording them), then inserts those events, answering
/// the (tenant, id) of each event stored. `source` yields the columns and `ord`, the
/// event's position in the stream: within one batch, the first copy of an id wins.
fn dedup_insert_sql(source: &str) -> String {
    format!(
        "WITH input AS ({source}), \
         fresh AS ( \
             INSERT INTO event_ids (tenant_id, id, occurred_at) \
             SELECT DISTINCT ON (tenant_id, id) tenant_id, id, occurred_at FROM input \
             ORDER BY tenant_id, id, ord \
             ON CONFLICT (tenant_id, id) DO NOTHING \
             RETURNING tenant_id, id, occurred_at) \
         INSERT INTO audit_events ({columns}) \
         SELECT {cols} FROM input i JOIN fresh f \
             ON f.tenant_id = i.tenant_id AND f.id = i.id AND f.occurred_at = i.occurred_at \
         ON CONFLICT (tenant_id, id, occurred_at) DO NOTHING \
         RETURNING tenant_id, id",
        columns = *COLUMNS,
        cols = COLUMNS
            .split(", ")
            .map(|c| format!("i.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Locks the tenants' logs (creating the missing ones) in the order given, which is sorted,
/// so that writers storing the same tenants take their locks in one order and never
/// deadlock; answers each log's size. The lock is held until the transaction ends.
const LOCK_LOGS_SQL: &str = "INSERT INTO tenant_logs (tenant_id) SELECT unnest($1::text[]) \
     ON CONFLICT (tenant_id) DO UPDATE SET size = tenant_logs.size RETURNING tenant_id, size";

/// Appends the leaves and sets the logs' new sizes.
const APPEND_SQL: &str = "WITH appended AS ( \
         INSERT INTO log_entries (tenant_id, log_index, leaf_hash, event_id, occurred_at) \
         SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[], $4::text[], $5::timestamptz[])) \
     UPDATE tenant_logs t SET size = s.size \
     FROM unnest($6::text[], $7::int8[]) AS s(tenant_id, size) WHERE t.tenant_id = s.tenant_id";

/// An event stored in this transaction, waiting for its place in its tenant's log.
struct Leaf {
    tenant_id: String,
    event_id: String,
    occurred_at: DateTime<Utc>,
    hash: sentinel_domain::merkle::Hash,
}

impl Leaf {
    fn of(event: &AuditEvent) -> Self {
        Self {
            tenant_id: event.tenant_id.to_string(),
            event_id: event.id.to_string(),
            occurred_at: event.occurred_at.get(),
            hash: event.leaf_hash(),
        }
    }
}

/// The events of `events` that the insert stored (`stored` holds their tenant and id), as
/// leaves in stream order: the first copy of each id, as the insert chose.
fn leaves(events: &[AuditEvent], stored: &[tokio_postgres::Row]) -> Vec<Leaf> {
    let mut wanted: HashSet<(&str, &str)> = stored.iter().map(|r| (r.get(0), r.get(1))).collect();
    events
        .iter()
        .filter(|e| wanted.remove(&(e.tenant_id.as_str(), e.id.as_str())))
        .map(Leaf::of)
        .collect()
}

/// Gives each leaf the next index of its tenant's log, in order, under the tenants' locks
/// ([`LOCK_LOGS_SQL`], [`APPEND_SQL`]). Run last before the commit, so the locks are held
/// only for the append and the commit.
async fn append_to_logs(
    client: &deadpool_postgres::Client,
    leaves: &[Leaf],
) -> Result<(), tokio_postgres::Error> {
    if leaves.is_empty() {
        return Ok(());
    }
    let mut tenants: Vec<&str> = leaves.iter().map(|l| l.tenant_id.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let lock = client.prepare_cached(LOCK_LOGS_SQL).await?;
    let mut sizes: HashMap<String, i64> = client
        .query(&lock, &[&tenants])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut indexes = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        let size = sizes
            .get_mut(&leaf.tenant_id)
            .expect("every leaf's tenant was locked");
        indexes.push(*size);
        *size += 1;
    }
    let (tenants, new_sizes): (Vec<String>, Vec<i64>) = sizes.into_iter().unzip();
    let append = client.prepare_cached(APPEND_SQL).await?;
    client
        .execute(
            &append,
            &[
                &leaves
                    .iter()
                    .map(|l| l.tenant_id.as_str())
                    .collect::<Vec<_>>(),
                &indexes,
                &leaves
                    .iter()
                    .map(|l| &l.hash.as_bytes()[..])
                    .collect::<Vec<_>>(),
                &leaves
                    .iter()
                    .map(|l| l.event_id.as_str())
                    .collect::<Vec<_>>(),
                &leaves.iter().map(|l| l.occurred_at).collect::<Vec<_>>(),
                &tenants,
                &new_sizes,
            ],
        )
        .await?;
    Ok(())
}

/// Keeps each copy of an already-stored (tenant, id) whose content differs from the stored
/// copy, with both contents, once per distinct record. Run after the insert, in a statement
/// of its own so it sees what that insert stored (and what concurrent writers committed).
/// Copies are the same when every field the client sends is equal, `changes` and `metadata`
/// to the byte of their jsonb text; `occurred_at` too, except that an occurred_at equal to
/// the copy's own `received_at` (the default for a client that sends none) matches another
/// such default: a retried request that left occurred_at out is the same event.
static CONFLICTS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH input AS (SELECT * FROM unnest({arrays}, ${record}::bytea[]) AS t({columns}, record)) \
         INSERT INTO event_conflicts (tenant_id, event_id, stored_occurred_at, stored, conflicting) \
         SELECT i.tenant_id, i.id, e.occurred_at, to_jsonb(e), i.record \
         FROM input i \
         JOIN event_ids k ON k.tenant_id = i.tenant_id AND k.id = i.id \
         LEFT JOIN audit_events e \
             ON e.tenant_id = k.tenant_id AND e.id = k.id AND e.occurred_at = k.occurred_at \
         WHERE e.id IS NULL OR NOT ( \
             i.actor_id = e.actor_id AND i.actor_type IS NOT DISTINCT FROM e.actor_type \
             AND i.action = e.action AND i.resource_type = e.resource_type \
             AND i.resource_id = e.resource_id \
             AND i.changes::text = e.changes::text AND i.metadata::text = e.metadata::text \
             AND (i.occurred_at = e.occurred_at \
                  OR (i.occurred_at = i.received_at AND e.occurred_at = e.received_at))) \
         ON CONFLICT DO NOTHING",
        arrays = unnest_arrays(),
        record = COLUMN_TYPES.len() + 1,
        columns = *COLUMNS,
    )
});

/// `$1::text[], $2::text[], …`: the parameters of [`COLUMN_TYPES`] as arrays.
fn unnest_arrays() -> String {
    COLUMN_TYPES
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| format!("${}::{kind}[]", i + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One array per column of [`COLUMN_TYPES`], in its order, borrowed from the events.
struct ColumnArrays<'a> {
    ids: Vec<&'a str>,
    tenants: Vec<&'a str>,
    occurred: Vec<DateTime<Utc>>,
    received: Vec<DateTime<Utc>>,
    actors: Vec<&'a str>,
    actor_types: Vec<Option<&'a str>>,
    actions: Vec<&'a str>,
    resource_types: Vec<&'a str>,
    resource_ids: Vec<&'a str>,
    changes: Vec<Json<&'a Changes>>,
    metadata: Vec<Json<&'a Metadata>>,
}

impl<'a> ColumnArrays<'a> {
    fn new(events: &'a [AuditEvent]) -> Self {
        Self {
            ids: events.iter().map(|e| e.id.as_str()).collect(),
            tenants: events.iter().map(|e| e.tenant_id.as_str()).collect(),
            occurred: events.iter().map(|e| e.occurred_at.get()).collect(),
            received: events.iter().map(|e| e.received_at.get()).collect(),
            actors: events.iter().map(|e| e.actor_id.as_str()).collect(),
            actor_types: events.iter().map(|e| e.actor_type.as_deref()).collect(),
            actions: events.iter().map(|e| e.action.as_str()).collect(),
            resource_types: events.iter().map(|e| e.resource_type.as_str()).collect(),
            resource_ids: events.iter().map(|e| e.resource_id.as_str()).collect(),
            changes: events.iter().map(|e| Json(&e.changes)).collect(),
            metadata: events.iter().map(|e| Json(&e.metadata)).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 11] {
        [
            &self.ids,
            &self.tenants,
            &self.occurred,
            &self.received,
            &self.actors,
            &self.actor_types,
            &self.actions,
            &self.resource_types,
            &self.resource_ids,
            &self.changes,
            &self.metadata,
        ]
    }
}

/// After a write that stored fewer events than it was given: keeps the copies that differ
/// from what is stored ([`CONFLICTS_SQL`]), answering how many were newly kept.
async fn keep_conflicts(
    client: &deadpool_postgres::Client,
    events: &[AuditEvent],
) -> Result<u64, tokio_postgres::Error> {
    let columns = ColumnArrays::new(events);
    let records: Vec<Vec<u8>> = events.iter().map(AuditEvent::encode).collect();
    let statement = client.prepare_cached(&CONFLICTS_SQL).await?;
    let mut params: Vec<&(dyn ToSql + Sync)> = columns.params().to_vec();
    params.push(&records);
    let kept = client.execute(&statement, &params).await?;
    if kept > 0 {
        tracing::warn!(
            kept,
            "copies of stored event ids with other content kept as conflicts"
        );
    }
    Ok(kept)
}

impl PgEventStore {
    pub fn new(pool: Pool) -> Self {
        Self::with_method(pool, WriteMethod::default())
    }

    pub fn with_method(pool: Pool, method: WriteMethod) -> Self {
        Self {
            pool,
            method,
            log: true,
            known_months: Mutex::new(HashSet::new()),
            last_purge: AtomicI64::new(0),
        }
    }

    /// With `false`, the same store without the verifiable log: no leaf is hashed and
    /// nothing is appended to `log_entries` or `tenant_logs`. It exists only so that the
    /// writer benchmark can measure what the log costs (bench/benches/writer.rs); the log is
    /// on by default and production code never turns it off.
    pub fn with_log(mut self, log: bool) -> Self {
        self.log = log;
        self
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Forgets which month partitions exist (one was dropped, or made in a transaction that
    /// did not commit): the next write makes sure of them again.
    fn forget_months(&self) {
        self.known_months.lock().expect("lock poisoned").clear();
    }

    async fn ensure_partitions(
        &self,
        client: &deadpool_postgres::Client,
        events: &[AuditEvent],
    ) -> Result<(), tokio_postgres::Error> {
        let missing: Vec<Month> = {
            let known = self.known_months.lock().expect("lock poisoned");
            let mut months: Vec<Month> = events
                .iter()
                .map(|e| Month::of(e.occurred_at.get()))
                .filter(|m| !known.contains(m))
                .collect();
            months.sort_unstable();
            months.dedup();
            months
        };
        if missing.is_empty() {
            return Ok(());
        }
        let statement = client
            .prepare_cached("SELECT sentinel_ensure_month_partition($1)")
            .await?;
        for month in missing {
            let name: String = client
                .query_one(&statement, &[&month.start()])
                .await?
                .get(0);
            tracing::debug!(partition = %name, "month partition ready");
            self.known_months
                .lock()
                .expect("lock poisoned")
                .insert(month);
        }
        Ok(())
    }

    /// Writes a part inside the open transaction: the events (the first copy of each id),
    /// then the conflicts, if some events were not stored. Answers the leaves to append (none
    /// without the log), how many events were stored, and how many conflicts were kept.
    async fn write_part(
        &self,
        client: &mut deadpool_postgres::Client,
        events: &[AuditEvent],
    ) -> Result<(Vec<Leaf>, u64, u64), tokio_postgres::Error> {
        let stored = match self.method {
            WriteMethod::CopyStaging => copy_staging(client, events).await?,
            WriteMethod::Unnest => unnest(client, events).await?,
        };
        let conflicts = if stored.len() < events.len() {
            keep_conflicts(client, events).await?
        } else {
            0
        };
        let leaves = if self.log {
            leaves(events, &stored)
        } else {
            Vec::new()
        };
        Ok((leaves, stored.len() as u64, conflicts))
    }

    /// One whole batch in one transaction: the partitions first (outside it), then the
    /// events, the conflicts and the log, and the commit.
    async fn store_once(
        &self,
        client: &mut deadpool_postgres::Client,
        events: &[AuditEvent],
    ) -> Result<(u64, u64), tokio_postgres::Error> {
        self.ensure_partitions(client, events).await?;
        client.batch_execute("BEGIN").await?;
        let written = async {
            let (leaves, stored, conflicts) = self.write_part(client, events).await?;
            append_to_logs(client, &leaves).await?;
            client.batch_execute("COMMIT").await?;
            Ok((stored, conflicts))
        }
        .await;
        if written.is_err() && client.batch_execute("ROLLBACK").await.is_err() {
            tracing::warn!("failed to roll back a failed write; the connection is discarded");
        }
        written
    }

    async fn purge_expired_ids(&self, client: &deadpool_postgres::Client) {
        let now = Utc::now().timestamp();
        let last = self.last_purge.load(Ordering::Relaxed);
        if now - last < PURGE_EVERY_SECONDS
            || self
                .last_purge
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let result = client
            .execute(
                "DELETE FROM event_ids WHERE (tenant_id, id) IN ( \
                     SELECT tenant_id, id FROM event_ids \
                     WHERE first_seen_at < now() - make_interval(hours => $1) LIMIT 50000)",
                &[&(IDEMPOTENCY_WINDOW_HOURS as i32)],
            )
            .await;
        match result {
            Ok(purged) => tracing::debug!(purged, "expired idempotency keys purged"),
            Err(error) => tracing::warn!(%error, "failed to purge expired idempotency keys"),
        }
    }
}

async fn copy_staging(
    client: &mut deadpool_postgres::Client,
    events: &[AuditEvent],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS sentinel_staging ({}, \
             ord bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DELETE ROWS",
            column_definitions()
        ))
        .await?;
    let sink = client
        .copy_in(&format!(
            "COPY sentinel_staging ({}) FROM STDIN (FORMAT binary)",
            *COLUMNS
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    for e in events {
        writer.as_mut().write(&RowValues::new(e).refs()).await?;
    }
    writer.finish().await?;
    let statement = client
        .prepare_cached(&dedup_insert_sql("SELECT * FROM sentinel_staging"))
        .await?;
    client.query(&statement, &[]).await
}

async fn unnest(
    client: &mut deadpool_postgres::Client,
    events: &[AuditEvent],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let columns = ColumnArrays::new(events);
    let statement = client
        .prepare_cached(&dedup_insert_sql(&format!(
            "SELECT * FROM unnest({}) WITH ORDINALITY AS t({}, ord)",
            unnest_arrays(),
            *COLUMNS
        )))
        .await?;
    client.query(&statement, &columns.params()).await
}

/// A batch written in parts on one connection, in one transaction (one commit, so one
/// WAL flush, for the whole batch; the log is appended once, just before it).
struct PgTransaction<'a> {
    store: &'a PgEventStore,
    /// `None` once committed; a transaction dropped before that closes its connection
    /// (discarding the open transaction) rather than return it to the pool.
    client: Option<deadpool_postgres::Client>,
    written: u64,
    leaves: Vec<Leaf>,
    stored: u64,
    conflicts: u64,
}

impl Drop for PgTransaction<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
            // Partitions made inside the transaction went with it.
            self.store.forget_months();
        }
    }
}

#[async_trait]
impl StoreTransaction for PgTransaction<'_> {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        if self.store.method == WriteMethod::CopyStaging {
            return Err(StoreError::Refused(
                "COPY + staging writes whole batches only".into(),
            ));
        }
        let client = self.client.as_mut().expect("not committed yet");
        // Partitions are made inside the transaction (the function tolerates a writer that
        // made the same one first); a missing one found by the insert cannot be retried
        // here, because the failed statement aborted the transaction.
        self.store
            .ensure_partitions(client, events)
            .await
            .map_err(|e| classify(&e))?;
        let (leaves, stored, conflicts) = self
            .store
            .write_part(client, events)
            .await
            .map_err(|e| classify(&e))?;
        self.written += events.len() as u64;
        self.leaves.extend(leaves);
        self.stored += stored;
        self.conflicts += conflicts;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<StoreReport, StoreError> {
        let client = self.client.take().expect("committed once");
        let committed = async {
            append_to_logs(&client, &self.leaves).await?;
            client.batch_execute("COMMIT").await
        }
        .await;
        if let Err(error) = committed {
            self.store.forget_months();
            return Err(classify(&error));
        }
        self.store.purge_expired_ids(&client).await;
        Ok(report(self.written, self.stored, self.conflicts))
    }
}

/// How a write went: every event given was stored, a duplicate, or a conflict.
fn report(written: u64, stored: u64, conflicts: u64) -> StoreReport {
    StoreReport {
        inserted: stored,
        duplicates: (written - stored).saturating_sub(conflicts),
        conflicts,
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn begin(&self) -> Result<Box<dyn StoreTransaction + '_>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| classify(&e))?;
        Ok(Box::new(PgTransaction {
            store: self,
            client: Some(client),
            written: 0,
            leaves: Vec::new(),
            stored: 0,
            conflicts: 0,
        }))
    }

    #[tracing::instrument(skip_all, fields(events = events.len(), method = ?self.method))]
    async fn store(&self, events: &[AuditEvent]) -> Result<StoreReport, StoreError> {
        if events.is_empty() {
            return Ok(StoreReport::default());
        }
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let mut attempt = 0;
        let (stored, conflicts) = loop {
            attempt += 1;
            match self.store_once(&mut client, events).await {
                Ok(written) => break written,
                // A partition we believed in was dropped (archived) since: forget and retry.
                Err(error) if attempt == 1 && error.code().map(|c| c.code()) == Some("23514") => {
                    tracing::warn!(%error, "a month partition went missing; recreating");
                    self.forget_months();
                }
                Err(error) => {
                    if client.is_closed() {
                        drop(deadpool_postgres::Object::take(client));
                    }
                    return Err(classify(&error));
                }
            }
        };
        self.purge_expired_ids(&client).await;
        Ok(report(events.len() as u64, stored, conflicts))
    }

    #[tracing::instrument(skip_all, fields(records = records.len()))]
    async fn quarantine(&self, records: &[RejectedRecord]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let client = self.pool.get().await.map_err(pool_error)?;
        let sources: Vec<&str> = records.iter().map(|r| r.source.as_str()).collect();
        let keys: Vec<&str> = records.iter().map(|r| r.record_key.as_str()).collect();
        // Reasons may quote hostile input; NUL cannot be stored in text.
        let reasons: Vec<String> = records
            .iter()
            .map(|r| r.reason.replace('\0', "\\0"))
            .collect();
        let payloads: Vec<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
        client
            .execute(
                "INSERT INTO rejected_records (source, record_key, reason, payload) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) \
                 ON CONFLICT (source, record_key) DO NOTHING",
                &[&sources, &keys, &reasons, &payloads],
            )
            .await
            .map_err(|e| classify(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_insert_names_every_column() {
        let sql = dedup_insert_sql("SELECT 1");
        assert!(sql.contains("i.id, i.tenant_id, i.occurred_at"));
        assert!(sql.contains("i.metadata FROM input i"));
        assert!(sql.contains("ON CONFLICT (tenant_id, id, occurred_at) DO NOTHING"));
    }
}
