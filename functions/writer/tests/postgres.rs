//! The writer against the real PostgreSQL, each test in a database of its own.

mod common;

use common::*;
use sentinel_domain::fields::Timestamp;
use sentinel_postgres::{
    pool,
    writer::{PgEventStore, WriteMethod},
};
use sentinel_testing::{CuttableProxy, TestDatabase};
use serde_json::json;

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

fn store(db: &TestDatabase) -> PgEventStore {
    PgEventStore::new(pool(&db.url, 1).unwrap())
}

#[tokio::test]
async fn writer_stores_the_fixture_batch_and_files_the_last_microsecond_of_january_in_january() {
    let db = TestDatabase::create().await;
    let store = store(&db);

    let (response, summary) = writer::process(&store, fixture("kinesis_batch.json"))
        .await
        .unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!(summary.stored, 2);
    let row = db
        .client()
        .await
        .query_one(
            "SELECT tableoid::regclass::text, occurred_at = '2026-01-31T23:59:59.999999Z', \
             changes, metadata FROM audit_events WHERE id = 'fixture-evt-1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "audit_events_2026_01");
    assert!(row.get::<_, bool>(1), "the microsecond survives");
    assert_eq!(
        row.get::<_, serde_json::Value>(2),
        json!({"status": {"before": "pending", "after": "paid"}, "amount": {"before": null, "after": 500}})
    );
    assert_eq!(
        row.get::<_, serde_json::Value>(3),
        json!({"ip": "192.168.1.50"})
    );
    let february: String = db
        .client()
        .await
        .query_one(
            "SELECT tableoid::regclass::text FROM audit_events WHERE id = 'fixture-evt-2'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(february, "audit_events_2026_02");
}

#[tokio::test]
async fn writer_stores_a_redelivered_batch_once() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let events: Vec<_> = (0..100)
        .map(|i| event(&format!("redelivered-{i}"), "2026-03-15T08:00:00Z"))
        .collect();
    let payload = batch(&events, 1);

    let (_, first) = writer::process(&store, payload.clone()).await.unwrap();
    let (response, second) = writer::process(&store, payload).await.unwrap();

    assert_eq!((first.stored, first.duplicates), (100, 0));
    assert_eq!((second.stored, second.duplicates), (0, 100));
    assert!(failures(&response).is_empty());
    assert_eq!(count(&db, "SELECT count(*) FROM audit_events").await, 100);
}

#[tokio::test]
async fn writer_stores_a_client_retry_of_the_same_id_once_even_with_a_new_default_time() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let first = event("client-key-1", "2026-03-15T08:00:00Z");
    let mut retry = first.clone();
    retry.occurred_at = Timestamp::parse("2026-03-15T08:00:07Z").unwrap();
    retry.received_at = retry.occurred_at;

    let (_, initial) = writer::process(&store, batch(&[first], 1)).await.unwrap();
    assert_eq!(initial.stored, 1, "{initial:?}");
    let (_, summary) = writer::process(&store, batch(&[retry], 2)).await.unwrap();

    assert_eq!(summary.duplicates, 1, "{summary:?}");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE id = 'client-key-1'"
        )
        .await,
        1
    );
    let kept: bool = db
        .client()
        .await
        .query_one(
            "SELECT occurred_at = '2026-03-15T08:00:00Z' FROM audit_events",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(kept, "the first delivery wins");
}

#[tokio::test]
async fn writer_keeps_one_copy_when_a_batch_repeats_an_id() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let a = event("dup-in-batch", "2026-03-15T08:00:00Z");
    let mut b = a.clone();
    b.occurred_at = Timestamp::parse("2026-04-15T08:00:00Z").unwrap();
    b.received_at = b.occurred_at;

    writer::process(&store, batch(&[a.clone(), a, b], 1))
        .await
        .unwrap();

    assert_eq!(count(&db, "SELECT count(*) FROM audit_events").await, 1);
}

#[tokio::test]
async fn a_large_batch_is_stored_whole_in_two_parts_with_one_copy_of_a_repeated_id() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let mut events: Vec<_> = (0..1000)
        .map(|i| {
            let month = if i % 2 == 0 { "03" } else { "04" };
            event(&format!("big-{i}"), &format!("2026-{month}-15T08:00:00Z"))
        })
        .collect();
    // A second copy of big-3 in the part decoded while the first part is written.
    let mut copy = events[3].clone();
    copy.action = "something_else".parse().unwrap();
    events[900] = copy;

    let (response, summary) = writer::process(&store, batch(&events, 1)).await.unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!(
        (summary.stored, summary.duplicates, summary.conflicts),
        (999, 0, 1),
        "the second copy differs: a conflict"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM audit_events").await, 999);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM event_conflicts WHERE event_id = 'big-3' \
             AND convert_from(conflicting, 'UTF8')::jsonb #>> '{event,action}' = 'something_else'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE id = 'big-3' AND action = 'billing_update'"
        )
        .await,
        1,
        "the first copy wins"
    );
}

