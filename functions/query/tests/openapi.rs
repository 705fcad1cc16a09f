//! openapi.yaml: the document is valid OpenAPI 3.1 (checked against the official meta-schema
//! vendored in tests/fixtures), its references and examples hold, it states the code's limits,
//! and the query function's real responses, read from a real PostgreSQL database, match it.

mod common;

use common::{handle, reader_token, ISSUER};

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use jsonschema::{Draft, Registry, Validator};
use lambda_http::{Body, Request, Response};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use sentinel_domain::event::AuditEvent;
use sentinel_domain::query::{
    StateCursor, DEFAULT_LIMIT, EXACT_COUNT_LIMIT, MAX_LIMIT, MAX_OFFSET, MAX_PER_PAGE,
    MAX_SHOWN_NAME_CHARS,
};
use sentinel_domain::read::MAX_ANSWER_BYTES;
use sentinel_domain::store::EventStore;
use sentinel_domain::validation::{
    MAX_BATCH_EVENTS, MAX_CHANGED_FIELDS, MAX_ID_CHARS, MAX_REPORTED_ERRORS, MAX_TEXT_CHARS,
};
use sentinel_postgres::reader::PgReader;
use sentinel_postgres::{pool, writer::PgEventStore};
use sentinel_testing::TestDatabase;
use serde_json::{json, Map, Value};

/// The base URI the document is registered under, so `#/components/...` references resolve.
const DOCUMENT_URI: &str = "https://sentinel.invalid/openapi.json";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml");
    let text = std::fs::read_to_string(path).expect("openapi.yaml is readable");
    yaml_serde::from_str(&text).expect("openapi.yaml is valid YAML")
}

/// Escapes one JSON pointer segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment (`{id}` becomes `%7Bid%7D`).
fn fragment(pointer: &str) -> String {
    const UNSAFE: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'\\')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    utf8_percent_encode(pointer, UNSAFE).to_string()
}

/// The document, registered for `$ref` resolution, with helpers to validate against its parts.
struct Spec {
    doc: Value,
    registry: Registry<'static>,
}

impl Spec {
    fn load() -> Self {
        let doc = document();
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
                Some(target) => {
                    pointer = target
                        .strip_prefix('#')
                        .unwrap_or_else(|| panic!("{target} is not a local reference"))
                        .to_string()
                }
                None => return (pointer, value),
            }
        }
        panic!("reference cycle from {pointer}");
    }

    /// A validator for the schema at `pointer` (JSON Schema 2020-12, formats asserted).
    fn validator(&self, pointer: &str) -> Validator {
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .offline()
            .with_registry(&self.registry)
            .build(&json!({ "$ref": format!("{DOCUMENT_URI}#{}", fragment(pointer)) }))
            .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"))
    }

    fn assert_valid(&self, schema_pointer: &str, instance: &Value, what: &str) {
        let validator = self.validator(schema_pointer);
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what} does not match {schema_pointer}:\n{}\n{instance:#}",
            errors.join("\n")
        );
    }

    fn operation_response(path: &str, method: &str, status: u16) -> String {
        format!("/paths/{}/{method}/responses/{status}", escape(path))
    }

    /// Checks a real response against the documented response at `pointer`: its required
    /// headers, its media type and its body's schema.
    fn assert_response_matches(&self, pointer: &str, response: &Response<Body>) {
        let (pointer, documented) = self.resolve(pointer);
        for (name, _) in documented["headers"].as_object().into_iter().flatten() {
            let (_, header) = self.resolve(&format!("{pointer}/headers/{}", escape(name)));
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
        assert!(
            documented["content"].get("application/json").is_some(),
            "{pointer} documents no application/json body"
        );
        self.assert_valid(
            &format!("{pointer}/content/application~1json/schema"),
            &json_body(response),
            &format!("the {} response", response.status()),
        );
    }

    /// Every operation as (path, method, pointer).
    fn operations(&self) -> Vec<(String, String, String)> {
        let mut operations = Vec::new();
        for (path, item) in self.at("/paths").as_object().unwrap() {
            for method in METHODS {
                if item.get(method).is_some() {
                    let pointer = format!("/paths/{}/{method}", escape(path));
                    operations.push((path.clone(), method.to_string(), pointer));
                }
            }
        }
        operations
    }

    /// The resolved parameters of an operation (path-level ones included).
    fn parameters(&self, path: &str, method: &str) -> Vec<(String, Value)> {
        let item = format!("/paths/{}", escape(path));
        let mut parameters = Vec::new();
        for base in [item.clone(), format!("{item}/{method}")] {
            let count = self
                .doc
                .pointer(&format!("{base}/parameters"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            for i in 0..count {
                let (pointer, parameter) = self.resolve(&format!("{base}/parameters/{i}"));
                parameters.push((pointer, parameter.clone()));
            }
        }
        parameters
    }
}

/// Visits every value of the document with its JSON pointer and its path segments.
fn walk(value: &Value, segments: &mut Vec<String>, visit: &mut impl FnMut(&[String], &Value)) {
    visit(segments, value);
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                segments.push(key.clone());
                walk(child, segments, visit);
                segments.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                segments.push(i.to_string());
                walk(child, segments, visit);
                segments.pop();
            }
        }
        _ => {}
    }
}

