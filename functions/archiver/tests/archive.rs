//! The archiver against the real PostgreSQL and the real LocalStack S3, each test with a
//! database and a bucket of its own.

mod common;

use std::collections::BTreeMap;

use archiver::{ArchiveError, Month, Tuning};
use chrono::{Duration, Utc};
use common::crash::FailPoint;
use common::*;
use sentinel_domain::event::AuditEvent;
use sentinel_domain::fields::Timestamp;
use sentinel_domain::store::EventStore;
use sentinel_postgres::{pool, writer::PgEventStore};
use sentinel_testing::{unique_name, TestDatabase};
use serde_json::Value;

#[tokio::test]
async fn a_month_past_retention_is_exported_verified_and_dropped() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = old_month();
    let rows = rows_in(month, 100, "ev");
    insert(&db, &rows).await;

    let summary = archiver(&db, &bucket).await.run(now()).await.unwrap();

    let name = month.to_string();
    assert_eq!(
        (
            summary.exported.clone(),
            summary.verified.clone(),
            summary.dropped.clone()
        ),
        (vec![name.clone()], vec![name.clone()], vec![name])
    );
    assert_eq!(summary.rows, 100);
    assert_eq!(partition(&db, month).await, "absent");
    assert_eq!(count_month(&db, month).await, 0);
    let (state, archived, error) = progress(&db, month).await.unwrap();
    assert_eq!((state.as_str(), archived, error), ("dropped", 100, None));

    let manifest = bucket.manifest(month).await;
    assert_eq!(
        bucket.keys().await,
        vec![
            month.manifest_key(),
            month.part_key(0),
            month.part_key(1),
            month.part_key(2)
        ],
        "100 rows in parts of at most 40"
    );
    assert_eq!(manifest.rows, 100);
    assert_eq!(
        manifest.parts.iter().map(|p| p.rows).collect::<Vec<_>>(),
        [40, 40, 20]
    );
    assert_eq!(manifest.min_occurred_at, Some(month.start()));
    assert_eq!(
        manifest.max_occurred_at,
        Some(month.end() - Duration::microseconds(1))
    );
    assert_eq!(manifest.min_id.as_deref(), Some(rows[0].id.as_str()));
    assert_eq!(manifest.max_id.as_deref(), Some(rows[99].id.as_str()));
    assert_eq!(manifest.schema_version, 2);
    assert_eq!(
        bucket.notes().await,
        vec![sentinel_domain::archive_chain::note_key(0)],
        "the manifest's signed note"
    );
    assert_eq!(summary.bytes, manifest.bytes);
    let checksums = bucket.checksums().await;
    for part in &manifest.parts {
        assert_eq!(checksums[&part.key], part.sha256, "{}", part.key);
        assert_eq!(bucket.get(&part.key).await.len() as u64, part.bytes);
    }
}

#[tokio::test]
async fn an_independent_reader_sees_every_row_field_by_field() {
    archive_and_read_back_field_by_field(rows_in(old_month(), 60, "read")).await;
}

/// Values at the contract's limits and hostile ones: a 250 KiB change, 32-deep nesting,
/// control characters, quotes, SQL and JSON look-alikes, right-to-left and astral-plane text,
/// keys that look like Hive paths, numbers beyond f64 precision, and a null actor type.
#[tokio::test]
async fn hostile_and_oversized_values_survive_the_round_trip_unchanged() {
    let month = old_month();
    let mut rows = rows_in(month, 6, "hostile");
    let mut deep = serde_json::json!("bottom");
    for _ in 0..31 {
        deep = serde_json::json!({ "d": deep });
    }
    rows[0].changes =
        serde_json::json!({"blob": {"before": null, "after": "x".repeat(250 * 1024)}});
    rows[1].changes = serde_json::json!({"deep": {"before": null, "after": deep}});
    rows[2].actor_id = "\u{1}\u{7f}\t\r\n'\";\\ DROP TABLE audit_events; --".to_string();
    rows[2].metadata = serde_json::json!({"year=1999/month=01": "../../part-00000.parquet", "\u{202e}rtl": "עברית 🧾𝕏"});
    rows[3].resource_id = "🧾".repeat(64);
    rows[3].changes = serde_json::json!({"n": {"before": 12345678901234567890u64, "after": -0.0}, "e": {"before": 1e300, "after": "{\"not\": \"json\"}"}});
    rows[4].actor_type = None;
    rows[4].metadata = serde_json::json!({});
    rows[5].tenant_id = "t".repeat(128);
    archive_and_read_back_field_by_field(rows).await;
}

