//! The ingest handler end to end in-process, with an in-memory stream, fed API Gateway v2
//! requests like the fixture in events/.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ingest::{handle, Ingest, PublishBudget};
use lambda_http::{Body, Context, Request, RequestExt, Response};
use sentinel_domain::event::AuditEvent;
use sentinel_domain::publish::{OutgoingRecord, RecordOutcome, RecordSink, RetryPolicy, SinkError};
use serde_json::{json, Value};

/// The issuer whose tokens this suite's functions trust.
static ISSUER: std::sync::LazyLock<sentinel_testing::auth::TestIssuer> =
    std::sync::LazyLock::new(sentinel_testing::auth::TestIssuer::new);

/// `Bearer <token>` of a writer of the default tenant.
fn writer_token() -> String {
    ISSUER.bearer("default", &[sentinel_lambda::identity::Scope::EventsWrite])
}

/// An in-memory stream; refuses every record while `refusing` is set.
#[derive(Default)]
struct MemoryStream {
    records: Mutex<Vec<OutgoingRecord>>,
    refusing: bool,
}

#[async_trait]
impl RecordSink for MemoryStream {
    async fn put_records(
        &self,
        records: &[OutgoingRecord],
    ) -> Result<Vec<RecordOutcome>, SinkError> {
        if self.refusing {
            return Ok(records
                .iter()
                .map(|_| RecordOutcome::Refused {
                    code: "ProvisionedThroughputExceededException".into(),
                })
                .collect());
        }
        self.records.lock().unwrap().extend(records.iter().cloned());
        Ok(vec![RecordOutcome::Accepted; records.len()])
    }
}

/// A stream that takes every call and never answers.
struct SilentStream;

#[async_trait]
impl RecordSink for SilentStream {
    async fn put_records(
        &self,
        _records: &[OutgoingRecord],
    ) -> Result<Vec<RecordOutcome>, SinkError> {
        std::future::pending().await
    }
}

/// The fixture in events/, with a token of this suite's issuer in place of its placeholder.
fn fixture() -> Value {
    let path = format!(
        "{}/../../events/apigw_post_events.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["headers"]["authorization"] = json!(writer_token());
    event
}

fn request(method: &str, path: &str, content_type: Option<&str>, body: &str) -> Request {
    let mut event = fixture();
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event["rawPath"] = json!(path);
    event["routeKey"] = json!(format!("{method} {path}"));
    match content_type {
        Some(ct) => event["headers"]["content-type"] = json!(ct),
        None => {
            event["headers"]
                .as_object_mut()
                .unwrap()
                .remove("content-type");
        }
    }
    event["body"] = json!(body);
    event["headers"]["authorization"] = json!(writer_token());
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn post(body: &Value) -> Request {
    request(
        "POST",
        "/events",
        Some("application/json"),
        &body.to_string(),
    )
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    }
}

fn state(stream: Arc<MemoryStream>) -> Ingest {
    Ingest::with_policy(stream, ISSUER.authenticator(), quick_retries())
}

fn json_body(response: &Response<Body>) -> Value {
    assert_eq!(response.headers()["content-type"], "application/json");
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap(),
        Body::Empty => panic!("empty body"),
        _ => panic!("unexpected body"),
    }
}

fn event(n: usize) -> Value {
    json!({
        "actor_id": "user_123", "action": "billing_update", "resource_type": "invoice",
        "resource_id": format!("inv_{n}"), "changes": {"status": {"before": "pending", "after": "paid"}}
    })
}

#[tokio::test]
async fn the_fixture_request_is_accepted_and_put_on_the_stream() {
    let stream = Arc::new(MemoryStream::default());
    let request = lambda_http::request::from_str(&fixture().to_string()).unwrap();

    let response = handle(&state(stream.clone()), request).await.unwrap();

    assert_eq!(response.status(), 202);
    assert_eq!(json_body(&response), json!({"ids": ["fixture-api-1"]}));
    let records = stream.records.lock().unwrap();
    assert_eq!(records.len(), 1);
    let event = AuditEvent::decode(&records[0].data).unwrap();
    assert_eq!(event.id, "fixture-api-1");
    assert_eq!(
        event.changes["amount"],
        json!({"before": null, "after": 500})
    );
    assert_eq!(records[0].partition_key, event.partition_key());
}

