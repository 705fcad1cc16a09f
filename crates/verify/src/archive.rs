//! The S3 archive's side of the verification (issue 11, point 4; docs/verifiable-log.md,
//! "The archive"). A month whose partition the archiver dropped verifies from S3:
//!
//! - **The chain of manifests**: every signed manifest note, in PostgreSQL
//!   (`archive_manifests`) and in S3 (`manifests/<seq>.note`): both copies the same, signed by
//!   the archive key, numbered without a gap, each naming the SHA-256 of the note before it.
//! - **Each archived month**: its `_manifest.json` must be the one its newest note names;
//!   each part the tenant's rows are in must be the object the manifest lists (size, SHA-256);
//!   the covering checkpoint it names must be one of the tenant's valid checkpoints.
//! - **Each archived row**: its leaf is recomputed from the Parquet row and matched, in
//!   log-index order, against the leaf logged for that index (`log_entries`, whose every
//!   leaf the tree check holds to the signed roots). A part's rows come sorted by tenant,
//!   then log index, so the tenant's rows of a month are merged from its parts and compared
//!   with the log in one pass: memory holds a batch per part, never the month.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use arrow_array::{
    Array, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use chrono::{DateTime, Utc};
use futures_util::{pin_mut, StreamExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::statistics::Statistics;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use sentinel_aws::s3::Bucket;
use sentinel_domain::archive::ArchiveBucket;
use sentinel_domain::archive_chain::{self, ManifestNote, NOTES_PREFIX};
use sentinel_domain::checkpoint::{SignedNote, VerifierKey};
use sentinel_domain::fields::TenantId;
use sentinel_domain::manifest::{Manifest, Part, SCHEMA_VERSION};
use sentinel_domain::merkle::Hash;
use sentinel_domain::Month;

use crate::checkpoints::ValidCheckpoint;
use crate::engine::MAX_LISTED_PER_MONTH;
use crate::findings::{EventRef, Finding, Store};
use crate::pg::PgLog;
use crate::rows::{event_from_columns, Columns};
use crate::source::SourceError;
use crate::tiles::TileLog;

/// Archived rows read per batch.
const BATCH_ROWS: usize = 4096;

/// The archive bucket.
pub struct S3Archive {
    client: aws_sdk_s3::Client,
    bucket: Bucket,
}

impl S3Archive {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        let bucket = bucket.into();
        Self {
            bucket: Bucket::new(client.clone(), bucket),
            client,
        }
    }

    /// The bucket named `bucket`, with the SDK's configuration from the environment.
    pub async fn from_env(bucket: impl Into<String>) -> Self {
        let config = sentinel_aws::config().await;
        Self::new(sentinel_aws::s3::client(&config), bucket)
    }

    pub fn name(&self) -> &str {
        self.bucket.name()
    }

    fn failed(
        &self,
        what: &str,
        key: &str,
    ) -> impl Fn(sentinel_domain::archive::AdapterError) -> SourceError {
        let context = format!("could not {what} s3://{}/{key}", self.bucket.name());
        move |e| SourceError::new(&context, format!("{e:#}"))
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SourceError> {
        self.bucket.get(key).await.map_err(self.failed("read", key))
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<String>, SourceError> {
        self.bucket
            .list(prefix)
            .await
            .map_err(self.failed("list", prefix))
    }

    /// Streams the object at `key` into `path`: its SHA-256 (hex) and size, `None` if gone.
    async fn download(
        &self,
        key: &str,
        path: &std::path::Path,
    ) -> Result<Option<(String, u64)>, SourceError> {
        let context = || format!("could not read s3://{}/{key}", self.bucket.name());
        let response = match self
            .client
            .get_object()
            .bucket(self.bucket.name())
            .key(key)
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => {
                return Err(SourceError::new(
                    &context(),
                    aws_sdk_s3::error::DisplayErrorContext(e),
                ))
            }
        };
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| SourceError::new(&format!("could not create {}", path.display()), e))?;
        let mut body = response.body;
        let (mut sha, mut bytes) = (Sha256::new(), 0u64);
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| SourceError::new(&context(), e))?
        {
            sha.update(&chunk);
            bytes += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| SourceError::new(&format!("could not write {}", path.display()), e))?;
        }
        file.flush()
            .await
            .map_err(|e| SourceError::new(&format!("could not write {}", path.display()), e))?;
        Ok(Some((hex::encode(sha.finalize()), bytes)))
    }
}

