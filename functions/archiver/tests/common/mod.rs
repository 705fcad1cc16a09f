#![allow(dead_code)]

pub mod crash;

use std::collections::BTreeMap;

use std::sync::Arc;

use archiver::{ArchiveError, Archiver, ManifestSigning, Month, Settings, Tuning};
use chrono::{DateTime, Duration, Utc};
use sentinel_aws::s3::Bucket;
use sentinel_postgres::archive::PgArchiveLedger;
use sentinel_postgres::pool;
use sentinel_testing::{localstack_env, unique_name, TestDatabase};
use serde_json::{json, Value};

/// An S3 client for LocalStack (path-style, as `S3_FORCE_PATH_STYLE=true` gives the functions).
pub async fn s3() -> aws_sdk_s3::Client {
    localstack_env();
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    )
}

/// A bucket of one test's own on LocalStack; emptied (objects and unfinished uploads) and
/// deleted on drop, even when the test fails.
pub struct TestBucket {
    pub name: String,
    pub client: aws_sdk_s3::Client,
}

impl TestBucket {
    pub async fn create() -> Self {
        let client = s3().await;
        let name = unique_name("sentinel-archive-test");
        client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("LocalStack must be running on :4566 (scripts/test starts it)");
        Self { name, client }
    }

    /// Every key in the bucket, sorted.
    /// The archive's objects: every key but the manifest notes ([`Self::notes`]).
    pub async fn keys(&self) -> Vec<String> {
        let mut keys = self.all_keys().await;
        keys.retain(|k| !k.starts_with(sentinel_domain::archive_chain::NOTES_PREFIX));
        keys
    }

    /// The signed manifest notes' keys, in the chain's order.
    pub async fn notes(&self) -> Vec<String> {
        let mut keys = self.all_keys().await;
        keys.retain(|k| k.starts_with(sentinel_domain::archive_chain::NOTES_PREFIX));
        keys
    }

    pub async fn all_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            keys.extend(
                page.expect("list objects")
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        keys.sort();
        keys
    }

    /// Every object but the manifest notes (signed at a time of their own) with its SHA-256.
    pub async fn checksums(&self) -> BTreeMap<String, String> {
        use sha2::{Digest, Sha256};
        let mut sums = BTreeMap::new();
        for key in self.keys().await {
            sums.insert(
                key.clone(),
                hex::encode(Sha256::digest(self.get(&key).await)),
            );
        }
        sums
    }

    pub async fn get(&self, key: &str) -> Vec<u8> {
        self.client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
            .body
            .collect()
            .await
            .expect("read body")
            .to_vec()
    }

    pub async fn put(&self, key: &str, body: Vec<u8>) {
        self.client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("put object");
    }

    /// Keys with an unfinished multipart upload.
    pub async fn open_uploads(&self) -> Vec<String> {
        self.client
            .list_multipart_uploads()
            .bucket(&self.name)
            .send()
            .await
            .expect("list uploads")
            .uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_string))
            .collect()
    }

    pub async fn manifest(&self, month: Month) -> sentinel_domain::manifest::Manifest {
        serde_json::from_slice(&self.get(&month.manifest_key()).await).expect("a manifest")
    }
}

impl Drop for TestBucket {
    fn drop(&mut self) {
        let name = self.name.clone();
        sentinel_testing::on_own_thread(move || async move {
            // A client of this runtime's own: the test's is tied to the test's runtime.
            let client = s3().await;
            if let Ok(uploads) = client.list_multipart_uploads().bucket(&name).send().await {
                for u in uploads.uploads() {
                    let _ = client
                        .abort_multipart_upload()
                        .bucket(&name)
                        .key(u.key().unwrap_or_default())
                        .upload_id(u.upload_id().unwrap_or_default())
                        .send()
                        .await;
                }
            }
            let mut pages = client
                .list_objects_v2()
                .bucket(&name)
                .into_paginator()
                .send();
            while let Some(Ok(page)) = pages.next().await {
                for object in page.contents() {
                    let _ = client
                        .delete_object()
                        .bucket(&name)
                        .key(object.key().unwrap_or_default())
                        .send()
                        .await;
                }
            }
            let _ = client.delete_bucket().bucket(&name).send().await;
        });
    }
}

