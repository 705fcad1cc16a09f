//! Putting events on the stream: chunking within Kinesis limits and retrying refused records.

use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;

use crate::event::AuditEvent;

/// Kinesis PutRecords limits.
pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
pub const MAX_BYTES_PER_RECORD: usize = 1024 * 1024;

/// One record bound for the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingRecord {
    pub id: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

impl OutgoingRecord {
    pub fn from_event(event: &AuditEvent) -> Self {
        Self {
            id: event.id.clone(),
            partition_key: event.partition_key(),
            data: event.encode(),
        }
    }

    /// What Kinesis counts against its size limits.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// How the stream answered for one record of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    Accepted,
    Refused { code: String },
}

/// A whole call failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub message: String,
    /// Whether trying the same call again may succeed.
    pub retryable: bool,
}

/// The port to the stream: one PutRecords-shaped call.
#[async_trait]
pub trait RecordSink: Send + Sync {
    /// Puts at most [`MAX_RECORDS_PER_CALL`] records and [`MAX_BYTES_PER_CALL`] bytes,
    /// answering one outcome per record, in order.
    async fn put_records(
        &self,
        records: &[OutgoingRecord],
    ) -> Result<Vec<RecordOutcome>, SinkError>;
}

/// How hard to try before giving up on refused records.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// About 3 s of retrying in all: well inside API Gateway's 29 s.
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(1000),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.max_delay);
        // Full jitter keeps retrying clients from moving in lockstep.
        let millis = capped.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis.max(1)))
    }
}

/// What happened to a publish.
#[derive(Debug, Default, PartialEq)]
pub struct PublishReport {
    /// Ids the stream accepted.
    pub accepted: Vec<String>,
    /// Ids the stream still refused after every retry, with the last reason.
    pub unaccepted: Vec<(String, String)>,
    /// Calls made, retries included.
    pub calls: u32,
}

impl PublishReport {
    pub fn is_complete(&self) -> bool {
        self.unaccepted.is_empty()
    }
}

