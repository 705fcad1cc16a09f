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
                Some(stored) => !same(name, &stored[*name], &event[*name]),
                None => true,
            })
            .collect()
    }
}

/// Times compare as instants (the stored row spells them as PostgreSQL does).
fn same(name: &str, stored: &Value, conflicting: &Value) -> bool {
    if name == "occurred_at" {
        let instant = |v: &Value| {
            v.as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        return instant(stored).is_some() && instant(stored) == instant(conflicting);
    }
    stored == conflicting
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