fn pointer_of(segments: &[String]) -> String {
    segments.iter().map(|s| format!("/{}", escape(s))).collect()
}

/// Whether `segments` lie inside an example value (literal data, not OpenAPI).
fn inside_example_value(segments: &[String]) -> bool {
    segments.iter().enumerate().any(|(i, s)| {
        s == "example"
            || (s == "value" && i >= 2 && segments[i - 2] == "examples")
            || (s == "examples"
                && i > 0
                && segments
                    .get(i + 1)
                    .is_some_and(|n| n.parse::<usize>().is_ok()))
    })
}

// ---------------------------------------------------------------------------------------------
// The document itself
// ---------------------------------------------------------------------------------------------

#[test]
fn the_document_is_valid_openapi_3_1() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("`openapi` is a string");
    assert!(
        version.starts_with("3.1."),
        "openapi is {version}, expected 3.1.x"
    );

    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openapi-3.1-schema-2022-10-07.json"
    );
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        meta["$id"],
        "https://spec.openapis.org/oas/3.1/schema/2022-10-07"
    );
    let validator = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .offline()
        .build(&meta)
        .expect("the OpenAPI 3.1 meta-schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "openapi.yaml is not valid OpenAPI 3.1:\n{}",
        errors.join("\n")
    );
}

#[test]
fn every_schema_in_the_document_is_valid_json_schema_2020_12_and_compiles() {
    let spec = Spec::load();
    let mut pointers = Vec::new();
    walk(&spec.doc, &mut Vec::new(), &mut |segments, value| {
        let is_schema = match segments {
            [.., parent, _] if parent == "schemas" && segments.len() == 3 => true,
            [.., last] => last == "schema" && !inside_example_value(segments) && value.is_object(),
            [] => false,
        };
        if is_schema {
            pointers.push(pointer_of(segments));
        }
    });
    assert!(pointers.len() > 40, "found only {} schemas", pointers.len());
    for pointer in pointers {
        let schema = spec.at(&pointer);
        if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
            panic!("the schema at {pointer} is not valid JSON Schema 2020-12: {e}");
        }
        spec.validator(&pointer);
    }
}

#[test]
fn every_ref_in_the_document_is_local_and_resolves() {
    let spec = Spec::load();
    let mut refs = Vec::new();
    walk(&spec.doc, &mut Vec::new(), &mut |segments, value| {
        if let Some(target) = value.get("$ref") {
            refs.push((
                pointer_of(segments),
                target.clone(),
                inside_example_value(segments),
            ));
        }
    });
    assert!(refs.len() > 50, "found only {} references", refs.len());
    for (at, target, in_example) in refs {
        assert!(
            !in_example,
            "{at}: example values are literal, so its $ref would not be resolved"
        );
        let target = target
            .as_str()
            .unwrap_or_else(|| panic!("{at}: $ref is not a string"));
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: {target} is not a local reference"));
        assert!(
            spec.doc.pointer(pointer).is_some(),
            "{at}: {target} does not resolve"
        );
    }
}

#[test]
fn every_example_in_the_document_matches_its_schema() {
    let spec = Spec::load();
    let mut checked = 0;
    let mut nodes = Vec::new();
    walk(&spec.doc, &mut Vec::new(), &mut |segments, value| {
        if !inside_example_value(segments) && value.is_object() {
            nodes.push(pointer_of(segments));
        }
    });
    for pointer in nodes {
        let node = spec.at(&pointer);
        let has_schema = node.get("schema").is_some_and(Value::is_object);
        if let Some(example) = node.get("example") {
            assert!(
                has_schema,
                "{pointer}: use `examples` in schemas (`example` is deprecated there)"
            );
            spec.assert_valid(
                &format!("{pointer}/schema"),
                example,
                &format!("{pointer}/example"),
            );
            checked += 1;
        }
        match node.get("examples") {
            Some(Value::Object(examples)) if has_schema => {
                for name in examples.keys() {
                    let (at, example) =
                        spec.resolve(&format!("{pointer}/examples/{}", escape(name)));
                    let value = example
                        .get("value")
                        .unwrap_or_else(|| panic!("{at} has no value"));
                    spec.assert_valid(&format!("{pointer}/schema"), value, &at);
                    checked += 1;
                }
            }
            Some(Value::Array(examples)) => {
                for (i, example) in examples.iter().enumerate() {
                    spec.assert_valid(&pointer, example, &format!("{pointer}/examples/{i}"));
                    checked += 1;
                }
            }
            Some(_) if pointer.starts_with("/components/examples") || pointer == "/components" => {}
            Some(_) => panic!("{pointer}: `examples` beside no `schema`"),
            None => {}
        }
    }
    assert!(checked > 60, "checked only {checked} examples");
}

