//! The payloads exchanged with the function: AWS's `KinesisEvent` out, `KinesisEventResponse` back.

use std::cmp::Ordering;

use aws_lambda_events::event::streams::KinesisBatchItemFailure;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// One record read from a shard, as the runner keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// Milliseconds since the epoch.
    pub approximate_arrival_millis: i64,
}

/// Where a batch came from; the same for every record of it.
#[derive(Clone, Debug)]
pub struct EventSource<'a> {
    pub shard_id: &'a str,
    pub stream_arn: &'a str,
    pub region: &'a str,
    pub invoke_identity_arn: &'a str,
}

// Our own structs rather than aws_lambda_events' ones: those add `encryptionType`, which AWS
// leaves out for unencrypted streams. The unit tests check that aws_lambda_events reads ours.
#[derive(Serialize)]
struct KinesisEventOut<'a> {
    #[serde(rename = "Records")]
    records: Vec<KinesisEventRecordOut<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KinesisEventRecordOut<'a> {
    kinesis: KinesisRecordOut<'a>,
    event_source: &'static str,
    event_version: &'static str,
    #[serde(rename = "eventID")]
    event_id: String,
    event_name: &'static str,
    invoke_identity_arn: &'a str,
    aws_region: &'a str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KinesisRecordOut<'a> {
    kinesis_schema_version: &'static str,
    partition_key: &'a str,
    sequence_number: &'a str,
    data: String,
    approximate_arrival_timestamp: f64,
}

/// Serializes a batch exactly like the `KinesisEvent` AWS's ESM sends.
pub fn kinesis_event_json(source: &EventSource<'_>, records: &[ShardRecord]) -> Vec<u8> {
    let event = KinesisEventOut {
        records: records
            .iter()
            .map(|r| KinesisEventRecordOut {
                kinesis: KinesisRecordOut {
                    kinesis_schema_version: "1.0",
                    partition_key: &r.partition_key,
                    sequence_number: &r.sequence_number,
                    data: base64::engine::general_purpose::STANDARD.encode(&r.data),
                    approximate_arrival_timestamp: r.approximate_arrival_millis as f64 / 1000.0,
                },
                event_source: "aws:kinesis",
                event_version: "1.0",
                event_id: format!("{}:{}", source.shard_id, r.sequence_number),
                event_name: "aws:kinesis:record",
                invoke_identity_arn: source.invoke_identity_arn,
                aws_region: source.region,
                event_source_arn: source.stream_arn,
            })
            .collect(),
    };
    serde_json::to_vec(&event).expect("a KinesisEvent always serializes")
}

/// What the function said about a batch it returned normally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    Succeeded,
    /// Records before this index succeeded; this one and the ones after must be retried.
    FailedFrom(usize),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LenientResponse {
    #[serde(default)]
    batch_item_failures: Option<Vec<KinesisBatchItemFailure>>,
}

/// Reads a `KinesisEventResponse` with AWS's ReportBatchItemFailures rules.
///
/// An empty body, `null`, `{}` or an empty or null `batchItemFailures` is a full success.
/// An empty or null `itemIdentifier`, or one not in the batch, fails the whole batch, and so
/// does a body that is not JSON.
pub fn parse_batch_response(body: &[u8], batch: &[ShardRecord]) -> BatchOutcome {
    if body.iter().all(u8::is_ascii_whitespace) {
        return BatchOutcome::Succeeded;
    }
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return BatchOutcome::FailedFrom(0),
    };
    if !value.is_object() {
        return BatchOutcome::Succeeded;
    }
    let failures = match serde_json::from_value::<LenientResponse>(value) {
        Ok(r) => r.batch_item_failures.unwrap_or_default(),
        Err(_) => return BatchOutcome::FailedFrom(0),
    };
    let mut lowest: Option<&str> = None;
    for failure in &failures {
        let Some(id) = failure
            .item_identifier
            .as_deref()
            .filter(|id| !id.is_empty())
        else {
            return BatchOutcome::FailedFrom(0);
        };
        if !batch.iter().any(|r| r.sequence_number == id) {
            return BatchOutcome::FailedFrom(0);
        }
        if lowest.is_none_or(|low| compare_sequence_numbers(id, low) == Ordering::Less) {
            lowest = Some(id);
        }
    }
    match lowest {
        None => BatchOutcome::Succeeded,
        Some(id) => BatchOutcome::FailedFrom(
            batch
                .iter()
                .position(|r| r.sequence_number == id)
                .expect("checked above"),
        ),
    }
}

