//! Archiver export on a large month: throughput end to end into S3, Parquet size against
//! the partition's PostgreSQL size, and the archiver's peak memory.
//!
//! `cargo run --release -p sentinel-bench --bin archive-bench` seeds the database
//! `sentinel_bench_archive` (on the server of DATABASE_URL) with BENCH_ROWS (default
//! 1,000,000) events in one month two years ago, by binary COPY, with realistic rows (three
//! changed fields and request metadata, about 600 bytes each). It then runs the archiver in a
//! child process of its own, so the peak memory (VmHWM) is the archiver's alone, against a
//! fresh bucket on LocalStack (AWS_ENDPOINT_URL, default http://127.0.0.1:4566), and prints
//! the figures. The bucket and the database are removed at the end.

use std::time::Instant;

use archiver::{Archiver, Month, Settings, Tuning};
use chrono::{Duration, Utc};
use futures_util::pin_mut;
use sentinel_bench::{connect, copy_rows, fresh_database, server_url, SeedRow};
use sentinel_postgres::pool;
use serde_json::json;

const DB: &str = "sentinel_bench_archive";
const ACTIONS: [&str; 6] = [
    "billing_update",
    "invoice_create",
    "payment_refund",
    "role_grant",
    "settings_change",
    "record_export",
];
const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-southeast-2"];
const REASONS: [&str; 4] = [
    "customer requested a refund through support",
    "automatic retry after a declined card",
    "manual correction by the finance team",
    "plan upgrade at the end of the trial period",
];

fn s3_from_env(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    sentinel_aws::s3::client(config)
}

/// Seeds `n` events over `month`; returns the partition's size (table + indexes) in bytes.
async fn seed(n: u64, month: Month) -> i64 {
    let client = fresh_database(DB).await;
    client
        .execute(
            "SELECT sentinel_ensure_month_partition($1)",
            &[&month.start()],
        )
        .await
        .unwrap();
    let started = Instant::now();
    let span = (month.end() - month.start()).num_microseconds().unwrap();
    copy_rows(&client, n, |i| {
        let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let g = h.rotate_left(17).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        let at = month.start() + Duration::microseconds(span / n as i64 * i as i64);
        let status = ["paid", "pending", "void", "refunded", "failed"][(h % 5) as usize];
        SeedRow {
            id: format!("evt_{:012}_{:08x}", i, (g >> 32) as u32),
            tenant_id: format!("tenant-{}", h % 10),
            occurred_at: at,
            received_at: at + Duration::milliseconds((h % 900) as i64),
            actor_id: format!("user_{}", (h >> 4) % 5_000),
            actor_type: Some(["user", "service", "system"][(g % 3) as usize]),
            action: ACTIONS[((h >> 12) % 6) as usize],
            resource_type: "invoice",
            resource_id: format!("inv_{}", (h >> 20) % 200_000),
            changes: json!({
                "status": {"before": "pending", "after": status},
                "amount": {"before": (h >> 8) % 100_000, "after": (h >> 24) % 100_000},
                "reason": {"before": null, "after": REASONS[(h >> 40) as usize % REASONS.len()]},
            }),
            metadata: json!({
                "ip": format!("10.{}.{}.{}", h % 255, (h >> 8) % 255, (h >> 16) % 255),
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                "request_id": format!("req-{g:016x}"),
                "trace_id": format!("{h:016x}{g:016x}"),
                "session_id": format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", g >> 32, (g >> 16) & 0xffff, g & 0xfff, h & 0xfff, h >> 16),
                "source": "billing-service",
                "region": REGIONS[(g % 3) as usize],
            }),
        }
    })
    .await;
    client
        .batch_execute(&format!("VACUUM ANALYZE {}", month.partition_name()))
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT pg_total_relation_size($1::text::regclass), pg_relation_size($1::text::regclass), \
             avg(pg_column_size(t.*))::float8 FROM audit_events t \
             WHERE occurred_at >= $2 AND occurred_at < $3",
            &[&month.partition_name(), &month.start(), &month.end()],
        )
        .await
        .unwrap();
    let (total, heap, avg): (i64, i64, f64) = (row.get(0), row.get(1), row.get(2));
    println!(
        "seeded {n} rows into {} in {:.0} s: average row {avg:.0} bytes; heap {:.1} MB, \
         table + indexes {:.1} MB",
        month.partition_name(),
        started.elapsed().as_secs_f64(),
        heap as f64 / 1e6,
        total as f64 / 1e6
    );
    total
}

/// The reader's ceiling: the month's binary COPY streamed out and thrown away, as the
/// archiver's first stage reads it (same statement, same snapshot settings).
async fn raw_copy_out(month: Month) -> (f64, u64) {
    use futures_util::TryStreamExt;
    let client = connect(&server_url(DB)).await;
    client
        .batch_execute("SET synchronize_seqscans = off; SET max_parallel_workers_per_gather = 0")
        .await
        .unwrap();
    let sql = archiver::parquet_file::copy_sql(month.start(), month.end());
    let started = Instant::now();
    let stream = client.copy_out(sql.as_str()).await.unwrap();
    pin_mut!(stream);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.try_next().await.unwrap() {
        bytes += chunk.len() as u64;
    }
    (started.elapsed().as_secs_f64(), bytes)
}

