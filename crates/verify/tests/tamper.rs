//! The tamper suite (issue 11): a log made by the real writer and checkpointer in a
//! PostgreSQL database of its own, with checkpoints in an S3 bucket of its own on LocalStack,
//! tampered with as a superuser would, then verified as the `sentinel_auditor` role with the
//! public key only. Each case must be detected and named.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sentinel_aws::s3::Bucket;
use sentinel_domain::checkpoint::{SignedNote, VerifierKey};
use sentinel_domain::log::Signer as _;
use sentinel_domain::store::EventStore;
use sentinel_domain::AuditEvent;
use sentinel_postgres::log::Checkpointer;
use sentinel_postgres::writer::PgEventStore;
use sentinel_testing::log::{sample_event, MemorySigner};
use sentinel_testing::{localstack_env, on_own_thread, unique_name, TestDatabase};
use sentinel_verify::archive::S3Archive;
use sentinel_verify::findings::{Finding, Store};
use sentinel_verify::pg::PgLog;
use sentinel_verify::s3::S3Checkpoints;
use sentinel_verify::{verify, Config, NoProgress, Report};

const STACK: &str = "test";
const TENANT: &str = "acme";

struct Log {
    db: TestDatabase,
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: VerifierKey,
    signer: Arc<MemorySigner>,
    /// The archiver's own key, which signs the manifests (the archive shares the bucket).
    archive_signer: Arc<MemorySigner>,
    archive_key: VerifierKey,
    checkpointer: Checkpointer,
    /// Checkpoints are signed in the past (an hour ago on), one a minute, so none is "newer
    /// than the snapshot".
    clock: std::sync::Mutex<DateTime<Utc>>,
    state_dir: PathBuf,
}

