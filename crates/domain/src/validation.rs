//! The ingest contract: parsing a request body into validated, normalized events.
//!
//! Ingest is all or nothing: a batch with one invalid event is refused whole, with errors
//! keyed by field path (`events[3].action`). The rules of each field live in its type
//! ([`crate::fields`]); this module only walks the request and names where a rule failed.
//! The body is read strictly ([`crate::json`]): duplicate keys and numbers that would not be
//! kept exactly are refused, never silently resolved.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::event::{check_occurred_at, AuditEvent};
pub use crate::event::{MAX_EVENT_BYTES, MAX_FUTURE_SKEW_SECONDS};
use crate::fields::{printable, Changes, EventId, IdempotencyKey, Metadata, TenantId, Timestamp};
pub use crate::fields::{
    DEFAULT_TENANT, MAX_ACTOR_TYPE_CHARS, MAX_CHANGED_FIELDS, MAX_ID_CHARS, MAX_JSON_DEPTH,
    MAX_TEXT_CHARS,
};

/// At most this many events in one request.
pub const MAX_BATCH_EVENTS: usize = 500;
/// Largest request body accepted (Kinesis takes 5 MiB per PutRecords call).
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Most field errors reported in one response.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// The members of an event that a client may send.
pub const TOP_LEVEL_FIELDS: &[&str] = &[
    "id",
    "tenant_id",
    "occurred_at",
    "actor_id",
    "actor_type",
    "action",
    "resource_type",
    "resource_id",
    "changes",
    "metadata",
];

/// Field path to message, e.g. `events[3].action` → `is required`.
pub type FieldErrors = BTreeMap<String, String>;

/// Why a request's events were refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IngestRejection {
    #[error("request body is not valid JSON: {0}")]
    Malformed(String),
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("{} invalid field(s); nothing was accepted", .0.len())]
    Invalid(FieldErrors),
    /// A `tenant_id` other than the caller's: the tenant comes from the identity, and a
    /// different one is refused, never rewritten.
    #[error("{} event(s) name another tenant; nothing was accepted", .0.len())]
    ForeignTenant(FieldErrors),
}

/// Actions in this namespace are Sentinel's own (access events, insights); a client may not
/// send them.
pub const RESERVED_ACTION_PREFIX: &str = "sentinel.";

/// Mints the id of an event that brings none, given its position in the request (from 0).
pub trait MintId {
    fn mint(&mut self, position: usize) -> EventId;
}

/// Any `FnMut() -> String` mints fresh ids (ingest's UUIDv7), whatever the position.
impl<F: FnMut() -> String> MintId for F {
    fn mint(&mut self, _position: usize) -> EventId {
        EventId::parse(self()).expect("minted ids are valid identifiers")
    }
}

/// The ids of a request sent with an `Idempotency-Key`: derived from the tenant, the key and
/// the event's position ([`EventId::derived`]), so a retried request gets the same ids.
pub struct KeyedIds<'a> {
    pub tenant: &'a TenantId,
    pub key: &'a IdempotencyKey,
}

impl MintId for KeyedIds<'_> {
    fn mint(&mut self, position: usize) -> EventId {
        EventId::derived(self.tenant, self.key, position)
    }
}

/// Parses a request body holding one event or `{"events": [...]}` into normalized events.
///
/// `now` is the time of receipt; `tenant` is the caller's, which every event gets (an event
/// that names another is refused); `new_id` mints ids for events that bring none (an event's
/// own `id` always stands).
pub fn parse_request(
    body: &[u8],
    now: DateTime<Utc>,
    tenant: &TenantId,
    mut new_id: impl MintId,
) -> Result<Vec<AuditEvent>, IngestRejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(IngestRejection::TooLarge);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(IngestRejection::Malformed("request body is empty".into()));
    }
    let value = crate::json::from_slice(body).map_err(|error| match error.path() {
        None => IngestRejection::Malformed(error.to_string()),
        Some(path) => {
            let field = if path.is_empty() { "body" } else { path };
            let message = match &error {
                crate::json::JsonError::Invalid { problem, .. } => problem.to_string(),
                other => other.to_string(),
            };
            IngestRejection::Invalid(FieldErrors::from([(field.to_string(), message)]))
        }
    })?;
    let now = Timestamp::truncating(now);

    let mut errors = Errors {
        tenant,
        fields: FieldErrors::new(),
        forbidden: FieldErrors::new(),
    };
    let events = match value {
        Value::Object(mut object) if object.contains_key("events") => {
            for key in object.keys().filter(|k| *k != "events") {
                errors.add(printable(key), "is not allowed beside `events`");
            }
            match object.remove("events") {
                Some(Value::Array(items)) if items.is_empty() => {
                    errors.add("events", "must hold at least one event");
                    Vec::new()
                }
                Some(Value::Array(items)) if items.len() > MAX_BATCH_EVENTS => {
                    errors.add(
                        "events",
                        format!(
                            "holds {} events; at most {MAX_BATCH_EVENTS} are allowed",
                            items.len()
                        ),
                    );
                    Vec::new()
                }
                Some(Value::Array(items)) => items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, item)| {
                        parse_event(
                            item,
                            &format!("events[{i}]."),
                            i,
                            now,
                            &mut new_id,
                            &mut errors,
                        )
                    })
                    .collect(),
                _ => {
                    errors.add("events", "must be an array of events");
                    Vec::new()
                }
            }
        }
        single => parse_event(single, "", 0, now, &mut new_id, &mut errors)
            .into_iter()
            .collect(),
    };
    errors.into_result().map(|()| events)
}

struct Errors<'t> {
    /// The caller's tenant.
    tenant: &'t TenantId,
    fields: FieldErrors,
    forbidden: FieldErrors,
}

