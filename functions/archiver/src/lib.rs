//! The scheduled archiver. Each run creates the coming months' partitions, then, for every
//! month past retention, exports the partition to S3 as zstd Parquet with a manifest, reads
//! the objects back to verify them against PostgreSQL, and only then detaches and drops it.
//!
//! Each month's progress is recorded in `archive_months` (migration V2), one committed step
//! at a time, so a crash after any step is finished by the next run. A per-month advisory
//! lock keeps two archivers off the same month.
//!
//! The state machine ([`Archiver`]) decides every step through ports: the ledger
//! ([`ArchiveLedger`], [`HeldMonth`]) and the bucket ([`ArchiveBucket`]) from
//! `sentinel_domain::archive`, and the month's rows ([`MonthRows`]). In production they are
//! PostgreSQL (`sentinel_postgres::archive`) and S3 (`sentinel_aws::s3`); the unit tests
//! drive it with in-memory fakes that crash at any step.

pub mod export;
pub mod parquet_file;
pub mod verify;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use tracing::{error, info, instrument, warn};

use sentinel_aws::s3::Bucket;
use sentinel_domain::archive::{
    AdapterError, ArchiveBucket, ArchiveLedger, ChainedNote, HeldMonth, Partition, Progress, State,
};
use sentinel_domain::archive_chain::{self, ManifestNote};
use sentinel_domain::checkpoint::{SignedNote, VerifierKey};
use sentinel_domain::fields::{TenantId, Timestamp};
use sentinel_domain::log::Signer;
use sentinel_domain::manifest::{CoveringCheckpoint, Manifest, Part};
use sentinel_domain::tiles;
pub use sentinel_domain::Month;
use sentinel_lambda::metrics::{Metrics, Unit};
use sentinel_postgres::archive::PgArchiveLedger;

pub use crate::export::MonthRows;
use crate::verify::Verdict;

/// Keeps glibc's mmap threshold at its initial 128 KiB. By default glibc raises it to the
/// size of the largest block freed (up to 32 MiB); after the first multi-megabyte upload
/// chunk is freed, every smaller buffer would come from fragmented heaps that are never
/// given back, and the peak memory would grow with the month's size. Call it once at start.
pub fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before the runtime starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Settings read from the environment once per cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub bucket: String,
    /// Names the manifests' signing key (`sentinel/<stack>/archive`) and their notes' origin.
    pub stack: String,
    /// The KMS key that signs the manifests (`ARCHIVE_SIGNING_KEY_ID`: an id, ARN or alias).
    pub signing_key_id: String,
    /// Full months kept in PostgreSQL before the current one (see [`Month::is_past_retention`]).
    pub retention_months: u32,
    /// Months after the current one whose partitions are created ahead of time.
    pub premake_months: u32,
}

impl Settings {
    /// `ARCHIVE_BUCKET`, `STACK_NAME` and `ARCHIVE_SIGNING_KEY_ID` are required;
    /// `RETENTION_MONTHS` and `PREMAKE_MONTHS` default to 3. (The database comes from
    /// `sentinel_postgres::settings::DatabaseSettings::from_env`.)
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            bucket: sentinel_lambda::settings::required("ARCHIVE_BUCKET")?,
            stack: sentinel_lambda::settings::required("STACK_NAME")?,
            signing_key_id: sentinel_lambda::settings::required("ARCHIVE_SIGNING_KEY_ID")?,
            retention_months: months(
                "RETENTION_MONTHS",
                std::env::var("RETENTION_MONTHS").ok(),
                3,
            )?,
            premake_months: months("PREMAKE_MONTHS", std::env::var("PREMAKE_MONTHS").ok(), 3)?,
        })
    }
}

