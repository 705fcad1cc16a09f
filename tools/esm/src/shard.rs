//! One shard: read in order, batch, invoke, checkpoint, retry.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::SdkError;
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_kinesis::types::ShardIteratorType;
use tracing::{debug, error, info, instrument, warn};

use crate::checkpoint::CheckpointStore;
use crate::config::EsmConfig;
use crate::event::{
    compare_sequence_numbers, kinesis_event_json, parse_batch_response, BatchOutcome, EventSource,
    ShardRecord,
};
use crate::invoke::Invoker;

/// The most records one GetRecords call is asked for (Kinesis allows up to 10000).
const GET_RECORDS_LIMIT: usize = 1000;

/// What every shard task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub kinesis: aws_sdk_kinesis::Client,
    pub invoker: Invoker,
    pub config: EsmConfig,
    pub stream_arn: String,
    pub region: String,
    pub invoke_identity_arn: String,
    pub checkpoints: CheckpointStore,
}

/// Where the next read of a shard starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Position {
    TrimHorizon,
    Latest,
    After(String),
    At(String),
}

impl Position {
    fn is_after_a_record(&self) -> bool {
        matches!(self, Position::After(_))
    }

    /// Whether a record with this sequence number may be read from this position.
    fn precedes(&self, sequence_number: &str) -> bool {
        match self {
            Position::TrimHorizon | Position::Latest => true,
            Position::After(seq) => {
                compare_sequence_numbers(sequence_number, seq) == Ordering::Greater
            }
            Position::At(seq) => compare_sequence_numbers(sequence_number, seq) != Ordering::Less,
        }
    }
}

pub(crate) use sentinel_domain::backoff::exponential as backoff;

