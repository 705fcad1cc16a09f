//! The checkpointer and the proofs it makes possible, against the real PostgreSQL, each test
//! in a database of its own. Signing and the S3 copy use in-memory stand-ins of the two small
//! ports here; `kms.rs` runs the same path against LocalStack's KMS and S3.

use std::sync::Arc;
use std::time::Duration;

use checkpointer::{Run, Summary};
use chrono::{DateTime, Utc};
use sentinel_domain::checkpoint::{open_checkpoint, Checkpoint, VerifierKey};
use sentinel_domain::fields::TenantId;
use sentinel_domain::log::{self, checkpoint_time, ConsistencyError, LogReader};
use sentinel_domain::merkle::{self, Hash};
use sentinel_domain::store::EventStore;
use sentinel_domain::AuditEvent;
use sentinel_postgres::log::{Checkpointer, CheckpointerError, Outcome, PgLogReader};
use sentinel_postgres::pool;
use sentinel_postgres::writer::PgEventStore;
use sentinel_testing::log::{sample_event, MemoryArchive, MemorySigner};
use sentinel_testing::TestDatabase;

const STACK: &str = "test";

struct Log {
    db: TestDatabase,
    key: VerifierKey,
    archive: Arc<MemoryArchive>,
    checkpointer: Checkpointer,
}

/// A pool whose sessions act as `role` (as its login would deployed).
fn pool_as(db: &TestDatabase, role: &str) -> deadpool_postgres::Pool {
    let url = format!("{}?options=-c%20role%3D{role}", db.url);
    pool(&url, 2).unwrap()
}

async fn log() -> Log {
    let db = TestDatabase::create().await;
    let signer = Arc::new(MemorySigner::new("checkpoint tests"));
    let key = signer.verifier(&format!("sentinel/{STACK}"));
    let archive = Arc::new(MemoryArchive::default());
    let checkpointer = Checkpointer::new(
        pool_as(&db, "sentinel_checkpointer"),
        STACK,
        key.clone(),
        signer,
        archive.clone(),
        Duration::from_secs(3000),
    );
    Log {
        db,
        key,
        archive,
        checkpointer,
    }
}

fn events(tenant: &str, prefix: &str, n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| sample_event(tenant, &format!("{prefix}-{i}"), "2026-11-20T10:00:00Z"))
        .collect()
}

async fn store(db: &TestDatabase, events: &[AuditEvent]) {
    let store = PgEventStore::new(pool(&db.url, 1).unwrap());
    let report = store.store(events).await.unwrap();
    assert_eq!(report.inserted, events.len() as u64);
}

fn tenant(id: &str) -> TenantId {
    id.parse().unwrap()
}

fn opened(log: &Log, tenant_id: &str, note: &str) -> Checkpoint {
    let origin = log::origin(STACK, &tenant(tenant_id)).unwrap();
    open_checkpoint(note.as_bytes(), &origin, std::slice::from_ref(&log.key)).unwrap()
}

async fn run(log: &Log, now: DateTime<Utc>) -> Summary {
    Run::new(&log.checkpointer).run(now).await.unwrap()
}

