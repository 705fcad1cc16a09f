//! In-memory fakes of the archiver's ports, for unit tests of its state machine.
//!
//! A [`World`] holds what PostgreSQL and S3 would: the month tables with their rows, each
//! month's progress and lock, the objects and the unfinished multipart uploads. The fake
//! ledger and bucket keep the rules the real ones keep (the guarded transitions, detach's
//! recount, the writer's partition function finishing a detached month's drop, S3's
//! invisible-until-complete uploads).
//!
//! Every call that changes something is a numbered step. [`World::crash_at`] picks one: that
//! step takes effect, then the archiver "dies": the call fails and so does every later call
//! to either adapter, aborts do nothing, and only the month locks go (as PostgreSQL releases
//! a dead session's advisory locks). [`World::recover`] starts the next process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow_array::{
    ArrayRef, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::export::MonthRows;
use crate::parquet_file;
use sentinel_aws::s3::MIN_PART_BYTES;
use sentinel_domain::archive::{
    AdapterError, ArchiveBucket, ArchiveLedger, ChainedNote, HeldMonth, MonthFacts,
    MultipartUpload, Partition, Progress, ReadBack, State,
};
use sentinel_domain::manifest::{CoveringCheckpoint, Manifest};
use sentinel_domain::Month;

/// An event as the fake database stores it: what the archive's checks look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRow {
    pub id: String,
    /// µs since the epoch.
    pub occurred_at: i64,
    /// Its index in the tenant's log: given when the fake database stores it.
    pub log_index: u64,
}

/// `n` rows spread over `month`, the first at its first microsecond and the last at its
/// last, with ids `{tag}-{month}-{i:05}`.
pub fn rows_in(month: Month, n: usize, tag: &str) -> Vec<FakeRow> {
    let (start, end) = (
        month.start().timestamp_micros(),
        month.end().timestamp_micros(),
    );
    let span = end - start - 1;
    (0..n)
        .map(|i| FakeRow {
            log_index: 0,
            id: format!("{tag}-{month}-{i:05}"),
            occurred_at: start
                + if n == 1 {
                    0
                } else {
                    span * i as i64 / (n as i64 - 1)
                },
        })
        .collect()
}

/// Which step the archiver dies after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashAt {
    /// The `n`th step (from 1) after [`World::crash_at`].
    Step(usize),
    /// The first step whose label starts with this, e.g. `"mark_verified"` or
    /// `"complete audit_events/year=2024/month=02/part-00001"`.
    After(&'static str),
}

struct Table {
    /// Tells a month's tables apart: one recreated after a drop has a new generation.
    generation: u32,
    attached: bool,
    rows: Vec<FakeRow>,
}