#[test]
fn every_operation_documents_servers_parameters_examples_and_its_errors() {
    let spec = Spec::load();
    let mut ids = HashSet::new();
    let operations = spec.operations();
    assert_eq!(
        operations.len(),
        10,
        "POST /events, the four GETs of events, the three of the log, /whoami and /export"
    );
    for (path, method, pointer) in operations {
        let operation = spec.at(&pointer);
        let id = operation["operationId"].as_str().expect("operationId");
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        assert!(operation["summary"].is_string(), "{pointer} has no summary");
        let servers: Vec<&str> = operation["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .map(|s| s["url"].as_str().unwrap())
            .collect();
        let local = if method == "post" {
            "http://[::1]:9000/lambda-url/ingest"
        } else {
            "http://[::1]:9000/lambda-url/query"
        };
        assert_eq!(
            servers,
            [local, "https://{apiId}.execute-api.{region}.amazonaws.com"],
            "{pointer}"
        );

        let mut request_examples = 0;
        for (at, parameter) in spec.parameters(&path, &method) {
            assert!(
                parameter["description"].is_string(),
                "{at} has no description"
            );
            let (_, schema) = spec.resolve(&format!("{at}/schema"));
            assert!(
                schema.get("type").is_some() || schema.get("anyOf").is_some(),
                "{at} has no type"
            );
            if parameter["in"] == "path" {
                assert_eq!(
                    parameter["required"], true,
                    "{at}: path parameters are required"
                );
                assert!(
                    path.contains(&format!("{{{}}}", parameter["name"].as_str().unwrap())),
                    "{at} is not in {path}"
                );
            }
            assert!(
                parameter.get("example").is_some() || parameter.get("examples").is_some(),
                "{at} has no example"
            );
            request_examples += 1;
        }
        if let Some(body) = operation.get("requestBody") {
            let examples = body["content"]["application/json"]["examples"]
                .as_object()
                .map_or(0, Map::len);
            assert!(examples > 0, "{pointer}: the request body has no example");
            request_examples += examples;
        }
        // GET /whoami takes nothing: its request is the token alone.
        assert!(
            request_examples > 0 || id == "getCaller",
            "{pointer} has no request example"
        );

        let responses = operation["responses"].as_object().unwrap();
        let expected: &[&str] = if method == "post" {
            &["202", "400", "401", "403", "405", "413", "415", "503"]
        } else {
            &["200", "400", "401", "403", "405", "500", "503"]
        };
        for status in expected {
            assert!(
                responses.contains_key(*status),
                "{pointer} does not document {status}"
            );
        }
        for status in responses.keys() {
            let (at, response) = spec.resolve(&format!("{pointer}/responses/{status}"));
            assert!(
                response["description"].is_string(),
                "{at} has no description"
            );
            // An export answers a file; everything else is JSON.
            let media_type = match (id, status.as_str()) {
                ("exportEvents", "200") => "text/csv",
                _ => "application/json",
            };
            let media = &response["content"][media_type];
            assert!(
                media["schema"].is_object(),
                "{at} has no {media_type} schema"
            );
            assert!(
                media.get("example").is_some()
                    || media["examples"].as_object().is_some_and(|e| !e.is_empty()),
                "{at} has no example"
            );
        }
    }
    for response in ["IngestNotFound", "NotFound"] {
        spec.at(&format!(
            "/components/responses/{response}/content/application~1json/schema"
        ));
    }
    assert_eq!(spec.doc["security"], json!([{"bearer": []}]));
    assert_eq!(
        spec.doc["components"]["securitySchemes"]["bearer"]["bearerFormat"],
        "JWT"
    );
    assert_eq!(
        spec.doc["components"]["securitySchemes"]["sigv4"]["x-amazon-apigateway-authtype"],
        "awsSigv4"
    );
}

#[test]
fn the_documented_limits_and_defaults_are_the_codes() {
    let spec = Spec::load();
    let parameter = |name: &str| {
        spec.at(&format!("/components/parameters/{name}/schema"))
            .clone()
    };
    assert_eq!(parameter("Limit")["maximum"], MAX_LIMIT);
    assert_eq!(parameter("Limit")["default"], DEFAULT_LIMIT);
    assert_eq!(parameter("PerPage")["maximum"], MAX_PER_PAGE);
    assert_eq!(parameter("PerPage")["default"], DEFAULT_LIMIT);
    assert_eq!(parameter("Page")["maximum"], i64::MAX / 2);
    assert!(
        parameter("TenantId").get("default").is_none(),
        "the tenant comes from the token, not a default"
    );
    assert_eq!(parameter("SortNewestFirst")["default"], "-occurred_at");
    assert_eq!(parameter("SortOldestFirst")["default"], "occurred_at");
    let description = |pointer: &str| spec.at(pointer).as_str().unwrap().to_string();
    assert!(
        description("/components/parameters/Page/description").contains(&MAX_OFFSET.to_string())
    );
    assert!(description("/paths/~1events/get/description").contains(&EXACT_COUNT_LIMIT.to_string()));

    let schema = |name: &str| spec.at(&format!("/components/schemas/{name}")).clone();
    assert_eq!(schema("Identifier")["maxLength"], MAX_ID_CHARS);
    assert_eq!(schema("EventText")["maxLength"], MAX_TEXT_CHARS);
    assert_eq!(schema("QueryText")["maxLength"], 256);
    assert_eq!(
        schema("EventBatch")["properties"]["events"]["maxItems"],
        MAX_BATCH_EVENTS
    );
    assert_eq!(
        schema("IngestAccepted")["properties"]["ids"]["maxItems"],
        MAX_BATCH_EVENTS
    );
    assert_eq!(
        schema("EventInput")["properties"]["changes"]["maxProperties"],
        MAX_CHANGED_FIELDS
    );
    assert!(
        schema("EventInput")["properties"]["tenant_id"]
            .get("default")
            .is_none(),
        "an event's tenant is the token's, not a default"
    );
    assert_eq!(
        schema("ValidationFailedError")["allOf"][1]["properties"]["error"]["properties"]["fields"]
            ["maxProperties"],
        MAX_REPORTED_ERRORS
    );
    let invalid_fields =
        &schema("InvalidParameterError")["allOf"][1]["properties"]["error"]["properties"]["fields"];
    assert_eq!(invalid_fields["maxProperties"], MAX_REPORTED_ERRORS);
    assert_eq!(
        invalid_fields["propertyNames"]["maxLength"],
        MAX_SHOWN_NAME_CHARS + 1
    );
    assert_eq!(
        parameter("StateCursor")["maxLength"],
        StateCursor::MAX_ENCODED_CHARS
    );
    assert_eq!(
        schema("ResourceState")["properties"]["next_cursor"]["maxLength"],
        StateCursor::MAX_ENCODED_CHARS
    );
    for pointer in [
        "/paths/~1events/get/description",
        "/paths/~1resources~1{type}~1{id}~1history/get/description",
        "/paths/~1resources~1{type}~1{id}~1state/get/description",
        "/components/schemas/KeysetPage/properties/next_cursor/description",
        "/components/schemas/OffsetMeta/properties/truncated/description",
        "/components/schemas/ResourceState/properties/next_cursor/description",
    ] {
        assert!(
            description(pointer).contains(&MAX_ANSWER_BYTES.to_string()),
            "{pointer} states the answer budget"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Real responses
// ---------------------------------------------------------------------------------------------

fn request(method: &str, path: &str, query: &str) -> Request {
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": "abc123.execute-api.us-east-1.amazonaws.com", "accept": "application/json", "authorization": reader_token()},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.168.1.50", "userAgent": "curl/8.5.0"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "$default",
            "stage": "$default",
            "time": "02/Feb/2026:00:00:00 +0000",
            "timeEpoch": 1769990400000_i64
        },
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway v2 request")
}

fn json_body(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap(),
        _ => panic!("expected a JSON body"),
    }
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// An event from its JSON form, through the event's own decoding rules.
fn decode(value: Value) -> AuditEvent {
    serde_json::from_value(value).expect("a valid stored event")
}

const CREATED: &str = "019c167f-e003-7a1c-8e2f-4b3d5f6a7c81";
const PAID: &str = "019c1889-a788-7b2e-a041-6f5a7b8c9da3";

/// inv_999 created as pending and then paid (the document's examples), and another invoice
/// whose event names no actor type.
fn events() -> Vec<AuditEvent> {
    let event = |id: &str, occurred: &str, action: &str, resource: &str, changes: Value| {
        json!({
            "id": id,
            "tenant_id": "default",
            "occurred_at": at(occurred),
            "received_at": at(occurred) + chrono::Duration::milliseconds(60),
            "actor_id": "user_123",
            "actor_type": "user",
            "action": action,
            "resource_type": "invoice",
            "resource_id": resource,
            "changes": changes,
            "metadata": {"ip": "192.168.1.50"},
        })
    };
    let mut other = event(
        "inv_1000-created",
        "2026-02-01T12:00:00Z",
        "invoice_create",
        "inv_1000",
        json!({"status": {"before": null, "after": "pending"}}),
    );
    other["actor_id"] = json!("billing-service");
    other.as_object_mut().unwrap().remove("actor_type");
    other["metadata"] = json!({});
    vec![
        decode(event(
            CREATED,
            "2026-02-01T00:00:05.123Z",
            "invoice_create",
            "inv_999",
            json!({"status": {"before": null, "after": "pending"}, "amount": {"before": null, "after": 500}, "due_date": {"before": null, "after": "2026-02-15"}}),
        )),
        decode(event(
            PAID,
            "2026-02-01T09:30:00.456Z",
            "billing_update",
            "inv_999",
            json!({"status": {"before": "pending", "after": "paid"}, "due_date": {"before": "2026-02-15", "after": null}}),
        )),
        decode(other),
    ]
}

/// A fresh database holding [`events`], and a reader on it.
async fn seeded() -> (TestDatabase, PgReader) {
    let db = TestDatabase::create().await;
    let store = PgEventStore::new(pool(&db.url, 2).unwrap());
    let report = store.store(&events()).await.unwrap();
    assert_eq!(report.inserted, 3);
    let reader = PgReader::new(pool(&db.url, 2).unwrap());
    (db, reader)
}

async fn get(reader: &PgReader, path: &str, query: &str) -> Response<Body> {
    handle(reader, request("GET", path, query)).await.unwrap()
}

#[tokio::test]
async fn the_logs_answers_match_the_document() {
    let spec = Spec::load();
    let api = common::log::Api::new().await;
    api.store(&common::log::events(12)).await;

    let early = api.response("/events/evt-3/proof", "").await;
    assert_eq!(early.status(), 409);
    spec.assert_response_matches(
        &Spec::operation_response("/events/{id}/proof", "get", 409),
        &early,
    );
    let none = api.response("/checkpoint", "").await;
    assert_eq!(none.status(), 404);
    spec.assert_response_matches(&Spec::operation_response("/checkpoint", "get", 404), &none);
    api.checkpoint().await;
    api.store(&common::log::events(20)[12..]).await;
    api.checkpoint().await;

    for (path, query) in [
        ("/checkpoint", ""),
        ("/events/{id}/proof", ""),
        ("/consistency", "from=12"),
        ("/consistency", "from=1&to=12"),
    ] {
        let response = api.response(&path.replace("{id}", "evt-3"), query).await;
        assert_eq!(response.status(), 200, "{path}?{query}");
        spec.assert_response_matches(&Spec::operation_response(path, "get", 200), &response);
    }
    let bad = api.response("/consistency", "from=0").await;
    assert_eq!(bad.status(), 400);
    spec.assert_response_matches(&Spec::operation_response("/consistency", "get", 400), &bad);
}

#[tokio::test]
async fn a_keyset_page_matches_the_document() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;

    let first = get(
        &reader,
        "/events",
        "resource_type=invoice&resource_id=inv_999&limit=1",
    )
    .await;

    assert_eq!(first.status(), 200);
    spec.assert_response_matches(&Spec::operation_response("/events", "get", 200), &first);
    spec.assert_valid(
        "/components/schemas/KeysetPage",
        &json_body(&first),
        "the first page",
    );
    let cursor = json_body(&first)["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();

    let last = get(
        &reader,
        "/events",
        &format!("resource_type=invoice&resource_id=inv_999&limit=1&cursor={cursor}"),
    )
    .await;

    assert_eq!(last.status(), 200);
    spec.assert_response_matches(&Spec::operation_response("/events", "get", 200), &last);
    assert_eq!(json_body(&last)["next_cursor"], Value::Null);
    assert_eq!(json_body(&last)["data"][0]["id"], CREATED);
}

#[tokio::test]
async fn an_offset_page_matches_the_document() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;

    let response = get(&reader, "/events", "page=1&per_page=2").await;

    assert_eq!(response.status(), 200);
    spec.assert_response_matches(&Spec::operation_response("/events", "get", 200), &response);
    spec.assert_valid(
        "/components/schemas/OffsetPage",
        &json_body(&response),
        "the offset page",
    );
    assert_eq!(json_body(&response)["meta"]["total_count"], 3);
    let without_actor_type = get(&reader, "/events", "page=2&per_page=2").await;
    spec.assert_response_matches(
        &Spec::operation_response("/events", "get", 200),
        &without_actor_type,
    );
}

#[tokio::test]
async fn one_event_matches_the_document() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;

    let response = get(&reader, &format!("/events/{PAID}"), "").await;

    assert_eq!(response.status(), 200);
    spec.assert_response_matches(
        &Spec::operation_response("/events/{id}", "get", 200),
        &response,
    );
    assert_eq!(
        json_body(&response)["changes"]["status"],
        json!({"before": "pending", "after": "paid"})
    );
}

#[tokio::test]
async fn an_unknown_event_gets_a_404_that_matches_the_document() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;

    let response = get(&reader, "/events/no-such-event", "tenant_id=default").await;

    assert_eq!(response.status(), 404);
    spec.assert_response_matches(
        &Spec::operation_response("/events/{id}", "get", 404),
        &response,
    );
}

