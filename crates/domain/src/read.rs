//! The port to stored events, as the query API reads them, and the answers it gives: pages
//! of events and a resource's folded state.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::event::AuditEvent;
use crate::fields::Timestamp;
use crate::query::{EventQuery, StateQuery};
use crate::store::StoreError;

/// Read access to stored events: one operation per query endpoint.
#[async_trait]
pub trait EventReader: Send + Sync {
    /// One page of the events `query` selects.
    async fn list(&self, query: &EventQuery) -> Result<Page, StoreError>;

    /// The tenant's event with this id.
    async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<AuditEvent>, StoreError>;

    /// The resource's fields as of `query.at`; None if the resource had no events by then.
    async fn state(&self, query: &StateQuery) -> Result<Option<ResourceState>, StoreError>;
}

/// A keyset page.
#[derive(Debug, Serialize, PartialEq)]
pub struct KeysetPage {
    pub data: Vec<AuditEvent>,
    /// Continues exactly after the last event of `data`; None on the last page.
    pub next_cursor: Option<String>,
}

/// An offset page with its totals.
#[derive(Debug, Serialize, PartialEq)]
pub struct OffsetPage {
    pub data: Vec<AuditEvent>,
    pub meta: OffsetMeta,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct OffsetMeta {
    pub current_page: i64,
    pub per_page: i64,
    pub total_pages: i64,
    pub total_count: i64,
    /// False when the total passed the exact-count bound and is the planner's estimate.
    pub total_count_exact: bool,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Page {
    Keyset(KeysetPage),
    Offset(OffsetPage),
}

/// One field of a resource's state, and the event that last shaped it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldState {
    pub value: Value,
    pub event_id: String,
    pub changed_at: Timestamp,
}

/// A resource as of a moment, folded from its stored changes.
#[derive(Debug, Serialize, PartialEq)]
pub struct ResourceState {
    pub tenant_id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub at: Timestamp,
    pub fields: BTreeMap<String, FieldState>,
    /// Fields whose last change set them to null (removed), and when.
    pub removed_fields: BTreeMap<String, FieldState>,
    pub event_count: i64,
    pub last_event_id: String,
    pub last_event_at: Timestamp,
}
