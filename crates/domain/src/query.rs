//! The query contract: parsing request parameters into a validated query, and the cursor.
//!
//! Every unknown, duplicated or invalid parameter is refused, naming it.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fields::{
    Action, ActorId, EventId, FieldName, ResourceId, ResourceType, TenantId, Timestamp,
};
use crate::validation::{FieldErrors, MAX_REPORTED_ERRORS};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 1000;
pub const MAX_PER_PAGE: i64 = 1000;
/// Offset pages deeper than this many rows are refused: use the cursor instead.
pub const MAX_OFFSET: i64 = 100_000;
/// Totals are counted exactly up to this many rows, and estimated beyond.
pub const EXACT_COUNT_LIMIT: i64 = 10_000;
/// Parameter names are echoed back in errors cut to this many characters.
pub const MAX_SHOWN_NAME_CHARS: usize = 64;

/// Newest first (the default) or oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sort {
    #[serde(rename = "-occurred_at")]
    Newest,
    #[serde(rename = "occurred_at")]
    Oldest,
}

/// The position after the last event of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "t")]
    pub occurred_at_micros: i64,
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "s")]
    pub sort: Sort,
}

impl Cursor {
    pub fn after(occurred_at: Timestamp, id: &str, sort: Sort) -> Self {
        Self {
            occurred_at_micros: occurred_at.micros(),
            id: id.to_string(),
            sort,
        }
    }

    pub fn occurred_at(&self) -> Timestamp {
        Timestamp::from_micros(self.occurred_at_micros).expect("decoded cursors hold valid times")
    }

    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).expect("cursor serializes"))
    }

    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > 512 {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let cursor: Cursor = serde_json::from_slice(&bytes).ok()?;
        // Stored times are Timestamps; anything else was not issued here.
        let valid =
            is_event_id(&cursor.id) && Timestamp::from_micros(cursor.occurred_at_micros).is_some();
        valid.then_some(cursor)
    }
}

/// Where a state answer that was cut short continues: the same `at`, the fields after one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCursor {
    #[serde(rename = "a")]
    pub at_micros: i64,
    #[serde(rename = "f")]
    pub after_field: String,
}

impl StateCursor {
    /// Longest encoded state cursor: room for the longest field name, escaped.
    pub const MAX_ENCODED_CHARS: usize = 4096;

    pub fn at(&self) -> Timestamp {
        Timestamp::from_micros(self.at_micros).expect("decoded cursors hold valid times")
    }

    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).expect("cursor serializes"))
    }

    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > Self::MAX_ENCODED_CHARS {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let cursor: StateCursor = serde_json::from_slice(&bytes).ok()?;
        // Cursors name a stored field, so the name follows a field name's rules.
        let valid = FieldName::parse(cursor.after_field.as_str()).is_ok()
            && Timestamp::from_micros(cursor.at_micros).is_some();
        valid.then_some(cursor)
    }
}

/// How a list is paged.
#[derive(Debug, Clone, PartialEq)]
pub enum Paging {
    Keyset { limit: i64, after: Option<Cursor> },
    Offset { page: i64, per_page: i64 },
}

/// A change filter: events whose `changes` hold this field, optionally with these values.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeFilter {
    pub field: String,
    /// Each candidate is one JSON value the side may equal (a string and, where the text
    /// reads as a number, boolean or null, that too).
    pub to: Option<Vec<Value>>,
    pub from: Option<Vec<Value>>,
}

impl ChangeFilter {
    /// The `@>` containment documents to OR together; empty when only the field is named.
    pub fn containment(&self) -> Vec<Value> {
        let sides: Vec<Vec<(&str, &Value)>> = match (&self.to, &self.from) {
            (None, None) => return Vec::new(),
            (Some(to), None) => to.iter().map(|v| vec![("after", v)]).collect(),
            (None, Some(from)) => from.iter().map(|v| vec![("before", v)]).collect(),
            (Some(to), Some(from)) => to
                .iter()
                .flat_map(|t| from.iter().map(move |f| vec![("after", t), ("before", f)]))
                .collect(),
        };
        sides
            .into_iter()
            .map(|pairs| {
                let change: Map<String, Value> = pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                let mut doc = Map::new();
                doc.insert(self.field.clone(), Value::Object(change));
                Value::Object(doc)
            })
            .collect()
    }
}

