//! Logging setup shared by every binary.

use tracing_subscriber::EnvFilter;

/// JSON logs on Lambda (and wherever `AWS_LAMBDA_LOG_FORMAT=JSON` or `LOG_FORMAT=json`),
/// human-readable ones elsewhere. The level comes from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .map(|l| l.to_lowercase())
        .ok();
    let filter = match (std::env::var("RUST_LOG").ok(), level) {
        (Some(spec), _) => EnvFilter::new(spec),
        (None, Some(level)) => EnvFilter::new(level),
        (None, None) => EnvFilter::new("info"),
    };
    let json = ["AWS_LAMBDA_LOG_FORMAT", "LOG_FORMAT"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| v.eq_ignore_ascii_case("json")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .without_time()
            .try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}
