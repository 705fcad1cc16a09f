//! The main query shapes use the indexes and touch only the partitions in their range.
//! Each test reads PostgreSQL's EXPLAIN of the statement the reader really runs, over
//! enough realistic, analyzed data that the planner's choices mean something.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use sentinel_domain::event::AuditEvent;
use sentinel_domain::fields::TenantId;
use sentinel_domain::query::EventQuery;
use sentinel_domain::store::EventStore;
use sentinel_postgres::reader::{count_statement, list_statement, Statement};
use sentinel_postgres::{pool, writer::PgEventStore};
use sentinel_testing::TestDatabase;
use serde_json::{json, Value};

/// 60,000 events over January to April 2026 in 20 tenants: 3,000 actors, 30,000 resources,
/// 8 actions, and "status → failed" in about 2% of events.
async fn seeded() -> TestDatabase {
    {
        let db = TestDatabase::create().await;
        let store = PgEventStore::new(pool(&db.url, 1).unwrap());
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let actions = [
            "billing_update",
            "invoice_create",
            "user_login",
            "role_grant",
            "settings_change",
            "api_key_rotate",
            "payment_refund",
            "record_export",
        ];
        let events: Vec<AuditEvent> = (0..60_000u64)
            .map(|i| {
                let h = i.wrapping_mul(2_654_435_761) % 1_000_003;
                let at = start + Duration::seconds((i as i64) * 172);
                let status = if h % 50 == 0 { "failed" } else { ["paid", "pending", "void"][(h % 3) as usize] };
                serde_json::from_value::<AuditEvent>(json!({
                    "id": format!("p-{i:06}"),
                    "tenant_id": format!("tenant-{}", h % 20),
                    "occurred_at": at,
                    "received_at": at,
                    "actor_id": format!("user_{}", h % 3000),
                    "actor_type": "user",
                    "action": actions[(h % 8) as usize],
                    "resource_type": "invoice",
                    "resource_id": format!("inv_{}", h % 30_000),
                    "changes": {"status": {"before": "pending", "after": status}, "amount": {"before": 1, "after": h % 1000}},
                    "metadata": {"ip": "10.0.0.1"},
                }))
                .unwrap()
            })
            .collect();
        for chunk in events.chunks(5_000) {
            store.store(chunk).await.unwrap();
        }
        db.client()
            .await
            .batch_execute("VACUUM ANALYZE audit_events")
            .await
            .unwrap();
        db
    }
}

struct Plan {
    nodes: Vec<(String, Option<String>, Option<String>)>,
}

impl Plan {
    fn walk(node: &Value, out: &mut Vec<(String, Option<String>, Option<String>)>) {
        out.push((
            node["Node Type"].as_str().unwrap_or_default().to_string(),
            node["Relation Name"].as_str().map(str::to_string),
            node["Index Name"].as_str().map(str::to_string),
        ));
        for child in node["Plans"].as_array().into_iter().flatten() {
            Self::walk(child, out);
        }
    }

    fn relations(&self) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter_map(|(_, r, _)| r.clone())
            .collect()
    }

    fn indexes(&self) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter_map(|(_, _, i)| i.clone())
            .collect()
    }

    fn assert_no_seq_scan(&self, shape: &str) {
        let seq: Vec<_> = self
            .nodes
            .iter()
            .filter(|(t, _, _)| t == "Seq Scan")
            .collect();
        assert!(
            seq.is_empty(),
            "{shape}: sequential scan in {:?}",
            self.nodes
        );
    }

    fn assert_only_partitions(&self, shape: &str, allowed: &[&str]) {
        for relation in self.relations() {
            assert!(
                allowed.contains(&relation.as_str()),
                "{shape}: scans {relation}, outside {allowed:?}"
            );
        }
    }
}

async fn explain(db: &TestDatabase, statement: &Statement) -> Plan {
    explain_as(db, None, "default", statement).await
}