impl Drop for Log {
    fn drop(&mut self) {
        let bucket = self.bucket.clone();
        // A client of the cleanup's own runtime: the test's is blocked on this drop.
        on_own_thread(move || async move {
            let s3 = sentinel_aws::s3::client(&sentinel_aws::config().await);
            if let Ok(listed) = s3.list_objects_v2().bucket(&bucket).send().await {
                for object in listed.contents() {
                    if let Some(key) = object.key() {
                        let _ = s3.delete_object().bucket(&bucket).key(key).send().await;
                    }
                }
            }
            let _ = s3.delete_bucket().bucket(&bucket).send().await;
        });
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

fn pool_as(db: &TestDatabase, role: &str) -> deadpool_postgres::Pool {
    let url = format!("{}?options=-c%20role%3D{role}", db.url);
    sentinel_postgres::pool(&url, 2).unwrap()
}

async fn log() -> Log {
    localstack_env();
    let db = TestDatabase::create().await;
    let config = sentinel_aws::config().await;
    let s3 = sentinel_aws::s3::client(&config);
    let bucket = unique_name("verify-test");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let signer = Arc::new(MemorySigner::new("tamper tests"));
    let key = signer.verifier(&format!("sentinel/{STACK}"));
    let checkpointer = Checkpointer::new(
        pool_as(&db, "sentinel_checkpointer"),
        STACK,
        key.clone(),
        signer.clone(),
        Arc::new(Bucket::new(s3.clone(), bucket.clone())),
        Duration::from_secs(3000),
    );
    let state_dir = std::env::temp_dir().join(unique_name("sentinel-verify-state"));
    let archive_signer = Arc::new(MemorySigner::new("tamper tests' archive"));
    let archive_key = archive_signer.verifier(&format!("sentinel/{STACK}/archive"));
    Log {
        db,
        s3,
        bucket,
        key,
        signer,
        archive_signer,
        archive_key,
        checkpointer,
        clock: std::sync::Mutex::new((Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(6)),
        state_dir,
    }
}

fn events(prefix: &str, range: std::ops::Range<usize>, occurred_at: &str) -> Vec<AuditEvent> {
    range
        .map(|i| sample_event(TENANT, &format!("{prefix}-{i}"), occurred_at))
        .collect()
}

impl Log {
    async fn store(&self, events: &[AuditEvent]) {
        let store = PgEventStore::new(sentinel_postgres::pool(&self.db.url, 1).unwrap());
        for chunk in events.chunks(500) {
            let report = store.store(chunk).await.unwrap();
            assert_eq!(report.inserted, chunk.len() as u64);
        }
    }

    async fn checkpoint(&self) -> u64 {
        let now = {
            let mut clock = self.clock.lock().unwrap();
            *clock += chrono::Duration::minutes(1);
            *clock
        };
        match self
            .checkpointer
            .checkpoint(&TENANT.parse().unwrap(), now)
            .await
            .unwrap()
        {
            sentinel_postgres::log::Outcome::Signed { size, .. } => size,
            other => panic!("{other:?}"),
        }
    }

    /// 300 events in November 2026, checkpointed at 100, 250 and 300.
    async fn standard() -> Log {
        let log = log().await;
        let all = events("a", 0..300, "2026-11-20T10:00:00Z");
        log.store(&all[..100]).await;
        assert_eq!(log.checkpoint().await, 100);
        log.store(&all[100..250]).await;
        assert_eq!(log.checkpoint().await, 250);
        log.store(&all[250..]).await;
        assert_eq!(log.checkpoint().await, 300);
        log
    }

    /// Runs SQL as the superuser with the append-only triggers bypassed.
    async fn tamper(&self, sql: &str) {
        self.db
            .client()
            .await
            .batch_execute(&format!(
                "SET session_replication_role = replica; {sql}; SET session_replication_role = origin;"
            ))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn config(&self, state: bool) -> Config {
        Config {
            tenant: TENANT.parse().unwrap(),
            stack: STACK.into(),
            keys: vec![self.key.clone()],
            archive_keys: vec![self.archive_key.clone()],
            from: None,
            to: None,
            state_dir: state.then(|| self.state_dir.clone()),
            join: false,
        }
    }

    async fn verify_with(&self, config: &Config) -> Report {
        let url = format!("{}?options=-c%20role%3Dsentinel_auditor", self.db.url);
        let pg = PgLog::connect(&url).await.unwrap();
        let s3 = S3Checkpoints::new(self.s3.clone(), self.bucket.clone());
        let archive = S3Archive::new(self.s3.clone(), self.bucket.clone());
        let report = verify(config, &pg, Some(&s3), Some(&archive), &NoProgress)
            .await
            .unwrap();
        println!("{}", report.to_text());
        report
    }

    async fn verify(&self) -> Report {
        self.verify_with(&self.config(false)).await
    }

    async fn s3_keys(&self) -> Vec<String> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("checkpoints/{TENANT}/"))
            .send()
            .await
            .unwrap();
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    async fn s3_put(&self, key: &str, body: &[u8]) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
    }

    async fn s3_delete(&self, key: &str) {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }

    /// The S3 key of the checkpoint of `size`.
    async fn key_of(&self, size: u64) -> String {
        let prefix = format!("checkpoints/{TENANT}/{size:020}-");
        self.s3_keys()
            .await
            .into_iter()
            .find(|k| k.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no checkpoint of size {size}"))
    }
}

fn kinds(report: &Report) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = report.findings.iter().map(Finding::kind).collect();
    kinds.sort();
    kinds
}

fn event_of(finding: &Finding) -> (String, Option<u64>) {
    match finding {
        Finding::RowEdited { event }
        | Finding::LogEntryEdited { event }
        | Finding::RowDeleted { event }
        | Finding::RowInserted { event }
        | Finding::RowUnreadable { event, .. }
        | Finding::RowDiffersFromLog { event, .. } => (event.event_id.clone(), event.log_index),
        other => panic!("not an event finding: {other:?}"),
    }
}

#[tokio::test]
async fn a_clean_log_verifies_with_no_finding() {
    let log = Log::standard().await;

    let report = log.verify().await;

    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!((report.checkpoints.total, report.checkpoints.valid), (3, 3));
    assert_eq!(
        (report.checkpoints.in_postgresql, report.checkpoints.in_s3),
        (3, Some(3))
    );
    assert_eq!((report.events.checked, report.events.valid), (300, 300));
    assert_eq!(report.log_size, 300);
    assert_eq!(
        report.compared_by, "streams",
        "every row matched: no join needed"
    );
    let text = report.to_text();
    assert!(
        text.contains("3/3 checkpoints valid (PostgreSQL 3, S3 3)"),
        "{text}"
    );
    assert!(text.contains("300/300 events valid"), "{text}");
}

#[tokio::test]
async fn the_join_asked_for_gives_the_streams_report_on_a_clean_log() {
    let log = Log::standard().await;
    let mut config = log.config(false);
    config.join = true;

    let joined = log.verify_with(&config).await;
    let streamed = log.verify().await;

    assert_eq!(
        (joined.compared_by, streamed.compared_by),
        ("join", "streams")
    );
    assert!(joined.ok() && streamed.ok(), "{:?}", joined.findings);
    assert_eq!(joined.events, streamed.events);
    assert_eq!(joined.checkpoints, streamed.checkpoints);
}

#[tokio::test]
async fn a_row_whose_field_a_superuser_edited_is_named() {
    let log = Log::standard().await;
    log.tamper(
        "UPDATE audit_events SET actor_id = 'mallory' WHERE tenant_id = 'acme' AND id = 'a-42'",
    )
    .await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["row_edited"]);
    assert_eq!(
        report.compared_by, "join",
        "the digests differ: the join names the row"
    );
    assert_eq!(event_of(&report.findings[0]), ("a-42".into(), Some(42)));
    assert_eq!((report.events.checked, report.events.valid), (300, 299));
    let line = report.findings[0].to_string();
    assert!(
        line.starts_with("event a-42 at log index 42 (month 2026-11) INVALID: its row was changed"),
        "{line}"
    );
}

#[tokio::test]
async fn an_edit_that_breaks_the_events_rules_is_named_as_unreadable() {
    let log = Log::standard().await;
    log.tamper("UPDATE audit_events SET changes = '{\"status\": 1}' WHERE tenant_id = 'acme' AND id = 'a-7'")
        .await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["row_unreadable"]);
    assert_eq!(event_of(&report.findings[0]), ("a-7".into(), Some(7)));
}

#[tokio::test]
async fn a_log_entry_whose_leaf_was_edited_is_told_apart_from_an_edited_row() {
    let log = Log::standard().await;
    log.tamper(
        "UPDATE log_entries SET leaf_hash = sha256('forged') WHERE tenant_id = 'acme' AND log_index = 120",
    )
    .await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["log_entry_edited"]);
    assert_eq!(event_of(&report.findings[0]), ("a-120".into(), Some(120)));
}

#[tokio::test]
async fn a_deleted_row_is_named() {
    let log = Log::standard().await;
    log.tamper("DELETE FROM audit_events WHERE tenant_id = 'acme' AND id = 'a-42'")
        .await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["row_deleted"]);
    assert_eq!(event_of(&report.findings[0]), ("a-42".into(), Some(42)));
    assert_eq!((report.events.checked, report.events.valid), (300, 299));
}

