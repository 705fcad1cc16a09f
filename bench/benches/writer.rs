//! Writer throughput into the partitioned table with every index, in events/s.
//!
//! `cargo bench -p sentinel-bench --bench writer` (BENCH_EVENTS, BENCH_BATCH, BENCH_REPS).
//! Each method writes the same events into a fresh database, in the same run:
//! - `copy+staging`: PgEventStore's binary COPY into a staging table, then one
//!   INSERT … SELECT with the idempotency check;
//! - `unnest`: PgEventStore's one-statement UNNEST with the same idempotency check (the
//!   chosen method: the store alone);
//! - `writer::process`: the whole writer handler on Kinesis payloads (base64, decode with the
//!   canonical re-check, then the store with UNNEST, the same store as the `unnest` row). Each
//!   invocation is parsed into a `Value` just before its call, as the Lambda runtime does;
//!   that parse is the runtime's and is not in the time;
//! - `multi-row INSERT`: the naive approach, `INSERT … VALUES (…),(…) ON CONFLICT DO NOTHING`;
//! - `raw COPY (ceiling)`: binary COPY straight into audit_events, no dedup at all.
//!
//! The verifiable log (issue 11): the store appends every event it stores to its tenant's log
//! in the same transaction, so `unnest` and `writer::process` include it. Beside them:
//! - `unnest, log off`: the same store with `PgEventStore::with_log(false)` (no leaf hashed,
//!   nothing appended), which exists for this comparison only;
//! - two writers on **different tenants** (the 20 tenants split between them, each writer's
//!   events in stream order), log on and off;
//! - two writers on **the same tenant** (every event given one tenant, the halves of the
//!   stream to each writer): their transactions serialize on that tenant's `tenant_logs` row
//!   from the lock to the commit; log on and off. (With 20 tenants in every batch of 1,000,
//!   `unnest, 2 writers` below is the same case for all 20.)
//!
//! - `writer::process, log off`: the whole handler on the log-off store (its decoding still
//!   hashes each record, which it cannot know the store will not use: SHA-256 only, in the
//!   CPU table);
//! - `unnest, given hashed events`: the store given the events with their leaf hashes
//!   (`EventStore::store_hashed`, hashed before the clock starts), as the handler gives them;
//!   `unnest` is given `AuditEvent`s and hashes each stored one itself (a re-encode).
//!
//! The log's ratios (log on ÷ log off) are printed at the medians and run by run; runs
//! alternate between methods, in reverse order every other run, so that each log-on run has
//! its log-off run next to it.
//!
//! The table gives each method against the raw-COPY ceiling and, for one writer, against the
//! store alone (`unnest`). Then, with no database, it times the handler's own CPU on the same
//! payloads: `writer::process` with a store that keeps nothing, `AuditEvent::decode` alone,
//! base64 alone, and the Lambda runtime's parse of the invocation JSON (outside `process`).
//! `BENCH_CPU_ONLY=1` runs only that part (for a profiler, e.g. valgrind --tool=callgrind);
//! `BENCH_NO_CPU=1` leaves it out.
//!
//! Each run also reports what the database did per event, which the machine's load moves
//! much less than wall time: its CPU (the run's client backends, from `/proc/<pid>/schedstat`,
//! when PostgreSQL runs on this machine and its processes can be read) and the WAL written
//! (the cluster's: exact on a cluster of its own such as bench/pinned-postgres.sh's).
//! `BENCH_METHODS=unnest,handler` runs only those methods (keys: raw, copy, unnest, handler,
//! multi, raw2, copy2, unnest2, nolog, unnest2t, nolog2t, unnest2s, nolog2s, handlernolog,
//! unnesth); the ratios need
//! raw, raw2 and unnest among them. The log's comparison alone:
//! `BENCH_METHODS=raw,unnest,nolog,raw2,unnest2t,nolog2t,unnest2s,nolog2s`.
//!
//! Each run of each method gets a database of its own (`sentinel_test_<uuid>`, created and
//! migrated by `TestDatabase` on the server of `DATABASE_URL`), dropped when the run ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use chrono::SubsecRound;
use futures_util::pin_mut;
use postgres_types::ToSql;
use sentinel_domain::event::{AuditEvent, HashedEvent};
use sentinel_domain::store::{
    EventStore, RejectedRecord, StoreError, StoreReport, StoreTransaction,
};
use sentinel_postgres::pool;
use sentinel_postgres::writer::{PgEventStore, RowValues, WriteMethod, COLUMNS, COPY_TYPES};
use sentinel_testing::TestDatabase;
use serde_json::{json, Value};
use tokio_postgres::binary_copy::BinaryCopyInWriter;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug)]
enum Method {
    CopyStaging,
    Unnest,
    Handler,
    MultiInsert,
    RawCopy,
    CopyStagingTwo,
    UnnestTwo,
    RawCopyTwo,
    UnnestNoLog,
    UnnestTenants,
    NoLogTenants,
    UnnestSameTenant,
    NoLogSameTenant,
    HandlerNoLog,
    UnnestHashed,
}