/// A fixed "now" for tests: mid-February 2026.
pub fn now() -> DateTime<Utc> {
    "2026-02-15T12:00:00Z".parse().unwrap()
}

/// A month two years before [`now`]: well past any retention.
pub fn old_month() -> Month {
    Month::of(now()).plus(-24)
}

/// Small parts and row groups, so a few dozen rows give several of each.
pub fn small_tuning() -> Tuning {
    Tuning {
        batch_rows: 10,
        part_rows: 40,
        row_group_rows: 16,
        ..Tuning::default()
    }
}

/// The stack the tests' manifests are signed for.
pub const STACK: &str = "test";

/// Manifests signed by a key in memory (KMS is exercised by the archiver's KMS test).
pub fn signing() -> ManifestSigning {
    let signer = Arc::new(sentinel_testing::log::MemorySigner::new("archiver tests"));
    let spki = signer.verifier("unused").spki_der().to_vec();
    ManifestSigning::new(STACK, &spki, signer).unwrap()
}

/// Signs a checkpoint of `tenant`'s log as the checkpointer does (its role, a key in
/// memory): the archiver names the checkpoint that covers each tenant's rows, and waits
/// for one.
pub async fn checkpoint(db: &TestDatabase, tenant: &str) {
    let signer = Arc::new(sentinel_testing::log::MemorySigner::new("checkpoints"));
    let url = format!("{}?options=-c%20role%3Dsentinel_checkpointer", db.url);
    let checkpointer = sentinel_postgres::log::Checkpointer::new(
        pool(&url, 1).unwrap(),
        STACK,
        signer.verifier(&format!("sentinel/{STACK}")),
        signer,
        Arc::new(sentinel_testing::log::MemoryArchive::default()),
        std::time::Duration::from_secs(3000),
    );
    checkpointer
        .checkpoint(&tenant.parse().unwrap(), Utc::now())
        .await
        .unwrap();
}

pub fn settings(bucket: &TestBucket, retention_months: u32) -> Settings {
    Settings {
        bucket: bucket.name.clone(),
        stack: STACK.into(),
        signing_key_id: "in memory".into(),
        retention_months,
        premake_months: 3,
    }
}

pub async fn archiver_with(
    db: &TestDatabase,
    bucket: &TestBucket,
    retention_months: u32,
    tuning: Tuning,
) -> Archiver {
    Archiver::with_tuning(
        pool(&db.url, 2).unwrap(),
        bucket.client.clone(),
        settings(bucket, retention_months),
        signing(),
        tuning,
    )
}

pub async fn archiver(db: &TestDatabase, bucket: &TestBucket) -> Archiver {
    archiver_with(db, bucket, 3, small_tuning()).await
}

/// Runs an archiver over the real PostgreSQL and S3 that dies at `point` (see
/// [`crash`]), and checks that it did.
pub async fn crash_at(db: &TestDatabase, bucket: &TestBucket, point: crash::FailPoint) {
    let dies = crash::Crash::at(point);
    let archiver = Archiver::from_adapters(
        crash::CrashingLedger {
            inner: PgArchiveLedger::new(pool(&db.url, 2).unwrap()),
            crash: dies.clone(),
        },
        crash::CrashingBucket {
            inner: Bucket::new(bucket.client.clone(), &bucket.name),
            crash: dies.clone(),
        },
        settings(bucket, 3),
        signing(),
        small_tuning(),
    );

    let result = archiver.run(now()).await;

    assert!(
        dies.happened(),
        "the archiver never reached {point:?}: {result:?}"
    );
    let Err(ArchiveError::MonthsFailed(summary)) = result else {
        panic!("a crash fails the run: {result:?}");
    };
    assert!(
        summary.failed.iter().all(|f| f.error.contains("crashed")),
        "{summary:?}"
    );
}

/// An event row as stored, every column explicit so two databases hold identical bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub tenant_id: String,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub stored_at: DateTime<Utc>,
    pub actor_id: String,
    pub actor_type: Option<String>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub changes: Value,
    pub metadata: Value,
}

