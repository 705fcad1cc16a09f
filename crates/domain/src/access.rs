//! Access events: every read of the log is itself an audit event in the reader's own tenant
//! (and, for an operator's read of another tenant, in that tenant's too), written through
//! the normal write path.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::event::AuditEvent;
use crate::fields::{
    ActorId, ActorType, Changes, EventId, Metadata, ResourceId, ResourceType, TenantId, Timestamp,
};

/// The action of an access event. The `sentinel.` namespace is refused at ingest, so no
/// client can forge one.
pub const ACCESS_ACTION: &str = "sentinel.events.read";

/// The actor type of an access event's reader.
pub const PRINCIPAL_ACTOR_TYPE: &str = "principal";

/// What one answered read was.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    /// `list`, `get`, `history` or `state`.
    pub route: &'static str,
    /// What was read: for `get` the event's id; for `history` and `state` the resource.
    pub resource_type: String,
    pub resource_id: String,
    /// The tenant whose events were read.
    pub tenant_read: TenantId,
    /// The request's parameters, as given.
    pub filters: Map<String, Value>,
    /// Events (or state fields) in the answer.
    pub rows: usize,
}

impl Read {
    /// A read of events in general (`GET /events`).
    pub fn list(tenant_read: TenantId, filters: Map<String, Value>, rows: usize) -> Self {
        Self {
            route: "list",
            resource_type: "sentinel.events".into(),
            resource_id: tenant_read.to_string(),
            tenant_read,
            filters,
            rows,
        }
    }

    /// A read of the tenant's verifiable log: its checkpoint or a consistency proof.
    pub fn log(
        route: &'static str,
        tenant_read: TenantId,
        filters: Map<String, Value>,
        rows: usize,
    ) -> Self {
        Self {
            route,
            resource_type: "sentinel.log".into(),
            resource_id: tenant_read.to_string(),
            tenant_read,
            filters,
            rows,
        }
    }

    /// A read of one event.
    pub fn get(tenant_read: TenantId, id: &str, rows: usize) -> Self {
        Self {
            route: "get",
            resource_type: "sentinel.event".into(),
            resource_id: id.into(),
            tenant_read,
            filters: Map::new(),
            rows,
        }
    }

    /// A read of one resource's history or state.
    pub fn resource(
        route: &'static str,
        tenant_read: TenantId,
        resource_type: &str,
        resource_id: &str,
        filters: Map<String, Value>,
        rows: usize,
    ) -> Self {
        let mut filters = filters;
        filters.insert("resource_type".into(), json!(resource_type));
        filters.insert("resource_id".into(), json!(resource_id));
        let named = format!("{resource_type}/{resource_id}");
        // A resource type and id may each be 256 characters: name a long pair by its
        // digest (the exact pair is in the metadata), never by a cut copy.
        let resource_id = if ResourceId::check(&named).is_ok() {
            named
        } else {
            format!("sha256:{}", hex::encode(Sha256::digest(named.as_bytes())))
        };
        Self {
            route,
            resource_type: "sentinel.resource".into(),
            resource_id,
            tenant_read,
            filters,
            rows,
        }
    }

    /// The access event of this read by `reader`, kept in `tenant` (the reader's own, or
    /// the tenant an operator read).
    pub fn event(
        &self,
        tenant: &TenantId,
        reader: &ActorId,
        scopes: &[&str],
        id: EventId,
        now: Timestamp,
    ) -> AuditEvent {
        let metadata = |filters: Value| {
            let Value::Object(metadata) = json!({
                "route": self.route,
                "tenant_read": self.tenant_read.as_str(),
                "filters": filters,
                "rows": self.rows,
                "scopes": scopes,
            }) else {
                unreachable!("an object literal")
            };
            Metadata::parse(metadata)
        };
        // The filters passed the query's own checks, so they can always be kept; should one
        // ever not be, the event says so rather than not being written.
        let metadata = metadata(Value::Object(self.filters.clone()))
            .or_else(|_| metadata(json!("unrecordable")))
            .expect("fixed metadata is valid");
        AuditEvent {
            id,
            tenant_id: tenant.clone(),
            occurred_at: now,
            received_at: now,
            actor_id: reader.clone(),
            actor_type: Some(ActorType::parse(PRINCIPAL_ACTOR_TYPE).expect("a valid actor type")),
            action: ACCESS_ACTION.parse().expect("a valid action"),
            resource_type: ResourceType::parse(self.resource_type.as_str())
                .expect("the access resource types are valid"),
            resource_id: ResourceId::parse(self.resource_id.as_str())
                .expect("checked or hashed above"),
            changes: Changes::default(),
            metadata,
        }
    }
}

/// Whether `event` is an access event.
pub fn is_access_event(event: &AuditEvent) -> bool {
    event.action == ACCESS_ACTION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_event_names_the_reader_what_was_read_and_how_many_rows() {
        let tenant: TenantId = "acme".parse().unwrap();
        let mut filters = Map::new();
        filters.insert("actor_id".into(), json!("user_7"));
        let read = Read::list(tenant.clone(), filters, 12);
        let now = Timestamp::parse("2026-12-02T10:00:00Z").unwrap();

        let event = read.event(
            &tenant,
            &"auditor-1".parse().unwrap(),
            &["events:read"],
            "acc-1".parse().unwrap(),
            now,
        );

        assert!(is_access_event(&event));
        assert_eq!(event.tenant_id, "acme");
        assert_eq!(event.actor_id, "auditor-1");
        assert_eq!(event.resource_type, "sentinel.events");
        assert_eq!(event.metadata["rows"], json!(12));
        assert_eq!(event.metadata["filters"], json!({"actor_id": "user_7"}));
        assert_eq!(AuditEvent::decode(&event.encode()).unwrap(), event);
    }

    #[test]
    fn a_long_resource_is_named_by_its_digest_and_kept_whole_in_the_metadata() {
        let long = "x".repeat(256);
        let read = Read::resource(
            "history",
            "acme".parse().unwrap(),
            &long,
            &long,
            Map::new(),
            0,
        );

        assert!(read.resource_id.starts_with("sha256:"));
        assert_eq!(read.filters["resource_id"], json!(long));
        let short = Read::resource(
            "state",
            "acme".parse().unwrap(),
            "invoice",
            "inv_9",
            Map::new(),
            3,
        );
        assert_eq!(short.resource_id, "invoice/inv_9");
    }
}
