//! End-to-end tests against a real LocalStack Kinesis (AWS_ENDPOINT_URL, default
//! http://127.0.0.1:4566) with an in-test stand-in for the Lambda Invoke API.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use sentinel_esm::{compare_sequence_numbers, EsmHandle};
use support::{
    free_port, init_logs, kinesis_client, Delivered, FakeFunction, PutRecord, Reply, TestStream,
};

fn by_shard(records: &[Delivered]) -> HashMap<String, Vec<String>> {
    let mut shards: HashMap<String, Vec<String>> = HashMap::new();
    for r in records {
        shards
            .entry(r.shard_id.clone())
            .or_default()
            .push(r.sequence_number.clone());
    }
    shards
}

fn put_by_shard(put: &[PutRecord]) -> HashMap<String, Vec<String>> {
    let mut shards: HashMap<String, Vec<String>> = HashMap::new();
    for p in put {
        shards
            .entry(p.shard_id.clone())
            .or_default()
            .push(p.sequence_number.clone());
    }
    shards
}

fn delivery_counts(records: &[Delivered]) -> HashMap<u32, usize> {
    let mut counts = HashMap::new();
    for r in records {
        *counts.entry(r.n).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_on_both_shards_is_delivered_once_in_order_shaped_like_aws() {
    init_logs();
    let mut stream = TestStream::create().await;
    let function = FakeFunction::start(|_| Reply::success()).await;
    let put_before = stream.put(30, None).await;
    let esm = EsmHandle::spawn(stream.config(&function.url), kinesis_client().await);

    let put_after = stream.put(30, None).await;
    let put: Vec<PutRecord> = put_before.into_iter().chain(put_after).collect();
    function.wait_for(&put).await;
    esm.stop().await.unwrap();

    let delivered = function.records();
    assert_eq!(
        delivered.len(),
        put.len(),
        "some record was delivered twice"
    );
    let expected = put_by_shard(&put);
    assert_eq!(expected.len(), 2, "records should span both shards");
    assert_eq!(by_shard(&delivered), expected);
    let put_by_seq: HashMap<&str, &PutRecord> = put
        .iter()
        .map(|p| (p.sequence_number.as_str(), p))
        .collect();
    for invocation in function.invocations() {
        assert_eq!(invocation.function, "writer");
        let shards: Vec<&str> = invocation
            .records
            .iter()
            .map(|r| r.shard_id.as_str())
            .collect();
        assert!(
            shards.windows(2).all(|w| w[0] == w[1]),
            "a batch mixes shards"
        );
    }
    for record in &delivered {
        let raw = &record.raw;
        let original = put_by_seq[record.sequence_number.as_str()];
        assert_eq!(raw["eventSource"], "aws:kinesis");
        assert_eq!(raw["eventName"], "aws:kinesis:record");
        assert_eq!(raw["eventVersion"], "1.0");
        assert_eq!(raw["awsRegion"], "us-east-1");
        assert_eq!(raw["eventSourceARN"], stream.arn.as_str());
        assert_eq!(
            raw["invokeIdentityArn"],
            "arn:aws:iam::000000000000:role/sentinel-local-esm"
        );
        assert_eq!(
            raw["eventID"],
            format!("{}:{}", original.shard_id, original.sequence_number)
        );
        let kinesis = &raw["kinesis"];
        assert_eq!(kinesis["kinesisSchemaVersion"], "1.0");
        assert_eq!(kinesis["partitionKey"], original.partition_key.as_str());
        assert_eq!(kinesis["sequenceNumber"], original.sequence_number.as_str());
        let data = base64::engine::general_purpose::STANDARD
            .decode(kinesis["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(data, original.data);
        assert!(kinesis["approximateArrivalTimestamp"].as_f64().unwrap() > 1.5e9);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_never_exceed_the_batch_size() {
    init_logs();
    let mut stream = TestStream::create().await;
    let function = FakeFunction::start(|_| Reply::success()).await;
    let put = stream.put(250, Some(0)).await;
    let config = sentinel_esm::EsmConfig {
        batch_size: 100,
        max_batching_window: Duration::from_secs(2),
        ..stream.config(&function.url)
    };

    let esm = EsmHandle::spawn(config, kinesis_client().await);
    function.wait_for(&put).await;
    esm.stop().await.unwrap();

    let sizes: Vec<usize> = function
        .invocations()
        .iter()
        .map(|i| i.records.len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 250, "sizes: {sizes:?}");
    assert!(sizes.iter().all(|&s| s <= 100), "sizes: {sizes:?}");
    assert!(sizes.contains(&100), "full batches are expected: {sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arriving_within_the_batching_window_share_one_invocation() {
    init_logs();
    let mut stream = TestStream::create().await;
    let function = FakeFunction::start(|_| Reply::success()).await;
    let config = sentinel_esm::EsmConfig {
        max_batching_window: Duration::from_secs(4),
        ..stream.config(&function.url)
    };
    let esm = EsmHandle::spawn(config, kinesis_client().await);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut put = Vec::new();
    for _ in 0..5 {
        put.extend(stream.put(1, Some(1)).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    function.wait_for(&put).await;
    esm.stop().await.unwrap();

    let invocations = function.invocations();
    assert_eq!(
        invocations.len(),
        1,
        "expected one batch of 5, got {invocations:?}"
    );
    assert_eq!(invocations[0].records.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_item_failure_redelivers_from_the_failed_record_only() {
    init_logs();
    let mut stream = TestStream::create().await;
    let mut failed_once = false;
    let function = FakeFunction::start(move |records| match records.iter().find(|r| r.n == 4) {
        Some(r) if !failed_once => {
            failed_once = true;
            Reply::failures(&[&r.sequence_number])
        }
        _ => Reply::success(),
    })
    .await;
    let put = stream.put(10, Some(0)).await;

    let esm = EsmHandle::spawn(stream.config(&function.url), kinesis_client().await);
    function.wait_for(&put).await;
    eventually_checkpointed(&stream, &put).await;
    esm.stop().await.unwrap();

    let invocations = function.invocations();
    let failing = invocations
        .iter()
        .position(|i| matches!(&i.reply, Reply::Ok(v) if !v["batchItemFailures"].as_array().unwrap().is_empty()))
        .expect("the scripted failure happened");
    let retry = &invocations[failing + 1];
    assert_eq!(
        retry.records[0].n, 4,
        "the retry starts at the failed record"
    );
    let failed_batch: Vec<u32> = invocations[failing].records.iter().map(|r| r.n).collect();
    let counts = delivery_counts(&function.records());
    for n in 0..10 {
        let expected = if n >= 4 && failed_batch.contains(&n) {
            2
        } else {
            1
        };
        assert_eq!(
            counts[&n], expected,
            "record {n} delivered {} times",
            counts[&n]
        );
    }
    assert_eq!(
        by_shard(&function.records())[stream.shard_id(0)].len(),
        10 + failed_batch.iter().filter(|&&n| n >= 4).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_redelivers_the_whole_batch() {
    init_logs();
    let mut stream = TestStream::create().await;
    let mut calls = 0;
    let function = FakeFunction::start(move |_| {
        calls += 1;
        if calls == 1 {
            Reply::FunctionError
        } else {
            Reply::success()
        }
    })
    .await;
    let put = stream.put(5, Some(1)).await;

    let esm = EsmHandle::spawn(stream.config(&function.url), kinesis_client().await);
    function.wait_for(&put).await;
    eventually_checkpointed(&stream, &put).await;
    esm.stop().await.unwrap();

    let invocations = function.invocations();
    assert!(matches!(invocations[0].reply, Reply::FunctionError));
    let first: Vec<&str> = invocations[0]
        .records
        .iter()
        .map(|r| r.sequence_number.as_str())
        .collect();
    let second: Vec<&str> = invocations[1]
        .records
        .iter()
        .map(|r| r.sequence_number.as_str())
        .collect();
    assert!(!first.is_empty());
    assert_eq!(
        &second[..first.len()],
        &first[..],
        "the retry starts with the same records"
    );
    let counts = delivery_counts(&function.records());
    for r in &invocations[0].records {
        assert_eq!(
            counts[&r.n], 2,
            "record {} of the failed batch is redelivered once",
            r.n
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_survive_a_restart_so_only_new_records_are_delivered() {
    init_logs();
    let mut stream = TestStream::create().await;
    let first_function = FakeFunction::start(|_| Reply::success()).await;
    let old = stream.put(6, None).await;
    let esm = EsmHandle::spawn(stream.config(&first_function.url), kinesis_client().await);
    first_function.wait_for(&old).await;
    eventually_checkpointed(&stream, &old).await;
    esm.stop().await.unwrap();

    let new = stream.put(6, None).await;
    let second_function = FakeFunction::start(|_| Reply::success()).await;
    let esm = EsmHandle::spawn(stream.config(&second_function.url), kinesis_client().await);
    second_function.wait_for(&new).await;
    // Leave time for an (unexpected) redelivery of the old records to show up.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    esm.stop().await.unwrap();

    let mut delivered: Vec<u32> = second_function.records().iter().map(|r| r.n).collect();
    delivered.sort_unstable();
    let expected: Vec<u32> = new.iter().map(|p| p.n).collect();
    assert_eq!(delivered, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_the_function_endpoint_is_still_down() {
    init_logs();
    let mut stream = TestStream::create().await;
    let port = free_port();
    let config = stream.config(&format!("http://127.0.0.1:{port}"));
    let esm = EsmHandle::spawn(config, kinesis_client().await);
    let put = stream.put(10, None).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!esm.is_finished(), "the runner must keep retrying");

    let function = FakeFunction::start_on(port, |_| Reply::success()).await;
    function.wait_for(&put).await;
    esm.stop().await.unwrap();

    let delivered = function.records();
    assert_eq!(delivered.len(), put.len());
    assert_eq!(by_shard(&delivered), put_by_shard(&put));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_still_failing_after_max_retry_attempts_is_skipped() {
    init_logs();
    let mut stream = TestStream::create().await;
    let function = FakeFunction::start(|records| {
        if records.iter().any(|r| r.n == 0) {
            Reply::FunctionError
        } else {
            Reply::success()
        }
    })
    .await;
    let poison = stream.put(1, Some(0)).await;
    let config = sentinel_esm::EsmConfig {
        max_retry_attempts: Some(2),
        ..stream.config(&function.url)
    };

    let esm = EsmHandle::spawn(config, kinesis_client().await);
    eventually_checkpointed(&stream, &poison).await;
    let later = stream.put(3, Some(0)).await;
    function.wait_for(&later).await;
    esm.stop().await.unwrap();

    let attempts = function
        .invocations()
        .iter()
        .filter(|i| i.records.iter().any(|r| r.n == 0))
        .count();
    assert_eq!(attempts, 3, "one attempt and two retries");
    assert!(function
        .records()
        .iter()
        .filter(|r| r.n > 0)
        .all(|r| r.n <= 3));
}

/// Waits until each shard's checkpoint reached the last of `put` on it.
async fn eventually_checkpointed(stream: &TestStream, put: &[PutRecord]) {
    let mut last: HashMap<&str, &str> = HashMap::new();
    for p in put {
        last.insert(&p.shard_id, &p.sequence_number);
    }
    support::eventually("the checkpoints to reach the last record", || async {
        let checkpoints = stream.checkpoints();
        last.iter()
            .all(|(shard, seq)| {
                checkpoints
                    .get(*shard)
                    .is_some_and(|c| compare_sequence_numbers(c, seq) != std::cmp::Ordering::Less)
            })
            .then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_invokes_its_function_with_a_scheduled_event() {
    init_logs();
    let stream = TestStream::create().await;
    let function = FakeFunction::start(|_| Reply::Ok(serde_json::json!({ "archived": 0 }))).await;
    let config = sentinel_esm::EsmConfig {
        schedules: vec![sentinel_esm::ScheduleConfig {
            function: "archiver".into(),
            rate: Duration::from_millis(300),
        }],
        ..stream.config(&function.url)
    };

    let esm = EsmHandle::spawn(config, kinesis_client().await);
    let scheduled = support::eventually("two scheduled invocations", || async {
        let scheduled: Vec<_> = function
            .invocations()
            .into_iter()
            .filter(|i| i.function == "archiver")
            .collect();
        (scheduled.len() >= 2).then_some(scheduled)
    })
    .await;
    esm.stop().await.unwrap();

    let event = &scheduled[0].payload;
    assert_eq!(event["detail-type"], "Scheduled Event");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(event["region"], "us-east-1");
    assert_eq!(
        event["resources"][0],
        "arn:aws:events:us-east-1:000000000000:rule/sentinel-local-schedule"
    );
    assert_ne!(scheduled[0].payload["id"], scheduled[1].payload["id"]);
    assert!(chrono::DateTime::parse_from_rfc3339(event["time"].as_str().unwrap()).is_ok());
}
