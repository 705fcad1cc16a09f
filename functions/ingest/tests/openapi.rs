//! The ingest function's real responses match openapi.yaml, its documented request examples
//! are accepted, and its request schema refuses what the code refuses. (The document itself is
//! validated against the OpenAPI 3.1 meta-schema in functions/query/tests/openapi.rs.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ingest::{handle, Ingest};
use jsonschema::{Draft, Registry, Validator};
use lambda_http::{Body, Request, Response};
use sentinel_domain::publish::{OutgoingRecord, RecordOutcome, RecordSink, RetryPolicy, SinkError};
use serde_json::{json, Value};

/// The issuer whose tokens this suite's functions trust.
static ISSUER: std::sync::LazyLock<sentinel_testing::auth::TestIssuer> =
    std::sync::LazyLock::new(sentinel_testing::auth::TestIssuer::new);

/// `Bearer <token>` of a writer of the default tenant.
fn writer_token() -> String {
    ISSUER.bearer("default", &[sentinel_lambda::identity::Scope::EventsWrite])
}

/// The base URI the document is registered under, so `#/components/...` references resolve.
const DOCUMENT_URI: &str = "https://sentinel.invalid/openapi.json";
const POST_EVENTS: &str = "/paths/~1events/post";

/// The document, registered for `$ref` resolution, with helpers to validate against its parts.
struct Spec {
    doc: Value,
    registry: Registry<'static>,
}

impl Spec {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml");
        let text = std::fs::read_to_string(path).expect("openapi.yaml is readable");
        let doc: Value = yaml_serde::from_str(&text).expect("openapi.yaml is valid YAML");
        let registry = Registry::new()
            .draft(Draft::Draft202012)
            .add(DOCUMENT_URI, doc.clone())
            .expect("the document URI is valid")
            .prepare()
            .expect("the document registers as a JSON Schema resource");
        Self { doc, registry }
    }

    fn at(&self, pointer: &str) -> &Value {
        self.doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("openapi.yaml has nothing at {pointer}"))
    }

    /// Follows Reference Objects from `pointer` to the object they name.
    fn resolve(&self, pointer: &str) -> (String, &Value) {
        let mut pointer = pointer.to_string();
        for _ in 0..16 {
            let value = self.at(&pointer);
            match value.get("$ref").and_then(Value::as_str) {
                Some(target) => pointer = target.trim_start_matches('#').to_string(),
                None => return (pointer, value),
            }
        }
        panic!("reference cycle from {pointer}");
    }

    /// A validator for the schema at `pointer` (JSON Schema 2020-12, formats asserted).
    fn validator(&self, pointer: &str) -> Validator {
        assert!(
            !pointer.contains(['{', '}', ' ', '%']),
            "{pointer} needs percent-encoding"
        );
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .offline()
            .with_registry(&self.registry)
            .build(&json!({ "$ref": format!("{DOCUMENT_URI}#{pointer}") }))
            .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"))
    }

    fn errors(&self, schema_pointer: &str, instance: &Value) -> Vec<String> {
        self.validator(schema_pointer)
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// Checks a real response against the documented response at `pointer`: its required
    /// headers, its media type and its body's schema.
    fn assert_response_matches(&self, pointer: &str, response: &Response<Body>) {
        let (pointer, documented) = self.resolve(pointer);
        for (name, _) in documented["headers"].as_object().into_iter().flatten() {
            let (_, header) = self.resolve(&format!("{pointer}/headers/{name}"));
            let actual = response.headers().get(name.as_str());
            if header["required"] == json!(true) {
                assert!(
                    actual.is_some(),
                    "{name} is documented as required at {pointer}"
                );
            }
            if let (Some(actual), Some(expected)) = (actual, header["schema"].get("const")) {
                let expected = match expected {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                assert_eq!(actual.to_str().unwrap(), expected, "header {name}");
            }
        }
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = json_body(response);
        let errors = self.errors(
            &format!("{pointer}/content/application~1json/schema"),
            &body,
        );
        assert!(
            errors.is_empty(),
            "the {} response does not match {pointer}:\n{}\n{body:#}",
            response.status(),
            errors.join("\n")
        );
    }
}

fn response_pointer(status: u16) -> String {
    format!("{POST_EVENTS}/responses/{status}")
}

const REQUEST_SCHEMA: &str = "/paths/~1events/post/requestBody/content/application~1json/schema";

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

fn state(stream: Arc<MemoryStream>) -> Ingest {
    Ingest::with_policy(
        stream,
        ISSUER.authenticator(),
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        },
    )
}

/// An API Gateway v2 request built from the fixture in events/.
fn request(method: &str, path: &str, content_type: Option<&str>, body: &str) -> Request {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/apigw_post_events.json"
    );
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
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

fn json_body(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap(),
        _ => panic!("expected a JSON body"),
    }
}

fn event() -> Value {
    json!({
        "actor_id": "user_123", "actor_type": "user", "action": "billing_update",
        "resource_type": "invoice", "resource_id": "inv_999",
        "changes": {"status": {"before": "pending", "after": "paid"}, "amount": 500},
        "metadata": {"ip": "192.168.1.50"}
    })
}