impl Method {
    /// Its name in `BENCH_METHODS`.
    fn key(self) -> &'static str {
        match self {
            Method::CopyStaging => "copy",
            Method::Unnest => "unnest",
            Method::Handler => "handler",
            Method::MultiInsert => "multi",
            Method::RawCopy => "raw",
            Method::CopyStagingTwo => "copy2",
            Method::UnnestTwo => "unnest2",
            Method::RawCopyTwo => "raw2",
            Method::UnnestNoLog => "nolog",
            Method::UnnestTenants => "unnest2t",
            Method::NoLogTenants => "nolog2t",
            Method::UnnestSameTenant => "unnest2s",
            Method::NoLogSameTenant => "nolog2s",
            Method::HandlerNoLog => "handlernolog",
            Method::UnnestHashed => "unnesth",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Method::CopyStaging => "copy+staging",
            Method::Unnest => "unnest (chosen; log on)",
            Method::Handler => "writer::process (whole handler)",
            Method::MultiInsert => "multi-row INSERT (naive)",
            Method::RawCopy => "raw COPY (ceiling)",
            Method::CopyStagingTwo => "copy+staging, 2 writers (2 shards)",
            Method::UnnestTwo => "unnest, 2 writers (2 shards; log on)",
            Method::RawCopyTwo => "raw COPY, 2 writers (ceiling)",
            Method::UnnestNoLog => "unnest, log off",
            Method::UnnestTenants => "unnest, 2 writers, other tenants, log on",
            Method::NoLogTenants => "unnest, 2 writers, other tenants, log off",
            Method::UnnestSameTenant => "unnest, 2 writers, same tenant, log on",
            Method::NoLogSameTenant => "unnest, 2 writers, same tenant, log off",
            Method::HandlerNoLog => "writer::process, log off",
            Method::UnnestHashed => "unnest, given hashed events (log on)",
        }
    }

    /// Two writers at once.
    fn two(self) -> bool {
        matches!(
            self,
            Method::RawCopyTwo
                | Method::CopyStagingTwo
                | Method::UnnestTwo
                | Method::UnnestTenants
                | Method::NoLogTenants
                | Method::UnnestSameTenant
                | Method::NoLogSameTenant
        )
    }

    /// Whether the store appends to the verifiable log (raw COPY and multi-row INSERT write
    /// the table only).
    fn log(self) -> bool {
        !matches!(
            self,
            Method::UnnestNoLog
                | Method::HandlerNoLog
                | Method::NoLogTenants
                | Method::NoLogSameTenant
                | Method::RawCopy
                | Method::RawCopyTwo
                | Method::MultiInsert
        )
    }
}

/// The log-on methods and their log-off twins, for the ratios.
const LOG_PAIRS: [(Method, Method); 4] = [
    (Method::Handler, Method::HandlerNoLog),
    (Method::Unnest, Method::UnnestNoLog),
    (Method::UnnestTenants, Method::NoLogTenants),
    (Method::UnnestSameTenant, Method::NoLogSameTenant),
];

/// The events split between two writers by tenant, each tenant to one writer (the busier
/// tenants first, each to the writer with fewer events so far), each part in stream order.
fn split_by_tenant(events: &[AuditEvent]) -> (Vec<AuditEvent>, Vec<AuditEvent>) {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in events {
        *counts.entry(e.tenant_id.as_str()).or_default() += 1;
    }
    let mut tenants: Vec<(&str, usize)> = counts.into_iter().collect();
    tenants.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let (mut first, mut sizes) = (std::collections::HashSet::new(), [0, 0]);
    for (tenant, count) in tenants {
        let to = usize::from(sizes[1] < sizes[0]);
        if to == 0 {
            first.insert(tenant);
        }
        sizes[to] += count;
    }
    events
        .iter()
        .cloned()
        .partition(|e| first.contains(e.tenant_id.as_str()))
}

