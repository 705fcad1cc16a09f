//! Writer throughput into the partitioned table with every index, in events/s.
//!
//! `cargo bench -p sentinel-bench --bench writer` (BENCH_EVENTS, BENCH_BATCH, BENCH_REPS).
//! Each method writes the same events into a fresh database, in the same run:
//! - `copy+staging`: PgEventStore's binary COPY into a staging table, then one
//!   INSERT … SELECT with the idempotency check;
//! - `unnest`: PgEventStore's one-statement UNNEST with the same idempotency check;
//! - `writer::process`: the whole writer handler on Kinesis payloads (base64, decode,
//!   re-validation, then the chosen write; the run in BENCHMARKS.md used copy+staging);
//! - `multi-row INSERT`: the naive approach, `INSERT … VALUES (…),(…) ON CONFLICT DO NOTHING`;
//! - `raw COPY (ceiling)`: binary COPY straight into audit_events, no dedup at all.

use std::time::Instant;

use base64::Engine;
use futures_util::pin_mut;
use postgres_types::ToSql;
use sentinel_domain::event::AuditEvent;
use sentinel_domain::store::EventStore;
use sentinel_postgres::pool;
use sentinel_postgres::writer::{PgEventStore, RowValues, WriteMethod, COLUMNS, COPY_TYPES};
use sentinel_testing::TestDatabase;
use serde_json::{json, Value};
use tokio_postgres::binary_copy::BinaryCopyInWriter;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug)]
enum Method {
    CopyStaging,
    Unnest,
    Handler,
    MultiInsert,
    RawCopy,
    CopyStagingTwo,
    UnnestTwo,
    RawCopyTwo,
}

impl Method {
    fn label(self) -> &'static str {
        match self {
            Method::CopyStaging => "copy+staging",
            Method::Unnest => "unnest (chosen)",
            Method::Handler => "writer::process (whole handler)",
            Method::MultiInsert => "multi-row INSERT (naive)",
            Method::RawCopy => "raw COPY (ceiling)",
            Method::CopyStagingTwo => "copy+staging, 2 writers (2 shards)",
            Method::UnnestTwo => "unnest, 2 writers (2 shards)",
            Method::RawCopyTwo => "raw COPY, 2 writers (ceiling)",
        }
    }
}

fn kinesis_payload(events: &[AuditEvent], first: usize) -> Value {
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let seq = format!("{:056}", first + i);
            json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": e.partition_key(), "sequenceNumber": seq,
                            "data": base64::engine::general_purpose::STANDARD.encode(e.encode()),
                            "approximateArrivalTimestamp": 1769904005.123},
                "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::000000000000:role/w",
                "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/bench"
            })
        })
        .collect();
    json!({ "Records": records })
}

async fn multi_insert(client: &tokio_postgres::Client, events: &[AuditEvent]) {
    let mut sql = format!("INSERT INTO audit_events ({}) VALUES ", *COLUMNS);
    let rows: Vec<RowValues> = events.iter().map(RowValues::new).collect();
    for i in 0..events.len() {
        if i > 0 {
            sql.push(',');
        }
        let b = i * 11;
        sql.push_str(&format!(
            "(${},${},${},${},${},${},${},${},${},${},${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 9,
            b + 10,
            b + 11
        ));
    }
    sql.push_str(" ON CONFLICT (tenant_id, id, occurred_at) DO NOTHING");
    let refs: Vec<&(dyn ToSql + Sync)> = rows.iter().flat_map(|r| r.refs()).collect();
    client.execute(&sql, &refs).await.unwrap();
}

async fn raw_copy(client: &tokio_postgres::Client, events: &[AuditEvent]) {
    let sink = client
        .copy_in(&format!(
            "COPY audit_events ({}) FROM STDIN (FORMAT binary)",
            *COLUMNS
        ))
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    for e in events {
        writer
            .as_mut()
            .write(&RowValues::new(e).refs())
            .await
            .unwrap();
    }
    writer.finish().await.unwrap();
}

