//! The writer's storage: idempotent batch inserts and the quarantine of poison records.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{LazyLock, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures_util::{future, pin_mut};
use postgres_types::{Json, ToSql, Type};
use tokio_postgres::binary_copy::BinaryCopyInWriter;

use sentinel_domain::event::HashedEvent;
use sentinel_domain::fields::{Changes, Metadata};
use sentinel_domain::merkle::Hash;
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

/// What the store writes: an event, and its leaf hash for the log, computed from the event
/// ([`AuditEvent`]) or already known ([`HashedEvent`], the writer's).
trait Entry: Sync {
    fn event(&self) -> &AuditEvent;
    fn leaf_hash(&self) -> Hash;
}

impl Entry for AuditEvent {
    fn event(&self) -> &AuditEvent {
        self
    }

    fn leaf_hash(&self) -> Hash {
        AuditEvent::leaf_hash(self)
    }
}

impl Entry for HashedEvent {
    fn event(&self) -> &AuditEvent {
        HashedEvent::event(self)
    }

    fn leaf_hash(&self) -> Hash {
        HashedEvent::leaf_hash(self)
    }
}

/// Opens the batch's transaction, and marks it as the batch's: the first write is sent
/// right behind it, without waiting for its answer (one round trip for both). Should the
/// `BEGIN` fail while the connection lives on, that write would run on its own, committed
/// at once; it refuses to, because [`dedup_insert_sql`] reads the mark, which only this
/// transaction has (`set_config(…, true)` lasts until the transaction ends).
const BEGIN_SQL: &str = "BEGIN; SELECT set_config('sentinel.batch', 'on', true)";