/// The same events, all of one tenant.
fn one_tenant(events: &[AuditEvent]) -> Vec<AuditEvent> {
    let tenant: sentinel_domain::fields::TenantId = "tenant-0".parse().unwrap();
    events
        .iter()
        .cloned()
        .map(|mut e| {
            e.tenant_id = tenant.clone();
            e
        })
        .collect()
}

/// What the methods write: the events, and the two-writer arrangements of the log's arms.
struct Workload {
    events: Vec<AuditEvent>,
    /// `events` with their leaf hashes, as the writer's decoding gives them to the store.
    hashed: Vec<HashedEvent>,
    /// [`split_by_tenant`] of `events`.
    by_tenant: (Vec<AuditEvent>, Vec<AuditEvent>),
    /// [`one_tenant`] of `events`.
    one_tenant: Vec<AuditEvent>,
}

fn kinesis_payload(events: &[AuditEvent], first: usize) -> Value {
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let seq = format!("{:056}", first + i);
            json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": e.partition_key(), "sequenceNumber": seq,
                            "data": base64::engine::general_purpose::STANDARD.encode(e.encode()),
                            "approximateArrivalTimestamp": 1769904005.123},
                "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::000000000000:role/w",
                "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/bench"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// A store that keeps nothing: `writer::process` on it is the handler's own CPU.
struct NullStore;

#[async_trait]
impl EventStore for NullStore {
    async fn store(&self, events: &[AuditEvent]) -> Result<StoreReport, StoreError> {
        Ok(StoreReport {
            inserted: events.len() as u64,
            duplicates: 0,
            conflicts: 0,
        })
    }

    async fn store_hashed(&self, events: &[HashedEvent]) -> Result<StoreReport, StoreError> {
        Ok(StoreReport {
            inserted: events.len() as u64,
            duplicates: 0,
            conflicts: 0,
        })
    }

    async fn quarantine(&self, records: &[RejectedRecord]) -> Result<u64, StoreError> {
        Ok(records.len() as u64)
    }

    async fn begin(&self) -> Result<Box<dyn StoreTransaction + '_>, StoreError> {
        Ok(Box::new(NullTransaction(0)))
    }
}

/// Counts what it is given and keeps nothing (no copies, unlike the default transaction).
struct NullTransaction(u64);

#[async_trait]
impl StoreTransaction for NullTransaction {
    async fn write(&mut self, events: &[HashedEvent]) -> Result<(), StoreError> {
        self.0 += events.len() as u64;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<StoreReport, StoreError> {
        Ok(StoreReport {
            inserted: self.0,
            duplicates: 0,
            conflicts: 0,
        })
    }
}

/// The chosen store, timing its calls: splits the handler's time into the store's and its own.
struct TimedStore<'a> {
    inner: &'a PgEventStore,
    spent: std::sync::Mutex<Duration>,
}

#[async_trait]
impl EventStore for TimedStore<'_> {
    async fn store(&self, events: &[AuditEvent]) -> Result<StoreReport, StoreError> {
        let started = Instant::now();
        let report = self.inner.store(events).await;
        *self.spent.lock().unwrap() += started.elapsed();
        report
    }

    async fn store_hashed(&self, events: &[HashedEvent]) -> Result<StoreReport, StoreError> {
        let started = Instant::now();
        let report = self.inner.store_hashed(events).await;
        *self.spent.lock().unwrap() += started.elapsed();
        report
    }

    async fn quarantine(&self, records: &[RejectedRecord]) -> Result<u64, StoreError> {
        self.inner.quarantine(records).await
    }

    async fn begin(&self) -> Result<Box<dyn StoreTransaction + '_>, StoreError> {
        let started = Instant::now();
        let inner = self.inner.begin().await;
        *self.spent.lock().unwrap() += started.elapsed();
        Ok(Box::new(TimedTransaction {
            inner: inner?,
            spent: &self.spent,
        }))
    }
}

/// The chosen store's transaction, timing its writes and commit.
struct TimedTransaction<'a> {
    inner: Box<dyn StoreTransaction + 'a>,
    spent: &'a std::sync::Mutex<Duration>,
}

#[async_trait]
impl StoreTransaction for TimedTransaction<'_> {
    async fn write(&mut self, events: &[HashedEvent]) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.write(events).await;
        *self.spent.lock().unwrap() += started.elapsed();
        result
    }

    async fn commit(self: Box<Self>) -> Result<StoreReport, StoreError> {
        let started = Instant::now();
        let spent = self.spent;
        let result = self.inner.commit().await;
        *spent.lock().unwrap() += started.elapsed();
        result
    }
}

