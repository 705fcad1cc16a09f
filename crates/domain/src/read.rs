//! The port to stored events, as the query API reads them, and the answers it gives: pages
//! of events and a resource's folded state, each kept within [`MAX_ANSWER_BYTES`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::event::AuditEvent;
use crate::fields::Timestamp;
use crate::query::{Cursor, EventQuery, Sort, StateCursor, StateQuery};
use crate::store::StoreError;

/// Most bytes the events of one page, or the fields of one state answer, may take.
///
/// AWS Lambda answers at most 6 MB, and the response carries the body inside a JSON string,
/// where every `"` and `\` of the body is escaped once more. Items are measured that way (see
/// [`answer_bytes`]), so a page's body, and the Lambda response that carries it, stay well
/// under the limit whatever the events hold.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// What `value` adds to an answer as Lambda carries it: its JSON, one more byte for each `"`
/// and `\` in it (escaped again inside the response), and one for the separator.
pub fn answer_bytes<T: Serialize + ?Sized>(value: &T) -> usize {
    let json = serde_json::to_vec(value).expect("answers serialize");
    let escaped = json.iter().filter(|&&b| b == b'"' || b == b'\\').count();
    json.len() + escaped + 1
}

/// Read access to stored events: one operation per query endpoint.
#[async_trait]
pub trait EventReader: Send + Sync {
    /// One page of the events `query` selects, built with a [`PageBuilder`].
    async fn list(&self, query: &EventQuery) -> Result<Page, StoreError>;

    /// The tenant's event with this id.
    async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<AuditEvent>, StoreError>;

    /// The resource's fields as of `query.at`, after `query.after_field`, built with a
    /// [`StateBuilder`]; None if the resource had no events by then.
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
    /// True when the page's events would have passed [`MAX_ANSWER_BYTES`], so `data` holds
    /// only the first of them.
    pub truncated: bool,
    /// When truncated: a keyset cursor continuing exactly after the last event of `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Page {
    Keyset(KeysetPage),
    Offset(OffsetPage),
}

/// Collects a page's events, offered in page order, up to `rows` of them and within
/// [`MAX_ANSWER_BYTES`]. The first event always fits: a stored event is far smaller.
#[derive(Debug)]
pub struct PageBuilder {
    rows: usize,
    data: Vec<AuditEvent>,
    bytes: usize,
    /// An event was offered that is not on the page.
    more: bool,
    /// ... because the page was full in bytes rather than in rows.
    cut: bool,
}

impl PageBuilder {
    pub fn new(rows: usize) -> Self {
        Self {
            rows,
            data: Vec::new(),
            bytes: 0,
            more: false,
            cut: false,
        }
    }

    /// Offers the next event. False once the page is complete: the event is not on the page,
    /// and nothing more should be offered.
    pub fn offer(&mut self, event: AuditEvent) -> bool {
        if self.more {
            return false;
        }
        if self.data.len() >= self.rows {
            self.more = true;
            return false;
        }
        let bytes = answer_bytes(&event);
        if !self.data.is_empty() && self.bytes + bytes > MAX_ANSWER_BYTES {
            self.more = true;
            self.cut = true;
            return false;
        }
        self.bytes += bytes;
        self.data.push(event);
        true
    }

    fn cursor_after_last(&self, sort: Sort) -> Option<String> {
        self.data
            .last()
            .map(|e| Cursor::after(e.occurred_at, &e.id, sort).encode())
    }

    /// A keyset page: `next_cursor` is set when an event was refused, for whatever reason.
    pub fn keyset(self, sort: Sort) -> KeysetPage {
        let next_cursor = if self.more {
            self.cursor_after_last(sort)
        } else {
            None
        };
        KeysetPage {
            data: self.data,
            next_cursor,
        }
    }

    /// An offset page of `per_page` events out of `total_count`.
    pub fn offset(
        self,
        sort: Sort,
        page: i64,
        per_page: i64,
        total_count: i64,
        total_count_exact: bool,
    ) -> OffsetPage {
        let next_cursor = if self.cut {
            self.cursor_after_last(sort)
        } else {
            None
        };
        OffsetPage {
            meta: OffsetMeta {
                current_page: page,
                per_page,
                total_pages: (total_count + per_page - 1) / per_page,
                total_count,
                total_count_exact,
                truncated: self.cut,
                next_cursor,
            },
            data: self.data,
        }
    }
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
    /// When the fields would have passed [`MAX_ANSWER_BYTES`]: pass as `cursor` for the
    /// fields after the last one here. None when this answer holds the rest of them.
    pub next_cursor: Option<String>,
}