struct OpenUpload {
    key: String,
    chunks: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Inner {
    tables: BTreeMap<Month, Table>,
    generations: u32,
    /// Every table dropped, as (month, generation), in order.
    dropped: Vec<(Month, u32)>,
    progress: BTreeMap<Month, Progress>,
    locks: BTreeSet<Month>,
    objects: BTreeMap<String, Vec<u8>>,
    uploads: BTreeMap<u64, OpenUpload>,
    next_upload: u64,
    steps: Vec<String>,
    /// The manifests' chain of signed notes.
    notes: Vec<ChainedNote>,
    /// The size of the tenant's newest checkpoint; `None`: one covers every row.
    checkpointed: Option<u64>,
    /// The next row's log index.
    next_index: u64,
    armed_at: usize,
    crash: Option<CrashAt>,
    crashed: Option<String>,
    bucket_down: bool,
    /// Rows the writer adds each time a step whose label starts with the key is taken.
    arriving: Vec<(&'static str, Month)>,
    arrived: usize,
}

fn error(message: impl Into<String>) -> AdapterError {
    message.into().into()
}

impl Inner {
    fn alive(&self) -> Result<(), AdapterError> {
        match &self.crashed {
            Some(step) => Err(error(format!("the archiver crashed after {step}"))),
            None => Ok(()),
        }
    }

    fn bucket_alive(&self) -> Result<(), AdapterError> {
        self.alive()?;
        if self.bucket_down {
            return Err(error("NoSuchBucket: the bucket is gone"));
        }
        Ok(())
    }

    /// Records a step that has taken effect; fails if the archiver dies after it.
    fn step(&mut self, label: String) -> Result<(), AdapterError> {
        self.steps.push(label.clone());
        for (prefix, month) in self.arriving.clone() {
            if label.starts_with(prefix) {
                self.arrived += 1;
                let row = FakeRow {
                    id: format!("arriving-{month}-{:05}", self.arrived),
                    occurred_at: month.start().timestamp_micros() + self.arrived as i64,
                    log_index: 0,
                };
                self.write(&[row]);
            }
        }
        let n = self.steps.len() - self.armed_at;
        let dies = match self.crash {
            Some(CrashAt::Step(at)) => at == n,
            Some(CrashAt::After(prefix)) => label.starts_with(prefix),
            None => false,
        };
        if dies {
            self.crash = None;
            let step = format!("step {n} ({label})");
            self.crashed = Some(step.clone());
            return Err(error(format!("crashed after {step}")));
        }
        Ok(())
    }

    /// `sentinel_ensure_month_partition`: finishes the drop of a month the archiver left
    /// detached, then creates the partition unless a table of its name exists.
    fn ensure(&mut self, month: Month) -> (bool, Option<String>) {
        let mut changed = None;
        let left_detached = self.tables.get(&month).is_some_and(|t| !t.attached)
            && self.progress.get(&month).map(|p| p.state) == Some(State::Detached);
        if left_detached {
            self.drop_table(month);
            changed = Some(format!("drop_detached {month} (by the partition function)"));
        }
        if self.tables.contains_key(&month) {
            return (false, changed);
        }
        self.generations += 1;
        self.tables.insert(
            month,
            Table {
                generation: self.generations,
                attached: true,
                rows: Vec::new(),
            },
        );
        (true, Some(format!("ensure_partition {month}")))
    }

    fn drop_table(&mut self, month: Month) {
        if let Some(table) = self.tables.remove(&month) {
            self.dropped.push((month, table.generation));
        }
        let progress = self.progress.get_mut(&month).expect("a detached month");
        progress.state = State::Dropped;
        progress.error = None;
    }

    /// The writer: each row goes to its month's partition, made if missing.
    fn write(&mut self, rows: &[FakeRow]) {
        for row in rows {
            let month = Month::of(
                chrono::DateTime::from_timestamp_micros(row.occurred_at).expect("a valid time"),
            );
            self.ensure(month);
            let log_index = self.next_index;
            self.next_index += 1;
            let table = self.tables.get_mut(&month).expect("just ensured");
            assert!(table.attached, "a fake row for a month not attached");
            table.rows.push(FakeRow {
                log_index,
                ..row.clone()
            });
        }
    }

    fn transition(
        &mut self,
        month: Month,
        from: State,
        change: impl FnOnce(&mut Progress),
        label: String,
    ) -> Result<(), AdapterError> {
        self.alive()?;
        let progress = self
            .progress
            .get_mut(&month)
            .filter(|p| p.state == from)
            .ok_or_else(|| {
                error(format!(
                    "{month} was no longer {} (another archiver without the lock?)",
                    from.as_str()
                ))
            })?;
        change(progress);
        self.step(label)
    }
}

/// The fake database and bucket, shared by the adapters and the test.
#[derive(Clone, Default)]
pub struct World(Arc<Mutex<Inner>>);

impl World {
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().expect("world lock")
    }

    /// The tenant's newest checkpoint is of `size` (`None`: it covers every row).
    pub fn set_checkpointed(&self, size: Option<u64>) {
        self.inner().checkpointed = size;
    }

    /// The manifests' chain as the ledger keeps it.
    pub fn notes(&self) -> Vec<ChainedNote> {
        self.inner().notes.clone()
    }

    pub fn ledger(&self) -> FakeLedger {
        FakeLedger(self.clone())
    }

    pub fn bucket(&self) -> FakeBucket {
        FakeBucket(self.clone())
    }

    /// The writer stores `rows`, making each month's partition if it is missing.
    pub fn insert(&self, rows: &[FakeRow]) {
        self.inner().write(rows);
    }

    /// The archiver dies after the step `at` picks.
    pub fn crash_at(&self, at: CrashAt) {
        let mut inner = self.inner();
        inner.armed_at = inner.steps.len();
        inner.crash = Some(at);
    }

    /// A new archiver process: everything answers again.
    pub fn recover(&self) {
        let mut inner = self.inner();
        inner.crash = None;
        inner.crashed = None;
    }

    /// The step the archiver died after, if it did.
    pub fn crashed(&self) -> Option<String> {
        self.inner().crashed.clone()
    }

    pub fn steps(&self) -> Vec<String> {
        self.inner().steps.clone()
    }

    /// Every call to the bucket fails (and nothing else does) while `down`.
    pub fn set_bucket_down(&self, down: bool) {
        self.inner().bucket_down = down;
    }

    /// From now on the writer adds a row to `month` right after every step whose label
    /// starts with `after`.
    pub fn rows_keep_arriving(&self, month: Month, after: &'static str) {
        self.inner().arriving.push((after, month));
    }

    /// Another archiver takes the month's lock.
    pub fn hold_lock(&self, month: Month) {
        assert!(self.inner().locks.insert(month), "already locked");
    }

    pub fn is_locked(&self, month: Month) -> bool {
        self.inner().locks.contains(&month)
    }

    pub fn progress(&self, month: Month) -> Option<Progress> {
        self.inner().progress.get(&month).cloned()
    }

    pub fn state(&self, month: Month) -> Option<State> {
        self.progress(month).map(|p| p.state)
    }

    pub fn partition(&self, month: Month) -> Partition {
        match self.inner().tables.get(&month) {
            None => Partition::Absent,
            Some(t) if t.attached => Partition::Attached,
            Some(_) => Partition::Detached,
        }
    }

    /// The rows the month's table (attached or not) holds, if there is one.
    /// The rows the month's table (attached or not) holds, if there is one, as they were
    /// inserted (without the log index the table gave them).
    pub fn rows(&self, month: Month) -> Option<Vec<FakeRow>> {
        self.inner().tables.get(&month).map(|t| {
            t.rows
                .iter()
                .map(|r| FakeRow {
                    log_index: 0,
                    ..r.clone()
                })
                .collect()
        })
    }

    /// Someone drops the month's table behind the archiver's back.
    pub fn lose_table(&self, month: Month) {
        self.inner().tables.remove(&month);
    }

    /// The generations of the month's tables that were dropped, in order.
    pub fn drops(&self, month: Month) -> Vec<u32> {
        self.inner()
            .dropped
            .iter()
            .filter(|(m, _)| *m == month)
            .map(|(_, g)| *g)
            .collect()
    }

    /// Every object key, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.inner().objects.keys().cloned().collect()
    }

    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.inner().objects.get(key).cloned()
    }

    pub fn put_object(&self, key: &str, bytes: Vec<u8>) {
        self.inner().objects.insert(key.to_string(), bytes);
    }

    pub fn remove_object(&self, key: &str) {
        self.inner().objects.remove(key);
    }

    /// Keys with an unfinished multipart upload.
    pub fn open_uploads(&self) -> Vec<String> {
        self.inner()
            .uploads
            .values()
            .map(|u| u.key.clone())
            .collect()
    }

    pub fn manifest(&self, month: Month) -> Option<Manifest> {
        self.object(&month.manifest_key())
            .map(|bytes| serde_json::from_slice(&bytes).expect("a manifest"))
    }
}

