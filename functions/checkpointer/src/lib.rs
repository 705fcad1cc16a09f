//! The checkpointer (issue 11; docs/verifiable-log.md): scheduled every minute, it extends
//! the Merkle tree of every tenant whose log grew, and signs a C2SP checkpoint for it with
//! the stack's KMS key, kept in PostgreSQL and in S3. A tenant with no new events gets a
//! heartbeat checkpoint at least hourly, so that deleting the newest events is visible.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lambda_runtime::LambdaEvent;
use sentinel_domain::checkpoint::VerifierKey;
use sentinel_postgres::log::{Checkpointer, CheckpointerError, Outcome};
use serde::Serialize;
use serde_json::Value;
use tracing::{error, info};

/// Tenants checkpointed at once (and the database connections it takes).
pub const CONCURRENCY: usize = 4;

/// The heartbeat when `HEARTBEAT_SECONDS` is unset: 50 minutes, so that with a run every
/// minute no tenant ever goes an hour without a checkpoint.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(50 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `CHECKPOINT_BUCKET`: where checkpoints are written besides PostgreSQL.
    pub bucket: String,
    /// `SIGNING_KEY_ID`: the KMS key (id, ARN or alias), `ECC_NIST_P256`.
    pub signing_key_id: String,
    /// `STACK_NAME`: names the logs (`sentinel/<stack>/<tenant>`) and the key (`sentinel/<stack>`).
    pub stack: String,
    /// `HEARTBEAT_SECONDS` (60 to 3540): a tenant's checkpoint is re-signed when its latest is
    /// this old, even without new events.
    pub heartbeat: Duration,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        use sentinel_lambda::settings::{parsed, required};
        Ok(Self {
            bucket: required("CHECKPOINT_BUCKET")?,
            signing_key_id: required("SIGNING_KEY_ID")?,
            stack: required("STACK_NAME")?,
            heartbeat: parsed("HEARTBEAT_SECONDS", heartbeat)?.unwrap_or(DEFAULT_HEARTBEAT),
        })
    }
}

/// A heartbeat in seconds: at least a minute (the schedule), and under an hour less the
/// minute a run may wait, so a checkpoint is never more than an hour old.
pub fn heartbeat(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(seconds) if (60..=3540).contains(&seconds) => Ok(Duration::from_secs(seconds)),
        _ => Err("must be a whole number of seconds from 60 to 3540".into()),
    }
}

/// The stack's verifier key from the public key KMS gives (DER SubjectPublicKeyInfo).
pub fn verifier_key(settings: &Settings, spki_der: &[u8]) -> anyhow::Result<VerifierKey> {
    let name = sentinel_domain::log::key_name(&settings.stack)
        .map_err(|e| anyhow::anyhow!("STACK_NAME cannot name a key: {e}"))?;
    VerifierKey::from_spki_der(name, spki_der)
        .map_err(|e| anyhow::anyhow!("the signing key is not a P-256 key: {e}"))
}

/// What one run did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Tenants whose log grew or whose heartbeat was due.
    pub tenants: usize,
    pub signed: usize,
    pub unchanged: usize,
    /// Leaves added to trees.
    pub appended: u64,
    /// Tenant and reason of each failure.
    pub failed: Vec<(String, String)>,
}

/// The function's state across invocations.
pub struct Run<'a> {
    checkpointer: &'a Checkpointer,
}

impl<'a> Run<'a> {
    pub fn new(checkpointer: &'a Checkpointer) -> Self {
        Self { checkpointer }
    }

    /// Checkpoints every tenant that is due. One tenant's failure does not stop the others.
    pub async fn run(&self, now: DateTime<Utc>) -> anyhow::Result<Summary> {
        let due = self.checkpointer.due(now).await?;
        let mut summary = Summary {
            tenants: due.len(),
            ..Summary::default()
        };
        let results: Vec<_> = futures_util::stream::iter(due)
            .map(|tenant| async move {
                let outcome = self.checkpointer.checkpoint(&tenant, now).await;
                (tenant, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (tenant, outcome) in results {
            match outcome {
                Ok(Outcome::Signed { size, appended }) => {
                    info!(tenant = %tenant, size, appended, "checkpoint signed");
                    summary.signed += 1;
                    summary.appended += appended;
                }
                Ok(Outcome::Unchanged { .. }) => summary.unchanged += 1,
                Err(e) => {
                    let broken = matches!(e, CheckpointerError::Broken { .. });
                    error!(tenant = %tenant, error = %e, broken, "checkpoint failed");
                    summary.failed.push((tenant.to_string(), e.to_string()));
                }
            }
        }
        summary.failed.sort();
        Ok(summary)
    }
}

/// One scheduled invocation: fails (so the invocation counts as an error and alarms) if any
/// tenant could not be checkpointed.
pub async fn handler(
    run: &Run<'_>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let request_id = event.context.request_id;
    let summary = run.run(Utc::now()).await.map_err(|e| {
        error!(%request_id, error = %format!("{e:#}"), "checkpointer run failed");
        e
    })?;
    let text = serde_json::to_string(&summary)?;
    if summary.failed.is_empty() {
        info!(%request_id, summary = %text, "checkpointer run finished");
        Ok(serde_json::to_value(&summary)?)
    } else {
        error!(%request_id, summary = %text, "checkpointer run finished with failures");
        Err(format!(
            "{} of {} tenants could not be checkpointed",
            summary.failed.len(),
            summary.tenants
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_a_minute_to_just_under_an_hour() {
        assert_eq!(heartbeat("60"), Ok(Duration::from_secs(60)));
        assert_eq!(heartbeat("3540"), Ok(Duration::from_secs(3540)));
        for bad in ["59", "3541", "-1", "1.5", "an hour", ""] {
            assert!(heartbeat(bad).is_err(), "{bad}");
        }
    }
}