#[tokio::test]
async fn a_large_batch_with_a_refused_event_keeps_nothing_of_its_transaction_and_then_isolates_it()
{
    let db = TestDatabase::create().await;
    // A rule of this test's own that the database enforces, so one event is refused.
    db.client()
        .await
        .batch_execute(
            "ALTER TABLE audit_events ADD CONSTRAINT test_no_poison CHECK (resource_id <> 'poison')",
        )
        .await
        .unwrap();
    let store = store(&db);
    let mut events: Vec<_> = (0..600)
        .map(|i| event(&format!("iso-{i}"), "2026-05-15T08:00:00Z"))
        .collect();
    events[450].resource_id = "poison".parse().unwrap();

    let (response, summary) = writer::process(&store, batch(&events, 1)).await.unwrap();

    assert!(
        failures(&response).is_empty(),
        "a refused event never blocks the shard"
    );
    assert_eq!((summary.stored, summary.quarantined), (599, 1));
    assert_eq!(count(&db, "SELECT count(*) FROM audit_events").await, 599);
    assert_eq!(
        log(&db, "default").await.len(),
        599,
        "the rolled-back transaction took its indexes with it: no gap"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM rejected_records WHERE reason LIKE 'refused by the database%'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn writer_creates_the_partition_for_a_backfilled_month() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let old = event("backfill-1", "2024-02-29T12:00:00Z");

    let (response, summary) = writer::process(&store, batch(&[old], 1)).await.unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!(summary.stored, 1);
    let bounds: String = db
        .client()
        .await
        .query_one(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c \
             WHERE c.relname = 'audit_events_2024_02'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        bounds,
        "FOR VALUES FROM ('2024-02-01 00:00:00+00') TO ('2024-03-01 00:00:00+00')"
    );
}

#[tokio::test]
async fn concurrent_writers_creating_the_same_month_both_succeed() {
    let db = TestDatabase::create().await;
    let (a, b) = (store(&db), store(&db));
    let first: Vec<_> = (0..20)
        .map(|i| event(&format!("a{i}"), "2023-07-10T00:00:00Z"))
        .collect();
    let second: Vec<_> = (0..20)
        .map(|i| event(&format!("b{i}"), "2023-07-20T00:00:00Z"))
        .collect();

    let (ra, rb) = tokio::join!(
        writer::process(&a, batch(&first, 1)),
        writer::process(&b, batch(&second, 100))
    );

    assert!(failures(&ra.unwrap().0).is_empty());
    assert!(failures(&rb.unwrap().0).is_empty());
    assert_eq!(
        count(&db, "SELECT count(*) FROM audit_events_2023_07").await,
        40
    );
}

#[tokio::test]
async fn writer_quarantines_a_poison_record_while_the_rest_of_the_batch_is_stored() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let payload = fixture("kinesis_batch_with_poison.json");

    let (response, summary) = writer::process(&store, payload.clone()).await.unwrap();
    writer::process(&store, payload).await.unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!((summary.stored, summary.quarantined), (2, 1));
    assert_eq!(count(&db, "SELECT count(*) FROM audit_events").await, 2);
    let row = db
        .client()
        .await
        .query_one(
            "SELECT source, record_key, reason, payload FROM rejected_records",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "arn:aws:kinesis:us-east-1:000000000000:stream/sentinel-events"
    );
    assert_eq!(
        row.get::<_, String>(1),
        "49590338271490256608559692538361571095921575989136588802"
    );
    assert!(row
        .get::<_, String>(2)
        .contains("not a JSON stream envelope"));
    assert_eq!(
        row.get::<_, Vec<u8>>(3),
        b"\xff\xfe this is not an audit event"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM rejected_records").await,
        1,
        "redelivery keeps one copy"
    );
}

#[tokio::test]
async fn writer_reports_failures_while_the_database_is_unreachable_and_stores_once_after_recovery()
{
    let db = TestDatabase::create().await;
    let proxy = CuttableProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let store = PgEventStore::new(pool(&proxy.url_for(&db.url), 1).unwrap());
    let warm = batch(&[event("warm", "2026-03-01T00:00:00Z")], 1);
    writer::process(&store, warm).await.unwrap();
    let events: Vec<_> = (0..10)
        .map(|i| event(&format!("outage-{i}"), "2026-03-02T00:00:00Z"))
        .collect();
    let payload = batch(&events, 10);

    proxy.cut().await;
    let (during, _) = writer::process(&store, payload.clone()).await.unwrap();
    proxy.restore();
    let (after, summary) = writer::process(&store, payload.clone()).await.unwrap();
    let (again, _) = writer::process(&store, payload).await.unwrap();

    assert_eq!(failures(&during), (10..20).map(seq).collect::<Vec<_>>());
    assert!(
        failures(&after).is_empty(),
        "the broken connection was replaced"
    );
    assert!(failures(&again).is_empty());
    assert_eq!(summary.stored, 10);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE id LIKE 'outage-%'"
        )
        .await,
        10
    );
}