#[tokio::test]
async fn refused_identities_get_a_401_or_403_that_matches_the_document() {
    use sentinel_lambda::identity::Scope;
    let spec = Spec::load();
    let (_db, reader) = seeded().await;
    let with = |authorization: Option<String>, path: &str, query: &str| {
        let mut request = request("GET", path, query);
        match authorization {
            Some(value) => request
                .headers_mut()
                .insert("authorization", value.parse().unwrap()),
            None => request.headers_mut().remove("authorization"),
        };
        request
    };
    let writer = ISSUER.bearer("default", &[Scope::EventsWrite]);
    let stranger =
        sentinel_testing::auth::TestIssuer::new().bearer("default", &[Scope::EventsRead]);
    let cases = [
        ("/events", "get", with(None, "/events", ""), 401),
        (
            "/events/{id}",
            "get",
            with(Some(stranger), "/events/e1", ""),
            401,
        ),
        ("/events", "get", with(Some(writer), "/events", ""), 403),
        (
            "/resources/{type}/{id}/history",
            "get",
            with(
                Some(reader_token()),
                "/resources/invoice/inv_1/history",
                "tenant_id=globex",
            ),
            403,
        ),
    ];

    for (path, method, request, status) in cases {
        let response = handle(&reader, request).await.unwrap();

        assert_eq!(response.status(), status, "{path}");
        spec.assert_response_matches(&Spec::operation_response(path, method, status), &response);
    }
}

