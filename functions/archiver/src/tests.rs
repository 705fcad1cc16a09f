//! The state machine, step by step, over the in-memory ledger and bucket of [`crate::fakes`]:
//! no PostgreSQL, no S3.

use std::collections::BTreeMap;

use arrow_array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

use super::*;
use crate::fakes::{rows_in, CrashAt, FakeBucket, FakeLedger, FakeRow, World};

/// Mid-February 2026.
fn now() -> DateTime<Utc> {
    "2026-02-15T12:00:00Z".parse().unwrap()
}

/// Two years before [`now`]: well past any retention.
fn old_month() -> Month {
    Month::of(now()).plus(-24)
}

fn archiver_with(world: &World, retention_months: u32) -> Archiver<FakeLedger, FakeBucket> {
    Archiver::from_adapters(
        world.ledger(),
        world.bucket(),
        Settings {
            bucket: "fake-archive".into(),
            stack: "test".into(),
            signing_key_id: "memory".into(),
            retention_months,
            premake_months: 3,
        },
        signing(),
        // Small parts and row groups, so a hundred rows give several of each.
        Tuning {
            batch_rows: 10,
            part_rows: 40,
            row_group_rows: 16,
            ..Tuning::default()
        },
    )
}

/// Manifests signed by a key in memory, named for the stack `test`.
fn signing() -> ManifestSigning {
    let signer = Arc::new(sentinel_testing::log::MemorySigner::new(
        "archiver unit tests",
    ));
    let spki = signer.verifier("unused").spki_der().to_vec();
    ManifestSigning::new("test", &spki, signer).unwrap()
}

fn archiver(world: &World) -> Archiver<FakeLedger, FakeBucket> {
    archiver_with(world, 3)
}

/// The ids a Parquet file holds, in order.
fn ids_in(parquet: Vec<u8>) -> Vec<String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(parquet))
        .unwrap()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        ids.extend((0..column.len()).map(|i| column.value(i).to_string()));
    }
    ids
}

/// Each part's key and SHA-256, as the bucket holds them.
fn part_checksums(world: &World, month: Month) -> BTreeMap<String, String> {
    world
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&month.prefix()) && k.ends_with(".parquet"))
        .map(|k| {
            let sum = hex::encode(Sha256::digest(world.object(&k).unwrap()));
            (k, sum)
        })
        .collect()
}

/// The month is archived: its partition is gone, each of its tables was dropped exactly
/// once, the bucket holds the manifest and exactly the parts it lists (each matching its
/// size and SHA-256, nothing unfinished), and the parts hold every row of `expected` once.
/// The tenant's log is in the bucket as tiles up to the manifest's covering checkpoint, each
/// tile the log's leaves (the fake's leaf of index i is 32 bytes of i).
fn assert_tiles(world: &World, manifest: &sentinel_domain::manifest::Manifest) {
    use sentinel_domain::tiles;
    let tenant: sentinel_domain::fields::TenantId = crate::fakes::FAKE_TENANT.parse().unwrap();
    let Some(size) = manifest
        .log_of(tenant.as_str())
        .and_then(|l| l.checkpoint.as_ref())
        .map(|c| c.tree_size)
    else {
        return;
    };
    for (n, width) in tiles::tiles_of(size) {
        let (exact, full) = (
            world.object(&tiles::tile_key(&tenant, n, width)),
            world.object(&tiles::tile_key(&tenant, n, tiles::TILE_WIDTH)),
        );
        let bytes = exact
            .or(full)
            .unwrap_or_else(|| panic!("tile {n} of width {width} is in the bucket"));
        let leaves = tiles::decode_tile(&bytes, bytes.len() as u64 / 32).unwrap();
        assert!(leaves.len() as u64 >= width);
        for (i, leaf) in leaves.iter().enumerate() {
            let index = n * tiles::TILE_WIDTH + i as u64;
            assert_eq!(leaf.as_bytes(), &[index as u8; 32], "leaf {index}");
        }
    }
}

