//! The handler against an in-memory reader: routing, parameters and errors, without
//! PostgreSQL.

mod common;

use common::{handle, reader_token, AUTH, ISSUER};

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use lambda_http::{Body, Request, Response};
use sentinel_domain::event::AuditEvent;
use sentinel_domain::fields::Timestamp;
use sentinel_domain::query::{EventQuery, Paging, Sort, StateQuery};
use sentinel_domain::read::{
    EventReader, FieldState, Page, PageBuilder, ResourceState, StateBuilder, StateSummary,
    MAX_ANSWER_BYTES,
};
use sentinel_domain::store::StoreError;
use sentinel_domain::validation::MAX_REPORTED_ERRORS;
use serde_json::{json, Map, Value};

/// What the handler asked of the reader.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    List(EventQuery),
    Get(String, String),
    State(StateQuery),
}

/// Events in memory, answered by the same page and state rules as the real reader.
#[derive(Default)]
struct FakeReader {
    events: Vec<AuditEvent>,
    failure: Option<fn() -> StoreError>,
    calls: Mutex<Vec<Call>>,
}

impl FakeReader {
    fn with(events: Vec<AuditEvent>) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }

    fn failing(failure: fn() -> StoreError) -> Self {
        Self {
            failure: Some(failure),
            ..Self::default()
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: Call) -> Result<(), StoreError> {
        self.calls.lock().unwrap().push(call);
        match self.failure {
            Some(failure) => Err(failure()),
            None => Ok(()),
        }
    }

    fn key(event: &AuditEvent) -> (Timestamp, String) {
        (event.occurred_at, event.id.to_string())
    }
}

fn matches(filter: &Option<String>, value: &str) -> bool {
    filter.as_deref().is_none_or(|f| f == value)
}

#[async_trait]
impl EventReader for FakeReader {
    async fn list(&self, query: &EventQuery) -> Result<Page, StoreError> {
        self.record(Call::List(query.clone()))?;
        let mut events: Vec<&AuditEvent> = self
            .events
            .iter()
            .filter(|e| {
                e.tenant_id.as_str() == query.tenant_id
                    && matches(&query.actor_id, &e.actor_id)
                    && matches(&query.action, &e.action)
                    && matches(&query.resource_type, &e.resource_type)
                    && matches(&query.resource_id, &e.resource_id)
                    && query.from.is_none_or(|from| e.occurred_at >= from)
                    && query.to.is_none_or(|to| e.occurred_at < to)
                    && (query.include_access_events || !sentinel_domain::access::is_access_event(e))
            })
            .collect();
        events.sort_by_key(|e| Self::key(e));
        if query.sort == Sort::Newest {
            events.reverse();
        }
        match &query.paging {
            Paging::Keyset { limit, after } => {
                let mut builder = PageBuilder::new(*limit as usize);
                let after = after.as_ref().map(|c| (c.occurred_at(), c.id.clone()));
                for event in events.into_iter().filter(|e| match (&after, query.sort) {
                    (None, _) => true,
                    (Some(after), Sort::Newest) => Self::key(e) < *after,
                    (Some(after), Sort::Oldest) => Self::key(e) > *after,
                }) {
                    if !builder.offer(event.clone()) {
                        break;
                    }
                }
                Ok(Page::Keyset(builder.keyset(query.sort)))
            }
            Paging::Offset { page, per_page } => {
                let total = events.len() as i64;
                let mut builder = PageBuilder::new(*per_page as usize);
                for event in events
                    .into_iter()
                    .skip(((page - 1) * per_page) as usize)
                    .take(*per_page as usize)
                {
                    if !builder.offer(event.clone()) {
                        break;
                    }
                }
                Ok(Page::Offset(
                    builder.offset(query.sort, *page, *per_page, total, true),
                ))
            }
        }
    }

    async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<AuditEvent>, StoreError> {
        self.record(Call::Get(tenant_id.into(), id.into()))?;
        Ok(self
            .events
            .iter()
            .find(|e| e.tenant_id.as_str() == tenant_id && e.id.as_str() == id)
            .cloned())
    }

