//! A crash for tests of the real stack: adapters around the PostgreSQL ledger and the S3
//! bucket that pass every call through until a chosen step, then "die" as the archiver's
//! process would. The call at that step fails, so does every later call through either
//! adapter, and an upload left open is not aborted. Only the month lock is given back
//! (as PostgreSQL does when a dead process's session ends), so a rerun can take the month.
//! The production types carry no hook for this.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use archiver::MonthRows;
use arrow_array::RecordBatch;
use async_trait::async_trait;
use sentinel_aws::s3::{Bucket, Upload};
use sentinel_domain::archive::{
    AdapterError, ArchiveBucket, ArchiveLedger, ChainedNote, HeldMonth, MonthFacts,
    MultipartUpload, Partition, Progress, ReadBack, State,
};
use sentinel_domain::manifest::{CoveringCheckpoint, Manifest};
use sentinel_domain::Month;
use sentinel_postgres::archive::{PgArchiveLedger, PgHeldMonth};
use tokio::sync::mpsc;

/// Where the archiver dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// The first part of the batch is a complete object and the second one's multipart
    /// upload has its bytes uploaded but is not complete; nothing is recorded as exported.
    MidUpload,
    /// Every part and the manifest are in S3; the month is still recorded as exporting.
    AfterUpload,
    /// The month is recorded as exported, not yet read back.
    AfterExport,
    /// The month is recorded as verified, still attached.
    AfterVerify,
    /// The partition is detached (committed), not yet dropped.
    AfterDetach,
}

/// The crash both adapters share.
#[derive(Clone)]
pub struct Crash {
    point: FailPoint,
    dead: Arc<AtomicBool>,
    completed_uploads: Arc<AtomicUsize>,
}

impl Crash {
    pub fn at(point: FailPoint) -> Self {
        Self {
            point,
            dead: Arc::default(),
            completed_uploads: Arc::default(),
        }
    }

    pub fn happened(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    fn alive(&self) -> Result<(), AdapterError> {
        if self.happened() {
            return Err(format!("the archiver crashed at {:?}", self.point).into());
        }
        Ok(())
    }

    fn die(&self) -> AdapterError {
        self.dead.store(true, Ordering::SeqCst);
        format!("crashed at fail point {:?}", self.point).into()
    }
}

/// The PostgreSQL ledger, crashing.
pub struct CrashingLedger {
    pub inner: PgArchiveLedger,
    pub crash: Crash,
}

#[async_trait]
impl ArchiveLedger for CrashingLedger {
    type Held = CrashingHeld;

    async fn ensure_partition(&self, month: Month) -> Result<bool, AdapterError> {
        self.crash.alive()?;
        self.inner.ensure_partition(month).await
    }

    async fn attached_months(&self) -> Result<Vec<Month>, AdapterError> {
        self.crash.alive()?;
        self.inner.attached_months().await
    }

    async fn unfinished_months(&self) -> Result<Vec<Month>, AdapterError> {
        self.crash.alive()?;
        self.inner.unfinished_months().await
    }

    async fn try_lock(&self, month: Month) -> Result<Option<CrashingHeld>, AdapterError> {
        self.crash.alive()?;
        Ok(self.inner.try_lock(month).await?.map(|inner| CrashingHeld {
            inner,
            crash: self.crash.clone(),
        }))
    }

    async fn latest_checkpoints(
        &self,
        tenants: &[String],
    ) -> Result<Vec<(String, CoveringCheckpoint)>, AdapterError> {
        self.crash.alive()?;
        self.inner.latest_checkpoints(tenants).await
    }

    async fn log_leaves(
        &self,
        tenant: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<sentinel_domain::merkle::Hash>, AdapterError> {
        self.crash.alive()?;
        self.inner.log_leaves(tenant, from, to).await
    }

    async fn chain_tip(&self) -> Result<Option<ChainedNote>, AdapterError> {
        self.crash.alive()?;
        self.inner.chain_tip().await
    }

    async fn append_note(&self, note: &ChainedNote) -> Result<bool, AdapterError> {
        self.crash.alive()?;
        self.inner.append_note(note).await
    }

    async fn note_of(&self, month: Month) -> Result<Option<ChainedNote>, AdapterError> {
        self.crash.alive()?;
        self.inner.note_of(month).await
    }
}

pub struct CrashingHeld {
    inner: PgHeldMonth,
    crash: Crash,
}

#[async_trait]
impl HeldMonth for CrashingHeld {
    fn month(&self) -> Month {
        self.inner.month()
    }

    async fn progress(&mut self) -> Result<Option<Progress>, AdapterError> {
        self.crash.alive()?;
        self.inner.progress().await
    }

    async fn partition(&mut self) -> Result<Partition, AdapterError> {
        self.crash.alive()?;
        self.inner.partition().await
    }

    async fn facts(&mut self) -> Result<MonthFacts, AdapterError> {
        self.crash.alive()?;
        self.inner.facts().await
    }