fn assert_archived(world: &World, month: Month, expected: &[FakeRow]) {
    assert_eq!(world.state(month), Some(State::Dropped));
    assert_eq!(world.partition(month), Partition::Absent);
    let drops = world.drops(month);
    let mut once = drops.clone();
    once.dedup();
    assert_eq!(drops, once, "no table dropped twice");
    assert!(world.open_uploads().is_empty(), "no unfinished upload");
    let manifest = world.manifest(month).expect("a manifest");
    assert_eq!(
        world.progress(month).unwrap().manifest.as_ref(),
        Some(&manifest),
        "the manifest recorded is the one in the bucket"
    );
    let mut keys: Vec<String> = manifest.parts.iter().map(|p| p.key.clone()).collect();
    keys.push(month.manifest_key());
    keys.sort();
    let under_month: Vec<String> = world
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&month.prefix()))
        .collect();
    assert_eq!(
        under_month, keys,
        "the manifest and its parts, nothing stray"
    );
    assert_tiles(world, &manifest);
    let mut archived = Vec::new();
    for part in &manifest.parts {
        let bytes = world.object(&part.key).unwrap();
        assert_eq!(bytes.len() as u64, part.bytes, "{}", part.key);
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            part.sha256,
            "{}",
            part.key
        );
        let ids = ids_in(bytes);
        assert_eq!(ids.len() as u64, part.rows, "{}", part.key);
        archived.extend(ids);
    }
    archived.sort();
    let mut expected: Vec<String> = expected.iter().map(|r| r.id.clone()).collect();
    expected.sort();
    assert_eq!(archived, expected, "every row archived exactly once");
    assert_eq!(manifest.rows, expected.len() as u64);
    assert_chain(world, month);
}

/// Every note of the chain is in the bucket as the ledger keeps it, verifies with the
/// archiver's public key, names the note before it, and the month's newest note names the
/// manifest the bucket holds.
fn assert_chain(world: &World, month: Month) {
    use sentinel_domain::archive_chain::{note_key, sha256, ManifestNote};
    let key = signing().key;
    let notes = world.notes();
    let mut previous = None;
    for (seq, note) in notes.iter().enumerate() {
        assert_eq!(note.seq, seq as u64, "no gap in the chain");
        assert_eq!(
            world.object(&note_key(note.seq)).as_deref(),
            Some(note.note.as_bytes()),
            "note {seq} is in the bucket"
        );
        let signed = SignedNote::parse(note.note.as_bytes()).unwrap();
        signed.verify(std::slice::from_ref(&key)).unwrap();
        let body = ManifestNote::parse(signed.text(), "test").unwrap();
        assert_eq!(
            body.previous, previous,
            "note {seq} names the note before it"
        );
        assert_eq!((body.month, body.manifest), (note.month, note.manifest));
        previous = Some(sha256(note.note.as_bytes()));
    }
    let newest = notes
        .iter()
        .rev()
        .find(|n| n.month == month)
        .expect("a note");
    assert_eq!(
        newest.manifest,
        sha256(&world.object(&month.manifest_key()).unwrap()),
        "the month's newest note names its manifest"
    );
    let stray: Vec<String> = world
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("manifests/"))
        .filter(|k| !notes.iter().any(|n| note_key(n.seq) == *k))
        .collect();
    assert!(
        stray.is_empty(),
        "no note the ledger does not keep: {stray:?}"
    );
}

/// The keys of the bucket that are not manifest notes.
fn archive_keys(world: &World) -> Vec<String> {
    world
        .keys()
        .into_iter()
        .filter(|k| !k.starts_with("manifests/"))
        .collect()
}

/// The steps as [`World::crashed`] names them.
fn numbered(steps: &[String]) -> Vec<String> {
    steps
        .iter()
        .enumerate()
        .map(|(i, label)| format!("step {} ({label})", i + 1))
        .collect()
}

fn failed(result: Result<Summary, ArchiveError>) -> Summary {
    match result {
        Err(ArchiveError::MonthsFailed(summary)) => *summary,
        other => panic!("the run must fail for a month: {other:?}"),
    }
}

#[tokio::test]
async fn a_month_past_retention_is_exported_verified_and_dropped() {
    let world = World::new();
    let month = old_month();
    let rows = rows_in(month, 100, "ev");
    world.insert(&rows);

    let summary = archiver(&world).run(now()).await.unwrap();

    let name = month.to_string();
    assert_eq!(summary.exported, vec![name.clone()]);
    assert_eq!(summary.verified, vec![name.clone()]);
    assert_eq!(summary.dropped, vec![name]);
    assert_eq!(summary.rows, 100);
    assert_eq!(summary.created.len(), 4, "this month and the next 3");
    assert_archived(&world, month, &rows);
    let manifest = world.manifest(month).unwrap();
    assert_eq!(
        manifest.parts.iter().map(|p| p.rows).collect::<Vec<_>>(),
        [40, 40, 20]
    );
    assert_eq!(summary.bytes, manifest.bytes);
    assert_eq!(world.drops(month).len(), 1);
    assert!(!world.is_locked(month), "the lock is released");
}

