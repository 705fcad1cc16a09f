//! The Kinesis-triggered writer: decodes a batch, stores it idempotently, quarantines poison
//! records, and reports the records worth retrying as `batchItemFailures`.

use std::future::Future;
use std::pin::Pin;

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use lambda_runtime::{Error, LambdaEvent};
use sentinel_domain::event::HashedEvent;
use sentinel_domain::store::{EventStore, RejectedRecord, StoreError};
use sentinel_lambda::metrics::{Metrics, Unit};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where a decoded event came from: what to report if it must be retried, and how to name
/// it in the quarantine.
struct Origin {
    sequence_number: String,
    source: String,
}

/// A record to quarantine; `sequence_number` is absent when the record was too broken to name.
struct Poison {
    sequence_number: Option<String>,
    record: RejectedRecord,
}

/// What became of one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub records: usize,
    pub stored: u64,
    pub duplicates: u64,
    /// Copies of stored ids with other content, newly kept as conflicts.
    pub conflicts: u64,
    pub quarantined: usize,
    pub failed: usize,
    /// How far behind the stream the batch was when it arrived: now minus its oldest
    /// record's `approximateArrivalTimestamp` (the Kinesis iterator age), in milliseconds.
    pub iterator_age_ms: Option<u64>,
    /// For each event of a batch written whole: the time it was committed minus its
    /// `received_at` (ingest's clock), in milliseconds. Empty if any record is retried.
    pub ingest_to_stored_ms: Vec<u64>,
}

impl BatchSummary {
    fn add(&mut self, outcome: &Outcome) {
        self.stored += outcome.stored;
        self.duplicates += outcome.duplicates;
        self.conflicts += outcome.conflicts;
    }
}

/// Lambda entry point: takes the raw payload so a malformed record cannot fail the batch.
pub async fn handler(
    store: &dyn EventStore,
    event: LambdaEvent<Value>,
) -> Result<KinesisEventResponse, Error> {
    let started = std::time::Instant::now();
    let (response, summary) = process(store, event.payload).await?;
    metrics(&summary, started.elapsed()).emit();
    tracing::info!(
        request_id = %event.context.request_id,
        records = summary.records,
        stored = summary.stored,
        duplicates = summary.duplicates,
        conflicts = summary.conflicts,
        quarantined = summary.quarantined,
        failed = summary.failed,
        "batch processed"
    );
    if summary.conflicts > 0 {
        tracing::warn!(
            conflicts = summary.conflicts,
            "events repeated a stored id with other content; kept in event_conflicts, not stored"
        );
    }
    Ok(response)
}

/// The batch's metrics (EMF): what became of its records, how long it took, how far behind
/// the stream it was, and each stored event's time from ingest's 202 to its commit.
pub fn metrics(summary: &BatchSummary, took: std::time::Duration) -> Metrics {
    let mut m = Metrics::new("writer");
    m.put("Records", Unit::Count, summary.records as f64)
        .put("EventsStored", Unit::Count, summary.stored as f64)
        .put("Duplicates", Unit::Count, summary.duplicates as f64)
        .put("Conflicts", Unit::Count, summary.conflicts as f64)
        .put("Quarantined", Unit::Count, summary.quarantined as f64)
        .put("RecordsRetried", Unit::Count, summary.failed as f64)
        .put("BatchTime", Unit::Milliseconds, took.as_secs_f64() * 1000.0)
        .put_all(
            "IteratorAge",
            Unit::Milliseconds,
            summary.iterator_age_ms.iter().map(|&a| a as f64).collect(),
        )
        .put_all(
            "IngestToStored",
            Unit::Milliseconds,
            summary
                .ingest_to_stored_ms
                .iter()
                .map(|&a| a as f64)
                .collect(),
        );
    m
}

/// Batches of at least this many records are decoded in two parts, and the store writes the
/// first part while the second is decoded on another thread, in one transaction. Smaller
/// ones are written in one statement: the overlap would gain less than a second costs.
pub const PIPELINE_MIN_RECORDS: usize = 200;
/// The first part's share of a pipelined batch, in percent. Storing an event takes several
/// times as long as decoding one (BENCHMARKS.md), so a fifth of the batch keeps the
/// database busy while the other four fifths are decoded.
const PIPELINE_FIRST_PERCENT: usize = 20;

/// The decoded part of a batch.
#[derive(Default)]
struct Decoded {
    /// With their leaf hashes, hashed here from the records (off the store's path when the
    /// batch is split).
    events: Vec<HashedEvent>,
    origins: Vec<Origin>,
    poison: Vec<Poison>,
}

/// Decodes `records`, the batch's records from index `first` on.
fn decode_all(first: usize, records: &[Value]) -> Decoded {
    let mut part = Decoded {
        events: Vec::with_capacity(records.len()),
        origins: Vec::with_capacity(records.len()),
        poison: Vec::new(),
    };
    for (offset, raw) in records.iter().enumerate() {
        match decode(first + offset, raw) {
            Ok((event, origin)) => {
                part.events.push(event);
                part.origins.push(origin);
            }
            Err(bad) => part.poison.push(bad),
        }
    }
    part
}