/// `n` varied rows spread over `month`, the first at its first microsecond and the last at
/// its last.
pub fn rows_in(month: Month, n: usize, tag: &str) -> Vec<Row> {
    let span = (month.end() - month.start()).num_microseconds().unwrap() - 1;
    (0..n)
        .map(|i| {
            let offset = if n == 1 { 0 } else { span * i as i64 / (n as i64 - 1) };
            let at = month.start() + Duration::microseconds(offset);
            Row {
                id: format!("{tag}-{month}-{i:05}"),
                tenant_id: format!("tenant-{}", i % 3),
                occurred_at: at,
                received_at: at + Duration::microseconds(1234),
                stored_at: at + Duration::seconds(2) + Duration::microseconds(7),
                actor_id: format!("user_{}", i % 7),
                actor_type: (i % 4 != 0).then(|| "user".to_string()),
                action: ["billing_update", "invoice_create", "user_login"][i % 3].to_string(),
                resource_type: "invoice".to_string(),
                resource_id: format!("inv_{}", i % 11),
                changes: json!({
                    "status": {"before": "pending", "after": if i % 5 == 0 { "failed" } else { "paid" }},
                    "amount": {"before": null, "after": i * 100},
                    "note": {"before": "", "after": format!("naïve \"quoted\" ✓ {i}")}
                }),
                metadata: json!({"ip": format!("10.0.0.{}", i % 255), "nested": {"list": [1, 2.5, true, null]}}),
            }
        })
        .collect()
}

/// Inserts `rows` in order (so the heap holds them in that order), creating partitions.
pub async fn insert(db: &TestDatabase, rows: &[Row]) {
    let client = db.client().await;
    for row in rows {
        client
            .execute(
                "SELECT sentinel_ensure_month_partition($1)",
                &[&row.occurred_at],
            )
            .await
            .unwrap();
    }
    let col = |f: fn(&Row) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let times = |f: fn(&Row) -> DateTime<Utc>| rows.iter().map(f).collect::<Vec<_>>();
    client
        .execute(
            "INSERT INTO audit_events (id, tenant_id, occurred_at, received_at, stored_at, actor_id, \
             actor_type, action, resource_type, resource_id, changes, metadata) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], \
             $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
             $11::jsonb[], $12::jsonb[])",
            &[
                &col(|r| r.id.clone()),
                &col(|r| r.tenant_id.clone()),
                &times(|r| r.occurred_at),
                &times(|r| r.received_at),
                &times(|r| r.stored_at),
                &col(|r| r.actor_id.clone()),
                &rows.iter().map(|r| r.actor_type.clone()).collect::<Vec<_>>(),
                &col(|r| r.action.clone()),
                &col(|r| r.resource_type.clone()),
                &col(|r| r.resource_id.clone()),
                &rows.iter().map(|r| r.changes.clone()).collect::<Vec<_>>(),
                &rows.iter().map(|r| r.metadata.clone()).collect::<Vec<_>>(),
            ],
        )
        .await
        .unwrap();
}

pub async fn count_month(db: &TestDatabase, month: Month) -> i64 {
    db.client()
        .await
        .query_one(
            "SELECT count(*) FROM audit_events WHERE occurred_at >= $1 AND occurred_at < $2",
            &[&month.start(), &month.end()],
        )
        .await
        .unwrap()
        .get(0)
}

/// `attached`, `detached` or `absent`.
pub async fn partition(db: &TestDatabase, month: Month) -> &'static str {
    let row = db
        .client()
        .await
        .query_opt(
            "SELECT c.relispartition FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&month.partition_name()],
        )
        .await
        .unwrap();
    match row {
        None => "absent",
        Some(r) if r.get::<_, bool>(0) => "attached",
        Some(_) => "detached",
    }
}

/// The month's `archive_months` state, rows and error.
pub async fn progress(db: &TestDatabase, month: Month) -> Option<(String, i64, Option<String>)> {
    db.client()
        .await
        .query_opt(
            "SELECT state, rows, error FROM archive_months WHERE month = $1",
            &[&month.first_day()],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}
