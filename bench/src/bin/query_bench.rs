//! Query latency on a large, realistic table.
//!
//! `cargo run --release -p sentinel-bench --bin query-bench -- seed` creates the database
//! `sentinel_bench_query` (on the server of DATABASE_URL) and fills it with BENCH_EVENTS
//! (default 5,000,000) events over the 12 months before now: 10 tenants, 5,000 actors and
//! 200,000 resources per tenant, "status → failed" in 2% of events. It is kept between runs.
//! `… -- run` measures p50/p95 per shape, in-process (PgReader) and through the handler: with
//! no token (an IAM caller), with a bearer token, and with a token on a reader-role login
//! (row-level security).
//! `… -- drop` removes the database.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sentinel_bench::stats::percentile;
use sentinel_bench::{connect, copy_rows, fresh_database, server_url, SeedRow};
use sentinel_domain::fields::TenantId;
use sentinel_domain::query::{EventQuery, StateQuery};
use sentinel_postgres::pool;
use sentinel_postgres::reader::{Page, PgReader};
use serde_json::json;

const DB: &str = "sentinel_bench_query";
const TENANTS: u64 = 10;
const ACTORS: u64 = 5_000;
const RESOURCES: u64 = 200_000;
const ACTIONS: [&str; 8] = [
    "billing_update",
    "invoice_create",
    "user_login",
    "role_grant",
    "settings_change",
    "api_key_rotate",
    "payment_refund",
    "record_export",
];

fn row_at(i: u64, n: u64, end: DateTime<Utc>) -> (DateTime<Utc>, u64) {
    // Evenly over 365 days, oldest first, with a stable pseudo-random key per row.
    let span = 365 * 86_400_000_000i64;
    let at = end - chrono::Duration::microseconds(span - (span / n as i64) * i as i64);
    (at, i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11)
}

async fn seed(n: u64) {
    let client = fresh_database(DB).await;
    let end = Utc::now();
    let mut month = end - chrono::Duration::days(366);
    while month < end + chrono::Duration::days(31) {
        client
            .execute("SELECT sentinel_ensure_month_partition($1)", &[&month])
            .await
            .unwrap();
        month += chrono::Duration::days(28);
    }
    let started = Instant::now();
    copy_rows(&client, n, |i| {
        let (at, h) = row_at(i, n, end);
        // Independent of the tenant (h % 10) and the actor: 2% of every tenant's events.
        let failed = (h >> 33) % 50 == 0;
        let status = if failed {
            "failed"
        } else {
            ["paid", "pending", "void", "refunded"][(h % 4) as usize]
        };
        SeedRow {
            id: format!("ev-{i:09}"),
            tenant_id: format!("tenant-{}", h % TENANTS),
            occurred_at: at,
            received_at: at,
            actor_id: format!("user_{}", (h >> 4) % ACTORS),
            actor_type: Some("user"),
            action: ACTIONS[((h >> 12) % 8) as usize],
            resource_type: "invoice",
            resource_id: format!("inv_{}", (h >> 20) % RESOURCES),
            changes: json!({
                "status": {"before": "pending", "after": status},
                "amount": {"before": (h >> 8) % 100_000, "after": (h >> 16) % 100_000},
                "updated_by": {"before": null, "after": format!("user_{}", (h >> 24) % ACTORS)}
            }),
            metadata: json!({"ip": format!("10.{}.{}.{}", h % 255, (h >> 8) % 255, (h >> 16) % 255), "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", "request_id": format!("req-{h:016x}")}),
        }
    })
    .await;
    client
        .batch_execute("VACUUM ANALYZE audit_events")
        .await
        .unwrap();
    let size: String = client
        .query_one("SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits WHERE inhparent = 'audit_events'::regclass", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "seeded {n} events over 12 months in {:.0} s; table + indexes: {size}",
        started.elapsed().as_secs_f64()
    );
}

/// The token issuer the benchmark's query handler trusts, its verifier, an IAM
/// authenticator with every tenant's grant (the arm with no token to verify), and the access
/// log.
struct Identity {
    issuer: sentinel_testing::auth::TestIssuer,
    auth: std::sync::Arc<sentinel_lambda::identity::Authenticator>,
    iam: sentinel_lambda::identity::Authenticator,
    log: sentinel_testing::auth::MemorySink,
}

