//! Sentinel's core: the audit event, its validation, the ports the functions call, and the
//! adapters that implement them on AWS and PostgreSQL.

pub mod api;
pub mod database;
pub mod event;
pub mod kinesis;
pub mod postgres;
pub mod publish;
pub mod query;
pub mod reader;
pub mod store;
pub mod telemetry;
pub mod validation;

#[cfg(feature = "test-support")]
pub mod testing;

pub use event::AuditEvent;

/// Reads a required setting from the environment, failing fast with a clear message.
pub fn required_env(name: &str) -> anyhow::Result<String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => anyhow::bail!("{name} must be set"),
    }
}

/// An S3 client from the shared config. `S3_FORCE_PATH_STYLE=true` selects path-style
/// addressing, which LocalStack needs; on AWS it stays unset.
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = std::env::var("S3_FORCE_PATH_STYLE").is_ok_and(|v| v == "true" || v == "1");
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}