/// Archives `rows` (all in one month past retention), then reads every part with pyarrow
/// and compares each field of each row with what was inserted.
async fn archive_and_read_back_field_by_field(rows: Vec<Row>) {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    insert(&db, &rows).await;

    archiver(&db, &bucket).await.run(now()).await.unwrap();

    let dir = std::env::temp_dir().join(unique_name("archiver-read"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for key in bucket
        .keys()
        .await
        .into_iter()
        .filter(|k| k.ends_with(".parquet"))
    {
        let path = dir.join(key.rsplit('/').next().unwrap());
        std::fs::write(&path, bucket.get(&key).await).unwrap();
        files.push(path);
    }
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.tools/venv/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/read_parquet.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .args(&files)
        .output()
        .expect("the pinned Python with pyarrow (scripts/install-tools installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();

    let timestamp = "timestamp[us, tz=UTC]";
    let expected_schema: BTreeMap<&str, &str> = [
        ("id", "string"),
        ("tenant_id", "string"),
        ("occurred_at", timestamp),
        ("received_at", timestamp),
        ("stored_at", timestamp),
        ("actor_id", "string"),
        ("actor_type", "string"),
        ("action", "string"),
        ("resource_type", "string"),
        ("resource_id", "string"),
        ("changes", "string"),
        ("metadata", "string"),
        ("log_index", "int64"),
        ("leaf_hash", "fixed_size_binary[32]"),
    ]
    .into_iter()
    .collect();
    let schema: BTreeMap<&str, &str> = read["schema"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    assert_eq!(schema, expected_schema);
    let read_rows = read["rows"].as_array().unwrap();
    assert_eq!(read_rows.len(), rows.len());
    // The archive holds them sorted by tenant, then log index (none here), then id.
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| (&a.tenant_id, &a.id).cmp(&(&b.tenant_id, &b.id)));
    for (row, got) in rows.iter().zip(read_rows) {
        let text = |name: &str| got[name].as_str().map(str::to_string);
        let micros = |name: &str| got[name].as_i64().unwrap();
        assert_eq!(text("id").as_deref(), Some(row.id.as_str()));
        assert_eq!(text("tenant_id").unwrap(), row.tenant_id, "{}", row.id);
        assert_eq!(
            micros("occurred_at"),
            row.occurred_at.timestamp_micros(),
            "{}",
            row.id
        );
        assert_eq!(
            micros("received_at"),
            row.received_at.timestamp_micros(),
            "{}",
            row.id
        );
        assert_eq!(
            micros("stored_at"),
            row.stored_at.timestamp_micros(),
            "{}",
            row.id
        );
        assert_eq!(text("actor_id").unwrap(), row.actor_id, "{}", row.id);
        assert_eq!(text("actor_type"), row.actor_type, "{}", row.id);
        assert_eq!(text("action").unwrap(), row.action, "{}", row.id);
        assert_eq!(
            text("resource_type").unwrap(),
            row.resource_type,
            "{}",
            row.id
        );
        assert_eq!(text("resource_id").unwrap(), row.resource_id, "{}", row.id);
        let json = |name: &str| serde_json::from_str::<Value>(&text(name).unwrap()).unwrap();
        assert_eq!(json("changes"), row.changes, "{}", row.id);
        // Inserted as rows, not through the writer: no log entry.
        assert!(
            got["log_index"].is_null() && got["leaf_hash"].is_null(),
            "{}",
            row.id
        );
        assert_eq!(json("metadata"), row.metadata, "{}", row.id);
    }
}

#[tokio::test]
async fn duckdb_reads_the_archive_as_a_hive_partitioned_table() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let (older, old) = (old_month().plus(-1), old_month());
    let (first, second) = (rows_in(older, 30, "duck"), rows_in(old, 50, "duck"));
    insert(&db, &first).await;
    insert(&db, &second).await;

    archiver(&db, &bucket).await.run(now()).await.unwrap();

    // The bucket as it is, keys and all, as `aws s3 sync` would download it.
    let dir = std::env::temp_dir().join(unique_name("archiver-duckdb"));
    for key in bucket.keys().await {
        let path = dir.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bucket.get(&key).await).unwrap();
    }
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.tools/venv/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/read_duckdb.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(dir.join("audit_events"))
        .output()
        .expect("the pinned Python with DuckDB (scripts/install-tools installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();

    let expect = |month: Month, rows: &[Row]| {
        serde_json::json!([
            month.year(),
            month.month(),
            rows.len(),
            rows.iter().map(|r| r.occurred_at.timestamp_micros()).min(),
            rows.iter().map(|r| r.occurred_at.timestamp_micros()).max(),
        ])
    };
    assert_eq!(
        read["months"],
        serde_json::json!([expect(older, &first), expect(old, &second)])
    );
    assert_eq!(read["types"]["occurred_at"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(read["types"]["changes"], "VARCHAR");
    assert_eq!(read["types"]["actor_type"], "VARCHAR");
    assert_eq!(read["bad_json"], 0, "changes and metadata parse as JSON");
}

/// Archives the same rows twice: once cleanly, once crashing at `point` and running again.
/// Both must end with the same objects and every row in S3.
async fn crash_then_rerun(point: FailPoint) {
    let month = old_month();
    let rows = rows_in(month, 100, "crash");
    let (clean_db, clean_bucket) = (TestDatabase::create().await, TestBucket::create().await);
    insert(&clean_db, &rows).await;
    archiver(&clean_db, &clean_bucket)
        .await
        .run(now())
        .await
        .unwrap();
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    insert(&db, &rows).await;

    crash_at(&db, &bucket, point).await;
    let (state, _, _) = progress(&db, month).await.unwrap();
    let expected_state = match point {
        FailPoint::MidUpload | FailPoint::AfterUpload => "exporting",
        FailPoint::AfterExport => "exported",
        FailPoint::AfterVerify => "verified",
        FailPoint::AfterDetach => "detached",
    };
    assert_eq!(state, expected_state);
    if point == FailPoint::MidUpload {
        assert_eq!(
            bucket.keys().await,
            vec![month.part_key(0)],
            "a stray complete part"
        );
        assert_eq!(
            bucket.open_uploads().await,
            vec![month.part_key(1)],
            "an open upload"
        );
    }
    let kept: i64 = db
        .client()
        .await
        .query_one(
            &format!("SELECT count(*) FROM {}", month.partition_name()),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 100, "the crash lost no rows from PostgreSQL");

    let summary = archiver(&db, &bucket).await.run(now()).await.unwrap();

    assert_eq!(summary.dropped, vec![month.to_string()]);
    assert_eq!(partition(&db, month).await, "absent");
    assert_eq!(progress(&db, month).await.unwrap().0, "dropped");
    assert!(bucket.open_uploads().await.is_empty());
    let (mut ours, mut theirs) = (bucket.checksums().await, clean_bucket.checksums().await);
    ours.remove(&month.manifest_key());
    theirs.remove(&month.manifest_key());
    assert_eq!(ours, theirs, "the same parts, byte for byte");
    let manifest = bucket.manifest(month).await;
    assert_eq!(
        manifest.content(),
        clean_bucket.manifest(month).await.content()
    );
    assert_eq!(manifest.rows, 100);
}

#[tokio::test]
async fn a_crash_mid_upload_then_a_rerun_ends_with_the_same_objects_and_no_loss() {
    crash_then_rerun(FailPoint::MidUpload).await;
}

#[tokio::test]
async fn a_crash_after_upload_then_a_rerun_ends_with_the_same_objects_and_no_loss() {
    crash_then_rerun(FailPoint::AfterUpload).await;
}

#[tokio::test]
async fn a_crash_after_export_then_a_rerun_ends_with_the_same_objects_and_no_loss() {
    crash_then_rerun(FailPoint::AfterExport).await;
}

#[tokio::test]
async fn a_crash_after_verification_then_a_rerun_ends_with_the_same_objects_and_no_loss() {
    crash_then_rerun(FailPoint::AfterVerify).await;
}

#[tokio::test]
async fn a_crash_after_detach_then_a_rerun_ends_with_the_same_objects_and_no_loss() {
    crash_then_rerun(FailPoint::AfterDetach).await;
}

#[tokio::test]
async fn a_corrupted_object_fails_verification_and_keeps_the_partition() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = old_month();
    insert(&db, &rows_in(month, 100, "corrupt")).await;
    crash_at(&db, &bucket, FailPoint::AfterExport).await;
    let key = month.part_key(1);
    let mut bytes = bucket.get(&key).await;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    bucket.put(&key, bytes).await;

    let failed = archiver(&db, &bucket).await.run(now()).await;

    let Err(ArchiveError::MonthsFailed(summary)) = failed else {
        panic!("verification must fail the run: {failed:?}");
    };
    assert_eq!(summary.failed.len(), 1);
    assert!(
        summary.failed[0].error.contains("SHA-256"),
        "{}",
        summary.failed[0].error
    );
    assert!(summary.failed[0].retryable);
    assert!(summary.dropped.is_empty());
    assert_eq!(partition(&db, month).await, "attached");
    assert_eq!(count_month(&db, month).await, 100);
    let (state, _, error) = progress(&db, month).await.unwrap();
    assert_eq!(state, "exporting", "sent back to export");
    assert!(error.unwrap().contains(&key));

    // The next run exports the month again from PostgreSQL and finishes the job.
    let summary = archiver(&db, &bucket).await.run(now()).await.unwrap();
    assert_eq!(summary.dropped, vec![month.to_string()]);
    let manifest = bucket.manifest(month).await;
    assert_eq!(bucket.checksums().await[&key], manifest.parts[1].sha256);
}

#[tokio::test]
async fn a_missing_object_fails_verification_and_keeps_the_partition() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = old_month();
    insert(&db, &rows_in(month, 50, "missing")).await;
    crash_at(&db, &bucket, FailPoint::AfterExport).await;
    bucket
        .client
        .delete_object()
        .bucket(&bucket.name)
        .key(month.part_key(0))
        .send()
        .await
        .unwrap();

    let failed = archiver(&db, &bucket).await.run(now()).await;

    let Err(ArchiveError::MonthsFailed(summary)) = failed else {
        panic!("verification must fail the run: {failed:?}");
    };
    assert!(
        summary.failed[0].error.contains("is missing"),
        "{}",
        summary.failed[0].error
    );
    assert_eq!(partition(&db, month).await, "attached");
    assert_eq!(count_month(&db, month).await, 50);
}

#[tokio::test]
async fn the_current_and_future_months_are_never_touched() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let now = Utc::now();
    let current = Month::of(now);
    let last = current.plus(-1);
    insert(&db, &rows_in(last, 10, "last")).await;
    insert(&db, &rows_in(current, 10, "current")).await;
    insert(&db, &rows_in(current.plus(1), 10, "next")).await;
    // Retention 0 is the most eager setting: everything before the current month goes.
    let archiver = archiver_with(&db, &bucket, 0, small_tuning()).await;

    let summary = archiver.run(now).await.unwrap();

    assert_eq!(summary.dropped, vec![last.to_string()]);
    assert_eq!(
        summary.created,
        vec![current.plus(2).to_string(), current.plus(3).to_string()],
        "the next three months exist; two were missing"
    );
    for month in [current, current.plus(1)] {
        assert_eq!(partition(&db, month).await, "attached", "{month}");
        assert_eq!(count_month(&db, month).await, 10, "{month}");
        assert_eq!(progress(&db, month).await, None, "{month}");
    }
    assert_eq!(partition(&db, current.plus(3)).await, "attached");
    assert!(bucket
        .keys()
        .await
        .iter()
        .all(|k| k.starts_with(&last.prefix())));
}

#[tokio::test]
async fn the_month_at_the_retention_boundary_is_kept_and_the_one_before_is_archived() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let current = Month::of(now());
    // With 3 months of retention in February 2026: November 2025 stays, October 2025 goes.
    let (kept, archived) = (current.plus(-3), current.plus(-4));
    insert(&db, &rows_in(kept, 5, "kept")).await;
    insert(&db, &rows_in(archived, 5, "archived")).await;

    let summary = archiver(&db, &bucket).await.run(now()).await.unwrap();

    assert_eq!(summary.dropped, vec![archived.to_string()]);
    assert_eq!(partition(&db, kept).await, "attached");
    assert_eq!(count_month(&db, kept).await, 5);
    assert_eq!(partition(&db, archived).await, "absent");
}

