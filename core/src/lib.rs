//! Sentinel's core: the audit event, its validation, the ports the functions call, and the
//! adapters that implement them on AWS and PostgreSQL.

pub mod api;
pub mod event;
pub mod kinesis;
pub mod postgres;
pub mod publish;
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