/// The child: one archiver run, as the Lambda would do it, then its peak memory.
async fn archive_once(database_url: String, bucket: String) {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let settings = Settings {
        bucket,
        stack: "bench".into(),
        signing_key_id: "alias/sentinel-bench-archive".into(),
        retention_months: 3,
        premake_months: 3,
    };
    // The manifests are signed with a KMS key on LocalStack, as deployed.
    sentinel_aws::kms::ensure_signing_key(&config, &settings.signing_key_id)
        .await
        .expect("the bench's archive signing key");
    let signer = sentinel_aws::kms::KmsSigner::new(&config, &settings.signing_key_id);
    let signing = archiver::ManifestSigning::new(
        &settings.stack,
        &signer.public_key().await.expect("the key's public key"),
        std::sync::Arc::new(signer),
    )
    .unwrap();
    let tuning = Tuning {
        zstd_level: std::env::var("BENCH_ZSTD_LEVEL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(Tuning::default().zstd_level),
        ..Tuning::default()
    };
    let archiver = Archiver::with_tuning(
        pool(&database_url, 2).unwrap(),
        s3_from_env(&config),
        settings,
        signing,
        tuning,
    );
    let started = Instant::now();
    let summary = archiver.run(Utc::now()).await.expect("archiver run");
    let seconds = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    println!(
        "{}",
        json!({"summary": summary, "seconds": seconds, "vm_hwm_kb": hwm_kb})
    );
}

async fn empty_and_delete(s3: &aws_sdk_s3::Client, bucket: &str) {
    if let Ok(list) = s3.list_objects_v2().bucket(bucket).send().await {
        for object in list.contents() {
            let _ = s3
                .delete_object()
                .bucket(bucket)
                .key(object.key().unwrap_or_default())
                .send()
                .await;
        }
    }
    let _ = s3.delete_bucket().bucket(bucket).send().await;
}

async fn bench() {
    let n: u64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let month = Month::of(Utc::now()).plus(-24);
    let pg_bytes = seed(n, month).await;

    let (copy_seconds, copy_bytes) = raw_copy_out(month).await;
    println!(
        "raw COPY TO STDOUT (binary) of the partition, read and discarded: {copy_seconds:.2} s = \
         {:.0} rows/s, {:.1} MB",
        n as f64 / copy_seconds,
        copy_bytes as f64 / 1e6
    );

    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let s3 = s3_from_env(&config);
    let bucket = format!(
        "sentinel-bench-archive-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("LocalStack must be running (AWS_ENDPOINT_URL)");

    let started = Instant::now();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["archive", &server_url(DB), &bucket])
        .output()
        .expect("run the archiver child");
    let wall = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        empty_and_delete(&s3, &bucket).await;
        panic!("the archiver child failed");
    }
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("child report");
    let summary: &serde_json::Value = &report["summary"];
    let export_seconds = summary["exports"][0]["export_seconds"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let parts = summary["exports"][0]["parts"].as_u64().unwrap_or(0);
    let rows = summary["rows"].as_u64().unwrap_or(0);
    let bytes = summary["bytes"].as_u64().unwrap_or(0);
    let run_seconds = report["seconds"].as_f64().unwrap_or(f64::NAN);
    let hwm_mb = report["vm_hwm_kb"].as_u64().unwrap_or(0) as f64 / 1024.0;
    assert_eq!(rows, n, "every row exported: {summary}");
    assert_eq!(summary["dropped"], json!([month.to_string()]), "{summary}");

    println!("archive of one {n}-row month into LocalStack S3 ({parts} part(s)):");
    println!(
        "  export (PostgreSQL COPY → Parquet → S3 multipart): {export_seconds:.2} s = {:.0} rows/s",
        rows as f64 / export_seconds
    );
    println!(
        "  whole run (export, read back + verify, detach, drop): {run_seconds:.2} s = {:.0} rows/s \
         (child process wall time {wall:.2} s)",
        rows as f64 / run_seconds
    );
    println!(
        "  Parquet {:.1} MB vs PostgreSQL table + indexes {:.1} MB: {:.1}%",
        bytes as f64 / 1e6,
        pg_bytes as f64 / 1e6,
        100.0 * bytes as f64 / pg_bytes as f64
    );
    println!("  archiver peak memory (VmHWM): {hwm_mb:.0} MB");

    empty_and_delete(&s3, &bucket).await;
    let admin = connect(&server_url("postgres")).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
        .await;
}

fn args_say_archive() -> bool {
    std::env::args().nth(1).as_deref() == Some("archive")
}

fn main() {
    // Before any thread starts: LocalStack's settings unless the environment says otherwise.
    for (key, value) in [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("S3_FORCE_PATH_STYLE", "true"),
    ] {
        if std::env::var(key).is_err() {
            // SAFETY: no other thread exists yet.
            unsafe { std::env::set_var(key, value) };
        }
    }
    if args_say_archive() {
        // As the archiver's main does.
        archiver::pin_mmap_threshold();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("archive") => runtime.block_on(archive_once(args[2].clone(), args[3].clone())),
        _ => runtime.block_on(bench()),
    }
}