#[tokio::test]
async fn an_empty_month_past_retention_is_archived_as_a_manifest_without_parts() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = old_month();
    db.client()
        .await
        .execute(
            "SELECT sentinel_ensure_month_partition($1)",
            &[&month.start()],
        )
        .await
        .unwrap();

    let summary = archiver(&db, &bucket).await.run(now()).await.unwrap();

    assert_eq!(summary.dropped, vec![month.to_string()]);
    assert_eq!(summary.rows, 0);
    assert_eq!(bucket.keys().await, vec![month.manifest_key()]);
    let manifest = bucket.manifest(month).await;
    assert_eq!(
        (
            manifest.rows,
            manifest.parts.len(),
            manifest.min_occurred_at
        ),
        (0, 0, None)
    );
    assert_eq!(partition(&db, month).await, "absent");
    assert_eq!(progress(&db, month).await.unwrap().0, "dropped");
}

#[tokio::test]
async fn an_archiver_skips_a_month_another_archiver_holds() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = old_month();
    insert(&db, &rows_in(month, 20, "held")).await;
    let other = db.client().await;
    let (class, key) = sentinel_postgres::archive::lock_keys(month);
    let held: bool = other
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&class, &key])
        .await
        .unwrap()
        .get(0);
    assert!(held);

    let summary = archiver(&db, &bucket).await.run(now()).await.unwrap();

    assert_eq!(summary.skipped, vec![month.to_string()]);
    assert!(summary.exported.is_empty());
    assert!(bucket.keys().await.is_empty());
    assert_eq!(partition(&db, month).await, "attached");
    assert_eq!(progress(&db, month).await, None);
}

