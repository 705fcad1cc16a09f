//! The checkpointer as deployed wires it: signed by a KMS key and copied to an S3 bucket with
//! Object Lock, on LocalStack, with PostgreSQL; the key, bucket and database are this test's own.

use std::sync::Arc;
use std::time::Duration;

use checkpointer::{Run, Settings};
use chrono::Utc;
use sentinel_aws::kms::KmsSigner;
use sentinel_aws::s3::Bucket;
use sentinel_domain::checkpoint::{open_checkpoint, KeyName, VerifierKey};
use sentinel_domain::log;
use sentinel_domain::merkle;
use sentinel_domain::store::EventStore;
use sentinel_domain::AuditEvent;
use sentinel_postgres::log::Checkpointer;
use sentinel_postgres::pool;
use sentinel_postgres::writer::PgEventStore;
use sentinel_testing::log::sample_event;
use sentinel_testing::{unique_name, TestDatabase};

#[tokio::test]
async fn checkpoints_signed_in_kms_verify_with_its_public_key_and_are_kept_in_s3() {
    sentinel_testing::localstack_env();
    let aws = sentinel_aws::config().await;
    let alias = format!("alias/{}", unique_name("sentinel-test-checkpoints"));
    let key_id = sentinel_aws::kms::ensure_signing_key(&aws, &alias)
        .await
        .unwrap();
    // A second call finds the same key by its alias.
    assert_eq!(
        sentinel_aws::kms::ensure_signing_key(&aws, &alias)
            .await
            .unwrap(),
        key_id
    );
    let s3 = sentinel_aws::s3::client(&aws);
    let bucket = unique_name("sentinel-test-checkpoints");
    s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let settings = Settings {
        bucket: bucket.clone(),
        signing_key_id: alias.clone(),
        stack: "kms-test".into(),
        heartbeat: Duration::from_secs(3000),
    };
    let signer = KmsSigner::new(&aws, &alias);
    let spki = signer.public_key().await.unwrap();
    let key = checkpointer::verifier_key(&settings, &spki).unwrap();
    let db = TestDatabase::create().await;
    let checkpointer = Checkpointer::new(
        pool(
            &format!("{}?options=-c%20role%3Dsentinel_checkpointer", db.url),
            2,
        )
        .unwrap(),
        &settings.stack,
        key.clone(),
        Arc::new(signer),
        Arc::new(Bucket::new(s3.clone(), &bucket)),
        settings.heartbeat,
    );
    let events: Vec<AuditEvent> = (0..7)
        .map(|i| sample_event("acme", &format!("e{i}"), "2026-11-30T23:59:59Z"))
        .collect();
    PgEventStore::new(pool(&db.url, 1).unwrap())
        .store(&events)
        .await
        .unwrap();

    let summary = Run::new(&checkpointer).run(Utc::now()).await.unwrap();

    assert_eq!((summary.signed, summary.appended), (1, 7), "{summary:?}");
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("checkpoints/acme/")
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with("checkpoints/acme/00000000000000000007-"),
        "{keys:?}"
    );
    let note = s3
        .get_object()
        .bucket(&bucket)
        .key(&keys[0])
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    // An auditor holding only the public key (as `sentinel public-key` prints it) opens it.
    let auditor_key =
        VerifierKey::from_spki_der(KeyName::parse("sentinel/kms-test").unwrap(), &spki).unwrap();
    let origin = log::origin("kms-test", &"acme".parse().unwrap()).unwrap();
    let checkpoint = open_checkpoint(&note, &origin, &[auditor_key]).unwrap();
    let leaves: Vec<_> = events.iter().map(AuditEvent::leaf_hash).collect();
    assert_eq!(
        (checkpoint.size(), *checkpoint.root()),
        (7, merkle::root(&leaves))
    );
    let stored: String = db
        .client()
        .await
        .query_one("SELECT note FROM checkpoints WHERE tenant_id = 'acme'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored.as_bytes(),
        &note[..],
        "PostgreSQL and S3 hold the same note"
    );
    // A note signed by KMS does not open with another key.
    let other =
        sentinel_testing::log::MemorySigner::new("not the kms key").verifier("sentinel/kms-test");
    assert!(open_checkpoint(&note, &origin, &[other]).is_err());

    for key in keys {
        // Object Lock without a default retention lets a test bucket go.
        let versions = s3
            .list_object_versions()
            .bucket(&bucket)
            .prefix(&key)
            .send()
            .await
            .unwrap();
        for v in versions.versions() {
            s3.delete_object()
                .bucket(&bucket)
                .key(&key)
                .set_version_id(v.version_id().map(str::to_string))
                .send()
                .await
                .unwrap();
        }
    }
    s3.delete_bucket().bucket(&bucket).send().await.unwrap();
    let kms = aws_sdk_kms::Client::new(&aws);
    kms.delete_alias().alias_name(&alias).send().await.unwrap();
    kms.schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
}