#[tokio::test]
async fn each_part_records_its_tenants_log_indexes_and_the_checkpoint_that_covers_them() {
    let world = World::new();
    let month = old_month();
    world.insert(&rows_in(month, 100, "ev"));
    // The log goes on past the month: the newest checkpoint covers events of a later one.
    world.insert(&rows_in(Month::of(now()), 50, "now"));
    world.set_checkpointed(Some(150));

    archiver(&world).run(now()).await.unwrap();

    let manifest = world.manifest(month).unwrap();
    let ranges: Vec<(u64, Option<u64>, Option<u64>)> = manifest
        .parts
        .iter()
        .map(|p| {
            assert_eq!(p.logs.len(), 1, "one tenant");
            let log = &p.logs[0];
            assert_eq!(log.checkpoint.as_ref().map(|c| c.tree_size), Some(150));
            (log.rows, log.first_index, log.last_index)
        })
        .collect();
    assert_eq!(
        ranges,
        [
            (40, Some(0), Some(39)),
            (40, Some(40), Some(79)),
            (20, Some(80), Some(99))
        ]
    );
    let log = manifest.log_of(crate::fakes::FAKE_TENANT).unwrap();
    assert_eq!((log.rows, log.unlogged), (100, 0));
    assert_eq!((log.first_index, log.last_index), (Some(0), Some(99)));
    assert_eq!(manifest.schema_version, 2);
}

#[tokio::test]
async fn a_month_whose_log_no_checkpoint_covers_yet_waits_and_keeps_every_row() {
    let world = World::new();
    let month = old_month();
    let rows = rows_in(month, 30, "early");
    world.insert(&rows);
    // The newest checkpoint covers indexes 0..29: the last row's index, 29, is not.
    world.set_checkpointed(Some(29));

    let summary = failed(archiver(&world).run(now()).await);

    let error = &summary.failed[0];
    assert!(error.retryable, "{error:?}");
    assert!(
        error
            .error
            .contains("log index 29 is not covered by a signed checkpoint yet")
            && error.error.contains("the newest is of size 29"),
        "{}",
        error.error
    );
    assert_eq!(world.partition(month), Partition::Attached);
    assert_eq!(world.rows(month).unwrap(), rows);
    assert!(world.notes().is_empty(), "nothing signed");

    world.set_checkpointed(Some(30));
    archiver(&world).run(now()).await.unwrap();
    assert_archived(&world, month, &rows);
}

#[tokio::test]
async fn a_note_replaced_in_s3_fails_verification_and_one_lost_from_s3_is_put_back() {
    use sentinel_domain::archive_chain::note_key;
    let month = old_month();
    for replaced in [true, false] {
        let world = World::new();
        let rows = rows_in(month, 20, "noted");
        world.insert(&rows);
        world.crash_at(CrashAt::After("mark_exported"));
        let _ = archiver(&world).run(now()).await;
        world.recover();
        let key = note_key(0);
        if replaced {
            world.put_object(&key, b"a forged note".to_vec());
        } else {
            world.remove_object(&key);
        }

        let result = archiver(&world).run(now()).await;

        if replaced {
            let summary = failed(result);
            assert!(
                summary.failed[0]
                    .error
                    .contains("in S3 is not the note the ledger keeps"),
                "{}",
                summary.failed[0].error
            );
            assert_eq!(world.partition(month), Partition::Attached);
            assert_eq!(world.rows(month).unwrap(), rows);
        } else {
            result.unwrap();
            assert_archived(&world, month, &rows);
        }
    }
}

/// Crashes the archiver after each step of its run in turn: for every step, a world from
/// `arrange` (whose next run would succeed), a run that dies after that step, and a rerun
/// that must succeed, after which `check` looks at the world. Returns the steps of the
/// run that did not crash, each of which a crash followed.
async fn crash_after_every_step<A, F>(arrange: A, check: impl Fn(&World, &str)) -> Vec<String>
where
    A: Fn() -> F,
    F: std::future::Future<Output = World>,
{
    let mut crashes = Vec::new();
    for step in 1.. {
        let world = arrange().await;
        world.crash_at(CrashAt::Step(step));

        let crashed = archiver(&world).run(now()).await;

        let Some(at) = world.crashed() else {
            crashed.expect("a run that did not crash succeeds");
            let steps = world.steps();
            let clean = steps[steps.len() + 1 - step..].to_vec();
            assert_eq!(crashes, numbered(&clean), "a crash after every step");
            return clean;
        };
        assert!(crashed.is_err(), "a run that crashed fails ({at})");
        world.recover();
        archiver(&world)
            .run(now())
            .await
            .unwrap_or_else(|e| panic!("the rerun after a crash at {at} failed: {e}"));
        check(&world, &at);
        crashes.push(at);
    }
    unreachable!()
}

