//! Inclusion proof latency through the query handler on a large log (issue 11: p95 under
//! 10 ms at 5M events).
//!
//! `cargo run --release -p sentinel-bench --bin proof-bench -- seed` creates the database
//! `sentinel_bench_proof` and stores BENCH_EVENTS (default 5,000,000) events of one tenant
//! with their leaves in the tenant's Merkle log, as the writer stores them but by binary COPY
//! (see `seed`), and runs the real checkpointer every 1,000,000 leaves (signing in memory),
//! which stores the subtrees. It is kept between runs.
//! `… -- run [N]` asks N (default 2,000) proofs of random events through the handler (token
//! auth, reader role, row-level security, the access event on an in-memory stream) and, in
//! the same run and alternating, `GET /events/{id}` of the same events: the proof's cost over
//! reading the event. It checks every proof against the signed checkpoint, outside the
//! timing.
//! `… -- drop` removes the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::pin_mut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sentinel_bench::stats::percentile;
use sentinel_bench::{connect, fresh_database, server_url};
use sentinel_domain::checkpoint::open_checkpoint;
use sentinel_domain::merkle::{self, Hash};
use sentinel_domain::AuditEvent;
use sentinel_lambda::identity::Scope;
use sentinel_postgres::log::{Checkpointer, PgLogReader};
use sentinel_postgres::pool;
use sentinel_postgres::reader::PgReader;
use sentinel_postgres::writer::{RowValues, COLUMNS, COPY_TYPES};
use sentinel_testing::auth::{MemorySink, TestIssuer};
use sentinel_testing::log::{sample_event, MemoryArchive, MemorySigner};
use serde_json::{json, Value};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

const DB: &str = "sentinel_bench_proof";
const TENANT: &str = "tenant-proof";
const STACK: &str = "bench";
/// Events per COPY.
const CHUNK: u64 = 100_000;
/// Leaves per checkpoint while seeding.
const CHECKPOINT_EVERY: u64 = 1_000_000;

fn event_id(i: u64) -> String {
    format!("ev-{i:09}")
}

fn role_url(role: &str) -> String {
    format!("{}?options=-c%20role%3D{role}", server_url(DB))
}

fn checkpointer(signer: Arc<MemorySigner>) -> Checkpointer {
    Checkpointer::new(
        pool(&role_url("sentinel_checkpointer"), 2).unwrap(),
        STACK,
        signer.verifier(&format!("sentinel/{STACK}")),
        signer,
        Arc::new(MemoryArchive::default()),
        Duration::from_secs(3000),
    )
}

/// Stores event `from..to` and their leaves (indexes `from..to`) by binary COPY, on two
/// connections at once.
async fn copy_events(
    events: &tokio_postgres::Client,
    entries: &tokio_postgres::Client,
    from: u64,
    to: u64,
) {
    let batch: Vec<AuditEvent> = (from..to)
        .map(|k| {
            // Spread over November 2026; one tenant, so one log of n leaves.
            let at = format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + k % 28, k % 24, k % 60);
            sample_event(TENANT, &event_id(k), &at)
        })
        .collect();
    let rows = async {
        let sink = events
            .copy_in(&format!(
                "COPY audit_events ({}) FROM STDIN (FORMAT binary)",
                *COLUMNS
            ))
            .await
            .unwrap();
        let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
        pin_mut!(writer);
        for e in &batch {
            writer
                .as_mut()
                .write(&RowValues::new(e).refs())
                .await
                .unwrap();
        }
        writer.finish().await.unwrap();
    };
    let leaves = async {
        let sink = entries
            .copy_in(
                "COPY log_entries (tenant_id, log_index, leaf_hash, event_id, occurred_at) \
                 FROM STDIN (FORMAT binary)",
            )
            .await
            .unwrap();
        let types = [
            Type::TEXT,
            Type::INT8,
            Type::BYTEA,
            Type::TEXT,
            Type::TIMESTAMPTZ,
        ];
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        for (i, e) in (from..).zip(&batch) {
            let leaf = e.leaf_hash().as_bytes().to_vec();
            let (index, occurred_at) = (i as i64, e.occurred_at.get());
            writer
                .as_mut()
                .write(&[&TENANT, &index, &leaf, &e.id.as_str(), &occurred_at])
                .await
                .unwrap();
        }
        writer.finish().await.unwrap();
    };
    tokio::join!(rows, leaves);
}