#[tokio::test]
async fn a_deleted_log_entry_is_a_gap_and_the_checkpoints_after_it_cannot_be_rebuilt() {
    let log = Log::standard().await;
    log.tamper(
        "DELETE FROM audit_events WHERE tenant_id = 'acme' AND id = 'a-142'; \
         DELETE FROM log_entries WHERE tenant_id = 'acme' AND log_index = 142",
    )
    .await;

    let report = log.verify().await;

    assert_eq!(
        kinds(&report),
        [
            "checkpoint_unverifiable",
            "checkpoint_unverifiable",
            "log_gap"
        ]
    );
    assert!(report.findings.contains(&Finding::LogGap {
        first_index: 142,
        last_index: 142
    }));
    assert_eq!((report.checkpoints.total, report.checkpoints.valid), (3, 1));
}

#[tokio::test]
async fn an_inserted_row_is_named() {
    let log = Log::standard().await;
    log.tamper(
        "INSERT INTO audit_events (id, tenant_id, occurred_at, received_at, actor_id, actor_type, \
             action, resource_type, resource_id, changes, metadata) \
         SELECT 'forged-1', tenant_id, occurred_at, received_at, 'mallory', actor_type, action, \
             resource_type, resource_id, changes, metadata \
         FROM audit_events WHERE tenant_id = 'acme' AND id = 'a-1'",
    )
    .await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["row_inserted"]);
    assert_eq!(event_of(&report.findings[0]), ("forged-1".into(), None));
    assert_eq!((report.events.checked, report.events.valid), (301, 300));
}

#[tokio::test]
async fn two_log_entries_pointing_at_each_others_events_are_named_as_swapped() {
    let log = Log::standard().await;
    log.tamper(
        "UPDATE log_entries SET event_id = CASE log_index WHEN 10 THEN 'a-20' ELSE 'a-10' END \
         WHERE tenant_id = 'acme' AND log_index IN (10, 20)",
    )
    .await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["swapped"]);
    let Finding::Swapped { first, second } = &report.findings[0] else {
        unreachable!()
    };
    assert_eq!((first.log_index, second.log_index), (Some(10), Some(20)));
    assert_eq!(
        (first.event_id.as_str(), second.event_id.as_str()),
        ("a-20", "a-10")
    );
}

#[tokio::test]
async fn two_whole_log_entries_swapped_are_found_from_the_stored_subtrees() {
    let log = Log::standard().await;
    // Leaf hashes move with their events: every row matches its entry, only the tree fails.
    log.tamper(
        "CREATE TEMP TABLE swap AS SELECT * FROM log_entries WHERE tenant_id = 'acme' AND log_index IN (40, 77); \
         DELETE FROM log_entries WHERE tenant_id = 'acme' AND log_index IN (40, 77); \
         INSERT INTO log_entries (tenant_id, log_index, leaf_hash, event_id, occurred_at) \
         SELECT tenant_id, CASE log_index WHEN 40 THEN 77 ELSE 40 END, leaf_hash, event_id, occurred_at FROM swap",
    )
    .await;

    let report = log.verify().await;

    assert!(
        report.of_kind("swapped").len() == 1,
        "{:?}",
        report.findings
    );
    let Finding::Swapped { first, second } = report.of_kind("swapped")[0] else {
        unreachable!()
    };
    assert_eq!((first.log_index, second.log_index), (Some(40), Some(77)));
    assert_eq!(
        (first.event_id.as_str(), second.event_id.as_str()),
        ("a-77", "a-40")
    );
    // The roots of both checkpoints that cover them fail.
    assert_eq!(report.of_kind("root_mismatch").len(), 3);
    assert_eq!(report.checkpoints.valid, 0);
}

#[tokio::test]
async fn the_newest_events_deleted_with_their_entries_and_size_are_found_by_the_last_checkpoint() {
    let log = Log::standard().await;
    log.tamper(
        "DELETE FROM audit_events WHERE tenant_id = 'acme' AND id IN \
             (SELECT event_id FROM log_entries WHERE tenant_id = 'acme' AND log_index >= 290); \
         DELETE FROM log_entries WHERE tenant_id = 'acme' AND log_index >= 290; \
         UPDATE tenant_logs SET size = 290 WHERE tenant_id = 'acme'",
    )
    .await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["newest_events_deleted"]);
    let Finding::NewestEventsDeleted {
        checkpoint,
        log_entries,
        missing,
    } = &report.findings[0]
    else {
        unreachable!()
    };
    assert_eq!(
        (checkpoint.size, *log_entries, *missing),
        (Some(300), 290, 10)
    );
    assert_eq!(report.checkpoints.valid, 2);
}

#[tokio::test]
async fn a_month_partition_dropped_outside_the_archiver_is_one_finding_for_the_month() {
    let log = log().await;
    log.store(&events("oct", 0..100, "2026-10-15T08:00:00Z"))
        .await;
    log.store(&events("nov", 0..50, "2026-11-20T10:00:00Z"))
        .await;
    assert_eq!(log.checkpoint().await, 150);
    log.tamper("DROP TABLE audit_events_2026_10").await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["month_missing"]);
    assert_eq!(
        report.findings[0],
        Finding::MonthMissing {
            month: "2026-10".into(),
            missing: 100,
            first_log_index: 0,
            last_log_index: 99,
            partition_attached: false,
        }
    );
    let line = report.findings[0].to_string();
    assert!(line.contains("dropped outside the archiver"), "{line}");
}