#[tokio::test]
async fn both_write_methods_store_the_same_rows() {
    let db = TestDatabase::create().await;
    let copy = PgEventStore::with_method(pool(&db.url, 1).unwrap(), WriteMethod::CopyStaging);
    let unnest = PgEventStore::with_method(pool(&db.url, 1).unwrap(), WriteMethod::Unnest);
    let mut with_nulls = event("m-1", "2026-05-01T00:00:00Z");
    with_nulls.actor_type = None;
    let events = vec![with_nulls, event("m-2", "2026-05-02T00:00:00Z")];

    let (_, by_copy) = writer::process(&copy, batch(&events, 1)).await.unwrap();
    let (_, by_unnest) = writer::process(&unnest, batch(&events, 1)).await.unwrap();
    let mut renamed = events.clone();
    renamed
        .iter_mut()
        .for_each(|e| e.id = format!("u{}", e.id).parse().unwrap());
    writer::process(&unnest, batch(&renamed, 3)).await.unwrap();

    assert_eq!((by_copy.stored, by_unnest.duplicates), (2, 2));
    let same: i64 = count(
        &db,
        "SELECT count(*) FROM audit_events a JOIN audit_events b ON b.id = 'u' || a.id \
         WHERE a.occurred_at = b.occurred_at AND a.changes = b.changes AND a.metadata = b.metadata \
         AND a.actor_type IS NOT DISTINCT FROM b.actor_type AND a.received_at = b.received_at",
    )
    .await;
    assert_eq!(same, 2);
}

#[tokio::test]
async fn the_application_cannot_update_delete_or_truncate_events() {
    let db = TestDatabase::create().await;
    writer::process(&store(&db), fixture("kinesis_batch.json"))
        .await
        .unwrap();
    let client = db.client().await;

    for sql in [
        "UPDATE audit_events SET action = 'forged'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "TRUNCATE audit_events_2026_01",
        "UPDATE log_entries SET leaf_hash = sha256('forged')",
        "DELETE FROM log_entries",
        "TRUNCATE log_entries",
    ] {
        let error = client.batch_execute(sql).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only")
                || format!("{error:?}").contains("append-only"),
            "{sql}: {error:?}"
        );
    }
    client
        .batch_execute("SET ROLE sentinel_writer")
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_events SET action = 'forged'",
        "DELETE FROM audit_events",
        "UPDATE log_entries SET log_index = log_index + 1",
        "DELETE FROM log_entries",
    ] {
        let error = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(error.code().unwrap().code(), "42501", "{sql}");
    }
    client.batch_execute("RESET ROLE").await.unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE action = 'billing_update'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn the_writer_role_can_do_its_job_with_its_grants_alone() {
    let db = TestDatabase::create().await;
    let client = db.client().await;
    client
        .batch_execute("SET ROLE sentinel_writer")
        .await
        .unwrap();

    client
        .batch_execute(
            "SELECT sentinel_ensure_month_partition('2025-06-10T00:00:00Z'); \
             INSERT INTO event_ids (tenant_id, id, occurred_at) VALUES ('default', 'r1', '2025-06-10T00:00:00Z'); \
             INSERT INTO audit_events (id, tenant_id, occurred_at, received_at, actor_id, action, resource_type, resource_id) \
             VALUES ('r1', 'default', '2025-06-10T00:00:00Z', now(), 'a', 'b', 'c', 'd'); \
             INSERT INTO rejected_records (source, record_key, reason, payload) VALUES ('s', 'k', 'r', '\\x00')",
        )
        .await
        .unwrap();

    assert_eq!(
        count(&db, "SELECT count(*) FROM audit_events_2025_06").await,
        1
    );
}

#[tokio::test]
async fn migrating_twice_is_harmless() {
    let db = TestDatabase::create().await;

    let applied = sentinel_postgres::migrate(&db.url).await.unwrap();

    assert!(applied.is_empty());
}

#[tokio::test]
async fn the_same_client_id_in_two_tenants_is_two_events() {
    // Regression: idempotency keys were global, so tenant B's event was answered 202 and
    // silently dropped when tenant A had used its id within 24 hours.
    let db = TestDatabase::create().await;
    let store = store(&db);
    let a = event("order-42", "2026-03-15T08:00:00Z");
    let mut b = a.clone();
    b.tenant_id = "tenant-b".parse().unwrap();
    b.action = "refund".parse().unwrap();

    let (_, first) = writer::process(&store, batch(&[a], 1)).await.unwrap();
    let (_, second) = writer::process(&store, batch(&[b], 2)).await.unwrap();

    assert_eq!((first.stored, second.stored), (1, 1));
    assert_eq!(second.duplicates, 0);
    let rows = db
        .client()
        .await
        .query(
            "SELECT tenant_id, action FROM audit_events WHERE id = 'order-42' ORDER BY tenant_id",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        rows,
        [
            ("default".to_string(), "billing_update".to_string()),
            ("tenant-b".to_string(), "refund".to_string())
        ]
    );
}