    async fn state(&self, query: &StateQuery) -> Result<Option<ResourceState>, StoreError> {
        self.record(Call::State(query.clone()))?;
        let mut events: Vec<&AuditEvent> = self
            .events
            .iter()
            .filter(|e| {
                e.tenant_id.as_str() == query.tenant_id
                    && e.resource_type.as_str() == query.resource_type
                    && e.resource_id.as_str() == query.resource_id
                    && e.occurred_at <= query.at
            })
            .collect();
        events.sort_by_key(|e| Self::key(e));
        let Some(last) = events.last() else {
            return Ok(None);
        };
        let summary = StateSummary {
            event_count: events.len() as i64,
            last_event_id: last.id.to_string(),
            last_event_at: last.occurred_at,
        };
        let mut fields = std::collections::BTreeMap::new();
        for event in &events {
            let Value::Object(changes) = serde_json::to_value(&event.changes).unwrap() else {
                panic!("changes are an object")
            };
            for (field, change) in changes {
                let state = FieldState {
                    value: change["after"].clone(),
                    event_id: event.id.to_string(),
                    changed_at: event.occurred_at,
                };
                fields.insert(field, state);
            }
        }
        let mut builder = StateBuilder::new();
        for (field, state) in fields {
            if query
                .after_field
                .as_ref()
                .is_some_and(|after| &field <= after)
            {
                continue;
            }
            if !builder.offer(field, state) {
                break;
            }
        }
        Ok(Some(builder.finish(query, summary)))
    }
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn event(id: &str, when: &str, resource_id: &str, changes: Value) -> AuditEvent {
    event_with(id, when, resource_id, changes, json!({}))
}

fn event_with(
    id: &str,
    when: &str,
    resource_id: &str,
    changes: Value,
    metadata: Value,
) -> AuditEvent {
    serde_json::from_value(json!({
        "id": id,
        "tenant_id": "default",
        "occurred_at": when,
        "received_at": when,
        "actor_id": "user_123",
        "actor_type": "user",
        "action": "billing_update",
        "resource_type": "invoice",
        "resource_id": resource_id,
        "changes": changes,
        "metadata": metadata,
    }))
    .unwrap()
}

fn scenario() -> Vec<AuditEvent> {
    vec![
        event(
            "e1",
            "2026-02-01T00:00:00Z",
            "inv_999",
            json!({"status": {"before": null, "after": "pending"}}),
        ),
        event(
            "e2",
            "2026-02-02T00:00:00Z",
            "inv_999",
            json!({"status": {"before": "pending", "after": "paid"}}),
        ),
        event(
            "e3",
            "2026-02-03T00:00:00Z",
            "inv_1000",
            json!({"status": {"before": null, "after": "pending"}}),
        ),
    ]
}

fn request(method: &str, path: &str, query: &str) -> Request {
    let request = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"accept": "application/json", "authorization": reader_token()},
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
                           "requestId": "r", "routeKey": "$default", "stage": "$default", "accountId": "0", "apiId": "q",
                           "domainName": "localhost", "domainPrefix": "localhost", "time": "01/Feb/2026:00:00:05 +0000", "timeEpoch": 0},
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&request.to_string()).unwrap()
}

fn text(response: &Response<Body>) -> &str {
    match response.body() {
        Body::Text(text) => text,
        other => panic!("expected a text body, got {other:?}"),
    }
}

async fn call(reader: &FakeReader, method: &str, path: &str, query: &str) -> (u16, Value) {
    let response = handle(reader, request(method, path, query)).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    (
        response.status().as_u16(),
        serde_json::from_str(text(&response)).unwrap(),
    )
}

async fn get(reader: &FakeReader, path: &str, query: &str) -> (u16, Value) {
    call(reader, "GET", path, query).await
}

fn ids(page: &Value) -> Vec<&str> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_list_hands_the_parsed_filters_to_the_reader_and_answers_its_page() {
    let reader = FakeReader::with(scenario());

    let (status, page) = get(
        &reader,
        "/events",
        "resource_type=invoice&resource_id=inv_999",
    )
    .await;

    assert_eq!(status, 200);
    assert_eq!(ids(&page), ["e2", "e1"]);
    assert_eq!(page["next_cursor"], Value::Null);
    let calls = reader.calls();
    let [Call::List(query)] = calls.as_slice() else {
        panic!("one list call, got {calls:?}")
    };
    assert_eq!(query.resource_id.as_deref(), Some("inv_999"));
    assert_eq!(query.sort, Sort::Newest);
}