#[tokio::test]
async fn two_archivers_running_at_once_do_not_both_export_the_same_month() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let months: Vec<Month> = (0..4).map(|i| old_month().plus(-i)).collect();
    for month in &months {
        insert(&db, &rows_in(*month, 300, "race")).await;
    }
    let (a, b) = (archiver(&db, &bucket).await, archiver(&db, &bucket).await);

    let (first, second) = tokio::join!(a.run(now()), b.run(now()));

    let (first, second) = (first.unwrap(), second.unwrap());
    let mut exported: Vec<String> = first
        .exported
        .iter()
        .chain(&second.exported)
        .cloned()
        .collect();
    exported.sort();
    let mut expected: Vec<String> = months.iter().map(|m| m.to_string()).collect();
    expected.sort();
    assert_eq!(
        exported, expected,
        "each month exported exactly once: {first:?} {second:?}"
    );
    for month in &months {
        assert_eq!(partition(&db, *month).await, "absent");
        let manifest = bucket.manifest(*month).await;
        assert_eq!((manifest.rows, manifest.batches), (300, 1));
    }
    let notes = bucket.notes().await;
    assert_eq!(
        notes,
        (0..4)
            .map(sentinel_domain::archive_chain::note_key)
            .collect::<Vec<_>>(),
        "one signed note per month, numbered without a gap by both archivers"
    );
    assert_eq!(
        bucket.keys().await.len(),
        4 * (1 + 8),
        "a manifest and 8 parts per month"
    );
}