/// The plan as `role` (the table owner when `None`) would get it, with the transaction's
/// tenant named as the reader names it.
async fn explain_as(
    db: &TestDatabase,
    role: Option<&str>,
    tenant: &str,
    statement: &Statement,
) -> Plan {
    let mut client = db.client().await;
    let transaction = client.transaction().await.unwrap();
    if let Some(role) = role {
        transaction
            .batch_execute(&format!("SET LOCAL ROLE {role}"))
            .await
            .unwrap();
    }
    transaction
        .execute(
            "SELECT set_config('sentinel.tenant_id', $1, true)",
            &[&tenant],
        )
        .await
        .unwrap();
    let row = transaction
        .query_one(
            &format!("EXPLAIN (FORMAT JSON) {}", statement.sql),
            &statement.refs(),
        )
        .await
        .unwrap();
    transaction.rollback().await.unwrap();
    let plan: Value = row.get(0);
    let mut nodes = Vec::new();
    Plan::walk(&plan[0]["Plan"], &mut nodes);
    Plan { nodes }
}

async fn list_plan(db: &TestDatabase, query: &str) -> Plan {
    explain(
        db,
        &list_statement(&EventQuery::parse(Some(query), &TenantId::default_tenant()).unwrap()),
    )
    .await
}

async fn one_actors_last_30_days_uses_the_actor_index_in_range_only(db: &TestDatabase) {
    let plan = list_plan(
        db,
        "tenant_id=tenant-3&actor_id=user_123&from=2026-03-10T00:00:00Z&to=2026-04-09T00:00:00Z",
    )
    .await;

    plan.assert_no_seq_scan("actor, 30 days");
    plan.assert_only_partitions(
        "actor, 30 days",
        &["audit_events_2026_03", "audit_events_2026_04"],
    );
    assert!(
        plan.indexes().iter().all(|i| i.contains("actor")),
        "{:?}",
        plan.nodes
    );
}

async fn a_resources_history_uses_the_resource_index(db: &TestDatabase) {
    let query = EventQuery::history(
        "invoice",
        "inv_999",
        Some("tenant_id=tenant-3"),
        &TenantId::default_tenant(),
    )
    .unwrap();
    let plan = explain(db, &list_statement(&query)).await;

    plan.assert_no_seq_scan("history");
    assert!(
        !plan.indexes().is_empty() && plan.indexes().iter().all(|i| i.contains("resource")),
        "{:?}",
        plan.nodes
    );
}

async fn who_changed_status_to_failed_over_90_days_stays_in_range_without_seq_scans(
    db: &TestDatabase,
) {
    let plan = list_plan(db, "tenant_id=tenant-3&changed_field=status&changed_to=failed&from=2026-02-01T00:00:00Z&to=2026-05-01T00:00:00Z").await;

    plan.assert_no_seq_scan("changed_to over 90 days");
    plan.assert_only_partitions(
        "changed_to over 90 days",
        &[
            "audit_events_2026_02",
            "audit_events_2026_03",
            "audit_events_2026_04",
        ],
    );
}

async fn who_changed_status_to_a_rare_value_uses_the_gin_index_as_the_reader_role(
    db: &TestDatabase,
) {
    // Regression: under the row-level security policy, `changes @>` (not LEAKPROOF) could
    // not be an index condition, so the reader role walked every event in range.
    let query = EventQuery::parse(
        Some("changed_field=status&changed_to=chargeback&from=2026-02-01T00:00:00Z&to=2026-05-01T00:00:00Z"),
        &TenantId::parse("tenant-4").unwrap(),
    )
    .unwrap();

    let plan = explain_as(
        db,
        Some("sentinel_reader"),
        "tenant-4",
        &list_statement(&query),
    )
    .await;

    assert!(
        plan.indexes().iter().any(|name| name.contains("changes")),
        "the GIN index on changes: {:?}",
        plan.nodes
    );
    plan.assert_no_seq_scan("a rare changed_to as the reader role");
}

