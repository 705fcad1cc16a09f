//! Ingest against the real Kinesis of LocalStack, each test on a stream of its own.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ingest::{handle, Ingest};
use sentinel_aws::kinesis::{KinesisSink, KinesisTimeouts};
use sentinel_domain::event::AuditEvent;
use sentinel_domain::publish::{publish, OutgoingRecord, RetryPolicy};
use sentinel_testing::{kinesis_client, localstack_env, TestStream};
use serde_json::{json, Value};

/// The issuer whose tokens this suite's functions trust.
static ISSUER: std::sync::LazyLock<sentinel_testing::auth::TestIssuer> =
    std::sync::LazyLock::new(sentinel_testing::auth::TestIssuer::new);

/// `Bearer <token>` of a writer of the default tenant.
fn writer_token() -> String {
    ISSUER.bearer("default", &[sentinel_lambda::identity::Scope::EventsWrite])
}

/// A Kinesis client built as the function builds it (one attempt per call, bounded in time),
/// for LocalStack or for `endpoint` when given.
async fn function_client(endpoint: Option<&str>) -> aws_sdk_kinesis::Client {
    localstack_env();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    sentinel_aws::kinesis::client(&loader.load().await, &KinesisTimeouts::default())
}

fn post(body: &Value) -> lambda_http::Request {
    let event = json!({
        "version": "2.0", "routeKey": "POST /events", "rawPath": "/events", "rawQueryString": "",
        "headers": {"content-type": "application/json", "authorization": writer_token()},
        "requestContext": {"http": {"method": "POST", "path": "/events", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
                           "requestId": "r", "routeKey": "POST /events", "stage": "$default", "accountId": "000000000000", "apiId": "local",
                           "domainName": "localhost", "domainPrefix": "localhost", "time": "01/Feb/2026:00:00:05 +0000", "timeEpoch": 1769904005000u64},
        "body": body.to_string(), "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn event(resource: usize, n: usize) -> Value {
    json!({
        "actor_id": "user_123", "action": "billing_update", "resource_type": "invoice",
        "resource_id": format!("inv_{resource}"), "changes": {"seq": n}
    })
}

fn decode(record: &aws_sdk_kinesis::types::Record) -> AuditEvent {
    AuditEvent::decode(record.data().as_ref()).unwrap()
}

#[tokio::test]
async fn ingest_puts_every_event_on_the_stream_with_each_resource_on_one_shard_in_order() {
    let stream = TestStream::create(kinesis_client(None).await, 2).await;
    let state = Ingest::new(
        Arc::new(KinesisSink::new(function_client(None).await, &stream.name)),
        ISSUER.authenticator(),
    );
    let mut ids = Vec::new();
    for request in 0..3 {
        let events: Vec<Value> = (0..100).map(|i| event(i % 10, request * 100 + i)).collect();

        let response = handle(&state, post(&json!({ "events": events })))
            .await
            .unwrap();

        assert_eq!(response.status(), 202);
        let body: Value = match response.body() {
            lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("{other:?}"),
        };
        ids.extend(
            body["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
    }

    let records = stream.read_all().await;
    assert_eq!(records.len(), 300);
    let on_stream: HashSet<String> = records
        .iter()
        .map(|(_, r)| decode(r).id.into_string())
        .collect();
    assert_eq!(on_stream, ids.iter().cloned().collect::<HashSet<_>>());
    let mut by_resource: BTreeMap<String, (HashSet<String>, Vec<i64>)> = BTreeMap::new();
    for (shard, record) in &records {
        let event = decode(record);
        assert_eq!(record.partition_key(), Some(event.partition_key().as_str()));
        let entry = by_resource
            .entry(event.resource_id.to_string())
            .or_default();
        entry.0.insert(shard.clone());
        entry
            .1
            .push(event.changes["seq"]["after"].as_i64().unwrap());
    }
    assert_eq!(by_resource.len(), 10);
    for (resource, (shards, seqs)) in by_resource {
        assert_eq!(shards.len(), 1, "{resource} is spread over shards");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{resource} is out of order: {seqs:?}"
        );
    }
    let shards_used: HashSet<&String> = records.iter().map(|(s, _)| s).collect();
    assert_eq!(shards_used.len(), 2, "ten resources should use both shards");
}

#[tokio::test]
async fn putrecords_refusals_are_retried_until_every_event_is_on_the_stream() {
    // A second LocalStack whose Kinesis refuses 30% of PutRecords calls
    // (KINESIS_ERROR_PROBABILITY); scripts/test starts it.
    let endpoint =
        std::env::var("CHAOS_AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4567".into());
    let stream = TestStream::create(kinesis_client(Some(&endpoint)).await, 2).await;
    // The SDK does not retry (the function's client); publish alone gets every record on.
    let sink = KinesisSink::new(function_client(Some(&endpoint)).await, &stream.name);
    let policy = RetryPolicy {
        max_attempts: 40,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };
    let mut calls = 0;
    let mut expected = HashSet::new();

    for request in 0..30 {
        let records: Vec<OutgoingRecord> = (0..20)
            .map(|i| {
                let event = AuditEvent::decode(&{
                    let mut e: Value = event(i, request * 20 + i);
                    e["id"] = json!(format!("chaos-{request}-{i}"));
                    let parsed = sentinel_domain::validation::parse_request(
                        e.to_string().as_bytes(),
                        chrono::Utc::now(),
                        &sentinel_domain::fields::TenantId::default_tenant(),
                        || unreachable!(),
                    )
                    .unwrap();
                    parsed[0].encode()
                })
                .unwrap();
                expected.insert(event.id.to_string());
                OutgoingRecord::from_event(&event)
            })
            .collect();
        let report = publish(&sink, records, &policy).await;
        assert!(
            report.is_complete(),
            "request {request}: {:?}",
            report.unaccepted
        );
        calls += report.calls;
    }

    assert!(
        calls > 30,
        "the chaos stream refused nothing ({calls} calls): is KINESIS_ERROR_PROBABILITY set?"
    );
    let on_stream: Vec<String> = stream
        .read_all()
        .await
        .iter()
        .map(|(_, r)| decode(r).id.into_string())
        .collect();
    assert_eq!(on_stream.len(), 600, "no loss and no duplicates");
    assert_eq!(on_stream.into_iter().collect::<HashSet<_>>(), expected);
}

#[tokio::test]
async fn ingest_answers_503_quickly_when_the_stream_does_not_exist() {
    let state = Ingest::new(
        Arc::new(KinesisSink::new(
            function_client(None).await,
            "sentinel-no-such-stream",
        )),
        ISSUER.authenticator(),
    );
    let started = std::time::Instant::now();

    let response = handle(&state, post(&event(1, 1))).await.unwrap();

    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a missing stream is not worth retrying"
    );
    let body = match response.body() {
        lambda_http::Body::Text(t) => t.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        !body.contains("ResourceNotFound") && !body.contains("arn:"),
        "no internals leak: {body}"
    );
}
