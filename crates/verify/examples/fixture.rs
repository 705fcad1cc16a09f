//! The benchmark's log (bench/verify.sh): a database of its own holding `--events` events of
//! one tenant, stored by the real writer and checkpointed by the real checkpointer every
//! `--every` events, signed with an in-memory key whose verifier key is written to
//! `--key-file`, with the checkpoints' S3 copies in `--bucket` (LocalStack).
//!
//! ```sh
//! cargo run --release -p sentinel-verify --example fixture -- \
//!     --database sentinel_bench_verify --events 1000000 --bucket sentinel-bench-verify \
//!     --key-file .local/bench/verify.vkey
//! ```
//!
//! With `--drop` it removes the database and the bucket instead. With `--archive` it archives
//! the existing log's month instead: the real archiver (its role, retention 0, so November 2026
//! is past it) exports it to `--bucket`, signs the manifest with an in-memory key whose
//! verifier key is written to `--archive-key-file`, and drops the partition.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::pin_mut;
use sentinel_aws::s3::Bucket;
use sentinel_domain::AuditEvent;
use sentinel_postgres::log::Checkpointer;
use sentinel_postgres::writer::{RowValues, COLUMNS, COPY_TYPES};
use sentinel_testing::log::{sample_event, MemorySigner};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

pub const STACK: &str = "bench";
pub const TENANT: &str = "bench";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Event `i` of `events`: spread over November 2026, as a real tenant's are over a month.
fn event(i: usize, events: usize) -> AuditEvent {
    let day = 1 + (i * 30 / events.max(1));
    let second = i % 86_400;
    sample_event(
        TENANT,
        &format!("evt-{i:09}"),
        &format!(
            "2026-11-{day:02}T{:02}:{:02}:{:02}Z",
            second / 3600,
            second / 60 % 60,
            second % 60
        ),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let database = arg("--database").unwrap_or_else(|| "sentinel_bench_verify".into());
    let events: usize = arg("--events")
        .unwrap_or_else(|| "1000000".into())
        .parse()?;
    let every: usize = arg("--every").unwrap_or_else(|| "100000".into()).parse()?;
    let bucket = arg("--bucket").unwrap_or_else(|| "sentinel-bench-verify".into());
    let key_file = arg("--key-file").unwrap_or_else(|| ".local/bench/verify.vkey".into());
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/sentinel".into());
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    let url = format!("{base}/{database}");
    if std::env::args().any(|a| a == "--archive") {
        let key_file =
            arg("--archive-key-file").unwrap_or_else(|| ".local/bench/verify-archive.vkey".into());
        return archive(&url, &bucket, &key_file).await;
    }

    let (client, connection) =
        tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await?;

    let config = sentinel_aws::config().await;
    let s3 = sentinel_aws::s3::client(&config);
    let _ = s3.create_bucket().bucket(&bucket).send().await;
    // Every object, past the first page too (an archived month leaves thousands of tiles).
    {
        use sentinel_domain::archive::ArchiveBucket as _;
        let objects = Bucket::new(s3.clone(), bucket.clone());
        let keys = objects.list("").await.map_err(|e| anyhow::anyhow!(e))?;
        objects
            .delete(&keys)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    if std::env::args().any(|a| a == "--drop") {
        s3.delete_bucket().bucket(&bucket).send().await?;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .await?;
        return Ok(());
    }

    client
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await?;
    sentinel_postgres::migrate(&url).await?;
    let signer = Arc::new(MemorySigner::new("verify benchmark"));
    let key = signer.verifier(&format!("sentinel/{STACK}"));
    if let Some(dir) = std::path::Path::new(&key_file).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&key_file, key.to_text())?;
    let checkpointer = Checkpointer::new(
        sentinel_postgres::pool(
            &format!("{url}?options=-c%20role%3Dsentinel_checkpointer"),
            2,
        )?,
        STACK,
        key,
        signer,
        Arc::new(Bucket::new(s3, bucket.clone())),
        Duration::from_secs(3000),
    );
    // Stored by binary COPY as the owner, exactly as the writer stores them (its columns and
    // values, the leaf of each event's canonical record, gapless indexes), a chunk of `every`
    // at a time, each chunk then checkpointed by the real checkpointer: the writer itself
    // takes half an hour for a million events on this shared machine.
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    db.batch_execute(&format!(
        "INSERT INTO tenant_logs (tenant_id, size) VALUES ('{TENANT}', 0)"
    ))
    .await?;
    let started = Instant::now();
    // Signed a day ago on, a minute apart: none is newer than a verifier's snapshot.
    let mut at = chrono::Utc::now() - chrono::Duration::days(1);
    let tenant = TENANT.parse().expect("a tenant id");
    let mut stored = 0;
    while stored < events {
        let n = every.min(events - stored);
        let batch: Vec<AuditEvent> = (stored..stored + n).map(|i| event(i, events)).collect();
        let mut months: Vec<_> = batch.iter().map(|e| e.occurred_at.get()).collect();
        months.sort();
        months.dedup_by_key(|t| sentinel_domain::Month::of(*t));
        for month in months {
            db.query_one("SELECT sentinel_ensure_month_partition($1)", &[&month])
                .await?;
        }
        let sink = db
            .copy_in(&format!(
                "COPY audit_events ({}) FROM STDIN (FORMAT binary)",
                *COLUMNS
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
        pin_mut!(writer);
        for e in &batch {
            writer.as_mut().write(&RowValues::new(e).refs()).await?;
        }
        writer.finish().await?;
        let sink = db
            .copy_in(
                "COPY log_entries (tenant_id, log_index, leaf_hash, event_id, occurred_at) \
                 FROM STDIN (FORMAT binary)",
            )
            .await?;
        let writer = BinaryCopyInWriter::new(
            sink,
            &[
                Type::TEXT,
                Type::INT8,
                Type::BYTEA,
                Type::TEXT,
                Type::TIMESTAMPTZ,
            ],
        );
        pin_mut!(writer);
        for (i, e) in (stored..).zip(&batch) {
            let leaf = e.leaf_hash().as_bytes().to_vec();
            let (index, occurred_at) = (i as i64, e.occurred_at.get());
            writer
                .as_mut()
                .write(&[&TENANT, &index, &leaf, &e.id.as_str(), &occurred_at])
                .await?;
        }
        writer.finish().await?;
        stored += n;
        db.execute(
            "UPDATE tenant_logs SET size = $1 WHERE tenant_id = $2",
            &[&(stored as i64), &TENANT],
        )
        .await?;
        at += chrono::Duration::minutes(1);
        checkpointer.checkpoint(&tenant, at).await?;
        eprintln!(
            "{stored} events stored and checkpointed ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    let (analyze, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    analyze.batch_execute("VACUUM ANALYZE").await?;
    println!("{url}");
    Ok(())
}

/// Archives the log's month with the real archiver, as deployed but with a key in memory.
async fn archive(url: &str, bucket: &str, key_file: &str) -> anyhow::Result<()> {
    let signer = Arc::new(MemorySigner::new("verify benchmark archive"));
    let key = signer.verifier(&format!("sentinel/{STACK}/archive"));
    std::fs::write(key_file, key.to_text())?;
    let signing = archiver::ManifestSigning::new(STACK, key.spki_der(), signer)?;
    let settings = archiver::Settings {
        bucket: bucket.to_string(),
        stack: STACK.into(),
        signing_key_id: "in memory".into(),
        retention_months: 0,
        premake_months: 0,
    };
    let config = sentinel_aws::config().await;
    let archiver = archiver::Archiver::new(
        sentinel_postgres::pool(&format!("{url}?options=-c%20role%3Dsentinel_archiver"), 2)?,
        sentinel_aws::s3::client(&config),
        settings,
        signing,
    );
    let started = Instant::now();
    let summary = archiver
        .run(chrono::Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "archived {:?} ({} rows, {} bytes) in {:.1} s",
        summary.dropped,
        summary.rows,
        summary.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
