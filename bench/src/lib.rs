//! Shared workload for the benchmarks: realistic audit events.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sentinel_core::event::AuditEvent;
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

/// `n` validated, normalized events spread over the `days` before `end`, with fresh ids.
pub fn events(n: usize, seed: u64, end: DateTime<Utc>, days: i64) -> Vec<AuditEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    let span = days * 86_400;
    let bodies: Vec<Value> = (0..n)
        .map(|_| {
            let at = end - Duration::seconds(rng.random_range(1..span));
            request_event(&mut rng, at)
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for chunk in bodies.chunks(500) {
        let body = serde_json::to_vec(&json!({ "events": chunk })).unwrap();
        out.extend(
            sentinel_core::validation::parse_request(&body, end, || {
                uuid::Uuid::now_v7().to_string()
            })
            .expect("benchmark events are valid"),
        );
    }
    out
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
    sentinel_core::postgres::migrate(&url).await.unwrap();
    connect(&url).await
}
