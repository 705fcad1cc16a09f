//! The ingest handler's in-process cost: `parse_request` alone (the strict JSON reader,
//! validation and normalization), the same plus the stream records (encoding and partition
//! keys), for one event and for a batch of 500; and the whole handler with an in-memory stream,
//! once with a bearer token to verify (one ES256 verification per request) and once with an
//! IAM caller whose grant is already cached (no token: a map lookup), so that the two arms
//! differ only in how the caller is authenticated.
//!
//! `cargo bench -p sentinel-bench --bench ingest`

use std::sync::Arc;

use chrono::SubsecRound;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ingest::{handle, Ingest};
use rand::SeedableRng;
use sentinel_bench::ingest_arms::{request, without_token, Caller, NullStream};
use sentinel_domain::fields::TenantId;
use sentinel_domain::publish::OutgoingRecord;
use sentinel_domain::validation::parse_request;
use sentinel_lambda::identity::Scope;
use serde_json::json;

fn bodies() -> (Vec<u8>, Vec<u8>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    // Whole microseconds: ingest refuses finer times.
    let now = (chrono::Utc::now() - chrono::Duration::minutes(1)).trunc_subsecs(6);
    let single = serde_json::to_vec(&sentinel_bench::client_event(&mut rng, now)).unwrap();
    let batch: Vec<_> = (0..500)
        .map(|_| sentinel_bench::client_event(&mut rng, now))
        .collect();
    (
        single,
        serde_json::to_vec(&json!({ "events": batch })).unwrap(),
    )
}

fn parse_only(c: &mut Criterion) {
    let (single, batch) = bodies();
    let now = chrono::Utc::now();
    let tenant = TenantId::default_tenant();
    let mut group = c.benchmark_group("ingest/parse_request");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single event", |b| {
        b.iter(|| {
            parse_request(&single, now, &tenant, || uuid::Uuid::now_v7().to_string()).unwrap()
        })
    });
    group.throughput(Throughput::Elements(500));
    group.bench_function("batch of 500", |b| {
        b.iter(|| parse_request(&batch, now, &tenant, || uuid::Uuid::now_v7().to_string()).unwrap())
    });
    group.finish();
}

fn validate_and_encode(c: &mut Criterion) {
    let (single, batch) = bodies();
    let now = chrono::Utc::now();
    let tenant = TenantId::default_tenant();
    let mut group = c.benchmark_group("ingest/validate+normalize+encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single event", |b| {
        b.iter(|| {
            let events =
                parse_request(&single, now, &tenant, || uuid::Uuid::now_v7().to_string()).unwrap();
            events
                .iter()
                .map(OutgoingRecord::from_event)
                .collect::<Vec<_>>()
        })
    });
    group.throughput(Throughput::Elements(500));
    group.bench_function("batch of 500", |b| {
        b.iter(|| {
            let events =
                parse_request(&batch, now, &tenant, || uuid::Uuid::now_v7().to_string()).unwrap();
            events
                .iter()
                .map(OutgoingRecord::from_event)
                .collect::<Vec<_>>()
        })
    });
    group.finish();
}

fn whole_handler(c: &mut Criterion) {
    let (single, batch) = bodies();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One token verification per request, as in production (ES256, the local issuer's).
    let issuer = sentinel_testing::auth::TestIssuer::new();
    let token = issuer.bearer("default", &[Scope::EventsWrite]);
    let state = Ingest::new(Arc::new(NullStream), issuer.authenticator());
    // The same handler with no token to verify: an IAM caller whose grant is cached.
    let iam = without_token();
    for (state, caller) in [(&state, Caller::Token(&token)), (&iam, Caller::Iam)] {
        let response = runtime
            .block_on(handle(state, request(&single, caller)))
            .unwrap();
        assert_eq!(response.status(), 202, "each arm's caller is accepted");
    }
    let mut group = c.benchmark_group("ingest/handler (in-memory stream)");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single event", |b| {
        b.iter_batched(
            || request(&single, Caller::Token(&token)),
            |r| runtime.block_on(handle(&state, r)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("single event, no token (IAM caller, cached grant)", |b| {
        b.iter_batched(
            || request(&single, Caller::Iam),
            |r| runtime.block_on(handle(&iam, r)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(500));
    group.bench_function("batch of 500", |b| {
        b.iter_batched(
            || request(&batch, Caller::Token(&token)),
            |r| runtime.block_on(handle(&state, r)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("batch of 500, no token (IAM caller, cached grant)", |b| {
        b.iter_batched(
            || request(&batch, Caller::Iam),
            |r| runtime.block_on(handle(&iam, r)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// One bearer-token verification (ES256 against the JWKS, then the claims), which the handler
/// does once per request.
fn token_verification(c: &mut Criterion) {
    let issuer = sentinel_testing::auth::TestIssuer::new();
    let auth = issuer.authenticator();
    let authorization = issuer.bearer("default", &[Scope::EventsWrite]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("ingest/token verification");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ES256 bearer token", |b| {
        b.iter(|| {
            runtime
                .block_on(auth.authenticate_parts(Some(&authorization), None))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    parse_only,
    validate_and_encode,
    whole_handler,
    token_verification
);
criterion_main!(benches);
