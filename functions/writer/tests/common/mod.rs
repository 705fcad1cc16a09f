#![allow(dead_code)]

use base64::Engine;
use sentinel_domain::event::AuditEvent;
use sentinel_domain::fields::{Changes, Metadata, Timestamp};
use serde_json::{json, Value};

pub const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/test";

pub fn event(id: &str, occurred_at: &str) -> AuditEvent {
    let occurred_at = Timestamp::parse(occurred_at).unwrap();
    AuditEvent {
        id: id.parse().unwrap(),
        tenant_id: "default".parse().unwrap(),
        occurred_at,
        received_at: occurred_at,
        actor_id: "user_123".parse().unwrap(),
        actor_type: Some("user".parse().unwrap()),
        action: "billing_update".parse().unwrap(),
        resource_type: "invoice".parse().unwrap(),
        resource_id: "inv_999".parse().unwrap(),
        changes: Changes::parse_stored(
            json!({"status": {"before": "pending", "after": "paid"}})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap(),
        metadata: Metadata::parse(json!({"ip": "192.168.1.50"}).as_object().unwrap().clone())
            .unwrap(),
    }
}

pub fn seq(n: u64) -> String {
    format!("4959033827149025660855969253836157109592157598913658{n:04}")
}

pub fn record(sequence: &str, data: &[u8]) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "pk",
            "sequenceNumber": sequence,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "approximateArrivalTimestamp": 1769904005.123
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("shardId-000000000000:{sequence}"),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::000000000000:role/writer",
        "awsRegion": "us-east-1",
        "eventSourceARN": STREAM_ARN
    })
}

/// A KinesisEvent carrying `events`, with sequence numbers from `first_seq`.
pub fn batch(events: &[AuditEvent], first_seq: u64) -> Value {
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| record(&seq(first_seq + i as u64), &e.encode()))
        .collect();
    json!({ "Records": records })
}

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn failures(response: &aws_lambda_events::event::streams::KinesisEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}