/// Processes a shard until it is closed and fully delivered. Only a checkpoint that cannot
/// be written ends it early with an error; the caller cancels it on shutdown, which is safe at
/// any await point because a checkpoint is written only after its batch succeeded.
#[instrument(name = "shard", skip_all, fields(shard = %shard_id))]
pub(crate) async fn run_shard(
    shared: Arc<Shared>,
    shard_id: String,
    start: Position,
) -> anyhow::Result<()> {
    let mut reader = ShardReader::new(shared.clone(), shard_id.clone(), start);
    let mut attempts: u32 = 0;
    loop {
        let batch = reader.next_batch().await;
        if batch.is_empty() {
            info!("shard is closed and fully processed");
            return Ok(());
        }
        let first_seq = batch[0].sequence_number.as_str();
        let last_seq = batch[batch.len() - 1].sequence_number.as_str();
        let payload = kinesis_event_json(
            &EventSource {
                shard_id: &shard_id,
                stream_arn: &shared.stream_arn,
                region: &shared.region,
                invoke_identity_arn: &shared.invoke_identity_arn,
            },
            &batch,
        );

        let started = Instant::now();
        let result = shared
            .invoker
            .invoke(&shared.config.writer_function, payload)
            .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let outcome = match &result {
            Ok(body) => parse_batch_response(body, &batch),
            Err(_) => BatchOutcome::FailedFrom(0),
        };
        let failed = match outcome {
            BatchOutcome::Succeeded => 0,
            BatchOutcome::FailedFrom(i) => batch.len() - i,
        };
        match &result {
            Err(e) => warn!(
                count = batch.len(),
                first_seq,
                last_seq,
                failed,
                duration_ms,
                error = %e,
                "invocation failed"
            ),
            Ok(_) => info!(
                count = batch.len(),
                first_seq,
                last_seq,
                failed,
                duration_ms,
                "invoked {}",
                shared.config.writer_function
            ),
        }

        match outcome {
            BatchOutcome::Succeeded => {
                shared.checkpoints.save(&shard_id, last_seq).await?;
                attempts = 0;
            }
            BatchOutcome::FailedFrom(index) => {
                if index > 0 {
                    let done = &batch[index - 1].sequence_number;
                    shared.checkpoints.save(&shard_id, done).await?;
                    attempts = 0;
                }
                attempts += 1;
                let retry_from = &batch[index].sequence_number;
                if shared
                    .config
                    .max_retry_attempts
                    .is_some_and(|max| attempts > max)
                {
                    error!(
                        first_seq = %retry_from,
                        last_seq,
                        count = batch.len() - index,
                        attempts,
                        "giving up on records after MAX_RETRY_ATTEMPTS; skipping them"
                    );
                    shared.checkpoints.save(&shard_id, last_seq).await?;
                    attempts = 0;
                    continue;
                }
                let delay = backoff(
                    shared.config.initial_backoff,
                    shared.config.max_backoff,
                    attempts,
                );
                debug!(retry_from = %retry_from, attempts, delay_ms = delay.as_millis() as u64, "retrying");
                reader.rewind(Position::At(retry_from.clone()));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

struct ShardReader {
    shared: Arc<Shared>,
    shard_id: String,
    /// Where to get a new iterator: just after the last record read, or the start.
    position: Position,
    iterator: Option<String>,
    /// GetRecords answered without a next iterator: the shard is closed and read to its end.
    closed: bool,
    read_errors: u32,
}

impl ShardReader {
    fn new(shared: Arc<Shared>, shard_id: String, position: Position) -> Self {
        Self {
            shared,
            shard_id,
            position,
            iterator: None,
            closed: false,
            read_errors: 0,
        }
    }

    /// Forgets what was read after `position`, so that the next batch starts there.
    fn rewind(&mut self, position: Position) {
        self.position = position;
        self.iterator = None;
        self.closed = false;
    }

    /// Up to `batch_size` records, returned when full, when the batching window has passed
    /// since the first one was read, or when the shard ended. Empty only at a closed shard's end.
    async fn next_batch(&mut self) -> Vec<ShardRecord> {
        let batch_size = self.shared.config.batch_size;
        let window = self.shared.config.max_batching_window;
        let mut batch: Vec<ShardRecord> = Vec::new();
        let mut first_read_at: Option<Instant> = None;
        loop {
            if self.closed {
                return batch;
            }
            let limit = (batch_size - batch.len()).min(GET_RECORDS_LIMIT);
            let records = self.get_records(limit).await;
            let caught_up = records.len() < limit;
            if let Some(last) = records.last() {
                self.position = Position::After(last.sequence_number.clone());
                first_read_at.get_or_insert_with(Instant::now);
                batch.extend(records);
            }
            let waited = first_read_at.map(|t| t.elapsed());
            if self.closed || batch.len() >= batch_size || waited.is_some_and(|w| w >= window) {
                return batch;
            }
            if caught_up {
                let pause = match waited {
                    Some(w) => self.shared.config.poll_interval.min(window - w),
                    None => self.shared.config.poll_interval,
                };
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// One GetRecords call's records, retrying errors until it succeeds.
    async fn get_records(&mut self, limit: usize) -> Vec<ShardRecord> {
        loop {
            let iterator = match self.iterator.take() {
                Some(it) => it,
                None => self.get_iterator().await,
            };
            let result = self
                .shared
                .kinesis
                .get_records()
                .shard_iterator(&iterator)
                .limit(limit as i32)
                .send()
                .await;
            match result {
                Ok(out) => {
                    self.read_errors = 0;
                    self.closed = out.next_shard_iterator.is_none();
                    self.iterator = out.next_shard_iterator;
                    let received = out.records.len();
                    let records: Vec<ShardRecord> = out
                        .records
                        .into_iter()
                        .map(to_shard_record)
                        .filter(|r| self.position.precedes(&r.sequence_number))
                        .collect();
                    if records.len() < received {
                        // kinesis-mock (LocalStack) sometimes hands the last record read out
                        // again; sequence numbers only grow within a shard, so drop it.
                        debug!(
                            dropped = received - records.len(),
                            "dropped records already read"
                        );
                    }
                    return records;
                }
                Err(SdkError::ServiceError(e))
                    if matches!(e.err(), GetRecordsError::ExpiredIteratorException(_)) =>
                {
                    debug!("shard iterator expired; getting a new one");
                }
                Err(e) => {
                    let throttled = matches!(
                        e.as_service_error(),
                        Some(
                            GetRecordsError::ProvisionedThroughputExceededException(_)
                                | GetRecordsError::KmsThrottlingException(_)
                        )
                    );
                    // A throttled iterator is still good; after any other error get a new one.
                    if throttled {
                        self.iterator = Some(iterator);
                    }
                    self.read_errors += 1;
                    let delay = self.read_backoff(throttled);
                    warn!(error = %aws_sdk_kinesis::error::DisplayErrorContext(&e), throttled, delay_ms = delay.as_millis() as u64, "GetRecords failed; backing off");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn get_iterator(&mut self) -> String {
        loop {
            let request = self
                .shared
                .kinesis
                .get_shard_iterator()
                .stream_name(&self.shared.config.stream_name)
                .shard_id(&self.shard_id);
            let request = match &self.position {
                Position::TrimHorizon => {
                    request.shard_iterator_type(ShardIteratorType::TrimHorizon)
                }
                Position::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
                Position::After(seq) => request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(seq),
                Position::At(seq) => request
                    .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                    .starting_sequence_number(seq),
            };
            match request.send().await {
                Ok(out) => {
                    if let Some(iterator) = out.shard_iterator {
                        self.read_errors = 0;
                        return iterator;
                    }
                    warn!(position = ?self.position, "GetShardIterator returned no iterator");
                }
                Err(SdkError::ServiceError(e))
                    if matches!(e.err(), GetShardIteratorError::InvalidArgumentException(_))
                        && self.position.is_after_a_record() =>
                {
                    // Happens when the stream was recreated under the same name (LocalStack
                    // restarted without persistence): redelivering beats skipping records.
                    error!(position = ?self.position, error = %e.err(), "the checkpoint does not belong to this shard; starting over at TRIM_HORIZON");
                    self.position = Position::TrimHorizon;
                    continue;
                }
                Err(e) => {
                    warn!(position = ?self.position, error = %aws_sdk_kinesis::error::DisplayErrorContext(&e), "GetShardIterator failed; backing off");
                }
            }
            self.read_errors += 1;
            tokio::time::sleep(self.read_backoff(false)).await;
        }
    }

    fn read_backoff(&self, throttled: bool) -> Duration {
        let config = &self.shared.config;
        // Kinesis allows five GetRecords calls a second per shard; a throttled shard waits longer.
        let initial = if throttled {
            config.initial_backoff.max(Duration::from_millis(500))
        } else {
            config.initial_backoff
        };
        backoff(initial, config.max_backoff, self.read_errors)
    }
}

fn to_shard_record(record: aws_sdk_kinesis::types::Record) -> ShardRecord {
    let approximate_arrival_millis = record
        .approximate_arrival_timestamp
        .and_then(|t| t.to_millis().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    ShardRecord {
        sequence_number: record.sequence_number,
        partition_key: record.partition_key.unwrap_or_default(),
        data: record.data.into_inner(),
        approximate_arrival_millis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_at_or_before_the_read_position_are_not_read_again() {
        assert!(Position::After("10".into()).precedes("11"));
        assert!(!Position::After("10".into()).precedes("10"));
        assert!(!Position::After("10".into()).precedes("9"));
        assert!(Position::At("10".into()).precedes("10"));
        assert!(!Position::At("10".into()).precedes("9"));
        assert!(Position::TrimHorizon.precedes("1"));
    }

    #[test]
    fn backoff_doubles_from_100_ms_and_stops_at_10_s() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(10));
        let delays: Vec<u128> = (1..=9)
            .map(|a| backoff(initial, max, a).as_millis())
            .collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(backoff(initial, max, u32::MAX), max);
    }
}