#[tokio::test]
async fn a_resource_history_matches_the_document() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;

    let response = get(&reader, "/resources/invoice/inv_999/history", "limit=1").await;

    assert_eq!(response.status(), 200);
    let pointer = Spec::operation_response("/resources/{type}/{id}/history", "get", 200);
    spec.assert_response_matches(&pointer, &response);
    assert_eq!(json_body(&response)["data"][0]["id"], CREATED);
    let empty = get(&reader, "/resources/invoice/inv_nobody/history", "").await;
    assert_eq!(empty.status(), 200);
    spec.assert_response_matches(&pointer, &empty);
}

#[tokio::test]
async fn a_resource_state_matches_the_document() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;

    let response = get(
        &reader,
        "/resources/invoice/inv_999/state",
        "at=2026-02-02T00:00:00Z",
    )
    .await;

    assert_eq!(response.status(), 200);
    spec.assert_response_matches(
        &Spec::operation_response("/resources/{type}/{id}/state", "get", 200),
        &response,
    );
    let state = json_body(&response);
    assert_eq!(state["fields"]["status"]["value"], "paid");
    assert_eq!(state["removed_fields"]["due_date"]["value"], Value::Null);
    assert_eq!(
        state,
        spec.at("/components/examples/StateAfterPayment/value")
            .clone(),
        "the example is what the code answers"
    );
}