#[tokio::test]
async fn late_events_for_an_archived_month_are_archived_as_a_further_batch() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = old_month();
    insert(&db, &rows_in(month, 50, "early")).await;
    archiver(&db, &bucket).await.run(now()).await.unwrap();
    let first = bucket.manifest(month).await;
    // The writer recreates the dropped month for an event that arrives late.
    let late = rows_in(month, 3, "late");
    insert(&db, &late).await;
    assert_eq!(partition(&db, month).await, "attached");

    let summary = archiver(&db, &bucket).await.run(now()).await.unwrap();

    assert_eq!(summary.exported, vec![month.to_string()]);
    assert_eq!(summary.rows, 3);
    assert_eq!(partition(&db, month).await, "absent");
    let manifest = bucket.manifest(month).await;
    assert_eq!((manifest.rows, manifest.batches), (53, 2));
    assert_eq!(
        manifest.parts[..first.parts.len()],
        first.parts[..],
        "earlier parts untouched"
    );
    let added = &manifest.parts[first.parts.len()..];
    assert_eq!(added.len(), 1);
    assert_eq!(
        (added[0].key.clone(), added[0].rows, added[0].batch),
        (month.part_key(2), 3, 2)
    );
    let (state, rows, _) = progress(&db, month).await.unwrap();
    assert_eq!((state.as_str(), rows), ("dropped", 53));
}

#[tokio::test]
async fn rows_that_arrive_between_verification_and_detach_are_exported_before_the_drop() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = old_month();
    insert(&db, &rows_in(month, 30, "before")).await;
    crash_at(&db, &bucket, FailPoint::AfterVerify).await;
    insert(&db, &rows_in(month, 2, "between")).await;

    let summary = archiver(&db, &bucket).await.run(now()).await.unwrap();

    assert_eq!(summary.exported, vec![month.to_string()], "exported again");
    assert_eq!(summary.dropped, vec![month.to_string()]);
    let manifest = bucket.manifest(month).await;
    assert_eq!((manifest.rows, manifest.batches), (32, 1));
    assert_eq!(partition(&db, month).await, "absent");
}