/// Splits records into calls that respect the count and byte limits, keeping their order.
pub fn chunk(records: &[OutgoingRecord]) -> Vec<&[OutgoingRecord]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, record) in records.iter().enumerate() {
        let size = record.size();
        if i > start && (i - start == MAX_RECORDS_PER_CALL || bytes + size > MAX_BYTES_PER_CALL) {
            chunks.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

/// Puts every record on the stream, retrying refused ones with jittered exponential backoff.
#[tracing::instrument(skip_all, fields(records = records.len()))]
pub async fn publish(
    sink: &dyn RecordSink,
    records: Vec<OutgoingRecord>,
    policy: &RetryPolicy,
) -> PublishReport {
    let mut report = PublishReport::default();
    let mut pending = records;
    let mut last_reason: Vec<String> = vec![String::new(); pending.len()];
    for attempt in 1..=policy.max_attempts.max(1) {
        if attempt > 1 {
            tokio::time::sleep(policy.delay(attempt - 1)).await;
        }
        let mut refused = Vec::new();
        let mut refused_reason = Vec::new();
        let mut offset = 0;
        let mut give_up = false;
        for call in chunk(&pending) {
            report.calls += 1;
            match sink.put_records(call).await {
                Ok(outcomes) if outcomes.len() == call.len() => {
                    for (record, outcome) in call.iter().zip(outcomes) {
                        match outcome {
                            RecordOutcome::Accepted => report.accepted.push(record.id.clone()),
                            RecordOutcome::Refused { code } => {
                                refused.push(record.clone());
                                refused_reason.push(code);
                            }
                        }
                    }
                }
                Ok(outcomes) => {
                    tracing::error!(
                        sent = call.len(),
                        answered = outcomes.len(),
                        "stream answered for a different number of records; treating all as refused"
                    );
                    refused.extend(call.iter().cloned());
                    refused_reason.extend(call.iter().map(|_| "InvalidResponse".to_string()));
                }
                Err(error) => {
                    tracing::warn!(%error, retryable = error.retryable, "PutRecords call failed");
                    give_up |= !error.retryable;
                    refused.extend(call.iter().cloned());
                    refused_reason.extend(call.iter().map(|_| error.message.clone()));
                }
            }
            offset += call.len();
        }
        debug_assert_eq!(offset, pending.len());
        if refused.is_empty() {
            return report;
        }
        tracing::warn!(
            attempt,
            refused = refused.len(),
            "records refused by the stream"
        );
        pending = refused;
        last_reason = refused_reason;
        if give_up {
            break;
        }
    }
    report.unaccepted = pending
        .into_iter()
        .zip(last_reason)
        .map(|(record, reason)| (record.id, reason))
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Refuses the records whose ids the script names, for as many calls as it says.
    #[derive(Default)]
    struct ScriptedSink {
        refuse: Mutex<Vec<(String, u32)>>,
        fail_calls: Mutex<u32>,
        fatal: bool,
        calls: Mutex<Vec<Vec<String>>>,
    }

    #[async_trait]
    impl RecordSink for ScriptedSink {
        async fn put_records(
            &self,
            records: &[OutgoingRecord],
        ) -> Result<Vec<RecordOutcome>, SinkError> {
            assert!(records.len() <= MAX_RECORDS_PER_CALL);
            assert!(records.iter().map(OutgoingRecord::size).sum::<usize>() <= MAX_BYTES_PER_CALL);
            self.calls
                .lock()
                .unwrap()
                .push(records.iter().map(|r| r.id.clone()).collect());
            {
                let mut fail = self.fail_calls.lock().unwrap();
                if *fail > 0 {
                    *fail -= 1;
                    return Err(SinkError {
                        message: "connection reset".into(),
                        retryable: !self.fatal,
                    });
                }
            }
            let mut refuse = self.refuse.lock().unwrap();
            Ok(records
                .iter()
                .map(
                    |r| match refuse.iter_mut().find(|(id, n)| *id == r.id && *n > 0) {
                        Some((_, n)) => {
                            *n -= 1;
                            RecordOutcome::Refused {
                                code: "ProvisionedThroughputExceededException".into(),
                            }
                        }
                        None => RecordOutcome::Accepted,
                    },
                )
                .collect())
        }
    }

    fn records(n: usize, size: usize) -> Vec<OutgoingRecord> {
        (0..n)
            .map(|i| OutgoingRecord {
                id: format!("e{i}"),
                partition_key: "pk".into(),
                data: vec![b'x'; size],
            })
            .collect()
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[test]
    fn chunks_respect_the_record_count_limit() {
        let input = records(1201, 10);
        let sizes: Vec<usize> = chunk(&input).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [500, 500, 201]);
    }

    #[test]
    fn chunks_respect_the_byte_limit_and_keep_order() {
        let input = records(12, 1024 * 1024 - 2);
        let chunks = chunk(&input);
        assert!(chunks
            .iter()
            .all(|c| c.iter().map(OutgoingRecord::size).sum::<usize>() <= MAX_BYTES_PER_CALL));
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [5, 5, 2]
        );
        let flattened: Vec<&str> = chunks
            .iter()
            .flat_map(|c| c.iter().map(|r| r.id.as_str()))
            .collect();
        assert_eq!(
            flattened,
            input.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn no_records_make_no_chunks() {
        assert!(chunk(&[]).is_empty());
    }

    #[tokio::test]
    async fn refused_records_are_retried_until_accepted() {
        let sink = ScriptedSink {
            refuse: Mutex::new(vec![("e1".into(), 2), ("e3".into(), 1)]),
            ..Default::default()
        };

        let report = publish(&sink, records(5, 10), &fast()).await;

        assert!(report.is_complete());
        let mut accepted = report.accepted.clone();
        accepted.sort();
        assert_eq!(accepted, ["e0", "e1", "e2", "e3", "e4"]);
        let calls = sink.calls.lock().unwrap();
        assert_eq!(
            calls[1],
            ["e1", "e3"],
            "only the refused records are sent again"
        );
        assert_eq!(calls[2], ["e1"]);
        assert_eq!(calls.len(), 3);
    }

    #[tokio::test]
    async fn records_still_refused_after_every_attempt_are_reported() {
        let sink = ScriptedSink {
            refuse: Mutex::new(vec![("e2".into(), 100)]),
            ..Default::default()
        };

        let report = publish(&sink, records(3, 10), &fast()).await;

        assert_eq!(report.accepted, ["e0", "e1"]);
        assert_eq!(
            report.unaccepted,
            [(
                "e2".to_string(),
                "ProvisionedThroughputExceededException".to_string()
            )]
        );
        assert_eq!(report.calls, 4);
    }

    #[tokio::test]
    async fn a_failed_call_is_retried_whole() {
        let sink = ScriptedSink {
            fail_calls: Mutex::new(2),
            ..Default::default()
        };

        let report = publish(&sink, records(3, 10), &fast()).await;

        assert!(report.is_complete());
        assert_eq!(report.accepted.len(), 3);
        assert_eq!(report.calls, 3);
    }

    #[tokio::test]
    async fn a_call_that_cannot_succeed_is_not_retried() {
        let sink = ScriptedSink {
            fail_calls: Mutex::new(1),
            fatal: true,
            ..Default::default()
        };

        let report = publish(&sink, records(2, 10), &fast()).await;

        assert_eq!(report.calls, 1);
        assert_eq!(report.unaccepted.len(), 2);
        assert_eq!(report.unaccepted[0].1, "connection reset");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
        };
        for _ in 0..50 {
            assert!(policy.delay(1) <= Duration::from_millis(100));
            assert!(policy.delay(1) >= Duration::from_millis(50));
            assert!(policy.delay(8) <= Duration::from_millis(400));
            assert!(policy.delay(8) >= Duration::from_millis(200));
        }
    }
}