#[tokio::test]
async fn a_checkpoint_signs_each_tenants_tree_and_proves_every_event_in_it() {
    let log = log().await;
    let acme = events("acme", "a", 300);
    store(&log.db, &acme[..120]).await;
    store(&log.db, &acme[120..]).await;
    store(&log.db, &events("globex", "g", 5)).await;

    let now = Utc::now();
    let summary = run(&log, now).await;

    assert_eq!(
        (summary.tenants, summary.signed, summary.appended),
        (2, 2, 305)
    );
    assert!(summary.failed.is_empty(), "{summary:?}");
    let reader = PgLogReader::new(pool_as(&log.db, "sentinel_reader"));
    let latest = reader
        .latest_checkpoint(&tenant("acme"))
        .await
        .unwrap()
        .unwrap();
    let checkpoint = opened(&log, "acme", &latest.note);
    let leaves: Vec<Hash> = acme.iter().map(AuditEvent::leaf_hash).collect();
    assert_eq!(checkpoint.size(), 300);
    assert_eq!(*checkpoint.root(), merkle::root(&leaves));
    assert_eq!(latest.root, merkle::root(&leaves));
    let at = checkpoint_time(&checkpoint).expect("a time line");
    assert_eq!(at.get(), latest.signed_at);
    // Every event's inclusion proof verifies against the signed root, and no other leaf's.
    for (index, event) in acme.iter().enumerate() {
        let found = reader
            .event_in_log(&tenant("acme"), event.id.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.log_index, index as u64);
        assert_eq!(found.event.encode(), event.encode());
        let (against, path) = found.proof.expect("a checkpoint covers it");
        assert_eq!(against, latest);
        merkle::verify_inclusion(
            index as u64,
            300,
            &event.leaf_hash(),
            &path,
            checkpoint.root(),
        )
        .unwrap();
        let other = &leaves[(index + 1) % 300];
        assert!(
            merkle::verify_inclusion(index as u64, 300, other, &path, checkpoint.root()).is_err()
        );
    }
    // The S3 copy is the same note, under the tenant's prefix, ordered by size and time.
    let puts = log.archive.puts.lock().unwrap().clone();
    assert_eq!(puts.len(), 2);
    let acme_put = puts
        .iter()
        .find(|(k, _)| k.starts_with("checkpoints/acme/"))
        .unwrap();
    assert_eq!(acme_put.0, log::checkpoint_key(&tenant("acme"), 300, at));
    assert_eq!(acme_put.1, latest.note.as_bytes());
}

#[tokio::test]
async fn a_later_checkpoint_is_consistent_with_the_earlier_and_a_quiet_log_waits_for_its_heartbeat()
{
    let log = log().await;
    let first = events("acme", "a", 37);
    store(&log.db, &first).await;
    let t0 = Utc::now();
    run(&log, t0).await;
    let reader = PgLogReader::new(pool_as(&log.db, "sentinel_reader"));
    let old = reader
        .latest_checkpoint(&tenant("acme"))
        .await
        .unwrap()
        .unwrap();

    // Nothing new: no checkpoint until the heartbeat is due.
    let quiet = run(&log, t0 + chrono::Duration::seconds(60)).await;
    assert_eq!((quiet.tenants, quiet.signed), (0, 0));
    let heartbeat = run(&log, t0 + chrono::Duration::seconds(3001)).await;
    assert_eq!(
        (heartbeat.tenants, heartbeat.signed, heartbeat.appended),
        (1, 1, 0)
    );
    let beat = reader
        .latest_checkpoint(&tenant("acme"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((beat.size, beat.root), (old.size, old.root));
    assert!(beat.signed_at > old.signed_at);

    let second = events("acme", "b", 1000);
    store(&log.db, &second).await;
    let grown = run(&log, t0 + chrono::Duration::seconds(3060)).await;
    assert_eq!(grown.appended, 1000);
    let new = reader
        .latest_checkpoint(&tenant("acme"))
        .await
        .unwrap()
        .unwrap();
    let all: Vec<Hash> = first
        .iter()
        .chain(&second)
        .map(AuditEvent::leaf_hash)
        .collect();
    assert_eq!((new.size, new.root), (1037, merkle::root(&all)));

    // Consistency from every earlier size to the latest checkpoint, and to the old one by size.
    for from in [1, 2, 36, 37, 500, 1024, 1036, 1037] {
        let (against, path) = reader
            .consistency(&tenant("acme"), from, None)
            .await
            .unwrap();
        assert_eq!(against, new);
        let old_root = merkle::root(&all[..from as usize]);
        merkle::verify_consistency(from, 1037, &old_root, &new.root, &path)
            .unwrap_or_else(|e| panic!("from {from}: {e}"));
    }
    let (against, path) = reader
        .consistency(&tenant("acme"), 5, Some(37))
        .await
        .unwrap();
    assert_eq!(against.size, 37);
    merkle::verify_consistency(5, 37, &merkle::root(&all[..5]), &old.root, &path).unwrap();
    // Sizes no checkpoint was signed at, or beyond the tree, are refused with a reason.
    for (from, to) in [(5, Some(38)), (0, None), (1038, None)] {
        let error = reader
            .consistency(&tenant("acme"), from, to)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ConsistencyError::Range(_)),
            "{from} {to:?}: {error:?}"
        );
    }
    assert!(matches!(
        reader
            .consistency(&tenant("nobody"), 1, None)
            .await
            .unwrap_err(),
        ConsistencyError::NoCheckpoint
    ));
}

