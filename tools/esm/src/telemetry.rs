use tracing_subscriber::EnvFilter;

/// Logs through `tracing`: JSON when `AWS_LAMBDA_LOG_FORMAT` or `LOG_FORMAT` says `json`,
/// human-readable otherwise; the level comes from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = ["AWS_LAMBDA_LOG_FORMAT", "LOG_FORMAT"]
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| v.eq_ignore_ascii_case("json")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}