/// What the archive check counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveCounts {
    pub bucket: String,
    /// Manifest notes of the chain (either store), and how many verified.
    pub notes: u64,
    pub valid_notes: u64,
    /// Archived months checked for the tenant, and their parts read.
    pub months: u64,
    pub parts: u64,
    /// Logged events of archived months compared with their archived rows, and how many
    /// matched.
    pub checked: u64,
    pub valid: u64,
}

/// What to check the archive against.
pub struct ArchiveCheck<'a> {
    pub tenant: &'a TenantId,
    pub stack: &'a str,
    /// Keys the manifest notes may be signed with (`sentinel/<stack>/archive`).
    pub keys: &'a [VerifierKey],
    /// The tenant's checkpoints that verified.
    pub checkpoints: &'a [ValidCheckpoint],
    /// Months archive_months lists as archived.
    pub archived: &'a BTreeSet<Month>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// What the archived rows are compared with.
#[derive(Clone, Copy)]
pub enum LogSource<'a> {
    /// The log's entries in PostgreSQL (`log_entries`), and the chain's copies there.
    Postgresql(&'a PgLog),
    /// The log's tiles in S3 (`--s3-only`): the chain is read from S3 alone.
    Tiles(&'a TileLog),
}

/// The newest valid note of a month.
struct MonthNote {
    seq: u64,
    manifest: Hash,
}

/// Checks the chain of manifests, then each archived month of the tenant in `[from, to)`.
pub async fn check(
    log: LogSource<'_>,
    s3: &S3Archive,
    input: &ArchiveCheck<'_>,
    findings: &mut Vec<Finding>,
) -> Result<ArchiveCounts, SourceError> {
    let mut counts = ArchiveCounts {
        bucket: s3.name().to_string(),
        ..ArchiveCounts::default()
    };
    let notes = check_chain(log, s3, input, &mut counts, findings).await?;
    let months: BTreeSet<Month> = input
        .archived
        .iter()
        .copied()
        .chain(notes.keys().copied())
        .filter(|m| {
            input.from.is_none_or(|f| m.end() > f) && input.to.is_none_or(|t| m.start() < t)
        })
        .collect();
    for month in months {
        check_month(
            log,
            s3,
            input,
            month,
            notes.get(&month),
            &mut counts,
            findings,
        )
        .await?;
    }
    Ok(counts)
}

/// The chain: both stores' copies of every note, their signatures, and their links.
async fn check_chain(
    log: LogSource<'_>,
    s3: &S3Archive,
    input: &ArchiveCheck<'_>,
    counts: &mut ArchiveCounts,
    findings: &mut Vec<Finding>,
) -> Result<BTreeMap<Month, MonthNote>, SourceError> {
    // Each note number's copies: PostgreSQL's, S3's.
    type Copies = (Option<Vec<u8>>, Option<Vec<u8>>);
    let mut copies: BTreeMap<u64, Copies> = BTreeMap::new();
    let pg_checked = matches!(log, LogSource::Postgresql(_));
    if let LogSource::Postgresql(pg) = log {
        for (seq, note) in pg.manifest_notes().await? {
            copies.entry(seq).or_default().0 = Some(note);
        }
    }
    let keys = s3
        .bucket
        .list(NOTES_PREFIX)
        .await
        .map_err(s3.failed("list", NOTES_PREFIX))?;
    for key in keys {
        match archive_chain::seq_of_key(&key) {
            Some(seq) => {
                copies.entry(seq).or_default().1 = Some(s3.get(&key).await?.unwrap_or_default())
            }
            None => findings.push(Finding::ManifestNoteInvalid {
                store: Store::S3,
                location: key,
                reason: "not the key of a manifest note".into(),
            }),
        }
    }
    let last = copies.keys().next_back().copied();
    let mut months = BTreeMap::new();
    let mut previous: Option<Vec<u8>> = None;
    for seq in last.map_or(0..0, |last| 0..last + 1) {
        counts.notes += 1;
        let (in_pg, in_s3) = copies.remove(&seq).unwrap_or_default();
        let mut missing = Vec::new();
        if in_pg.is_none() && pg_checked {
            missing.push(Store::Postgresql);
        }
        if in_s3.is_none() {
            missing.push(Store::S3);
        }
        if !missing.is_empty() {
            findings.push(Finding::ManifestNoteMissing {
                missing_from: missing,
                seq,
            });
        }
        if let (Some(a), Some(b)) = (&in_pg, &in_s3) {
            if a != b {
                findings.push(Finding::ManifestNoteCopiesDiffer { seq });
            }
        }
        let mut opened = None;
        let mut failed = false;
        for (store, copy) in [(Store::Postgresql, &in_pg), (Store::S3, &in_s3)] {
            let Some(bytes) = copy else { continue };
            match open_note(bytes, input) {
                Ok(body) => {
                    if opened.is_none() {
                        opened = Some((body, bytes.clone()));
                    }
                }
                Err(reason) => {
                    failed = true;
                    findings.push(Finding::ManifestNoteInvalid {
                        store,
                        location: match store {
                            Store::S3 => archive_chain::note_key(seq),
                            _ => format!("archive_manifests row seq={seq}"),
                        },
                        reason,
                    });
                }
            }
        }
        let Some((body, bytes)) = opened else {
            previous = None;
            continue;
        };
        if body.seq != seq {
            findings.push(Finding::ManifestChainBroken {
                seq,
                reason: format!(
                    "the note kept as number {seq} says it is number {}",
                    body.seq
                ),
            });
            failed = true;
        }
        if let (Some(named), Some(before)) = (body.previous, &previous) {
            if named != archive_chain::sha256(before) {
                findings.push(Finding::ManifestChainBroken {
                    seq,
                    reason: format!("it does not name note {} as the one before it", seq - 1),
                });
                failed = true;
            }
        }
        if !failed && in_s3.is_some() && (!pg_checked || in_pg == in_s3) {
            counts.valid_notes += 1;
        }
        months.insert(
            body.month,
            MonthNote {
                seq,
                manifest: body.manifest,
            },
        );
        previous = Some(bytes);
    }
    Ok(months)
}

fn open_note(bytes: &[u8], input: &ArchiveCheck<'_>) -> Result<ManifestNote, String> {
    let note = SignedNote::parse(bytes).map_err(|e| e.to_string())?;
    note.verify(input.keys).map_err(|e| match e {
        sentinel_domain::checkpoint::CheckpointError::NoKnownSignature => {
            "it is not signed by the archive key".to_string()
        }
        other => other.to_string(),
    })?;
    ManifestNote::parse(note.text(), input.stack)
}

/// One archived month of the tenant: its manifest, its parts, its rows against the log.
async fn check_month(
    log: LogSource<'_>,
    s3: &S3Archive,
    input: &ArchiveCheck<'_>,
    month: Month,
    note: Option<&MonthNote>,
    counts: &mut ArchiveCounts,
    findings: &mut Vec<Finding>,
) -> Result<(), SourceError> {
    let key = month.manifest_key();
    let invalid = |reason: String| Finding::ManifestInvalid {
        month: month.to_string(),
        key: key.clone(),
        reason,
    };
    let Some(bytes) = s3.get(&key).await? else {
        findings.push(invalid("NOT FOUND: deleted".into()));
        return Ok(());
    };
    match note {
        None => findings.push(invalid("no signed manifest note names it".into())),
        Some(note) if note.manifest != archive_chain::sha256(&bytes) => {
            findings.push(invalid(format!(
            "it is not the manifest its newest signed note (number {}) names: edited or replaced",
            note.seq
        )))
        }
        Some(_) => {}
    }
    let manifest: Manifest = match serde_json::from_slice(&bytes) {
        Ok(manifest) => manifest,
        Err(e) => {
            findings.push(invalid(format!("unreadable: {e}")));
            return Ok(());
        }
    };
    if manifest.schema_version < SCHEMA_VERSION {
        findings.push(Finding::ArchiveUnverifiable {
            month: month.to_string(),
            reason: format!(
                "archived with manifest schema {}, before the archive carried each row's log index and leaf hash",
                manifest.schema_version
            ),
        });
        return Ok(());
    }
    counts.months += 1;
    let tenant = input.tenant.as_str();
    if let Some(log) = manifest.log_of(tenant) {
        check_covering(input, month, log, findings);
    }
    let parts: Vec<&Part> = manifest
        .parts
        .iter()
        .filter(|p| p.logs.iter().any(|l| l.tenant_id == tenant))
        .collect();
    let mut cursors = Vec::new();
    let mut files = Vec::new();
    for part in parts {
        counts.parts += 1;
        let path = temp_path();
        let Some((sha256, size)) = s3.download(&part.key, &path).await? else {
            findings.push(Finding::PartMissing {
                month: month.to_string(),
                part: part.key.clone(),
            });
            continue;
        };
        if (sha256.as_str(), size) != (part.sha256.as_str(), part.bytes) {
            findings.push(Finding::PartReplaced {
                month: month.to_string(),
                part: part.key.clone(),
                reason: format!(
                    "it is {size} bytes with SHA-256 {sha256}; the signed manifest lists {} bytes with SHA-256 {}",
                    part.bytes, part.sha256
                ),
            });
        }
        cursors.push(PartCursor::open(
            path.clone(),
            input.tenant.clone(),
            part.key.clone(),
        ));
        files.push(path);
    }
    let result = match log {
        LogSource::Postgresql(pg) => {
            compare_rows(pg, input.tenant, month, cursors, counts, findings).await
        }
        LogSource::Tiles(tiles) => {
            compare_with_tiles(tiles, month, cursors, counts, findings).await
        }
    };
    for file in files {
        let _ = std::fs::remove_file(file);
    }
    result
}

/// The manifest's covering checkpoint must be one that verified, and cover the rows.
fn check_covering(
    input: &ArchiveCheck<'_>,
    month: Month,
    log: &sentinel_domain::manifest::TenantLog,
    findings: &mut Vec<Finding>,
) {
    let reason = match (&log.checkpoint, log.last_index) {
        (None, None) => return,
        (None, Some(_)) => "the manifest names none for the tenant's logged rows".to_string(),
        (Some(c), last) => {
            let known = input
                .checkpoints
                .iter()
                .any(|v| v.size == c.tree_size && v.root.to_base64() == c.root_hash);
            if !known {
                format!(
                    "the checkpoint of size {} with root {} is not one of the tenant's valid checkpoints",
                    c.tree_size, c.root_hash
                )
            } else if last.is_some_and(|l| c.tree_size <= l) {
                format!(
                    "the checkpoint of size {} does not cover log index {}",
                    c.tree_size,
                    last.unwrap_or_default()
                )
            } else {
                return;
            }
        }
    };
    findings.push(Finding::ArchiveCheckpointUnknown {
        month: month.to_string(),
        reason,
    });
}

fn temp_path() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "sentinel-verify-{}-{n}.parquet",
        std::process::id()
    ))
}