#[tokio::test]
async fn a_resource_without_events_gets_a_state_404_that_matches_the_document() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;

    let response = get(
        &reader,
        "/resources/invoice/inv_999/state",
        "at=2026-01-01T00:00:00Z",
    )
    .await;

    assert_eq!(response.status(), 404);
    spec.assert_response_matches(
        &Spec::operation_response("/resources/{type}/{id}/state", "get", 404),
        &response,
    );
}

#[tokio::test]
async fn an_invalid_parameter_gets_a_400_that_matches_the_document() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;
    let many: Vec<String> = (0..500).map(|i| format!("p{i}=1")).collect();
    let hostile = format!("{}=1&a%00b%1B=2", "n".repeat(10_000));
    let cases = [
        ("/events", "limit=0&colour=red&sort=newest"),
        ("/events", "page=1&cursor=abc"),
        ("/events/x", "tenant_id=a%20b"),
        ("/resources/invoice/inv_999/history", "page=2"),
        ("/resources/invoice/inv_999/state", "at=yesterday"),
        (
            "/resources/invoice/inv_999/state",
            "at=9999-12-31T23:00:00-05:00",
        ),
        ("/resources/invoice/inv_999/state", "cursor=abc"),
        ("/events", &many.join("&")),
        ("/events", &hostile),
    ];
    for (path, query) in cases {
        let response = get(&reader, path, query).await;

        assert_eq!(response.status(), 400, "{path}?{query}");
        let template = match path {
            "/events" => "/events",
            "/events/x" => "/events/{id}",
            p if p.ends_with("history") => "/resources/{type}/{id}/history",
            _ => "/resources/{type}/{id}/state",
        };
        spec.assert_response_matches(&Spec::operation_response(template, "get", 400), &response);
    }
}