async fn a_deep_keyset_page_seeks_with_the_index(db: &TestDatabase) {
    let cursor = sentinel_domain::query::Cursor::after(
        sentinel_domain::fields::Timestamp::new(
            Utc.with_ymd_and_hms(2026, 2, 15, 0, 0, 0).unwrap(),
        )
        .unwrap(),
        "p-020000",
        sentinel_domain::query::Sort::Newest,
    );
    let plan = list_plan(
        db,
        &format!(
            "tenant_id=tenant-3&action=role_grant&cursor={}",
            cursor.encode()
        ),
    )
    .await;

    plan.assert_no_seq_scan("keyset page");
    assert!(
        plan.indexes().iter().any(|i| i.contains("action")),
        "{:?}",
        plan.nodes
    );
}

async fn a_time_bounded_list_touches_only_its_month(db: &TestDatabase) {
    let plan = list_plan(
        db,
        "tenant_id=tenant-3&from=2026-02-03T00:00:00Z&to=2026-02-04T00:00:00Z",
    )
    .await;

    plan.assert_no_seq_scan("one day");
    plan.assert_only_partitions("one day", &["audit_events_2026_02"]);
}

async fn a_bounded_count_stays_in_range_without_seq_scans(db: &TestDatabase) {
    let query = EventQuery::parse(Some("tenant_id=tenant-3&actor_id=user_7&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&page=1"), &TenantId::default_tenant()).unwrap();
    let plan = explain(db, &count_statement(&query)).await;

    plan.assert_no_seq_scan("count");
    plan.assert_only_partitions("count", &["audit_events_2026_01"]);
}

async fn lookups_by_id_and_resource_state_use_indexes(db: &TestDatabase) {
    let client = db.client().await;
    let state_time: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    for (shape, sql) in [
        ("by id", "EXPLAIN (FORMAT JSON) SELECT * FROM audit_events WHERE id = 'p-000123' AND tenant_id = 'tenant-3' LIMIT 1".to_string()),
        ("state", format!(
            "EXPLAIN (FORMAT JSON) SELECT DISTINCT ON (c.key) c.key, c.value -> 'after', e.id, e.occurred_at \
             FROM audit_events e CROSS JOIN LATERAL jsonb_each(e.changes) c \
             WHERE e.tenant_id = 'tenant-3' AND e.resource_type = 'invoice' AND e.resource_id = 'inv_999' AND e.occurred_at <= '{}' \
             ORDER BY c.key, e.occurred_at DESC, e.id DESC", state_time.to_rfc3339())),
    ] {
        let plan: Value = client.query_one(&sql, &[]).await.unwrap().get(0);
        let mut nodes = Vec::new();
        Plan::walk(&plan[0]["Plan"], &mut nodes);
        let plan = Plan { nodes };
        plan.assert_no_seq_scan(shape);
        if shape == "state" {
            plan.assert_only_partitions(shape, &["audit_events_2026_01", "audit_events_2026_02", "audit_events_2026_03"]);
        }
    }
}

/// One analyzed fixture (seeding it takes seconds), every main shape checked against it.
#[tokio::test]
async fn the_main_query_shapes_use_indexes_and_prune_partitions() {
    let db = seeded().await;

    one_actors_last_30_days_uses_the_actor_index_in_range_only(&db).await;
    who_changed_status_to_failed_over_90_days_stays_in_range_without_seq_scans(&db).await;
    who_changed_status_to_a_rare_value_uses_the_gin_index_as_the_reader_role(&db).await;
    a_resources_history_uses_the_resource_index(&db).await;
    a_deep_keyset_page_seeks_with_the_index(&db).await;
    a_time_bounded_list_touches_only_its_month(&db).await;
    a_bounded_count_stays_in_range_without_seq_scans(&db).await;
    lookups_by_id_and_resource_state_use_indexes(&db).await;
}