/// Processes one KinesisEvent payload.
///
/// A large batch is written in two parts in one transaction: the first while the second is
/// decoded on another thread. Records are written in stream order, so the first copy of a
/// repeated id still wins; the batch commits once, or not at all.
pub async fn process(
    store: &dyn EventStore,
    mut payload: Value,
) -> Result<(KinesisEventResponse, BatchSummary), Error> {
    let Some(Value::Array(records)) = payload.get_mut("Records").map(Value::take) else {
        return Err("payload is not a Kinesis event: it has no Records array".into());
    };
    drop(payload);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let oldest_arrival = records
        .iter()
        .filter_map(|r| {
            r.get("kinesis")?
                .get("approximateArrivalTimestamp")?
                .as_f64()
        })
        .reduce(f64::min);
    let mut summary = BatchSummary {
        records: records.len(),
        iterator_age_ms: oldest_arrival.map(|at| (now_ms as f64 - at * 1000.0).max(0.0) as u64),
        ..Default::default()
    };
    let mut received: Vec<i64> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut poison = Vec::new();

    let (mut first, rest) = if records.len() >= PIPELINE_MIN_RECORDS {
        let mut head = records;
        let tail = head.split_off(head.len() * PIPELINE_FIRST_PERCENT / 100);
        let offset = head.len();
        let span = tracing::Span::current();
        // The raw records are dropped on that thread too.
        let rest = tokio::task::spawn_blocking(move || span.in_scope(|| decode_all(offset, &tail)));
        (decode_all(0, &head), Some(rest))
    } else {
        (decode_all(0, &records), None)
    };
    poison.append(&mut first.poison);
    received.extend(
        first
            .events
            .iter()
            .map(|e| e.event().received_at.get().timestamp_millis()),
    );
    match rest {
        None => {
            let outcome = store_isolating(store, &first.events, &first.origins).await;
            summary.add(&outcome);
            failed.extend(outcome.retry);
            poison.extend(outcome.poison);
        }
        Some(rest) => {
            // Both parts in one transaction: the first is written while the second decodes,
            // and the batch commits once.
            let mut transaction = store.begin().await;
            let first_write = match &mut transaction {
                Ok(transaction) => transaction.write(&first.events).await,
                Err(_) => Ok(()),
            };
            let mut second = rest
                .await
                .map_err(|error| format!("decoding the batch's second part failed: {error}"))?;
            poison.append(&mut second.poison);
            received.extend(
                second
                    .events
                    .iter()
                    .map(|e| e.event().received_at.get().timestamp_millis()),
            );
            let together = match (transaction, first_write) {
                (Ok(mut transaction), Ok(())) => match transaction.write(&second.events).await {
                    Ok(()) => transaction.commit().await,
                    Err(error) => Err(error),
                },
                (Ok(_), Err(error)) | (Err(error), _) => Err(error),
            };
            match together {
                Ok(report) => {
                    summary.stored += report.inserted;
                    summary.duplicates += report.duplicates;
                    summary.conflicts += report.conflicts;
                }
                Err(error @ StoreError::Unavailable(_)) => {
                    tracing::error!(%error, records = summary.records, "storage unavailable; reporting the batch for retry");
                    failed.extend(first.origins.iter().map(|o| o.sequence_number.clone()));
                    failed.extend(second.origins.iter().map(|o| o.sequence_number.clone()));
                }
                // Some event was refused: nothing of the transaction was kept. Each part is
                // written again on its own, halving until the refused events are alone.
                Err(StoreError::Refused(reason)) => {
                    tracing::warn!(%reason, "database refused part of the batch; isolating it");
                    for part in [&first, &second] {
                        let outcome = store_isolating(store, &part.events, &part.origins).await;
                        summary.add(&outcome);
                        failed.extend(outcome.retry);
                        poison.extend(outcome.poison);
                    }
                }
            }
        }
    }

    if !poison.is_empty() {
        for bad in &poison {
            tracing::warn!(
                sequence_number = bad.sequence_number.as_deref().unwrap_or("unknown"),
                reason = %bad.record.reason,
                "quarantining a record that can never be stored"
            );
        }
        let rejected: Vec<RejectedRecord> = poison.iter().map(|p| p.record.clone()).collect();
        match store.quarantine(&rejected).await {
            Ok(_) => summary.quarantined = poison.len(),
            Err(error) => {
                tracing::error!(%error, "failed to quarantine poison records; they will be retried");
                for bad in &poison {
                    match &bad.sequence_number {
                        Some(seq) => failed.push(seq.clone()),
                        // A record we cannot even name can only be retried with its batch.
                        None => {
                            return Err(
                                format!("failed to quarantine an unnamed record: {error}").into()
                            )
                        }
                    }
                }
            }
        }
    }

    summary.failed = failed.len();
    if failed.is_empty() {
        let stored_ms = chrono::Utc::now().timestamp_millis();
        summary.ingest_to_stored_ms = received
            .iter()
            .map(|r| (stored_ms - r).max(0) as u64)
            .collect();
    }
    let mut response = KinesisEventResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|seq| {
            let mut failure = KinesisBatchItemFailure::default();
            failure.item_identifier = Some(seq);
            failure
        })
        .collect();
    Ok((response, summary))
}

