//! A query handler wired to a real log: PostgreSQL read as the reader role, checkpoints
//! signed by the real checkpointer (its signer and S3 copy in memory).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lambda_http::{Body, Response};
use sentinel_domain::checkpoint::VerifierKey;
use sentinel_domain::store::EventStore;
use sentinel_domain::AuditEvent;
use sentinel_lambda::identity::Scope;
use sentinel_postgres::log::{Checkpointer, PgLogReader};
use sentinel_postgres::reader::PgReader;
use sentinel_postgres::{pool, writer::PgEventStore};
use sentinel_testing::auth::{MemorySink, TestIssuer};
use sentinel_testing::log::{MemoryArchive, MemorySigner};
use sentinel_testing::TestDatabase;
use serde_json::{json, Value};

pub const STACK: &str = "test";

pub struct Api {
    pub db: TestDatabase,
    pub issuer: TestIssuer,
    auth: Arc<sentinel_lambda::identity::Authenticator>,
    pub access_log: MemorySink,
    reader: PgReader,
    log: PgLogReader,
    pub key: VerifierKey,
    checkpointer: Checkpointer,
}

fn pool_as(db: &TestDatabase, role: &str) -> deadpool_postgres::Pool {
    pool(&format!("{}?options=-c%20role%3D{role}", db.url), 2).unwrap()
}

impl Api {
    pub async fn new() -> Self {
        let db = TestDatabase::create().await;
        let issuer = TestIssuer::new();
        let auth = issuer.authenticator();
        let signer = Arc::new(MemorySigner::new("proof tests"));
        let key = signer.verifier(&format!("sentinel/{STACK}"));
        let checkpointer = Checkpointer::new(
            pool_as(&db, "sentinel_checkpointer"),
            STACK,
            key.clone(),
            signer,
            Arc::new(MemoryArchive::default()),
            Duration::from_secs(3000),
        );
        Self {
            reader: PgReader::new(pool_as(&db, "sentinel_reader")),
            log: PgLogReader::new(pool_as(&db, "sentinel_reader")),
            db,
            issuer,
            auth,
            access_log: MemorySink::default(),
            key,
            checkpointer,
        }
    }

    pub async fn store(&self, events: &[AuditEvent]) {
        let store = PgEventStore::new(pool(&self.db.url, 1).unwrap());
        store.store(events).await.unwrap();
    }

    pub async fn checkpoint(&self) {
        let summary = checkpointer::Run::new(&self.checkpointer)
            .run(Utc::now())
            .await
            .unwrap();
        assert!(summary.failed.is_empty(), "{summary:?}");
    }

    pub async fn response_as(
        &self,
        authorization: &str,
        path: &str,
        query: &str,
    ) -> Response<Body> {
        let request = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
            "headers": {"accept": "application/json", "authorization": authorization},
            "requestContext": {"http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
                               "requestId": "r", "routeKey": "$default", "stage": "$default", "accountId": "0", "apiId": "q",
                               "domainName": "localhost", "domainPrefix": "localhost", "time": "01/Feb/2026:00:00:05 +0000", "timeEpoch": 0},
            "isBase64Encoded": false
        });
        let request = lambda_http::request::from_str(&request.to_string()).unwrap();
        let state = query::Query {
            reader: &self.reader,
            log: &self.log,
            auth: &self.auth,
            access_log: &self.access_log,
        };
        query::handle(&state, request).await.unwrap()
    }

    /// The handler's answer to one request.
    pub async fn handle(&self, request: lambda_http::Request) -> Response<Body> {
        let state = query::Query {
            reader: &self.reader,
            log: &self.log,
            auth: &self.auth,
            access_log: &self.access_log,
        };
        query::handle(&state, request).await.unwrap()
    }

    pub async fn get_as(&self, authorization: &str, path: &str, query: &str) -> (u16, Value) {
        let response = self.response_as(authorization, path, query).await;
        let body = match response.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("{other:?}"),
        };
        (response.status().as_u16(), body)
    }

    pub async fn response(&self, path: &str, query: &str) -> Response<Body> {
        let token = self.issuer.bearer("acme", &[Scope::EventsRead]);
        self.response_as(&token, path, query).await
    }

    pub async fn get(&self, path: &str, query: &str) -> (u16, Value) {
        let token = self.issuer.bearer("acme", &[Scope::EventsRead]);
        self.get_as(&token, path, query).await
    }
}

/// `n` events of tenant acme: `evt-0`, `evt-1`, …
pub fn events(n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            sentinel_testing::log::sample_event("acme", &format!("evt-{i}"), "2026-11-20T10:00:00Z")
        })
        .collect()
}
