//! Ingest against a Kinesis endpoint that accepts connections and never answers (issue 9,
//! defect 4): the function's own client and sink, over real TCP, must still answer in time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::{Credentials, Region};
use ingest::{handle, Ingest, PublishBudget};
use lambda_http::Body;
use sentinel_aws::kinesis::{KinesisSink, KinesisTimeouts};
use sentinel_domain::publish::{OutgoingRecord, RecordSink};
use serde_json::{json, Value};

/// The issuer whose tokens this suite's functions trust.
static ISSUER: std::sync::LazyLock<sentinel_testing::auth::TestIssuer> =
    std::sync::LazyLock::new(sentinel_testing::auth::TestIssuer::new);

/// `Bearer <token>` of a writer of the default tenant.
fn writer_token() -> String {
    ISSUER.bearer("default", &[sentinel_lambda::identity::Scope::EventsWrite])
}
use tokio::net::TcpListener;

/// A TCP endpoint on 127.0.0.1 that accepts every connection, reads what it is sent, and
/// never answers; each connection stays open until the client closes it.
struct SilentEndpoint {
    url: String,
    connections: Arc<AtomicUsize>,
}

impl SilentEndpoint {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut socket, &mut tokio::io::sink()).await;
                });
            }
        });
        Self { url, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// A Kinesis client for this endpoint, built by the function's own constructor.
    async fn kinesis_client(&self, timeouts: &KinesisTimeouts) -> aws_sdk_kinesis::Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "hang-test"))
            .load()
            .await;
        sentinel_aws::kinesis::client(&config, timeouts)
    }
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

fn event(n: usize) -> Value {
    json!({
        "actor_id": "user_123", "action": "billing_update", "resource_type": "invoice",
        "resource_id": format!("inv_{n}"), "changes": {"status": {"before": "pending", "after": "paid"}}
    })
}

#[tokio::test]
async fn ingest_answers_503_with_every_id_within_its_budget_when_kinesis_never_answers() {
    let kinesis = SilentEndpoint::start().await;
    let client = kinesis.kinesis_client(&KinesisTimeouts::default()).await;
    let budget = PublishBudget {
        max: Duration::from_millis(1500),
        margin: Duration::from_secs(1),
    };
    let state = Ingest::new(
        Arc::new(KinesisSink::new(client, "sentinel-hang-test")),
        ISSUER.authenticator(),
    )
    .with_budget(budget);
    let body = json!({ "events": [event(1), event(2), event(3)] });
    let started = Instant::now();

    // Bounded, so that a regression fails here instead of hanging the suite.
    let response = tokio::time::timeout(
        budget.max + Duration::from_secs(2),
        handle(&state, post(&body)),
    )
    .await
    .expect("ingest did not answer within its budget + 2 s")
    .unwrap();

    let elapsed = started.elapsed();
    eprintln!("ingest answered {} after {elapsed:?}", response.status());
    assert!(
        kinesis.connections() >= 1,
        "the client never reached the endpoint"
    );
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("{other:?}"),
    };
    let error = &body["error"];
    assert_eq!(error["code"], "stream_unavailable");
    assert_eq!(error["ids"].as_array().unwrap().len(), 3);
    assert_eq!(error["unaccepted_ids"], error["ids"]);
}

#[tokio::test]
async fn ingest_retries_calls_that_time_out_until_its_budget_is_spent_then_answers_503() {
    let kinesis = SilentEndpoint::start().await;
    let timeouts = KinesisTimeouts {
        attempt: Duration::from_millis(300),
        operation: Duration::from_millis(300),
        ..KinesisTimeouts::default()
    };
    let budget = PublishBudget {
        max: Duration::from_millis(1500),
        margin: Duration::from_secs(1),
    };
    let sink = KinesisSink::new(
        kinesis.kinesis_client(&timeouts).await,
        "sentinel-hang-test",
    );
    let state = Ingest::new(Arc::new(sink), ISSUER.authenticator()).with_budget(budget);
    let body = json!({ "events": [event(1), event(2)] });

    let response = tokio::time::timeout(
        budget.max + Duration::from_secs(2),
        handle(&state, post(&body)),
    )
    .await
    .expect("ingest did not answer within its budget + 2 s")
    .unwrap();

    assert_eq!(response.status(), 503);
    assert!(
        kinesis.connections() >= 2,
        "a timed-out call is retried while the budget lasts ({} calls)",
        kinesis.connections()
    );
}

#[tokio::test]
async fn a_kinesis_call_never_answered_ends_in_one_attempt_as_a_retryable_timeout() {
    let kinesis = SilentEndpoint::start().await;
    let timeouts = KinesisTimeouts {
        connect: Duration::from_secs(1),
        attempt: Duration::from_millis(300),
        // Room for the SDK's own retries, were it to make any.
        operation: Duration::from_secs(10),
    };
    let sink = KinesisSink::new(
        kinesis.kinesis_client(&timeouts).await,
        "sentinel-hang-test",
    );
    let record = OutgoingRecord {
        id: "e1".into(),
        partition_key: "pk".into(),
        data: b"{}".to_vec(),
    };
    let started = Instant::now();

    let outcome = tokio::time::timeout(Duration::from_secs(5), sink.put_records(&[record]))
        .await
        .expect("the call was not bounded by the attempt timeout");

    let elapsed = started.elapsed();
    let error = outcome.expect_err("nothing answered, yet the call succeeded");
    assert!(error.retryable, "{error}");
    assert_eq!(error.message, "Timeout");
    assert!(
        elapsed < timeouts.attempt + Duration::from_secs(2),
        "took {elapsed:?}"
    );
    // One connection at most: none when a loaded machine spends the whole attempt before
    // the endpoint accepts, never a second one (that would be the SDK retrying by itself).
    assert!(
        kinesis.connections() <= 1,
        "the SDK retried the call itself: {} connections",
        kinesis.connections()
    );
}