/// One archived row of the tenant.
struct ArchivedRow {
    index: Option<u64>,
    column_leaf: Option<Hash>,
    event_id: String,
    occurred_at: DateTime<Utc>,
    leaf: Result<Hash, String>,
}

/// The tenant's rows of one part, read on a blocking thread a batch at a time.
struct PartCursor {
    part: String,
    rx: mpsc::Receiver<Result<Vec<ArchivedRow>, String>>,
    buffered: VecDeque<ArchivedRow>,
    done: bool,
}

impl PartCursor {
    fn open(path: PathBuf, tenant: TenantId, part: String) -> Self {
        let (tx, rx) = mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = read_part(&path, &tenant, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Self {
            part,
            rx,
            buffered: VecDeque::new(),
            done: false,
        }
    }

    /// The next row's index (`u64::MAX` for a row without one), or `None` once read out.
    /// An unreadable part is named once and read no further.
    async fn peek(&mut self, month: Month, findings: &mut Vec<Finding>) -> Option<u64> {
        while self.buffered.is_empty() && !self.done {
            match self.rx.recv().await {
                Some(Ok(rows)) => self.buffered.extend(rows),
                Some(Err(reason)) => {
                    findings.push(Finding::PartReplaced {
                        month: month.to_string(),
                        part: self.part.clone(),
                        reason: format!("it cannot be read as the archive's Parquet: {reason}"),
                    });
                    self.done = true;
                }
                None => self.done = true,
            }
        }
        self.buffered.front().map(|r| r.index.unwrap_or(u64::MAX))
    }
}

/// Sends the tenant's rows of the Parquet file at `path`, reading only the row groups whose
/// `tenant_id` statistics may hold it.
fn read_part(
    path: &std::path::Path,
    tenant: &TenantId,
    tx: &mpsc::Sender<Result<Vec<ArchivedRow>, String>>,
) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let tenant_column = builder
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.name() == "tenant_id")
        .ok_or("it has no tenant_id column")?;
    let wanted = tenant.as_str().as_bytes();
    let groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(
            |(_, group)| match group.column(tenant_column).statistics() {
                Some(Statistics::ByteArray(s)) => match (s.min_opt(), s.max_opt()) {
                    (Some(lo), Some(hi)) => lo.data() <= wanted && wanted <= hi.data(),
                    _ => true,
                },
                _ => true,
            },
        )
        .map(|(i, _)| i)
        .collect();
    let reader = builder
        .with_row_groups(groups)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let rows = rows_of(&batch, tenant.as_str())?;
        if !rows.is_empty() && tx.blocking_send(Ok(rows)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("its {name} column is missing or of another type"))
}

