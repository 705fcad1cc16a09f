//! The writer's batch logic against an in-memory store: decoding, isolation of poison
//! records, and what is reported for retry.

mod common;

use std::sync::Mutex;

use async_trait::async_trait;
use common::*;
use sentinel_domain::event::AuditEvent;
use sentinel_domain::fields::Timestamp;
use sentinel_domain::store::{EventStore, RejectedRecord, StoreError, StoreReport};
use serde_json::{json, Value};

#[derive(Default)]
struct MemoryStore {
    events: Mutex<Vec<AuditEvent>>,
    rejected: Mutex<Vec<RejectedRecord>>,
    /// Any write holding an event with this id is refused as bad data.
    refuse_id: Option<String>,
    unavailable: bool,
    quarantine_unavailable: bool,
    writes: Mutex<usize>,
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn store(&self, events: &[AuditEvent]) -> Result<StoreReport, StoreError> {
        *self.writes.lock().unwrap() += 1;
        if self.unavailable {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        if let Some(bad) = &self.refuse_id {
            if events.iter().any(|e| e.id == bad.as_str()) {
                return Err(StoreError::Refused("value too long (22001)".into()));
            }
        }
        let mut stored = self.events.lock().unwrap();
        let mut report = StoreReport::default();
        for event in events {
            if stored.iter().any(|e| e.id == event.id) {
                report.duplicates += 1;
            } else {
                stored.push(event.clone());
                report.inserted += 1;
            }
        }
        Ok(report)
    }

    async fn quarantine(&self, records: &[RejectedRecord]) -> Result<u64, StoreError> {
        if self.quarantine_unavailable {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        self.rejected
            .lock()
            .unwrap()
            .extend(records.iter().cloned());
        Ok(records.len() as u64)
    }
}

fn events(n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| event(&format!("e{i}"), "2026-03-01T10:00:00Z"))
        .collect()
}

#[tokio::test]
async fn a_clean_batch_is_stored_in_one_write_with_no_failures() {
    let store = MemoryStore::default();

    let (response, summary) = writer::process(&store, batch(&events(50), 1))
        .await
        .unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!(summary.stored, 50);
    assert_eq!(*store.writes.lock().unwrap(), 1);
}

#[tokio::test]
async fn undecodable_records_are_quarantined_and_the_rest_stored() {
    let store = MemoryStore::default();
    let good = events(2);
    let mut oversized_version: Value = serde_json::from_slice(&good[0].encode()).unwrap();
    oversized_version["v"] = json!(99);
    let payload = json!({ "Records": [
        record(&seq(1), &good[0].encode()),
        record(&seq(2), b"\xff\xfe\x00 binary junk"),
        record(&seq(3), b"[1, 2, 3]"),
        record(&seq(4), &serde_json::to_vec(&oversized_version).unwrap()),
        record(&seq(5), br#"{"v":1,"event":{"id":"x"}}"#),
        {"kinesis": {"sequenceNumber": seq(6), "data": "%%% not base64 %%%"}, "eventSourceARN": STREAM_ARN},
        {"kinesis": 42},
        "not even an object",
        record(&seq(9), &good[1].encode()),
    ]});

    let (response, summary) = writer::process(&store, payload).await.unwrap();

    assert!(
        failures(&response).is_empty(),
        "poison must not block the shard"
    );
    assert_eq!(summary.stored, 2);
    assert_eq!(summary.quarantined, 7);
    let rejected = store.rejected.lock().unwrap();
    assert_eq!(rejected.len(), 7);
    assert_eq!(
        rejected[0].payload, b"\xff\xfe\x00 binary junk",
        "the raw bytes are kept"
    );
    assert!(rejected[2]
        .reason
        .contains("unsupported stream schema version 99"));
    assert!(rejected[4].reason.contains("undecodable Kinesis record"));
    assert_eq!(rejected[4].record_key, seq(6));
    assert!(rejected[5].record_key.starts_with("unnamed:"));
}

#[tokio::test]
async fn a_refused_event_is_isolated_and_quarantined_while_its_neighbours_are_stored() {
    let store = MemoryStore {
        refuse_id: Some("e5".into()),
        ..Default::default()
    };

    let (response, summary) = writer::process(&store, batch(&events(16), 1))
        .await
        .unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!(summary.stored, 15);
    assert_eq!(summary.quarantined, 1);
    let rejected = store.rejected.lock().unwrap();
    assert_eq!(rejected[0].record_key, seq(6));
    assert!(rejected[0].reason.contains("refused by the database"));
    let restored = AuditEvent::decode(&rejected[0].payload).unwrap();
    assert_eq!(restored.id, "e5");
}

#[tokio::test]
async fn an_unavailable_store_reports_every_record_for_retry() {
    let store = MemoryStore {
        unavailable: true,
        ..Default::default()
    };

    let (response, summary) = writer::process(&store, batch(&events(3), 1)).await.unwrap();

    assert_eq!(failures(&response), [seq(1), seq(2), seq(3)]);
    assert_eq!(summary.failed, 3);
}

#[tokio::test]
async fn poison_that_cannot_be_quarantined_is_reported_for_retry_not_dropped() {
    let store = MemoryStore {
        quarantine_unavailable: true,
        ..Default::default()
    };
    let payload =
        json!({ "Records": [record(&seq(1), b"junk"), record(&seq(2), &events(1)[0].encode())] });

    let (response, summary) = writer::process(&store, payload).await.unwrap();

    assert_eq!(failures(&response), [seq(1)]);
    assert_eq!(summary.stored, 1);
}

#[tokio::test]
async fn an_unnamed_record_that_cannot_be_quarantined_fails_the_invocation() {
    let store = MemoryStore {
        quarantine_unavailable: true,
        ..Default::default()
    };

    let result = writer::process(&store, json!({ "Records": [{"kinesis": 42}] })).await;

    assert!(result.is_err());
}

#[tokio::test]
async fn a_payload_that_is_not_a_kinesis_event_is_an_error() {
    let store = MemoryStore::default();

    for payload in [json!({}), json!({"Records": "x"}), json!([1]), json!(null)] {
        assert!(writer::process(&store, payload).await.is_err());
    }
}

#[tokio::test]
async fn the_fixture_batch_decodes() {
    let store = MemoryStore::default();

    let (response, summary) = writer::process(&store, fixture("kinesis_batch.json"))
        .await
        .unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!(summary.stored, 2);
}

#[tokio::test]
async fn the_response_serializes_as_lambda_expects() {
    let store = MemoryStore {
        unavailable: true,
        ..Default::default()
    };

    let (response, _) = writer::process(&store, batch(&events(1), 7)).await.unwrap();

    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": seq(7)}]})
    );
}

#[tokio::test]
async fn a_batch_under_the_pipeline_threshold_is_one_write() {
    let store = MemoryStore::default();

    let (_, summary) = writer::process(&store, batch(&events(writer::PIPELINE_MIN_RECORDS - 1), 1))
        .await
        .unwrap();

    assert_eq!(summary.stored, writer::PIPELINE_MIN_RECORDS as u64 - 1);
    assert_eq!(*store.writes.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_large_batch_is_stored_in_stream_order_and_the_first_copy_of_an_id_wins() {
    let store = MemoryStore::default();
    let mut events = events(500);
    // A second copy of e10, late in the batch (in the part decoded while the first is written).
    let mut copy = events[10].clone();
    copy.action = "something_else".parse().unwrap();
    events[450] = copy;

    let (response, summary) = writer::process(&store, batch(&events, 1)).await.unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!((summary.stored, summary.duplicates), (499, 1));
    assert_eq!(
        *store.writes.lock().unwrap(),
        1,
        "two parts, committed together (this store buffers them into one write)"
    );
    let stored = store.events.lock().unwrap();
    let expected: Vec<&str> = events
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 450)
        .map(|(_, e)| e.id.as_str())
        .collect();
    let order: Vec<&str> = stored.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(order, expected, "stream order is kept across the parts");
    assert_eq!(stored[10].action, "billing_update", "the first copy wins");
}

#[tokio::test]
async fn an_unavailable_store_reports_every_record_of_a_large_batch_for_retry() {
    let store = MemoryStore {
        unavailable: true,
        ..Default::default()
    };

    let (response, summary) = writer::process(&store, batch(&events(500), 1))
        .await
        .unwrap();

    let every: Vec<String> = (1..=500).map(seq).collect();
    assert_eq!(failures(&response), every);
    assert_eq!(summary.failed, 500);
    assert_eq!(
        *store.writes.lock().unwrap(),
        1,
        "the second part is not tried"
    );
}

#[tokio::test]
async fn poison_in_either_part_of_a_large_batch_is_quarantined_and_the_rest_stored() {
    let store = MemoryStore {
        refuse_id: Some("e400".into()),
        ..Default::default()
    };
    let good = events(500);
    let mut records: Vec<Value> = good
        .iter()
        .enumerate()
        .map(|(i, e)| record(&seq(i as u64 + 1), &e.encode()))
        .collect();
    records[5] = record(&seq(6), b"junk in the first part");
    records[300] = record(&seq(301), b"junk in the second part");

    let (response, summary) = writer::process(&store, json!({ "Records": records }))
        .await
        .unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!(summary.stored, 497);
    assert_eq!(summary.quarantined, 3);
    let rejected = store.rejected.lock().unwrap();
    let keys: Vec<&str> = rejected.iter().map(|r| r.record_key.as_str()).collect();
    assert_eq!(keys, [seq(6), seq(301), seq(401)]);
}

#[tokio::test]
async fn a_batch_reports_its_metrics_as_emf_with_each_events_time_from_ingest() {
    let store = MemoryStore::default();
    // Received ten seconds ago, arrived on the stream a minute ago: the oldest record counts.
    let received = chrono::DateTime::from_timestamp_millis(
        (chrono::Utc::now() - chrono::Duration::seconds(10)).timestamp_millis(),
    )
    .unwrap();
    let mut events = events(3);
    for e in &mut events {
        e.received_at = Timestamp::new(received).unwrap();
    }
    let mut payload = batch(&events, 1);
    let minute_ago = (chrono::Utc::now() - chrono::Duration::seconds(60)).timestamp_millis();
    payload["Records"]
        .as_array_mut()
        .unwrap()
        .push(record(&seq(9), b"junk"));
    let seconds_ago = (chrono::Utc::now() - chrono::Duration::seconds(5)).timestamp_millis();
    for r in payload["Records"].as_array_mut().unwrap() {
        r["kinesis"]["approximateArrivalTimestamp"] = json!(seconds_ago as f64 / 1000.0);
    }
    payload["Records"][1]["kinesis"]["approximateArrivalTimestamp"] =
        json!(minute_ago as f64 / 1000.0);

    let (_, summary) = writer::process(&store, payload).await.unwrap();
    let lines = writer::metrics(&summary, std::time::Duration::from_millis(42)).to_lines(0);

    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(line["Function"], "writer");
    assert_eq!(
        (
            line["Records"].as_f64(),
            line["EventsStored"].as_f64(),
            line["Quarantined"].as_f64()
        ),
        (Some(4.0), Some(3.0), Some(1.0))
    );
    assert_eq!(line["BatchTime"], 42.0);
    let age = line["IteratorAge"].as_f64().unwrap();
    assert!((60_000.0..70_000.0).contains(&age), "{age}");
    let latencies: Vec<f64> = line["IngestToStored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(latencies.len(), 3, "one per stored event");
    assert!(
        latencies.iter().all(|l| (10_000.0..20_000.0).contains(l)),
        "{latencies:?}"
    );
    let names: Vec<&str> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Records",
            "EventsStored",
            "Duplicates",
            "Conflicts",
            "Quarantined",
            "RecordsRetried",
            "BatchTime",
            "IteratorAge",
            "IngestToStored"
        ]
    );
}