static IDENTITY: std::sync::LazyLock<Identity> = std::sync::LazyLock::new(|| {
    let issuer = sentinel_testing::auth::TestIssuer::new();
    let auth = issuer.authenticator();
    Identity {
        issuer,
        auth,
        iam: sentinel_lambda::identity::Authenticator::Iam(
            sentinel_lambda::identity::IamAuthenticator::new(std::sync::Arc::new(Grants)),
        ),
        log: Default::default(),
    }
});

/// Grants the IAM role `arn:aws:iam::123456789012:role/<tenant>` its tenant, to read. The
/// authenticator caches each grant, so after the first request of a tenant the directory is
/// not asked: the IAM arm's authentication is a map lookup.
struct Grants;

#[async_trait::async_trait]
impl sentinel_domain::identity::PrincipalDirectory for Grants {
    async fn lookup(
        &self,
        principal: &str,
    ) -> Result<Option<sentinel_domain::identity::Grant>, sentinel_domain::identity::DirectoryError>
    {
        let tenant = principal.rsplit('/').next().unwrap_or_default();
        Ok(Some(sentinel_domain::identity::Grant {
            tenant: TenantId::parse(tenant).unwrap(),
            scopes: vec![sentinel_lambda::identity::Scope::EventsRead.as_str().into()],
        }))
    }
}

/// How a request's caller identifies itself.
#[derive(Clone, Copy)]
enum Caller {
    /// A bearer token, verified once per request as in production (ES256).
    Token,
    /// API Gateway's IAM authorizer context for the tenant's role: no token.
    Iam,
}