#[tokio::test]
async fn a_crash_after_any_step_of_an_export_is_finished_by_the_next_run_with_the_same_parts() {
    let month = old_month();
    let rows = rows_in(month, 100, "crash");
    let clean = World::new();
    clean.insert(&rows);
    archiver(&clean).run(now()).await.unwrap();
    let clean_parts = part_checksums(&clean, month);
    let arrange = || async {
        let world = World::new();
        world.insert(&rows);
        world
    };

    let steps = crash_after_every_step(arrange, |world, at| {
        assert_archived(world, month, &rows);
        assert_eq!(world.drops(month).len(), 1, "dropped exactly once ({at})");
        assert_eq!(part_checksums(world, month), clean_parts, "{at}");
    })
    .await;

    assert_eq!(steps, clean.steps());
    let labels = steps.join("\n");
    for step in [
        "ensure_partition 2026-05",
        "begin 2024-02",
        "upload audit_events/year=2024/month=02/part-00001.parquet",
        "send audit_events/year=2024/month=02/part-00001.parquet",
        "complete audit_events/year=2024/month=02/part-00002.parquet",
        "put audit_events/year=2024/month=02/_manifest.json",
        "mark_exported 2024-02",
        "mark_verified 2024-02",
        "detach 2024-02",
        "drop_detached 2024-02",
    ] {
        assert!(labels.contains(step), "no step {step}:\n{labels}");
    }
}

#[tokio::test]
async fn a_crash_before_the_drop_leaves_every_row_in_the_database_and_the_lock_free() {
    let month = old_month();
    let rows = rows_in(month, 100, "kept");
    let clean = World::new();
    clean.insert(&rows);
    archiver(&clean).run(now()).await.unwrap();
    let drop = clean
        .steps()
        .iter()
        .position(|s| s.starts_with("drop_detached"))
        .unwrap();

    for step in 1..=drop {
        let world = World::new();
        world.insert(&rows);
        world.crash_at(CrashAt::Step(step));

        let _ = archiver(&world).run(now()).await;

        let at = world.crashed().expect("a step before the drop");
        let expected = match world.state(month) {
            Some(State::Detached) => Partition::Detached,
            _ => Partition::Attached,
        };
        assert_eq!(world.partition(month), expected, "{at}");
        assert_eq!(world.rows(month).unwrap(), rows, "{at}");
        assert!(!world.is_locked(month), "{at}");
    }
}

#[tokio::test]
async fn a_crash_after_any_step_of_a_late_batch_keeps_the_earlier_parts_and_loses_no_row() {
    let month = old_month();
    let (early, late) = (rows_in(month, 50, "early"), rows_in(month, 3, "late"));
    let all: Vec<FakeRow> = early.iter().chain(&late).cloned().collect();
    let first = World::new();
    first.insert(&early);
    archiver(&first).run(now()).await.unwrap();
    let (first_manifest, first_parts) = (
        first.manifest(month).unwrap(),
        part_checksums(&first, month),
    );
    let arrange = || async {
        let world = World::new();
        world.insert(&early);
        archiver(&world).run(now()).await.unwrap();
        // The writer makes the dropped month anew for events that arrive late.
        world.insert(&late);
        world
    };

    let steps = crash_after_every_step(arrange, |world, at| {
        assert_archived(world, month, &all);
        let manifest = world.manifest(month).unwrap();
        assert_eq!(manifest.batches, 2, "{at}");
        let earlier = first_manifest.parts.len();
        assert_eq!(manifest.parts[..earlier], first_manifest.parts[..], "{at}");
        let parts = part_checksums(world, month);
        for (key, sum) in &first_parts {
            assert_eq!(&parts[key], sum, "earlier part {key} untouched ({at})");
        }
        assert_eq!(
            world.drops(month).len(),
            2,
            "each table dropped once ({at})"
        );
    })
    .await;

    assert_eq!(steps[0], "begin_late_batch 2024-02");
    assert_eq!(
        steps[1], "put audit_events/year=2024/month=02/_manifest.json",
        "the earlier batches' manifest put back first"
    );
}