/// This thread's time on a CPU (Linux: `/proc/thread-self/schedstat`, in ns), so that time
/// spent waiting for a core on a shared machine is not counted.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos)).filter(|d| !d.is_zero())
}

/// The whole process's CPU time, every thread's (`CLOCK_PROCESS_CPUTIME_ID`): a large batch
/// is decoded partly on a blocking-pool thread.
fn process_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Times `work` in this thread's CPU time, or in wall time where that cannot be read.
fn timed(work: impl FnOnce()) -> Duration {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    work();
    match (cpu, thread_cpu()) {
        (Some(start), Some(end)) => end - start,
        _ => wall.elapsed(),
    }
}

/// The handler's CPU per event, in µs, with no database: the least of `reps` passes over all
/// the events (the least disturbed by the other work on the machine). `process` is timed in
/// the whole process's CPU time, because it decodes part of a large batch on another thread
/// (the rest of the process is idle meanwhile); the other rows in this thread's.
async fn handler_cpu(events: &[AuditEvent], batch: usize, reps: usize) -> [(&'static str, f64); 7] {
    let invocations: Vec<Vec<u8>> = events
        .chunks(batch)
        .enumerate()
        .map(|(i, c)| serde_json::to_vec(&kinesis_payload(c, i * batch)).unwrap())
        .collect();
    let records: Vec<Vec<u8>> = events.iter().map(AuditEvent::encode).collect();
    let data: Vec<String> = records
        .iter()
        .map(|r| base64::engine::general_purpose::STANDARD.encode(r))
        .collect();
    let per_event = |took: Duration| took.as_secs_f64() * 1e6 / events.len() as f64;
    let mut best = [f64::MAX; 7];
    for _ in 0..reps {
        // As in the throughput run: each invocation is parsed just before its call, untimed.
        let (mut took, mut wall) = (Duration::ZERO, Duration::ZERO);
        for bytes in &invocations {
            let payload: Value = serde_json::from_slice(bytes).unwrap();
            let (started, cpu) = (Instant::now(), process_cpu());
            let (response, summary) = writer::process(&NullStore, payload).await.unwrap();
            took += process_cpu() - cpu;
            wall += started.elapsed();
            assert!(response.batch_item_failures.is_empty() && summary.quarantined == 0);
        }
        best[0] = best[0].min(per_event(took));
        best[4] = best[4].min(per_event(wall));

        let took = timed(|| {
            for record in &records {
                std::hint::black_box(AuditEvent::decode(record).unwrap());
            }
        });
        best[1] = best[1].min(per_event(took));

        let took = timed(|| {
            for text in &data {
                std::hint::black_box(
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .unwrap(),
                );
            }
        });
        best[2] = best[2].min(per_event(took));

        // The parse alone: `process` drops the payload, and that is in its row.
        let mut took = Duration::ZERO;
        for bytes in &invocations {
            let mut payload = None;
            took += timed(|| payload = Some(serde_json::from_slice::<Value>(bytes).unwrap()));
            drop(std::hint::black_box(payload));
        }
        best[3] = best[3].min(per_event(took));

        // The log's CPU in the store, for each event stored (not in `process` above, whose
        // store keeps nothing).
        let took = timed(|| {
            for event in events {
                std::hint::black_box(event.leaf_hash());
            }
        });
        best[5] = best[5].min(per_event(took));

        // What the writer's decoding adds for the log now: SHA-256 of the record it holds.
        let took = timed(|| {
            for record in &records {
                std::hint::black_box(sentinel_domain::merkle::Hash::leaf(record));
            }
        });
        best[6] = best[6].min(per_event(took));
    }
    [
        (
            "writer::process, store that keeps nothing (the handler's own CPU)",
            best[0],
        ),
        (
            "  of which AuditEvent::decode (one parse + canonical re-encode + compare)",
            best[1],
        ),
        ("  of which base64", best[2]),
        (
            "Lambda runtime: invocation JSON into Value (before process, not in the rows above)",
            best[3],
        ),
        (
            "writer::process, store that keeps nothing, in wall time (both parts' decoding overlap)",
            best[4],
        ),
        (
            "AuditEvent::leaf_hash (re-encode + SHA-256: the log's CPU per event when the store is given AuditEvents)",
            best[5],
        ),
        (
            "Hash::leaf of the record (SHA-256 only: the log's CPU per event in writer::process, in its decoding)",
            best[6],
        ),
    ]
}

async fn multi_insert(client: &tokio_postgres::Client, events: &[AuditEvent]) {
    let mut sql = format!("INSERT INTO audit_events ({}) VALUES ", *COLUMNS);
    let rows: Vec<RowValues> = events.iter().map(RowValues::new).collect();
    for i in 0..events.len() {
        if i > 0 {
            sql.push(',');
        }
        let b = i * 11;
        sql.push_str(&format!(
            "(${},${},${},${},${},${},${},${},${},${},${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 9,
            b + 10,
            b + 11
        ));
    }
    sql.push_str(" ON CONFLICT (tenant_id, id, occurred_at) DO NOTHING");
    let refs: Vec<&(dyn ToSql + Sync)> = rows.iter().flat_map(|r| r.refs()).collect();
    client.execute(&sql, &refs).await.unwrap();
}

async fn raw_copy(client: &tokio_postgres::Client, events: &[AuditEvent]) {
    let sink = client
        .copy_in(&format!(
            "COPY audit_events ({}) FROM STDIN (FORMAT binary)",
            *COLUMNS
        ))
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    for e in events {
        writer
            .as_mut()
            .write(&RowValues::new(e).refs())
            .await
            .unwrap();
    }
    writer.finish().await.unwrap();
}

/// Two stores, one each, writing their events in batches at the same time; answers the
/// stores, so that their connections' backends are still there to be read.
async fn two_writers(
    url: &str,
    method: WriteMethod,
    log: bool,
    (left, right): (&[AuditEvent], &[AuditEvent]),
    batch: usize,
) -> [PgEventStore; 2] {
    let first = PgEventStore::with_method(pool(url, 1).unwrap(), method).with_log(log);
    let second = PgEventStore::with_method(pool(url, 1).unwrap(), method).with_log(log);
    let a = async {
        for chunk in left.chunks(batch) {
            first.store(chunk).await.unwrap();
        }
    };
    let b = async {
        for chunk in right.chunks(batch) {
            second.store(chunk).await.unwrap();
        }
    };
    tokio::join!(a, b);
    [first, second]
}

/// What one run of one method measured.
struct Sample {
    /// events/s
    rate: f64,
    /// The database's CPU (its client backends on the run's database, in
    /// `/proc/<pid>/schedstat`) per event, in µs; `None` where PostgreSQL's processes cannot
    /// be read (another machine).
    pg_cpu: Option<f64>,
    /// WAL written per event, in bytes (the whole cluster's: exact on a cluster of its own,
    /// such as bench/pinned-postgres.sh's; with others' work in it on a shared one).
    wal: f64,
}

/// The CPU time so far of each client backend on the client's database, in ns, by pid.
async fn backends_cpu(client: &tokio_postgres::Client) -> Option<HashMap<i32, u64>> {
    let pids: Vec<i32> = client
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    pids.into_iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
            Some((pid, stat.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

async fn wal_lsn(client: &tokio_postgres::Client) -> String {
    client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0)
}

async fn measure(method: Method, work: &Workload, batch: usize) -> Sample {
    let events = &work.events[..];
    // A database of its own (`sentinel_test_<uuid>`), dropped with `db` when this run ends.
    let db = TestDatabase::create().await;
    let client = db.client().await;
    // Same starting state for every method: the months exist, the table is empty.
    let mut months: Vec<_> = events
        .iter()
        .map(|e| e.occurred_at.format("%Y-%m-01T00:00:00Z").to_string())
        .collect();
    months.sort();
    months.dedup();
    for month in &months {
        let at: chrono::DateTime<chrono::Utc> = month.parse().unwrap();
        client
            .execute("SELECT sentinel_ensure_month_partition($1)", &[&at])
            .await
            .unwrap();
    }
    let copy = PgEventStore::with_method(pool(&db.url, 1).unwrap(), WriteMethod::CopyStaging);
    let unnest = PgEventStore::with_method(pool(&db.url, 1).unwrap(), WriteMethod::Unnest);
    let no_log =
        PgEventStore::with_method(pool(&db.url, 1).unwrap(), WriteMethod::Unnest).with_log(false);
    // The handler gets what the Lambda runtime hands it: the invocation parsed into a `Value`
    // just before the call. Parsing is the runtime's work and is left out of the time (it is
    // in the CPU table below); building every payload up front instead would keep 200 of
    // them (about 0.5 GB) alive, which no invocation ever does.
    let invocations: Vec<Vec<u8>> = match method {
        Method::Handler | Method::HandlerNoLog => events
            .chunks(batch)
            .enumerate()
            .map(|(i, c)| serde_json::to_vec(&kinesis_payload(c, i * batch)).unwrap())
            .collect(),
        _ => Vec::new(),
    };
    // Kept until the database's CPU has been read, so that their backends are still there.
    let mut stores: Vec<PgEventStore> = Vec::new();
    let mut clients: Vec<tokio_postgres::Client> = Vec::new();
    let (cpu_before, wal_before) = (backends_cpu(&client).await, wal_lsn(&client).await);
    let started = Instant::now();
    let mut untimed = Duration::ZERO;
    match method {
        Method::CopyStaging => {
            for chunk in events.chunks(batch) {
                copy.store(chunk).await.unwrap();
            }
        }
        Method::Unnest => {
            for chunk in events.chunks(batch) {
                unnest.store(chunk).await.unwrap();
            }
        }
        Method::UnnestNoLog => {
            for chunk in events.chunks(batch) {
                no_log.store(chunk).await.unwrap();
            }
        }
        Method::UnnestTenants | Method::NoLogTenants => {
            let (left, right) = &work.by_tenant;
            stores.extend(
                two_writers(
                    &db.url,
                    WriteMethod::Unnest,
                    method.log(),
                    (&left[..], &right[..]),
                    batch,
                )
                .await,
            );
        }
        Method::UnnestSameTenant | Method::NoLogSameTenant => {
            let halves = work.one_tenant.split_at(events.len() / 2);
            stores.extend(
                two_writers(&db.url, WriteMethod::Unnest, method.log(), halves, batch).await,
            );
        }
        Method::UnnestHashed => {
            for chunk in work.hashed.chunks(batch) {
                unnest.store_hashed(chunk).await.unwrap();
            }
        }
        Method::Handler | Method::HandlerNoLog => {
            let timed = TimedStore {
                inner: if method.log() { &unnest } else { &no_log },
                spent: Default::default(),
            };
            for bytes in &invocations {
                let parsing = Instant::now();
                let payload: Value = serde_json::from_slice(bytes).unwrap();
                untimed += parsing.elapsed();
                let (response, _) = writer::process(&timed, payload).await.unwrap();
                assert!(response.batch_item_failures.is_empty());
            }
            let in_store = *timed.spent.lock().unwrap();
            let total = started.elapsed() - untimed;
            let per_event = |d: Duration| d.as_secs_f64() * 1e6 / events.len() as f64;
            println!(
                "         writer::process: {:.1} µs/event in the store, {:.1} µs/event outside it (not hidden behind the store)",
                per_event(in_store),
                per_event(total - in_store)
            );
        }
        Method::MultiInsert => {
            for chunk in events.chunks(batch) {
                multi_insert(&client, chunk).await
            }
        }
        Method::RawCopy => {
            for chunk in events.chunks(batch) {
                raw_copy(&client, chunk).await
            }
        }
        Method::CopyStagingTwo | Method::UnnestTwo => {
            let method = if matches!(method, Method::UnnestTwo) {
                WriteMethod::Unnest
            } else {
                WriteMethod::CopyStaging
            };
            stores.extend(
                two_writers(
                    &db.url,
                    method,
                    true,
                    events.split_at(events.len() / 2),
                    batch,
                )
                .await,
            );
        }
        Method::RawCopyTwo => {
            let (left, right) = events.split_at(events.len() / 2);
            let other = db.client().await;
            let a = async {
                for chunk in left.chunks(batch) {
                    raw_copy(&client, chunk).await
                }
            };
            let b = async {
                for chunk in right.chunks(batch) {
                    raw_copy(&other, chunk).await
                }
            };
            tokio::join!(a, b);
            clients.push(other);
        }
    }
    let elapsed = started.elapsed() - untimed;
    let cpu_after = backends_cpu(&client).await;
    let wal: f64 = client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8",
            &[&wal_before],
        )
        .await
        .unwrap()
        .get(0);
    // The arm's own queries (the two above) are a few µs against its seconds.
    let pg_cpu = cpu_before.zip(cpu_after).map(|(before, after)| {
        let ns: u64 = after
            .iter()
            .map(|(pid, ns)| ns - before.get(pid).copied().unwrap_or(0))
            .sum();
        ns as f64 / 1e3 / events.len() as f64
    });
    drop((stores, clients, copy, unnest, no_log));

    let stored: i64 = client
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored as usize,
        events.len(),
        "{method:?} lost or duplicated events"
    );
    // Every stored event has its place in its tenant's log, or none has.
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM log_entries), \
                    (SELECT coalesce(sum(size), 0)::int8 FROM tenant_logs)",
            &[],
        )
        .await
        .unwrap();
    let logged = if method.log() { events.len() as i64 } else { 0 };
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (logged, logged),
        "{method:?}: log entries and log sizes"
    );
    Sample {
        rate: events.len() as f64 / elapsed.as_secs_f64(),
        pg_cpu,
        wal: wal / events.len() as f64,
    }
}

