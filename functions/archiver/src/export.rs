//! Streams a month out of PostgreSQL into zstd Parquet files uploaded to S3.
//!
//! Three stages run at once, joined by bounded channels, so memory stays bounded by one
//! row group plus a few chunks whatever the month's size:
//! - the reader decodes PostgreSQL's binary COPY into Arrow record batches;
//! - the encoder, on a blocking thread, writes them into Parquet files of at most
//!   `part_rows` rows, handing out the bytes in chunks as the writer produces them (even
//!   while a row group is being flushed);
//! - the uploader sends each chunk as a part of the file's S3 multipart upload.
//!
//! The rows come through [`MonthRows`], implemented here for the PostgreSQL ledger's held
//! month (binary COPY on the connection that holds the month's lock), and the files go to
//! any [`ArchiveBucket`].

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use arrow_array::RecordBatch;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::{pin_mut, TryStreamExt};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyOutStream;

use crate::parquet_file::{self, BatchBuilder, RowStats};
use crate::{database, storage, ArchiveError, Tuning};
use sentinel_aws::s3::MIN_PART_BYTES;
use sentinel_domain::archive::{AdapterError, ArchiveBucket, HeldMonth, MultipartUpload};
use sentinel_domain::manifest::Part;
use sentinel_domain::Month;
use sentinel_postgres::archive::PgHeldMonth;

/// The rows of a held month, for its export.
#[async_trait]
pub trait MonthRows: HeldMonth {
    /// Sends every row the database holds for the month into `out` as Arrow record batches
    /// of at most `batch_rows` rows ([`parquet_file::schema`]): one consistent snapshot, in
    /// an order that gives the same batches for the same rows. Stops early, without an
    /// error, once `out` is closed.
    async fn stream_rows(
        &mut self,
        batch_rows: usize,
        out: mpsc::Sender<RecordBatch>,
    ) -> Result<(), AdapterError>;
}

#[async_trait]
impl MonthRows for PgHeldMonth {
    /// One `COPY … TO STDOUT (FORMAT binary)` in a read-only repeatable-read transaction:
    /// one snapshot of the rows and their log entries, streamed with backpressure, sorted
    /// ([`parquet_file::copy_sql`]), so the same rows always give the same bytes.
    async fn stream_rows(
        &mut self,
        batch_rows: usize,
        out: mpsc::Sender<RecordBatch>,
    ) -> Result<(), AdapterError> {
        let month = self.month();
        let tx = self
            .client()
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        tx.batch_execute(
            "SET LOCAL synchronize_seqscans = off; SET LOCAL max_parallel_workers_per_gather = 0",
        )
        .await?;
        let sql = parquet_file::copy_sql(month.start(), month.end());
        let stream = tx.copy_out(sql.as_str()).await?;
        let rows = BinaryCopyOutStream::new(stream, &parquet_file::COPY_TYPES);
        pin_mut!(rows);
        let mut builder = BatchBuilder::new();
        while let Some(row) = rows.try_next().await? {
            builder.push(&row)?;
            if builder.len() >= batch_rows && out.send(builder.finish()).await.is_err() {
                // The encoder stopped; it reports why.
                return Ok(());
            }
        }
        if !builder.is_empty() {
            let _ = out.send(builder.finish()).await;
        }
        drop(out);
        tx.commit().await?;
        Ok(())
    }
}

/// What one export wrote: its parts, in order.
pub struct Exported {
    pub parts: Vec<Part>,
    pub rows: u64,
    pub bytes: u64,
}

/// What the encoder hands the uploader, in order.
enum Encoded {
    /// A new Parquet file begins.
    Start { index: usize },
    /// The file's next bytes: chunks of the chunk size, the last one shorter.
    Chunk(Vec<u8>),
    /// The file is complete: its writer was closed and every byte sent.
    End(RowStats),
}

fn micros(value: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(value)
        .single()
        .expect("PostgreSQL timestamps are in chrono's range")
}

fn stopped() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the uploader stopped")
}

/// The Parquet writer's sink: cuts the bytes into chunks and passes each full one on,
/// waiting while the uploader is busy.
#[derive(Clone)]
struct ChunkSink {
    state: Arc<Mutex<Vec<u8>>>,
    size: usize,
    out: mpsc::Sender<Encoded>,
}

impl ChunkSink {
    fn new(size: usize, out: mpsc::Sender<Encoded>) -> Self {
        Self {
            state: Arc::new(Mutex::new(Vec::new())),
            size,
            out,
        }
    }

    /// Passes on the last, partial chunk once the writer is closed.
    fn finish(&self) -> std::io::Result<()> {
        let rest = std::mem::take(&mut *self.state.lock().expect("sink lock"));
        if !rest.is_empty() {
            self.out
                .blocking_send(Encoded::Chunk(rest))
                .map_err(|_| stopped())?;
        }
        Ok(())
    }
}

impl Write for ChunkSink {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            let full = {
                let mut current = self.state.lock().expect("sink lock");
                if current.capacity() == 0 {
                    current.reserve_exact(self.size);
                }
                let n = buf.len().min(self.size - current.len());
                current.extend_from_slice(&buf[..n]);
                buf = &buf[n..];
                (current.len() == self.size).then(|| std::mem::take(&mut *current))
            };
            if let Some(chunk) = full {
                self.out
                    .blocking_send(Encoded::Chunk(chunk))
                    .map_err(|_| stopped())?;
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Only whole chunks go out before the end: S3 parts but the last are at least 5 MiB.
        Ok(())
    }
}