async fn measure(method: Method, events: &[AuditEvent], batch: usize) -> f64 {
    let db = TestDatabase::create().await;
    let client = db.client().await;
    // Same starting state for every method: the months exist, the table is empty.
    let mut months: Vec<_> = events
        .iter()
        .map(|e| e.occurred_at.format("%Y-%m-01T00:00:00Z").to_string())
        .collect();
    months.sort();
    months.dedup();
    for month in &months {
        let at: chrono::DateTime<chrono::Utc> = month.parse().unwrap();
        client
            .execute("SELECT sentinel_ensure_month_partition($1)", &[&at])
            .await
            .unwrap();
    }
    let copy = PgEventStore::with_method(pool(&db.url, 1).unwrap(), WriteMethod::CopyStaging);
    let unnest = PgEventStore::with_method(pool(&db.url, 1).unwrap(), WriteMethod::Unnest);
    let payloads: Vec<Value> = match method {
        Method::Handler => events
            .chunks(batch)
            .enumerate()
            .map(|(i, c)| kinesis_payload(c, i * batch))
            .collect(),
        _ => Vec::new(),
    };

    let started = Instant::now();
    match method {
        Method::CopyStaging => {
            for chunk in events.chunks(batch) {
                copy.store(chunk).await.unwrap();
            }
        }
        Method::Unnest => {
            for chunk in events.chunks(batch) {
                unnest.store(chunk).await.unwrap();
            }
        }
        Method::Handler => {
            for payload in payloads {
                let (response, _) = writer::process(&unnest, payload).await.unwrap();
                assert!(response.batch_item_failures.is_empty());
            }
        }
        Method::MultiInsert => {
            for chunk in events.chunks(batch) {
                multi_insert(&client, chunk).await
            }
        }
        Method::RawCopy => {
            for chunk in events.chunks(batch) {
                raw_copy(&client, chunk).await
            }
        }
        Method::CopyStagingTwo | Method::UnnestTwo => {
            let method = if matches!(method, Method::UnnestTwo) {
                WriteMethod::Unnest
            } else {
                WriteMethod::CopyStaging
            };
            let (left, right) = events.split_at(events.len() / 2);
            let first = PgEventStore::with_method(pool(&db.url, 1).unwrap(), method);
            let second = PgEventStore::with_method(pool(&db.url, 1).unwrap(), method);
            let a = async {
                for chunk in left.chunks(batch) {
                    first.store(chunk).await.unwrap();
                }
            };
            let b = async {
                for chunk in right.chunks(batch) {
                    second.store(chunk).await.unwrap();
                }
            };
            tokio::join!(a, b);
        }
        Method::RawCopyTwo => {
            let (left, right) = events.split_at(events.len() / 2);
            let other = db.client().await;
            let a = async {
                for chunk in left.chunks(batch) {
                    raw_copy(&client, chunk).await
                }
            };
            let b = async {
                for chunk in right.chunks(batch) {
                    raw_copy(&other, chunk).await
                }
            };
            tokio::join!(a, b);
        }
    }
    let elapsed = started.elapsed();

    let stored: i64 = client
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored as usize,
        events.len(),
        "{method:?} lost or duplicated events"
    );
    events.len() as f64 / elapsed.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we use.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env("BENCH_EVENTS", 200_000);
    let batch = env("BENCH_BATCH", 1_000);
    let reps = env("BENCH_REPS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let events = sentinel_bench::events(n, 7, chrono::Utc::now(), 2);
        let avg = events.iter().map(|e| e.encode().len()).sum::<usize>() / events.len();
        println!("writer throughput: {n} events (avg {avg} B encoded, 3 changed fields + metadata), batches of {batch}, {reps} runs each, fresh database per run, all indexes");
        let methods = [
            Method::RawCopy, Method::CopyStaging, Method::Unnest, Method::Handler, Method::MultiInsert,
            Method::RawCopyTwo, Method::CopyStagingTwo, Method::UnnestTwo,
        ];
        let mut results: Vec<(Method, Vec<f64>)> = methods.iter().map(|m| (*m, Vec::new())).collect();
        for rep in 0..reps {
            for (method, rates) in results.iter_mut() {
                let rate = measure(*method, &events, batch).await;
                println!("  run {}: {:<34} {:>9.0} events/s", rep + 1, method.label(), rate);
                rates.push(rate);
            }
        }
        let ceiling = median(results[0].1.clone());
        let ceiling_two = median(results[5].1.clone());
        println!("\n| method | median events/s | min | max | × raw COPY (same concurrency) |\n| --- | ---: | ---: | ---: | ---: |");
        for (method, rates) in results {
            let min = rates.iter().cloned().fold(f64::MAX, f64::min);
            let max = rates.iter().cloned().fold(0.0, f64::max);
            let med = median(rates);
            let base = if matches!(method, Method::RawCopyTwo | Method::CopyStagingTwo | Method::UnnestTwo) { ceiling_two } else { ceiling };
            println!("| {} | {:.0} | {:.0} | {:.0} | {:.2} |", method.label(), med, min, max, med / base);
        }
    });
}