/// Parses a month count setting: a whole number from 0 to 1200, `default` when unset.
pub fn months(name: &str, value: Option<String>, default: u32) -> anyhow::Result<u32> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => match text.parse::<u32>() {
            Ok(n) if n <= 1200 => Ok(n),
            _ => anyhow::bail!(
                "{name} must be a whole number of months from 0 to 1200, not {text:?}"
            ),
        },
    }
}

/// Sizes that shape the export. The defaults suit object storage and Lambda's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// Rows per Arrow record batch.
    pub batch_rows: usize,
    /// Rows per Parquet file (`part-NNNNN.parquet`).
    pub part_rows: u64,
    /// Row group limits; whichever is reached first closes the row group.
    pub row_group_rows: usize,
    pub row_group_bytes: usize,
    /// Bytes per multipart upload part (at least S3's 5 MiB).
    pub upload_chunk_bytes: usize,
    /// Parts uploading at once (with the chunk size, what the upload side may hold).
    pub uploads_in_flight: usize,
    /// zstd level of the Parquet pages (1 to 22).
    pub zstd_level: i32,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            batch_rows: 8192,
            part_rows: 5_000_000,
            row_group_rows: 1_000_000,
            row_group_bytes: 128 * 1024 * 1024,
            upload_chunk_bytes: 8 * 1024 * 1024,
            uploads_in_flight: 2,
            zstd_level: 1,
        }
    }
}

/// Why a run, or a month within it, failed, and whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("PostgreSQL failed (a retry may help): {0:#}")]
    Database(anyhow::Error),
    #[error("S3 failed (a retry may help): {0:#}")]
    Storage(anyhow::Error),
    #[error("verification of {month} failed; its partition is kept and the next run exports it again: {reason}")]
    Verification { month: Month, reason: String },
    #[error("{month} is still receiving rows (a later run will archive it): {reason}")]
    Busy { month: Month, reason: String },
    #[error("{month} needs an operator (a retry will not help): {reason}")]
    Inconsistent { month: Month, reason: String },
    #[error("signing the manifest failed (a retry may help): {0:#}")]
    Signing(anyhow::Error),
    #[error("internal error (a retry will not help): {0:#}")]
    Internal(anyhow::Error),
    #[error("{}", failed_months(.0))]
    MonthsFailed(Box<Summary>),
}

fn failed_months(summary: &Summary) -> String {
    let each: Vec<String> = summary
        .failed
        .iter()
        .map(|f| format!("{}: {}", f.month, f.error))
        .collect();
    format!(
        "{} month(s) failed: {}",
        summary.failed.len(),
        each.join("; ")
    )
}

impl ArchiveError {
    /// Whether running again may succeed without anyone intervening.
    pub fn retryable(&self) -> bool {
        match self {
            ArchiveError::Database(_)
            | ArchiveError::Storage(_)
            | ArchiveError::Signing(_)
            | ArchiveError::Verification { .. }
            | ArchiveError::Busy { .. } => true,
            ArchiveError::Inconsistent { .. } | ArchiveError::Internal(_) => false,
            ArchiveError::MonthsFailed(summary) => summary.failed.iter().all(|f| f.retryable),
        }
    }
}

/// A ledger (database) failure.
fn database(error: AdapterError) -> ArchiveError {
    ArchiveError::Database(anyhow::anyhow!(error))
}

/// A bucket (object store) failure.
fn storage(error: AdapterError) -> ArchiveError {
    ArchiveError::Storage(anyhow::anyhow!(error))
}

/// A month that failed in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedMonth {
    pub month: String,
    pub error: String,
    pub retryable: bool,
}

/// One export in a run, with its timings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportReport {
    pub month: String,
    pub batch: u32,
    pub rows: u64,
    pub bytes: u64,
    pub parts: usize,
    pub export_seconds: f64,
}