/// A validated `GET /events` (or resource history) query.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    pub tenant_id: String,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// Inclusive lower bound.
    pub from: Option<Timestamp>,
    /// Exclusive upper bound.
    pub to: Option<Timestamp>,
    pub changed: Option<ChangeFilter>,
    pub sort: Sort,
    pub paging: Paging,
    /// Whether access events (`sentinel.events.read`) are listed too: only for callers that
    /// may read the access log. Off when parsed; the handler turns it on.
    pub include_access_events: bool,
}

const EVENT_PARAMS: &[&str] = &[
    "tenant_id",
    "actor_id",
    "action",
    "resource_type",
    "resource_id",
    "from",
    "to",
    "changed_field",
    "changed_to",
    "changed_from",
    "sort",
    "limit",
    "cursor",
    "page",
    "per_page",
];
const HISTORY_PARAMS: &[&str] = &["tenant_id", "from", "to", "sort", "limit", "cursor"];
const STATE_PARAMS: &[&str] = &["tenant_id", "at", "cursor"];

/// The parameters of `GET /consistency`.
pub const CONSISTENCY_PARAMS: &[&str] = &["tenant_id", "from", "to"];

/// A consistency proof asked for: from the tree size a client holds to a signed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyQuery {
    pub tenant_id: String,
    pub from: u64,
    pub to: Option<u64>,
}

/// Query parameters, checked for unknown and repeated names.
pub struct Params {
    values: BTreeMap<String, String>,
    errors: FieldErrors,
}

impl Params {
    /// Parses a raw query string (`a=1&b=2`), percent-decoding names and values.
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> Self {
        let mut values = BTreeMap::new();
        let mut errors = FieldErrors::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let name = name.into_owned();
            if name.is_empty() {
                continue;
            }
            if !allowed.contains(&name.as_str()) {
                report(
                    &mut errors,
                    shown_name(&name),
                    format!(
                        "is not a recognized parameter; use one of: {}",
                        allowed.join(", ")
                    ),
                );
            } else if values.insert(name.clone(), value.into_owned()).is_some() {
                report(&mut errors, name, "is given more than once".into());
            }
        }
        Self { values, errors }
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.values.remove(name)
    }

    fn fail(&mut self, name: &str, message: impl Into<String>) {
        report(&mut self.errors, name.to_string(), message.into());
    }

    fn text(&mut self, name: &str) -> Option<String> {
        let value = self.take(name)?;
        if value.is_empty() || value.chars().count() > 256 || value.chars().any(char::is_control) {
            self.fail(
                name,
                "must be 1 to 256 characters, without control characters",
            );
            return None;
        }
        Some(value)
    }

    /// A parameter read through a field type's own parser, so the query refuses exactly
    /// the values that could never have been stored.
    fn typed<T: std::str::FromStr<Err = String>>(&mut self, name: &str) -> Option<T> {
        let value = self.take(name)?;
        match value.parse() {
            Ok(typed) => Some(typed),
            Err(why) => {
                self.fail(name, why);
                None
            }
        }
    }

    fn time(&mut self, name: &str) -> Option<Timestamp> {
        let value = self.take(name)?;
        match parse_time(&value) {
            Ok(at) => Some(at),
            Err(error) => {
                self.fail(name, error.to_string());
                None
            }
        }
    }

    fn int(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        let value = self.take(name)?;
        match value.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.fail(name, format!("must be a whole number from {min} to {max}"));
                None
            }
        }
    }

    /// Checks the `{type}` and `{id}` of a `/resources/{type}/{id}/…` path with the field
    /// types' own rules.
    fn resource_path(&mut self, resource_type: &str, resource_id: &str) {
        if let Err(why) = ResourceType::parse(resource_type) {
            self.fail("type", why);
        }
        if let Err(why) = ResourceId::parse(resource_id) {
            self.fail("id", why);
        }
    }

    /// The only parameter of `GET /events/{id}`: the tenant (the caller's by default).
    pub fn tenant(mut self, caller: &TenantId) -> Result<String, FieldErrors> {
        let tenant = tenant(&mut self, caller);
        self.finish(tenant)
    }

    /// `GET /consistency`: `from` (a tree size, at least 1), `to` (a signed tree size; the
    /// latest if left out), and the tenant.
    pub fn consistency(mut self, caller: &TenantId) -> Result<ConsistencyQuery, FieldErrors> {
        let tenant_id = tenant(&mut self, caller);
        let from = self.int("from", 1, i64::MAX);
        let to = self.int("to", 1, i64::MAX);
        if from.is_none() && !self.errors.contains_key("from") {
            self.fail(
                "from",
                "is required: the tree size of the checkpoint you hold",
            );
        }
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                self.fail("from", "must not be larger than `to`");
            }
        }
        let query = ConsistencyQuery {
            tenant_id,
            from: from.unwrap_or(1) as u64,
            to: to.map(|n| n as u64),
        };
        self.finish(query)
    }

    fn finish<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// Records one error, the first for its name, while fewer than [`MAX_REPORTED_ERRORS`] are