/// The fake [`ArchiveLedger`].
pub struct FakeLedger(World);

#[async_trait]
impl ArchiveLedger for FakeLedger {
    type Held = FakeHeld;

    async fn ensure_partition(&self, month: Month) -> Result<bool, AdapterError> {
        let mut inner = self.0.inner();
        inner.alive()?;
        let (created, changed) = inner.ensure(month);
        if let Some(label) = changed {
            inner.step(label)?;
        }
        Ok(created)
    }

    async fn attached_months(&self) -> Result<Vec<Month>, AdapterError> {
        let inner = self.0.inner();
        inner.alive()?;
        Ok(inner
            .tables
            .iter()
            .filter(|(_, t)| t.attached)
            .map(|(m, _)| *m)
            .collect())
    }

    async fn unfinished_months(&self) -> Result<Vec<Month>, AdapterError> {
        let inner = self.0.inner();
        inner.alive()?;
        Ok(inner
            .progress
            .values()
            .filter(|p| p.state != State::Dropped)
            .map(|p| p.month)
            .collect())
    }

    async fn try_lock(&self, month: Month) -> Result<Option<FakeHeld>, AdapterError> {
        let mut inner = self.0.inner();
        inner.alive()?;
        if !inner.locks.insert(month) {
            return Ok(None);
        }
        Ok(Some(FakeHeld {
            world: self.0.clone(),
            month,
        }))
    }