/// The tenant's rows of a batch, each with its leaf recomputed.
fn rows_of(batch: &RecordBatch, tenant: &str) -> Result<Vec<ArchivedRow>, String> {
    let text = |name: &str| column::<StringArray>(batch, name);
    let time = |name: &str| column::<TimestampMicrosecondArray>(batch, name);
    let (ids, tenants, actors, actor_types) = (
        text("id")?,
        text("tenant_id")?,
        text("actor_id")?,
        text("actor_type")?,
    );
    let (actions, resource_types, resource_ids) = (
        text("action")?,
        text("resource_type")?,
        text("resource_id")?,
    );
    let (changes, metadata) = (text("changes")?, text("metadata")?);
    let (occurred, received) = (time("occurred_at")?, time("received_at")?);
    let indexes = column::<Int64Array>(batch, "log_index")?;
    let hashes = column::<FixedSizeBinaryArray>(batch, "leaf_hash")?;
    let at = |array: &TimestampMicrosecondArray, i: usize| {
        DateTime::from_timestamp_micros(array.value(i)).ok_or("a time out of range".to_string())
    };
    let mut rows = Vec::new();
    for i in 0..batch.num_rows() {
        if tenants.is_null(i) || tenants.value(i) != tenant {
            continue;
        }
        let occurred_at = at(occurred, i)?;
        let json = |array: &StringArray, name: &str| -> Result<serde_json::Value, String> {
            serde_json::from_str(array.value(i)).map_err(|e| format!("{name} is not JSON: {e}"))
        };
        let leaf = (|| {
            let event = event_from_columns(Columns {
                id: ids.value(i),
                tenant_id: tenants.value(i),
                occurred_at,
                received_at: at(received, i)?,
                actor_id: actors.value(i),
                actor_type: (!actor_types.is_null(i)).then(|| actor_types.value(i)),
                action: actions.value(i),
                resource_type: resource_types.value(i),
                resource_id: resource_ids.value(i),
                changes: json(changes, "changes")?,
                metadata: json(metadata, "metadata")?,
            })?;
            Ok(event.leaf_hash())
        })();
        rows.push(ArchivedRow {
            // The part's leaf_hash column is stored bytes too: it must be the log's leaf.
            column_leaf: (!hashes.is_null(i))
                .then(|| Hash::from_slice(hashes.value(i)).ok())
                .flatten(),
            index: (!indexes.is_null(i) && indexes.value(i) >= 0).then(|| indexes.value(i) as u64),
            event_id: ids.value(i).to_string(),
            occurred_at,
            leaf,
        });
    }
    Ok(rows)
}