/// Orders Kinesis sequence numbers (decimal strings of up to 56 digits) numerically.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEvent;

    const FIXTURE: &str = r#"{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"tenant-a","sequenceNumber":"49590338271490256608559692538361571095921575989136588898","data":"eyJhY3Rpb24iOiJsb2dpbiJ9","approximateArrivalTimestamp":1545084650.987},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000000:49590338271490256608559692538361571095921575989136588898","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::000000000000:role/sentinel-local-esm","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:000000000000:stream/audit"}]}"#;

    fn record(seq: &str) -> ShardRecord {
        ShardRecord {
            sequence_number: seq.into(),
            partition_key: "tenant-a".into(),
            data: br#"{"action":"login"}"#.to_vec(),
            approximate_arrival_millis: 1_545_084_650_987,
        }
    }

    fn source() -> EventSource<'static> {
        EventSource {
            shard_id: "shardId-000000000000",
            stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/audit",
            region: "us-east-1",
            invoke_identity_arn: "arn:aws:iam::000000000000:role/sentinel-local-esm",
        }
    }

    #[test]
    fn the_payload_is_shaped_exactly_like_aws_kinesis_event() {
        let seq = "49590338271490256608559692538361571095921575989136588898";

        let json = kinesis_event_json(&source(), &[record(seq)]);

        let actual: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let expected: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        assert_eq!(actual, expected);
    }

    #[test]
    fn aws_lambda_events_reads_the_payload_back() {
        let seq = "49590338271490256608559692538361571095921575989136588898";

        let json = kinesis_event_json(&source(), &[record(seq)]);

        let event: KinesisEvent = serde_json::from_slice(&json).unwrap();
        let r = &event.records[0];
        assert_eq!(r.kinesis.sequence_number, seq);
        assert_eq!(r.kinesis.partition_key, "tenant-a");
        assert_eq!(r.kinesis.data.0, br#"{"action":"login"}"#);
        assert_eq!(
            r.kinesis.approximate_arrival_timestamp.timestamp_millis(),
            1_545_084_650_987
        );
        assert_eq!(
            r.event_id.as_deref(),
            Some(&*format!("shardId-000000000000:{seq}"))
        );
        assert_eq!(r.event_source.as_deref(), Some("aws:kinesis"));
    }

    #[test]
    fn sequence_numbers_compare_numerically_not_lexicographically() {
        assert_eq!(compare_sequence_numbers("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence_numbers("0010", "10"), Ordering::Equal);
        assert_eq!(
            compare_sequence_numbers(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Ordering::Less
        );
        assert_eq!(
            compare_sequence_numbers(
                "49590338271490256608559692538361571095921575989136588898",
                "5"
            ),
            Ordering::Greater
        );
    }

    #[test]
    fn an_empty_or_absent_failure_list_means_the_whole_batch_succeeded() {
        let batch = [record("1"), record("2")];
        for body in [
            "",
            "null",
            "{}",
            r#"{"batchItemFailures":[]}"#,
            r#"{"batchItemFailures":null}"#,
        ] {
            assert_eq!(
                parse_batch_response(body.as_bytes(), &batch),
                BatchOutcome::Succeeded,
                "{body}"
            );
        }
    }

    #[test]
    fn the_lowest_failed_sequence_number_is_where_the_retry_starts() {
        let batch = [record("8"), record("9"), record("10"), record("11")];
        let body = br#"{"batchItemFailures":[{"itemIdentifier":"11"},{"itemIdentifier":"9"},{"itemIdentifier":"10"}]}"#;

        assert_eq!(
            parse_batch_response(body, &batch),
            BatchOutcome::FailedFrom(1)
        );
    }

    #[test]
    fn a_null_empty_or_unknown_item_identifier_fails_the_whole_batch() {
        let batch = [record("1"), record("2")];
        for body in [
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"2"},{"itemIdentifier":"3"}]}"#,
            r#"{"batchItemFailures":[{}]}"#,
            "not json",
        ] {
            assert_eq!(
                parse_batch_response(body.as_bytes(), &batch),
                BatchOutcome::FailedFrom(0),
                "{body}"
            );
        }
    }
}
