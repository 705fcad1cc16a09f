//! Test support: a real LocalStack stream per test, and an in-test Lambda Invoke API.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_kinesis::config::{Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use base64::Engine;
use sentinel_esm::EsmConfig;
use serde_json::{json, Value};

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sentinel_esm=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A Kinesis client for LocalStack, unless the environment points elsewhere.
pub async fn kinesis_client() -> aws_sdk_kinesis::Client {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region));
    if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        loader = loader.credentials_provider(Credentials::new("test", "test", None, None, "test"));
    }
    aws_sdk_kinesis::Client::new(&loader.load().await)
}

/// A record as put on the stream.
#[derive(Clone, Debug)]
pub struct PutRecord {
    pub n: u32,
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// A freshly named two-shard stream and checkpoint directory, deleted on drop.
pub struct TestStream {
    pub name: String,
    pub arn: String,
    pub shards: Vec<(String, String)>,
    pub checkpoint_dir: PathBuf,
    pub client: aws_sdk_kinesis::Client,
    next_n: u32,
}

impl TestStream {
    pub async fn create() -> Self {
        let client = kinesis_client().await;
        let name = format!("esm-test-{}", uuid::Uuid::new_v4().simple());
        client
            .create_stream()
            .stream_name(&name)
            .shard_count(2)
            .send()
            .await
            .expect("CreateStream failed: is LocalStack running on AWS_ENDPOINT_URL?");
        let mut stream = Self {
            checkpoint_dir: std::env::temp_dir().join(&name),
            name,
            arn: String::new(),
            shards: Vec::new(),
            client,
            next_n: 0,
        };
        stream.arn = eventually("the stream to become ACTIVE", || async {
            let summary = stream
                .client
                .describe_stream_summary()
                .stream_name(&stream.name)
                .send()
                .await
                .ok()?
                .stream_description_summary?;
            (summary.stream_status == StreamStatus::Active).then_some(summary.stream_arn)
        })
        .await;
        let shards = stream
            .client
            .list_shards()
            .stream_name(&stream.name)
            .send()
            .await
            .unwrap()
            .shards
            .unwrap();
        stream.shards = shards
            .into_iter()
            .map(|s| (s.shard_id, s.hash_key_range.unwrap().starting_hash_key))
            .collect();
        stream.shards.sort();
        assert_eq!(stream.shards.len(), 2);
        stream
    }

    pub fn shard_id(&self, index: usize) -> &str {
        &self.shards[index].0
    }

    /// A runner config for this stream with test-friendly timings.
    pub fn config(&self, invoke_url: &str) -> EsmConfig {
        EsmConfig {
            lambda_invoke_url: invoke_url.to_owned(),
            checkpoint_dir: self.checkpoint_dir.clone(),
            max_batching_window: Duration::from_millis(200),
            poll_interval: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..EsmConfig::new(&self.name)
        }
    }

    /// Puts `count` records, numbered on from the last put, all on shard `shard` (0 or 1),
    /// or alternating between the shards when `shard` is `None`.
    pub async fn put(&mut self, count: u32, shard: Option<usize>) -> Vec<PutRecord> {
        let mut put = Vec::new();
        for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
            let mut request = self.client.put_records().stream_name(&self.name);
            let mut sent = Vec::new();
            for _ in chunk {
                let n = self.next_n;
                self.next_n += 1;
                let target = shard.unwrap_or(n as usize % 2);
                let partition_key = format!("pk-{n}");
                let data = serde_json::to_vec(&json!({ "n": n, "note": "ünïcödé ✓" })).unwrap();
                request = request.records(
                    PutRecordsRequestEntry::builder()
                        .partition_key(&partition_key)
                        .explicit_hash_key(&self.shards[target].1)
                        .data(Blob::new(data.clone()))
                        .build()
                        .unwrap(),
                );
                sent.push((n, partition_key, data));
            }
            let out = request.send().await.expect("PutRecords failed");
            assert_eq!(
                out.failed_record_count.unwrap_or(0),
                0,
                "PutRecords rejected records"
            );
            for ((n, partition_key, data), entry) in sent.into_iter().zip(out.records) {
                put.push(PutRecord {
                    n,
                    shard_id: entry.shard_id.unwrap(),
                    sequence_number: entry.sequence_number.unwrap(),
                    partition_key,
                    data,
                });
            }
        }
        put
    }

    /// The checkpoint file's content, if any.
    pub fn checkpoints(&self) -> HashMap<String, String> {
        std::fs::read(self.checkpoint_dir.join(format!("{}.json", self.name)))
            .map(|bytes| serde_json::from_slice(&bytes).unwrap())
            .unwrap_or_default()
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::fs::remove_dir_all(&self.checkpoint_dir);
        // Drop cannot await, and may run while the test's runtime unwinds: use a fresh one.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = kinesis_client().await;
                let _ = client
                    .delete_stream()
                    .stream_name(&name)
                    .enforce_consumer_deletion(true)
                    .send()
                    .await;
            });
        })
        .join();
    }
}