#[tokio::test]
async fn a_checkpoint_deleted_from_postgresql_or_from_s3_is_named() {
    let log = Log::standard().await;
    log.tamper("DELETE FROM checkpoints WHERE tenant_id = 'acme' AND tree_size = 250")
        .await;
    log.s3_delete(&log.key_of(100).await).await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["checkpoint_missing", "checkpoint_missing"]);
    let missing: Vec<(Store, Option<u64>)> = report
        .findings
        .iter()
        .map(|f| match f {
            Finding::CheckpointMissing {
                missing_from,
                checkpoint,
            } => (*missing_from, checkpoint.size),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        missing.contains(&(Store::Postgresql, Some(250))),
        "{missing:?}"
    );
    assert!(missing.contains(&(Store::S3, Some(100))), "{missing:?}");
    assert_eq!((report.checkpoints.total, report.checkpoints.valid), (3, 1));
}

#[tokio::test]
async fn a_checkpoint_with_a_forged_signature_is_named_in_both_stores() {
    let log = Log::standard().await;
    // The note of size 250 with another root, under the genuine signature line.
    let key = log.key_of(250).await;
    let client = log.db.client().await;
    let note: String = client
        .query_one(
            "SELECT note FROM checkpoints WHERE tenant_id = 'acme' AND tree_size = 250",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut lines: Vec<String> = note.split('\n').map(str::to_string).collect();
    lines[2] = sentinel_domain::merkle::Hash::leaf(b"forged").to_base64();
    let forged = lines.join("\n");
    log.tamper(&format!(
        "UPDATE checkpoints SET note = '{forged}' WHERE tenant_id = 'acme' AND tree_size = 250"
    ))
    .await;
    log.s3_put(&key, forged.as_bytes()).await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["checkpoint_invalid", "checkpoint_invalid"]);
    for finding in &report.findings {
        let Finding::CheckpointInvalid {
            checkpoint, reason, ..
        } = finding
        else {
            unreachable!()
        };
        assert_eq!(checkpoint.size, Some(250));
        assert_eq!(reason, "the signature of sentinel/test does not verify");
    }
    assert_eq!(report.checkpoints.valid, 2);
}

#[tokio::test]
async fn a_log_rolled_back_to_an_older_tree_is_caught_by_the_last_trusted_checkpoint() {
    let log = Log::standard().await;
    let first = log.verify_with(&log.config(true)).await;
    assert!(first.ok(), "{:?}", first.findings);
    assert_eq!(first.trusted.saved.as_ref().unwrap().size, Some(300));
    // Everything after size 250 removed, its checkpoint too, in both stores: what is left
    // is a consistent, signed, older log.
    let newest = log.key_of(300).await;
    log.tamper(
        "DELETE FROM audit_events WHERE tenant_id = 'acme' AND id IN \
             (SELECT event_id FROM log_entries WHERE tenant_id = 'acme' AND log_index >= 250); \
         DELETE FROM log_entries WHERE tenant_id = 'acme' AND log_index >= 250; \
         UPDATE tenant_logs SET size = 250 WHERE tenant_id = 'acme'; \
         DELETE FROM checkpoints WHERE tenant_id = 'acme' AND tree_size = 300",
    )
    .await;
    log.s3_delete(&newest).await;
    // Without its memory the verifier cannot tell.
    assert!(log.verify().await.ok());

    let report = log.verify_with(&log.config(true)).await;

    assert_eq!(kinds(&report), ["rolled_back"]);
    let Finding::RolledBack {
        trusted,
        largest_size,
    } = &report.findings[0]
    else {
        unreachable!()
    };
    assert_eq!((trusted.size, *largest_size), (Some(300), Some(250)));
    assert!(
        report.trusted.saved.is_none(),
        "a failed run trusts nothing new"
    );
}

#[tokio::test]
async fn a_log_rebuilt_with_other_events_after_the_trusted_checkpoint_is_inconsistent_with_it() {
    let log = Log::standard().await;
    assert!(log.verify_with(&log.config(true)).await.ok());
    // A fork: the log rebuilt from scratch with other events, signed by the real key (a
    // compromised checkpointer), in both stores.
    log.tamper(
        "DELETE FROM checkpoints WHERE tenant_id = 'acme'; DELETE FROM log_entries WHERE tenant_id = 'acme'; \
         DELETE FROM log_heads WHERE tenant_id = 'acme'; DELETE FROM log_subtrees WHERE tenant_id = 'acme'; \
         DELETE FROM audit_events WHERE tenant_id = 'acme'; DELETE FROM event_ids WHERE tenant_id = 'acme'; \
         DELETE FROM tenant_logs WHERE tenant_id = 'acme'",
    )
    .await;
    for key in log.s3_keys().await {
        log.s3_delete(&key).await;
    }
    log.store(&events("b", 0..320, "2026-11-21T10:00:00Z"))
        .await;
    assert_eq!(log.checkpoint().await, 320);

    let report = log.verify_with(&log.config(true)).await;

    assert_eq!(kinds(&report), ["inconsistent_with_trusted"]);
    let Finding::InconsistentWithTrusted { trusted, .. } = &report.findings[0] else {
        unreachable!()
    };
    assert_eq!(trusted.size, Some(300));
}