/// recorded: a request with thousands of bad parameters gets a bounded answer.
fn report(errors: &mut FieldErrors, name: String, message: String) {
    if errors.len() < MAX_REPORTED_ERRORS {
        errors.entry(name).or_insert(message);
    }
}

/// A parameter name as errors show it: control characters as `?`, and cut to
/// [`MAX_SHOWN_NAME_CHARS`] characters (marked with `…`).
fn shown_name(name: &str) -> String {
    let mut chars = name.chars();
    let mut shown: String = chars
        .by_ref()
        .take(MAX_SHOWN_NAME_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if chars.next().is_some() {
        shown.push('…');
    }
    shown
}

/// Whether `id` could be an event id at all ([`EventId`]'s rule).
pub fn is_event_id(id: &str) -> bool {
    EventId::parse(id).is_ok()
}

/// Why a time parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("must be an RFC 3339 timestamp (2026-01-31T23:59:59Z) or epoch seconds")]
    NotATime,
    /// A time, but not one a [`Timestamp`] may hold; the text is its rule's.
    #[error("{0}")]
    OutOfRange(String),
}

/// RFC 3339 (any offset, converted to UTC) or epoch seconds (digits, optionally with a
/// fraction), truncated to microseconds, that a [`Timestamp`] may hold: from
/// 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z, not a leap second.
pub fn parse_time(value: &str) -> Result<Timestamp, TimeError> {
    let at = match DateTime::parse_from_rfc3339(value) {
        Ok(at) => at.with_timezone(&Utc).trunc_subsecs(6),
        Err(_) => epoch_seconds(value)?,
    };
    Timestamp::new(at).map_err(TimeError::OutOfRange)
}

/// Epoch seconds as text (`1769904000`, `1769904000.25`, `.5`), read exactly to the
/// microsecond: no sign, no exponent, no float rounding.
fn epoch_seconds(value: &str) -> Result<DateTime<Utc>, TimeError> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err(TimeError::NotATime);
    }
    let whole = whole.trim_start_matches('0');
    let seconds: i64 = match whole {
        "" => 0,
        // More digits than any time has (chrono's latest is in the year 262143): as far out
        // of range as that one.
        w if w.len() > 12 => return Ok(DateTime::<Utc>::MAX_UTC),
        w => w.parse().map_err(|_| TimeError::NotATime)?,
    };
    let micros: i64 = format!("{:0<6}", &fraction[..fraction.len().min(6)])
        .parse()
        .map_err(|_| TimeError::NotATime)?;
    DateTime::from_timestamp_micros(seconds * 1_000_000 + micros).ok_or(TimeError::NotATime)
}