/// Findings of one kind listed per month, then counted.
struct Listed {
    kind: &'static str,
    listed: usize,
    more: u64,
}

impl Listed {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            listed: 0,
            more: 0,
        }
    }

    fn push(&mut self, findings: &mut Vec<Finding>, finding: Finding) {
        if self.listed < MAX_LISTED_PER_MONTH {
            self.listed += 1;
            findings.push(finding);
        } else {
            self.more += 1;
        }
    }

    fn finish(self, findings: &mut Vec<Finding>) {
        if self.more > 0 {
            findings.push(Finding::NotListed {
                of_kind: self.kind.into(),
                more: self.more,
            });
        }
    }
}

/// The cursor whose next row has the smallest index.
async fn lowest(
    cursors: &mut [PartCursor],
    month: Month,
    findings: &mut Vec<Finding>,
) -> Option<(usize, u64)> {
    let mut best: Option<(usize, u64)> = None;
    for (n, cursor) in cursors.iter_mut().enumerate() {
        if let Some(index) = cursor.peek(month, findings).await {
            if best.is_none_or(|(_, b)| index < b) {
                best = Some((n, index));
            }
        }
    }
    best
}

/// Merges the parts' rows by log index and looks each up in the log's tiles: its leaf,
/// recomputed from the row, and its `leaf_hash` column must be the leaf the tiles hold at
/// its index (and the tiles' leaves are held to the signed roots by [`crate::tiles::read`]).
async fn compare_with_tiles(
    tiles: &TileLog,
    month: Month,
    mut cursors: Vec<PartCursor>,
    counts: &mut ArchiveCounts,
    findings: &mut Vec<Finding>,
) -> Result<(), SourceError> {
    let mut edited = Listed::new("archived_row_edited");
    let mut inserted = Listed::new("archived_row_inserted");
    let mut beyond = 0u64;
    let mut last: Option<u64> = None;
    while let Some((n, _)) = lowest(&mut cursors, month, findings).await {
        let row = cursors[n].buffered.pop_front().expect("peeked");
        let part = cursors[n].part.clone();
        let event = EventRef {
            event_id: row.event_id.clone(),
            log_index: row.index,
            month: Month::of(row.occurred_at).to_string(),
        };
        counts.checked += 1;
        // A row without an index, or a second row at one index, is not the log's.
        let Some(index) = row.index.filter(|&i| last != Some(i)) else {
            inserted.push(findings, Finding::ArchivedRowInserted { event, part });
            continue;
        };
        last = Some(index);
        let Some(logged) = tiles.leaf(index)? else {
            beyond += 1;
            continue;
        };
        match &row.leaf {
            Ok(leaf) if *leaf == logged && row.column_leaf == Some(logged) => counts.valid += 1,
            Ok(_) => edited.push(findings, Finding::ArchivedRowEdited { event, part }),
            Err(reason) => edited.push(
                findings,
                Finding::ArchivedRowUnreadable {
                    event,
                    part,
                    reason: reason.clone(),
                },
            ),
        }
    }
    edited.finish(findings);
    inserted.finish(findings);
    if beyond > 0 {
        findings.push(Finding::ArchiveUnverifiable {
            month: month.to_string(),
            reason: format!(
                "{beyond} archived rows have log indexes past the {} leaves of the log's tiles in S3",
                tiles.size()
            ),
        });
    }
    Ok(())
}