#[tokio::test]
async fn a_crash_after_any_step_of_a_reexport_for_rows_that_arrived_before_detach_loses_no_row() {
    let month = old_month();
    let (before, between) = (rows_in(month, 30, "before"), rows_in(month, 2, "between"));
    let all: Vec<FakeRow> = before.iter().chain(&between).cloned().collect();
    let arrange = || async {
        let world = World::new();
        world.insert(&before);
        world.crash_at(CrashAt::After("mark_verified"));
        let _ = archiver(&world).run(now()).await;
        world.recover();
        world.insert(&between);
        world
    };

    let steps = crash_after_every_step(arrange, |world, at| {
        assert_archived(world, month, &all);
        assert_eq!(world.manifest(month).unwrap().batches, 1, "{at}");
        assert_eq!(world.drops(month).len(), 1, "{at}");
    })
    .await;

    assert_eq!(steps[0], "detach 2024-02", "the recount finds the new rows");
    assert!(
        steps[1].starts_with("delete "),
        "the stale parts go: {steps:?}"
    );
}

#[tokio::test]
async fn a_crash_after_any_step_of_an_empty_months_archiving_is_finished_by_the_next_run() {
    let month = old_month();
    let arrange = || async {
        let world = World::new();
        world.ledger().ensure_partition(month).await.unwrap();
        world
    };

    let steps = crash_after_every_step(arrange, |world, at| {
        assert_archived(world, month, &[]);
        assert_eq!(archive_keys(world), vec![month.manifest_key()], "{at}");
    })
    .await;

    assert!(steps.iter().all(|s| !s.starts_with("upload")), "{steps:?}");
}

#[tokio::test]
async fn a_crash_mid_upload_leaves_a_stray_part_and_an_open_upload_that_the_rerun_clears() {
    let world = World::new();
    let month = old_month();
    let rows = rows_in(month, 100, "mid");
    world.insert(&rows);
    world.crash_at(CrashAt::After(
        "send audit_events/year=2024/month=02/part-00001",
    ));

    let crashed = archiver(&world).run(now()).await;

    assert!(crashed.is_err());
    assert_eq!(world.state(month), Some(State::Exporting));
    assert_eq!(
        world.keys(),
        vec![month.part_key(0)],
        "a stray complete part"
    );
    assert_eq!(
        world.open_uploads(),
        vec![month.part_key(1)],
        "an open upload"
    );
    assert!(
        !world.is_locked(month),
        "a dead archiver's lock goes with it"
    );

    world.recover();
    let summary = archiver(&world).run(now()).await.unwrap();

    assert_eq!(summary.dropped, vec![month.to_string()]);
    assert_archived(&world, month, &rows);
}

#[tokio::test]
async fn a_verification_mismatch_keeps_the_partition_and_the_next_run_exports_again() {
    let world = World::new();
    let month = old_month();
    let rows = rows_in(month, 100, "corrupt");
    world.insert(&rows);
    world.crash_at(CrashAt::After("mark_exported"));
    let _ = archiver(&world).run(now()).await;
    world.recover();
    let key = month.part_key(1);
    let mut bytes = world.object(&key).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    world.put_object(&key, bytes);

    let summary = failed(archiver(&world).run(now()).await);

    assert_eq!(summary.failed.len(), 1);
    let error = &summary.failed[0].error;
    assert!(
        error.starts_with("verification of 2024-02 failed"),
        "{error}"
    );
    assert!(error.contains("SHA-256"), "{error}");
    assert!(summary.failed[0].retryable);
    assert!(summary.verified.is_empty() && summary.dropped.is_empty());
    assert_eq!(world.partition(month), Partition::Attached);
    assert_eq!(world.rows(month).unwrap(), rows);
    assert!(world.drops(month).is_empty());
    let progress = world.progress(month).unwrap();
    assert_eq!(progress.state, State::Exporting, "sent back to export");
    assert!(progress.error.unwrap().contains(&key));

    let summary = archiver(&world).run(now()).await.unwrap();

    assert_eq!(summary.exported, vec![month.to_string()]);
    assert_eq!(summary.dropped, vec![month.to_string()]);
    assert_archived(&world, month, &rows);
}

#[tokio::test]
async fn a_missing_part_or_a_changed_manifest_fails_verification_and_keeps_the_partition() {
    let month = old_month();
    let rows = rows_in(month, 50, "missing");
    type Breakage = fn(&World, Month);
    let breakages: [(&str, Breakage); 3] = [
        ("is missing", |world, month| {
            world.remove_object(&month.part_key(0))
        }),
        ("_manifest.json is missing", |world, month| {
            world.remove_object(&month.manifest_key())
        }),
        ("differs from the one recorded", |world, month| {
            let mut manifest = world.manifest(month).unwrap();
            manifest.rows += 1;
            world.put_object(&month.manifest_key(), manifest.to_json());
        }),
    ];
    for (expected, breakage) in breakages {
        let world = World::new();
        world.insert(&rows);
        world.crash_at(CrashAt::After("mark_exported"));
        let _ = archiver(&world).run(now()).await;
        world.recover();
        breakage(&world, month);

        let summary = failed(archiver(&world).run(now()).await);

        assert!(
            summary.failed[0].error.contains(expected),
            "{expected}: {}",
            summary.failed[0].error
        );
        assert_eq!(world.partition(month), Partition::Attached, "{expected}");
        assert_eq!(world.rows(month).unwrap(), rows, "{expected}");
        assert_eq!(world.state(month), Some(State::Exporting), "{expected}");
        archiver(&world).run(now()).await.unwrap();
        assert_archived(&world, month, &rows);
    }
}

