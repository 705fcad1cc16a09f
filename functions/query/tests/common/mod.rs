//! What the query suites share: the token issuer their handler trusts, an in-memory access
//! log, and the handler wired with both.
#![allow(dead_code)]

pub mod browser;
pub mod log;

/// The issuer whose tokens this suite's query function trusts, and its access log.
pub static ISSUER: std::sync::LazyLock<sentinel_testing::auth::TestIssuer> =
    std::sync::LazyLock::new(sentinel_testing::auth::TestIssuer::new);
pub static AUTH: std::sync::LazyLock<std::sync::Arc<sentinel_lambda::identity::Authenticator>> =
    std::sync::LazyLock::new(|| ISSUER.authenticator());
pub static ACCESS_LOG: std::sync::LazyLock<sentinel_testing::auth::MemorySink> =
    std::sync::LazyLock::new(Default::default);

/// `Bearer <token>` of a reader of the default tenant.
pub fn reader_token() -> String {
    ISSUER.bearer("default", &[sentinel_lambda::identity::Scope::EventsRead])
}

/// The query handler with this suite's authenticator and access log.
pub async fn handle(
    reader: &dyn sentinel_domain::read::EventReader,
    request: lambda_http::Request,
) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error> {
    let state = query::Query {
        reader,
        log: &sentinel_testing::log::EmptyLog,
        auth: &AUTH,
        access_log: &*ACCESS_LOG,
    };
    query::handle(&state, request).await
}

/// The query handler's answer, and what it noted for the request's metrics.
pub async fn respond(
    reader: &dyn sentinel_domain::read::EventReader,
    request: lambda_http::Request,
) -> (lambda_http::Response<lambda_http::Body>, query::Served) {
    let state = query::Query {
        reader,
        log: &sentinel_testing::log::EmptyLog,
        auth: &AUTH,
        access_log: &*ACCESS_LOG,
    };
    let mut served = query::Served::default();
    let response = query::respond(&state, request, &mut served).await.unwrap();
    (response, served)
}