    async fn latest_checkpoints(
        &self,
        tenants: &[String],
    ) -> Result<Vec<(String, CoveringCheckpoint)>, AdapterError> {
        let inner = self.0.inner();
        inner.alive()?;
        let size = inner.checkpointed.unwrap_or(inner.next_index);
        Ok(tenants
            .iter()
            .filter(|t| t.as_str() == FAKE_TENANT && size > 0)
            .map(|t| {
                (
                    t.clone(),
                    CoveringCheckpoint {
                        tree_size: size,
                        root_hash: sentinel_domain::merkle::Hash::empty().to_base64(),
                        signed_at: chrono::DateTime::UNIX_EPOCH,
                    },
                )
            })
            .collect())
    }

    async fn log_leaves(
        &self,
        tenant: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<sentinel_domain::merkle::Hash>, AdapterError> {
        let inner = self.0.inner();
        inner.alive()?;
        if tenant != FAKE_TENANT || to > inner.next_index {
            return Err(error(format!("tenant {tenant}'s log ends before {to}")));
        }
        // The fake's leaf for index i is 32 bytes of i (as its Parquet's leaf_hash column).
        Ok((from..to)
            .map(|i| sentinel_domain::merkle::Hash::from_slice(&[i as u8; 32]).expect("32 bytes"))
            .collect())
    }

    async fn chain_tip(&self) -> Result<Option<ChainedNote>, AdapterError> {
        let inner = self.0.inner();
        inner.alive()?;
        Ok(inner.notes.last().cloned())
    }

    async fn append_note(&self, note: &ChainedNote) -> Result<bool, AdapterError> {
        let mut inner = self.0.inner();
        inner.alive()?;
        if note.seq != inner.notes.len() as u64 {
            return Ok(false);
        }
        inner.notes.push(note.clone());
        inner.step(format!("append_note {}", note.seq))?;
        Ok(true)
    }

    async fn note_of(&self, month: Month) -> Result<Option<ChainedNote>, AdapterError> {
        let inner = self.0.inner();
        inner.alive()?;
        Ok(inner.notes.iter().rev().find(|n| n.month == month).cloned())
    }
}

/// The one tenant of the fake database's rows.
pub const FAKE_TENANT: &str = "default";

/// The fake [`HeldMonth`], which also streams the month's rows.
pub struct FakeHeld {
    world: World,
    month: Month,
}

#[async_trait]
impl HeldMonth for FakeHeld {
    fn month(&self) -> Month {
        self.month
    }