/// Decodes one Kinesis record of the raw payload: only the three members the writer needs
/// are read, in place, so a malformed record costs nothing to the rest of the batch.
fn decode(index: usize, raw: &Value) -> Result<(HashedEvent, Origin), Poison> {
    let source = raw
        .get("eventSourceARN")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    // Plain lookups: `Value::pointer` allocates for every path segment, which cost more per
    // record than base64 did (see BENCHMARKS.md).
    let kinesis = raw.get("kinesis");
    let sequence_number = kinesis
        .and_then(|k| k.get("sequenceNumber"))
        .and_then(Value::as_str);
    let span = tracing::debug_span!(
        "record",
        index,
        sequence_number = sequence_number.unwrap_or("")
    );
    let _entered = span.enter();

    let data = kinesis.and_then(|k| k.get("data")).and_then(Value::as_str);
    let (Some(sequence_number), Some(data)) = (sequence_number, data) else {
        return Err(unnamed_poison(
            raw,
            source,
            sequence_number.map(str::to_string),
            "undecodable Kinesis record: it has no kinesis.sequenceNumber or kinesis.data string",
        ));
    };
    let sequence_number = sequence_number.to_string();
    let data = match BASE64.decode(data) {
        Ok(data) => data,
        Err(error) => {
            let reason = format!("undecodable Kinesis record: kinesis.data is not base64: {error}");
            return Err(unnamed_poison(raw, source, Some(sequence_number), &reason));
        }
    };
    // The leaf hash of the record itself: decode accepts only the canonical encoding.
    match HashedEvent::decode(&data) {
        Ok(event) => Ok((
            event,
            Origin {
                sequence_number,
                source,
            },
        )),
        Err(error) => Err(Poison {
            sequence_number: Some(sequence_number.clone()),
            record: RejectedRecord {
                source,
                record_key: sequence_number,
                reason: error.to_string(),
                payload: data,
            },
        }),
    }
}

/// A record whose data could not be read: the whole raw record is kept.
fn unnamed_poison(
    raw: &Value,
    source: String,
    sequence_number: Option<String>,
    reason: &str,
) -> Poison {
    let payload = serde_json::to_vec(raw).unwrap_or_default();
    Poison {
        record: RejectedRecord {
            record_key: sequence_number
                .clone()
                .unwrap_or_else(|| format!("unnamed:{}", hex::encode(Sha256::digest(&payload)))),
            source,
            reason: reason.to_string(),
            payload,
        },
        sequence_number,
    }
}

#[derive(Default)]
struct Outcome {
    stored: u64,
    duplicates: u64,
    conflicts: u64,
    retry: Vec<String>,
    poison: Vec<Poison>,
}

/// Stores the batch in one write. If the database refuses the data itself, halves the batch
/// until the refused events are alone, so one bad event cannot hold back the rest.
fn store_isolating<'a>(
    store: &'a dyn EventStore,
    events: &'a [HashedEvent],
    origins: &'a [Origin],
) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
    Box::pin(async move {
        if events.is_empty() {
            return Outcome::default();
        }
        match store.store_hashed(events).await {
            Ok(report) => Outcome {
                stored: report.inserted,
                duplicates: report.duplicates,
                conflicts: report.conflicts,
                ..Default::default()
            },
            Err(error @ StoreError::Unavailable(_)) => {
                tracing::error!(%error, records = events.len(), "storage unavailable; reporting the batch for retry");
                Outcome {
                    retry: origins.iter().map(|o| o.sequence_number.clone()).collect(),
                    ..Default::default()
                }
            }
            Err(StoreError::Refused(reason)) if events.len() == 1 => {
                let origin = &origins[0];
                Outcome {
                    poison: vec![Poison {
                        sequence_number: Some(origin.sequence_number.clone()),
                        record: RejectedRecord {
                            source: origin.source.clone(),
                            record_key: origin.sequence_number.clone(),
                            reason: format!("refused by the database: {reason}"),
                            payload: events[0].encode(),
                        },
                    }],
                    ..Default::default()
                }
            }
            Err(StoreError::Refused(reason)) => {
                tracing::warn!(%reason, records = events.len(), "database refused part of the batch; isolating it");
                let half = events.len() / 2;
                let mut outcome = store_isolating(store, &events[..half], &origins[..half]).await;
                let more = store_isolating(store, &events[half..], &origins[half..]).await;
                outcome.stored += more.stored;
                outcome.duplicates += more.duplicates;
                outcome.conflicts += more.conflicts;
                outcome.retry.extend(more.retry);
                outcome.poison.extend(more.poison);
                outcome
            }
        }
    })
}