/// What a resource's events up to `at` add up to, apart from its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSummary {
    pub event_count: i64,
    pub last_event_id: String,
    pub last_event_at: Timestamp,
}

/// Collects a resource's fields, offered in the byte order of their names, within
/// [`MAX_ANSWER_BYTES`]. The first field always fits: it comes from one stored event.
#[derive(Debug, Default)]
pub struct StateBuilder {
    fields: BTreeMap<String, FieldState>,
    removed_fields: BTreeMap<String, FieldState>,
    bytes: usize,
    last_field: Option<String>,
    cut: bool,
}

impl StateBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers the next field (a null value means it was removed). False once the answer is
    /// full: the field is not in it, and nothing more should be offered.
    pub fn offer(&mut self, field: String, state: FieldState) -> bool {
        if self.cut {
            return false;
        }
        let bytes = answer_bytes(&field) + answer_bytes(&state);
        if self.last_field.is_some() && self.bytes + bytes > MAX_ANSWER_BYTES {
            self.cut = true;
            return false;
        }
        self.bytes += bytes;
        self.last_field = Some(field.clone());
        if state.value.is_null() {
            self.removed_fields.insert(field, state);
        } else {
            self.fields.insert(field, state);
        }
        true
    }

    pub fn finish(self, query: &StateQuery, summary: StateSummary) -> ResourceState {
        let next_cursor = match (self.cut, self.last_field) {
            (true, Some(field)) => Some(
                StateCursor {
                    at_micros: query.at.micros(),
                    after_field: field,
                }
                .encode(),
            ),
            _ => None,
        };
        ResourceState {
            tenant_id: query.tenant_id.clone(),
            resource_type: query.resource_type.clone(),
            resource_id: query.resource_id.clone(),
            at: query.at,
            fields: self.fields,
            removed_fields: self.removed_fields,
            event_count: summary.event_count,
            last_event_id: summary.last_event_id,
            last_event_at: summary.last_event_at,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};
    use serde_json::json;

    fn event(i: i64, blob_bytes: usize) -> AuditEvent {
        let at = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap() + Duration::seconds(i);
        serde_json::from_value(json!({
            "id": format!("e{i:03}"),
            "tenant_id": "default",
            "occurred_at": at,
            "received_at": at,
            "actor_id": "user_123",
            "action": "export",
            "resource_type": "report",
            "resource_id": "r1",
            "changes": {},
            "metadata": {"blob": "x".repeat(blob_bytes)},
        }))
        .unwrap()
    }

    #[test]
    fn quotes_and_backslashes_weigh_twice_because_the_lambda_response_escapes_them_again() {
        assert_eq!(answer_bytes("ab"), 4 + 2 + 1);
        assert_eq!(answer_bytes(r#"a"b"#), r#""a\"b""#.len() + 4 + 1);
    }

    #[test]
    fn a_keyset_page_ends_at_its_limit_with_a_cursor_after_its_last_event() {
        let mut builder = PageBuilder::new(2);

        let offered: Vec<bool> = (0..3).map(|i| builder.offer(event(i, 10))).collect();
        let page = builder.keyset(Sort::Oldest);

        assert_eq!(offered, [true, true, false]);
        assert_eq!(page.data.len(), 2);
        let cursor = Cursor::decode(&page.next_cursor.unwrap()).unwrap();
        assert_eq!(cursor.id, "e001");
    }

    #[test]
    fn a_keyset_page_that_runs_out_of_events_has_no_cursor() {
        let mut builder = PageBuilder::new(5);
        builder.offer(event(0, 10));

        assert_eq!(builder.keyset(Sort::Newest).next_cursor, None);
    }

    #[test]
    fn a_page_of_large_events_stops_before_the_budget_and_continues_after_its_last_event() {
        let mut builder = PageBuilder::new(1000);
        let mut offered = 0;
        while builder.offer(event(offered, 250 * 1024)) {
            offered += 1;
        }
        let page = builder.keyset(Sort::Oldest);

        let body = serde_json::to_string(&page).unwrap();
        assert!(body.len() <= MAX_ANSWER_BYTES, "{}", body.len());
        assert_eq!(page.data.len(), offered as usize);
        assert!(page.data.len() >= 15, "{}", page.data.len());
        let cursor = Cursor::decode(&page.next_cursor.unwrap()).unwrap();
        assert_eq!(cursor.id, format!("e{:03}", offered - 1));
    }

    #[test]
    fn one_event_larger_than_the_budget_still_makes_a_page() {
        let mut builder = PageBuilder::new(10);

        assert!(builder.offer(event(0, MAX_ANSWER_BYTES)));
        assert!(!builder.offer(event(1, 1)));
        assert_eq!(builder.keyset(Sort::Oldest).data.len(), 1);
    }

    #[test]
    fn an_offset_page_cut_by_the_budget_says_so_and_gives_a_cursor() {
        let mut builder = PageBuilder::new(30);
        for i in 0..30 {
            if !builder.offer(event(i, 250 * 1024)) {
                break;
            }
        }
        let page = builder.offset(Sort::Newest, 1, 30, 30, true);

        assert!(page.meta.truncated);
        assert!(page.data.len() < 30);
        let cursor = Cursor::decode(page.meta.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(cursor.id, page.data.last().unwrap().id.to_string());
        assert_eq!(cursor.sort, Sort::Newest);
        assert_eq!(page.meta.total_pages, 1);
    }

    #[test]
    fn a_whole_offset_page_is_not_truncated_and_has_no_cursor() {
        let mut builder = PageBuilder::new(3);
        for i in 0..3 {
            builder.offer(event(i, 10));
        }
        let page = builder.offset(Sort::Newest, 2, 3, 7, true);

        let meta = serde_json::to_value(&page.meta).unwrap();
        assert_eq!(
            meta,
            json!({"current_page": 2, "per_page": 3, "total_pages": 3, "total_count": 7, "total_count_exact": true, "truncated": false})
        );
    }

    fn timestamp(month: u32, day: u32) -> Timestamp {
        Timestamp::new(Utc.with_ymd_and_hms(2026, month, day, 0, 0, 0).unwrap()).unwrap()
    }

    fn state_query() -> StateQuery {
        StateQuery {
            tenant_id: "default".into(),
            resource_type: "report".into(),
            resource_id: "r1".into(),
            at: timestamp(3, 1),
            after_field: None,
        }
    }

    fn summary() -> StateSummary {
        StateSummary {
            event_count: 1,
            last_event_id: "e1".into(),
            last_event_at: timestamp(2, 1),
        }
    }

    fn field(value: Value) -> FieldState {
        FieldState {
            value,
            event_id: "e1".into(),
            changed_at: timestamp(2, 1),
        }
    }

    #[test]
    fn a_state_sorts_removed_fields_apart_and_is_whole_without_a_cursor() {
        let mut builder = StateBuilder::new();
        builder.offer("note".into(), field(Value::Null));
        builder.offer("status".into(), field(json!("paid")));

        let state = builder.finish(&state_query(), summary());

        assert_eq!(state.fields.keys().collect::<Vec<_>>(), ["status"]);
        assert_eq!(state.removed_fields.keys().collect::<Vec<_>>(), ["note"]);
        assert_eq!(state.next_cursor, None);
    }

    #[test]
    fn a_state_past_the_budget_stops_with_a_cursor_after_its_last_field() {
        let mut builder = StateBuilder::new();
        let mut offered = 0;
        while builder.offer(
            format!("f{offered:03}"),
            field(json!("v".repeat(200 * 1024))),
        ) {
            offered += 1;
        }

        let state = builder.finish(&state_query(), summary());

        assert!(serde_json::to_string(&state).unwrap().len() <= MAX_ANSWER_BYTES + 1024);
        let cursor = StateCursor::decode(&state.next_cursor.unwrap()).unwrap();
        assert_eq!(cursor.after_field, format!("f{:03}", offered - 1));
        assert_eq!(cursor.at(), state_query().at);
    }
}