    async fn progress(&mut self) -> Result<Option<Progress>, AdapterError> {
        let inner = self.world.inner();
        inner.alive()?;
        Ok(inner.progress.get(&self.month).cloned())
    }

    async fn partition(&mut self) -> Result<Partition, AdapterError> {
        self.world.inner().alive()?;
        Ok(self.world.partition(self.month))
    }

    async fn facts(&mut self) -> Result<MonthFacts, AdapterError> {
        let inner = self.world.inner();
        inner.alive()?;
        let rows: &[FakeRow] = match inner.tables.get(&self.month) {
            Some(t) if t.attached => &t.rows,
            _ => &[],
        };
        Ok(MonthFacts {
            rows: rows.len() as u64,
            min_occurred_at: rows.iter().map(|r| r.occurred_at).min(),
            max_occurred_at: rows.iter().map(|r| r.occurred_at).max(),
        })
    }

    async fn begin(&mut self) -> Result<(), AdapterError> {
        let mut inner = self.world.inner();
        inner.alive()?;
        let month = self.month;
        inner.progress.entry(month).or_insert(Progress {
            month,
            state: State::Exporting,
            batch: 1,
            first_part: 0,
            batch_rows: None,
            manifest: None,
            error: None,
        });
        inner.step(format!("begin {month}"))
    }

    async fn begin_late_batch(&mut self, first_part: usize) -> Result<(), AdapterError> {
        let month = self.month;
        self.world.inner().transition(
            month,
            State::Dropped,
            |p| {
                p.state = State::Exporting;
                p.batch += 1;
                p.first_part = first_part;
                p.batch_rows = None;
                p.error = None;
            },
            format!("begin_late_batch {month}"),
        )
    }

    async fn mark_exported(
        &mut self,
        manifest: &Manifest,
        batch_rows: u64,
    ) -> Result<(), AdapterError> {
        let month = self.month;
        self.world.inner().transition(
            month,
            State::Exporting,
            |p| {
                p.state = State::Exported;
                p.manifest = Some(manifest.clone());
                p.batch_rows = Some(batch_rows);
                p.error = None;
            },
            format!("mark_exported {month}"),
        )
    }

    async fn mark_verified(&mut self) -> Result<(), AdapterError> {
        let month = self.month;
        self.world.inner().transition(
            month,
            State::Exported,
            |p| {
                p.state = State::Verified;
                p.error = None;
            },
            format!("mark_verified {month}"),
        )
    }

    async fn mark_for_export(&mut self, from: State, why: &str) -> Result<(), AdapterError> {
        let month = self.month;
        self.world.inner().transition(
            month,
            from,
            |p| {
                p.state = State::Exporting;
                p.error = Some(why.to_string());
            },
            format!("mark_for_export {month}"),
        )
    }

    async fn record_error(&mut self, why: &str) -> Result<(), AdapterError> {
        let mut inner = self.world.inner();
        inner.alive()?;
        let month = self.month;
        if let Some(progress) = inner.progress.get_mut(&month) {
            progress.error = Some(why.to_string());
            inner.step(format!("record_error {month}"))?;
        }
        Ok(())
    }

    async fn detach(&mut self) -> Result<bool, AdapterError> {
        let mut inner = self.world.inner();
        inner.alive()?;
        let month = self.month;
        let progress = inner
            .progress
            .get(&month)
            .filter(|p| p.state == State::Verified)
            .cloned()
            .ok_or_else(|| error(format!("refusing to detach {month}: not verified")))?;
        let table = inner
            .tables
            .get_mut(&month)
            .filter(|t| t.attached)
            .ok_or_else(|| error(format!("refusing to detach {month}: not a partition")))?;
        let present = table.rows.len() as u64;
        let exported = progress.batch_rows.expect("a verified month has its rows");
        let detached = present == exported;
        if detached {
            table.attached = false;
        }
        let progress = inner.progress.get_mut(&month).expect("just read");
        if detached {
            progress.state = State::Detached;
            progress.error = None;
        } else {
            progress.state = State::Exporting;
            progress.error = Some(format!(
                "{present} rows present, {exported} exported: rows arrived after the export; exporting again"
            ));
        }
        inner.step(format!("detach {month}"))?;
        Ok(detached)
    }