#[tokio::test]
async fn a_client_retry_within_one_tenant_is_still_stored_once() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let first = event("order-43", "2026-03-15T08:00:00Z");
    let mut retry = first.clone();
    retry.occurred_at = Timestamp::parse("2026-03-15T08:00:09Z").unwrap();
    retry.received_at = retry.occurred_at;

    writer::process(&store, batch(&[first], 1)).await.unwrap();
    let (_, again) = writer::process(&store, batch(&[retry], 2)).await.unwrap();

    assert_eq!((again.stored, again.duplicates), (0, 1));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE id = 'order-43'"
        )
        .await,
        1
    );
}

/// A record as a hostile or buggy producer could put it on the stream: the canonical bytes of
/// `event` with one member replaced (serialized in the canonical member order).
fn tampered(
    event: &sentinel_domain::AuditEvent,
    member: &str,
    value: serde_json::Value,
) -> Vec<u8> {
    let text = String::from_utf8(event.encode()).unwrap();
    let canonical: serde_json::Value = serde_json::from_str(&text).unwrap();
    let old = serde_json::to_string(&canonical["event"][member]).unwrap();
    let new = serde_json::to_string(&value).unwrap();
    let needle = format!("\"{member}\":{old}");
    assert!(text.contains(&needle), "{needle} in {text}");
    text.replacen(&needle, &format!("\"{member}\":{new}"), 1)
        .into_bytes()
}

#[tokio::test]
async fn a_leap_second_at_the_end_of_a_month_is_quarantined_and_does_not_block_the_shard() {
    // Regression: 23:59:60 on the last day of a month was filed by PostgreSQL in the next
    // month, outside the partition the writer had prepared; the failure counted as "database
    // unavailable", and the record and every later one of its shard were retried forever.
    let db = TestDatabase::create().await;
    let store = store(&db);
    let leap = event("leap", "2026-01-31T23:59:59Z");
    let after = event("after-leap", "2026-01-31T23:59:59Z");
    let payload = json!({"Records": [
        record(&seq(1), &tampered(&leap, "occurred_at", json!("2026-01-31T23:59:60.000000Z"))),
        record(&seq(2), &after.encode()),
    ]});

    let (response, summary) = writer::process(&store, payload).await.unwrap();

    assert!(failures(&response).is_empty(), "nothing is left to retry");
    assert_eq!((summary.stored, summary.quarantined), (1, 1));
    let reason: String = db
        .client()
        .await
        .query_one("SELECT reason FROM rejected_records", &[])
        .await
        .unwrap()
        .get(0);
    assert!(reason.contains("leap second"), "{reason}");
}