/// How the fake function answers one invocation.
#[derive(Clone, Debug)]
pub enum Reply {
    Ok(Value),
    /// What `cargo lambda watch` answers when the function fails.
    FunctionError,
}

impl Reply {
    pub fn success() -> Self {
        Reply::Ok(json!({ "batchItemFailures": [] }))
    }

    pub fn failures(sequence_numbers: &[&str]) -> Self {
        let failures: Vec<Value> = sequence_numbers
            .iter()
            .map(|s| json!({ "itemIdentifier": s }))
            .collect();
        Reply::Ok(json!({ "batchItemFailures": failures }))
    }
}

/// A record as the fake function received it.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub n: u32,
    pub shard_id: String,
    pub sequence_number: String,
    pub raw: Value,
}

/// One invocation the fake function received.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub function: String,
    pub payload: Value,
    pub records: Vec<Delivered>,
    pub reply: Reply,
}

type Script = Box<dyn FnMut(&[Delivered]) -> Reply + Send>;

#[derive(Clone)]
struct FakeState {
    invocations: Arc<Mutex<Vec<Invocation>>>,
    script: Arc<Mutex<Script>>,
}

/// An in-test Lambda Invoke API that records payloads and answers per a script.
pub struct FakeFunction {
    pub url: String,
    invocations: Arc<Mutex<Vec<Invocation>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeFunction {
    pub async fn start(script: impl FnMut(&[Delivered]) -> Reply + Send + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, script)
    }

    pub async fn start_on(
        port: u16,
        script: impl FnMut(&[Delivered]) -> Reply + Send + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        Self::serve(listener, script)
    }

    fn serve(
        listener: tokio::net::TcpListener,
        script: impl FnMut(&[Delivered]) -> Reply + Send + 'static,
    ) -> Self {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = FakeState {
            invocations: Arc::default(),
            script: Arc::new(Mutex::new(Box::new(script))),
        };
        let invocations = state.invocations.clone();
        let app = Router::new()
            .route("/2015-03-31/functions/{function}/invocations", post(invoke))
            .with_state(state);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            invocations,
            server,
        }
    }

    pub fn invocations(&self) -> Vec<Invocation> {
        self.invocations.lock().unwrap().clone()
    }

    /// Every record received, in arrival order, including redeliveries.
    pub fn records(&self) -> Vec<Delivered> {
        self.invocations()
            .into_iter()
            .flat_map(|i| i.records)
            .collect()
    }

    /// Waits until every one of `put` has been received at least once.
    pub async fn wait_for(&self, put: &[PutRecord]) {
        eventually("every record to be delivered", || async {
            let received: std::collections::HashSet<String> = self
                .records()
                .into_iter()
                .map(|r| r.sequence_number)
                .collect();
            put.iter()
                .all(|p| received.contains(&p.sequence_number))
                .then_some(())
        })
        .await
    }
}

impl Drop for FakeFunction {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn invoke(
    State(state): State<FakeState>,
    Path(function): Path<String>,
    body: Bytes,
) -> (StatusCode, String) {
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let records = delivered_records(&payload);
    let reply = (state.script.lock().unwrap())(&records);
    state.invocations.lock().unwrap().push(Invocation {
        function,
        payload,
        records,
        reply: reply.clone(),
    });
    match reply {
        Reply::Ok(body) => (StatusCode::OK, body.to_string()),
        Reply::FunctionError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "errorType": "&alloc::boxed::Box<dyn core::error::Error>", "errorMessage": "scripted failure" })
                .to_string(),
        ),
    }
}

fn delivered_records(payload: &Value) -> Vec<Delivered> {
    let Some(records) = payload["Records"].as_array() else {
        return Vec::new();
    };
    records
        .iter()
        .map(|r| {
            let data = base64::engine::general_purpose::STANDARD
                .decode(r["kinesis"]["data"].as_str().unwrap())
                .unwrap();
            let body: Value = serde_json::from_slice(&data).unwrap();
            let event_id = r["eventID"].as_str().unwrap();
            Delivered {
                n: body["n"].as_u64().unwrap() as u32,
                shard_id: event_id.split(':').next().unwrap().to_owned(),
                sequence_number: r["kinesis"]["sequenceNumber"].as_str().unwrap().to_owned(),
                raw: r.clone(),
            }
        })
        .collect()
}

/// Polls `check` until it yields a value, panicking after [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {TIMEOUT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