/// A login role of one test's own that is a member of `sentinel_archiver`, dropped on drop
/// (declare it before the database, so the database goes first).
struct ArchiverLogin {
    name: String,
}

impl Drop for ArchiverLogin {
    fn drop(&mut self) {
        let name = self.name.clone();
        sentinel_testing::on_own_thread(move || async move {
            let mut admin: tokio_postgres::Config = sentinel_testing::admin_url().parse().unwrap();
            admin.dbname("postgres");
            if let Ok((client, connection)) = admin.connect(tokio_postgres::NoTls).await {
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
                    .await;
            }
        });
    }
}

#[tokio::test]
async fn the_archiver_needs_only_the_sentinel_archiver_role() {
    let login = ArchiverLogin {
        name: unique_name("archiver_login").replace('-', "_"),
    };
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = old_month();
    insert(&db, &rows_in(month, 20, "role")).await;
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {} LOGIN IN ROLE sentinel_archiver",
            login.name
        ))
        .await
        .unwrap();
    let url = format!("postgres://{}@127.0.0.1:5432/{}", login.name, db.name);
    let archiver = archiver::Archiver::with_tuning(
        sentinel_postgres::pool(&url, 2).unwrap(),
        bucket.client.clone(),
        settings(&bucket, 3),
        signing(),
        small_tuning(),
    );

    let summary = archiver.run(now()).await.unwrap();

    assert_eq!(summary.dropped, vec![month.to_string()]);
    assert_eq!(partition(&db, month).await, "absent");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let error = client
        .batch_execute(&format!("DROP TABLE {}", Month::of(now()).partition_name()))
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "no DDL rights of its own: {error:?}"
    );
}

#[tokio::test]
async fn a_month_cannot_be_detached_before_it_is_verified() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = old_month();
    insert(&db, &rows_in(month, 10, "guard")).await;
    crash_at(&db, &bucket, FailPoint::AfterExport).await;
    let client = db.client().await;

    let detach = client
        .query_one(
            "SELECT sentinel_detach_archived_month($1)",
            &[&month.first_day()],
        )
        .await;
    let skip = client
        .execute(
            "UPDATE archive_months SET state = 'detached' WHERE month = $1",
            &[&month.first_day()],
        )
        .await;
    let drop = client
        .execute(
            "SELECT sentinel_drop_archived_month($1)",
            &[&month.first_day()],
        )
        .await;

    assert!(format!("{:?}", detach.unwrap_err()).contains("not verified"));
    assert!(format!("{:?}", skip.unwrap_err()).contains("cannot go from exported to detached"));
    assert!(format!("{:?}", drop.unwrap_err()).contains("refusing to drop"));
    assert_eq!(partition(&db, month).await, "attached");
}

#[tokio::test]
async fn the_handler_answers_the_scheduled_event_with_a_json_summary() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = Month::of(Utc::now()).plus(-24);
    insert(&db, &rows_in(month, 12, "handler")).await;
    let archiver = archiver_with(&db, &bucket, 3, Tuning::default()).await;
    let event = lambda_runtime::LambdaEvent::new(fixture("scheduled.json"), Default::default());

    let answer = archiver::handler(&archiver, event).await.unwrap();

    assert_eq!(answer["exported"], serde_json::json!([month.to_string()]));
    assert_eq!(answer["verified"], serde_json::json!([month.to_string()]));
    assert_eq!(answer["dropped"], serde_json::json!([month.to_string()]));
    assert_eq!(answer["rows"], 12);
    assert!(answer["bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        answer["created"].as_array().unwrap().len(),
        4,
        "this month and the next 3"
    );
    assert_eq!(answer["failed"], serde_json::json!([]));
}