/// The encoder: batches in, Parquet files out, numbered from `first_part`.
fn encode(
    mut batches: mpsc::Receiver<RecordBatch>,
    out: mpsc::Sender<Encoded>,
    first_part: usize,
    tuning: Tuning,
    properties: WriterProperties,
) -> Result<(), ArchiveError> {
    let parquet = |e: parquet::errors::ParquetError| ArchiveError::Internal(e.into());
    let send = |message: Encoded| {
        out.blocking_send(message)
            .map_err(|_| ArchiveError::Internal(anyhow!("the uploader stopped")))
    };
    let close = |(writer, sink, stats): (ArrowWriter<ChunkSink>, ChunkSink, RowStats)| {
        if !stats.tenants_in_order() {
            return Err(ArchiveError::Internal(anyhow!(
                "the month's rows did not come sorted by tenant"
            )));
        }
        // The footer is written by close(); only then is the file whole.
        writer.close().map_err(parquet)?;
        sink.finish()
            .map_err(|e| ArchiveError::Internal(e.into()))?;
        send(Encoded::End(stats))
    };
    let chunk_bytes = tuning.upload_chunk_bytes.max(MIN_PART_BYTES);
    let mut current: Option<(ArrowWriter<ChunkSink>, ChunkSink, RowStats)> = None;
    let mut index = first_part;
    while let Some(mut batch) = batches.blocking_recv() {
        while batch.num_rows() > 0 {
            if current.is_none() {
                send(Encoded::Start { index })?;
                let sink = ChunkSink::new(chunk_bytes, out.clone());
                let writer = ArrowWriter::try_new(
                    sink.clone(),
                    parquet_file::schema(),
                    Some(properties.clone()),
                )
                .map_err(parquet)?;
                current = Some((writer, sink, RowStats::default()));
            }
            let (writer, _, stats) = current.as_mut().expect("an open file");
            let room = (tuning.part_rows - stats.rows) as usize;
            let take = batch.num_rows().min(room);
            let head = batch.slice(0, take);
            batch = batch.slice(take, batch.num_rows() - take);
            stats.add(&head);
            writer.write(&head).map_err(parquet)?;
            if stats.rows >= tuning.part_rows {
                close(current.take().expect("an open file"))?;
                index += 1;
            }
        }
    }
    if let Some(open) = current.take() {
        close(open)?;
    }
    Ok(())
}

/// The uploader: one multipart upload per file, chunk by chunk.
async fn upload<B: ArchiveBucket>(
    mut encoded: mpsc::Receiver<Encoded>,
    bucket: &B,
    month: Month,
    batch: u32,
    tuning: &Tuning,
) -> Result<Vec<Part>, ArchiveError> {
    let mut parts = Vec::new();
    let mut open: Option<B::Upload> = None;
    let result = async {
        while let Some(message) = encoded.recv().await {
            match message {
                Encoded::Start { index } => {
                    let upload = bucket
                        .upload(&month.part_key(index), tuning.uploads_in_flight)
                        .await
                        .map_err(storage)?;
                    open = Some(upload);
                }
                Encoded::Chunk(chunk) => {
                    let upload = open.as_mut().expect("a chunk belongs to a file");
                    upload.send(chunk).await.map_err(storage)?;
                }
                Encoded::End(stats) => {
                    let upload = open.take().expect("a file ends after it starts");
                    let key = upload.key().to_string();
                    let (sha256, bytes) = upload.complete().await.map_err(storage)?;
                    parts.push(Part {
                        key,
                        rows: stats.rows,
                        bytes,
                        sha256,
                        min_occurred_at: micros(stats.min_occurred_at.expect("a part has rows")),
                        max_occurred_at: micros(stats.max_occurred_at.expect("a part has rows")),
                        min_id: stats.min_id.expect("a part has rows"),
                        max_id: stats.max_id.expect("a part has rows"),
                        batch,
                        logs: stats.logs,
                    });
                }
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(parts),
        Err(error) => {
            if let Some(upload) = open {
                upload.abort().await;
            }
            Err(error)
        }
    }
}

/// Exports every row the database holds for the held month as parts numbered from
/// `first_part`.
pub async fn export<R: MonthRows, B: ArchiveBucket>(
    rows: &mut R,
    bucket: &B,
    batch: u32,
    first_part: usize,
    tuning: &Tuning,
) -> Result<Exported, ArchiveError> {
    let month = rows.month();
    let (batch_tx, batch_rx) = mpsc::channel::<RecordBatch>(2);
    let (encoded_tx, encoded_rx) = mpsc::channel::<Encoded>(1);
    let properties = parquet_file::writer_properties(
        tuning.row_group_rows,
        tuning.row_group_bytes,
        tuning.zstd_level,
    );
    let encoder = {
        let tuning = tuning.clone();
        tokio::task::spawn_blocking(move || {
            encode(batch_rx, encoded_tx, first_part, tuning, properties)
        })
    };
    let read = async {
        rows.stream_rows(tuning.batch_rows, batch_tx)
            .await
            .map_err(database)
    };
    let encode = async {
        encoder
            .await
            .map_err(|e| ArchiveError::Internal(anyhow!("the encoder failed: {e}")))?
    };
    let (_, parts, _) = tokio::try_join!(
        read,
        upload(encoded_rx, bucket, month, batch, tuning),
        encode
    )?;
    Ok(Exported {
        rows: parts.iter().map(|p| p.rows).sum(),
        bytes: parts.iter().map(|p| p.bytes).sum(),
        parts,
    })
}
