//! `sentinel poke`: checks every component of a stack, each with its latency and, on failure,
//! a reason a person can act on. Exit status 0 only if every check passed.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

use crate::ops::Endpoints;

#[derive(clap::Args)]
pub struct PokeArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// The stream ingest puts events on.
    #[arg(long, env = "STREAM_NAME", default_value = "sentinel-events")]
    stream: String,
    /// The database (a login that may read the schema's version is enough).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/sentinel"
    )]
    database_url: String,
    #[arg(long, env = "ARCHIVE_BUCKET")]
    archive_bucket: Option<String>,
    #[arg(long, env = "CHECKPOINT_BUCKET")]
    checkpoint_bucket: Option<String>,
    /// The KMS key that signs checkpoints.
    #[arg(long, env = "SIGNING_KEY_ID")]
    signing_key_id: Option<String>,
    /// The KMS key that signs the archive's manifests.
    #[arg(long, env = "ARCHIVE_SIGNING_KEY_ID")]
    archive_signing_key_id: Option<String>,
    /// How long the probe event may take from ingest to the query API.
    #[arg(long, default_value_t = 30)]
    writer_timeout_seconds: u64,
    /// One JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub struct CheckResult {
    pub component: &'static str,
    pub ok: bool,
    pub latency_ms: f64,
    pub detail: String,
}

async fn timed<F>(component: &'static str, check: F) -> CheckResult
where
    F: std::future::Future<Output = anyhow::Result<String>>,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(60), check).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (ok, detail) = match outcome {
        Ok(Ok(detail)) => (true, detail),
        Ok(Err(e)) => (false, format!("{e:#}")),
        Err(_) => (false, "no answer within 60 s".into()),
    };
    CheckResult {
        component,
        ok,
        latency_ms,
        detail,
    }
}

/// Names LocalStack when an AWS call could not connect to a local endpoint.
fn aws_failure(what: &str, e: impl std::error::Error) -> anyhow::Error {
    let text = format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e));
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    match endpoint {
        Some(url) if text.contains("dispatch failure") || text.contains("Connection refused") => {
            anyhow::anyhow!(
                "{what}: nothing answers at AWS_ENDPOINT_URL={url}: is LocalStack running? (`scripts/up` starts it)"
            )
        }
        _ => anyhow::anyhow!("{what}: {text}"),
    }
}

