//! End to end on the local stack: post N events (default 20,000) over HTTP, then time until
//! all are queryable in PostgreSQL, and check that nothing was lost or duplicated.
//!
//! Run through `bench/e2e.sh`, which builds release binaries and starts LocalStack.
//! Settings: BENCH_E2E_EVENTS, BENCH_E2E_CONCURRENCY, BENCH_E2E_BATCH_SIZE (runner),
//! BENCH_E2E_WINDOW_MS (runner's batching window).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use rand::SeedableRng;
use sentinel_e2e::LambdaEmulator;
use sentinel_esm::{EsmConfig, EsmHandle};
use sentinel_testing::{kinesis_client, TestDatabase, TestStream};
use serde_json::{json, Value};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total = env("BENCH_E2E_EVENTS", 20_000);
    let concurrency = env("BENCH_E2E_CONCURRENCY", 4);
    let per_request = 500;
    let db = TestDatabase::create().await;
    let stream = TestStream::create(kinesis_client(None).await, 2).await;
    let issuer = sentinel_testing::auth::TestIssuer::new();
    let jwks = issuer.jwks_file();
    let mut ingest_env: Vec<(&str, String)> = jwks.env();
    ingest_env.push(("STREAM_NAME", stream.name.clone()));
    ingest_env.push(("RUST_LOG", "warn".into()));
    let mut lambda = LambdaEmulator::start().await;
    lambda.attach(
        "ingest",
        &ingest_env
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    );
    lambda.attach("writer", &[("DATABASE_URL", &db.url), ("RUST_LOG", "warn")]);
    let checkpoints = std::env::temp_dir().join(format!("sentinel-bench-{}", stream.name));
    let mut config = EsmConfig::new(&stream.name);
    config.lambda_invoke_url = lambda.url();
    config.checkpoint_dir = checkpoints.clone();
    config.batch_size = env("BENCH_E2E_BATCH_SIZE", 1000);
    config.max_batching_window = Duration::from_millis(env("BENCH_E2E_WINDOW_MS", 500) as u64);
    let runner = EsmHandle::spawn(config.clone(), stream.client.clone());

    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let now =
        chrono::SubsecRound::trunc_subsecs(chrono::Utc::now() - chrono::Duration::seconds(10), 6);
    let bodies: Vec<Value> = (0..total.div_ceil(per_request))
        .map(|i| {
            let n = per_request.min(total - i * per_request);
            json!({ "events": (0..n).map(|_| sentinel_bench::client_event(&mut rng, now)).collect::<Vec<_>>() })
        })
        .collect();
    // The same run's ceiling: LocalStack's own PutRecords rate for these events, straight from
    // the SDK with the same concurrency, no HTTP and no Lambda.
    let ceiling_stream = TestStream::create(kinesis_client(None).await, 2).await;
    let sink = sentinel_aws::kinesis::KinesisSink::new(
        ceiling_stream.client.clone(),
        &ceiling_stream.name,
    );
    let records: Vec<Vec<sentinel_domain::publish::OutgoingRecord>> = bodies
        .iter()
        .map(|body| {
            sentinel_domain::validation::parse_request(
                body.to_string().as_bytes(),
                chrono::Utc::now(),
                &sentinel_domain::fields::TenantId::default_tenant(),
                || uuid::Uuid::now_v7().to_string(),
            )
            .unwrap()
            .iter()
            .map(sentinel_domain::publish::OutgoingRecord::from_event)
            .collect()
        })
        .collect();
    let started = Instant::now();
    let policy = sentinel_domain::publish::RetryPolicy::default();
    let reports: Vec<_> = stream::iter(records)
        .map(|chunk| {
            let (sink, policy) = (&sink, &policy);
            async move { sentinel_domain::publish::publish(sink, chunk, policy).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let ceiling = started.elapsed();
    assert!(reports.iter().all(|r| r.is_complete()));
    drop(ceiling_stream);

    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        issuer
            .bearer("default", &[sentinel_lambda::identity::Scope::EventsWrite])
            .parse()?,
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()?;
    let url = format!("{}/lambda-url/ingest/events", lambda.url());
    // Warm both functions so the figure is not a cold start.
    http.post(&url).json(&json!({"actor_id": "warm", "action": "warm", "resource_type": "warm", "resource_id": "warm"})).send().await?;
    let client = db.client().await;
    while client
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await?
        .get::<_, i64>(0)
        < 1
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    let responses: Vec<Value> = stream::iter(bodies)
        .map(|body| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let response = http.post(&url).json(&body).send().await.expect("post");
                assert_eq!(response.status(), 202, "ingest refused a request");
                response.json::<Value>().await.expect("json")
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let posted = started.elapsed();
    let ids: HashSet<String> = responses
        .iter()
        .flat_map(|r| {
            r["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(ids.len(), total);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut stored = 0;
    while stored < total as i64 + 1 && Instant::now() < deadline {
        stored = client
            .query_one("SELECT count(*) FROM audit_events", &[])
            .await?
            .get(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_stored = started.elapsed();
    runner.stop().await?;
    let rows = client
        .query(
            "SELECT id, count(*) FROM audit_events WHERE actor_id <> 'warm' GROUP BY id",
            &[],
        )
        .await?;
    let duplicated = rows.iter().filter(|r| r.get::<_, i64>(1) > 1).count();
    let found: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let missing = ids.difference(&found).count();
    let rejected: i64 = client
        .query_one("SELECT count(*) FROM rejected_records", &[])
        .await?
        .get(0);
    println!("end to end: {total} events in {} requests of {per_request}, {concurrency} at a time; runner batch {} / window {:?}",
        total.div_ceil(per_request), config.batch_size, config.max_batching_window);
    println!(
        "  all {total} posted (202) after    {:>8.2} s  ({:.0} events/s accepted)",
        posted.as_secs_f64(),
        total as f64 / posted.as_secs_f64()
    );
    println!(
        "  all queryable in PostgreSQL after {:>8.2} s  ({:.0} events/s end to end)",
        all_stored.as_secs_f64(),
        total as f64 / all_stored.as_secs_f64()
    );
    println!(
        "  lag from the last 202 to all queryable {:>5.2} s",
        (all_stored - posted).as_secs_f64()
    );
    println!("  missing {missing}, duplicated {duplicated}, quarantined {rejected}");
    // Each event's time from ingest's received_at to its row's stored_at (the writer's
    // transaction time: it is queryable from its commit, a few milliseconds later).
    let latency = client
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), \
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms), count(*) \
             FROM (SELECT extract(epoch FROM stored_at - received_at)::float8 * 1000 AS ms \
                   FROM audit_events WHERE actor_id <> 'warm') t",
            &[],
        )
        .await?;
    println!(
        "  ingest to stored, per event, from the rows (stored_at - received_at): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} events)",
        latency.get::<_, f64>(0),
        latency.get::<_, f64>(1),
        latency.get::<_, f64>(2),
        latency.get::<_, i64>(3)
    );
    // The same from the writer's own metrics: the IngestToStored values of its EMF lines.
    let log =
        sentinel_e2e::workspace_root().join(format!(".local/logs/e2e/writer-{}.log", lambda.port));
    let mut values: Vec<f64> =
        sentinel_lambda::metrics::parse_lines(&std::fs::read_to_string(&log)?)
            .iter()
            .flat_map(|line| match &line["IngestToStored"] {
                Value::Array(values) => values.iter().filter_map(Value::as_f64).collect(),
                Value::Number(n) => n.as_f64().into_iter().collect(),
                _ => Vec::new(),
            })
            .collect();
    values.sort_by(f64::total_cmp);
    let at = |p: f64| {
        values[((values.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(values.len() - 1)]
    };
    if !values.is_empty() {
        println!(
            "  ingest to stored, per event, from the writer's EMF metrics: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} values, the warm-up's included)",
            at(0.5),
            at(0.99),
            values[values.len() - 1],
            values.len()
        );
    }
    println!("  ceiling, same run: LocalStack PutRecords of the same {total} events, {concurrency} calls at a time, no Lambda: {:.2} s ({:.0} events/s)",
        ceiling.as_secs_f64(), total as f64 / ceiling.as_secs_f64());
    let _ = std::fs::remove_dir_all(checkpoints);
    anyhow::ensure!(
        missing == 0 && duplicated == 0,
        "events were lost or duplicated"
    );
    Ok(())
}