/// The tenant's events and leaves exactly as the writer stores them (its columns and values,
/// the leaf of each event's canonical record, gapless indexes, the log's size), written by
/// binary COPY as the owner because the writer itself takes about half an hour a million on
/// this machine (BENCHMARKS.md, sentinel verify); then the real checkpointer every
/// CHECKPOINT_EVERY leaves, which stores the subtrees and signs.
async fn seed(n: u64) {
    let events = fresh_database(DB).await;
    let entries = connect(&server_url(DB)).await;
    events
        .execute(
            "INSERT INTO tenant_logs (tenant_id, size) VALUES ($1, 0)",
            &[&TENANT],
        )
        .await
        .unwrap();
    let november: chrono::DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
    events
        .query_one("SELECT sentinel_ensure_month_partition($1)", &[&november])
        .await
        .unwrap();
    let checkpointer = checkpointer(Arc::new(MemorySigner::new("proof bench")));
    let tenant = TENANT.parse().unwrap();
    let started = Instant::now();
    let mut checkpointing = Duration::ZERO;
    let mut stored = 0;
    while stored < n {
        let to = (stored + CHUNK).min(n);
        copy_events(&events, &entries, stored, to).await;
        stored = to;
        events
            .execute(
                "UPDATE tenant_logs SET size = $2 WHERE tenant_id = $1",
                &[&TENANT, &(stored as i64)],
            )
            .await
            .unwrap();
        if stored % CHECKPOINT_EVERY == 0 || stored == n {
            let at = Instant::now();
            let outcome = checkpointer.checkpoint(&tenant, Utc::now()).await.unwrap();
            checkpointing += at.elapsed();
            eprintln!(
                "{stored} events stored and checkpointed in {:.0} s: {outcome:?}",
                started.elapsed().as_secs_f64()
            );
        }
    }
    events.batch_execute("VACUUM ANALYZE").await.unwrap();
    println!(
        "seeded {n} events in {:.0} s, {:.0} s of it checkpointing",
        started.elapsed().as_secs_f64(),
        checkpointing.as_secs_f64()
    );
}

fn request(path: &str, authorization: &str) -> lambda_http::Request {
    let request = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"accept": "application/json", "authorization": authorization},
        "requestContext": {"http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
                           "requestId": "r", "routeKey": "$default", "stage": "$default", "accountId": "0", "apiId": "q",
                           "domainName": "localhost", "domainPrefix": "localhost", "time": "01/Feb/2026:00:00:05 +0000", "timeEpoch": 0},
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&request.to_string()).unwrap()
}

async fn run(iterations: usize) {
    let client = connect(&server_url(DB)).await;
    let size: i64 = client
        .query_one(
            "SELECT size FROM tenant_logs WHERE tenant_id = $1",
            &[&TENANT],
        )
        .await
        .unwrap()
        .get(0);
    let issuer = TestIssuer::new();
    let auth = issuer.authenticator();
    let token = issuer.bearer(TENANT, &[Scope::EventsRead]);
    let access_log = MemorySink::default();
    let reader_pool = pool(&role_url("sentinel_reader"), 1).unwrap();
    let reader = PgReader::new(reader_pool.clone());
    let log = PgLogReader::new(reader_pool);
    let state = query::Query {
        reader: &reader,
        log: &log,
        auth: &auth,
        access_log: &access_log,
    };
    let key = MemorySigner::new("proof bench").verifier(&format!("sentinel/{STACK}"));
    let origin = sentinel_domain::log::origin(STACK, &TENANT.parse().unwrap()).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let (mut proofs, mut gets) = (Vec::new(), Vec::new());
    // Warm the connection and the caches of the first pages touched.
    for _ in 0..50 {
        let path = format!(
            "/events/{}/proof",
            event_id(rng.random_range(0..size as u64))
        );
        query::handle(&state, request(&path, &token)).await.unwrap();
    }
    let mut depths = Vec::new();
    for round in 0..iterations {
        let id = event_id(rng.random_range(0..size as u64));
        let proof_path = format!("/events/{id}/proof");
        let get_path = format!("/events/{id}");
        // Alternate which arm goes first.
        let order: [(&str, bool); 2] = if round % 2 == 0 {
            [(&proof_path, true), (&get_path, false)]
        } else {
            [(&get_path, false), (&proof_path, true)]
        };
        for (path, is_proof) in order {
            let started = Instant::now();
            let response = query::handle(&state, request(path, &token)).await.unwrap();
            let elapsed = started.elapsed();
            assert_eq!(response.status(), 200, "{path}");
            if is_proof {
                proofs.push(elapsed);
                let body: Value = match response.body() {
                    lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
                    other => panic!("{other:?}"),
                };
                let note = body["checkpoint"]["checkpoint"].as_str().unwrap();
                let checkpoint =
                    open_checkpoint(note.as_bytes(), &origin, std::slice::from_ref(&key)).unwrap();
                let path: Vec<Hash> = body["inclusion_proof"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| Hash::parse_base64(h.as_str().unwrap()).unwrap())
                    .collect();
                depths.push(path.len());
                merkle::verify_inclusion(
                    body["log_index"].as_u64().unwrap(),
                    checkpoint.size(),
                    &Hash::leaf(body["canonical_record"].as_str().unwrap().as_bytes()),
                    &path,
                    checkpoint.root(),
                )
                .expect("every proof verifies");
            } else {
                gets.push(elapsed);
            }
        }
        access_log.clear();
    }
    println!(
        "{size} leaves, {iterations} requests per arm, proof depth {}..{}",
        depths.iter().min().unwrap(),
        depths.iter().max().unwrap()
    );
    for (name, samples) in [
        ("GET /events/{id}/proof", &mut proofs),
        ("GET /events/{id}", &mut gets),
    ] {
        println!(
            "{name:24} p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            percentile(samples, 0.50),
            percentile(samples, 0.95),
            percentile(samples, 0.99),
            percentile(samples, 1.0)
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("seed") => {
            let n = std::env::var("BENCH_EVENTS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(5_000_000);
            seed(n).await
        }
        Some("run") => run(args.get(2).and_then(|v| v.parse().ok()).unwrap_or(2_000)).await,
        Some("drop") => {
            connect(&server_url("postgres"))
                .await
                .batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
                .await
                .unwrap();
        }
        _ => eprintln!("usage: proof-bench seed | run [N] | drop"),
    }
}