#[tokio::test]
async fn a_month_whose_partition_went_missing_mid_archiving_needs_an_operator() {
    let month = old_month();
    for (step, state) in [
        ("begin", State::Exporting),
        ("mark_exported", State::Exported),
        ("mark_verified", State::Verified),
    ] {
        let world = World::new();
        world.insert(&rows_in(month, 20, "lost"));
        world.crash_at(CrashAt::After(step));
        let _ = archiver(&world).run(now()).await;
        world.recover();
        let keys = world.keys();
        world.lose_table(month);

        let summary = failed(archiver(&world).run(now()).await);

        let error = &summary.failed[0];
        assert!(!error.retryable, "{state:?}");
        assert!(
            error.error.contains(&format!(
                "recorded as {} but its partition is Absent",
                state.as_str()
            )),
            "{}",
            error.error
        );
        assert_eq!(world.state(month), Some(state), "left as it was");
        assert_eq!(world.keys(), keys, "the bucket is left as it was");
        assert!(world.progress(month).unwrap().error.is_some());
    }
}

#[tokio::test]
async fn rows_that_arrive_after_the_export_are_exported_again_before_the_drop() {
    let month = old_month();
    for step in ["mark_exported", "mark_verified"] {
        let world = World::new();
        let rows = rows_in(month, 30, "before");
        world.insert(&rows);
        world.crash_at(CrashAt::After(step));
        let _ = archiver(&world).run(now()).await;
        world.recover();
        let between = rows_in(month, 2, "between");
        world.insert(&between);

        let summary = archiver(&world).run(now()).await.unwrap();

        assert_eq!(summary.exported, vec![month.to_string()], "{step}");
        assert_eq!(summary.dropped, vec![month.to_string()], "{step}");
        let all: Vec<FakeRow> = rows.iter().chain(&between).cloned().collect();
        assert_archived(&world, month, &all);
        assert_eq!(world.manifest(month).unwrap().batches, 1, "{step}");
    }
}

#[tokio::test]
async fn a_month_that_keeps_receiving_rows_is_left_attached_for_a_later_run() {
    let world = World::new();
    let month = old_month();
    world.insert(&rows_in(month, 10, "busy"));
    world.rows_keep_arriving(month, "mark_exported");

    let summary = failed(archiver(&world).run(now()).await);

    let error = &summary.failed[0];
    assert!(
        error.error.contains("still receiving rows"),
        "{}",
        error.error
    );
    assert!(error.retryable);
    assert_eq!(world.partition(month), Partition::Attached);
    assert_eq!(world.state(month), Some(State::Exporting));
    assert!(world.drops(month).is_empty());
}

#[tokio::test]
async fn late_events_for_an_archived_month_are_archived_as_a_further_batch() {
    let world = World::new();
    let month = old_month();
    let early = rows_in(month, 50, "early");
    world.insert(&early);
    archiver(&world).run(now()).await.unwrap();
    let first = world.manifest(month).unwrap();
    let late = rows_in(month, 3, "late");
    world.insert(&late);

    let summary = archiver(&world).run(now()).await.unwrap();

    assert_eq!(summary.exported, vec![month.to_string()]);
    assert_eq!(summary.rows, 3);
    let all: Vec<FakeRow> = early.iter().chain(&late).cloned().collect();
    assert_archived(&world, month, &all);
    let manifest = world.manifest(month).unwrap();
    assert_eq!((manifest.rows, manifest.batches), (53, 2));
    assert_eq!(manifest.parts[..first.parts.len()], first.parts[..]);
    let added = &manifest.parts[first.parts.len()..];
    assert_eq!(
        added
            .iter()
            .map(|p| (p.key.clone(), p.rows, p.batch))
            .collect::<Vec<_>>(),
        [(month.part_key(2), 3, 2)]
    );
}