#[tokio::test]
async fn a_batch_of_500_is_accepted_with_uuidv7_ids_in_order() {
    let stream = Arc::new(MemoryStream::default());
    let body = json!({ "events": (0..500).map(event).collect::<Vec<_>>() });

    let response = handle(&state(stream.clone()), post(&body)).await.unwrap();

    assert_eq!(response.status(), 202);
    let ids: Vec<String> = serde_json::from_value(json_body(&response)["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 500);
    for id in &ids {
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    }
    let records = stream.records.lock().unwrap();
    let stored: Vec<String> = records
        .iter()
        .map(|r| AuditEvent::decode(&r.data).unwrap().id.into_string())
        .collect();
    assert_eq!(stored, ids);
    assert_eq!(
        AuditEvent::decode(&records[42].data).unwrap().resource_id,
        "inv_42"
    );
}

#[tokio::test]
async fn malformed_json_gets_a_json_400_and_nothing_is_put() {
    let stream = Arc::new(MemoryStream::default());

    let response = handle(
        &state(stream.clone()),
        request(
            "POST",
            "/events",
            Some("application/json"),
            "{\"actor_id\": ",
        ),
    )
    .await
    .unwrap();

    assert_eq!(response.status(), 400);
    let body = json_body(&response);
    assert_eq!(body["error"]["code"], "malformed_json");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("request body is not valid JSON"));
    assert!(stream.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_batch_with_one_bad_event_gets_a_400_naming_it_and_nothing_is_put() {
    let stream = Arc::new(MemoryStream::default());
    let mut bad = event(3);
    bad["occurred_at"] = json!("not a time");
    let body = json!({ "events": [event(0), event(1), event(2), bad] });

    let response = handle(&state(stream.clone()), post(&body)).await.unwrap();

    assert_eq!(response.status(), 400);
    let body = json_body(&response);
    assert_eq!(body["error"]["code"], "validation_failed");
    assert_eq!(
        body["error"]["fields"],
        json!({"events[3].occurred_at": "must be an RFC 3339 timestamp, e.g. 2026-01-31T23:59:59Z"})
    );
    assert!(stream.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_wrong_or_missing_content_type_gets_415() {
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let response = handle(
            &state(Arc::default()),
            request("POST", "/events", content_type, &event(1).to_string()),
        )
        .await
        .unwrap();

        assert_eq!(response.status(), 415, "{content_type:?}");
        assert_eq!(
            json_body(&response)["error"]["code"],
            "unsupported_media_type"
        );
    }
    let with_charset = request(
        "POST",
        "/events",
        Some("Application/JSON; charset=utf-8"),
        &event(1).to_string(),
    );
    assert_eq!(
        handle(&state(Arc::default()), with_charset)
            .await
            .unwrap()
            .status(),
        202
    );
}

#[tokio::test]
async fn a_wrong_method_gets_405_with_allow() {
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let response = handle(
            &state(Arc::default()),
            request(method, "/events", Some("application/json"), ""),
        )
        .await
        .unwrap();

        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
        assert_eq!(json_body(&response)["error"]["code"], "method_not_allowed");
    }
}

#[tokio::test]
async fn an_unknown_path_gets_a_json_404() {
    let response = handle(
        &state(Arc::default()),
        request("POST", "/events/../admin", Some("application/json"), "{}"),
    )
    .await
    .unwrap();

    assert_eq!(response.status(), 404);
    assert_eq!(json_body(&response)["error"]["code"], "not_found");
}

#[tokio::test]
async fn an_oversized_body_gets_413_before_it_is_parsed() {
    let stream = Arc::new(MemoryStream::default());
    let huge = format!(
        "{{\"events\": [{}]}}",
        vec![event(1).to_string(); 40_000].join(",")
    );
    assert!(huge.len() > 5 * 1024 * 1024);

    let response = handle(
        &state(stream.clone()),
        request("POST", "/events", Some("application/json"), &huge),
    )
    .await
    .unwrap();

    assert_eq!(response.status(), 413);
    assert_eq!(json_body(&response)["error"]["code"], "payload_too_large");
    assert!(stream.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn hostile_bodies_get_clear_400s() {
    let cases = [
        "[]".to_string(),
        "null".to_string(),
        format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)),
        json!({"actor_id": "x", "action": "y", "resource_type": "z", "resource_id": "w", "changes": {"a": "\u{0000}"}}).to_string(),
        json!({"actor_id": "' OR 1=1 --", "action": "y", "resource_type": "z", "resource_id": "w", "__proto__": {}}).to_string(),
    ];
    for body in cases {
        let response = handle(
            &state(Arc::default()),
            request("POST", "/events", Some("application/json"), &body),
        )
        .await
        .unwrap();

        assert_eq!(response.status(), 400, "{}", &body[..body.len().min(80)]);
        let error = json_body(&response)["error"].clone();
        assert!(error["code"] == "malformed_json" || error["code"] == "validation_failed");
    }
}

#[tokio::test]
async fn a_non_utf8_binary_body_gets_a_400() {
    let mut event = fixture();
    event["body"] = json!(base64_encode(b"{\"actor_id\": \"\xff\xfe\"}"));
    event["isBase64Encoded"] = json!(true);
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();

    let response = handle(&state(Arc::default()), request).await.unwrap();

    assert_eq!(response.status(), 400);
    assert!(json_body(&response)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("UTF-8"));
}

#[tokio::test]
async fn a_base64_encoded_json_body_is_accepted() {
    let mut event = fixture();
    event["body"] = json!(base64_encode(event["body"].as_str().unwrap().as_bytes()));
    event["isBase64Encoded"] = json!(true);
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();

    let response = handle(&state(Arc::default()), request).await.unwrap();

    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn when_the_stream_keeps_refusing_the_answer_is_503_with_the_ids_to_retry() {
    let stream = Arc::new(MemoryStream {
        refusing: true,
        ..Default::default()
    });
    let mut keyed = event(1);
    keyed["id"] = json!("client-chosen-1");
    let body = json!({ "events": [keyed, event(2)] });

    let response = handle(&state(stream), post(&body)).await.unwrap();

    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let error = json_body(&response)["error"].clone();
    assert_eq!(error["code"], "stream_unavailable");
    assert_eq!(error["ids"][0], "client-chosen-1");
    assert_eq!(error["unaccepted_ids"].as_array().unwrap().len(), 2);
    assert!(
        !error["message"].as_str().unwrap().contains("Provisioned"),
        "no internals leak"
    );
}

#[tokio::test]
async fn when_the_stream_never_answers_the_answer_is_503_with_every_id_within_the_budget() {
    let budget = PublishBudget {
        max: Duration::from_millis(1500),
        margin: Duration::from_secs(1),
    };
    let state = Ingest::with_policy(
        Arc::new(SilentStream),
        ISSUER.authenticator(),
        quick_retries(),
    )
    .with_budget(budget);
    let body = json!({ "events": [event(1), event(2), event(3)] });
    let started = Instant::now();

    let response = handle(&state, post(&body)).await.unwrap();

    assert!(
        started.elapsed() < budget.max + Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let error = json_body(&response)["error"].clone();
    assert_eq!(error["code"], "stream_unavailable");
    assert_eq!(error["ids"].as_array().unwrap().len(), 3);
    assert_eq!(error["unaccepted_ids"], error["ids"]);
}

#[tokio::test]
async fn the_invocation_deadline_less_the_margin_bounds_publishing_when_it_is_sooner_than_the_budget(
) {
    let budget = PublishBudget {
        max: Duration::from_secs(60),
        margin: Duration::from_secs(1),
    };
    let state = Ingest::with_policy(
        Arc::new(SilentStream),
        ISSUER.authenticator(),
        quick_retries(),
    )
    .with_budget(budget);
    let mut context = Context::default();
    let invocation_deadline = SystemTime::now() + Duration::from_millis(2500);
    context.deadline = invocation_deadline
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let request = post(&json!({ "events": [event(1), event(2)] })).with_lambda_context(context);

    let response = handle(&state, request).await.unwrap();

    assert!(
        SystemTime::now() < invocation_deadline + Duration::from_secs(2),
        "answered {:?} after the invocation's deadline",
        SystemTime::now().duration_since(invocation_deadline)
    );
    assert_eq!(response.status(), 503);
    let error = json_body(&response)["error"].clone();
    assert_eq!(error["unaccepted_ids"].as_array().unwrap().len(), 2);
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A POST of one event with `authorization` as the header (none when `None`).
fn post_with(authorization: Option<&str>, body: &Value) -> Request {
    let mut event = fixture();
    let headers = event["headers"].as_object_mut().unwrap();
    match authorization {
        Some(value) => headers.insert("authorization".into(), json!(value)),
        None => headers.remove("authorization"),
    };
    event["body"] = json!(body.to_string());
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn claims(tenant: &str) -> sentinel_lambda::identity::dev::TokenClaims {
    sentinel_lambda::identity::dev::TokenClaims::local(
        tenant,
        "svc-billing",
        &[sentinel_lambda::identity::Scope::EventsWrite],
        600,
    )
}

#[tokio::test]
async fn a_request_without_a_valid_token_gets_a_json_401_and_nothing_is_put() {
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let mut expired = claims("default");
    expired.exp = chrono::Utc::now().timestamp() - 3600;
    let mut early = claims("default");
    early.nbf = Some(chrono::Utc::now().timestamp() + 3600);
    let mut other_issuer = claims("default");
    other_issuer.iss = "https://idp.example".into();
    let mut other_audience = claims("default");
    other_audience.aud = "another-api".into();
    let stranger = sentinel_testing::auth::TestIssuer::new();
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(serde_json::to_value(claims("default")).unwrap())
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("not bearer", Some("Basic dXNlcjpwYXNz".into())),
        ("malformed", Some("Bearer not-a-jwt".into())),
        ("expired", Some(format!("Bearer {}", ISSUER.sign(&expired)))),
        (
            "not yet valid",
            Some(format!("Bearer {}", ISSUER.sign(&early))),
        ),
        (
            "wrongly signed",
            Some(format!("Bearer {}", stranger.sign(&claims("default")))),
        ),
        (
            "wrong issuer",
            Some(format!("Bearer {}", ISSUER.sign(&other_issuer))),
        ),
        (
            "wrong audience",
            Some(format!("Bearer {}", ISSUER.sign(&other_audience))),
        ),
        ("alg none", Some(format!("Bearer {alg_none}"))),
    ];
    let stream = Arc::new(MemoryStream::default());

    for (case, authorization) in cases {
        let response = handle(
            &state(stream.clone()),
            post_with(authorization.as_deref(), &event(1)),
        )
        .await
        .unwrap();

        assert_eq!(response.status(), 401, "{case}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer realm=\"sentinel\""),
            "{case}"
        );
        assert_eq!(
            json_body(&response)["error"]["code"],
            "unauthorized",
            "{case}"
        );
    }
    assert!(stream.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_token_without_the_write_scope_gets_a_403_naming_the_scope() {
    let stream = Arc::new(MemoryStream::default());
    let reader = ISSUER.bearer("default", &[sentinel_lambda::identity::Scope::EventsRead]);

    let response = handle(&state(stream.clone()), post_with(Some(&reader), &event(1)))
        .await
        .unwrap();

    assert_eq!(response.status(), 403);
    let body = json_body(&response);
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(
        body["error"]["fields"]["scope"],
        "must include events:write"
    );
    assert!(stream.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn events_get_the_tokens_tenant_and_one_naming_another_is_a_403_and_nothing_is_put() {
    let stream = Arc::new(MemoryStream::default());
    let acme = format!("Bearer {}", ISSUER.sign(&claims("acme")));
    let mut own = event(1);
    own["tenant_id"] = json!("acme");
    let mut foreign = event(2);
    foreign["tenant_id"] = json!("globex");

    let refused = handle(
        &state(stream.clone()),
        post_with(Some(&acme), &json!({"events": [own.clone(), foreign]})),
    )
    .await
    .unwrap();
    let accepted = handle(
        &state(stream.clone()),
        post_with(Some(&acme), &json!({"events": [own, event(3)]})),
    )
    .await
    .unwrap();

    assert_eq!(refused.status(), 403);
    assert_eq!(
        json_body(&refused)["error"]["fields"],
        json!({"events[1].tenant_id": "must be the caller's own tenant (or left out)"})
    );
    assert_eq!(accepted.status(), 202, "{}", json_body(&accepted));
    let records = stream.records.lock().unwrap();
    assert_eq!(records.len(), 2, "only the accepted request's events");
    for record in records.iter() {
        assert_eq!(AuditEvent::decode(&record.data).unwrap().tenant_id, "acme");
    }
}

/// A POST of `body` with `Idempotency-Key: key` (each value of `keys` as its own header).
fn post_keyed(authorization: &str, keys: &[&[u8]], body: &Value) -> Request {
    let mut request = post(body);
    request.headers_mut().insert(
        "authorization",
        lambda_http::http::HeaderValue::from_str(authorization).unwrap(),
    );
    for key in keys {
        request.headers_mut().append(
            "idempotency-key",
            lambda_http::http::HeaderValue::from_bytes(key).unwrap(),
        );
    }
    request
}

fn ids_of(response: &Response<Body>) -> Vec<String> {
    serde_json::from_value(json_body(response)["ids"].clone()).unwrap()
}

#[tokio::test]
async fn a_request_retried_with_its_idempotency_key_gets_the_same_ids_on_the_stream() {
    let stream = Arc::new(MemoryStream::default());
    let body = json!({"events": [event(1), event(2), event(3)]});
    let token = writer_token();

    let first = handle(
        &state(stream.clone()),
        post_keyed(&token, &[b"order-42"], &body),
    )
    .await
    .unwrap();
    let retried = handle(
        &state(stream.clone()),
        post_keyed(&token, &[b"order-42"], &body),
    )
    .await
    .unwrap();
    let unkeyed = handle(&state(stream.clone()), post(&body)).await.unwrap();

    assert_eq!(first.status(), 202);
    assert_eq!(retried.status(), 202);
    assert_eq!(ids_of(&first), ids_of(&retried));
    assert_eq!(ids_of(&first).len(), 3);
    assert!(ids_of(&unkeyed)
        .iter()
        .all(|id| !ids_of(&first).contains(id)));
    let records = stream.records.lock().unwrap();
    let on_stream: Vec<String> = records[..6]
        .iter()
        .map(|r| AuditEvent::decode(&r.data).unwrap().id.into_string())
        .collect();
    assert_eq!(
        on_stream[..3],
        on_stream[3..],
        "the retry carries the same ids"
    );
    assert_eq!(on_stream[..3], ids_of(&first)[..]);
}

#[tokio::test]
async fn the_same_idempotency_key_in_two_tenants_gives_two_sets_of_ids() {
    let stream = Arc::new(MemoryStream::default());
    let body = json!({"events": [event(1)]});
    let acme = format!("Bearer {}", ISSUER.sign(&claims("acme")));
    let globex = format!("Bearer {}", ISSUER.sign(&claims("globex")));

    let a = handle(
        &state(stream.clone()),
        post_keyed(&acme, &[b"shared-key"], &body),
    )
    .await
    .unwrap();
    let b = handle(
        &state(stream.clone()),
        post_keyed(&globex, &[b"shared-key"], &body),
    )
    .await
    .unwrap();

    assert_eq!(a.status(), 202);
    assert_eq!(b.status(), 202);
    assert_ne!(ids_of(&a), ids_of(&b));
}

#[tokio::test]
async fn a_refused_request_keyed_then_retried_lists_the_same_ids_to_resend() {
    let refusing = Arc::new(MemoryStream {
        refusing: true,
        ..Default::default()
    });
    let body = json!({"events": [event(1), event(2)]});
    let token = writer_token();

    let refused = handle(&state(refusing), post_keyed(&token, &[b"k-503"], &body))
        .await
        .unwrap();
    let retried = handle(
        &state(Arc::new(MemoryStream::default())),
        post_keyed(&token, &[b"k-503"], &body),
    )
    .await
    .unwrap();

    assert_eq!(refused.status(), 503);
    let error = json_body(&refused)["error"].clone();
    assert_eq!(error["unaccepted_ids"], error["ids"]);
    assert_eq!(retried.status(), 202);
    assert_eq!(json_body(&retried)["ids"], error["ids"]);
}

#[tokio::test]
async fn an_invalid_or_repeated_idempotency_key_gets_a_400_naming_the_header_and_nothing_is_put() {
    let stream = Arc::new(MemoryStream::default());
    let token = writer_token();
    let long = vec![b'k'; 256];
    let cases: [(&[&[u8]], &str); 5] = [
        (&[b""], "must be 1 to 255 characters"),
        (&[&long], "must be 1 to 255 characters"),
        (
            &[b"has space"],
            "may only contain visible ASCII characters (no spaces)",
        ),
        (
            &[b"cl\xc3\xa9"],
            "may only contain visible ASCII characters (no spaces)",
        ),
        (&[b"one", b"two"], "must be given once"),
    ];

    for (keys, why) in cases {
        let response = handle(
            &state(stream.clone()),
            post_keyed(&token, keys, &json!({"events": [event(1)]})),
        )
        .await
        .unwrap();

        assert_eq!(response.status(), 400, "{keys:?}");
        let error = json_body(&response)["error"].clone();
        assert_eq!(error["code"], "invalid_idempotency_key");
        assert_eq!(
            error["fields"],
            json!({ "Idempotency-Key": why }),
            "{keys:?}"
        );
    }
    assert!(stream.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_request_counts_its_events_and_retries_for_its_metrics_line() {
    use ingest::{answer, metrics, Tally};
    let body = json!({ "events": [event(1), event(2), event(3)] });

    let mut tally = Tally::default();
    let response = answer(
        &state(Arc::new(MemoryStream::default())),
        post(&body),
        &mut tally,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(
        tally,
        Tally {
            accepted: 3,
            unaccepted: 0,
            retried_records: 0
        }
    );

    let refusing = Arc::new(MemoryStream {
        refusing: true,
        ..Default::default()
    });
    let mut tally = Tally::default();
    let response = answer(&state(refusing), post(&body), &mut tally)
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    // Three attempts: the three events sent again twice.
    assert_eq!(
        tally,
        Tally {
            accepted: 0,
            unaccepted: 3,
            retried_records: 6
        }
    );
    let line: Value = serde_json::from_str(
        &metrics(&tally, response.status(), Duration::from_millis(5)).to_lines(0)[0],
    )
    .unwrap();
    assert_eq!(line["Function"], "ingest");
    assert_eq!(
        (
            line["EventsAccepted"].as_f64(),
            line["EventsUnaccepted"].as_f64(),
            line["PublishRetries"].as_f64(),
            line["RequestsRefused"].as_f64()
        ),
        (Some(0.0), Some(3.0), Some(6.0), Some(0.0))
    );

    let mut tally = Tally::default();
    let response = answer(
        &state(Arc::new(MemoryStream::default())),
        post(&json!({"events": [{"actor_id": "x"}]})),
        &mut tally,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    let line: Value =
        serde_json::from_str(&metrics(&tally, response.status(), Duration::ZERO).to_lines(0)[0])
            .unwrap();
    assert_eq!(line["RequestsRefused"], 1.0);
    assert_eq!(line["EventsAccepted"], 0.0);
}