#[tokio::test]
async fn records_that_break_the_ingest_contract_are_quarantined_not_stored() {
    // The writer applies exactly the ingest contract: a record put on the stream directly
    // with an event a year ahead, or larger than ingest allows, is never stored.
    let db = TestDatabase::create().await;
    let store = store(&db);
    let base = event("direct", "2026-03-15T08:00:00Z");
    let ahead = tampered(&base, "occurred_at", json!("2027-03-15T08:00:00.000000Z"));
    let huge = tampered(
        &base,
        "metadata",
        json!({"blob": "x".repeat(sentinel_domain::event::MAX_EVENT_BYTES)}),
    );
    let doubled = String::from_utf8(base.encode()).unwrap().replacen(
        "\"action\":",
        "\"action\":\"x\",\"action\":",
        1,
    );
    let payload = json!({"Records": [
        record(&seq(1), &ahead),
        record(&seq(2), &huge),
        record(&seq(3), doubled.as_bytes()),
    ]});

    let (response, summary) = writer::process(&store, payload).await.unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!((summary.stored, summary.quarantined), (0, 3));
    assert_eq!(count(&db, "SELECT count(*) FROM audit_events").await, 0);
    let reasons: Vec<String> = db
        .client()
        .await
        .query(
            "SELECT reason FROM rejected_records ORDER BY record_key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(reasons[0].contains("future"), "{reasons:?}");
    assert!(reasons[1].contains("bytes"), "{reasons:?}");
    assert!(reasons[2].contains("duplicate field"), "{reasons:?}");
}

#[tokio::test]
async fn a_row_with_no_partition_is_refused_by_the_database_never_called_unavailable() {
    // The class behind the leap-second defect: "no partition of relation found for row"
    // (23514) is about the data. After the store's one repair attempt it must be Refused,
    // so the batch is isolated and quarantined instead of retried forever.
    let db = TestDatabase::create().await;
    let client = db.client().await;

    let error = client
        .batch_execute(
            "INSERT INTO audit_events (id, tenant_id, occurred_at, received_at, actor_id, action, \
             resource_type, resource_id) VALUES ('x', 't', '2031-05-05T00:00:00Z', now(), 'a', 'b', 'c', 'd')",
        )
        .await
        .unwrap_err();

    assert_eq!(error.code().unwrap().code(), "23514", "{error}");
    assert!(!sentinel_postgres::classify(&error).is_retryable());
}

/// The conflicts kept, as (event id, the stored copy's action, the conflicting record).
async fn conflicts(db: &TestDatabase) -> Vec<(String, Option<String>, Vec<u8>)> {
    db.client()
        .await
        .query(
            "SELECT event_id, stored ->> 'action', conflicting FROM event_conflicts ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

#[tokio::test]
async fn a_repeated_id_with_other_content_is_kept_as_a_conflict_with_both_contents_and_counted() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let first = event("client-key-2", "2026-03-15T08:00:00Z");
    let mut other = first.clone();
    other.action = "billing_delete".parse().unwrap();
    other.received_at = Timestamp::parse("2026-03-15T09:00:00Z").unwrap();

    let (_, initial) = writer::process(&store, batch(&[first], 1)).await.unwrap();
    let (response, summary) = writer::process(&store, batch(&[other.clone()], 2))
        .await
        .unwrap();

    assert_eq!(initial.stored, 1);
    assert!(failures(&response).is_empty());
    assert_eq!(
        (summary.stored, summary.duplicates, summary.conflicts),
        (0, 0, 1)
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE action = 'billing_delete'"
        )
        .await,
        0,
        "the first copy stays the event"
    );
    assert_eq!(
        conflicts(&db).await,
        vec![(
            "client-key-2".to_string(),
            Some("billing_update".to_string()),
            other.encode()
        )],
        "both contents: the stored row, and the other copy byte for byte"
    );
}

#[tokio::test]
async fn a_redelivered_conflicting_record_is_kept_once() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let first = event("client-key-3", "2026-03-15T08:00:00Z");
    let mut other = first.clone();
    other.changes = sentinel_domain::fields::Changes::parse_stored(
        json!({"status": {"before": "pending", "after": "void"}})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap();
    writer::process(&store, batch(&[first], 1)).await.unwrap();

    let (_, once) = writer::process(&store, batch(&[other.clone()], 2))
        .await
        .unwrap();
    let (_, again) = writer::process(&store, batch(&[other], 2)).await.unwrap();

    assert_eq!(once.conflicts, 1);
    assert_eq!((again.conflicts, again.duplicates), (0, 1));
    assert_eq!(conflicts(&db).await.len(), 1);
}

#[tokio::test]
async fn copies_that_differ_only_in_their_default_times_are_duplicates_not_conflicts() {
    // A request retried with its Idempotency-Key: same ids, same fields, no occurred_at, so
    // each copy's occurred_at is its own time of receipt.
    let db = TestDatabase::create().await;
    let store = store(&db);
    let first = event("keyed-0", "2026-03-15T08:00:00Z");
    let mut retry = first.clone();
    retry.occurred_at = Timestamp::parse("2026-03-15T08:00:30.5Z").unwrap();
    retry.received_at = retry.occurred_at;
    let mut explicit = first.clone();
    explicit.occurred_at = Timestamp::parse("2026-03-15T07:00:00Z").unwrap();
    explicit.received_at = Timestamp::parse("2026-03-15T08:01:00Z").unwrap();

    writer::process(&store, batch(&[first], 1)).await.unwrap();
    let (_, retried) = writer::process(&store, batch(&[retry], 2)).await.unwrap();
    let (_, moved) = writer::process(&store, batch(&[explicit], 3))
        .await
        .unwrap();

    assert_eq!((retried.duplicates, retried.conflicts), (1, 0));
    assert_eq!(
        (moved.duplicates, moved.conflicts),
        (0, 1),
        "a client that names another occurred_at sent other content"
    );
}

#[tokio::test]
async fn the_same_changes_with_another_number_spelling_are_a_conflict() {
    // jsonb keeps 500 and 500.0 apart in its text; nothing is equal by approximation.
    let db = TestDatabase::create().await;
    let store = store(&db);
    let with = |amount: serde_json::Value| {
        let mut e = event("amount-1", "2026-03-15T08:00:00Z");
        e.changes = sentinel_domain::fields::Changes::parse_stored(
            json!({"amount": {"before": null, "after": amount}})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        e
    };

    writer::process(&store, batch(&[with(json!(500))], 1))
        .await
        .unwrap();
    let (_, same) = writer::process(&store, batch(&[with(json!(500))], 2))
        .await
        .unwrap();
    let (_, float) = writer::process(&store, batch(&[with(json!(500.0))], 3))
        .await
        .unwrap();

    assert_eq!((same.duplicates, same.conflicts), (1, 0));
    assert_eq!((float.duplicates, float.conflicts), (0, 1));
}

#[tokio::test]
async fn the_same_client_id_with_other_content_in_another_tenant_is_its_own_event() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let acme = event("shared-id", "2026-03-15T08:00:00Z");
    let mut globex = acme.clone();
    globex.tenant_id = "globex".parse().unwrap();
    globex.action = "something_else".parse().unwrap();

    let (_, summary) = writer::process(&store, batch(&[acme, globex], 1))
        .await
        .unwrap();

    assert_eq!((summary.stored, summary.conflicts), (2, 0));
    assert!(conflicts(&db).await.is_empty());
}

#[tokio::test]
async fn the_writer_stores_and_keeps_conflicts_as_a_login_of_the_writer_role() {
    let db = TestDatabase::create().await;
    // A login of this test's own in the writer role, as the function has one deployed.
    let login = format!("sentinel_writer_test_{}", uuid::Uuid::new_v4().simple());
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {login} LOGIN IN ROLE sentinel_writer"
        ))
        .await
        .unwrap();
    let url = db.url.replacen("://postgres@", &format!("://{login}@"), 1);
    assert_ne!(url, db.url, "the test database URL names the postgres user");
    let store = PgEventStore::new(pool(&url, 1).unwrap());
    let first = event("role-1", "2026-05-15T08:00:00Z");
    let mut other = first.clone();
    other.action = "billing_delete".parse().unwrap();

    let (response, summary) = writer::process(&store, batch(&[first, other], 1))
        .await
        .unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!((summary.stored, summary.conflicts), (1, 1), "{summary:?}");
    drop(store);
    assert_eq!(
        log(&db, "default").await.len(),
        1,
        "the writer role appends to the log"
    );
    assert_eq!(conflicts(&db).await.len(), 1);
    admin
        .batch_execute(&format!("DROP OWNED BY {login}; DROP ROLE {login}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_record_with_negative_zero_is_quarantined_because_postgresql_would_store_zero() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let base = event("neg-zero", "2026-03-15T08:00:00Z");
    let payload = json!({"Records": [
        record(&seq(1), &tampered(&base, "metadata", json!({"delta": -0.0}))),
    ]});

    let (response, summary) = writer::process(&store, payload).await.unwrap();

    assert!(failures(&response).is_empty());
    assert_eq!((summary.stored, summary.quarantined), (0, 1));
    let reason: String = db
        .client()
        .await
        .query_one("SELECT reason FROM rejected_records", &[])
        .await
        .unwrap()
        .get(0);
    assert!(reason.contains("negative zero"), "{reason}");
}

#[tokio::test]
async fn an_event_read_back_from_postgresql_encodes_to_the_bytes_it_was_stored_from() {
    // What is stored is what was sent: read back, every event re-encodes to its canonical
    // stream record byte for byte (the bytes the verifiable log will hash). jsonb reorders
    // keys, spells numbers as decimals and drops whitespace; none of that may show.
    let db = TestDatabase::create().await;
    let store = store(&db);
    let json_object = |value: serde_json::Value| value.as_object().unwrap().clone();
    let hostile = [
        json!({"big": 1e100, "tiny": 5e-324, "max": 1.7976931348623157e308, "tenth": 0.1,
               "u64": 18446744073709551615u64, "i64": -9223372036854775808i64, "neg": -1.5e-7,
               "zero": 0, "zero_f": 0.0, "one_f": 1.0, "third": 0.3333333333333333}),
        json!({"ключ": "значение", "😀": "emoji 😀", "a\"b": "quote \" and \\ backslash",
               "ctl": "\u{0001}\u{001f}\u{007f}", "rtl": "\u{202e}evil", "combining": "e\u{0301}",
               "": "empty key", "zz": [], "aa": {}, "nested": [[[1, [2, [3]]]], {"b": 1, "a": 2}]}),
        json!({"long_key_sorted_after_short": 1, "b": 2, "ab": 3, "é": 4, "e": 5, "Z": 6}),
    ];
    let mut events = Vec::new();
    for (i, value) in hostile.iter().enumerate() {
        let mut e = event(&format!("roundtrip-{i}"), "2026-03-15T08:00:00.000001Z");
        e.metadata = sentinel_domain::fields::Metadata::parse(json_object(value.clone())).unwrap();
        // A changed field needs a name; metadata keys may be empty.
        let mut fields = json_object(value.clone());
        fields.remove("");
        e.changes = sentinel_domain::fields::Changes::normalize(fields).unwrap();
        events.push(e);
    }
    let mut edges = event("roundtrip-edges", "1970-01-01T00:00:00Z");
    edges.actor_type = None;
    edges.received_at = Timestamp::parse("9999-12-31T23:59:59.999999Z").unwrap();
    events.push(edges);

    let (_, summary) = writer::process(&store, batch(&events, 1)).await.unwrap();
    assert_eq!(summary.stored, events.len() as u64, "{summary:?}");
    let reader = sentinel_postgres::reader::PgReader::new(pool(&db.url, 1).unwrap());

    for sent in &events {
        let read = reader
            .get(sent.tenant_id.as_str(), sent.id.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(read.encode()).unwrap(),
            String::from_utf8(sent.encode()).unwrap(),
            "{}",
            sent.id
        );
    }
}

#[tokio::test]
async fn each_leaf_in_the_log_is_the_hash_of_the_event_as_stored() {
    // The writer hashes the records it decoded rather than re-encoding the events: every
    // leaf must still be the canonical leaf of the event that PostgreSQL holds. A batch of
    // 300 (the two-part transaction) and one of 3 (one statement), with awkward content.
    let db = TestDatabase::create().await;
    let store = store(&db);
    let metadata = sentinel_domain::fields::Metadata::parse(
        json!({"ключ": "значение 😀", "a\"b": "quote \" and \\ backslash", "ctl": "\u{0001}\u{007f}",
               "big": 1e100, "tenth": 0.1, "u64": 18446744073709551615u64, "z": [], "a": {"y": 1, "b": 2}})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap();
    let events: Vec<_> = (0..303)
        .map(|i| {
            let mut e = event(&format!("leaf-{i}"), "2026-03-15T08:00:00.123456Z");
            if i % 3 == 0 {
                e.metadata = metadata.clone();
            }
            if i % 5 == 0 {
                e.tenant_id = "globex".parse().unwrap();
                e.actor_type = None;
            }
            e
        })
        .collect();
    for (part, first) in [(&events[..300], 1), (&events[300..], 1000)] {
        let (_, summary) = writer::process(&store, batch(part, first)).await.unwrap();
        assert_eq!(summary.stored, part.len() as u64, "{summary:?}");
    }

    let reader = sentinel_postgres::reader::PgReader::new(pool(&db.url, 1).unwrap());
    let mut logged = 0;
    for tenant in ["default", "globex"] {
        for (_, id, leaf) in log(&db, tenant).await {
            let read = reader.get(tenant, &id).await.unwrap().unwrap();
            assert_eq!(leaf, read.leaf_hash().as_bytes().to_vec(), "{tenant}/{id}");
            logged += 1;
        }
    }
    assert_eq!(logged, events.len());
}

#[tokio::test]
async fn of_two_copies_with_the_same_time_in_one_statement_the_first_is_stored_and_logged() {
    // Same (tenant, id, occurred_at), other content, in one insert: the first copy in
    // stream order is the event, and its leaf is the log's; the second is a conflict.
    let db = TestDatabase::create().await;
    let store = store(&db);
    let reader = sentinel_postgres::reader::PgReader::new(pool(&db.url, 1).unwrap());
    for n in 0..5 {
        let filler: Vec<_> = (0..20 * n)
            .map(|i| event(&format!("filler-{n}-{i}"), "2026-03-15T08:00:00Z"))
            .collect();
        let first = event(&format!("twice-{n}"), "2026-03-15T08:00:00Z");
        let mut second = first.clone();
        second.action = "something_else".parse().unwrap();
        let mut events = filler.clone();
        events.push(first.clone());
        events.extend(filler.iter().map(|e| {
            let mut e = e.clone();
            e.id = format!("{}-b", e.id).parse().unwrap();
            e
        }));
        events.push(second);
        let (_, summary) = writer::process(&store, batch(&events, 1 + 1000 * n as u64))
            .await
            .unwrap();
        assert_eq!(summary.conflicts, 1, "{summary:?}");
        let read = reader
            .get("default", first.id.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read, first, "the first copy wins");
    }
    for (_, id, leaf) in log(&db, "default").await {
        let read = reader.get("default", &id).await.unwrap().unwrap();
        assert_eq!(leaf, read.leaf_hash().as_bytes().to_vec(), "{id}");
    }
}

#[tokio::test]
async fn the_batch_mark_exists_only_inside_the_transaction_that_sets_it() {
    // The writer sends BEGIN and its first insert together; the insert reads a mark that
    // only the batch's transaction has, so that it fails rather than commit on its own
    // should the BEGIN fail. What it relies on: reading the mark fails before it is set and
    // after the transaction that set it, in the same session.
    let db = TestDatabase::create().await;
    let client = db.client().await;
    let read = "SELECT current_setting('sentinel.batch')::boolean";
    assert!(client.query_one(read, &[]).await.is_err(), "never set");
    client
        .batch_execute("BEGIN; SELECT set_config('sentinel.batch', 'on', true)")
        .await
        .unwrap();
    assert!(client.query_one(read, &[]).await.unwrap().get::<_, bool>(0));
    client.batch_execute("COMMIT").await.unwrap();
    assert!(
        client.query_one(read, &[]).await.is_err(),
        "after the commit"
    );
    client.batch_execute("BEGIN").await.unwrap();
    assert!(
        client.query_one(read, &[]).await.is_err(),
        "in another transaction"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
}

/// A tenant's log: (index, event id, leaf hash) in index order, and its recorded size.
async fn log(db: &TestDatabase, tenant: &str) -> Vec<(i64, String, Vec<u8>)> {
    let client = db.client().await;
    let entries: Vec<(i64, String, Vec<u8>)> = client
        .query(
            "SELECT log_index, event_id, leaf_hash FROM log_entries WHERE tenant_id = $1 \
             ORDER BY log_index",
            &[&tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let size: Option<i64> = client
        .query_opt(
            "SELECT size FROM tenant_logs WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .map(|r| r.get(0));
    assert_eq!(
        size.unwrap_or(0),
        entries.len() as i64,
        "the size is the entries' count"
    );
    for (position, (index, _, _)) in entries.iter().enumerate() {
        assert_eq!(*index, position as i64, "indexes run from 0 without a gap");
    }
    entries
}

#[tokio::test]
async fn each_stored_event_is_appended_to_its_tenants_log_in_stream_order_once() {
    let db = TestDatabase::create().await;
    let store = store(&db);
    let a1 = event("a1", "2026-03-15T08:00:00Z");
    let mut b1 = event("b1", "2026-03-15T08:00:00Z");
    b1.tenant_id = "globex".parse().unwrap();
    let a2 = event("a2", "2026-03-01T08:00:00Z");
    let mut a1_changed = a1.clone();
    a1_changed.action = "other".parse().unwrap();
    // Backfilled: it happened long before, and still goes at the end of the log.
    let backfilled = event("a-old", "2024-01-01T00:00:00Z");

    writer::process(
        &store,
        batch(&[a1.clone(), b1.clone(), a2.clone(), a1.clone()], 1),
    )
    .await
    .unwrap();
    writer::process(&store, batch(&[a1.clone(), a1_changed], 1))
        .await
        .unwrap();
    writer::process(&store, batch(std::slice::from_ref(&backfilled), 9))
        .await
        .unwrap();

    let default_log = log(&db, "default").await;
    let globex_log = log(&db, "globex").await;
    let ids: Vec<&str> = default_log.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["a1", "a2", "a-old"],
        "arrival order; duplicates and conflicts not logged"
    );
    assert_eq!(default_log[0].2, a1.leaf_hash().as_bytes().to_vec());
    assert_eq!(default_log[2].2, backfilled.leaf_hash().as_bytes().to_vec());
    assert_eq!(
        globex_log,
        vec![(0, "b1".to_string(), b1.leaf_hash().as_bytes().to_vec())]
    );
}

#[tokio::test]
async fn two_writers_appending_to_the_same_tenants_at_once_leave_one_gapless_log_each() {
    // Two shards' writers, each batch holding both tenants in opposite orders: the locks are
    // taken in one order, so neither deadlocks nor hands out an index twice.
    let db = TestDatabase::create().await;
    let mut tasks = Vec::new();
    for writer_number in 0..2 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let store = PgEventStore::new(pool(&url, 1).unwrap());
            // Batches of 250: the two-part transaction of a large batch.
            for round in 0..4 {
                let mut events: Vec<_> = (0..250)
                    .map(|i| {
                        let mut e = event(
                            &format!("w{writer_number}-r{round}-{i}"),
                            "2026-06-15T08:00:00Z",
                        );
                        if i % 2 == 1 {
                            e.tenant_id = "globex".parse().unwrap();
                        }
                        e
                    })
                    .collect();
                if writer_number == 1 {
                    events.reverse();
                }
                let (response, summary) = writer::process(&store, batch(&events, round * 1000))
                    .await
                    .unwrap();
                assert!(failures(&response).is_empty(), "{summary:?}");
                assert_eq!(summary.stored, 250);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let default_log = log(&db, "default").await;
    let globex_log = log(&db, "globex").await;
    assert_eq!((default_log.len(), globex_log.len()), (1000, 1000));
    let logged: std::collections::HashSet<String> = default_log
        .iter()
        .chain(&globex_log)
        .map(|(_, id, _)| id.clone())
        .collect();
    assert_eq!(logged.len(), 2000, "every event once");
    assert_eq!(count(&db, "SELECT count(*) FROM audit_events").await, 2000);
}