/// What a run did: the handler's JSON answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Partitions created ahead of time (`YYYY-MM`).
    pub created: Vec<String>,
    /// Months (or late batches) written to S3 in this run.
    pub exported: Vec<String>,
    /// Months read back and matched against PostgreSQL in this run.
    pub verified: Vec<String>,
    /// Months whose partition was dropped in this run.
    pub dropped: Vec<String>,
    /// Months another archiver was working on.
    pub skipped: Vec<String>,
    /// Rows and Parquet bytes exported in this run.
    pub rows: u64,
    pub bytes: u64,
    pub exports: Vec<ExportReport>,
    pub failed: Vec<FailedMonth>,
}

/// How the archiver signs each manifest it writes: a signed note chained to the one before
/// (`sentinel_domain::archive_chain`), by a key of its own (KMS deployed and locally).
#[derive(Clone)]
pub struct ManifestSigning {
    pub stack: String,
    /// The public key, named `sentinel/<stack>/archive`: every signature is checked with it
    /// before it is kept.
    pub key: VerifierKey,
    pub signer: Arc<dyn Signer>,
}

impl ManifestSigning {
    /// The signing of `stack`'s manifests with `signer`, whose public key (DER
    /// SubjectPublicKeyInfo) is `spki_der`.
    pub fn new(stack: &str, spki_der: &[u8], signer: Arc<dyn Signer>) -> anyhow::Result<Self> {
        let name = archive_chain::key_name(stack)
            .map_err(|e| anyhow::anyhow!("STACK_NAME cannot name a key: {e}"))?;
        let key = VerifierKey::from_spki_der(name, spki_der)
            .map_err(|e| anyhow::anyhow!("the archive signing key is not a P-256 key: {e}"))?;
        Ok(Self {
            stack: stack.to_string(),
            key,
            signer,
        })
    }
}

/// The archiver, built once per cold start: the state machine over its ledger `L` and its
/// bucket `B` (PostgreSQL and S3 unless a test says otherwise).
pub struct Archiver<L = PgArchiveLedger, B = Bucket> {
    ledger: L,
    bucket: B,
    settings: Settings,
    tuning: Tuning,
    signing: ManifestSigning,
}

impl Archiver {
    pub fn new(
        pool: Pool,
        s3: aws_sdk_s3::Client,
        settings: Settings,
        signing: ManifestSigning,
    ) -> Self {
        Self::with_tuning(pool, s3, settings, signing, Tuning::default())
    }

    pub fn with_tuning(
        pool: Pool,
        s3: aws_sdk_s3::Client,
        settings: Settings,
        signing: ManifestSigning,
        tuning: Tuning,
    ) -> Self {
        let bucket = Bucket::new(s3, settings.bucket.clone());
        Self::from_adapters(
            PgArchiveLedger::new(pool),
            bucket,
            settings,
            signing,
            tuning,
        )
    }
}

