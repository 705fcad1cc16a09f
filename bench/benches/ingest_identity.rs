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

use chrono::SubsecRound;
use ingest::{handle, Ingest};
use rand::SeedableRng;
use sentinel_bench::ingest_arms::{request, without_token, Caller, NullStream};
use sentinel_lambda::identity::Scope;
use serde_json::json;

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
    let without = without_token();
    let auth = issuer.authenticator();

    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..rounds + 10 {
        for k in 0..2 {
            let arm = (k + round) % 2;
            let (state, request) = if arm == 0 {
                (&with_token, request(body.as_bytes(), Caller::Token(&token)))
            } else {
                (&without, request(body.as_bytes(), Caller::Iam))
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