    async fn drop_detached(&mut self) -> Result<(), AdapterError> {
        let mut inner = self.world.inner();
        inner.alive()?;
        let month = self.month;
        match inner.progress.get(&month).map(|p| p.state) {
            Some(State::Dropped) => return Ok(()),
            Some(State::Detached) => {}
            state => {
                return Err(error(format!(
                    "refusing to drop {month}: it is not a detached, verified month ({state:?})"
                )))
            }
        }
        if inner.tables.get(&month).is_some_and(|t| t.attached) {
            return Err(error(format!(
                "refusing to drop {month}: it is still a partition"
            )));
        }
        inner.drop_table(month);
        inner.step(format!("drop_detached {month}"))
    }

    async fn release(self) {
        // A dead archiver's session ends too, and its locks with it.
        self.world.inner().locks.remove(&self.month);
    }
}

/// The month's rows as the archive's Arrow batches; the columns the checks do not look at
/// hold constants.
fn record_batch(rows: &[FakeRow]) -> RecordBatch {
    let n = rows.len();
    let text = |value: &str| -> ArrayRef { Arc::new(StringArray::from(vec![value; n])) };
    let times = || -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
                .with_timezone("UTC"),
        )
    };
    let ids: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
    ));
    let indexes: ArrayRef = Arc::new(Int64Array::from(
        rows.iter().map(|r| r.log_index as i64).collect::<Vec<_>>(),
    ));
    let hashes: ArrayRef = Arc::new(
        FixedSizeBinaryArray::try_from_iter(rows.iter().map(|r| [r.log_index as u8; 32]))
            .expect("32-byte hashes"),
    );
    let columns = vec![
        ids.clone(),
        text(FAKE_TENANT),
        times(),
        times(),
        times(),
        text("user_1"),
        text("user"),
        text("role_grant"),
        text("user"),
        ids,
        text("{}"),
        text("{}"),
        indexes,
        hashes,
    ];
    RecordBatch::try_new(parquet_file::schema(), columns).expect("columns match the schema")
}