fn change_values(raw: &str) -> Vec<Value> {
    let mut values = vec![Value::String(raw.to_string())];
    if let Ok(parsed) = serde_json::from_str::<Value>(raw) {
        if matches!(parsed, Value::Number(_) | Value::Bool(_) | Value::Null) {
            values.push(parsed);
        }
    }
    values
}

/// The tenant read: the one `tenant_id` names, or the caller's when it names none. Whether
/// the caller may read a tenant it names is the handler's to decide (from its identity).
fn tenant(params: &mut Params, caller: &TenantId) -> String {
    match params.take("tenant_id").map(TenantId::parse) {
        None => caller.to_string(),
        Some(Ok(tenant)) => tenant.into_string(),
        Some(Err(why)) => {
            params.fail("tenant_id", why);
            caller.to_string()
        }
    }
}

fn sort(params: &mut Params, default: Sort) -> Sort {
    match params.take("sort").as_deref() {
        None => default,
        Some("-occurred_at") => Sort::Newest,
        Some("occurred_at") => Sort::Oldest,
        Some(_) => {
            params.fail("sort", "must be one of -occurred_at, occurred_at");
            default
        }
    }
}

fn keyset(params: &mut Params, sort: Sort) -> Paging {
    let limit = params.int("limit", 1, MAX_LIMIT).unwrap_or(DEFAULT_LIMIT);
    let after = match params.take("cursor") {
        None => None,
        Some(text) => match Cursor::decode(&text) {
            Some(cursor) if cursor.sort == sort => Some(cursor),
            Some(_) => {
                params.fail(
                    "cursor",
                    "was issued for the other sort order; keep `sort` the same while paging",
                );
                None
            }
            None => {
                params.fail("cursor", "is not a cursor this API issued; pass `next_cursor` from the previous page unchanged");
                None
            }
        },
    };
    Paging::Keyset { limit, after }
}

fn time_range(params: &mut Params) -> (Option<Timestamp>, Option<Timestamp>) {
    let from = params.time("from");
    let to = params.time("to");
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            params.fail("to", "must be later than `from` (the range is [from, to))");
        }
    }
    (from, to)
}

impl EventQuery {
    /// `GET /events?…` by a caller of tenant `caller`.
    pub fn parse(query: Option<&str>, caller: &TenantId) -> Result<Self, FieldErrors> {
        let mut params = Params::parse(query, EVENT_PARAMS);
        let tenant_id = tenant(&mut params, caller);
        let actor_id = params
            .typed::<ActorId>("actor_id")
            .map(ActorId::into_string);
        let action = params.typed::<Action>("action").map(Action::into_string);
        let resource_type = params
            .typed::<ResourceType>("resource_type")
            .map(ResourceType::into_string);
        let resource_id = params
            .typed::<ResourceId>("resource_id")
            .map(ResourceId::into_string);
        if resource_id.is_some()
            && resource_type.is_none()
            && !params.errors.contains_key("resource_type")
        {
            params.fail(
                "resource_id",
                "needs `resource_type` too (ids are unique within a type)",
            );
        }
        let (from, to) = time_range(&mut params);
        let field = params
            .typed::<FieldName>("changed_field")
            .map(FieldName::into_string);
        let changed_to = params.text("changed_to");
        let changed_from = params.text("changed_from");
        let changed = match field {
            Some(field) => Some(ChangeFilter {
                field,
                to: changed_to.as_deref().map(change_values),
                from: changed_from.as_deref().map(change_values),
            }),
            None => {
                for (name, value) in [("changed_to", &changed_to), ("changed_from", &changed_from)]
                {
                    if value.is_some() {
                        params.fail(name, "needs `changed_field` to say which field changed");
                    }
                }
                None
            }
        };
        let sort = sort(&mut params, Sort::Newest);
        let offset_params =
            params.values.contains_key("page") || params.values.contains_key("per_page");
        let paging = if offset_params {
            for name in ["limit", "cursor"] {
                if params.values.contains_key(name) {
                    params.fail(
                        name,
                        "cannot be combined with `page`/`per_page`; use one kind of paging",
                    );
                }
            }
            let page = params.int("page", 1, i64::MAX / 2).unwrap_or(1);
            let per_page = params
                .int("per_page", 1, MAX_PER_PAGE)
                .unwrap_or(DEFAULT_LIMIT);
            if (page - 1).saturating_mul(per_page) > MAX_OFFSET {
                params.fail("page", format!("is too deep: offset pages reach {MAX_OFFSET} rows; use `cursor` paging to go further"));
            }
            Paging::Offset { page, per_page }
        } else {
            keyset(&mut params, sort)
        };
        params.finish(Self {
            tenant_id,
            actor_id,
            action,
            resource_type,
            resource_id,
            from,
            to,
            changed,
            sort,
            paging,
            include_access_events: false,
        })
    }