pub async fn poke(args: PokeArgs) -> anyhow::Result<bool> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let authed = args.endpoints_client()?;
    let aws = sentinel_aws::config().await;
    let mut results = Vec::new();

    let ingest = args.endpoints.ingest();
    results.push(
        timed("ingest", async {
            // A GET is refused with the API's JSON error body: the function answered.
            let url = format!("{ingest}/events");
            let r =
                client.get(&url).send().await.with_context(|| {
                    format!("nothing answers at {url}: is `scripts/up` running?")
                })?;
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            anyhow::ensure!(
                body["error"]["code"].is_string(),
                "{url} answered {status} without the API's error body"
            );
            Ok(format!("{url} answers ({status} to a GET, as it should)"))
        })
        .await,
    );

    let query = args.endpoints.query();
    results.push(
        timed("query", async {
            let url = format!("{query}/events?limit=1");
            let r =
                authed.get(&url).send().await.with_context(|| {
                    format!("nothing answers at {url}: is `scripts/up` running?")
                })?;
            let status = r.status();
            anyhow::ensure!(
                status.is_success(),
                "{url} answered {status}{}",
                if status == 401 {
                    ": the token is missing, expired or not trusted (SENTINEL_TOKEN)"
                } else {
                    ""
                }
            );
            Ok(format!("{url} answers 200"))
        })
        .await,
    );

    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    results.push(
        timed("stream", async {
            let summary = kinesis
                .describe_stream_summary()
                .stream_name(&args.stream)
                .send()
                .await
                .map_err(|e| aws_failure(&format!("stream {}", args.stream), e))?;
            let s = summary
                .stream_description_summary()
                .context("no description")?;
            anyhow::ensure!(
                s.stream_status().as_str() == "ACTIVE",
                "stream {} is {}",
                args.stream,
                s.stream_status().as_str()
            );
            Ok(format!(
                "{} is ACTIVE with {} open shards",
                args.stream,
                s.open_shard_count()
            ))
        })
        .await,
    );

    results.push(
        timed("database", async {
            let (db, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
                .await
                .context("could not connect to DATABASE_URL (is PostgreSQL running? `pg_ctlcluster 15 main start`)")?;
            tokio::spawn(connection);
            let version: Option<i32> = db
                .query_one("SELECT max(version) FROM refinery_schema_history", &[])
                .await
                .context("no schema history: run `sentinel migrate`")?
                .get(0);
            Ok(format!(
                "reachable, schema at V{}",
                version.unwrap_or_default()
            ))
        })
        .await,
    );

    let s3 = sentinel_aws::s3::client(&aws);
    for (component, bucket) in [
        ("archive bucket", &args.archive_bucket),
        ("checkpoint bucket", &args.checkpoint_bucket),
    ] {
        let Some(bucket) = bucket else { continue };
        results.push(
            timed(component, async {
                s3.head_bucket()
                    .bucket(bucket)
                    .send()
                    .await
                    .map_err(|e| aws_failure(&format!("bucket {bucket}"), e))?;
                Ok(format!("s3://{bucket} is there"))
            })
            .await,
        );
    }
    for (component, key) in [
        ("signing key", &args.signing_key_id),
        ("archive signing key", &args.archive_signing_key_id),
    ] {
        let Some(key) = key else { continue };
        results.push(
            timed(component, async {
                let der = sentinel_aws::kms::KmsSigner::new(&aws, key)
                    .public_key()
                    .await
                    .map_err(|e| {
                        let text = format!("{e:#}");
                        if text.contains("dispatch failure") || text.contains("onnection refused") {
                            anyhow::anyhow!("key {key}: nothing answers at AWS_ENDPOINT_URL: is LocalStack running?")
                        } else {
                            anyhow::anyhow!("key {key}: {text}")
                        }
                    })?;
                Ok(format!("{key}: public key of {} bytes", der.len()))
            })
            .await,
        );
    }

    // The writer, end to end: a probe event through ingest, until the query API has it.
    let timeout = Duration::from_secs(args.writer_timeout_seconds);
    results.push(
        timed("writer", async {
            let url = format!("{ingest}/events");
            let r = authed
                .post(&url)
                .json(&json!({"actor_id": "sentinel-poke", "actor_type": "service",
                    "action": "poke.probe", "resource_type": "sentinel_probe", "resource_id": "poke"}))
                .send()
                .await
                .with_context(|| format!("could not reach {url}"))?;
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            anyhow::ensure!(
                status == 202,
                "the probe event was refused: {status} {} {}",
                body["error"]["message"].as_str().unwrap_or(""),
                body["error"]["fields"]
            );
            let id = body["ids"][0].as_str().context("no id in the 202")?.to_string();
            let sent = Instant::now();
            let event_url = format!("{query}/events/{id}");
            loop {
                let r = authed.get(&event_url).send().await?;
                if r.status().is_success() {
                    return Ok(format!(
                        "a probe event ({id}) was queryable {:.0} ms after its 202",
                        sent.elapsed().as_secs_f64() * 1000.0
                    ));
                }
                anyhow::ensure!(
                    sent.elapsed() < timeout,
                    "the probe event {id} was not queryable within {} s: is the writer (or the event source mapping runner) running? see .local/logs/",
                    timeout.as_secs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await,
    );

    let ok = results.iter().all(|r| r.ok);
    if args.json {
        println!("{}", json!({"ok": ok, "checks": results}));
    } else {
        for r in &results {
            println!(
                "{:<5} {:<20} {:>8.1} ms  {}",
                if r.ok { "ok" } else { "FAIL" },
                r.component,
                r.latency_ms,
                r.detail
            );
        }
        let failed = results.iter().filter(|r| !r.ok).count();
        if failed == 0 {
            println!("all {} checks passed", results.len());
        } else {
            println!("{failed} of {} checks FAILED", results.len());
        }
    }
    Ok(ok)
}

impl PokeArgs {
    fn endpoints_client(&self) -> anyhow::Result<reqwest::Client> {
        self.endpoints.authed_client()
    }
}