#[async_trait]
impl MonthRows for FakeHeld {
    async fn stream_rows(
        &mut self,
        batch_rows: usize,
        out: mpsc::Sender<RecordBatch>,
    ) -> Result<(), AdapterError> {
        let rows = {
            let inner = self.world.inner();
            inner.alive()?;
            match inner.tables.get(&self.month) {
                Some(t) if t.attached => t.rows.clone(),
                _ => Vec::new(),
            }
        };
        for chunk in rows.chunks(batch_rows.max(1)) {
            if out.send(record_batch(chunk)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The fake [`ArchiveBucket`].
pub struct FakeBucket(World);

#[async_trait]
impl ArchiveBucket for FakeBucket {
    type Upload = FakeUpload;

    fn name(&self) -> &str {
        "fake-archive"
    }

    async fn put(&self, key: &str, body: Vec<u8>, _content_type: &str) -> Result<(), AdapterError> {
        let mut inner = self.0.inner();
        inner.bucket_alive()?;
        inner.objects.insert(key.to_string(), body);
        inner.step(format!("put {key}"))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, AdapterError> {
        let inner = self.0.inner();
        inner.bucket_alive()?;
        Ok(inner.objects.get(key).cloned())
    }

    async fn read_back(&self, key: &str, keep: usize) -> Result<Option<ReadBack>, AdapterError> {
        let inner = self.0.inner();
        inner.bucket_alive()?;
        Ok(inner.objects.get(key).map(|bytes| ReadBack {
            sha256: hex::encode(Sha256::digest(bytes)),
            bytes: bytes.len() as u64,
            tail: bytes[bytes.len().saturating_sub(keep)..].to_vec(),
        }))
    }

    async fn get_last(&self, key: &str, n: usize) -> Result<Vec<u8>, AdapterError> {
        let inner = self.0.inner();
        inner.bucket_alive()?;
        let bytes = inner
            .objects
            .get(key)
            .ok_or_else(|| error(format!("NoSuchKey: {key}")))?;
        Ok(bytes[bytes.len().saturating_sub(n)..].to_vec())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, AdapterError> {
        let inner = self.0.inner();
        inner.bucket_alive()?;
        Ok(inner
            .objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), AdapterError> {
        let mut inner = self.0.inner();
        inner.bucket_alive()?;
        for key in keys {
            inner.objects.remove(key);
        }
        inner.step(format!("delete {}", keys.join(" ")))
    }

    async fn abort_uploads(&self, prefix: &str) -> Result<Vec<String>, AdapterError> {
        let mut inner = self.0.inner();
        inner.bucket_alive()?;
        let ids: Vec<u64> = inner
            .uploads
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .map(|(id, _)| *id)
            .collect();
        let keys: Vec<String> = ids
            .iter()
            .filter_map(|id| inner.uploads.remove(id))
            .map(|u| u.key)
            .collect();
        if !keys.is_empty() {
            inner.step(format!("abort_uploads {}", keys.join(" ")))?;
        }
        Ok(keys)
    }

    async fn upload(&self, key: &str, _max_in_flight: usize) -> Result<FakeUpload, AdapterError> {
        let mut inner = self.0.inner();
        inner.bucket_alive()?;
        inner.next_upload += 1;
        let id = inner.next_upload;
        inner.uploads.insert(
            id,
            OpenUpload {
                key: key.to_string(),
                chunks: Vec::new(),
            },
        );
        inner.step(format!("upload {key}"))?;
        Ok(FakeUpload {
            world: self.0.clone(),
            id,
            key: key.to_string(),
        })
    }
}

/// The fake [`MultipartUpload`]: its chunks stay invisible until it completes.
pub struct FakeUpload {
    world: World,
    id: u64,
    key: String,
}

#[async_trait]
impl MultipartUpload for FakeUpload {
    fn key(&self) -> &str {
        &self.key
    }

    async fn send(&mut self, chunk: Vec<u8>) -> Result<(), AdapterError> {
        let mut inner = self.world.inner();
        inner.bucket_alive()?;
        let key = self.key.clone();
        inner
            .uploads
            .get_mut(&self.id)
            .ok_or_else(|| error(format!("NoSuchUpload: {key}")))?
            .chunks
            .push(chunk);
        inner.step(format!("send {key}"))
    }

    async fn complete(self) -> Result<(String, u64), AdapterError> {
        let mut inner = self.world.inner();
        inner.bucket_alive()?;
        let upload = inner
            .uploads
            .remove(&self.id)
            .ok_or_else(|| error(format!("NoSuchUpload: {}", self.key)))?;
        let all_but_last = upload.chunks.iter().rev().skip(1);
        if let Some(small) = all_but_last.into_iter().find(|c| c.len() < MIN_PART_BYTES) {
            return Err(error(format!(
                "EntityTooSmall: a part of {} bytes is not the last",
                small.len()
            )));
        }
        let body = upload.chunks.concat();
        let sha256 = hex::encode(Sha256::digest(&body));
        let bytes = body.len() as u64;
        inner.objects.insert(self.key.clone(), body);
        inner.step(format!("complete {}", self.key))?;
        Ok((sha256, bytes))
    }

    async fn abort(self) {
        let mut inner = self.world.inner();
        if inner.alive().is_ok() && inner.uploads.remove(&self.id).is_some() {
            let _ = inner.step(format!("abort {}", self.key));
        }
    }
}