#[tokio::test]
async fn a_history_asks_for_the_resource_oldest_first() {
    let reader = FakeReader::with(scenario());

    let (status, page) = get(&reader, "/resources/invoice/inv_999/history", "").await;

    assert_eq!(status, 200);
    assert_eq!(ids(&page), ["e1", "e2"]);
    let calls = reader.calls();
    let [Call::List(query)] = calls.as_slice() else {
        panic!("one list call, got {calls:?}")
    };
    assert_eq!(
        (query.resource_type.as_deref(), query.sort),
        (Some("invoice"), Sort::Oldest)
    );
}

#[tokio::test]
async fn a_state_is_asked_for_at_its_time_and_a_resource_without_events_is_a_404() {
    let reader = FakeReader::with(scenario());

    let (status, state) = get(
        &reader,
        "/resources/invoice/inv_999/state",
        "at=2026-02-01T12:00:00Z",
    )
    .await;
    let (missing, body) = get(&reader, "/resources/invoice/inv_0/state", "").await;

    assert_eq!(status, 200);
    assert_eq!(state["fields"]["status"]["value"], "pending");
    assert_eq!(state["next_cursor"], Value::Null);
    assert_eq!(
        (missing, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let Call::State(query) = &reader.calls()[0] else {
        panic!("a state call")
    };
    assert_eq!(query.at, at("2026-02-01T12:00:00Z"));
}

#[tokio::test]
async fn one_event_is_asked_for_in_its_tenant_and_an_impossible_id_never_reaches_the_reader() {
    let reader = FakeReader::with(scenario());

    let (status, event) = get(&reader, "/events/e2", "tenant_id=default").await;
    let (missing, _) = get(&reader, "/events/e9", "").await;
    let (impossible, _) = get(&reader, "/events/a%20b", "").await;

    assert_eq!((status, event["id"].as_str()), (200, Some("e2")));
    assert_eq!((missing, impossible), (404, 404));
    assert_eq!(
        reader.calls(),
        [
            Call::Get("default".into(), "e2".into()),
            Call::Get("default".into(), "e9".into())
        ]
    );
}

#[tokio::test]
async fn bad_parameters_wrong_methods_and_unknown_paths_never_reach_the_reader() {
    let reader = FakeReader::with(scenario());

    let (bad, body) = get(&reader, "/events", "limit=0").await;
    let (bad_state, _) = get(&reader, "/resources/invoice/inv_999/state", "at=soon").await;
    let (method, _) = call(&reader, "POST", "/events", "").await;
    let (path, _) = get(&reader, "/admin", "").await;

    assert_eq!((bad, bad_state, method, path), (400, 400, 405, 404));
    assert_eq!(body["error"]["code"], "invalid_parameter");
    assert!(body["error"]["fields"]["limit"].is_string());
    assert!(reader.calls().is_empty());
}

#[tokio::test]
async fn an_unreachable_store_is_a_503_and_a_refused_query_an_opaque_500() {
    let down = FakeReader::failing(|| StoreError::Unavailable("connection refused".into()));
    let refused = FakeReader::failing(|| StoreError::Refused("secret detail (22012)".into()));

    for path in [
        "/events",
        "/events/e1",
        "/resources/invoice/inv_999/history",
        "/resources/invoice/inv_999/state",
    ] {
        let response = handle(&down, request("GET", path, "")).await.unwrap();
        assert_eq!(response.status(), 503, "{path}");
        assert_eq!(response.headers()["retry-after"], "1");

        let (status, body) = get(&refused, path, "").await;
        assert_eq!(status, 500, "{path}");
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(!body.to_string().contains("secret"), "{body}");
    }
}

#[tokio::test]
async fn thousands_of_unknown_parameters_get_a_bounded_error() {
    let reader = FakeReader::with(scenario());
    // 6,000 names, as in the report (the URI's length allows no longer ones).
    let query: Vec<String> = (0..6000).map(|i| format!("u{i}=1")).collect();

    let response = handle(&reader, request("GET", "/events", &query.join("&")))
        .await
        .unwrap();

    assert_eq!(response.status(), 400);
    let body: Value = serde_json::from_str(text(&response)).unwrap();
    assert_eq!(
        body["error"]["fields"].as_object().unwrap().len(),
        MAX_REPORTED_ERRORS
    );
    assert!(
        text(&response).len() < 64 * 1024,
        "{} bytes",
        text(&response).len()
    );
}

#[tokio::test]
async fn hostile_parameter_names_are_echoed_cut_short_and_without_control_characters() {
    let reader = FakeReader::with(scenario());
    let long = "n".repeat(10_000);
    let query = format!("{long}=1&a%00b%1B%5B31m%7F=2&%0D%0Ainjected=3");

    let (status, body) = get(&reader, "/events", &query).await;

    assert_eq!(status, 400);
    let names: Vec<&String> = body["error"]["fields"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(names.len(), 3);
    for name in names {
        assert!(name.chars().count() <= 65, "{name}");
        assert!(!name.chars().any(char::is_control), "{name:?}");
    }
    assert!(body["error"]["fields"][format!("{}…", "n".repeat(64))].is_string());
    assert!(body["error"]["fields"]["a?b?[31m?"].is_string());
}

#[tokio::test]
async fn every_time_parameter_outside_1970_to_9999_is_a_400_naming_it() {
    let reader = FakeReader::with(scenario());

    for (path, query, name) in [
        ("/events", "from=0000-01-01T00:00:00Z", "from"),
        ("/events", "from=1969-12-31T23:59:59.999999Z", "from"),
        ("/events", "to=9999-12-31T23:59:59-00:01", "to"),
        ("/events", "to=253402300800", "to"),
        ("/events", "from=1000000000000000000000", "from"),
        (
            "/resources/invoice/inv_999/history",
            "from=1970-01-01T00:00:00%2B01:00",
            "from",
        ),
        (
            "/resources/invoice/inv_999/history",
            "to=253402300800.5",
            "to",
        ),
        (
            "/resources/invoice/inv_999/state",
            "at=9999-12-31T23:00:00-05:00",
            "at",
        ),
        ("/resources/invoice/inv_999/state", "at=253402300800", "at"),
    ] {
        let (status, body) = get(&reader, path, query).await;

        assert_eq!(status, 400, "{path}?{query}: {body}");
        let message = body["error"]["fields"][name].as_str().unwrap_or_default();
        assert!(
            message.contains("1970-01-01T00:00:00Z")
                || message.contains("9999-12-31T23:59:59.999999Z"),
            "{query}: {body}"
        );
    }
    assert!(reader.calls().is_empty());
}

#[tokio::test]
async fn the_last_moment_of_9999_is_a_valid_time_and_answers_with_a_four_digit_year() {
    let reader = FakeReader::with(scenario());

    for at in [
        "253402300799.999999",
        "9999-12-31T23:59:59.9999999Z",
        "9999-12-31T18:59:59.999999-05:00",
    ] {
        let (status, state) = get(
            &reader,
            "/resources/invoice/inv_999/state",
            &format!("at={at}"),
        )
        .await;

        assert_eq!(status, 200, "{at}: {state}");
        assert_eq!(state["at"], "9999-12-31T23:59:59.999999Z", "{at}");
    }
    let (status, _) = get(&reader, "/events", "from=0&to=253402300799.999999").await;
    assert_eq!(status, 200);
}

/// An event whose metadata holds `bytes` of text.
fn large(i: usize, bytes: usize) -> AuditEvent {
    let when = (at("2026-02-01T00:00:00Z") + Duration::seconds(i as i64)).to_rfc3339();
    event_with(
        &format!("big-{i:02}"),
        &when,
        "inv_999",
        json!({}),
        json!({"blob": "x".repeat(bytes)}),
    )
}

#[tokio::test]
async fn a_keyset_page_of_large_events_stops_at_the_budget_and_continues_where_it_stopped() {
    let events: Vec<AuditEvent> = (0..30).map(|i| large(i, 250 * 1024)).collect();
    let reader = FakeReader::with(events);

    let mut seen = Vec::new();
    let mut query = "limit=30".to_string();
    loop {
        let response = handle(&reader, request("GET", "/events", &query))
            .await
            .unwrap();
        assert!(text(&response).len() <= MAX_ANSWER_BYTES + 1024);
        let page: Value = serde_json::from_str(text(&response)).unwrap();
        seen.extend(ids(&page).into_iter().map(str::to_string));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=30&cursor={cursor}"),
            None => break,
        }
    }

    let expected: Vec<String> = (0..30).rev().map(|i| format!("big-{i:02}")).collect();
    assert_eq!(seen, expected);
    assert!(reader.calls().len() >= 2);
}

#[tokio::test]
async fn an_offset_page_of_large_events_says_it_was_truncated_and_how_to_continue() {
    let events: Vec<AuditEvent> = (0..30).map(|i| large(i, 250 * 1024)).collect();
    let reader = FakeReader::with(events);

    let (status, page) = get(&reader, "/events", "page=1&per_page=30").await;
    let (_, small) = get(&reader, "/events", "page=2&per_page=2").await;

    assert_eq!(status, 200);
    let returned = ids(&page).len();
    assert!(returned < 30, "{returned}");
    assert_eq!(page["meta"]["truncated"], true);
    let cursor = page["meta"]["next_cursor"].as_str().unwrap();
    let (_, rest) = get(&reader, "/events", &format!("limit=30&cursor={cursor}")).await;
    assert_eq!(rest["data"][0]["id"], format!("big-{:02}", 29 - returned));
    assert_eq!(small["meta"]["truncated"], false);
    assert!(small["meta"].get("next_cursor").is_none());
}

#[tokio::test]
async fn a_large_state_comes_in_parts_that_together_hold_every_field_once() {
    let changes: Map<String, Value> = (0..40)
        .map(|i| {
            (
                format!("field_{i:02}"),
                json!({"before": null, "after": "v".repeat(200 * 1024)}),
            )
        })
        .collect();
    let reader = FakeReader::with(vec![event(
        "huge",
        "2026-02-01T00:00:00Z",
        "inv_999",
        Value::Object(changes),
    )]);

    let mut fields = Vec::new();
    let mut query = "at=2026-03-01T00:00:00Z".to_string();
    let mut parts = 0;
    loop {
        let response = handle(
            &reader,
            request("GET", "/resources/invoice/inv_999/state", &query),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        assert!(text(&response).len() <= MAX_ANSWER_BYTES + 1024);
        let state: Value = serde_json::from_str(text(&response)).unwrap();
        fields.extend(state["fields"].as_object().unwrap().keys().cloned());
        parts += 1;
        match state["next_cursor"].as_str() {
            Some(cursor) => query = format!("cursor={cursor}"),
            None => break,
        }
    }

    assert!(parts >= 2);
    let expected: Vec<String> = (0..40).map(|i| format!("field_{i:02}")).collect();
    assert_eq!(fields, expected);
    let (status, body) = get(
        &reader,
        "/resources/invoice/inv_999/state",
        "at=2026-03-02T00:00:00Z&cursor=bm9wZQ",
    )
    .await;
    assert_eq!(
        (status, body["error"]["fields"]["cursor"].is_string()),
        (400, true)
    );
}

// --- identity and the access log -------------------------------------------------------------

use sentinel_lambda::identity::Scope;
use sentinel_testing::auth::MemorySink;

/// A GET with `authorization` (none when `None`), handled with `log` as the access log.
async fn get_as(
    reader: &FakeReader,
    log: &MemorySink,
    authorization: Option<&str>,
    path: &str,
    query: &str,
) -> (u16, Value) {
    let mut event: Value = serde_json::from_str(&{
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
            "headers": {"accept": "application/json"},
            "requestContext": {"http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
                               "requestId": "r", "routeKey": "$default", "stage": "$default", "accountId": "0", "apiId": "q",
                               "domainName": "localhost", "domainPrefix": "localhost", "time": "01/Feb/2026:00:00:05 +0000", "timeEpoch": 0},
            "isBase64Encoded": false
        })
        .to_string()
    })
    .unwrap();
    if let Some(value) = authorization {
        event["headers"]["authorization"] = json!(value);
    }
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let state = query::Query {
        reader,
        log: &sentinel_testing::log::EmptyLog,
        auth: &AUTH,
        access_log: log,
    };
    let response = query::handle(&state, request).await.unwrap();
    let body = serde_json::from_str(text(&response)).unwrap();
    (response.status().as_u16(), body)
}

fn access_event(tenant: &str, n: usize) -> AuditEvent {
    let mut event = event(
        &format!("acc-{n}"),
        "2026-03-01T12:00:00Z",
        "inv_999",
        json!({}),
    );
    event.tenant_id = tenant.parse().unwrap();
    event.action = sentinel_domain::access::ACCESS_ACTION.parse().unwrap();
    event
}

#[tokio::test]
async fn a_read_without_a_valid_token_or_the_read_scope_is_refused_and_never_reaches_the_reader() {
    let reader = FakeReader::with(scenario());
    let log = MemorySink::default();
    let writer_only = ISSUER.bearer("default", &[Scope::EventsWrite]);
    let stranger =
        sentinel_testing::auth::TestIssuer::new().bearer("default", &[Scope::EventsRead]);

    let (missing, missing_body) = get_as(&reader, &log, None, "/events", "").await;
    let (forged, _) = get_as(&reader, &log, Some(&stranger), "/events", "").await;
    let (scope, scope_body) = get_as(&reader, &log, Some(&writer_only), "/events/e1", "").await;

    assert_eq!(
        (missing, missing_body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(forged, 401);
    assert_eq!(scope, 403);
    assert_eq!(
        scope_body["error"]["fields"]["scope"],
        "must include events:read"
    );
    assert!(reader.calls().is_empty());
    assert!(
        log.events().is_empty(),
        "nothing was read, so nothing is logged"
    );
}

#[tokio::test]
async fn every_answered_read_leaves_an_access_event_in_the_readers_tenant() {
    let reader = FakeReader::with(scenario());
    let log = MemorySink::default();
    let token = ISSUER.bearer("default", &[Scope::EventsRead]);

    let (list, _) = get_as(
        &reader,
        &log,
        Some(&token),
        "/events",
        "actor_id=user_123&limit=5",
    )
    .await;
    let (one, _) = get_as(&reader, &log, Some(&token), "/events/e1", "").await;
    let (missing, _) = get_as(&reader, &log, Some(&token), "/events/nope", "").await;
    let (history, _) = get_as(
        &reader,
        &log,
        Some(&token),
        "/resources/invoice/inv_999/history",
        "",
    )
    .await;

    assert_eq!((list, one, missing, history), (200, 200, 404, 200));
    let events = log.events();
    assert_eq!(events.len(), 4, "{events:?}");
    for event in &events {
        assert_eq!(event.tenant_id, "default");
        assert_eq!(event.actor_id, "test-user");
        assert_eq!(event.action, "sentinel.events.read");
    }
    assert_eq!(events[0].resource_type, "sentinel.events");
    assert_eq!(
        events[0].metadata["filters"],
        json!({"actor_id": "user_123", "limit": "5"})
    );
    assert_eq!(events[0].metadata["route"], "list");
    assert_eq!(
        (
            events[1].resource_type.as_str(),
            events[1].resource_id.as_str()
        ),
        ("sentinel.event", "e1")
    );
    assert_eq!(events[1].metadata["rows"], 1);
    assert_eq!(events[2].metadata["rows"], 0, "a miss is a read too");
    assert_eq!(events[3].resource_id, "invoice/inv_999");
}

#[tokio::test]
async fn the_access_log_is_hidden_without_audit_read_and_reading_it_is_not_itself_logged() {
    let mut events = scenario();
    events.push(access_event("default", 1));
    let reader = FakeReader::with(events);
    let log = MemorySink::default();
    let plain = ISSUER.bearer("default", &[Scope::EventsRead]);
    let auditor = ISSUER.bearer("default", &[Scope::EventsRead, Scope::AuditRead]);

    let (_, plain_page) = get_as(&reader, &log, Some(&plain), "/events", "").await;
    let (hidden, _) = get_as(&reader, &log, Some(&plain), "/events/acc-1", "").await;
    let (refused, refused_body) = get_as(
        &reader,
        &log,
        Some(&plain),
        "/events",
        "action=sentinel.events.read",
    )
    .await;
    let logged_so_far = log.events().len();
    let (audit, audit_page) = get_as(
        &reader,
        &log,
        Some(&auditor),
        "/events",
        "action=sentinel.events.read",
    )
    .await;
    let (seen, _) = get_as(&reader, &log, Some(&auditor), "/events/acc-1", "").await;

    assert!(!ids(&plain_page).contains(&"acc-1"));
    assert_eq!(hidden, 404);
    assert_eq!(refused, 403);
    assert_eq!(
        refused_body["error"]["fields"]["action"],
        "sentinel.events.read needs audit:read"
    );
    assert_eq!((audit, ids(&audit_page)), (200, vec!["acc-1"]));
    assert_eq!(seen, 200);
    assert_eq!(logged_so_far, 2, "the plain list and the hidden get");
    assert_eq!(
        log.events().len(),
        2,
        "reads of the access log leave no access event"
    );
}

#[tokio::test]
async fn an_operators_read_of_another_tenant_is_logged_in_both_tenants() {
    let reader = FakeReader::with(scenario());
    let log = MemorySink::default();
    let operator = ISSUER.bearer("ops", &[Scope::EventsRead, Scope::TenantsRead]);

    let (status, page) = get_as(
        &reader,
        &log,
        Some(&operator),
        "/events",
        "tenant_id=default",
    )
    .await;

    assert_eq!(status, 200);
    assert!(!ids(&page).is_empty());
    let events = log.events();
    let tenants: Vec<&str> = events.iter().map(|e| e.tenant_id.as_str()).collect();
    assert_eq!(tenants, ["ops", "default"]);
    assert!(events
        .iter()
        .all(|e| e.metadata["tenant_read"] == "default"));
}

#[tokio::test]
async fn a_read_that_cannot_be_logged_is_not_answered() {
    let reader = FakeReader::with(scenario());
    let log = MemorySink::default();
    log.refusing
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let token = ISSUER.bearer("default", &[Scope::EventsRead]);

    let (status, body) = get_as(&reader, &log, Some(&token), "/events/e1", "").await;

    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "access_log_unavailable");
    assert!(
        body.get("id").is_none() && !body.to_string().contains("user_123"),
        "{body}"
    );
}

#[tokio::test]
async fn each_request_names_its_route_and_rows_for_its_metrics_line() {
    let reader = FakeReader::with(scenario());
    let (response, served) = common::respond(
        &reader,
        request(
            "GET",
            "/events",
            "resource_type=invoice&resource_id=inv_999",
        ),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(served.route, "list");
    let rows = served.rows.unwrap();
    assert!(rows > 0);
    let line: Value = serde_json::from_str(
        &query::metrics(
            &served,
            response.status(),
            std::time::Duration::from_millis(7),
        )
        .to_lines(0)[0],
    )
    .unwrap();
    assert_eq!(
        (line["Function"].as_str(), line["Route"].as_str()),
        (Some("query"), Some("list"))
    );
    assert_eq!(line["Rows"], rows as f64);
    assert_eq!(line["Latency"], 7.0);
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Function", "Route"]])
    );

    let (response, served) =
        common::respond(&reader, request("GET", "/events/no-such-event", "")).await;
    assert_eq!(response.status(), 404);
    // A read that found nothing is still a read (and audited): 0 rows.
    assert_eq!((served.route, served.rows), ("get", Some(0)));
    let line: Value = serde_json::from_str(
        &query::metrics(&served, response.status(), std::time::Duration::ZERO).to_lines(0)[0],
    )
    .unwrap();
    assert_eq!(
        (line["ClientErrors"].as_f64(), line["Rows"].as_f64()),
        (Some(1.0), Some(0.0))
    );

    let (_, served) = common::respond(&reader, request("GET", "/nowhere", "")).await;
    assert_eq!(served.route, "unknown");
    let (_, served) = common::respond(&reader, request("GET", "/console/", "")).await;
    assert_eq!(served.route, "console");
}