#[tokio::test]
async fn the_reader_role_sees_only_the_log_of_the_tenant_it_names() {
    let log = log().await;
    store(&log.db, &events("acme", "a", 3)).await;
    store(&log.db, &events("globex", "g", 3)).await;
    run(&log, Utc::now()).await;
    let reader = PgLogReader::new(pool_as(&log.db, "sentinel_reader"));

    assert!(reader
        .event_in_log(&tenant("acme"), "g-0")
        .await
        .unwrap()
        .is_none());
    assert!(reader
        .event_in_log(&tenant("globex"), "g-0")
        .await
        .unwrap()
        .is_some());
    // Without the tenant named, the role reads nothing of the log's tables.
    let client = log.db.client().await;
    client
        .batch_execute("SET ROLE sentinel_reader")
        .await
        .unwrap();
    for table in ["log_entries", "log_subtrees", "checkpoints"] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
    // And it can change none of them.
    let refused = client
        .batch_execute("INSERT INTO checkpoints VALUES ('acme', 1, '\\x00', now(), 'x')")
        .await
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("42501"));
}

#[tokio::test]
async fn a_log_with_a_missing_leaf_is_not_signed_and_the_failure_names_the_index() {
    let log = log().await;
    store(&log.db, &events("acme", "a", 10)).await;
    store(&log.db, &events("globex", "g", 2)).await;
    // A superuser removes leaf 4 behind the triggers' back.
    let client = log.db.client().await;
    client
        .batch_execute(
            "SET session_replication_role = replica; \
             DELETE FROM log_entries WHERE tenant_id = 'acme' AND log_index = 4; \
             SET session_replication_role = origin;",
        )
        .await
        .unwrap();

    let summary = run(&log, Utc::now()).await;

    assert_eq!(summary.signed, 1, "the other tenant is still checkpointed");
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].0, "acme");
    assert!(
        summary.failed[0].1.contains("no leaf at index 4"),
        "{summary:?}"
    );
    let error = log
        .checkpointer
        .checkpoint(&tenant("acme"), Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(error, CheckpointerError::Broken { .. }), "{error}");
    let signed: i64 = client
        .query_one(
            "SELECT count(*) FROM checkpoints WHERE tenant_id = 'acme'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(signed, 0);
}

#[tokio::test]
async fn a_checkpoint_is_never_signed_with_a_key_other_than_the_configured_one() {
    let log = log().await;
    store(&log.db, &events("acme", "a", 2)).await;
    let wrong = Checkpointer::new(
        pool_as(&log.db, "sentinel_checkpointer"),
        STACK,
        log.key.clone(),
        Arc::new(MemorySigner::new("another key")),
        log.archive.clone(),
        Duration::from_secs(3000),
    );

    let error = wrong
        .checkpoint(&tenant("acme"), Utc::now())
        .await
        .unwrap_err();

    assert!(matches!(error, CheckpointerError::Sign(_)), "{error}");
    assert!(log.archive.puts.lock().unwrap().is_empty());
    // The right key then signs, from the same head.
    let outcome = log
        .checkpointer
        .checkpoint(&tenant("acme"), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Signed {
            size: 2,
            appended: 2
        }
    );
}