#[tokio::test]
async fn a_late_event_for_a_month_a_crash_left_detached_is_written_at_once_and_archived() {
    let world = World::new();
    let month = old_month();
    let early = rows_in(month, 20, "early");
    world.insert(&early);
    world.crash_at(CrashAt::After("detach"));
    let _ = archiver(&world).run(now()).await;
    world.recover();
    assert_eq!(world.partition(month), Partition::Detached);

    let late = rows_in(month, 1, "late");
    world.insert(&late);

    assert_eq!(world.drops(month).len(), 1, "the writer finished the drop");
    assert_eq!(world.state(month), Some(State::Dropped));
    assert_eq!(world.rows(month).unwrap(), late);

    let summary = archiver(&world).run(now()).await.unwrap();

    assert_eq!(summary.exported, vec![month.to_string()]);
    let all: Vec<FakeRow> = early.iter().chain(&late).cloned().collect();
    assert_archived(&world, month, &all);
    assert_eq!(world.manifest(month).unwrap().batches, 2);
    assert_eq!(world.drops(month).len(), 2);
}

#[tokio::test]
async fn an_archiver_skips_a_month_another_archiver_holds() {
    let world = World::new();
    let month = old_month();
    world.insert(&rows_in(month, 20, "held"));
    world.hold_lock(month);

    let summary = archiver(&world).run(now()).await.unwrap();

    assert_eq!(summary.skipped, vec![month.to_string()]);
    assert!(summary.exported.is_empty());
    assert!(world.keys().is_empty());
    assert_eq!(world.partition(month), Partition::Attached);
    assert_eq!(world.progress(month), None);
    assert!(world.is_locked(month), "the other archiver still holds it");
}

#[tokio::test]
async fn two_archivers_running_at_once_archive_each_month_exactly_once() {
    let world = World::new();
    let months: Vec<Month> = (0..4).map(|i| old_month().plus(-i)).collect();
    let rows: Vec<Vec<FakeRow>> = months.iter().map(|m| rows_in(*m, 90, "race")).collect();
    for month_rows in &rows {
        world.insert(month_rows);
    }
    let (a, b) = (archiver(&world), archiver(&world));

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
    assert_eq!(exported, expected, "{first:?} {second:?}");
    for (month, month_rows) in months.iter().zip(&rows) {
        assert_archived(&world, *month, month_rows);
        assert_eq!(world.drops(*month).len(), 1);
    }
}

#[tokio::test]
async fn a_bucket_that_fails_keeps_the_partition_and_records_why() {
    let world = World::new();
    let month = old_month();
    let rows = rows_in(month, 20, "nobucket");
    world.insert(&rows);
    world.set_bucket_down(true);

    let summary = failed(archiver(&world).run(now()).await);

    let error = &summary.failed[0];
    assert!(
        error.error.starts_with("S3 failed (a retry may help)"),
        "{}",
        error.error
    );
    assert!(error.error.contains("NoSuchBucket"), "{}", error.error);
    assert!(error.retryable);
    assert_eq!(world.partition(month), Partition::Attached);
    assert_eq!(world.rows(month).unwrap(), rows);
    let progress = world.progress(month).unwrap();
    assert_eq!(progress.state, State::Exporting);
    assert!(progress.error.unwrap().contains("NoSuchBucket"));

    world.set_bucket_down(false);
    archiver(&world).run(now()).await.unwrap();
    assert_archived(&world, month, &rows);
}

#[tokio::test]
async fn the_current_month_and_the_retained_ones_are_never_touched() {
    let world = World::new();
    let current = Month::of(now());
    for month in [current.plus(-4), current.plus(-3), current, current.plus(1)] {
        world.insert(&rows_in(month, 5, "kept"));
    }

    let summary = archiver(&world).run(now()).await.unwrap();

    assert_eq!(summary.dropped, vec![current.plus(-4).to_string()]);
    assert_eq!(
        summary.created,
        vec![current.plus(2).to_string(), current.plus(3).to_string()]
    );
    for month in [current.plus(-3), current, current.plus(1)] {
        assert_eq!(world.partition(month), Partition::Attached, "{month}");
        assert_eq!(world.progress(month), None, "{month}");
    }
    let summary = archiver_with(&world, 0).run(now()).await.unwrap();
    assert_eq!(
        summary.dropped,
        vec![current.plus(-3).to_string()],
        "retention 0 keeps only the current month and later"
    );
    assert_eq!(world.partition(current), Partition::Attached);
}

#[test]
fn month_settings_default_to_three_and_refuse_nonsense() {
    assert_eq!(months("RETENTION_MONTHS", None, 3).unwrap(), 3);
    assert_eq!(months("RETENTION_MONTHS", Some(" ".into()), 3).unwrap(), 3);
    assert_eq!(
        months("RETENTION_MONTHS", Some("12".into()), 3).unwrap(),
        12
    );
    assert_eq!(months("PREMAKE_MONTHS", Some("0".into()), 3).unwrap(), 0);
    for bad in ["-1", "three", "1.5", "1201"] {
        let error = months("RETENTION_MONTHS", Some(bad.into()), 3).unwrap_err();
        assert!(
            error.to_string().starts_with("RETENTION_MONTHS must be"),
            "{error}"
        );
    }
}

