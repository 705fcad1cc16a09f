//! The query API against the real PostgreSQL, each test in a database of its own.

mod common;

use common::{handle, reader_token, ISSUER};

use chrono::{DateTime, Duration, Utc};
use lambda_http::{Body, Response};
use sentinel_domain::event::AuditEvent;
use sentinel_domain::read::MAX_ANSWER_BYTES;
use sentinel_domain::store::EventStore;
use sentinel_postgres::reader::PgReader;
use sentinel_postgres::{pool, writer::PgEventStore};
use sentinel_testing::TestDatabase;
use serde_json::{json, Value};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn event(
    id: &str,
    when: &str,
    actor: &str,
    action: &str,
    resource: (&str, &str),
    changes: Value,
) -> AuditEvent {
    event_with(
        id,
        when,
        actor,
        action,
        resource,
        changes,
        json!({"ip": "192.168.1.50"}),
    )
}

fn event_with(
    id: &str,
    when: &str,
    actor: &str,
    action: &str,
    resource: (&str, &str),
    changes: Value,
    metadata: Value,
) -> AuditEvent {
    serde_json::from_value(json!({
        "id": id,
        "tenant_id": "default",
        "occurred_at": when,
        "received_at": when,
        "actor_id": actor,
        "actor_type": "user",
        "action": action,
        "resource_type": resource.0,
        "resource_id": resource.1,
        "changes": changes,
        "metadata": metadata,
    }))
    .unwrap()
}

/// The instant a JSON time names, whatever its precision.
fn instant(value: &Value) -> DateTime<Utc> {
    at(value.as_str().unwrap())
}

struct Fixture {
    db: TestDatabase,
    reader: PgReader,
}

impl Fixture {
    async fn with(events: &[AuditEvent]) -> Self {
        let db = TestDatabase::create().await;
        let store = PgEventStore::new(pool(&db.url, 1).unwrap());
        for chunk in events.chunks(5000) {
            store.store(chunk).await.unwrap();
        }
        db.client()
            .await
            .batch_execute("ANALYZE audit_events")
            .await
            .unwrap();
        let reader = PgReader::new(pool(&db.url, 2).unwrap());
        Self { db, reader }
    }

    async fn response(&self, method: &str, path: &str, query: &str) -> Response<Body> {
        self.response_as(&reader_token(), method, path, query).await
    }