/// Keeps only ids not seen before (recording them), then inserts those events, answering
/// the (tenant, id) of each event stored. `source` yields the columns and `ord`, the
/// event's position in the stream: within one batch, the first copy of an id wins (two
/// copies with the same time are inserted in stream order, so the later one conflicts).
///
/// It refuses to run outside a transaction opened by [`BEGIN_SQL`]: `current_setting`
/// fails there (an unknown setting, or `''`, which is no boolean).
fn dedup_insert_sql(source: &str) -> String {
    format!(
        "WITH input AS ({source} WHERE current_setting('sentinel.batch')::boolean), \
         fresh AS ( \
             INSERT INTO event_ids (tenant_id, id, occurred_at) \
             SELECT DISTINCT ON (tenant_id, id) tenant_id, id, occurred_at FROM input \
             ORDER BY tenant_id, id, ord \
             ON CONFLICT (tenant_id, id) DO NOTHING \
             RETURNING tenant_id, id, occurred_at) \
         INSERT INTO audit_events ({columns}) \
         SELECT {cols} FROM input i JOIN fresh f \
             ON f.tenant_id = i.tenant_id AND f.id = i.id AND f.occurred_at = i.occurred_at \
         ORDER BY i.ord \
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

/// Appends the leaves to their tenants' logs in one statement. `grown` grows each log by its
/// number of leaves ($2, creating the missing logs), in the tenants' sorted order, so that
/// writers storing the same tenants take their locks in one order and never deadlock; the
/// lock is held until the transaction ends. Each leaf then takes the index `new size + $4`,
/// where $4 is the leaf's rank among its tenant's leaves minus their number (−n … −1).
const APPEND_SQL: &str = "WITH grown AS ( \
         INSERT INTO tenant_logs AS t (tenant_id, size) \
         SELECT * FROM unnest($1::text[], $2::int8[]) AS s(tenant_id, leaves) ORDER BY tenant_id \
         ON CONFLICT (tenant_id) DO UPDATE SET size = t.size + EXCLUDED.size \
         RETURNING tenant_id, size) \
     INSERT INTO log_entries (tenant_id, log_index, leaf_hash, event_id, occurred_at) \
     SELECT l.tenant_id, g.size + l.offset_from_end, l.leaf_hash, l.event_id, l.occurred_at \
     FROM unnest($3::text[], $4::int8[], $5::bytea[], $6::text[], $7::timestamptz[]) \
         AS l(tenant_id, offset_from_end, leaf_hash, event_id, occurred_at) \
     JOIN grown g ON g.tenant_id = l.tenant_id";

/// An event stored in this transaction, waiting for its place in its tenant's log.
struct Leaf {
    tenant_id: String,
    event_id: String,
    occurred_at: DateTime<Utc>,
    hash: Hash,
}

impl Leaf {
    fn of(entry: &impl Entry) -> Self {
        let event = entry.event();
        Self {
            tenant_id: event.tenant_id.to_string(),
            event_id: event.id.to_string(),
            occurred_at: event.occurred_at.get(),
            hash: entry.leaf_hash(),
        }
    }
}

/// The events of `events` that the insert stored (`stored` holds their tenant and id), as
/// leaves in stream order: the first copy of each id, as the insert chose.
fn leaves<E: Entry>(events: &[E], stored: &[tokio_postgres::Row]) -> Vec<Leaf> {
    let mut wanted: HashSet<(&str, &str)> = stored.iter().map(|r| (r.get(0), r.get(1))).collect();
    events
        .iter()
        .filter(|e| {
            let e = e.event();
            wanted.remove(&(e.tenant_id.as_str(), e.id.as_str()))
        })
        .map(Leaf::of)
        .collect()
}

/// Appends the leaves to their tenants' logs, each the next index of its tenant's log in
/// order ([`APPEND_SQL`]), and commits, the two sent together: one round trip. The append
/// locks the tenants' logs, so it comes last, and the locks are held only for it and the
/// commit. Should the append fail, the transaction is aborted and the `COMMIT` behind it
/// rolls it back; the append's error is answered.
async fn append_and_commit(
    client: &deadpool_postgres::Client,
    leaves: &[Leaf],
) -> Result<(), tokio_postgres::Error> {
    if leaves.is_empty() {
        return client.batch_execute("COMMIT").await;
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    let mut offsets = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        let count = counts.entry(leaf.tenant_id.as_str()).or_default();
        offsets.push(*count);
        *count += 1;
    }
    for (leaf, offset) in leaves.iter().zip(&mut offsets) {
        *offset -= counts[leaf.tenant_id.as_str()];
    }
    let mut tenants: Vec<(&str, i64)> = counts.into_iter().collect();
    tenants.sort_unstable();
    let (tenants, counts): (Vec<&str>, Vec<i64>) = tenants.into_iter().unzip();
    let append = client.prepare_cached(APPEND_SQL).await?;
    let tenant_of_leaf: Vec<&str> = leaves.iter().map(|l| l.tenant_id.as_str()).collect();
    let hashes: Vec<&[u8]> = leaves.iter().map(|l| &l.hash.as_bytes()[..]).collect();
    let event_ids: Vec<&str> = leaves.iter().map(|l| l.event_id.as_str()).collect();
    let occurred: Vec<DateTime<Utc>> = leaves.iter().map(|l| l.occurred_at).collect();
    let params: [&(dyn ToSql + Sync); 7] = [
        &tenants,
        &counts,
        &tenant_of_leaf,
        &offsets,
        &hashes,
        &event_ids,
        &occurred,
    ];
    let (appended, committed) = future::join(
        client.execute(&append, &params),
        client.batch_execute("COMMIT"),
    )
    .await;
    appended?;
    committed
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
    fn new<E: Entry>(events: &'a [E]) -> Self {
        let events = || events.iter().map(Entry::event);
        Self {
            ids: events().map(|e| e.id.as_str()).collect(),
            tenants: events().map(|e| e.tenant_id.as_str()).collect(),
            occurred: events().map(|e| e.occurred_at.get()).collect(),
            received: events().map(|e| e.received_at.get()).collect(),
            actors: events().map(|e| e.actor_id.as_str()).collect(),
            actor_types: events().map(|e| e.actor_type.as_deref()).collect(),
            actions: events().map(|e| e.action.as_str()).collect(),
            resource_types: events().map(|e| e.resource_type.as_str()).collect(),
            resource_ids: events().map(|e| e.resource_id.as_str()).collect(),
            changes: events().map(|e| Json(&e.changes)).collect(),
            metadata: events().map(|e| Json(&e.metadata)).collect(),
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
async fn keep_conflicts<E: Entry>(
    client: &deadpool_postgres::Client,
    events: &[E],
) -> Result<u64, tokio_postgres::Error> {
    let columns = ColumnArrays::new(events);
    let records: Vec<Vec<u8>> = events.iter().map(|e| e.event().encode()).collect();
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

    /// The months of `events` whose partitions this store has not made sure of yet.
    fn missing_months<E: Entry>(&self, events: &[E]) -> Vec<Month> {
        let known = self.known_months.lock().expect("lock poisoned");
        let mut months: Vec<Month> = events
            .iter()
            .map(|e| Month::of(e.event().occurred_at.get()))
            .filter(|m| !known.contains(m))
            .collect();
        months.sort_unstable();
        months.dedup();
        months
    }

    async fn ensure_partitions<E: Entry>(
        &self,
        client: &deadpool_postgres::Client,
        events: &[E],
    ) -> Result<(), tokio_postgres::Error> {
        let missing = self.missing_months(events);
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

    /// Writes a part inside the transaction, opening it first if `begin` ([`BEGIN_SQL`]):
    /// the events (the first copy of each id), then the conflicts, if some events were not
    /// stored. Answers the leaves to append (none without the log), how many events were
    /// stored, and how many conflicts were kept.
    async fn write_part<E: Entry>(
        &self,
        client: &mut deadpool_postgres::Client,
        events: &[E],
        begin: bool,
    ) -> Result<(Vec<Leaf>, u64, u64), tokio_postgres::Error> {
        let stored = match self.method {
            WriteMethod::CopyStaging => {
                if begin {
                    client.batch_execute(BEGIN_SQL).await?;
                }
                copy_staging(client, events).await?
            }
            WriteMethod::Unnest => unnest(client, events, begin).await?,
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
    /// events, sent with the `BEGIN`, the conflicts, and the log, sent with the commit.
    async fn store_once<E: Entry>(
        &self,
        client: &mut deadpool_postgres::Client,
        events: &[E],
    ) -> Result<(u64, u64), tokio_postgres::Error> {
        self.ensure_partitions(client, events).await?;
        let written = async {
            let (leaves, stored, conflicts) = self.write_part(client, events, true).await?;
            append_and_commit(client, &leaves).await?;
            Ok((stored, conflicts))
        }
        .await;
        if written.is_err() && client.batch_execute("ROLLBACK").await.is_err() {
            tracing::warn!("failed to roll back a failed write; the connection is discarded");
        }
        written
    }

    /// The whole batch in one transaction ([`EventStore::store`]).
    async fn store_entries<E: Entry>(&self, events: &[E]) -> Result<StoreReport, StoreError> {
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

async fn copy_staging<E: Entry>(
    client: &mut deadpool_postgres::Client,
    events: &[E],
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
        writer
            .as_mut()
            .write(&RowValues::new(e.event()).refs())
            .await?;
    }
    writer.finish().await?;
    let statement = client
        .prepare_cached(&dedup_insert_sql("SELECT * FROM sentinel_staging"))
        .await?;
    client.query(&statement, &[]).await
}

/// The UNNEST insert; with `begin`, sent right behind [`BEGIN_SQL`] (one round trip).
async fn unnest<E: Entry>(
    client: &mut deadpool_postgres::Client,
    events: &[E],
    begin: bool,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let columns = ColumnArrays::new(events);
    let statement = client
        .prepare_cached(&dedup_insert_sql(&format!(
            "SELECT * FROM unnest({}) WITH ORDINALITY AS t({}, ord)",
            unnest_arrays(),
            *COLUMNS
        )))
        .await?;
    let params = columns.params();
    if !begin {
        return client.query(&statement, &params).await;
    }
    let (begun, stored) = future::join(
        client.batch_execute(BEGIN_SQL),
        client.query(&statement, &params),
    )
    .await;
    // The BEGIN's own error first: the insert's would only say that it was not in the
    // batch's transaction.
    begun?;
    stored
}

/// A batch written in parts on one connection, in one transaction (one commit, so one
/// WAL flush, for the whole batch; the log is appended once, just before it).
struct PgTransaction<'a> {
    store: &'a PgEventStore,
    /// `None` once committed; a transaction dropped before that closes its connection
    /// (discarding the open transaction) rather than return it to the pool.
    client: Option<deadpool_postgres::Client>,
    /// Whether `BEGIN` has been sent: it goes with the first write.
    begun: bool,
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
    async fn write(&mut self, events: &[HashedEvent]) -> Result<(), StoreError> {
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
        // here, because the failed statement aborted the transaction. The BEGIN goes with
        // the first insert, unless a partition must be made before it.
        if !self.begun && !self.store.missing_months(events).is_empty() {
            client
                .batch_execute(BEGIN_SQL)
                .await
                .map_err(|e| classify(&e))?;
            self.begun = true;
        }
        self.store
            .ensure_partitions(client, events)
            .await
            .map_err(|e| classify(&e))?;
        let begin = !self.begun;
        self.begun = true;
        let (leaves, stored, conflicts) = self
            .store
            .write_part(client, events, begin)
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
        if !self.begun {
            // Nothing was written: there is no transaction to commit.
            return Ok(report(0, 0, 0));
        }
        if let Err(error) = append_and_commit(&client, &self.leaves).await {
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
        // The BEGIN is sent with the first write.
        let client = self.pool.get().await.map_err(pool_error)?;
        Ok(Box::new(PgTransaction {
            store: self,
            client: Some(client),
            begun: false,
            written: 0,
            leaves: Vec::new(),
            stored: 0,
            conflicts: 0,
        }))
    }

    #[tracing::instrument(skip_all, fields(events = events.len(), method = ?self.method))]
    async fn store(&self, events: &[AuditEvent]) -> Result<StoreReport, StoreError> {
        self.store_entries(events).await
    }

    #[tracing::instrument(skip_all, fields(events = events.len(), method = ?self.method))]
    async fn store_hashed(&self, events: &[HashedEvent]) -> Result<StoreReport, StoreError> {
        self.store_entries(events).await
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