impl Errors<'_> {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.fields.len() < MAX_REPORTED_ERRORS {
            self.fields.entry(field.into()).or_insert(message.into());
        }
    }

    fn forbid(&mut self, field: String, message: String) {
        if self.forbidden.len() < MAX_REPORTED_ERRORS {
            self.forbidden.entry(field).or_insert(message);
        }
    }

    /// A foreign tenant is reported before anything else: it is not the caller's to write.
    fn into_result(self) -> Result<(), IngestRejection> {
        if !self.forbidden.is_empty() {
            Err(IngestRejection::ForeignTenant(self.forbidden))
        } else if !self.fields.is_empty() {
            Err(IngestRejection::Invalid(self.fields))
        } else {
            Ok(())
        }
    }
}

/// One field of an event: checks its JSON type, then its value through `parse`.
struct Reader<'a, 't> {
    object: Map<String, Value>,
    prefix: &'a str,
    errors: &'a mut Errors<'t>,
}

impl Reader<'_, '_> {
    fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The field's value: `None` when absent or null, `Some(Err(()))` when refused.
    fn take<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(Value) -> Result<T, String>,
    ) -> Option<Result<T, ()>> {
        match self.object.remove(name) {
            None | Some(Value::Null) => None,
            Some(value) => Some(parse(value).map_err(|why| {
                let path = self.path(name);
                self.errors.add(path, why)
            })),
        }
    }

    fn string<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(String) -> Result<T, String>,
    ) -> Option<Result<T, ()>> {
        self.take(name, |value| match value {
            Value::String(text) => parse(text),
            other => Err(format!("must be a string, not {}", kind(&other))),
        })
    }

    fn required<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(String) -> Result<T, String>,
    ) -> Result<T, ()> {
        self.string(name, parse).unwrap_or_else(|| {
            let path = self.path(name);
            self.errors.add(path, "is required");
            Err(())
        })
    }
}

fn parse_event(
    value: Value,
    prefix: &str,
    position: usize,
    now: Timestamp,
    new_id: &mut impl MintId,
    errors: &mut Errors<'_>,
) -> Option<AuditEvent> {
    let Value::Object(object) = value else {
        errors.add(whole(prefix), "must be a JSON object (an event)");
        return None;
    };
    for key in object.keys() {
        if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
            errors.add(
                format!("{prefix}{}", printable(key)),
                "is not a recognized field",
            );
        }
    }
    let mut field = Reader {
        object,
        prefix,
        errors,
    };
    let id = field
        .string("id", EventId::parse)
        .unwrap_or_else(|| Ok(new_id.mint(position)));
    let tenant_id = match field.string("tenant_id", TenantId::parse) {
        None => Ok(field.errors.tenant.clone()),
        Some(Ok(named)) if named == *field.errors.tenant => Ok(named),
        Some(Ok(_)) => {
            let path = field.path("tenant_id");
            field.errors.forbid(
                path,
                "must be the caller's own tenant (or left out)".to_string(),
            );
            Err(())
        }
        Some(Err(())) => Err(()),
    };
    let occurred_at = field
        .string("occurred_at", |text| {
            let at = Timestamp::parse(&text)?;
            check_occurred_at(at, now)?;
            Ok(at)
        })
        .unwrap_or(Ok(now));
    let actor_id = field.required("actor_id", |t| t.parse());
    let action = field.required("action", |t| {
        let reserved = t
            .trim_start()
            .get(..RESERVED_ACTION_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_ACTION_PREFIX));
        if reserved {
            Err(format!(
                "must not start with `{RESERVED_ACTION_PREFIX}`: that namespace is Sentinel's own"
            ))
        } else {
            t.parse()
        }
    });
    let resource_type = field.required("resource_type", |t| t.parse());
    let resource_id = field.required("resource_id", |t| t.parse());
    let actor_type = field.string("actor_type", |t| t.parse()).transpose();
    let changes = match field.object.remove("changes") {
        None | Some(Value::Null) => Ok(Changes::default()),
        Some(Value::Object(changes)) => Changes::normalize(changes).map_err(|problems| {
            // Each bad field is named on its own.
            for (name, why) in problems {
                let path = match name.as_str() {
                    "" => field.path("changes"),
                    name => field.path(&format!("changes.{}", printable(name))),
                };
                field.errors.add(path, why);
            }
        }),
        Some(_) => {
            let path = field.path("changes");
            field
                .errors
                .add(path, "must be an object of changed fields");
            Err(())
        }
    };
    let metadata = field
        .take("metadata", |value| match value {
            Value::Object(metadata) => Metadata::parse(metadata),
            _ => Err("must be an object".into()),
        })
        .unwrap_or_else(|| Ok(Metadata::default()));
    let event = AuditEvent {
        id: id.ok()?,
        tenant_id: tenant_id.ok()?,
        occurred_at: occurred_at.ok()?,
        received_at: now,
        actor_id: actor_id.ok()?,
        actor_type: actor_type.ok()?,
        action: action.ok()?,
        resource_type: resource_type.ok()?,
        resource_id: resource_id.ok()?,
        changes: changes.ok()?,
        metadata: metadata.ok()?,
    };
    let size = event.encode().len();
    if size > MAX_EVENT_BYTES {
        errors.add(
            whole(prefix),
            format!("encodes to {size} bytes; at most {MAX_EVENT_BYTES} are allowed per event"),
        );
        return None;
    }
    Some(event)
}

fn whole(prefix: &str) -> String {
    if prefix.is_empty() {
        "body".to_string()
    } else {
        prefix.trim_end_matches('.').to_string()
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