    /// The answer to a request with `authorization` as its header.
    async fn response_as(
        &self,
        authorization: &str,
        method: &str,
        path: &str,
        query: &str,
    ) -> Response<Body> {
        let request = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
            "headers": {"accept": "application/json", "authorization": authorization},
            "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
                               "requestId": "r", "routeKey": "$default", "stage": "$default", "accountId": "0", "apiId": "q",
                               "domainName": "localhost", "domainPrefix": "localhost", "time": "01/Feb/2026:00:00:05 +0000", "timeEpoch": 0},
            "isBase64Encoded": false
        });
        let request = lambda_http::request::from_str(&request.to_string()).unwrap();
        let response: Response<Body> = handle(&self.reader, request).await.unwrap();
        assert_eq!(response.headers()["content-type"], "application/json");
        response
    }

    async fn call(&self, method: &str, path: &str, query: &str) -> (u16, Value) {
        self.call_as(&reader_token(), method, path, query).await
    }

    async fn call_as(
        &self,
        authorization: &str,
        method: &str,
        path: &str,
        query: &str,
    ) -> (u16, Value) {
        let response = self.response_as(authorization, method, path, query).await;
        let body = match response.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("{other:?}"),
        };
        (response.status().as_u16(), body)
    }

    async fn get(&self, path: &str, query: &str) -> (u16, Value) {
        self.call("GET", path, query).await
    }

    async fn ids(&self, query: &str) -> Vec<String> {
        let (status, body) = self.get("/events", query).await;
        assert_eq!(status, 200, "{query}: {body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }
}

fn scenario() -> Vec<AuditEvent> {
    vec![
        event(
            "e1",
            "2026-01-31T23:59:59.999999Z",
            "user_123",
            "billing_update",
            ("invoice", "inv_999"),
            json!({"status": {"before": "draft", "after": "pending"}, "amount": {"before": null, "after": 500}}),
        ),
        event(
            "e2",
            "2026-02-01T00:00:00Z",
            "user_123",
            "billing_update",
            ("invoice", "inv_999"),
            json!({"status": {"before": "pending", "after": "failed"}}),
        ),
        event(
            "e3",
            "2026-02-10T12:00:00Z",
            "user_456",
            "billing_update",
            ("invoice", "inv_999"),
            json!({"status": {"before": "failed", "after": "paid"}, "note": {"before": null, "after": "retried"}}),
        ),
        event(
            "e4",
            "2026-02-11T08:00:00Z",
            "user_456",
            "invoice_void",
            ("invoice", "inv_1000"),
            json!({"status": {"before": "pending", "after": "failed"}, "amount": {"before": 10, "after": 0}}),
        ),
        event(
            "e5",
            "2026-03-01T09:00:00Z",
            "user_123",
            "billing_update",
            ("invoice", "inv_999"),
            json!({"note": {"before": "retried", "after": null}}),
        ),
        event(
            "e6",
            "2026-03-02T09:00:00Z",
            "svc_billing",
            "login",
            ("session", "s1"),
            json!({}),
        ),
    ]
}

#[tokio::test]
async fn an_event_comes_back_from_every_filter_that_matches_it_and_from_none_that_does_not() {
    let f = Fixture::with(&scenario()).await;

    for (query, expected) in [
        ("actor_id=user_123", vec!["e5", "e2", "e1"]),
        ("action=invoice_void", vec!["e4"]),
        ("resource_type=invoice&resource_id=inv_999", vec!["e5", "e3", "e2", "e1"]),
        ("resource_type=session", vec!["e6"]),
        ("changed_field=status&changed_to=failed", vec!["e4", "e2"]),
        ("changed_field=status&changed_from=failed", vec!["e3"]),
        ("changed_field=status&changed_from=pending&changed_to=failed", vec!["e4", "e2"]),
        ("changed_field=amount&changed_to=500", vec!["e1"]),
        ("changed_field=note", vec!["e5", "e3"]),
        ("actor_id=user_123&changed_field=status&changed_to=failed", vec!["e2"]),
        ("actor_id=user_456&action=billing_update&from=2026-02-01T00:00:00Z&to=2026-03-01T00:00:00Z", vec!["e3"]),
        ("tenant_id=default&actor_id=nobody", vec![]),
        ("changed_field=status&changed_to=refunded", vec![]),
    ] {
        assert_eq!(f.ids(query).await, expected, "{query}");
    }
}

#[tokio::test]
async fn time_ranges_are_half_open_and_offsets_are_converted() {
    let f = Fixture::with(&scenario()).await;

    assert_eq!(
        f.ids("to=2026-02-01T00:00:00Z").await,
        ["e1"],
        "the upper bound is exclusive"
    );
    assert_eq!(
        f.ids("from=2026-02-01T00:00:00Z&to=2026-02-10T12:00:00Z")
            .await,
        ["e2"],
        "the lower bound is inclusive"
    );
    assert_eq!(
        f.ids("from=2026-02-01T01:00:00%2B01:00&to=2026-02-01T00:00:00.000001Z")
            .await,
        ["e2"]
    );
    assert_eq!(
        f.ids("from=1769904000&to=1769904001").await,
        ["e2"],
        "epoch seconds"
    );
    assert_eq!(
        f.ids("from=2026-01-31T23:59:59.999999Z&to=2026-02-01T00:00:00Z")
            .await,
        ["e1"]
    );
    assert_eq!(
        f.ids("sort=occurred_at&from=2026-02-10T08:00:00-05:00")
            .await,
        ["e4", "e5", "e6"],
        "08:00-05:00 is 13:00Z, after e3"
    );
}

#[tokio::test]
async fn the_state_between_two_changes_shows_the_right_fields_and_their_last_events() {
    let f = Fixture::with(&scenario()).await;

    let (status, state) = f
        .get(
            "/resources/invoice/inv_999/state",
            "at=2026-02-05T00:00:00Z",
        )
        .await;

    assert_eq!(status, 200);
    assert_eq!(state["fields"]["status"]["value"], "failed");
    assert_eq!(state["fields"]["status"]["event_id"], "e2");
    assert_eq!(
        instant(&state["fields"]["status"]["changed_at"]),
        at("2026-02-01T00:00:00Z")
    );
    assert_eq!(state["fields"]["amount"]["value"], 500);
    assert_eq!(state["fields"]["amount"]["event_id"], "e1");
    assert!(state["fields"].get("note").is_none());
    assert_eq!(state["event_count"], 2);
    assert_eq!(state["last_event_id"], "e2");
}

#[tokio::test]
async fn a_field_removed_by_a_change_leaves_the_state() {
    let f = Fixture::with(&scenario()).await;

    let (_, before) = f
        .get(
            "/resources/invoice/inv_999/state",
            "at=2026-02-20T00:00:00Z",
        )
        .await;
    let (_, after) = f
        .get(
            "/resources/invoice/inv_999/state",
            "at=2026-03-01T09:00:00Z",
        )
        .await;

    assert_eq!(before["fields"]["note"]["value"], "retried");
    assert!(after["fields"].get("note").is_none());
    assert_eq!(after["removed_fields"]["note"]["event_id"], "e5");
    assert_eq!(after["fields"]["status"]["value"], "paid");
}

#[tokio::test]
async fn state_before_the_first_event_is_a_404_and_an_event_at_t_counts() {
    let f = Fixture::with(&scenario()).await;

    let (status, body) = f
        .get(
            "/resources/invoice/inv_999/state",
            "at=2026-01-31T23:59:59Z",
        )
        .await;
    let (_, exact) = f
        .get(
            "/resources/invoice/inv_999/state",
            "at=2026-01-31T23:59:59.999999Z",
        )
        .await;

    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(exact["fields"]["status"]["value"], "pending");
}

#[tokio::test]
async fn history_lists_a_resource_oldest_first_in_pages() {
    let f = Fixture::with(&scenario()).await;

    let (status, first) = f.get("/resources/invoice/inv_999/history", "limit=3").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (_, second) = f
        .get(
            "/resources/invoice/inv_999/history",
            &format!("limit=3&cursor={cursor}"),
        )
        .await;

    assert_eq!(status, 200);
    let ids = |page: &Value| {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ["e1", "e2", "e3"]);
    assert_eq!(ids(&second), ["e5"]);
    assert!(second["next_cursor"].is_null());
}

#[tokio::test]
async fn one_event_by_id_or_a_json_404() {
    let f = Fixture::with(&scenario()).await;

    let (status, event) = f.get("/events/e3", "").await;
    let (missing, body) = f.get("/events/nope", "").await;
    let acme = ISSUER.bearer("acme", &[sentinel_lambda::identity::Scope::EventsRead]);
    let (other_tenant, other_body) = f.call_as(&acme, "GET", "/events/e3", "").await;

    assert_eq!(status, 200);
    assert_eq!(
        event["changes"]["note"],
        json!({"before": null, "after": "retried"})
    );
    assert_eq!(instant(&event["occurred_at"]), at("2026-02-10T12:00:00Z"));
    assert_eq!(
        (missing, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(other_tenant, 404);
    assert_eq!(
        other_body, body,
        "no existence oracle: the same answer as a missing id"
    );
}

#[tokio::test]
async fn another_tenants_reader_sees_nothing_of_this_tenant_by_any_route() {
    let f = Fixture::with(&scenario()).await;
    use sentinel_lambda::identity::Scope;
    let other = ISSUER.bearer("other", &[Scope::EventsRead, Scope::AuditRead]);
    let (_, first_page) = f.get("/events", "limit=2").await;
    let cursor = first_page["next_cursor"].as_str().unwrap().to_string();

    let (list, list_body) = f.call_as(&other, "GET", "/events", "").await;
    let (paged, paged_body) = f
        .call_as(
            &other,
            "GET",
            "/events",
            &format!("limit=2&cursor={cursor}"),
        )
        .await;
    let (history, history_body) = f
        .call_as(&other, "GET", "/resources/invoice/inv_999/history", "")
        .await;
    let (state, _) = f
        .call_as(&other, "GET", "/resources/invoice/inv_999/state", "")
        .await;
    let (named, named_body) = f
        .call_as(&other, "GET", "/events", "tenant_id=default")
        .await;
    let (get, _) = f
        .call_as(&other, "GET", "/events/e3", "tenant_id=default")
        .await;

    assert_eq!((list, list_body["data"].clone()), (200, json!([])));
    assert_eq!((paged, paged_body["data"].clone()), (200, json!([])));
    assert_eq!((history, history_body["data"].clone()), (200, json!([])));
    assert_eq!(state, 404);
    assert_eq!(named, 403);
    assert_eq!(
        named_body["error"]["fields"]["tenant_id"],
        "must be the caller's own tenant (or left out); reading another needs tenants:read"
    );
    assert_eq!(get, 403);
}

#[tokio::test]
async fn an_empty_result_is_an_empty_page() {
    let f = Fixture::with(&[]).await;

    let (status, body) = f.get("/events", "actor_id=user_123").await;

    assert_eq!(status, 200);
    assert_eq!(body, json!({"data": [], "next_cursor": null}));
}

#[tokio::test]
async fn the_largest_limit_returns_a_thousand_and_a_cursor() {
    let events: Vec<AuditEvent> = (0..1500)
        .map(|i| {
            let when = (at("2026-02-01T00:00:00Z") + Duration::seconds(i)).to_rfc3339();
            event(
                &format!("big-{i:05}"),
                &when,
                "user_123",
                "login",
                ("session", "s"),
                json!({}),
            )
        })
        .collect();
    let f = Fixture::with(&events).await;

    let (status, body) = f.get("/events", "limit=1000").await;

    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 1000);
    assert_eq!(body["data"][0]["id"], "big-01499");
    assert!(body["next_cursor"].is_string());
    let (too_many, error) = f.get("/events", "limit=1001").await;
    assert_eq!(too_many, 400);
    assert!(error["error"]["fields"]["limit"].is_string());
}

#[tokio::test]
async fn walking_every_page_while_events_arrive_returns_each_existing_event_exactly_once() {
    // Many events share an occurred_at, so ties are broken by id.
    let events: Vec<AuditEvent> = (0..700)
        .map(|i| {
            let when = (at("2026-02-01T00:00:00Z") + Duration::seconds(i / 7)).to_rfc3339();
            event(
                &format!("w-{:04}", (i * 37) % 700),
                &when,
                "user_123",
                "login",
                ("session", "s"),
                json!({}),
            )
        })
        .collect();
    let f = Fixture::with(&events).await;
    let writer = PgEventStore::new(pool(&f.db.url, 1).unwrap());

    for sort in ["-occurred_at", "occurred_at"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut round = 0;
        loop {
            let query = match &cursor {
                Some(c) => format!("sort={sort}&limit=33&cursor={c}"),
                None => format!("sort={sort}&limit=33"),
            };
            let (status, page) = f.get("/events", &query).await;
            assert_eq!(status, 200, "{page}");
            seen.extend(
                page["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_string()),
            );
            // New events keep arriving: some newer than everything, some at tied times.
            round += 1;
            let newcomers = [
                event(
                    &format!("new-{sort}-{round}"),
                    "2026-02-20T00:00:00Z",
                    "user_9",
                    "login",
                    ("session", "s"),
                    json!({}),
                ),
                event(
                    &format!("tie-{sort}-{round}"),
                    "2026-02-01T00:00:50Z",
                    "user_9",
                    "login",
                    ("session", "s"),
                    json!({}),
                ),
            ];
            writer.store(&newcomers).await.unwrap();
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let existing: Vec<&String> = seen.iter().filter(|id| id.starts_with("w-")).collect();
        let unique: std::collections::HashSet<&String> = existing.iter().copied().collect();
        assert_eq!(
            existing.len(),
            700,
            "{sort}: every pre-existing event once, none skipped"
        );
        assert_eq!(unique.len(), 700, "{sort}: none repeated");
        assert_eq!(
            seen.len(),
            seen.iter().collect::<std::collections::HashSet<_>>().len(),
            "{sort}: no id twice"
        );
    }
}

#[tokio::test]
async fn offset_pages_carry_totals_and_say_when_a_total_is_an_estimate() {
    let events: Vec<AuditEvent> = (0..10_050)
        .map(|i| {
            let when = (at("2026-02-01T00:00:00Z") + Duration::seconds(i)).to_rfc3339();
            let actor = if i < 120 { "user_1" } else { "user_2" };
            event(
                &format!("o-{i:05}"),
                &when,
                actor,
                "login",
                ("session", "s"),
                json!({}),
            )
        })
        .collect();
    let f = Fixture::with(&events).await;

    let (status, small) = f.get("/events", "actor_id=user_1&page=3&per_page=50").await;
    let (_, large) = f.get("/events", "page=2&per_page=100").await;

    assert_eq!(status, 200);
    assert_eq!(
        small["meta"],
        json!({"current_page": 3, "per_page": 50, "total_pages": 3, "total_count": 120, "total_count_exact": true, "truncated": false})
    );
    assert_eq!(small["data"].as_array().unwrap().len(), 20);
    assert_eq!(small["data"][0]["id"], "o-00019");
    assert_eq!(large["meta"]["total_count_exact"], false);
    assert!(large["meta"]["total_count"].as_i64().unwrap() > 10_000);
    assert_eq!(large["data"][0]["id"], "o-09949");
}

#[tokio::test]
async fn bad_parameters_get_a_400_naming_them() {
    let f = Fixture::with(&scenario()).await;

    for (query, field) in [
        ("sort=time", "sort"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=eyJ0IjoiMSIsImkiOjEsInMiOiJ4In0", "cursor"),
        ("bogus=1", "bogus"),
        ("actor_id=a&actor_id=b", "actor_id"),
        ("from=last+week", "from"),
        ("limit=0", "limit"),
        ("page=1&limit=5", "limit"),
        ("changed_field=status&changed_to=a%00b", "changed_to"),
        ("changed_field=status&changed_from=a%00b", "changed_from"),
        // A well-formed cursor whose time PostgreSQL cannot hold.
        (
            "cursor=eyJ0IjotODAwMDAwMDAwMDAwMDAwMDAwMCwiaSI6IngiLCJzIjoiLW9jY3VycmVkX2F0In0",
            "cursor",
        ),
    ] {
        let (status, body) = f.get("/events", query).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"]["code"], "invalid_parameter");
        assert!(
            body["error"]["fields"][field].is_string(),
            "{query}: {body}"
        );
    }
    for (path, query, field) in [
        ("/resources/invoice/inv_999/state", "at=whenever", "at"),
        (
            "/resources/invoice/inv_999/state",
            "at=9999-12-31T23:59:59-00:01",
            "at",
        ),
        ("/resources/invoice/inv_999/state", "at=253402300800", "at"),
        ("/events", "from=0000-01-01T00:00:00Z", "from"),
        ("/events", "to=9999-12-31T23:00:00-05:00", "to"),
        (
            "/resources/invoice/inv_999/history",
            "to=253402300800.5",
            "to",
        ),
    ] {
        let (status, body) = f.get(path, query).await;
        assert_eq!(
            (status, body["error"]["fields"][field].is_string()),
            (400, true),
            "{path}?{query}: {body}"
        );
    }
}

#[tokio::test]
async fn the_last_moment_of_9999_reads_every_event_and_answers_a_four_digit_year() {
    let f = Fixture::with(&scenario()).await;

    let (status, state) = f
        .get(
            "/resources/invoice/inv_999/state",
            "at=9999-12-31T18:59:59.999999-05:00",
        )
        .await;
    let everything = f.ids("from=0&to=253402300799.999999").await;

    assert_eq!(status, 200);
    assert_eq!(state["at"], "9999-12-31T23:59:59.999999Z");
    assert_eq!(state["event_count"], 4);
    assert_eq!(everything.len(), 6);
}

/// An event of about `bytes` bytes: its metadata holds a string that long.
fn large(id: &str, when: DateTime<Utc>, bytes: usize) -> AuditEvent {
    event_with(
        id,
        &when.to_rfc3339(),
        "user_123",
        "export",
        ("report", "r1"),
        json!({}),
        json!({"blob": "x".repeat(bytes)}),
    )
}

#[tokio::test]
async fn pages_of_large_events_stay_under_the_budget_and_their_cursors_return_each_event_once() {
    // 30 events of 250 KiB: 7.5 MB in one page of 30 would pass Lambda's 6 MB answer limit.
    let start = at("2026-02-01T00:00:00Z");
    let events: Vec<AuditEvent> = (0..30)
        .map(|i| {
            large(
                &format!("large-{i:02}"),
                start + Duration::seconds(i),
                250 * 1024,
            )
        })
        .collect();
    let f = Fixture::with(&events).await;

    for (path, sort) in [
        ("/events", "-occurred_at"),
        ("/events", "occurred_at"),
        ("/resources/report/r1/history", "occurred_at"),
    ] {
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let query = match &cursor {
                Some(c) => format!("sort={sort}&limit=30&cursor={c}"),
                None => format!("sort={sort}&limit=30"),
            };
            let response = f.response("GET", path, &query).await;
            let Body::Text(text) = response.body() else {
                panic!("a text body")
            };
            assert_eq!(response.status(), 200);
            assert!(
                text.len() <= MAX_ANSWER_BYTES,
                "{path}?{query}: {} bytes",
                text.len()
            );
            let page: Value = serde_json::from_str(text).unwrap();
            let ids: Vec<String> = page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect();
            assert!(!ids.is_empty());
            seen.extend(ids);
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }

        let mut expected: Vec<String> = (0..30).map(|i| format!("large-{i:02}")).collect();
        if sort == "-occurred_at" {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{path} {sort}: every event once, in order");
        assert!(pages >= 2, "{path} {sort}: the first page stopped early");
    }
}

#[tokio::test]
async fn an_offset_page_of_large_events_is_truncated_and_its_cursor_continues_after_it() {
    let start = at("2026-02-01T00:00:00Z");
    let events: Vec<AuditEvent> = (0..30)
        .map(|i| {
            large(
                &format!("large-{i:02}"),
                start + Duration::seconds(i),
                250 * 1024,
            )
        })
        .collect();
    let f = Fixture::with(&events).await;

    let response = f.response("GET", "/events", "page=1&per_page=30").await;
    let Body::Text(text) = response.body() else {
        panic!("a text body")
    };
    let page: Value = serde_json::from_str(text).unwrap();
    let returned = page["data"].as_array().unwrap().len();
    let cursor = page["meta"]["next_cursor"].as_str().unwrap();
    let rest = f.ids(&format!("limit=1000&cursor={cursor}")).await;

    assert!(text.len() <= MAX_ANSWER_BYTES);
    assert_eq!(page["meta"]["truncated"], true);
    assert_eq!(page["meta"]["total_count"], 30);
    assert!(returned < 30);
    assert_eq!(rest.len() + returned, 30);
    assert_eq!(rest[0], format!("large-{:02}", 29 - returned));
}

#[tokio::test]
async fn a_state_larger_than_the_budget_comes_in_parts_holding_every_field_once() {
    // Names whose order differs between byte order and a natural-language collation.
    let names: Vec<String> = (0..12)
        .flat_map(|i| {
            [
                format!("Field_{i:02}"),
                format!("field_{i:02}"),
                format!("éclat_{i:02}"),
            ]
        })
        .collect();
    let start = at("2026-02-01T00:00:00Z");
    let events: Vec<AuditEvent> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            event(
                &format!("s-{i:02}"),
                &(start + Duration::seconds(i as i64)).to_rfc3339(),
                "user_123",
                "edit",
                ("doc", "d1"),
                json!({ name.clone(): {"before": null, "after": "v".repeat(200 * 1024)} }),
            )
        })
        .collect();
    let f = Fixture::with(&events).await;

    let mut fields = Vec::new();
    let mut parts = 0;
    let mut query = String::new();
    loop {
        let response = f.response("GET", "/resources/doc/d1/state", &query).await;
        let Body::Text(text) = response.body() else {
            panic!("a text body")
        };
        assert_eq!(response.status(), 200, "{text}");
        assert!(
            text.len() <= MAX_ANSWER_BYTES + 1024,
            "{} bytes",
            text.len()
        );
        let state: Value = serde_json::from_str(text).unwrap();
        assert_eq!(state["event_count"], 36);
        fields.extend(state["fields"].as_object().unwrap().keys().cloned());
        parts += 1;
        match state["next_cursor"].as_str() {
            Some(cursor) => query = format!("cursor={cursor}"),
            None => break,
        }
    }

    let mut expected = names.clone();
    expected.sort();
    assert_eq!(fields, expected, "every field once, in byte order");
    assert!(parts >= 2);
}

#[tokio::test]
async fn injection_attempts_in_every_parameter_are_inert() {
    let f = Fixture::with(&scenario()).await;
    let hostile = [
        "%27%20OR%20%271%27%3D%271",
        "%27%3B%20DROP%20TABLE%20audit_events%3B--",
        "%22%7D%7D%2C%22status%22%3A%7B%22after%22%3A%22failed",
        "%7B%22%24gt%22%3A%22%22%7D",
        "%5C%5C%27",
        "1%20OR%201%3D1",
    ];

    for value in hostile {
        for param in ["actor_id", "action", "resource_type", "changed_field"] {
            let (status, body) = f.get("/events", &format!("{param}={value}")).await;
            assert_eq!(
                (status, body["data"].as_array().map(Vec::len)),
                (200, Some(0)),
                "{param}={value}"
            );
        }
        for param in ["changed_to", "changed_from"] {
            let (status, body) = f
                .get("/events", &format!("changed_field=status&{param}={value}"))
                .await;
            assert_eq!(
                (status, body["data"].as_array().map(Vec::len)),
                (200, Some(0)),
                "{param}={value}"
            );
        }
        for param in [
            "tenant_id",
            "from",
            "to",
            "sort",
            "limit",
            "cursor",
            "page",
            "per_page",
        ] {
            let (status, _) = f.get("/events", &format!("{param}={value}")).await;
            assert_eq!(status, 400, "{param}={value}");
        }
        let (status, _) = f.get(&format!("/events/{value}"), "").await;
        assert_eq!(status, 404);
        let (status, _) = f
            .get(&format!("/resources/{value}/{value}/state"), "")
            .await;
        assert_eq!(status, 404);
    }
    assert_eq!(f.ids("limit=1000").await.len(), 6, "the table is intact");
}

#[tokio::test]
async fn only_get_is_allowed_and_unknown_paths_are_json_404s() {
    let f = Fixture::with(&[]).await;

    let (status, body) = f.call("POST", "/events", "").await;
    let (missing, _) = f.get("/admin", "").await;

    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_eq!(missing, 404);
}

#[tokio::test]
async fn percent_encoded_resource_ids_are_decoded() {
    let f = Fixture::with(&[event(
        "p1",
        "2026-02-01T00:00:00Z",
        "u",
        "a",
        ("file", "docs/a b.txt"),
        json!({"size": {"before": null, "after": 1}}),
    )])
    .await;

    let (status, state) = f.get("/resources/file/docs%2Fa%20b.txt/state", "").await;

    assert_eq!(status, 200);
    assert_eq!(state["fields"]["size"]["value"], 1);
}

// --- row-level security -----------------------------------------------------------------------

/// The scenario, plus the same events again under tenant `acme` (ids prefixed `acme-`).
fn two_tenants() -> Vec<AuditEvent> {
    let mut events = scenario();
    for mut event in scenario() {
        event.id = format!("acme-{}", event.id).parse().unwrap();
        event.tenant_id = "acme".parse().unwrap();
        events.push(event);
    }
    events
}

#[tokio::test]
async fn an_unfiltered_select_as_the_reader_role_sees_only_the_tenant_its_transaction_names() {
    let f = Fixture::with(&two_tenants()).await;
    let mut client = f.db.client().await;
    client
        .batch_execute("SET ROLE sentinel_reader")
        .await
        .unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT set_config('sentinel.tenant_id', 'acme', true)", &[])
        .await
        .unwrap();
    let seen: Vec<String> = tx
        .query("SELECT DISTINCT tenant_id FROM audit_events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let acme_rows: i64 = tx
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    // The reader's own window (tenant_events, the view its queries read) gives the same.
    let seen_through_the_view: Vec<String> = tx
        .query("SELECT DISTINCT tenant_id FROM tenant_events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let foreign_through_the_view: i64 = tx
        .query_one(
            "SELECT count(*) FROM tenant_events WHERE tenant_id = 'default' OR true",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    let unnamed: i64 = client
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    let unnamed_through_the_view: i64 = client
        .query_one("SELECT count(*) FROM tenant_events", &[])
        .await
        .unwrap()
        .get(0);
    let rejected = client
        .query_one("SELECT count(*) FROM rejected_records", &[])
        .await
        .unwrap_err();
    let conflicts = client
        .query_one("SELECT count(*) FROM event_conflicts", &[])
        .await
        .unwrap_err();

    assert_eq!(seen, ["acme"]);
    assert_eq!(acme_rows, scenario().len() as i64);
    assert_eq!(seen_through_the_view, ["acme"]);
    assert_eq!(foreign_through_the_view, scenario().len() as i64);
    assert_eq!(unnamed_through_the_view, 0);
    assert_eq!(
        unnamed, 0,
        "a transaction that names no tenant sees nothing"
    );
    assert_eq!(
        rejected.code().map(|c| c.code()),
        Some("42501"),
        "quarantined payloads are not the reader's: {rejected}"
    );
    assert_eq!(
        conflicts.code().map(|c| c.code()),
        Some("42501"),
        "conflicting copies are not the reader's: {conflicts}"
    );
}

#[tokio::test]
async fn the_reader_serves_lists_events_and_state_through_the_policy_as_the_reader_role() {
    let f = Fixture::with(&two_tenants()).await;
    // A login of this test's own in the reader role, as each function has one deployed.
    let login = format!("sentinel_reader_test_{}", uuid::Uuid::new_v4().simple());
    let admin = f.db.client().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {login} LOGIN IN ROLE sentinel_reader"
        ))
        .await
        .unwrap();
    let url =
        f.db.url
            .replacen("://postgres@", &format!("://{login}@"), 1);
    assert_ne!(
        url, f.db.url,
        "the test database URL names the postgres user"
    );
    let reader = PgReader::new(pool(&url, 1).unwrap());
    let acme: sentinel_domain::fields::TenantId = "acme".parse().unwrap();

    let page = reader
        .list(&sentinel_domain::query::EventQuery::parse(None, &acme).unwrap())
        .await
        .unwrap();
    let own = reader.get("acme", "acme-e1").await.unwrap();
    let other = reader.get("default", "e1").await.unwrap();
    let state = reader
        .state(
            &sentinel_domain::query::StateQuery::parse(
                "invoice",
                "inv_999",
                None,
                chrono::Utc::now(),
                &acme,
            )
            .unwrap(),
        )
        .await
        .unwrap();

    let sentinel_domain::read::Page::Keyset(page) = page else {
        panic!("a keyset page")
    };
    assert!(!page.data.is_empty());
    assert!(page.data.iter().all(|e| e.tenant_id == "acme"));
    assert!(own.is_some());
    assert!(
        other.is_some(),
        "the reader names the tenant it reads, so RLS lets it"
    );
    assert!(state.is_some());
    drop(reader);
    admin
        .batch_execute(&format!("DROP OWNED BY {login}; DROP ROLE {login}"))
        .await
        .unwrap();
}
