//! Ingest's handler on a batch of 500 with and without token verification, interleaved in
//! one run, so that a noisy machine slows both arms alike.
//!
//! `cargo bench -p sentinel-bench --bench ingest_identity` (BENCH_ROUNDS, default 300).
//! Each round runs both arms once, in turns: the whole `ingest::handle` with an in-memory
//! stream, once with a bearer token (one ES256 verification) and once with an IAM caller whose
//! grant is cached (no token: a map lookup). The requests are built before the clock starts.
//! It also times one token verification alone. Wall time, median and mean per arm.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::SubsecRound;
use ingest::{handle, Ingest};
use rand::SeedableRng;
use sentinel_domain::fields::TenantId;
use sentinel_domain::identity::{DirectoryError, Grant, PrincipalDirectory};
use sentinel_domain::publish::{OutgoingRecord, RecordOutcome, RecordSink, SinkError};
use sentinel_lambda::identity::{Authenticator, IamAuthenticator, Scope};
use serde_json::json;

struct NullStream;

#[async_trait]
impl RecordSink for NullStream {
    async fn put_records(
        &self,
        records: &[OutgoingRecord],
    ) -> Result<Vec<RecordOutcome>, SinkError> {
        Ok(vec![RecordOutcome::Accepted; records.len()])
    }
}

const IAM_CALLER: &str = "arn:aws:iam::123456789012:role/bench";

/// Grants [`IAM_CALLER`] the default tenant; the authenticator caches the grant.
struct OneGrant;

#[async_trait]
impl PrincipalDirectory for OneGrant {
    async fn lookup(&self, principal: &str) -> Result<Option<Grant>, DirectoryError> {
        Ok((principal == IAM_CALLER).then(|| Grant {
            tenant: TenantId::default_tenant(),
            scopes: vec![Scope::EventsWrite.as_str().into()],
        }))
    }
}

/// A POST of `body`, with `token` as its `Authorization` header, or with the IAM caller.
fn request(body: &str, token: Option<&str>) -> lambda_http::Request {
    let mut event = json!({
        "version": "2.0", "routeKey": "POST /events", "rawPath": "/events", "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/events", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
                           "requestId": "r", "routeKey": "POST /events", "stage": "$default", "accountId": "0", "apiId": "b",
                           "domainName": "localhost", "domainPrefix": "localhost", "time": "01/Feb/2026:00:00:05 +0000", "timeEpoch": 0},
        "body": body, "isBase64Encoded": false
    });
    match token {
        Some(token) => event["headers"]["authorization"] = json!(token),
        None => {
            event["requestContext"]["authorizer"] = json!({"iam": {
                "accessKey": "AKIA", "accountId": "123456789012", "callerId": "AROA",
                "principalOrgId": null, "userArn": IAM_CALLER, "userId": "AROA:bench"
            }})
        }
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn summary(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64;
    (ms(samples[samples.len() / 2]), mean)
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let now = (chrono::Utc::now() - chrono::Duration::minutes(1)).trunc_subsecs(6);
    let batch: Vec<_> = (0..500)
        .map(|_| sentinel_bench::client_event(&mut rng, now))
        .collect();
    let body = json!({ "events": batch }).to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let issuer = sentinel_testing::auth::TestIssuer::new();
    let token = issuer.bearer("default", &[Scope::EventsWrite]);
    let with_token = Ingest::new(Arc::new(NullStream), issuer.authenticator());
    let without = Ingest::new(
        Arc::new(NullStream),
        Arc::new(Authenticator::Iam(IamAuthenticator::new(Arc::new(
            OneGrant,
        )))),
    );
    let auth = issuer.authenticator();

    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..rounds + 10 {
        for k in 0..2 {
            let arm = (k + round) % 2;
            let (state, request) = if arm == 0 {
                (&with_token, request(&body, Some(&token)))
            } else {
                (&without, request(&body, None))
            };
            let started = Instant::now();
            let response = runtime.block_on(handle(state, request)).unwrap();
            let took = started.elapsed();
            assert_eq!(response.status(), 202);
            if round >= 10 {
                times[arm].push(took);
            }
        }
        let started = Instant::now();
        runtime
            .block_on(auth.authenticate_parts(Some(&token), None))
            .unwrap();
        if round >= 10 {
            times[2].push(started.elapsed());
        }
    }
    let [token_arm, no_token, verification] = &mut times;
    let (token_p50, token_mean) = summary(token_arm);
    let (none_p50, none_mean) = summary(no_token);
    let (verify_p50, verify_mean) = summary(verification);
    println!("ingest handler, batch of 500, in-memory stream; {rounds} rounds, arms interleaved; ms per request (µs per event)");
    println!("| arm | median | mean |\n| --- | ---: | ---: |");
    println!(
        "| token (one ES256 verification) | {token_p50:.3} ({:.2}) | {token_mean:.3} |",
        token_p50 * 2.0
    );
    println!(
        "| no token (IAM caller, cached grant) | {none_p50:.3} ({:.2}) | {none_mean:.3} |",
        none_p50 * 2.0
    );
    println!("| token verification alone | {verify_p50:.3} | {verify_mean:.3} |");
    println!(
        "token / no token: {:.3} at the medians, {:.3} at the means",
        token_p50 / none_p50,
        token_mean / none_mean
    );
}