/// A request as a reader of the tenant its query names would send it. Built (and its token
/// signed) before the clock starts.
fn request(path: &str, query: &str, caller: Caller) -> lambda_http::Request {
    let tenant = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "tenant_id")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| "default".into());
    let mut event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query, "headers": {},
        "requestContext": {"http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
                           "requestId": "r", "routeKey": "$default", "stage": "$default", "accountId": "0", "apiId": "q",
                           "domainName": "localhost", "domainPrefix": "localhost", "time": "01/Feb/2026:00:00:05 +0000", "timeEpoch": 0},
        "isBase64Encoded": false
    });
    match caller {
        Caller::Token => {
            event["headers"]["authorization"] = json!(IDENTITY
                .issuer
                .bearer(&tenant, &[sentinel_lambda::identity::Scope::EventsRead]))
        }
        Caller::Iam => {
            event["requestContext"]["authorizer"] = json!({"iam": {
                "accessKey": "AKIA", "accountId": "123456789012", "callerId": "AROA", "principalOrgId": null,
                "userArn": format!("arn:aws:iam::123456789012:role/{tenant}"), "userId": "AROA:bench"
            }})
        }
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// Draws one instance of a query shape with varied parameters.
type MakeShape = Box<dyn Fn(&mut StdRng) -> Shape>;

enum Shape {
    List(String, String),
    /// Resource type, id, and the query string (tenant and `at`).
    State(String, String, String),
}

/// The whole query handler: authentication, the read, the access event (in memory).
async fn handle(
    reader: &PgReader,
    caller: Caller,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    let state = query::Query {
        reader,
        log: &sentinel_testing::log::EmptyLog,
        auth: match caller {
            Caller::Token => &IDENTITY.auth,
            Caller::Iam => &IDENTITY.iam,
        },
        access_log: &IDENTITY.log,
    };
    let response = query::handle(&state, request).await.unwrap();
    IDENTITY.log.clear();
    response
}

/// The ways each shape is timed, in the order of the table's columns.
const ARMS: usize = 4;

/// One shape, four ways: the read in process as the database owner (row-level security does
/// not apply to it; no token, no handler); the whole handler on that reader with an IAM
/// caller (no token to verify, no row-level security: the handler "without"); the same with
/// a bearer token to verify; and the handler with a token on a reader that connects as a
/// login of the reader role (token and row-level security on). The order of the four turns
/// with `turn`, so that no arm always runs first (cold) or last (its query cached by the
/// others). Each arm has a connection of its own (`readers`, in arm order; the last logs in
/// as the reader role), so that no backend runs more of the queries than another. Returns
/// the four times and the rows read.
async fn time_shape(
    readers: &[PgReader; ARMS],
    shape: &Shape,
    turn: usize,
) -> ([Duration; ARMS], usize) {
    let (path, query) = match shape {
        Shape::List(path, query) => (path.clone(), query.clone()),
        Shape::State(kind, id, at) => (format!("/resources/{kind}/{id}/state"), at.clone()),
    };
    let mut requests = [
        None,
        Some(request(&path, &query, Caller::Iam)),
        Some(request(&path, &query, Caller::Token)),
        Some(request(&path, &query, Caller::Token)),
    ];
    let mut times = [Duration::ZERO; ARMS];
    let mut rows = 0;
    let mut statuses = Vec::new();
    for k in 0..ARMS {
        let arm = (k + turn) % ARMS;
        let request = requests[arm].take();
        let started = Instant::now();
        match (arm, shape) {
            (0, Shape::List(path, query)) => {
                let parsed = if path == "/events" {
                    EventQuery::parse(Some(query), &TenantId::default_tenant()).unwrap()
                } else {
                    let parts: Vec<&str> = path.split('/').collect();
                    EventQuery::history(
                        parts[2],
                        parts[3],
                        Some(query),
                        &TenantId::default_tenant(),
                    )
                    .unwrap()
                };
                let started = Instant::now();
                let page = readers[0].list(&parsed).await.unwrap();
                times[arm] = started.elapsed();
                rows = match page {
                    Page::Keyset(p) => p.data.len(),
                    Page::Offset(p) => p.data.len(),
                };
                continue;
            }
            (0, Shape::State(kind, id, at)) => {
                let parsed =
                    StateQuery::parse(kind, id, Some(at), Utc::now(), &TenantId::default_tenant())
                        .unwrap();
                let started = Instant::now();
                let state = readers[0].state(&parsed).await.unwrap();
                times[arm] = started.elapsed();
                rows = state.map(|s| s.fields.len()).unwrap_or(0);
                continue;
            }
            (1, _) => statuses.push(
                handle(&readers[1], Caller::Iam, request.unwrap())
                    .await
                    .status(),
            ),
            (2, _) => statuses.push(
                handle(&readers[2], Caller::Token, request.unwrap())
                    .await
                    .status(),
            ),
            _ => statuses.push(
                handle(&readers[3], Caller::Token, request.unwrap())
                    .await
                    .status(),
            ),
        }
        times[arm] = started.elapsed();
    }
    let ok = match shape {
        Shape::List(..) => statuses.iter().all(|s| *s == 200),
        Shape::State(..) => {
            statuses.iter().all(|s| *s == statuses[0]) && (statuses[0] == 200 || statuses[0] == 404)
        }
    };
    assert!(ok, "every arm answers alike: {statuses:?}");
    (times, rows)
}

async fn run(iterations: usize) {
    let url = server_url(DB);
    let reader = PgReader::new(pool(&url, 2).unwrap());
    sentinel_postgres::migrate(&url).await.unwrap();
    let client = connect(&url).await;
    // A login of the reader role, as each query function has deployed (row-level security
    // applies to it, not to the owner).
    let login = "sentinel_reader_bench";
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&login])
        .await
        .unwrap()
        .is_some();
    if !exists {
        client
            .batch_execute("CREATE ROLE sentinel_reader_bench LOGIN IN ROLE sentinel_reader")
            .await
            .unwrap();
    }
    let rls_url = url.replacen("://postgres@", &format!("://{login}@"), 1);
    assert_ne!(rls_url, url, "DATABASE_URL must name the postgres user");
    // One connection per arm (one backend each), the last as the reader role.
    let readers = [
        PgReader::new(pool(&url, 1).unwrap()),
        PgReader::new(pool(&url, 1).unwrap()),
        PgReader::new(pool(&url, 1).unwrap()),
        PgReader::new(pool(&rls_url, 1).unwrap()),
    ];
    let n: i64 = client.query_one("SELECT reltuples::bigint FROM pg_class WHERE relname = 'audit_events_' || to_char(now(), 'YYYY_MM')", &[]).await.map(|r| r.get(0)).unwrap_or(0);
    let total: i64 = client.query_one("SELECT sum(reltuples)::bigint FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid WHERE i.inhparent = 'audit_events'::regclass", &[]).await.unwrap().get(0);
    println!("query latency on {total} events (≈{n} this month); {iterations} iterations per shape, varied parameters; ms");
    let now = Utc::now();
    let iso = |d: DateTime<Utc>| d.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut rng = StdRng::seed_from_u64(9);

    // Keyset depth: walk to page 1,000 of a tenant's newest-first list once, untimed.
    let deep_query = "tenant_id=tenant-3&limit=50";
    let mut cursor = String::new();
    for _ in 0..999 {
        let q = if cursor.is_empty() {
            deep_query.to_string()
        } else {
            format!("{deep_query}&cursor={cursor}")
        };
        match reader
            .list(&EventQuery::parse(Some(&q), &TenantId::default_tenant()).unwrap())
            .await
            .unwrap()
        {
            Page::Keyset(p) => cursor = p.next_cursor.expect("deep enough"),
            Page::Offset(_) => unreachable!(),
        }
    }

    let shapes: Vec<(&str, MakeShape)> = vec![
        (
            "one actor's last 30 days, first page",
            Box::new(move |r: &mut StdRng| {
                Shape::List(
                    "/events".into(),
                    format!(
                        "tenant_id=tenant-{}&actor_id=user_{}&from={}",
                        r.random_range(0..TENANTS),
                        r.random_range(0..ACTORS),
                        iso(now - chrono::Duration::days(30))
                    ),
                )
            }),
        ),
        (
            "one resource's history, first page",
            Box::new(|r: &mut StdRng| {
                Shape::List(
                    format!(
                        "/resources/invoice/inv_{}/history",
                        r.random_range(0..RESOURCES)
                    ),
                    format!("tenant_id=tenant-{}", r.random_range(0..TENANTS)),
                )
            }),
        ),
        (
            "changed_field=status&changed_to=failed, 90 days, first page",
            Box::new(move |r: &mut StdRng| {
                Shape::List(
                    "/events".into(),
                    format!(
                        "tenant_id=tenant-{}&changed_field=status&changed_to=failed&from={}",
                        r.random_range(0..TENANTS),
                        iso(now - chrono::Duration::days(90))
                    ),
                )
            }),
        ),
        (
            "tenant's newest events, first page",
            Box::new(|r: &mut StdRng| {
                Shape::List(
                    "/events".into(),
                    format!("tenant_id=tenant-{}&limit=50", r.random_range(0..TENANTS)),
                )
            }),
        ),
        (
            "  … keyset page 1,000 (cursor)",
            Box::new(move |_| {
                Shape::List("/events".into(), format!("{deep_query}&cursor={cursor}"))
            }),
        ),
        (
            "  … offset page 1,000 (page=1000&per_page=50)",
            Box::new(|_| {
                Shape::List(
                    "/events".into(),
                    "tenant_id=tenant-3&page=1000&per_page=50".into(),
                )
            }),
        ),
        (
            "state of one resource at T",
            Box::new(move |r: &mut StdRng| {
                Shape::State(
                    "invoice".into(),
                    format!("inv_{}", r.random_range(0..RESOURCES)),
                    format!(
                        "tenant_id=tenant-{}&at={}",
                        r.random_range(0..TENANTS),
                        iso(now - chrono::Duration::days(r.random_range(1..300)))
                    ),
                )
            }),
        ),
    ];
    println!("\n| shape | in-process (owner, no RLS, no token) p50 | p95 | handler, IAM caller (no token, no RLS) p50 | p95 | handler, token (no RLS) p50 | p95 | handler, token + RLS (reader login) p50 | p95 | p95 token+RLS / handler without | p95 token+RLS / in-process | rows (median) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (label, make) in shapes {
        let mut arms: [Vec<Duration>; ARMS] = Default::default();
        let mut rows = Vec::new();
        for i in 0..iterations + 5 {
            let shape = make(&mut rng);
            let (times, n) = time_shape(&readers, &shape, i).await;
            if i >= 5 {
                for (samples, time) in arms.iter_mut().zip(times) {
                    samples.push(time);
                }
                rows.push(n);
            }
        }
        rows.sort();
        let mut line = format!("| {label} |");
        let mut p95 = [0.0; ARMS];
        for (samples, p95) in arms.iter_mut().zip(p95.iter_mut()) {
            *p95 = percentile(samples, 0.95);
            line += &format!(" {:.2} | {:.2} |", percentile(samples, 0.5), *p95);
        }
        println!(
            "{line} {:.2} | {:.2} | {} |",
            p95[3] / p95[1],
            p95[3] / p95[0],
            rows[rows.len() / 2]
        );
    }
}

#[tokio::main]
async fn main() {
    let command = std::env::args().nth(1).unwrap_or_else(|| "run".into());
    match command.as_str() {
        "seed" => {
            seed(
                std::env::var("BENCH_EVENTS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(5_000_000),
            )
            .await
        }
        "run" => {
            run(std::env::var("BENCH_ITERATIONS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(200))
            .await
        }
        "drop" => {
            connect(&server_url("postgres"))
                .await
                .batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
                .await
                .unwrap();
        }
        other => eprintln!("unknown command {other}: use seed, run or drop"),
    }
}