/// The rates of `method`, if it ran.
fn rates_of_method(results: &[(Method, Vec<f64>)], method: Method) -> Option<Vec<f64>> {
    results
        .iter()
        .find(|(m, _)| m.key() == method.key())
        .map(|(_, rates)| rates.clone())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we use.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env("BENCH_EVENTS", 200_000);
    let batch = env("BENCH_BATCH", 1_000);
    let reps = env("BENCH_REPS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Whole microseconds: ingest refuses finer times, and `events` derives every time from this.
        let events = sentinel_bench::events(n, 7, chrono::Utc::now().trunc_subsecs(6), 2);
        let avg = events.iter().map(|e| e.encode().len()).sum::<usize>() / events.len();
        println!("writer throughput: {n} events (avg {avg} B encoded, 3 changed fields + metadata), batches of {batch}, {reps} runs each, fresh database per run, all indexes");
        // Each log-off method next to its log-on twin, and the handler next to the store alone,
        // in either direction.
        let methods = [
            Method::RawCopy, Method::CopyStaging, Method::UnnestNoLog, Method::Unnest, Method::Handler,
            Method::HandlerNoLog, Method::UnnestHashed,
            Method::MultiInsert, Method::RawCopyTwo, Method::CopyStagingTwo, Method::UnnestTwo,
            Method::UnnestTenants, Method::NoLogTenants, Method::UnnestSameTenant, Method::NoLogSameTenant,
        ];
        if std::env::var_os("BENCH_CPU_ONLY").is_some() {
            for (what, micros) in handler_cpu(&events, batch, reps.max(1)).await {
                println!("{what}: {micros:.2} µs/event");
            }
            return;
        }
        let chosen = std::env::var("BENCH_METHODS").ok();
        let mut results: Vec<(Method, Vec<f64>)> = methods
            .iter()
            .filter(|m| chosen.as_deref().is_none_or(|keys| keys.split(',').any(|k| k.trim() == m.key())))
            .map(|m| (*m, Vec::new()))
            .collect();
        assert!(!results.is_empty(), "BENCH_METHODS names no method");
        let by_tenant = split_by_tenant(&events);
        println!("two writers on other tenants: {} and {} events", by_tenant.0.len(), by_tenant.1.len());
        let hashed = events.iter().cloned().map(HashedEvent::new).collect();
        let work = Workload { one_tenant: one_tenant(&events), by_tenant, hashed, events };
        let events = &work.events;
        // The database's CPU (µs/event, where it can be read) and WAL (B/event) of each run.
        let mut server: Vec<Vec<(Option<f64>, f64)>> = vec![Vec::new(); results.len()];
        for rep in 0..reps {
            // Every other run in reverse order, so that no method always runs first of a pair.
            let count = results.len();
            let order: Vec<usize> = if rep % 2 == 0 { (0..count).collect() } else { (0..count).rev().collect() };
            for i in order {
                let (method, rates) = &mut results[i];
                let sample = measure(*method, &work, batch).await;
                let cpu = sample.pg_cpu.map(|c| format!("{c:.1} µs/event PostgreSQL CPU, ")).unwrap_or_default();
                println!("  run {}: {:<44} {:>9.0} events/s ({cpu}{:.0} B/event WAL)", rep + 1, method.label(), sample.rate, sample.wal);
                rates.push(sample.rate);
                server[i].push((sample.pg_cpu, sample.wal));
            }
        }
        let rates_of = |wanted: fn(&Method) -> bool| {
            results.iter().find(|(m, _)| wanted(m)).map(|(_, rates)| rates.clone())
        };
        let median_of = |wanted: fn(&Method) -> bool| rates_of(wanted).map(median);
        let ceiling = median_of(|m| matches!(m, Method::RawCopy));
        let ceiling_two = median_of(|m| matches!(m, Method::RawCopyTwo));
        let store_alone = median_of(|m| matches!(m, Method::Unnest));
        let ratio = |rate: f64, base: Option<f64>| base.map(|b| format!("{:.2}", rate / b)).unwrap_or_default();
        println!("\n| method | median events/s | min | max | × raw COPY (same concurrency) | × store alone (UNNEST) |\n| --- | ---: | ---: | ---: | ---: | ---: |");
        for (method, rates) in &results {
            let min = rates.iter().cloned().fold(f64::MAX, f64::min);
            let max = rates.iter().cloned().fold(0.0, f64::max);
            let med = median(rates.clone());
            let two = method.two();
            let base = if two { ceiling_two } else { ceiling };
            let vs_store = if two { String::new() } else { ratio(med, store_alone) };
            println!("| {} | {:.0} | {:.0} | {:.0} | {} | {} |", method.label(), med, min, max, ratio(med, base), vs_store);
        }
        // Runs alternate between methods, so each handler run has a store-alone run next to it.
        if let (Some(handler), Some(store), Some(store_alone)) = (
            rates_of(|m| matches!(m, Method::Handler)),
            rates_of(|m| matches!(m, Method::Unnest)),
            store_alone,
        ) {
            let paired: Vec<String> = handler
                .iter()
                .zip(&store)
                .map(|(handler, store)| format!("{:.2}", handler / store))
                .collect();
            println!(
                "\nwriter::process / store alone: {:.2} at the medians; run by run: {}",
                median(handler.clone()) / store_alone,
                paired.join(", ")
            );
            if let Some(hashed) = rates_of(|m| matches!(m, Method::UnnestHashed)) {
                let paired: Vec<String> =
                    handler.iter().zip(&hashed).map(|(h, s)| format!("{:.2}", h / s)).collect();
                println!(
                    "writer::process / store alone given hashed events: {:.2} at the medians; run by run: {}",
                    median(handler) / median(hashed),
                    paired.join(", ")
                );
            }
        }

        // The log: log on ÷ log off, each pair of runs side by side.
        for (on, off) in LOG_PAIRS {
            let (Some(with), Some(without)) = (rates_of_method(&results, on), rates_of_method(&results, off)) else {
                continue;
            };
            let paired: Vec<String> = with.iter().zip(&without).map(|(a, b)| format!("{:.2}", a / b)).collect();
            println!(
                "\n{} ÷ {}: {:.2} at the medians (target ≥ 0.85); run by run: {}",
                on.label(),
                off.label(),
                median(with.clone()) / median(without.clone()),
                paired.join(", ")
            );
        }

        // What the database did per event, whatever the machine's load: its CPU and its WAL.
        println!("\n| method | PostgreSQL CPU, µs/event (median) | WAL, B/event (median) |\n| --- | ---: | ---: |");
        for ((method, _), samples) in results.iter().zip(&server) {
            let cpu: Vec<f64> = samples.iter().filter_map(|s| s.0).collect();
            let cpu = if cpu.is_empty() { "n/a".to_string() } else { format!("{:.1}", median(cpu)) };
            println!("| {} | {cpu} | {:.0} |", method.label(), median(samples.iter().map(|s| s.1).collect()));
        }
        for (on, off) in LOG_PAIRS {
            let of = |m: Method| results.iter().position(|(r, _)| r.key() == m.key()).map(|i| &server[i]);
            let (Some(with), Some(without)) = (of(on), of(off)) else { continue };
            let cpu = |s: &[(Option<f64>, f64)]| median(s.iter().filter_map(|s| s.0).collect());
            let wal = |s: &[(Option<f64>, f64)]| median(s.iter().map(|s| s.1).collect());
            if with.iter().chain(without).all(|s| s.0.is_some()) {
                println!("\n{}: PostgreSQL CPU ×{:.2} and WAL ×{:.2} of the log off's (medians)", on.label(), cpu(with) / cpu(without), wal(with) / wal(without));
            } else {
                println!("\n{}: WAL ×{:.2} of the log off's (medians)", on.label(), wal(with) / wal(without));
            }
        }

        if std::env::var_os("BENCH_NO_CPU").is_some() {
            return;
        }
        let cpu = handler_cpu(events, batch, reps.max(3)).await;
        println!("\nhandler CPU, no database, same events (CPU time: the process's for writer::process, this thread's for the rest; least of {} passes):\n\n| what | µs per event |\n| --- | ---: |", reps.max(3));
        for (what, micros) in cpu {
            println!("| {what} | {micros:.2} |");
        }
        // If none of the handler's CPU overlapped the store's time (the serial bound):
        if let Some(store_alone) = store_alone {
            let predicted = 1.0 / (1.0 + cpu[0].1 * 1e-6 * store_alone);
            println!("\nstore alone {:.1} µs/event + handler CPU {:.2} µs/event would give writer::process / store alone = {predicted:.2} with no overlap", 1e6 / store_alone, cpu[0].1);
        }
    });
}
