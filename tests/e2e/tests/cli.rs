//! The `sentinel` operator commands (issue 13) against the local stack: `emit-sample`,
//! `poke`, `query`, `tail` and `export`, run as a user runs them, the binary with its
//! environment, against cargo lambda, LocalStack and PostgreSQL, each named for this test.

use std::time::{Duration, Instant};

use sentinel_e2e::{binary, LambdaEmulator};
use sentinel_esm::{EsmConfig, EsmHandle};
use sentinel_lambda::identity::Scope;
use sentinel_testing::auth::TestIssuer;
use sentinel_testing::{kinesis_client, TestDatabase, TestStream};
use serde_json::Value;

/// What the environment of `scripts/env.sh` may hold that would point the CLI elsewhere.
const SCRUBBED: [&str; 8] = [
    "ARCHIVE_BUCKET",
    "CHECKPOINT_BUCKET",
    "SIGNING_KEY_ID",
    "ARCHIVE_SIGNING_KEY_ID",
    "SENTINEL_TOKEN",
    "SENTINEL_INGEST_URL",
    "SENTINEL_QUERY_URL",
    "STREAM_NAME",
];

struct Cli {
    env: Vec<(String, String)>,
}

impl Cli {
    /// Runs `sentinel` without blocking the test's runtime (the event source mapping runner
    /// runs on it).
    async fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
        let mut command = tokio::process::Command::new(binary("sentinel"));
        for name in SCRUBBED {
            command.env_remove(name);
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command.envs(extra.iter().copied());
        let out = command.args(args).output().await.expect("sentinel runs");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        println!("$ sentinel {}\n{stdout}{stderr}", args.join(" "));
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn the_operator_commands_work_against_the_local_stack() {
    let db = TestDatabase::create().await;
    let stream = TestStream::create(kinesis_client(None).await, 1).await;
    let issuer = TestIssuer::new();
    let jwks = issuer.jwks_file();
    let mut env: Vec<(&'static str, String)> = jwks.env();
    env.push(("STREAM_NAME", stream.name.clone()));
    let mut lambda = LambdaEmulator::start().await;
    let ingest_env: Vec<(&'static str, String)> = env.clone();
    let mut query_env = env.clone();
    query_env.push(("DATABASE_URL", db.url.clone()));
    lambda.attach("ingest", &pairs(&ingest_env));
    lambda.attach("writer", &[("DATABASE_URL", &db.url)]);
    lambda.attach("query", &pairs(&query_env));
    let checkpoints = std::env::temp_dir().join(format!("sentinel-e2e-cli-{}", stream.name));
    let mut config = EsmConfig::new(&stream.name);
    config.lambda_invoke_url = lambda.url();
    config.checkpoint_dir = checkpoints.clone();
    config.max_batching_window = Duration::from_millis(100);
    let runner = EsmHandle::spawn(config, stream.client.clone());

    sentinel_testing::localstack_env();
    let aws = sentinel_aws::config().await;
    let s3 = sentinel_aws::s3::client(&aws);
    let bucket = sentinel_testing::unique_name("sentinel-e2e-cli");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    let token = issuer.token("default", &[Scope::EventsWrite, Scope::EventsRead]);
    let cli = Cli {
        env: vec![
            ("LAMBDA_INVOKE_URL".into(), lambda.url()),
            ("SENTINEL_TOKEN".into(), token),
            ("STREAM_NAME".into(), stream.name.clone()),
            ("DATABASE_URL".into(), db.url.clone()),
            ("ARCHIVE_BUCKET".into(), bucket.clone()),
        ],
    };

    // emit-sample: 300 events in batches of 50, every one accepted.
    let (status, out, _) = cli
        .run(&["emit-sample", "300", "--batch", "50", "--json"], &[])
        .await;
    assert_eq!(status, 0);
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (summary["accepted"].as_u64(), summary["refused"].as_u64()),
        (Some(300), Some(0))
    );
    let run = summary["sample_run"].as_str().unwrap().to_string();
    // ... and with a token that may only read, every one refused, and it says why.
    let reader = issuer.token("default", &[Scope::EventsRead]);
    let (status, out, _) = cli
        .run(
            &["emit-sample", "20", "--batch", "10"],
            &[("SENTINEL_TOKEN", &reader)],
        )
        .await;
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains("20 events REFUSED") && out.contains("403"),
        "{out}"
    );

    // The writer stores them (the sample's own run only).
    let sample =
        format!("SELECT count(*) FROM audit_events WHERE metadata->>'sample_run' = '{run}'");
    let deadline = Instant::now() + Duration::from_secs(90);
    while count(&db, &sample).await < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(&db, &sample).await, 300);

    // poke: every component answers, the writer end to end included.
    let (status, out, _) = cli.run(&["poke", "--json"], &[]).await;
    assert_eq!(status, 0, "{out}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    let checks: Vec<(&str, bool)> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["component"].as_str().unwrap(), c["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("ingest", true),
            ("query", true),
            ("stream", true),
            ("database", true),
            ("archive bucket", true),
            ("writer", true)
        ]
    );
    // ... and with LocalStack out of reach, it names it and fails.
    let (status, out, _) = cli
        .run(&["poke"], &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")])
        .await;
    assert_eq!(status, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL  stream") && l.contains("is LocalStack running?")),
        "{out}"
    );
    assert!(out.contains("2 of 6 checks FAILED"), "{out}");

    // query: the filter as the API takes it, as JSON.
    let (status, out, _) = cli
        .run(
            &[
                "query",
                "--action",
                "invoice.update",
                "--limit",
                "1000",
                "--json",
            ],
            &[],
        )
        .await;
    assert_eq!(status, 0);
    let events: Vec<Value> = serde_json::from_str(&out).unwrap();
    let invoices = count(&db, &format!("{sample} AND action = 'invoice.update'")).await;
    assert!(invoices > 0);
    assert_eq!(events.len() as i64, invoices);
    assert!(events.iter().all(|e| e["action"] == "invoice.update"));
    // ... and as a table.
    let (status, out, _) = cli
        .run(
            &["query", "--action", "invoice.update", "--limit", "3"],
            &[],
        )
        .await;
    assert_eq!(status, 0);
    assert!(out.starts_with("OCCURRED_AT"), "{out}");
    assert!(
        out.contains("3 events (more match: raise --limit)"),
        "{out}"
    );

    // export: every event of the filter, read back.
    let dir = std::env::temp_dir().join(sentinel_testing::unique_name("sentinel-e2e-export"));
    std::fs::create_dir_all(&dir).unwrap();
    let ndjson = dir.join("logins.ndjson");
    let csv = dir.join("logins.csv");
    let logins = count(&db, &format!("{sample} AND action = 'user.login'")).await;
    let (status, _, _) = cli
        .run(
            &[
                "export",
                "--action",
                "user.login",
                "--output",
                ndjson.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(status, 0);
    let lines: Vec<Value> = std::fs::read_to_string(&ndjson)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as i64, logins);
    assert!(lines.iter().all(|e| e["action"] == "user.login"));
    let (status, _, _) = cli
        .run(
            &[
                "export",
                "--action",
                "user.login",
                "--format",
                "csv",
                "-o",
                csv.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(status, 0);
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    assert_eq!(reader.headers().unwrap().get(0), Some("id"));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len() as i64, logins);
    let ids: Vec<&str> = lines.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        rows.iter().map(|r| &r[0]).collect::<Vec<_>>(),
        ids,
        "the same events, in the same order"
    );
    // An existing file is not overwritten without --force.
    let (status, _, err) = cli
        .run(
            &[
                "export",
                "--action",
                "user.login",
                "-o",
                csv.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_ne!(status, 0);
    assert!(err.contains("could not create"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    // tail: the newest events, oldest first, as they are queryable.
    let (status, out, _) = cli
        .run(
            &["tail", "--action", "role.grant", "--count", "2", "--json"],
            &[],
        )
        .await;
    assert_eq!(status, 0);
    let tailed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tailed.len(), 2);
    assert!(tailed.iter().all(|e| e["action"] == "role.grant"));
    assert!(tailed[0]["occurred_at"].as_str() <= tailed[1]["occurred_at"].as_str());

    // Without a token, each says what to do.
    let (status, _, err) = cli.run(&["query"], &[("SENTINEL_TOKEN", "")]).await;
    assert_ne!(status, 0);
    assert!(err.contains("401") || err.contains("no token"), "{err}");

    // The functions' logs carry their metrics (EMF on stdout): what the commands above did.
    let log = |function: &str| {
        let path = sentinel_e2e::workspace_root()
            .join(format!(".local/logs/e2e/{function}-{}.log", lambda.port));
        sentinel_lambda::metrics::parse_lines(&std::fs::read_to_string(path).unwrap())
    };
    let sum = |lines: &[Value], name: &str| -> f64 {
        lines.iter().filter_map(|l| l[name].as_f64()).sum()
    };
    let ingest = log("ingest");
    let writer = log("writer");
    let query = log("query");
    // 300 samples and the two pokes' probes, accepted; the read-only token's 2 requests
    // refused.
    assert_eq!(sum(&ingest, "EventsAccepted"), 302.0);
    assert!(sum(&ingest, "RequestsRefused") >= 2.0);
    // Stored: the samples, the probe, and the access events of every read.
    let stored = count(&db, "SELECT count(*) FROM audit_events").await as f64;
    assert_eq!(sum(&writer, "EventsStored"), stored);
    assert!(writer
        .iter()
        .any(|l| l["IngestToStored"].is_number() || l["IngestToStored"].is_array()));
    assert!(writer.iter().all(|l| l["IteratorAge"].is_number()));
    let routes: std::collections::BTreeSet<&str> =
        query.iter().filter_map(|l| l["Route"].as_str()).collect();
    assert!(
        routes.contains("list") && routes.contains("get"),
        "{routes:?}"
    );
    assert!(query.iter().all(|l| l["Latency"].is_number()));

    runner.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&checkpoints);
    let _ = s3.delete_bucket().bucket(&bucket).send().await;
}
