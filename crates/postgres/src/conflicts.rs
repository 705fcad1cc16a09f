//! Conflicts for operators: copies of stored event ids that came with other content, which
//! the writer keeps instead of storing or dropping (see migrations/V5__event_conflicts.sql).

use chrono::{DateTime, Utc};
use sentinel_domain::validation::TOP_LEVEL_FIELDS;
use serde_json::Value;
use tokio_postgres::GenericClient;

/// One kept conflict.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub tenant_id: String,
    pub event_id: String,
    pub detected_at: DateTime<Utc>,
    /// The stored event's row, or `None` when its month has left PostgreSQL.
    pub stored: Option<Value>,
    /// The copy that was not stored: its canonical stream record, byte for byte.
    pub conflicting: Vec<u8>,
}

impl Conflict {
    /// The fields the client sends in which the conflicting copy differs from the stored
    /// one (every one of them when the stored copy is not in PostgreSQL).
    pub fn differing_fields(&self) -> Vec<&'static str> {
        let record: Value = serde_json::from_slice(&self.conflicting).unwrap_or(Value::Null);
        let event = &record["event"];
        TOP_LEVEL_FIELDS
            .iter()
            .copied()
            .filter(|name| match &self.stored {
                Some(stored) => !same(name, stored, event),
                None => true,
            })
            .collect()
    }
}

/// Times compare as instants (the stored row spells them as PostgreSQL does); two
/// occurred_at that each equal their copy's received_at were both left out by the client,
/// which is the same content (the writer's rule, `CONFLICTS_SQL`).
fn same(name: &str, stored: &Value, conflicting: &Value) -> bool {
    if name != "occurred_at" {
        return stored[name] == conflicting[name];
    }
    let instant = |v: &Value| {
        v.as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let (stored_at, conflicting_at) = (
        instant(&stored["occurred_at"]),
        instant(&conflicting["occurred_at"]),
    );
    let defaulted = |copy: &Value, at: Option<DateTime<Utc>>| {
        at.is_some() && at == instant(&copy["received_at"])
    };
    stored_at.is_some() && stored_at == conflicting_at
        || defaulted(stored, stored_at) && defaulted(conflicting, conflicting_at)
}

/// The newest conflicts first, of one tenant or of all.
pub async fn recent(
    client: &impl GenericClient,
    tenant: Option<&str>,
    limit: i64,
) -> Result<Vec<Conflict>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT tenant_id, event_id, detected_at, stored, conflicting FROM event_conflicts \
             WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY id DESC LIMIT $2",
            &[&tenant, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Conflict {
            tenant_id: row.get(0),
            event_id: row.get(1),
            detected_at: row.get(2),
            stored: row.get(3),
            conflicting: row.get(4),
        })
        .collect())
}

/// How many conflicts are kept, of one tenant or of all.
pub async fn count(
    client: &impl GenericClient,
    tenant: Option<&str>,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM event_conflicts WHERE $1::text IS NULL OR tenant_id = $1",
            &[&tenant],
        )
        .await?
        .get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conflict(stored: Value, event: Value) -> Conflict {
        Conflict {
            tenant_id: "acme".into(),
            event_id: "e1".into(),
            detected_at: Utc::now(),
            stored: Some(stored),
            conflicting: serde_json::to_vec(&json!({"v": 1, "event": event})).unwrap(),
        }
    }

    fn row(occurred_at: &str, received_at: &str, action: &str) -> Value {
        json!({"id": "e1", "tenant_id": "acme", "occurred_at": occurred_at,
               "received_at": received_at, "actor_id": "u", "actor_type": null,
               "action": action, "resource_type": "r", "resource_id": "i",
               "changes": {}, "metadata": {}, "stored_at": "2026-03-15T08:00:01+00:00"})
    }

    fn record(occurred_at: &str, received_at: &str, action: &str) -> Value {
        let mut event = row(occurred_at, received_at, action);
        let fields = event.as_object_mut().unwrap();
        fields.remove("actor_type");
        fields.remove("stored_at");
        event
    }

    #[test]
    fn two_defaulted_times_are_not_a_difference_but_a_named_time_is() {
        let stored = row(
            "2026-03-15T08:00:00+00:00",
            "2026-03-15T08:00:00+00:00",
            "a",
        );

        let retried = conflict(
            stored.clone(),
            record(
                "2026-03-15T08:00:09.000000Z",
                "2026-03-15T08:00:09.000000Z",
                "b",
            ),
        );
        let named = conflict(
            stored.clone(),
            record(
                "2026-03-15T07:00:00.000000Z",
                "2026-03-15T08:00:09.000000Z",
                "a",
            ),
        );
        let same_instant = conflict(
            stored,
            record(
                "2026-03-15T08:00:00.000000Z",
                "2026-03-15T09:00:00.000000Z",
                "b",
            ),
        );

        assert_eq!(retried.differing_fields(), ["action"]);
        assert_eq!(named.differing_fields(), ["occurred_at"]);
        assert_eq!(same_instant.differing_fields(), ["action"]);
    }

    #[test]
    fn without_the_stored_copy_every_field_is_named() {
        let mut archived = conflict(
            json!(null),
            record(
                "2026-03-15T08:00:00.000000Z",
                "2026-03-15T08:00:00.000000Z",
                "a",
            ),
        );
        archived.stored = None;

        assert_eq!(archived.differing_fields().len(), TOP_LEVEL_FIELDS.len());
    }
}
