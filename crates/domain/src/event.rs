//! The audit event as Sentinel stores it, and its encoding on the stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Version of the stream record envelope written by ingest and read by the writer.
pub const STREAM_SCHEMA_VERSION: u32 = 1;

/// A validated, normalized audit event: what ingest puts on the stream and the writer stores.
///
/// `changes` is always in the normalized form `{"field": {"before": x, "after": y}}`.
/// Times carry microsecond precision, the precision PostgreSQL stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub id: String,
    pub tenant_id: String,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub actor_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_type: Option<String>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub changes: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    v: u32,
    event: &'a AuditEvent,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    /// Checked beforehand through [`VersionOnly`].
    #[serde(rename = "v")]
    _version: u32,
    event: AuditEvent,
}

/// Why a stream record could not be turned back into an event.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("record is not a JSON stream envelope: {0}")]
    Malformed(String),
    #[error("unsupported stream schema version {0} (expected {STREAM_SCHEMA_VERSION})")]
    UnsupportedVersion(u32),
    #[error("event violates the contract: {0}")]
    Invalid(String),
}

impl AuditEvent {
    /// The Kinesis partition key: one resource's events share a shard, so they stay in order.
    pub fn partition_key(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [&self.tenant_id, &self.resource_type, &self.resource_id] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// Encodes the event as a versioned stream record.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&EnvelopeRef {
            v: STREAM_SCHEMA_VERSION,
            event: self,
        })
        .expect("an AuditEvent always serializes")
    }

    /// Decodes and re-checks a stream record. Anything that fails here can never be stored.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let version = serde_json::from_slice::<VersionOnly>(data)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?
            .v;
        if version != STREAM_SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let envelope: Envelope =
            serde_json::from_slice(data).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        crate::validation::check_stored(&envelope.event).map_err(|errors| {
            DecodeError::Invalid(
                errors
                    .iter()
                    .map(|(field, message)| format!("{field} {message}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        Ok(envelope.event)
    }
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    pub(crate) fn sample() -> AuditEvent {
        AuditEvent {
            id: "evt-1".into(),
            tenant_id: "default".into(),
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 31, 23, 59, 59).unwrap(),
            received_at: Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 1).unwrap(),
            actor_id: "user_123".into(),
            actor_type: Some("user".into()),
            action: "billing_update".into(),
            resource_type: "invoice".into(),
            resource_id: "inv_999".into(),
            changes: json!({"status": {"before": "pending", "after": "paid"}})
                .as_object()
                .unwrap()
                .clone(),
            metadata: Map::new(),
        }
    }

    #[test]
    fn an_encoded_event_decodes_to_the_same_event() {
        let event = sample();
        assert_eq!(AuditEvent::decode(&event.encode()).unwrap(), event);
    }

    #[test]
    fn a_record_from_a_future_schema_version_is_refused() {
        let mut value: Value = serde_json::from_slice(&sample().encode()).unwrap();
        value["v"] = json!(2);
        let err = AuditEvent::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedVersion(2));
    }

    #[test]
    fn a_record_that_is_not_json_is_malformed() {
        let err = AuditEvent::decode(b"\xff\xfe not json").unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn a_record_with_an_unnormalized_change_is_invalid() {
        let mut value: Value = serde_json::from_slice(&sample().encode()).unwrap();
        value["event"]["changes"] = json!({"status": "paid"});
        let err = AuditEvent::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn partition_keys_follow_the_resource_and_fit_kinesis() {
        let a = sample();
        let mut b = sample();
        b.id = "evt-2".into();
        b.actor_id = "someone_else".into();
        let mut c = sample();
        c.resource_id = "inv_1000".into();
        assert_eq!(a.partition_key(), b.partition_key());
        assert_ne!(a.partition_key(), c.partition_key());
        assert!(a.partition_key().len() <= 256);
    }

    #[test]
    fn partition_keys_do_not_collide_when_parts_shift() {
        let mut a = sample();
        a.resource_type = "ab".into();
        a.resource_id = "c".into();
        let mut b = sample();
        b.resource_type = "a".into();
        b.resource_id = "bc".into();
        assert_ne!(a.partition_key(), b.partition_key());
    }
}
