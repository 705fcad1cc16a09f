//! HTTP POST → cargo lambda (function URL) → ingest → LocalStack Kinesis → runner → writer →
//! PostgreSQL, with every part real and named for this test alone.

use std::time::{Duration, Instant};

use sentinel_domain::checkpoint::{open_checkpoint, VerifierKey};
use sentinel_domain::log;
use sentinel_domain::merkle::{self, Hash};
use sentinel_e2e::LambdaEmulator;
use sentinel_esm::{EsmConfig, EsmHandle};
use sentinel_lambda::identity::Scope;
use sentinel_testing::auth::TestIssuer;
use sentinel_testing::{kinesis_client, TestDatabase, TestStream};
use serde_json::{json, Value};

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// An HTTP client that sends `authorization` with every request.
fn http_client(authorization: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        authorization.parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

async fn wait_for(db: &TestDatabase, sql: &str, want: i64, within: Duration) -> i64 {
    let client = db.client().await;
    let deadline = Instant::now() + within;
    loop {
        let n: i64 = client.query_one(sql, &[]).await.unwrap().get(0);
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn events_posted_over_http_land_in_postgresql_exactly_once() {
    let db = TestDatabase::create().await;
    let stream = TestStream::create(kinesis_client(None).await, 2).await;
    let issuer = TestIssuer::new();
    let jwks = issuer.jwks_file();
    let auth_env = jwks.env();
    let with_auth = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        auth_env
            .iter()
            .cloned()
            .chain(extra.iter().cloned())
            .collect()
    };
    let mut lambda = LambdaEmulator::start().await;
    let ingest_env = with_auth(&[("STREAM_NAME", stream.name.clone())]);
    let query_env = with_auth(&[
        ("STREAM_NAME", stream.name.clone()),
        ("DATABASE_URL", db.url.clone()),
    ]);
    lambda.attach("ingest", &pairs(&ingest_env));
    lambda.attach("writer", &[("DATABASE_URL", &db.url)]);
    lambda.attach("query", &pairs(&query_env));
    // The checkpointer, with a KMS key and an Object Lock bucket of this test's own.
    sentinel_testing::localstack_env();
    let aws = sentinel_aws::config().await;
    let key_alias = format!("alias/{}", sentinel_testing::unique_name("sentinel-e2e"));
    let key_id = sentinel_aws::kms::ensure_signing_key(&aws, &key_alias)
        .await
        .unwrap();
    let s3 = sentinel_aws::s3::client(&aws);
    let checkpoint_bucket = sentinel_testing::unique_name("sentinel-e2e-checkpoints");
    s3.create_bucket()
        .bucket(&checkpoint_bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    lambda.attach(
        "checkpointer",
        &[
            ("DATABASE_URL", &db.url),
            ("CHECKPOINT_BUCKET", &checkpoint_bucket),
            ("SIGNING_KEY_ID", &key_alias),
            ("STACK_NAME", "e2e"),
        ],
    );
    let checkpoints = std::env::temp_dir().join(format!("sentinel-e2e-{}", stream.name));
    let mut config = EsmConfig::new(&stream.name);
    config.lambda_invoke_url = lambda.url();
    config.checkpoint_dir = checkpoints.clone();
    config.max_batching_window = Duration::from_millis(100);
    let runner = EsmHandle::spawn(config, stream.client.clone());
    let http = http_client(&issuer.bearer("default", &[Scope::EventsWrite, Scope::EventsRead]));
    let ingest = format!("{}/lambda-url/ingest/events", lambda.url());
    let event = json!({
        "id": "e2e-order-1",
        "occurred_at": "2026-01-31T23:59:59.999999Z",
        "actor_id": "user_123", "action": "billing_update",
        "resource_type": "invoice", "resource_id": "inv_999",
        "changes": {"status": {"before": "pending", "after": "paid"}, "amount": 500},
        "metadata": {"ip": "192.168.1.50"}
    });

    let first = http.post(&ingest).json(&event).send().await.unwrap();
    let again = http.post(&ingest).json(&event).send().await.unwrap();
    let malformed = http
        .post(&ingest)
        .header("content-type", "application/json")
        .body("{\"actor_id\":")
        .send()
        .await
        .unwrap();
    let mut bad = event.clone();
    bad["id"] = json!("e2e-never-stored");
    bad.as_object_mut().unwrap().remove("action");
    let mixed = http.post(&ingest).json(&json!({"events": [json!({"id": "e2e-never-stored-2", "actor_id": "a", "action": "b", "resource_type": "invoice", "resource_id": "inv_999"}), bad]})).send().await.unwrap();
    let batch: Vec<Value> = (0..200)
        .map(|i| json!({"actor_id": format!("user_{}", i % 7), "action": "login", "resource_type": "session", "resource_id": format!("s{i}")}))
        .collect();
    let bulk = http
        .post(&ingest)
        .json(&json!({ "events": batch }))
        .send()
        .await
        .unwrap();
    let mut marker = event.clone();
    marker["id"] = json!("e2e-marker");
    let last = http.post(&ingest).json(&marker).send().await.unwrap();

    assert_eq!(first.status(), 202);
    assert_eq!(
        first.json::<Value>().await.unwrap(),
        json!({"ids": ["e2e-order-1"]})
    );
    assert_eq!(again.status(), 202);
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["error"]["code"],
        "malformed_json"
    );
    assert_eq!(mixed.status(), 400);
    assert_eq!(
        mixed.json::<Value>().await.unwrap()["error"]["fields"]["events[1].action"],
        "is required"
    );
    assert_eq!(bulk.status(), 202);
    assert_eq!(last.status(), 202);
    // The marker follows the duplicate on the same resource, hence the same shard, in order.
    let marker_rows = wait_for(
        &db,
        "SELECT count(*) FROM audit_events WHERE id = 'e2e-marker'",
        1,
        Duration::from_secs(60),
    )
    .await;
    let bulk_rows = wait_for(
        &db,
        "SELECT count(*) FROM audit_events WHERE resource_type = 'session'",
        200,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(marker_rows, 1, "the marker never arrived");
    assert_eq!(bulk_rows, 200);
    let client = db.client().await;
    let row = client
        .query_one("SELECT count(*), min(tableoid::regclass::text) FROM audit_events WHERE id = 'e2e-order-1' GROUP BY id", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        1,
        "the same id posted twice is one row"
    );
    assert_eq!(row.get::<_, String>(1), "audit_events_2026_01");
    let never: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE id LIKE 'e2e-never-stored%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(never, 0, "nothing of a refused batch is stored");
    let rejected: i64 = client
        .query_one("SELECT count(*) FROM rejected_records", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rejected, 0);

    // A request retried with its Idempotency-Key gets the same ids and is stored once; the
    // same key with one event changed keeps that copy as a conflict. One resource, so one
    // shard, in order: once the conflict is kept, the retry before it has been written.
    let keyed: Vec<Value> = (0..3)
        .map(|i| json!({"actor_id": "user_k", "action": format!("step_{i}"), "resource_type": "invoice", "resource_id": "inv_keyed"}))
        .collect();
    let send_keyed = |events: Vec<Value>| {
        http.post(&ingest)
            .header("idempotency-key", "e2e-request-7")
            .json(&json!({ "events": events }))
            .send()
    };
    let keyed_first: Value = send_keyed(keyed.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keyed_retry: Value = send_keyed(keyed.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut changed = keyed.clone();
    changed[1]["action"] = json!("step_1_changed");
    let keyed_changed = send_keyed(changed).await.unwrap();
    assert_eq!(keyed_first["ids"].as_array().unwrap().len(), 3);
    assert_eq!(keyed_first, keyed_retry, "the retry lists the same ids");
    assert_eq!(keyed_changed.status(), 202);
    let kept = wait_for(
        &db,
        "SELECT count(*) FROM event_conflicts",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(kept, 1);
    let conflict = client
        .query_one(
            "SELECT event_id, stored ->> 'action', \
             convert_from(conflicting, 'UTF8')::jsonb #>> '{event,action}' FROM event_conflicts",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(conflict.get::<_, String>(0), keyed_first["ids"][1]);
    assert_eq!(conflict.get::<_, String>(1), "step_1");
    assert_eq!(conflict.get::<_, String>(2), "step_1_changed");
    let keyed_rows: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE resource_id = 'inv_keyed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        keyed_rows, 3,
        "each event of the retried request stored once"
    );

    // The query API finds the event through every matching filter, and not otherwise.
    let query = format!("{}/lambda-url/query", lambda.url());
    let ids = |body: Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    for filter in [
        "actor_id=user_123",
        "action=billing_update",
        "resource_type=invoice&resource_id=inv_999",
        "changed_field=status&changed_to=paid",
        "from=2026-01-31T00:00:00Z&to=2026-02-01T00:00:00Z",
    ] {
        let body: Value = http
            .get(format!("{query}/events?{filter}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(ids(body).contains(&"e2e-order-1".to_string()), "{filter}");
    }
    for filter in [
        "actor_id=user_9",
        "changed_field=status&changed_to=failed",
        "to=2026-01-31T23:59:59.999999Z",
    ] {
        let body: Value = http
            .get(format!("{query}/events?{filter}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(!ids(body).contains(&"e2e-order-1".to_string()), "{filter}");
    }
    let state: Value = http
        .get(format!(
            "{query}/resources/invoice/inv_999/state?at=2026-02-01T00:00:00Z"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["fields"]["status"]["value"], "paid");
    assert_eq!(state["fields"]["status"]["event_id"], "e2e-order-1");
    let bad_sort = http
        .get(format!("{query}/events?sort=time"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_sort.status(), 400);
    assert!(bad_sort.json::<Value>().await.unwrap()["error"]["fields"]["sort"].is_string());

    // Without a token nothing is read or written; another tenant's token sees nothing.
    let anonymous = reqwest::Client::new();
    let unauthenticated = anonymous
        .get(format!("{query}/events"))
        .send()
        .await
        .unwrap();
    let unauthenticated_post = anonymous.post(&ingest).json(&event).send().await.unwrap();
    let other = http_client(&issuer.bearer("other", &[Scope::EventsRead]));
    let foreign = other
        .get(format!("{query}/events/e2e-order-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(unauthenticated_post.status(), 401);
    assert_eq!(foreign.status(), 404);
    // Every answered read (5 + 3 lists, a state, and the foreign miss) left an access event,
    // through the stream and the writer, in the reader's own tenant.
    let access_events = wait_for(
        &db,
        "SELECT count(*) FROM audit_events WHERE action = 'sentinel.events.read'",
        10,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(access_events, 10);
    let in_other: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'sentinel.events.read' AND tenant_id = 'other'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        in_other, 1,
        "the foreign miss is logged in the reader's tenant"
    );

    // The verifiable log from outside: the scheduled checkpointer signs the tenant's tree in
    // KMS, and the proof of an event posted over HTTP verifies with the public key alone.
    let scheduled = reqwest::Client::new()
        .post(format!(
            "{}/2015-03-31/functions/checkpointer/invocations",
            lambda.url()
        ))
        .body(include_str!("../../../events/scheduled.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(scheduled.status(), 200);
    let summary: Value = scheduled.json().await.unwrap();
    assert!(summary["signed"].as_u64().unwrap() >= 1, "{summary}");
    assert_eq!(summary["failed"], json!([]), "{summary}");
    let proof = http
        .get(format!("{query}/events/e2e-order-1/proof"))
        .send()
        .await
        .unwrap();
    assert_eq!(proof.status(), 200);
    let proof: Value = proof.json().await.unwrap();
    let spki = sentinel_aws::kms::KmsSigner::new(&aws, &key_alias)
        .public_key()
        .await
        .unwrap();
    let public_key = VerifierKey::from_spki_der(log::key_name("e2e").unwrap(), &spki).unwrap();
    let origin = log::origin("e2e", &"default".parse().unwrap()).unwrap();
    let checkpoint = open_checkpoint(
        proof["checkpoint"]["checkpoint"]
            .as_str()
            .unwrap()
            .as_bytes(),
        &origin,
        &[public_key],
    )
    .unwrap();
    let record = proof["canonical_record"].as_str().unwrap();
    assert!(record.contains("\"id\":\"e2e-order-1\""), "{record}");
    let path: Vec<Hash> = proof["inclusion_proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::parse_base64(h.as_str().unwrap()).unwrap())
        .collect();
    merkle::verify_inclusion(
        proof["log_index"].as_u64().unwrap(),
        checkpoint.size(),
        &Hash::leaf(record.as_bytes()),
        &path,
        checkpoint.root(),
    )
    .unwrap();
    let latest: Value = http
        .get(format!("{query}/checkpoint"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest["tree_size"], json!(checkpoint.size()));

    runner.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(checkpoints);
    let kms = aws_sdk_kms::Client::new(&aws);
    kms.delete_alias()
        .alias_name(&key_alias)
        .send()
        .await
        .unwrap();
    kms.schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let listed = s3
        .list_object_versions()
        .bucket(&checkpoint_bucket)
        .send()
        .await
        .unwrap();
    for version in listed.versions() {
        s3.delete_object()
            .bucket(&checkpoint_bucket)
            .set_key(version.key().map(str::to_string))
            .set_version_id(version.version_id().map(str::to_string))
            .send()
            .await
            .unwrap();
    }
    s3.delete_bucket()
        .bucket(&checkpoint_bucket)
        .send()
        .await
        .unwrap();
}