#[test]
fn errors_say_whether_a_retry_can_help() {
    let month = Month::new(2024, 2).unwrap();
    assert!(ArchiveError::Database(anyhow::anyhow!("down")).retryable());
    assert!(ArchiveError::Verification {
        month,
        reason: "x".into()
    }
    .retryable());
    assert!(!ArchiveError::Inconsistent {
        month,
        reason: "x".into()
    }
    .retryable());
    let message = ArchiveError::Database(anyhow::anyhow!("down")).to_string();
    assert!(message.contains("a retry may help"), "{message}");
}

#[test]
fn an_adapter_error_keeps_its_cause_chain() {
    let cause: AdapterError = anyhow::anyhow!("NoSuchBucket")
        .context("failed to put s3://b/k")
        .into();

    let message = storage(cause).to_string();

    assert_eq!(
        message,
        "S3 failed (a retry may help): failed to put s3://b/k: NoSuchBucket"
    );
}

#[tokio::test]
async fn the_log_goes_to_s3_as_tiles_and_each_month_writes_only_its_growth() {
    use sentinel_domain::tiles::{tile_key, TILE_WIDTH};
    let world = World::new();
    let tenant: sentinel_domain::fields::TenantId = crate::fakes::FAKE_TENANT.parse().unwrap();
    let first = old_month();
    let first_rows = rows_in(first, 100, "first");
    world.insert(&first_rows);
    world.insert(&rows_in(Month::of(now()), 200, "now"));
    world.set_checkpointed(Some(300));
    archiver(&world).run(now()).await.unwrap();
    assert_archived(&world, first, &first_rows);
    let tile_puts = |world: &World| -> Vec<String> {
        world
            .steps()
            .into_iter()
            .filter_map(|s| s.strip_prefix("put log/").map(|k| format!("log/{k}")))
            .collect()
    };
    assert_eq!(
        tile_puts(&world),
        [tile_key(&tenant, 0, TILE_WIDTH), tile_key(&tenant, 1, 44)],
        "the log up to the covering checkpoint: one full tile, one partial"
    );

    // A later month, archived with a larger checkpoint: only the tiles past what is there.
    let second = first.plus(1);
    let second_rows = rows_in(second, 300, "second");
    world.insert(&second_rows);
    world.set_checkpointed(Some(600));
    archiver(&world).run(now()).await.unwrap();
    assert_archived(&world, second, &second_rows);
    assert_eq!(
        tile_puts(&world)[2..],
        [tile_key(&tenant, 1, TILE_WIDTH), tile_key(&tenant, 2, 88)],
        "the full tile 0 is not written again; the old partial tile 1 is left beside the full one"
    );
    assert!(world.object(&tile_key(&tenant, 1, 44)).is_some());

    // A tile lost from S3 before the drop is put back.
    let third = second.plus(1);
    let third_rows = rows_in(third, 10, "third");
    world.insert(&third_rows);
    world.set_checkpointed(Some(610));
    world.crash_at(CrashAt::After("mark_exported"));
    let _ = archiver(&world).run(now()).await;
    world.recover();
    world.remove_object(&tile_key(&tenant, 0, TILE_WIDTH));
    archiver(&world).run(now()).await.unwrap();
    assert_archived(&world, third, &third_rows);
}

#[tokio::test]
async fn a_run_reports_what_it_archived_as_emf_metrics() {
    let world = World::new();
    let month = old_month();
    world.insert(&rows_in(month, 100, "ev"));
    let summary = archiver(&world).run(now()).await.unwrap();

    let lines = metrics(&summary, false, std::time::Duration::from_secs(3)).to_lines(0);
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["Function"], "archiver");
    assert_eq!(line["RowsArchived"], 100.0);
    assert_eq!(line["BytesArchived"].as_f64(), Some(summary.bytes as f64));
    assert!(summary.bytes > 0);
    assert_eq!(
        (
            line["MonthsExported"].as_f64(),
            line["MonthsDropped"].as_f64(),
            line["RunFailed"].as_f64()
        ),
        (Some(1.0), Some(1.0), Some(0.0))
    );
    assert!(line["ExportTime"].as_f64().is_some(), "{line}");
    assert_eq!(line["RunTime"], 3.0);
}
