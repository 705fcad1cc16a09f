//! Shared workload for the benchmarks: realistic audit events.

pub mod ingest_arms;
pub mod stats;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sentinel_domain::event::AuditEvent;
use sentinel_domain::fields::TenantId;
use serde_json::{json, Value};

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
const STATUSES: [&str; 5] = ["pending", "paid", "failed", "refunded", "void"];

/// A v1 request body for one realistic event (about 600 bytes once normalized and encoded):
/// three changed fields and request metadata.
pub fn request_event(rng: &mut StdRng, occurred_at: DateTime<Utc>) -> Value {
    let before = STATUSES[rng.random_range(0..STATUSES.len())];
    let after = STATUSES[rng.random_range(0..STATUSES.len())];
    json!({
        "tenant_id": format!("tenant-{}", rng.random_range(0..20)),
        "occurred_at": occurred_at.to_rfc3339(),
        "actor_id": format!("user_{}", rng.random_range(0..5_000)),
        "actor_type": "user",
        "action": ACTIONS[rng.random_range(0..ACTIONS.len())],
        "resource_type": "invoice",
        "resource_id": format!("inv_{}", rng.random_range(0..200_000)),
        "changes": {
            "status": {"before": before, "after": after},
            "amount": {"before": rng.random_range(100..100_000), "after": rng.random_range(100..100_000)},
            "updated_by": format!("user_{}", rng.random_range(0..5_000))
        },
        "metadata": {
            "ip": format!("10.{}.{}.{}", rng.random_range(0..255), rng.random_range(0..255), rng.random_range(1..255)),
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
            "request_id": format!("req-{:016x}", rng.random::<u64>()),
            "service": "billing-api"
        }
    })
}

/// What one tenant's client sends: [`request_event`] without `tenant_id`, which the caller's
/// token supplies.
pub fn client_event(rng: &mut StdRng, occurred_at: DateTime<Utc>) -> Value {
    let mut event = request_event(rng, occurred_at);
    event.as_object_mut().unwrap().remove("tenant_id");
    event
}

/// `n` validated, normalized events of 20 tenants spread over the `days` before `end`, with
/// fresh ids. Each is parsed as its own tenant's caller would send it.
pub fn events(n: usize, seed: u64, end: DateTime<Utc>, days: i64) -> Vec<AuditEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    let span = days * 86_400;
    (0..n)
        .map(|_| {
            let at = end - Duration::seconds(rng.random_range(1..span));
            let body = request_event(&mut rng, at);
            let tenant = TenantId::parse(body["tenant_id"].as_str().unwrap()).unwrap();
            sentinel_domain::validation::parse_request(
                &serde_json::to_vec(&body).unwrap(),
                end,
                &tenant,
                || uuid::Uuid::now_v7().to_string(),
            )
            .expect("benchmark events are valid")
            .remove(0)
        })
        .collect()
}

/// `postgres://user@host:port/<database>` on the server of `DATABASE_URL` (default: the local
/// one), for benchmarks that make a database of their own.
pub fn server_url(database: &str) -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/sentinel".into());
    let config: tokio_postgres::Config = base.parse().expect("DATABASE_URL");
    let user = config.get_user().unwrap_or("postgres").to_string();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{user}@{host}:{port}/{database}")
}

/// One plain connection, its driver spawned on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// Drops and recreates `database` on the server of `DATABASE_URL`, applies the migrations,
/// and connects to it.
pub async fn fresh_database(database: &str) -> tokio_postgres::Client {
    let admin = connect(&server_url("postgres")).await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let url = server_url(database);
    sentinel_postgres::migrate(&url).await.unwrap();
    connect(&url).await
}

/// One row for [`copy_rows`], field for field in the order of
/// [`sentinel_postgres::writer::COLUMNS`].
pub struct SeedRow {
    pub id: String,
    pub tenant_id: String,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub actor_id: String,
    pub actor_type: Option<&'static str>,
    pub action: &'static str,
    pub resource_type: &'static str,
    pub resource_id: String,
    pub changes: Value,
    pub metadata: Value,
}

/// Loads rows `row(0)` to `row(n - 1)` into `audit_events` with binary COPY, 100,000 rows
/// per statement, printing progress to stderr. Their partitions must exist.
pub async fn copy_rows(
    client: &tokio_postgres::Client,
    n: u64,
    mut row: impl FnMut(u64) -> SeedRow,
) {
    use futures_util::pin_mut;
    use postgres_types::Json;
    use sentinel_postgres::writer::{COLUMNS, COPY_TYPES};
    use tokio_postgres::binary_copy::BinaryCopyInWriter;

    const CHUNK: u64 = 100_000;
    let started = std::time::Instant::now();
    for start in (0..n).step_by(CHUNK as usize) {
        let end = (start + CHUNK).min(n);
        let sink = client
            .copy_in(&format!(
                "COPY audit_events ({}) FROM STDIN (FORMAT binary)",
                *COLUMNS
            ))
            .await
            .expect("COPY audit_events");
        let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
        pin_mut!(writer);
        for i in start..end {
            let r = row(i);
            writer
                .as_mut()
                .write(&[
                    &r.id,
                    &r.tenant_id,
                    &r.occurred_at,
                    &r.received_at,
                    &r.actor_id,
                    &r.actor_type,
                    &r.action,
                    &r.resource_type,
                    &r.resource_id,
                    &Json(&r.changes),
                    &Json(&r.metadata),
                ])
                .await
                .expect("COPY row");
        }
        writer.finish().await.expect("COPY finish");
        eprint!(
            "\rseeded {end} of {n} rows ({:.0}/s)",
            end as f64 / started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
}