#[tokio::test]
async fn a_missing_bucket_fails_the_run_clearly_and_keeps_the_partition() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = old_month();
    insert(&db, &rows_in(month, 20, "nobucket")).await;
    let mut settings = settings(&bucket, 3);
    settings.bucket = unique_name("sentinel-no-such-bucket");
    let archiver = archiver::Archiver::with_tuning(
        sentinel_postgres::pool(&db.url, 2).unwrap(),
        bucket.client.clone(),
        settings,
        signing(),
        small_tuning(),
    );

    let failed = archiver.run(now()).await;

    let Err(ArchiveError::MonthsFailed(summary)) = failed else {
        panic!("a missing bucket must fail the run: {failed:?}");
    };
    let error = &summary.failed[0].error;
    assert!(error.starts_with("S3 failed"), "{error}");
    assert!(error.contains("NoSuchBucket"), "{error}");
    assert!(summary.exported.is_empty() && summary.dropped.is_empty());
    assert_eq!(partition(&db, month).await, "attached");
    assert_eq!(count_month(&db, month).await, 20);
    let (state, _, recorded) = progress(&db, month).await.unwrap();
    assert_eq!(state, "exporting");
    assert!(recorded.unwrap().contains("NoSuchBucket"));
}

/// A crash between detach and drop leaves the month's table detached under the partition's
/// name. A late event for that month must not wait for the archiver's next run: the writer's
/// store finishes the drop (the rows are verified in S3) and writes it into a fresh
/// partition, and the next run archives it as a further batch.
#[tokio::test]
async fn a_late_event_for_a_month_left_detached_by_a_crash_is_written_at_once() {
    let (db, bucket) = (TestDatabase::create().await, TestBucket::create().await);
    let month = old_month();
    insert(&db, &rows_in(month, 20, "before")).await;
    // The writer has written to the month before, so it believes the partition is there (as
    // a warm Lambda does): the late write first fails on the missing partition, then asks
    // for it.
    let store = PgEventStore::new(pool(&db.url, 1).unwrap());
    let at = Timestamp::new(month.start() + Duration::days(3)).unwrap();
    let event = |id: &str| AuditEvent {
        id: id.parse().unwrap(),
        tenant_id: "default".parse().unwrap(),
        occurred_at: at,
        received_at: at,
        actor_id: "user_1".parse().unwrap(),
        actor_type: None,
        action: "role_grant".parse().unwrap(),
        resource_type: "user".parse().unwrap(),
        resource_id: "u_1".parse().unwrap(),
        changes: Default::default(),
        metadata: Default::default(),
    };
    assert_eq!(store.store(&[event("early-1")]).await.unwrap().inserted, 1);
    checkpoint(&db, "default").await;
    crash_at(&db, &bucket, FailPoint::AfterDetach).await;
    assert_eq!(partition(&db, month).await, "detached");

    let report = store.store(&[event("late-1")]).await.unwrap();

    assert_eq!(report.inserted, 1);
    assert_eq!(partition(&db, month).await, "attached");
    assert_eq!(
        count_month(&db, month).await,
        1,
        "only the late event is in PostgreSQL"
    );
    assert_eq!(progress(&db, month).await.unwrap().0, "dropped");
    // An archiver that read "detached" just before the writer finished the drop goes on to
    // drop it too: that must neither fail nor touch the new partition.
    db.client()
        .await
        .execute(
            "SELECT sentinel_drop_archived_month($1)",
            &[&month.first_day()],
        )
        .await
        .unwrap();
    assert_eq!(partition(&db, month).await, "attached");
    assert_eq!(count_month(&db, month).await, 1);
    checkpoint(&db, "default").await;

    let summary = archiver(&db, &bucket).await.run(now()).await.unwrap();

    assert_eq!(summary.exported, vec![month.to_string()]);
    assert_eq!(partition(&db, month).await, "absent");
    let manifest = bucket.manifest(month).await;
    assert_eq!((manifest.rows, manifest.batches), (22, 2));
    assert_eq!(manifest.parts.last().unwrap().rows, 1);
}

#[tokio::test]
async fn a_table_with_a_month_partition_name_that_the_archiver_did_not_detach_is_left_alone() {
    let db = TestDatabase::create().await;
    let month = old_month();
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE {} (note text); INSERT INTO {0} VALUES ('not ours')",
            month.partition_name()
        ))
        .await
        .unwrap();

    let name: String = client
        .query_one(
            "SELECT sentinel_ensure_month_partition($1)",
            &[&month.start()],
        )
        .await
        .unwrap()
        .get(0);

    assert_eq!(name, month.partition_name());
    assert_eq!(
        partition(&db, month).await,
        "detached",
        "still there, not a partition"
    );
    let kept: i64 = client
        .query_one(&format!("SELECT count(*) FROM {name}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1);
}