fn with(mut value: Value, key: &str, member: Value) -> Value {
    value[key] = member;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
}

#[tokio::test]
async fn an_accepted_request_gets_a_202_that_matches_the_document() {
    let spec = Spec::load();
    let stream = Arc::new(MemoryStream::default());
    for body in [
        event(),
        json!({"events": [with(event(), "id", json!("inv_999-paid")), event()]}),
    ] {
        let response = handle(&state(stream.clone()), post(&body)).await.unwrap();

        assert_eq!(response.status(), 202);
        spec.assert_response_matches(&response_pointer(202), &response);
    }
}

#[tokio::test]
async fn every_documented_request_example_is_accepted_with_a_202() {
    let spec = Spec::load();
    let examples = spec.at(&format!(
        "{POST_EVENTS}/requestBody/content/application~1json/examples"
    ));
    let names: Vec<&String> = examples.as_object().unwrap().keys().collect();
    assert!(!names.is_empty());
    for name in names {
        let (_, example) = spec.resolve(&format!(
            "{POST_EVENTS}/requestBody/content/application~1json/examples/{name}"
        ));
        let stream = Arc::new(MemoryStream::default());

        let response = handle(&state(stream.clone()), post(&example["value"]))
            .await
            .unwrap();

        assert_eq!(response.status(), 202, "{name}: {}", json_body(&response));
        spec.assert_response_matches(&response_pointer(202), &response);
        let count = example["value"]["events"].as_array().map_or(1, Vec::len);
        assert_eq!(stream.records.lock().unwrap().len(), count, "{name}");
    }
}

#[tokio::test]
async fn requests_the_schema_allows_are_accepted_and_requests_it_refuses_are_refused() {
    let spec = Spec::load();
    let accepted = [
        event(),
        json!({"actor_id": "a", "action": "b", "resource_type": "c", "resource_id": "d"}),
        with(event(), "id", Value::Null),
        with(event(), "tenant_id", json!("default")),
        with(event(), "occurred_at", json!("2026-02-01T01:00:00+01:00")),
        with(
            event(),
            "changes",
            json!({"due_date": {"before": "2026-02-15"}, "tags": ["a"], "flag": {"x": 1}}),
        ),
        with(event(), "id", json!("x".repeat(128))),
        with(event(), "actor_type", json!("y".repeat(64))),
        with(event(), "action", json!(" billing_update ")),
        json!({"events": vec![event(); 500]}),
    ];
    for body in accepted {
        let errors = spec.errors(REQUEST_SCHEMA, &body);
        assert!(errors.is_empty(), "{body}: {errors:?}");

        let response = handle(&state(Arc::default()), post(&body)).await.unwrap();

        assert_eq!(response.status(), 202, "{body}: {}", json_body(&response));
    }

    let refused = [
        without(event(), "actor_id"),
        with(event(), "action", Value::Null),
        with(event(), "colour", json!("red")),
        with(event(), "id", json!("has space")),
        with(event(), "id", json!("x".repeat(129))),
        with(event(), "tenant_id", json!("")),
        with(event(), "actor_type", json!("y".repeat(65))),
        with(event(), "action", json!("   ")),
        with(event(), "resource_id", json!("inv\n999")),
        with(event(), "resource_type", json!("r".repeat(257))),
        with(event(), "actor_id", json!(123)),
        with(event(), "occurred_at", json!("yesterday")),
        with(event(), "changes", json!(["status"])),
        with(event(), "changes", json!({"": 1})),
        with(event(), "metadata", json!("ip")),
        json!({"events": []}),
        json!({"events": vec![event(); 501]}),
        json!({"events": [event()], "extra": 1}),
        json!({"events": event()}),
        json!([event()]),
    ];
    for body in refused {
        assert!(
            !spec.errors(REQUEST_SCHEMA, &body).is_empty(),
            "the schema allows {body}"
        );

        let response = handle(&state(Arc::default()), post(&body)).await.unwrap();

        assert_eq!(response.status(), 400, "{body}");
        spec.assert_response_matches(&response_pointer(400), &response);
    }
}

#[tokio::test]
async fn malformed_json_gets_a_400_that_matches_the_document() {
    let spec = Spec::load();
    for body in ["{\"actor_id\": ", "", "not json"] {
        let response = handle(
            &state(Arc::default()),
            request("POST", "/events", Some("application/json"), body),
        )
        .await
        .unwrap();

        assert_eq!(response.status(), 400);
        assert_eq!(json_body(&response)["error"]["code"], "malformed_json");
        spec.assert_response_matches(&response_pointer(400), &response);
    }
}

#[tokio::test]
async fn invalid_events_get_a_400_validation_failed_that_matches_the_document() {
    let spec = Spec::load();
    let bad = without(with(event(), "occurred_at", json!("not a time")), "action");
    let many_bad: Vec<Value> = (0..300).map(|_| bad.clone()).collect();
    for body in [
        json!({"events": [event(), event(), event(), bad]}),
        json!({ "events": many_bad }),
    ] {
        let response = handle(&state(Arc::default()), post(&body)).await.unwrap();

        assert_eq!(response.status(), 400);
        assert_eq!(json_body(&response)["error"]["code"], "validation_failed");
        spec.assert_response_matches(&response_pointer(400), &response);
    }
}