    async fn begin(&mut self) -> Result<(), AdapterError> {
        self.crash.alive()?;
        self.inner.begin().await
    }

    async fn begin_late_batch(&mut self, first_part: usize) -> Result<(), AdapterError> {
        self.crash.alive()?;
        self.inner.begin_late_batch(first_part).await
    }

    async fn mark_exported(
        &mut self,
        manifest: &Manifest,
        batch_rows: u64,
    ) -> Result<(), AdapterError> {
        self.crash.alive()?;
        if self.crash.point == FailPoint::AfterUpload {
            return Err(self.crash.die());
        }
        self.inner.mark_exported(manifest, batch_rows).await?;
        if self.crash.point == FailPoint::AfterExport {
            return Err(self.crash.die());
        }
        Ok(())
    }

    async fn mark_verified(&mut self) -> Result<(), AdapterError> {
        self.crash.alive()?;
        self.inner.mark_verified().await?;
        if self.crash.point == FailPoint::AfterVerify {
            return Err(self.crash.die());
        }
        Ok(())
    }

    async fn mark_for_export(&mut self, from: State, why: &str) -> Result<(), AdapterError> {
        self.crash.alive()?;
        self.inner.mark_for_export(from, why).await
    }

    async fn record_error(&mut self, error: &str) -> Result<(), AdapterError> {
        self.crash.alive()?;
        self.inner.record_error(error).await
    }

    async fn detach(&mut self) -> Result<bool, AdapterError> {
        self.crash.alive()?;
        let detached = self.inner.detach().await?;
        if detached && self.crash.point == FailPoint::AfterDetach {
            return Err(self.crash.die());
        }
        Ok(detached)
    }

    async fn drop_detached(&mut self) -> Result<(), AdapterError> {
        self.crash.alive()?;
        self.inner.drop_detached().await
    }

    async fn release(self) {
        self.inner.release().await
    }
}

#[async_trait]
impl MonthRows for CrashingHeld {
    async fn stream_rows(
        &mut self,
        batch_rows: usize,
        out: mpsc::Sender<RecordBatch>,
    ) -> Result<(), AdapterError> {
        self.crash.alive()?;
        self.inner.stream_rows(batch_rows, out).await
    }
}

/// The S3 bucket, crashing.
pub struct CrashingBucket {
    pub inner: Bucket,
    pub crash: Crash,
}

#[async_trait]
impl ArchiveBucket for CrashingBucket {
    type Upload = CrashingUpload;

    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), AdapterError> {
        self.crash.alive()?;
        self.inner.put(key, body, content_type).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, AdapterError> {
        self.crash.alive()?;
        self.inner.get(key).await
    }

    async fn read_back(&self, key: &str, keep: usize) -> Result<Option<ReadBack>, AdapterError> {
        self.crash.alive()?;
        self.inner.read_back(key, keep).await
    }

    async fn get_last(&self, key: &str, n: usize) -> Result<Vec<u8>, AdapterError> {
        self.crash.alive()?;
        self.inner.get_last(key, n).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, AdapterError> {
        self.crash.alive()?;
        self.inner.list(prefix).await
    }

    async fn delete(&self, keys: &[String]) -> Result<(), AdapterError> {
        self.crash.alive()?;
        self.inner.delete(keys).await
    }

    async fn abort_uploads(&self, prefix: &str) -> Result<Vec<String>, AdapterError> {
        self.crash.alive()?;
        self.inner.abort_uploads(prefix).await
    }

    async fn upload(
        &self,
        key: &str,
        max_in_flight: usize,
    ) -> Result<CrashingUpload, AdapterError> {
        self.crash.alive()?;
        Ok(CrashingUpload {
            inner: self.inner.upload(key, max_in_flight).await?,
            crash: self.crash.clone(),
        })
    }
}

pub struct CrashingUpload {
    inner: Upload,
    crash: Crash,
}

#[async_trait]
impl MultipartUpload for CrashingUpload {
    fn key(&self) -> &str {
        self.inner.key()
    }

    async fn send(&mut self, chunk: Vec<u8>) -> Result<(), AdapterError> {
        self.crash.alive()?;
        self.inner.send(chunk).await
    }

    async fn complete(mut self) -> Result<(String, u64), AdapterError> {
        self.crash.alive()?;
        let completed = &self.crash.completed_uploads;
        if self.crash.point == FailPoint::MidUpload && completed.load(Ordering::SeqCst) >= 1 {
            // Every byte of this file is up, as parts of an upload nobody completes.
            self.inner.settle().await?;
            return Err(self.crash.die());
        }
        let done = self.inner.complete().await?;
        completed.fetch_add(1, Ordering::SeqCst);
        Ok(done)
    }

    async fn abort(self) {
        // A dead archiver aborts nothing; the next run does.
        if !self.crash.happened() {
            self.inner.abort().await
        }
    }
}