/// Merges the parts' rows by log index and walks them beside the month's log entries.
async fn compare_rows(
    pg: &PgLog,
    tenant: &TenantId,
    month: Month,
    mut cursors: Vec<PartCursor>,
    counts: &mut ArchiveCounts,
    findings: &mut Vec<Finding>,
) -> Result<(), SourceError> {
    let mut edited = Listed::new("archived_row_edited");
    let mut missing = Listed::new("archived_row_missing");
    let mut inserted = Listed::new("archived_row_inserted");
    let event = |id: &str, index: Option<u64>, at: DateTime<Utc>| EventRef {
        event_id: id.to_string(),
        log_index: index,
        month: Month::of(at).to_string(),
    };
    let entries = pg.month_entries(tenant, month).await?;
    pin_mut!(entries);
    loop {
        let entry = entries
            .next()
            .await
            .transpose()
            .map_err(|e| SourceError::new("could not read the log", e))?;
        let next_logged = entry.as_ref().map(|r| r.get::<_, i64>(0).max(0) as u64);
        // Archived rows before this entry's index (or after the last one) are not the log's.
        while let Some((n, index)) = lowest(&mut cursors, month, findings).await {
            if next_logged.is_some_and(|logged| index >= logged) {
                break;
            }
            let row = cursors[n].buffered.pop_front().expect("peeked");
            inserted.push(
                findings,
                Finding::ArchivedRowInserted {
                    event: event(&row.event_id, row.index, row.occurred_at),
                    part: cursors[n].part.clone(),
                },
            );
        }
        let Some(entry) = entry else { break };
        let index = entry.get::<_, i64>(0).max(0) as u64;
        let logged = Hash::from_slice(entry.get(1)).ok();
        let event_id: String = entry.get(2);
        let in_postgresql: bool = entry.get(3);
        match lowest(&mut cursors, month, findings).await {
            Some((n, at)) if at == index => {
                let row = cursors[n].buffered.pop_front().expect("peeked");
                let part = cursors[n].part.clone();
                counts.checked += 1;
                let reference = event(&event_id, Some(index), row.occurred_at);
                match &row.leaf {
                    Ok(leaf)
                        if Some(*leaf) == logged
                            && row.column_leaf == logged
                            && row.event_id == event_id =>
                    {
                        counts.valid += 1
                    }
                    Ok(_) if row.event_id != event_id => inserted.push(
                        findings,
                        Finding::ArchivedRowInserted {
                            event: event(&row.event_id, row.index, row.occurred_at),
                            part,
                        },
                    ),
                    Ok(_) => edited.push(
                        findings,
                        Finding::ArchivedRowEdited {
                            event: reference,
                            part,
                        },
                    ),
                    Err(reason) => edited.push(
                        findings,
                        Finding::ArchivedRowUnreadable {
                            event: reference,
                            part,
                            reason: reason.clone(),
                        },
                    ),
                }
            }
            // The row is still in PostgreSQL (a late batch not archived yet): checked there.
            _ if in_postgresql => {}
            _ => {
                counts.checked += 1;
                missing.push(
                    findings,
                    Finding::ArchivedRowMissing {
                        event: EventRef {
                            event_id,
                            log_index: Some(index),
                            month: month.to_string(),
                        },
                    },
                );
            }
        }
    }
    edited.finish(findings);
    missing.finish(findings);
    inserted.finish(findings);
    Ok(())
}
