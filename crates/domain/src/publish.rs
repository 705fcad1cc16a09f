//! Putting events on the stream: chunking within Kinesis limits and retrying refused records,
//! all before a deadline.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::event::AuditEvent;

/// Kinesis PutRecords limits.
pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
pub const MAX_BYTES_PER_RECORD: usize = 1024 * 1024;

/// The reason reported for a record the deadline left unplaced: its call was cut short, or
/// there was no time left to make it.
pub const DEADLINE_REASON: &str = "deadline";

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
            id: event.id.to_string(),
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

/// A whole call failed (a call that timed out is a retryable failure).
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
        crate::backoff::jittered(self.base_delay, self.max_delay, attempt)
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
    /// Records sent again after the stream refused them (or a call failed).
    pub retried_records: u32,
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

/// Puts every record on the stream, retrying refused ones with jittered exponential backoff,
/// and returns by `deadline`. No call runs past the deadline and no backoff sleep is started
/// that would end after it; whatever is then still unplaced is reported as unaccepted.
/// This is the only layer that retries: the sink makes one attempt per call.
#[tracing::instrument(skip_all, fields(records = records.len()))]
pub async fn publish_before(
    sink: &dyn RecordSink,
    records: Vec<OutgoingRecord>,
    policy: &RetryPolicy,
    deadline: Instant,
) -> PublishReport {
    let mut report = PublishReport::default();
    let mut pending = records;
    let mut last_reason: Vec<String> = vec![DEADLINE_REASON.to_string(); pending.len()];
    for attempt in 1..=policy.max_attempts.max(1) {
        if attempt > 1 {
            let delay = policy.delay(attempt - 1);
            if Instant::now() + delay >= deadline {
                tracing::warn!(
                    attempt,
                    unplaced = pending.len(),
                    "no time left before the deadline to retry"
                );
                break;
            }
            tokio::time::sleep(delay).await;
        }
        let mut refused = Vec::new();
        let mut refused_reason = Vec::new();
        let mut offset = 0;
        let mut give_up = false;
        let mut out_of_time = false;
        for call in chunk(&pending) {
            offset += call.len();
            let remaining = deadline.saturating_duration_since(Instant::now());
            if out_of_time || remaining.is_zero() {
                out_of_time = true;
                refused.extend(call.iter().cloned());
                refused_reason.extend(call.iter().map(|_| DEADLINE_REASON.to_string()));
                continue;
            }
            report.calls += 1;
            if attempt > 1 {
                report.retried_records += call.len() as u32;
            }
            match tokio::time::timeout(remaining, sink.put_records(call)).await {
                Ok(Ok(outcomes)) if outcomes.len() == call.len() => {
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
                Ok(Ok(outcomes)) => {
                    tracing::error!(
                        sent = call.len(),
                        answered = outcomes.len(),
                        "stream answered for a different number of records; treating all as refused"
                    );
                    refused.extend(call.iter().cloned());
                    refused_reason.extend(call.iter().map(|_| "InvalidResponse".to_string()));
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, retryable = error.retryable, "PutRecords call failed");
                    give_up |= !error.retryable;
                    refused.extend(call.iter().cloned());
                    refused_reason.extend(call.iter().map(|_| error.message.clone()));
                }
                Err(_elapsed) => {
                    // The stream may still have taken some of these; the caller is told to
                    // send them again, and a record sent twice is stored once.
                    tracing::warn!(
                        records = call.len(),
                        "PutRecords call cut short by the deadline"
                    );
                    out_of_time = true;
                    refused.extend(call.iter().cloned());
                    refused_reason.extend(call.iter().map(|_| DEADLINE_REASON.to_string()));
                }
            }
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
        if give_up || out_of_time {
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

/// [`publish_before`] without a deadline: it returns once the policy's attempts are spent,
/// and only as soon as the sink's calls do. For tools that answer no one waiting; a handler,
/// which must answer in time, calls [`publish_before`].
pub async fn publish(
    sink: &dyn RecordSink,
    records: Vec<OutgoingRecord>,
    policy: &RetryPolicy,
) -> PublishReport {
    // A year: later than any run, and within what tokio's timer takes.
    let no_deadline = Instant::now() + Duration::from_secs(365 * 24 * 60 * 60);
    publish_before(sink, records, policy, no_deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
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

    /// Accepts its first `answered_calls` calls whole; every later call never completes.
    #[derive(Default)]
    struct StallingSink {
        answered_calls: u32,
        calls: AtomicU32,
    }

    #[async_trait]
    impl RecordSink for StallingSink {
        async fn put_records(
            &self,
            records: &[OutgoingRecord],
        ) -> Result<Vec<RecordOutcome>, SinkError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.answered_calls {
                return Ok(vec![RecordOutcome::Accepted; records.len()]);
            }
            std::future::pending().await
        }
    }

    fn ids_with_reasons(ids: &[&str], reason: &str) -> Vec<(String, String)> {
        ids.iter()
            .map(|id| (id.to_string(), reason.to_string()))
            .collect()
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
        assert_eq!(report.retried_records, 3, "e1 twice, e3 once");
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

    #[tokio::test]
    async fn publish_returns_by_the_deadline_when_the_stream_never_answers() {
        let sink = StallingSink::default();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);

        let report = publish_before(&sink, records(3, 10), &fast(), deadline).await;

        assert!(
            started.elapsed() < Duration::from_millis(300) + Duration::from_secs(2),
            "returned after {:?}",
            started.elapsed()
        );
        assert!(report.accepted.is_empty());
        assert_eq!(
            report.unaccepted,
            ids_with_reasons(&["e0", "e1", "e2"], DEADLINE_REASON)
        );
        assert_eq!(report.calls, 1, "no call is started after the deadline");
    }

    #[tokio::test]
    async fn no_retry_is_started_when_its_backoff_would_end_past_the_deadline() {
        let sink = ScriptedSink {
            refuse: Mutex::new(vec![("e1".into(), 100)]),
            ..Default::default()
        };
        let slow_backoff = RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(10),
        };
        let started = Instant::now();
        let deadline = started + Duration::from_secs(2);

        let report = publish_before(&sink, records(3, 10), &slow_backoff, deadline).await;

        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waited {:?} for a retry it had no time for",
            started.elapsed()
        );
        assert_eq!(report.calls, 1);
        assert_eq!(report.accepted, ["e0", "e2"]);
        assert_eq!(
            report.unaccepted,
            ids_with_reasons(&["e1"], "ProvisionedThroughputExceededException"),
            "a refused record keeps the stream's reason"
        );
    }

    #[tokio::test]
    async fn records_of_a_call_cut_short_and_of_calls_never_made_are_unaccepted() {
        let sink = StallingSink {
            answered_calls: 1,
            ..Default::default()
        };
        let input = records(1001, 10);
        let deadline = Instant::now() + Duration::from_millis(300);

        let report = publish_before(&sink, input, &fast(), deadline).await;

        assert_eq!(
            report.accepted.len(),
            500,
            "the first call's records are placed"
        );
        assert_eq!(report.calls, 2, "the third chunk's call is never made");
        let unaccepted: Vec<&str> = report
            .unaccepted
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(unaccepted.len(), 501);
        assert_eq!(unaccepted[0], "e500");
        assert_eq!(unaccepted[500], "e1000");
        assert!(report
            .unaccepted
            .iter()
            .all(|(_, why)| why == DEADLINE_REASON));
    }

    #[tokio::test]
    async fn a_deadline_already_past_makes_no_call() {
        let sink = ScriptedSink::default();

        let report = publish_before(&sink, records(2, 10), &fast(), Instant::now()).await;

        assert_eq!(report.calls, 0);
        assert!(sink.calls.lock().unwrap().is_empty());
        assert_eq!(
            report.unaccepted,
            ids_with_reasons(&["e0", "e1"], DEADLINE_REASON)
        );
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
