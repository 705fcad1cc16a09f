//! The migrator as CloudFormation drives it, against the real PostgreSQL: requests in,
//! responses PUT to a local stand-in for the pre-signed response URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::extract::State;
use axum::routing::put;
use lambda_runtime::{Context, LambdaEvent};
use migrate::{handler, Environment};
use sentinel_postgres::settings::DatabaseSettings;
use sentinel_testing::admin_url;
use serde_json::{json, Value};
use tokio_postgres::NoTls;

const CREATE: &str = include_str!("../../../events/cfn_migrate_create.json");

/// A local database server, and secrets held in memory.
struct Local {
    url: Option<String>,
    secrets: HashMap<String, String>,
}

#[async_trait]
impl Environment for Local {
    async fn admin_settings(&self) -> anyhow::Result<DatabaseSettings> {
        match &self.url {
            Some(url) => DatabaseSettings::from_url(url),
            None => panic!("this request must not touch the database"),
        }
    }

    async fn secret(&self, arn: &str) -> anyhow::Result<String> {
        self.secrets
            .get(arn)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no secret {arn}"))
    }
}

/// Receives what the migrator PUTs to the response URL.
struct ResponseUrl {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
}

impl ResponseUrl {
    async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route(
                "/response",
                put(
                    |State(received): State<Arc<Mutex<Vec<Value>>>>, body: String| async move {
                        received
                            .lock()
                            .unwrap()
                            .push(serde_json::from_str(&body).unwrap());
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/response", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, received }
    }

    fn only(&self) -> Value {
        let received = self.received.lock().unwrap();
        assert_eq!(received.len(), 1, "one response per request: {received:?}");
        received[0].clone()
    }

    fn clear(&self) {
        self.received.lock().unwrap().clear();
    }
}

fn with_database(url: &str, database: &str) -> String {
    let base = url.split_once('?').map_or(url, |(b, _)| b);
    let prefix = &base[..base.rfind('/').unwrap()];
    format!("{prefix}/{database}")
}

fn event(request: Value, seconds_left: u64) -> LambdaEvent<Value> {
    let mut context = Context::default();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    context.deadline = (now + Duration::from_secs(seconds_left)).as_millis() as u64;
    LambdaEvent::new(request, context)
}

fn request(kind: &str, response_url: &str, logins: Value) -> Value {
    let mut request: Value = serde_json::from_str(CREATE).unwrap();
    request["RequestType"] = json!(kind);
    request["ResponseURL"] = json!(response_url);
    request["ResourceProperties"]["LoginRoles"] = logins;
    if kind != "Create" {
        request["PhysicalResourceId"] = json!("sentinel-database-schema");
    }
    request
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&with_database(&admin_url(), "postgres"), NoTls)
            .await
            .expect("PostgreSQL must be reachable");
    tokio::spawn(connection);
    client
}

/// A database name and three login names of one test's own, removed on drop.
struct Scratch {
    database: String,
    users: Vec<String>,
}

impl Scratch {
    fn new() -> Self {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
        Self {
            database: format!("sentinel_test_{id}"),
            users: ["w", "r", "a"]
                .iter()
                .map(|k| format!("sentinel_test_{k}_{id}"))
                .collect(),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let database = self.database.clone();
        let users = self.users.clone();
        sentinel_testing::on_own_thread(move || async move {
            let client = admin().await;
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .await;
            for user in users {
                let _ = client
                    .batch_execute(&format!("DROP ROLE IF EXISTS {user}"))
                    .await;
            }
        });
    }
}

fn secret(user: &str, password: &str) -> String {
    json!({"username": user, "password": password}).to_string()
}

async fn password_verifier(client: &tokio_postgres::Client, user: &str) -> String {
    client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&user],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn create_migrates_a_new_database_and_gives_each_function_its_own_login() {
    let scratch = Scratch::new();
    let responses = ResponseUrl::start().await;
    let roles = ["sentinel_writer", "sentinel_reader", "sentinel_archiver"];
    let mut secrets = HashMap::new();
    let mut logins = Vec::new();
    for (user, role) in scratch.users.iter().zip(roles) {
        let arn = format!("arn:test:secret:{user}");
        secrets.insert(arn.clone(), secret(user, "a-long-generated-password-1"));
        logins.push(json!({"Role": role, "SecretArn": arn}));
    }
    let env = Local {
        url: Some(with_database(&admin_url(), &scratch.database)),
        secrets,
    };
    let http = reqwest::Client::new();

    handler(
        &env,
        &http,
        event(request("Create", &responses.url, json!(logins)), 120),
    )
    .await
    .unwrap();

    let response = responses.only();
    assert_eq!(response["Status"], "SUCCESS", "{response}");
    assert_eq!(response["PhysicalResourceId"], "sentinel-database-schema");
    assert_eq!(response["LogicalResourceId"], "DatabaseMigrations");
    let applied = response["Data"]["Applied"].as_str().unwrap();
    assert!(
        applied.contains("V1__audit_events") && applied.contains("V2__archive"),
        "{applied}"
    );
    let admin = admin().await;
    for (user, role) in scratch.users.iter().zip(roles) {
        let member: bool = admin
            .query_one(
                "SELECT pg_has_role($1, $2, 'MEMBER') AND rolcanlogin AND NOT rolsuper \
                 FROM pg_roles WHERE rolname = $1",
                &[user, &role],
            )
            .await
            .unwrap()
            .get(0);
        assert!(member, "{user} must be a login in {role}");
        assert!(password_verifier(&admin, user)
            .await
            .starts_with("SCRAM-SHA-256$"));
    }
    // Each login holds only its role's rights: the reader reads and cannot write.
    let reader_url = with_database(&admin_url(), &scratch.database).replacen(
        "postgres@",
        &format!("{}@", scratch.users[1]),
        1,
    );
    let (reader, connection) = tokio_postgres::connect(&reader_url, NoTls).await.unwrap();
    tokio::spawn(connection);
    reader
        .query("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap();
    let refused = reader
        .batch_execute(
            "INSERT INTO event_ids (tenant_id, id, occurred_at) VALUES ('t', 'x', now())",
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code().unwrap().code(), "42501", "{refused}");
}

#[tokio::test]
async fn an_update_is_harmless_to_rerun_and_applies_a_changed_password() {
    let scratch = Scratch::new();
    let responses = ResponseUrl::start().await;
    let user = &scratch.users[0];
    let arn = "arn:test:secret:writer";
    let logins = json!([{"Role": "sentinel_writer", "SecretArn": arn}]);
    let url = with_database(&admin_url(), &scratch.database);
    let http = reqwest::Client::new();
    let first = Local {
        url: Some(url.clone()),
        secrets: HashMap::from([(arn.to_string(), secret(user, "first-password-0123456789"))]),
    };
    handler(
        &first,
        &http,
        event(request("Create", &responses.url, logins.clone()), 120),
    )
    .await
    .unwrap();
    assert_eq!(responses.only()["Status"], "SUCCESS");
    let admin = admin().await;
    let before = password_verifier(&admin, user).await;
    responses.clear();

    let rotated = Local {
        url: Some(url),
        secrets: HashMap::from([(arn.to_string(), secret(user, "second-password-0123456789"))]),
    };
    handler(
        &rotated,
        &http,
        event(request("Update", &responses.url, logins), 120),
    )
    .await
    .unwrap();

    let response = responses.only();
    assert_eq!(response["Status"], "SUCCESS", "{response}");
    assert_eq!(
        response["Data"]["Applied"], "",
        "nothing is left to apply on a rerun"
    );
    assert_ne!(password_verifier(&admin, user).await, before);
}

#[tokio::test]
async fn a_login_into_any_other_role_fails_the_deploy_before_touching_the_database() {
    let scratch = Scratch::new();
    let responses = ResponseUrl::start().await;
    let env = Local {
        url: Some(with_database(&admin_url(), &scratch.database)),
        secrets: HashMap::new(),
    };
    let logins = json!([{"Role": "pg_write_all_data", "SecretArn": "arn:test:x"}]);

    handler(
        &env,
        &reqwest::Client::new(),
        event(request("Create", &responses.url, logins), 120),
    )
    .await
    .unwrap();

    let response = responses.only();
    assert_eq!(response["Status"], "FAILED");
    assert!(
        response["Reason"]
            .as_str()
            .unwrap()
            .contains("pg_write_all_data"),
        "{response}"
    );
    let exists = admin()
        .await
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&scratch.database],
        )
        .await
        .unwrap();
    assert!(exists.is_none(), "the database must not have been created");
}

#[tokio::test]
async fn delete_succeeds_and_keeps_the_data() {
    let responses = ResponseUrl::start().await;
    // No database at all: Delete must not need one.
    let env = Local {
        url: None,
        secrets: HashMap::new(),
    };

    handler(
        &env,
        &reqwest::Client::new(),
        event(request("Delete", &responses.url, json!([])), 120),
    )
    .await
    .unwrap();

    let response = responses.only();
    assert_eq!(response["Status"], "SUCCESS");
    assert_eq!(response["PhysicalResourceId"], "sentinel-database-schema");
}

#[tokio::test]
async fn an_unreachable_database_fails_the_deploy_promptly() {
    let responses = ResponseUrl::start().await;
    let env = Local {
        // Nothing listens on port 9 of this machine.
        url: Some("postgres://postgres@127.0.0.1:9/sentinel?connect_timeout=2".into()),
        secrets: HashMap::new(),
    };
    let started = Instant::now();

    handler(
        &env,
        &reqwest::Client::new(),
        event(request("Create", &responses.url, json!([])), 60),
    )
    .await
    .unwrap();

    let response = responses.only();
    assert_eq!(response["Status"], "FAILED");
    assert!(
        response["Reason"].as_str().unwrap().contains("connect"),
        "{response}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_migration_that_outlives_the_function_is_reported_before_the_deadline() {
    let responses = ResponseUrl::start().await;
    // A server that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let env = Local {
        url: Some(format!("postgres://postgres@127.0.0.1:{port}/sentinel")),
        secrets: HashMap::new(),
    };

    // Ten seconds are kept back to answer; with twelve left, the work gets two.
    let started = Instant::now();
    handler(
        &env,
        &reqwest::Client::new(),
        event(request("Create", &responses.url, json!([])), 12),
    )
    .await
    .unwrap();

    let response = responses.only();
    assert_eq!(response["Status"], "FAILED");
    assert!(
        response["Reason"].as_str().unwrap().contains("timeout"),
        "{response}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
}