/// A fresh database holding 30 events of 250 KiB on `inv_big`, and 24 on `doc` each setting a
/// 200 KiB field: more than one answer's budget each.
async fn seeded_large() -> (TestDatabase, PgReader) {
    let db = TestDatabase::create().await;
    let store = PgEventStore::new(pool(&db.url, 2).unwrap());
    let start = at("2026-02-01T00:00:00Z");
    let event = |id: String, i: i64, resource: &str, changes: Value, metadata: Value| {
        decode(json!({
            "id": id,
            "tenant_id": "default",
            "occurred_at": start + chrono::Duration::seconds(i),
            "received_at": start + chrono::Duration::seconds(i),
            "actor_id": "user_123",
            "actor_type": "user",
            "action": "edit",
            "resource_type": "invoice",
            "resource_id": resource,
            "changes": changes,
            "metadata": metadata,
        }))
    };
    let mut events: Vec<AuditEvent> = (0..30)
        .map(|i| {
            event(
                format!("big-{i:02}"),
                i,
                "inv_big",
                json!({}),
                json!({"blob": "x".repeat(250 * 1024)}),
            )
        })
        .collect();
    events.extend((0..24).map(|i| {
        event(
            format!("doc-{i:02}"),
            i,
            "doc",
            json!({ format!("part_{i:02}"): {"before": null, "after": "v".repeat(200 * 1024)} }),
            json!({}),
        )
    }));
    store.store(&events).await.unwrap();
    let reader = PgReader::new(pool(&db.url, 2).unwrap());
    (db, reader)
}

#[tokio::test]
async fn answers_cut_short_by_the_budget_match_the_document() {
    let spec = Spec::load();
    let (_db, reader) = seeded_large().await;

    let keyset = get(
        &reader,
        "/events",
        "resource_type=invoice&resource_id=inv_big&limit=30",
    )
    .await;
    let offset = get(
        &reader,
        "/events",
        "resource_type=invoice&resource_id=inv_big&page=1&per_page=30",
    )
    .await;
    let history = get(&reader, "/resources/invoice/inv_big/history", "limit=30").await;
    let state = get(&reader, "/resources/invoice/doc/state", "").await;

    spec.assert_response_matches(&Spec::operation_response("/events", "get", 200), &keyset);
    spec.assert_response_matches(&Spec::operation_response("/events", "get", 200), &offset);
    spec.assert_response_matches(
        &Spec::operation_response("/resources/{type}/{id}/history", "get", 200),
        &history,
    );
    let state_pointer = Spec::operation_response("/resources/{type}/{id}/state", "get", 200);
    spec.assert_response_matches(&state_pointer, &state);
    assert!(json_body(&keyset)["next_cursor"].is_string());
    assert!(json_body(&history)["next_cursor"].is_string());
    assert_eq!(json_body(&offset)["meta"]["truncated"], true);
    let cursor = json_body(&state)["next_cursor"]
        .as_str()
        .expect("the state is cut short")
        .to_string();
    let rest = get(
        &reader,
        "/resources/invoice/doc/state",
        &format!("cursor={cursor}"),
    )
    .await;
    spec.assert_response_matches(&state_pointer, &rest);
    assert_eq!(json_body(&rest)["next_cursor"], Value::Null);
}

#[tokio::test]
async fn a_wrong_method_gets_a_405_that_matches_the_document() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;
    for (method, path, template) in [
        ("POST", "/events", "/events"),
        ("DELETE", "/events/x", "/events/{id}"),
        (
            "PUT",
            "/resources/invoice/inv_999/history",
            "/resources/{type}/{id}/history",
        ),
        (
            "PATCH",
            "/resources/invoice/inv_999/state",
            "/resources/{type}/{id}/state",
        ),
    ] {
        let response = handle(&reader, request(method, path, "")).await.unwrap();

        assert_eq!(response.status(), 405, "{method} {path}");
        spec.assert_response_matches(&Spec::operation_response(template, "get", 405), &response);
    }
}

#[tokio::test]
async fn an_unknown_path_gets_a_404_that_matches_the_document() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;

    let response = get(&reader, "/admin", "").await;

    assert_eq!(response.status(), 404);
    spec.assert_response_matches("/components/responses/NotFound", &response);
}

#[tokio::test]
async fn an_unreachable_database_gets_a_503_that_matches_the_document() {
    let spec = Spec::load();
    let reader = PgReader::new(pool("postgres://postgres@127.0.0.1:1/sentinel", 1).unwrap());

    let response = get(&reader, "/events", "").await;

    assert_eq!(response.status(), 503);
    spec.assert_response_matches(&Spec::operation_response("/events", "get", 503), &response);
}