#[tokio::test]
async fn the_range_recomputes_only_its_rows_and_says_so() {
    let log = log().await;
    log.store(&events("oct", 0..30, "2026-10-15T08:00:00Z"))
        .await;
    log.store(&events("nov", 0..20, "2026-11-20T10:00:00Z"))
        .await;
    log.checkpoint().await;
    // An edit outside the range is not recomputed; the tree still uses every logged leaf.
    log.tamper(
        "UPDATE audit_events SET actor_id = 'mallory' WHERE tenant_id = 'acme' AND id = 'oct-3'",
    )
    .await;
    let mut config = log.config(false);
    config.from = Some("2026-11-01T00:00:00Z".parse().unwrap());

    let report = log.verify_with(&config).await;

    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(
        (
            report.events.checked,
            report.events.valid,
            report.events.outside_range
        ),
        (20, 20, 30)
    );
    assert!(report
        .to_text()
        .contains("30 events outside the requested range"));
    // The whole log finds it.
    let whole = log.verify().await;
    assert_eq!(kinds(&whole), ["row_edited"]);
}

// The verifier against hostile checkpoints: each is put in both stores, so that only the
// note itself is wrong.

async fn hostile(log: &Log, size: u64, note: &[u8]) -> Report {
    let at = "2026-01-01T00:00:00.000000Z";
    let key = format!("checkpoints/{TENANT}/{size:020}-20260101T000000.000000Z.note");
    let text = String::from_utf8_lossy(note).replace('\'', "''");
    log.tamper(&format!(
        "INSERT INTO checkpoints (tenant_id, tree_size, root_hash, signed_at, note) \
         VALUES ('acme', {size}, sha256('x'), '{at}', '{text}')"
    ))
    .await;
    log.s3_put(&key, note).await;
    log.verify().await
}