impl<L, B> Archiver<L, B> {
    /// The archiver over any ledger and bucket. `settings.bucket` is only reported; the
    /// bucket is the one given.
    pub fn from_adapters(
        ledger: L,
        bucket: B,
        settings: Settings,
        signing: ManifestSigning,
        tuning: Tuning,
    ) -> Self {
        Self {
            ledger,
            bucket,
            settings,
            tuning,
            signing,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

impl<L, B> Archiver<L, B>
where
    L: ArchiveLedger,
    L::Held: MonthRows,
    B: ArchiveBucket,
{
    /// One run at `now`: create the coming partitions, then archive every month past
    /// retention, oldest first. A month that fails does not stop the others; the run fails
    /// at the end if any did.
    #[instrument(skip_all, fields(now = %now, bucket = %self.bucket.name()))]
    pub async fn run(&self, now: DateTime<Utc>) -> Result<Summary, ArchiveError> {
        let mut summary = Summary::default();
        let current = Month::of(now);
        for ahead in 0..=self.settings.premake_months {
            let month = current.plus(ahead as i32);
            if self
                .ledger
                .ensure_partition(month)
                .await
                .map_err(database)?
            {
                info!(%month, "partition created ahead of time");
                summary.created.push(month.to_string());
            }
        }
        let mut months: BTreeSet<Month> = self
            .ledger
            .attached_months()
            .await
            .map_err(database)?
            .into_iter()
            .filter(|m| m.is_past_retention(now, self.settings.retention_months))
            .collect();
        // Archiving started past retention finishes even if retention was raised since.
        months.extend(
            self.ledger
                .unfinished_months()
                .await
                .map_err(database)?
                .into_iter()
                .filter(|m| *m < current),
        );

        for month in months {
            if let Err(e) = self.archive_month_locked(month, &mut summary).await {
                error!(%month, error = %e, retryable = e.retryable(), "archiving the month failed");
                summary.failed.push(FailedMonth {
                    month: month.to_string(),
                    error: e.to_string(),
                    retryable: e.retryable(),
                });
            }
        }
        if summary.failed.is_empty() {
            Ok(summary)
        } else {
            Err(ArchiveError::MonthsFailed(Box::new(summary)))
        }
    }

    /// Archives `month` if no other archiver holds it.
    async fn archive_month_locked(
        &self,
        month: Month,
        summary: &mut Summary,
    ) -> Result<(), ArchiveError> {
        let Some(mut held) = self.ledger.try_lock(month).await.map_err(database)? else {
            info!(%month, "another archiver holds the month; skipping it");
            summary.skipped.push(month.to_string());
            return Ok(());
        };
        // Boxed: the month's state machine is a deep future.
        let result = Box::pin(self.archive_month(&mut held, summary)).await;
        if let Err(e) = &result {
            if let Err(record) = held.record_error(&e.to_string()).await {
                warn!(%month, error = %record, "could not record why the month failed");
            }
        }
        held.release().await;
        result
    }

    /// Moves the held month through its states until it is dropped, or there is nothing
    /// to do.
    #[instrument(skip_all, fields(month = %held.month()))]
    async fn archive_month(
        &self,
        held: &mut L::Held,
        summary: &mut Summary,
    ) -> Result<(), ArchiveError> {
        const MAX_RESTARTS: u32 = 3;
        let month = held.month();
        let mut restarts = 0;
        loop {
            let record = held.progress().await.map_err(database)?;
            let partition = held.partition().await.map_err(database)?;
            let Some(record) = record else {
                if partition != Partition::Attached {
                    return Ok(());
                }
                info!("month is past retention; archiving it");
                held.begin().await.map_err(database)?;
                continue;
            };
            match (record.state, partition) {
                (State::Dropped, Partition::Attached) => {
                    let parts = record.manifest.as_ref().map_or(0, |m| m.parts.len());
                    info!(
                        batch = record.batch + 1,
                        "late events arrived for an archived month; exporting them as a new batch"
                    );
                    held.begin_late_batch(parts).await.map_err(database)?;
                }
                (State::Dropped, _) => return Ok(()),
                (State::Exporting, Partition::Attached) => {
                    self.export(held, &record, summary).await?;
                }
                (State::Exported, Partition::Attached) => {
                    let verdict = match verify::verify(held, &self.bucket, &record).await? {
                        Verdict::Verified { rows } => {
                            // Tiles lost since the export (a crash, a delete) are put back.
                            if let Some(manifest) = &record.manifest {
                                self.write_tiles(&manifest.parts).await?;
                            }
                            match self.check_note(month, &record).await? {
                                None => Verdict::Verified { rows },
                                Some(reason) => Verdict::Failed(reason),
                            }
                        }
                        other => other,
                    };
                    match verdict {
                        Verdict::Verified { rows } => {
                            held.mark_verified().await.map_err(database)?;
                            info!(rows, "export verified against S3 and PostgreSQL");
                            summary.verified.push(month.to_string());
                        }
                        Verdict::LateRows { exported, present } => {
                            restarts += 1;
                            let why = format!("{present} rows present, {exported} exported: rows arrived after the export; exporting again");
                            warn!(exported, present, "rows arrived after the export");
                            held.mark_for_export(State::Exported, &why)
                                .await
                                .map_err(database)?;
                            if restarts > MAX_RESTARTS {
                                return Err(ArchiveError::Busy { month, reason: why });
                            }
                        }
                        Verdict::Failed(reason) => {
                            error!(%reason, "verification failed; the partition is kept");
                            held.mark_for_export(State::Exported, &reason)
                                .await
                                .map_err(database)?;
                            return Err(ArchiveError::Verification { month, reason });
                        }
                    }
                }
                (State::Verified, Partition::Attached) => {
                    if held.detach().await.map_err(database)? {
                        info!("partition detached");
                    } else {
                        restarts += 1;
                        warn!("rows arrived after the export; exporting again");
                        if restarts > MAX_RESTARTS {
                            return Err(ArchiveError::Busy {
                                month,
                                reason: "rows keep arriving after each export".into(),
                            });
                        }
                    }
                }
                (State::Detached, Partition::Detached) => {
                    held.drop_detached().await.map_err(database)?;
                    info!("partition dropped; the month lives in S3");
                    summary.dropped.push(month.to_string());
                }
                (state, partition) => {
                    return Err(ArchiveError::Inconsistent {
                        month,
                        reason: format!(
                            "recorded as {} but its partition is {partition:?}",
                            state.as_str()
                        ),
                    })
                }
            }
        }
    }

    /// Writes the current batch of `record` to S3 and records it as exported. Whatever an
    /// interrupted attempt left under the month's prefix is cleaned up first.
    async fn export(
        &self,
        held: &mut L::Held,
        record: &Progress,
        summary: &mut Summary,
    ) -> Result<(), ArchiveError> {
        let month = record.month;
        // The manifest of the batches before this one, if this is a batch of late events.
        let earlier = record
            .manifest
            .as_ref()
            .filter(|_| record.first_part > 0)
            .map(|m| m.before(month, record.first_part));
        self.clean_up(month, record.first_part, earlier.as_ref())
            .await
            .map_err(storage)?;

        let started = Instant::now();
        let exported = export::export(
            held,
            &self.bucket,
            record.batch,
            record.first_part,
            &self.tuning,
        )
        .await?;
        let mut new_parts = exported.parts;
        self.name_checkpoints(month, &mut new_parts).await?;
        self.write_tiles(&new_parts).await?;
        let parts = earlier
            .map(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .chain(new_parts.iter().cloned())
            .collect();
        let manifest = Manifest::new(month, record.batch, parts, Utc::now());
        let json = manifest.to_json();
        self.bucket
            .put(&month.manifest_key(), json.clone(), "application/json")
            .await
            .map_err(storage)?;
        let note = self.sign_manifest(month, &json).await?;
        info!(seq = note.seq, "manifest signed");
        held.mark_exported(&manifest, exported.rows)
            .await
            .map_err(database)?;
        let seconds = started.elapsed().as_secs_f64();
        info!(
            batch = record.batch,
            rows = exported.rows,
            bytes = exported.bytes,
            parts = new_parts.len(),
            seconds,
            "month exported"
        );
        summary.exported.push(month.to_string());
        summary.rows += exported.rows;
        summary.bytes += exported.bytes;
        summary.exports.push(ExportReport {
            month: month.to_string(),
            batch: record.batch,
            rows: exported.rows,
            bytes: exported.bytes,
            parts: new_parts.len(),
            export_seconds: seconds,
        });
        Ok(())
    }

    /// Names, in each part's tenant logs, the tenant's newest signed checkpoint. A tenant
    /// whose rows' log indexes no checkpoint covers yet keeps the month (retryable): the
    /// checkpointer signs within a minute, and an archive must name what proves it.
    async fn name_checkpoints(&self, month: Month, parts: &mut [Part]) -> Result<(), ArchiveError> {
        let tenants: Vec<String> = parts
            .iter()
            .flat_map(|p| &p.logs)
            .filter(|l| l.last_index.is_some())
            .map(|l| l.tenant_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if tenants.is_empty() {
            return Ok(());
        }
        let latest: HashMap<String, CoveringCheckpoint> = self
            .ledger
            .latest_checkpoints(&tenants)
            .await
            .map_err(database)?
            .into_iter()
            .collect();
        for log in parts.iter_mut().flat_map(|p| &mut p.logs) {
            let Some(last) = log.last_index else { continue };
            match latest.get(&log.tenant_id) {
                Some(c) if c.tree_size > last => log.checkpoint = Some(c.clone()),
                newest => {
                    return Err(ArchiveError::Busy {
                        month,
                        reason: format!(
                            "tenant {}'s log index {last} is not covered by a signed checkpoint yet ({}); the checkpointer signs one within a minute",
                            log.tenant_id,
                            newest.map_or("it has none".to_string(), |c| format!(
                                "the newest is of size {}",
                                c.tree_size
                            ))
                        ),
                    })
                }
            }
        }
        Ok(())
    }

    /// Puts in S3 the log of each tenant with rows in `parts`, up to the checkpoint that
    /// covers them, as level-0 tiles (`sentinel_domain::tiles`): with the parts and the
    /// signed checkpoints, what a month verifies from once its partition is dropped. Tiles
    /// already there are left alone (a full tile never changes), so each run writes only the
    /// log's growth since the last.
    async fn write_tiles(&self, parts: &[Part]) -> Result<(), ArchiveError> {
        /// Tiles read from the log at once.
        const TILES_PER_READ: u64 = 64;
        let sizes: BTreeMap<&str, u64> = parts
            .iter()
            .flat_map(|p| &p.logs)
            .filter_map(|l| Some((l.tenant_id.as_str(), l.checkpoint.as_ref()?.tree_size)))
            .fold(BTreeMap::new(), |mut sizes, (tenant, size)| {
                let entry = sizes.entry(tenant).or_insert(size);
                *entry = (*entry).max(size);
                sizes
            });
        for (tenant, size) in sizes {
            let id: TenantId = tenant.parse().map_err(|e| {
                ArchiveError::Internal(anyhow::anyhow!("a part names tenant {tenant:?}: {e}"))
            })?;
            let prefix = tiles::tiles_prefix(&id);
            let present: BTreeSet<String> = self
                .bucket
                .list(&prefix)
                .await
                .map_err(storage)?
                .into_iter()
                .collect();
            let missing: Vec<(u64, u64)> = tiles::tiles_of(size)
                .filter(|&(n, width)| {
                    !present.contains(&tiles::tile_key(&id, n, width))
                        && !present.contains(&tiles::tile_key(&id, n, tiles::TILE_WIDTH))
                })
                .collect();
            let written = missing.len();
            for run in missing.chunk_by(|a, b| b.0 == a.0 + 1) {
                for chunk in run.chunks(TILES_PER_READ as usize) {
                    let from = chunk[0].0 * tiles::TILE_WIDTH;
                    let to = from + chunk.iter().map(|&(_, w)| w).sum::<u64>();
                    let leaves = self
                        .ledger
                        .log_leaves(tenant, from, to)
                        .await
                        .map_err(database)?;
                    for (&(n, width), leaves) in
                        chunk.iter().zip(leaves.chunks(tiles::TILE_WIDTH as usize))
                    {
                        debug_assert_eq!(leaves.len() as u64, width);
                        self.bucket
                            .put(
                                &tiles::tile_key(&id, n, width),
                                tiles::encode_tile(leaves),
                                "application/octet-stream",
                            )
                            .await
                            .map_err(storage)?;
                    }
                }
            }
            if written > 0 {
                info!(tenant, size, tiles = written, "the log's tiles put in S3");
            }
        }
        Ok(())
    }

    /// Signs the manifest `json` of `month` as the next note of the chain, keeps the note
    /// in the ledger (which gives it its number), then in S3.
    async fn sign_manifest(&self, month: Month, json: &[u8]) -> Result<ChainedNote, ArchiveError> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let tip = self.ledger.chain_tip().await.map_err(database)?;
            if let Some(tip) = &tip {
                // A crash between the ledger and S3 left the tip out of S3: put it first.
                let key = archive_chain::note_key(tip.seq);
                if self.bucket.get(&key).await.map_err(storage)?.is_none() {
                    warn!(%key, "the chain's newest note is missing from S3; putting it back");
                    self.bucket
                        .put(
                            &key,
                            tip.note.clone().into_bytes(),
                            "text/plain; charset=utf-8",
                        )
                        .await
                        .map_err(storage)?;
                }
            }
            let body = ManifestNote {
                seq: tip.as_ref().map_or(0, |t| t.seq + 1),
                month,
                manifest: archive_chain::sha256(json),
                previous: tip
                    .as_ref()
                    .map(|t| archive_chain::sha256(t.note.as_bytes())),
                signed_at: Timestamp::now(),
            };
            let text = body.to_text(&self.signing.stack);
            let der = self
                .signing
                .signer
                .sign(text.as_bytes())
                .await
                .map_err(|e| ArchiveError::Signing(anyhow::anyhow!(e)))?;
            if let Err(e) = self.signing.key.verify(text.as_bytes(), &der) {
                return Err(ArchiveError::Internal(anyhow::anyhow!(
                    "the archive signing key's signature does not verify with its public key: {e}"
                )));
            }
            let note = SignedNote::new(text, vec![self.signing.key.signature_line(der)])
                .map_err(|e| ArchiveError::Internal(e.into()))?
                .to_text();
            let chained = ChainedNote {
                seq: body.seq,
                month,
                manifest: body.manifest,
                signed_at: body.signed_at.get(),
                note,
            };
            if self.ledger.append_note(&chained).await.map_err(database)? {
                self.bucket
                    .put(
                        &archive_chain::note_key(chained.seq),
                        chained.note.clone().into_bytes(),
                        "text/plain; charset=utf-8",
                    )
                    .await
                    .map_err(storage)?;
                return Ok(chained);
            }
            warn!(
                seq = body.seq,
                "another archiver signed this note number first; signing again"
            );
        }
        Err(ArchiveError::Busy {
            month,
            reason: "other archivers kept taking the manifests' next note number".into(),
        })
    }

    /// Whether the month's newest signed note names the recorded manifest, in the ledger
    /// and in S3. A note missing from S3 (a crash between the two writes) is put back from
    /// the ledger. `Some(reason)` if the export cannot be trusted.
    async fn check_note(
        &self,
        month: Month,
        record: &Progress,
    ) -> Result<Option<String>, ArchiveError> {
        let Some(manifest) = &record.manifest else {
            return Ok(Some("an exported month has no recorded manifest".into()));
        };
        let Some(note) = self.ledger.note_of(month).await.map_err(database)? else {
            return Ok(Some(format!("no signed note names {month}'s manifest")));
        };
        if note.manifest != archive_chain::sha256(&manifest.to_json()) {
            return Ok(Some(format!(
                "the newest signed note of {month} (number {}) names another manifest",
                note.seq
            )));
        }
        let key = archive_chain::note_key(note.seq);
        match self.bucket.get(&key).await.map_err(storage)? {
            Some(bytes) if bytes == note.note.as_bytes() => Ok(None),
            Some(_) => Ok(Some(format!(
                "{key} in S3 is not the note the ledger keeps"
            ))),
            None => {
                warn!(%key, "the manifest's note is missing from S3; putting it back");
                self.bucket
                    .put(&key, note.note.into_bytes(), "text/plain; charset=utf-8")
                    .await
                    .map_err(storage)?;
                Ok(None)
            }
        }
    }

    /// Aborts unfinished uploads under the month's prefix and deletes the parts an
    /// unfinished batch wrote (index `first_part` and up). The first batch's stale manifest
    /// is deleted; a later batch's is put back as it was before the batch.
    async fn clean_up(
        &self,
        month: Month,
        first_part: usize,
        earlier: Option<&Manifest>,
    ) -> Result<(), AdapterError> {
        let prefix = month.prefix();
        let aborted = self.bucket.abort_uploads(&prefix).await?;
        if !aborted.is_empty() {
            warn!(
                ?aborted,
                "aborted unfinished uploads of an interrupted export"
            );
        }
        let mut stray = Vec::new();
        for key in self.bucket.list(&prefix).await? {
            let name = &key[prefix.len()..];
            let part = name
                .strip_prefix("part-")
                .and_then(|n| n.strip_suffix(".parquet"))
                .and_then(|n| n.parse::<usize>().ok());
            match part {
                Some(n) if n >= first_part => stray.push(key),
                Some(_) => {}
                None if key == month.manifest_key() => {
                    if earlier.is_none() {
                        stray.push(key)
                    }
                }
                None => warn!(%key, "leaving an object the archiver did not write"),
            }
        }
        if !stray.is_empty() {
            warn!(?stray, "deleting objects of an interrupted export");
            self.bucket.delete(&stray).await?;
        }
        if let Some(earlier) = earlier {
            self.bucket
                .put(&month.manifest_key(), earlier.to_json(), "application/json")
                .await?;
        }
        Ok(())
    }
}

/// Lambda entry point: any payload (an EventBridge scheduled event) starts one run.
/// The run's metrics (EMF): rows, bytes and export time of what it exported, months
/// exported, verified, dropped and failed, and whether the run failed.
pub fn metrics(summary: &Summary, failed: bool, took: std::time::Duration) -> Metrics {
    let mut m = Metrics::new("archiver");
    m.put("RowsArchived", Unit::Count, summary.rows as f64)
        .put("BytesArchived", Unit::Bytes, summary.bytes as f64)
        .put_all(
            "ExportTime",
            Unit::Seconds,
            summary.exports.iter().map(|e| e.export_seconds).collect(),
        )
        .put("MonthsExported", Unit::Count, summary.exported.len() as f64)
        .put("MonthsDropped", Unit::Count, summary.dropped.len() as f64)
        .put("MonthsFailed", Unit::Count, summary.failed.len() as f64)
        .put("RunFailed", Unit::Count, if failed { 1.0 } else { 0.0 })
        .put("RunTime", Unit::Seconds, took.as_secs_f64());
    m
}

pub async fn handler<L, B>(
    archiver: &Archiver<L, B>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error>
where
    L: ArchiveLedger,
    L::Held: MonthRows,
    B: ArchiveBucket,
{
    let request_id = event.context.request_id;
    let started = Instant::now();
    let outcome = archiver.run(Utc::now()).await;
    let empty = Summary::default();
    let summary = match &outcome {
        Ok(summary) => summary,
        Err(ArchiveError::MonthsFailed(summary)) => summary.as_ref(),
        Err(_) => &empty,
    };
    metrics(summary, outcome.is_err(), started.elapsed()).emit();
    match outcome {
        Ok(summary) => {
            info!(%request_id, summary = %serde_json::to_string(&summary)?, "archiver run finished");
            Ok(serde_json::to_value(&summary)?)
        }
        Err(e) => {
            if let ArchiveError::MonthsFailed(summary) = &e {
                error!(%request_id, summary = %serde_json::to_string(summary)?, "archiver run finished with failures");
            }
            error!(%request_id, error = %e, retryable = e.retryable(), "archiver run failed");
            Err(e.into())
        }
    }
}