#[tokio::test]
async fn a_query_the_database_refuses_gets_a_500_that_matches_the_document() {
    let spec = Spec::load();
    let (db, reader) = seeded().await;
    // Fault injection: a view in the place of the one the reader reads, failing with a data
    // exception (22012).
    db.client()
        .await
        .batch_execute(
            "ALTER VIEW tenant_events RENAME TO tenant_events_stored; \
             CREATE VIEW tenant_events AS SELECT * FROM tenant_events_stored \
             WHERE 1 / (SELECT count(*) - count(*) FROM audit_events)::int = 1",
        )
        .await
        .unwrap();

    let response = get(&reader, "/events", "").await;

    assert_eq!(response.status(), 500);
    spec.assert_response_matches(&Spec::operation_response("/events", "get", 500), &response);
}

/// The names the code lists in its "use one of: ..." message for an unknown parameter.
async fn accepted_parameters(reader: &PgReader, path: &str) -> BTreeSet<String> {
    let response = get(reader, path, "zz_unknown=1").await;
    assert_eq!(response.status(), 400);
    let message = json_body(&response)["error"]["fields"]["zz_unknown"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, names) = message
        .split_once("use one of: ")
        .expect("the message lists the parameters");
    names.split(", ").map(str::to_string).collect()
}

#[tokio::test]
async fn the_documented_query_parameters_are_exactly_the_ones_the_code_accepts() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;
    for (template, path) in [
        ("/events", "/events"),
        ("/events/{id}", "/events/x"),
        (
            "/resources/{type}/{id}/history",
            "/resources/invoice/inv_999/history",
        ),
        (
            "/resources/{type}/{id}/state",
            "/resources/invoice/inv_999/state",
        ),
        ("/export", "/export"),
    ] {
        let documented: BTreeSet<String> = spec
            .parameters(template, "get")
            .into_iter()
            .filter(|(_, p)| p["in"] == "query")
            .map(|(_, p)| p["name"].as_str().unwrap().to_string())
            .collect();

        assert_eq!(
            documented,
            accepted_parameters(&reader, path).await,
            "{template}"
        );
    }
}

#[tokio::test]
async fn the_documented_parameter_examples_are_accepted_by_the_code() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;
    let offset_only = ["page", "per_page"];
    for (template, path, skip) in [
        ("/events", "/events", &offset_only[..]),
        ("/events", "/events", &["limit", "cursor"][..]),
        ("/events/{id}", &format!("/events/{PAID}")[..], &[][..]),
        (
            "/resources/{type}/{id}/history",
            "/resources/invoice/inv_999/history",
            &[][..],
        ),
        (
            "/resources/{type}/{id}/state",
            "/resources/invoice/inv_999/state",
            &[][..],
        ),
    ] {
        let query: Vec<String> = spec
            .parameters(template, "get")
            .into_iter()
            .filter(|(_, p)| p["in"] == "query" && !skip.contains(&p["name"].as_str().unwrap()))
            .map(|(_, p)| {
                let example = match &p["example"] {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                let encoded: String = form_urlencoded::byte_serialize(example.as_bytes()).collect();
                format!("{}={encoded}", p["name"].as_str().unwrap())
            })
            .collect();
        let query = query.join("&");

        let response = get(&reader, path, &query).await;

        assert_eq!(
            response.status(),
            200,
            "{path}?{query}: {}",
            json_body(&response)
        );
        spec.assert_response_matches(&Spec::operation_response(template, "get", 200), &response);
    }
}

#[tokio::test]
async fn the_callers_answer_and_the_exports_documented_parameters_match_the_code() {
    let spec = Spec::load();
    let (_db, reader) = seeded().await;

    let response = get(&reader, "/whoami", "").await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));
    spec.assert_response_matches(&Spec::operation_response("/whoami", "get", 200), &response);

    let query: Vec<String> = spec
        .parameters("/export", "get")
        .into_iter()
        .filter(|(_, p)| p["in"] == "query")
        .map(|(_, p)| {
            let example = match &p["example"] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let encoded: String = form_urlencoded::byte_serialize(example.as_bytes()).collect();
            format!("{}={encoded}", p["name"].as_str().unwrap())
        })
        .collect();
    let query = query.join("&");
    let response = get(&reader, "/export", &query).await;
    assert_eq!(response.status(), 200, "{query}");
    let documented = spec.at(&format!(
        "{}/content",
        Spec::operation_response("/export", "get", 200)
    ));
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        documented
            .get(content_type.split(';').next().unwrap())
            .is_some(),
        "{content_type} is documented"
    );
}