    /// `GET /resources/{type}/{id}/history?…`: oldest first by default.
    pub fn history(
        resource_type: &str,
        resource_id: &str,
        query: Option<&str>,
        caller: &TenantId,
    ) -> Result<Self, FieldErrors> {
        let mut params = Params::parse(query, HISTORY_PARAMS);
        let tenant_id = tenant(&mut params, caller);
        params.resource_path(resource_type, resource_id);
        let (from, to) = time_range(&mut params);
        let sort = sort(&mut params, Sort::Oldest);
        let paging = keyset(&mut params, sort);
        params.finish(Self {
            tenant_id,
            actor_id: None,
            action: None,
            resource_type: Some(resource_type.to_string()),
            resource_id: Some(resource_id.to_string()),
            from,
            to,
            changed: None,
            sort,
            paging,
            include_access_events: false,
        })
    }
}

/// A validated `GET /resources/{type}/{id}/state?at=T`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateQuery {
    pub tenant_id: String,
    pub resource_type: String,
    pub resource_id: String,
    /// Inclusive: an event at exactly `at` has shaped the state.
    pub at: Timestamp,
    /// Continuing an answer cut short: only fields whose names sort (by their UTF-8 bytes)
    /// after this one.
    pub after_field: Option<String>,
}

impl StateQuery {
    pub fn parse(
        resource_type: &str,
        resource_id: &str,
        query: Option<&str>,
        now: DateTime<Utc>,
        caller: &TenantId,
    ) -> Result<Self, FieldErrors> {
        let mut params = Params::parse(query, STATE_PARAMS);
        let tenant_id = tenant(&mut params, caller);
        params.resource_path(resource_type, resource_id);
        let given_at = params.time("at");
        let cursor = match params.take("cursor") {
            None => None,
            Some(text) => match StateCursor::decode(&text) {
                Some(cursor) => Some(cursor),
                None => {
                    params.fail("cursor", "is not a cursor this API issued; pass `next_cursor` from the previous answer unchanged");
                    None
                }
            },
        };
        let (at, after_field) = match cursor {
            Some(cursor) => {
                if given_at.is_some_and(|at| at != cursor.at()) {
                    params.fail(
                        "cursor",
                        "was issued for another `at`; keep `at` the same (or leave it out) while paging",
                    );
                }
                (cursor.at(), Some(cursor.after_field))
            }
            // The clock's now, to the microsecond like every stored time.
            None => (given_at.unwrap_or_else(|| Timestamp::truncating(now)), None),
        };
        params.finish(Self {
            tenant_id,
            resource_type: resource_type.to_string(),
            resource_id: resource_id.to_string(),
            at,
            after_field,
        })
    }
}

#[cfg(test)]
mod tests;