fn only_invalid(report: &Report) -> Vec<(Store, String)> {
    assert_eq!(
        kinds(report),
        ["checkpoint_invalid", "checkpoint_invalid"],
        "{:?}",
        report.findings
    );
    report
        .findings
        .iter()
        .map(|f| match f {
            Finding::CheckpointInvalid { store, reason, .. } => (*store, reason.clone()),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// `text` signed by `signer`, under the name and ID of `key`.
async fn signed(text: &str, signer: &MemorySigner, key: &VerifierKey) -> String {
    let signature = signer.sign(text.as_bytes()).await.unwrap();
    SignedNote::new(text.to_string(), vec![key.signature_line(signature)])
        .unwrap()
        .to_text()
}

#[tokio::test]
async fn hostile_notes_malformed_truncated_and_signed_by_another_key_are_each_refused() {
    let log = Log::standard().await;
    let text = "sentinel/test/acme\n300\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 2026-01-01T00:00:00.000000Z\n";

    let garbage = hostile(&log, 7, b"not a note at all").await;
    for (_, reason) in only_invalid(&garbage) {
        assert_eq!(
            reason,
            "no blank line separates the text from the signatures"
        );
    }

    let genuine = signed(text, &log.signer, &log.key).await;
    let truncated = &genuine.as_bytes()[..genuine.len() - 20];
    let log2 = Log::standard().await;
    for (_, reason) in only_invalid(&hostile(&log2, 7, truncated).await) {
        assert!(
            reason.contains("signature line 1") || reason.contains("newline"),
            "{reason}"
        );
    }

    // Another key under the stack's key name: its key ID is not the stack's.
    let other = MemorySigner::new("mallory");
    let other_key = other.verifier("sentinel/test");
    let log3 = Log::standard().await;
    let report = hostile(&log3, 7, signed(text, &other, &other_key).await.as_bytes()).await;
    for (_, reason) in only_invalid(&report) {
        assert_eq!(reason, "no signature from a known key");
    }
}

#[tokio::test]
async fn hostile_notes_with_wrong_sizes_are_refused_or_fail_the_tree() {
    let log = Log::standard().await;
    // A genuinely signed checkpoint (a compromised signer) of a size the log never had.
    // Signed between the checkpoints of 250 and 300, so sizes still grow with time.
    let root = sentinel_domain::merkle::Hash::leaf(b"never").to_base64();
    let at = sentinel_domain::fields::Timestamp::new(
        *log.clock.lock().unwrap() - chrono::Duration::seconds(30),
    )
    .unwrap();
    let text = format!(
        "sentinel/test/acme\n299\n{root}\n{}\n",
        sentinel_domain::log::time_line(at)
    );
    let note = signed(&text, &log.signer, &log.key).await;
    let key = sentinel_domain::log::checkpoint_key(&TENANT.parse().unwrap(), 299, at);
    log.tamper(&format!(
        "INSERT INTO checkpoints (tenant_id, tree_size, root_hash, signed_at, note) \
         VALUES ('acme', 299, decode('{root}', 'base64'), '{}', '{note}')",
        sentinel_verify::checkpoints::rfc3339(at.get())
    ))
    .await;
    log.s3_put(&key, note.as_bytes()).await;

    let report = log.verify().await;

    // Its signature verifies, its root does not.
    assert_eq!(kinds(&report), ["root_mismatch"], "{:?}", report.findings);
    let Finding::RootMismatch { checkpoint, .. } = &report.findings[0] else {
        unreachable!()
    };
    assert_eq!(checkpoint.size, Some(299));

    // A size with a leading zero, and a size beyond 2^64, never parse.
    let log2 = Log::standard().await;
    let text = format!("sentinel/test/acme\n0299\n{root}\ntime 2026-01-01T00:00:00.000000Z\n");
    let report = hostile(
        &log2,
        299,
        signed(&text, &log2.signer, &log2.key).await.as_bytes(),
    )
    .await;
    for (_, reason) in only_invalid(&report) {
        assert!(reason.contains("tree size"), "{reason}");
    }
    // The store's row says another size than the note: mislabeled.
    let log3 = Log::standard().await;
    let text = format!("sentinel/test/acme\n300\n{root}\ntime 2026-01-01T00:00:00.000000Z\n");
    let note = signed(&text, &log3.signer, &log3.key).await;
    log3.tamper(&format!(
        "INSERT INTO checkpoints (tenant_id, tree_size, root_hash, signed_at, note) \
         VALUES ('acme', 3000, decode('{root}', 'base64'), '2026-01-01T00:00:00Z', '{note}')"
    ))
    .await;
    let report = log3.verify().await;
    assert!(
        report.of_kind("checkpoint_mislabeled").iter().any(|f| f
            .to_string()
            .contains("the store says size 3000, the note 300")),
        "{:?}",
        report.findings
    );
}

// The archive (issue 11, point 4): a month the real archiver exported, signed and dropped,
// verified from S3 against the log.

/// The archived month: February 2024, past any retention.
const ARCHIVED: &str = "2024-02";

impl Log {
    /// 60 events in February 2024 and 40 in November 2026, checkpointed, then February
    /// archived by the real archiver (its role, a key of its own) and its partition dropped.
    async fn archived() -> Log {
        let log = log().await;
        log.store(&events("feb", 0..60, "2024-02-10T10:00:00Z"))
            .await;
        log.store(&events("nov", 0..40, "2026-11-20T10:00:00Z"))
            .await;
        assert_eq!(log.checkpoint().await, 100);
        log.archive().await;
        log
    }

    async fn archive(&self) {
        let signing = archiver::ManifestSigning::new(
            STACK,
            self.archive_key.spki_der(),
            self.archive_signer.clone(),
        )
        .unwrap();
        let settings = archiver::Settings {
            bucket: self.bucket.clone(),
            stack: STACK.into(),
            signing_key_id: "in memory".into(),
            retention_months: 3,
            premake_months: 0,
        };
        let archiver = archiver::Archiver::new(
            pool_as(&self.db, "sentinel_archiver"),
            self.s3.clone(),
            settings,
            signing,
        );
        let summary = archiver.run(Utc::now()).await.unwrap();
        assert_eq!(summary.dropped, vec![ARCHIVED.to_string()], "{summary:?}");
    }

    async fn s3_get(&self, key: &str) -> Vec<u8> {
        use sentinel_domain::archive::ArchiveBucket as _;
        Bucket::new(self.s3.clone(), self.bucket.clone())
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{key} is not in the bucket"))
    }

    fn month() -> sentinel_domain::Month {
        sentinel_domain::Month::new(2024, 2).unwrap()
    }
}

fn archived_event(finding: &Finding) -> (String, Option<u64>) {
    match finding {
        Finding::ArchivedRowEdited { event, .. }
        | Finding::ArchivedRowMissing { event }
        | Finding::ArchivedRowInserted { event, .. }
        | Finding::ArchivedRowUnreadable { event, .. } => (event.event_id.clone(), event.log_index),
        other => panic!("not an archived event finding: {other:?}"),
    }
}

#[tokio::test]
async fn an_archived_month_verifies_from_s3_with_no_finding() {
    let log = Log::archived().await;

    let report = log.verify().await;

    assert!(report.ok(), "{:?}", report.findings);
    let archive = report.archive.as_ref().unwrap();
    assert_eq!((archive.notes, archive.valid_notes), (1, 1));
    assert_eq!((archive.months, archive.parts), (1, 1));
    assert_eq!((archive.checked, archive.valid), (60, 60));
    assert_eq!(
        report.events.archived, 60,
        "the tree took their logged leaves"
    );
    assert_eq!((report.events.checked, report.events.valid), (40, 40));
    let text = report.to_text();
    assert!(text.contains("1/1 manifest notes valid"), "{text}");
    assert!(
        text.contains("60/60 archived events valid (1 months, 1 Parquet parts read)"),
        "{text}"
    );
}

/// Rewrites the month's part with `change` applied to its record batches, as an attacker
/// with write access to the bucket would: a valid Parquet file, re-encoded.
async fn rewrite_part(
    log: &Log,
    change: impl Fn(arrow_array::RecordBatch) -> arrow_array::RecordBatch,
) -> String {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let key = Log::month().part_key(0);
    let bytes = log.s3_get(&key).await;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(|b| change(b.unwrap())).collect();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(Vec::new(), batches[0].schema(), None).unwrap();
    for batch in &batches {
        writer.write(batch).unwrap();
    }
    log.s3_put(&key, &writer.into_inner().unwrap()).await;
    key
}

/// `batch` with the `action` of the row whose id is `id` set to `action`.
fn with_action(
    batch: arrow_array::RecordBatch,
    id: &str,
    action: &str,
) -> arrow_array::RecordBatch {
    use arrow_array::{Array, StringArray};
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .clone();
    let index = batch.schema().index_of("action").unwrap();
    let actions = batch
        .column(index)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let changed: StringArray = (0..actions.len())
        .map(|i| {
            Some(if ids.value(i) == id {
                action
            } else {
                actions.value(i)
            })
        })
        .collect();
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(changed);
    arrow_array::RecordBatch::try_new(batch.schema(), columns).unwrap()
}

#[tokio::test]
async fn an_archived_part_replaced_by_a_reencoded_one_with_one_value_changed_is_named() {
    let log = Log::archived().await;
    let part = rewrite_part(&log, |b| with_action(b, "feb-17", "role_revoke")).await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["archived_row_edited", "part_replaced"]);
    let edited = &report.of_kind("archived_row_edited")[0];
    assert_eq!(archived_event(edited), ("feb-17".into(), Some(17)));
    assert!(matches!(
        report.of_kind("part_replaced")[0],
        Finding::PartReplaced { part: p, month, .. } if *p == part && month == ARCHIVED
    ));
    let line = edited.to_string();
    assert!(
        line.starts_with("event feb-17 at log index 17 (month 2024-02) INVALID: its archived row in audit_events/year=2024/month=02/part-00000.parquet was changed"),
        "{line}"
    );
    let archive = report.archive.as_ref().unwrap();
    assert_eq!((archive.checked, archive.valid), (60, 59));
}

#[tokio::test]
async fn an_archived_part_whose_leaf_column_alone_was_changed_is_named() {
    use arrow_array::{Array, FixedSizeBinaryArray};
    let log = Log::archived().await;
    rewrite_part(&log, |batch| {
        let index = batch.schema().index_of("leaf_hash").unwrap();
        let hashes = batch
            .column(index)
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .unwrap();
        let changed = FixedSizeBinaryArray::try_from_iter((0..hashes.len()).map(|i| {
            if i == 3 {
                [7u8; 32].to_vec()
            } else {
                hashes.value(i).to_vec()
            }
        }))
        .unwrap();
        let mut columns = batch.columns().to_vec();
        columns[index] = Arc::new(changed);
        arrow_array::RecordBatch::try_new(batch.schema(), columns).unwrap()
    })
    .await;

    let report = log.verify().await;

    assert_eq!(kinds(&report), ["archived_row_edited", "part_replaced"]);
    assert_eq!(
        archived_event(report.of_kind("archived_row_edited")[0]),
        ("feb-3".into(), Some(3))
    );
}

#[tokio::test]
async fn a_deleted_archived_part_is_named_with_every_event_it_held() {
    let log = Log::archived().await;
    log.s3_delete(&Log::month().part_key(0)).await;

    let report = log.verify().await;

    let mut expected = vec!["part_missing"];
    expected.extend(std::iter::repeat_n("archived_row_missing", 60));
    expected.sort();
    assert_eq!(kinds(&report), expected);
    let missing: Vec<(String, Option<u64>)> = report
        .of_kind("archived_row_missing")
        .into_iter()
        .map(archived_event)
        .collect();
    assert_eq!(missing[0], ("feb-0".into(), Some(0)));
    assert_eq!(missing[59], ("feb-59".into(), Some(59)));
    assert!(report.findings.iter().any(|f| f.to_string()
        == "month 2024-02: part audit_events/year=2024/month=02/part-00000.parquet NOT FOUND: deleted"));
}

#[tokio::test]
async fn an_edited_manifest_is_named_by_its_signed_note() {
    let log = Log::archived().await;
    let key = Log::month().manifest_key();
    let manifest = String::from_utf8(log.s3_get(&key).await).unwrap();
    // Hide the part's true checksum behind one that matches a replacement.
    let edited = manifest.replacen("\"sha256\": \"", "\"sha256\": \"00", 1);
    assert_ne!(edited, manifest);
    log.s3_put(&key, edited.as_bytes()).await;

    let report = log.verify().await;

    assert!(
        kinds(&report).contains(&"manifest_invalid"),
        "{:?}",
        report.findings
    );
    let line = report.of_kind("manifest_invalid")[0].to_string();
    assert!(
        line.contains("is not the manifest its newest signed note (number 0) names"),
        "{line}"
    );
}

#[tokio::test]
async fn a_deleted_or_forged_manifest_note_is_named() {
    let log = Log::archived().await;
    let key = sentinel_domain::archive_chain::note_key(0);
    let note = log.s3_get(&key).await;

    log.s3_delete(&key).await;
    let deleted = log.verify().await;

    assert_eq!(kinds(&deleted), ["manifest_note_missing"]);
    assert_eq!(
        deleted.findings[0],
        Finding::ManifestNoteMissing {
            missing_from: vec![Store::S3],
            seq: 0
        }
    );

    // The same text, signed by another key under the archive key's name.
    let signed_note = SignedNote::parse(&note).unwrap();
    let other = MemorySigner::new("not the archive key");
    let forged = signed(
        signed_note.text(),
        &other,
        &other.verifier(&format!("sentinel/{STACK}/archive")),
    )
    .await;
    log.s3_put(&key, forged.as_bytes()).await;
    let report = log.verify().await;

    let mut found = kinds(&report);
    found.dedup();
    assert_eq!(
        found,
        ["manifest_note_copies_differ", "manifest_note_invalid"]
    );
}

#[tokio::test]
async fn an_archived_month_whose_log_entries_were_rewritten_with_the_archive_fails_the_tree() {
    // Changing an archived row and its log entry together leaves the archive matching the
    // log, but not the signed checkpoint.
    let log = Log::archived().await;
    rewrite_part(&log, |b| with_action(b, "feb-5", "role_revoke")).await;
    log.tamper(
        "UPDATE log_entries SET leaf_hash = sha256('forged') WHERE tenant_id = 'acme' AND log_index = 5",
    )
    .await;

    let report = log.verify().await;

    let found = kinds(&report);
    assert!(found.contains(&"root_mismatch"), "{found:?}");
    assert!(found.contains(&"part_replaced"), "{found:?}");
}

// From S3 alone (`--s3-only`): the checkpoints from the checkpoint bucket, the log from the
// tiles the archiver put beside the archive, PostgreSQL not read at all.

impl Log {
    async fn verify_s3_only(&self) -> Report {
        let s3 = S3Checkpoints::new(self.s3.clone(), self.bucket.clone());
        let archive = S3Archive::new(self.s3.clone(), self.bucket.clone());
        let report =
            sentinel_verify::verify_s3_only(&self.config(false), &s3, &archive, &NoProgress)
                .await
                .unwrap();
        println!("{}", report.to_text());
        report
    }

    /// The key of the one tile the archiver put for the 100 events of [`Log::archived`].
    fn tile() -> String {
        sentinel_domain::tiles::tile_key(&TENANT.parse().unwrap(), 0, 100)
    }
}

#[tokio::test]
async fn an_archived_month_verifies_from_s3_alone_whatever_became_of_the_database() {
    let log = Log::archived().await;
    // The database's log and rows are gone: S3 alone must still verify the archived month.
    log.tamper("DELETE FROM log_entries; DELETE FROM checkpoints; DELETE FROM audit_events")
        .await;

    let report = log.verify_s3_only().await;

    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.compared_by, "tiles");
    let tiles = report.tiles.as_ref().unwrap();
    assert_eq!((tiles.tiles, tiles.leaves), (1, 100));
    assert_eq!(
        (tiles.checkpoints_checked, tiles.checkpoints_matched),
        (1, 1)
    );
    let archive = report.archive.as_ref().unwrap();
    assert_eq!((archive.notes, archive.valid_notes), (1, 1));
    assert_eq!((archive.checked, archive.valid), (60, 60));
    assert_eq!(
        (report.checkpoints.in_s3, report.checkpoints.valid),
        (Some(1), 1)
    );
    let text = report.to_text();
    assert!(text.contains("PostgreSQL not read: --s3-only"), "{text}");
    assert!(
        text.contains("1/1 checkpoints' roots rebuilt from 1 tiles of the log"),
        "{text}"
    );
    assert!(
        text.contains("60/60 archived events valid (1 months, 1 Parquet parts read)"),
        "{text}"
    );
    // And the database's verify, run now, names what was done to it.
    assert!(!log.verify().await.ok());
}

#[tokio::test]
async fn from_s3_alone_a_reencoded_part_with_one_value_changed_is_named() {
    let log = Log::archived().await;
    let part = rewrite_part(&log, |b| with_action(b, "feb-17", "role_revoke")).await;

    let report = log.verify_s3_only().await;

    assert_eq!(kinds(&report), ["archived_row_edited", "part_replaced"]);
    let edited = &report.of_kind("archived_row_edited")[0];
    assert_eq!(archived_event(edited), ("feb-17".into(), Some(17)));
    assert!(matches!(
        report.of_kind("part_replaced")[0],
        Finding::PartReplaced { part: p, .. } if *p == part
    ));
    let archive = report.archive.as_ref().unwrap();
    assert_eq!((archive.checked, archive.valid), (60, 59));
}

#[tokio::test]
async fn from_s3_alone_a_changed_tile_fails_the_signed_root_and_names_the_row() {
    let log = Log::archived().await;
    let key = Log::tile();
    let mut tile = log.s3_get(&key).await;
    tile[17 * 32] ^= 1;
    log.s3_put(&key, &tile).await;

    let report = log.verify_s3_only().await;

    assert_eq!(
        kinds(&report),
        ["archived_row_edited", "log_tiles_root_mismatch"]
    );
    assert_eq!(
        archived_event(report.of_kind("archived_row_edited")[0]),
        ("feb-17".into(), Some(17))
    );
    let line = report.of_kind("log_tiles_root_mismatch")[0].to_string();
    assert!(
        line.starts_with("checkpoint of size 100 signed at ")
            && line.ends_with(
                "INVALID: the log's tiles in S3 do not rebuild its root (a tile was changed)"
            ),
        "{line}"
    );
}

#[tokio::test]
async fn from_s3_alone_a_tile_cut_short_or_deleted_leaves_the_month_unverifiable() {
    let log = Log::archived().await;
    let key = Log::tile();
    let tile = log.s3_get(&key).await;
    log.s3_put(&key, &tile[..tile.len() - 32]).await;

    let report = log.verify_s3_only().await;
    assert_eq!(kinds(&report), ["archive_unverifiable", "log_tile_invalid"]);
    assert!(
        report.of_kind("log_tile_invalid")[0]
            .to_string()
            .contains("it is 3168 bytes, not the 3200 of 100 leaf hashes"),
        "{:?}",
        report.findings
    );

    log.s3_delete(&key).await;
    let report = log.verify_s3_only().await;
    assert_eq!(kinds(&report), ["archive_unverifiable"]);
    assert!(
        report.of_kind("archive_unverifiable")[0]
            .to_string()
            .contains(
                "60 archived rows have log indexes past the 0 leaves of the log's tiles in S3"
            ),
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn from_s3_alone_a_deleted_covering_checkpoint_is_named() {
    let log = Log::archived().await;
    let key = log.key_of(100).await;
    log.s3_delete(&key).await;

    let report = log.verify_s3_only().await;

    assert_eq!(kinds(&report), ["archive_checkpoint_unknown"]);
    assert!(
        report.of_kind("archive_checkpoint_unknown")[0]
            .to_string()
            .contains("the checkpoint of size 100 with root"),
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn from_s3_alone_a_forged_manifest_note_is_named() {
    let log = Log::archived().await;
    let key = sentinel_domain::archive_chain::note_key(0);
    let mut note = log.s3_get(&key).await;
    let at = note.iter().position(|&b| b == b'\n').unwrap() + 1;
    note[at] ^= 1;
    log.s3_put(&key, &note).await;

    let report = log.verify_s3_only().await;

    assert!(
        kinds(&report).contains(&"manifest_note_invalid"),
        "{:?}",
        report.findings
    );
    let archive = report.archive.as_ref().unwrap();
    assert_eq!(archive.valid_notes, 0);
}