#[tokio::test]
async fn an_invalid_idempotency_key_gets_a_400_that_matches_the_document() {
    let spec = Spec::load();
    let header = spec.at(&format!("{POST_EVENTS}/parameters/0/schema"));
    let documented = jsonschema::validator_for(header).unwrap();
    for key in ["has space", &"k".repeat(256), ""] {
        let mut request = post(&json!({"events": [event()]}));
        request
            .headers_mut()
            .insert("idempotency-key", key.parse().unwrap());

        let response = handle(&state(Arc::default()), request).await.unwrap();

        assert_eq!(response.status(), 400, "{key:?}");
        assert_eq!(
            json_body(&response)["error"]["code"],
            "invalid_idempotency_key"
        );
        spec.assert_response_matches(&response_pointer(400), &response);
        assert!(
            !documented.is_valid(&json!(key)),
            "the document refuses {key:?} too"
        );
    }
    let mut keyed = post(&json!({"events": [event()]}));
    keyed
        .headers_mut()
        .insert("idempotency-key", "7d1c0b6e-3a5f~!".parse().unwrap());
    let accepted = handle(&state(Arc::default()), keyed).await.unwrap();
    assert_eq!(accepted.status(), 202);
    assert!(documented.is_valid(&json!("7d1c0b6e-3a5f~!")));
}

#[tokio::test]
async fn a_wrong_method_gets_a_405_that_matches_the_document() {
    let spec = Spec::load();
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let response = handle(
            &state(Arc::default()),
            request(method, "/events", Some("application/json"), ""),
        )
        .await
        .unwrap();

        assert_eq!(response.status(), 405, "{method}");
        spec.assert_response_matches(&response_pointer(405), &response);
    }
}

#[tokio::test]
async fn an_unknown_path_gets_a_404_that_matches_the_document() {
    let spec = Spec::load();

    let response = handle(
        &state(Arc::default()),
        request("POST", "/admin", Some("application/json"), "{}"),
    )
    .await
    .unwrap();

    assert_eq!(response.status(), 404);
    spec.assert_response_matches("/components/responses/IngestNotFound", &response);
}

#[tokio::test]
async fn refused_identities_get_a_401_or_403_that_matches_the_document() {
    use sentinel_lambda::identity::Scope;
    let spec = Spec::load();
    let with = |authorization: Option<String>, body: &Value| {
        let mut request = post(body);
        match authorization {
            Some(value) => request
                .headers_mut()
                .insert("authorization", value.parse().unwrap()),
            None => request.headers_mut().remove("authorization"),
        };
        request
    };
    let reader = ISSUER.bearer("default", &[Scope::EventsRead]);
    let mut foreign = event();
    foreign["tenant_id"] = json!("globex");
    let cases = [
        (with(None, &event()), 401),
        (with(Some("Bearer not.a.token".into()), &event()), 401),
        (with(Some(reader), &event()), 403),
        (
            with(Some(writer_token()), &json!({"events": [event(), foreign]})),
            403,
        ),
    ];

    for (request, status) in cases {
        let stream = Arc::new(MemoryStream::default());

        let response = handle(&state(stream.clone()), request).await.unwrap();

        assert_eq!(response.status(), status);
        spec.assert_response_matches(&response_pointer(status), &response);
        assert!(stream.records.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_oversized_body_gets_a_413_that_matches_the_document() {
    let spec = Spec::load();
    let huge = format!(
        "{{\"events\": [{}]}}",
        vec![event().to_string(); 30_000].join(",")
    );
    assert!(huge.len() > 5 * 1024 * 1024);

    let response = handle(
        &state(Arc::default()),
        request("POST", "/events", Some("application/json"), &huge),
    )
    .await
    .unwrap();

    assert_eq!(response.status(), 413);
    spec.assert_response_matches(&response_pointer(413), &response);
}

#[tokio::test]
async fn a_wrong_content_type_gets_a_415_that_matches_the_document() {
    let spec = Spec::load();
    for content_type in [Some("text/plain"), None] {
        let response = handle(
            &state(Arc::default()),
            request("POST", "/events", content_type, &event().to_string()),
        )
        .await
        .unwrap();

        assert_eq!(response.status(), 415, "{content_type:?}");
        spec.assert_response_matches(&response_pointer(415), &response);
    }
}

#[tokio::test]
async fn a_refusing_stream_gets_a_503_that_matches_the_document() {
    let spec = Spec::load();
    let stream = Arc::new(MemoryStream {
        refusing: true,
        ..Default::default()
    });
    let body = json!({"events": [with(event(), "id", json!("inv_999-paid")), event()]});

    let response = handle(&state(stream), post(&body)).await.unwrap();

    assert_eq!(response.status(), 503);
    spec.assert_response_matches(&response_pointer(503), &response);
}
