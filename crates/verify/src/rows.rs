//! An event from the columns a store keeps it in: PostgreSQL's row ([`crate::pg`]) or an
//! archived Parquet row ([`crate::archive`]). Every field goes through its type's parser, as
//! the query API's reader does, so the leaf is the canonical record of what the store holds.

use chrono::{DateTime, Utc};
use serde_json::Value;

use sentinel_domain::fields::{Changes, Metadata, Timestamp};
use sentinel_domain::AuditEvent;

/// A stored event's columns, in the writer's order.
pub struct Columns<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub actor_id: &'a str,
    pub actor_type: Option<&'a str>,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub changes: Value,
    pub metadata: Value,
}

/// The event the columns hold, or why they hold none the writer would have stored.
pub fn event_from_columns(c: Columns<'_>) -> Result<AuditEvent, String> {
    fn field<T: std::str::FromStr<Err = String>>(text: &str, name: &str) -> Result<T, String> {
        text.parse().map_err(|why| format!("{name} {why}"))
    }
    let time = |at: DateTime<Utc>, name: &str| -> Result<Timestamp, String> {
        Timestamp::new(at).map_err(|why| format!("{name} {why}"))
    };
    let object = |value: Value, name: &str| match value {
        Value::Object(map) => Ok(map),
        _ => Err(format!("{name} is not a JSON object")),
    };
    Ok(AuditEvent {
        id: field(c.id, "id")?,
        tenant_id: field(c.tenant_id, "tenant_id")?,
        occurred_at: time(c.occurred_at, "occurred_at")?,
        received_at: time(c.received_at, "received_at")?,
        actor_id: field(c.actor_id, "actor_id")?,
        actor_type: c
            .actor_type
            .map(|text| field(text, "actor_type"))
            .transpose()?,
        action: field(c.action, "action")?,
        resource_type: field(c.resource_type, "resource_type")?,
        resource_id: field(c.resource_id, "resource_id")?,
        changes: Changes::parse_stored(object(c.changes, "changes")?)
            .map_err(|errors| format!("changes.{} {}", errors[0].0, errors[0].1))?,
        metadata: Metadata::parse(object(c.metadata, "metadata")?)
            .map_err(|why| format!("metadata {why}"))?,
    })
}
