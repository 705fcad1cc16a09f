//! Validation and normalization of incoming events against the v1 contract.
//!
//! Ingest is all or nothing: a batch with one invalid event is refused whole, with errors
//! keyed by field path (`events[3].action`). The writer re-checks what it reads from the
//! stream with [`check_stored`], because a stream can carry records from anywhere.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::{Map, Value};

use crate::event::AuditEvent;

/// At most this many events in one request.
pub const MAX_BATCH_EVENTS: usize = 500;
/// Largest request body accepted (Kinesis takes 5 MiB per PutRecords call).
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Largest single event once encoded for the stream (Kinesis takes 1 MiB per record).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Longest `id` or `tenant_id`.
pub const MAX_ID_CHARS: usize = 128;
/// Longest actor, action and resource string.
pub const MAX_TEXT_CHARS: usize = 256;
/// Deepest nesting allowed inside `changes` and `metadata` values.
pub const MAX_JSON_DEPTH: usize = 32;
/// Most fields one event may change.
pub const MAX_CHANGED_FIELDS: usize = 1000;
/// How far past the time of receipt `occurred_at` may lie (client clock skew).
pub const MAX_FUTURE_SKEW_SECONDS: i64 = 300;
/// Most field errors reported in one response.
pub const MAX_REPORTED_ERRORS: usize = 100;
/// The tenant used when an event names none.
pub const DEFAULT_TENANT: &str = "default";

const TOP_LEVEL_FIELDS: &[&str] = &[
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
}

/// Parses a request body holding one event or `{"events": [...]}` into normalized events.
///
/// `now` is the time of receipt; `new_id` mints ids for events that bring none.
pub fn parse_request(
    body: &[u8],
    now: DateTime<Utc>,
    mut new_id: impl FnMut() -> String,
) -> Result<Vec<AuditEvent>, IngestRejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(IngestRejection::TooLarge);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(IngestRejection::Malformed("request body is empty".into()));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| IngestRejection::Malformed(format!("request body is not UTF-8: {e}")))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| IngestRejection::Malformed(e.to_string()))?;
    let now = now.trunc_subsecs(6);

    let mut errors = Errors::default();
    let events = match value {
        Value::Object(mut object) if object.contains_key("events") => {
            for key in object.keys().filter(|k| *k != "events") {
                errors.add(key.clone(), "is not allowed beside `events`");
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
        single => parse_event(single, "", now, &mut new_id, &mut errors)
            .into_iter()
            .collect(),
    };
    errors.into_result().map(|()| events)
}

#[derive(Default)]
struct Errors {
    fields: FieldErrors,
}

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.fields.len() < MAX_REPORTED_ERRORS {
            self.fields.entry(field.into()).or_insert(message.into());
        }
    }

    fn into_result(self) -> Result<(), IngestRejection> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(IngestRejection::Invalid(self.fields))
        }
    }
}

fn parse_event(
    value: Value,
    prefix: &str,
    now: DateTime<Utc>,
    new_id: &mut impl FnMut() -> String,
    errors: &mut Errors,
) -> Option<AuditEvent> {
    let Value::Object(mut object) = value else {
        let field = if prefix.is_empty() {
            "body".to_string()
        } else {
            prefix.trim_end_matches('.').to_string()
        };
        errors.add(field, "must be a JSON object (an event)");
        return None;
    };
    let before = errors.fields.len();
    let path = |name: &str| format!("{prefix}{name}");

    for key in object.keys() {
        if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
            errors.add(path(&printable(key)), "is not a recognized field");
        }
    }

    let id = match object.remove("id") {
        None | Some(Value::Null) => Some(new_id()),
        Some(value) => expect_string(value, &path("id"), errors).and_then(|id| {
            check_identifier(&id)
                .map_err(|m| errors.add(path("id"), m))
                .ok()
                .map(|()| id)
        }),
    };
    let tenant_id = match object.remove("tenant_id") {
        None | Some(Value::Null) => Some(DEFAULT_TENANT.to_string()),
        Some(value) => expect_string(value, &path("tenant_id"), errors).and_then(|tenant| {
            check_identifier(&tenant)
                .map_err(|m| errors.add(path("tenant_id"), m))
                .ok()
                .map(|()| tenant)
        }),
    };
    let occurred_at = match object.remove("occurred_at") {
        None | Some(Value::Null) => Some(now),
        Some(value) => expect_string(value, &path("occurred_at"), errors).and_then(|text| {
            parse_occurred_at(&text, now)
                .map_err(|m| errors.add(path("occurred_at"), m))
                .ok()
        }),
    };
    let mut required = |name: &str| match object.remove(name) {
        None | Some(Value::Null) => {
            errors.add(path(name), "is required");
            None
        }
        Some(value) => expect_string(value, &path(name), errors).and_then(|text| {
            check_text(&text, MAX_TEXT_CHARS)
                .map_err(|m| errors.add(path(name), m))
                .ok()
                .map(|()| text)
        }),
    };
    let actor_id = required("actor_id");
    let action = required("action");
    let resource_type = required("resource_type");
    let resource_id = required("resource_id");
    let actor_type = match object.remove("actor_type") {
        None | Some(Value::Null) => Some(None),
        Some(value) => expect_string(value, &path("actor_type"), errors).and_then(|text| {
            check_text(&text, 64)
                .map_err(|m| errors.add(path("actor_type"), m))
                .ok()
                .map(|()| Some(text))
        }),
    };
    let changes = match object.remove("changes") {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(changes)) => normalize_changes(changes, &path("changes"), errors),
        Some(_) => {
            errors.add(path("changes"), "must be an object of changed fields");
            None
        }
    };
    let metadata = match object.remove("metadata") {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(metadata)) => {
            let metadata_value = Value::Object(metadata);
            match check_json(&metadata_value, 1) {
                Ok(()) => match metadata_value {
                    Value::Object(m) => Some(m),
                    _ => unreachable!("checked above"),
                },
                Err(m) => {
                    errors.add(path("metadata"), m);
                    None
                }
            }
        }
        Some(_) => {
            errors.add(path("metadata"), "must be an object");
            None
        }
    };

    if errors.fields.len() != before {
        return None;
    }
    let event = AuditEvent {
        id: id?,
        tenant_id: tenant_id?,
        occurred_at: occurred_at?,
        received_at: now,
        actor_id: actor_id?,
        actor_type: actor_type?,
        action: action?,
        resource_type: resource_type?,
        resource_id: resource_id?,
        changes: changes?,
        metadata: metadata?,
    };
    let size = event.encode().len();
    if size > MAX_EVENT_BYTES {
        let field = if prefix.is_empty() {
            "body".to_string()
        } else {
            prefix.trim_end_matches('.').to_string()
        };
        errors.add(
            field,
            format!("encodes to {size} bytes; at most {MAX_EVENT_BYTES} are allowed per event"),
        );
        return None;
    }
    Some(event)
}

fn expect_string(value: Value, field: &str, errors: &mut Errors) -> Option<String> {
    match value {
        Value::String(text) => Some(text),
        other => {
            errors.add(field, format!("must be a string, not {}", kind(&other)));
            None
        }
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

/// Keeps hostile keys from bloating or garbling an error response.
fn printable(key: &str) -> String {
    let cleaned: String = key
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(64)
        .collect();
    if key.chars().count() > 64 {
        format!("{cleaned}…")
    } else {
        cleaned
    }
}

fn check_identifier(value: &str) -> Result<(), String> {
    let len = value.chars().count();
    if len == 0 || len > MAX_ID_CHARS {
        return Err(format!("must be 1 to {MAX_ID_CHARS} characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err("may only contain A-Z a-z 0-9 . _ : -".into());
    }
    Ok(())
}

fn check_text(value: &str, max_chars: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be blank".into());
    }
    if value.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

fn parse_occurred_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let parsed = DateTime::parse_from_rfc3339(text)
        .map_err(|_| "must be an RFC 3339 timestamp, e.g. 2026-01-31T23:59:59Z".to_string())?
        .with_timezone(&Utc);
    check_time(parsed, now)?;
    // PostgreSQL keeps microseconds; truncating here keeps the month the event is filed
    // under identical to the month PostgreSQL routes it to.
    Ok(parsed.trunc_subsecs(6))
}

fn check_time(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    if at < DateTime::UNIX_EPOCH {
        return Err("must not be before 1970-01-01T00:00:00Z".into());
    }
    if at > now + Duration::seconds(MAX_FUTURE_SKEW_SECONDS) {
        return Err(format!(
            "must not be more than {MAX_FUTURE_SKEW_SECONDS} seconds in the future"
        ));
    }
    Ok(())
}

/// Checks nesting depth and that no string or key holds NUL, which PostgreSQL's jsonb refuses.
fn check_json(value: &Value, depth: usize) -> Result<(), String> {
    if depth > MAX_JSON_DEPTH {
        return Err(format!("is nested deeper than {MAX_JSON_DEPTH} levels"));
    }
    match value {
        Value::String(text) if text.contains('\0') => {
            Err("must not contain NUL (\\u0000) characters".into())
        }
        Value::Array(items) => items.iter().try_for_each(|v| check_json(v, depth + 1)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.contains('\0') {
                Err("must not contain NUL (\\u0000) characters in keys".into())
            } else {
                check_json(v, depth + 1)
            }
        }),
        _ => Ok(()),
    }
}

fn is_change_form(value: &Value) -> bool {
    matches!(value, Value::Object(map)
        if !map.is_empty() && map.keys().all(|k| k == "before" || k == "after"))
}

fn normalize_changes(
    changes: Map<String, Value>,
    field: &str,
    errors: &mut Errors,
) -> Option<Map<String, Value>> {
    if changes.len() > MAX_CHANGED_FIELDS {
        errors.add(
            field,
            format!(
                "changes {} fields; at most {MAX_CHANGED_FIELDS} are allowed",
                changes.len()
            ),
        );
        return None;
    }
    let mut normalized = Map::new();
    let mut ok = true;
    for (name, value) in changes {
        let path = format!("{field}.{}", printable(&name));
        if let Err(message) = check_text(&name, MAX_TEXT_CHARS) {
            errors.add(path, format!("field name {message}"));
            ok = false;
            continue;
        }
        if let Err(message) = check_json(&value, 2) {
            errors.add(path, message);
            ok = false;
            continue;
        }
        let change = if is_change_form(&value) {
            let Value::Object(mut pair) = value else {
                unreachable!("is_change_form checked it")
            };
            serde_json::json!({
                "before": pair.remove("before").unwrap_or(Value::Null),
                "after": pair.remove("after").unwrap_or(Value::Null),
            })
        } else {
            serde_json::json!({"before": Value::Null, "after": value})
        };
        normalized.insert(name, change);
    }
    ok.then_some(normalized)
}

/// Re-checks an event read back from the stream against every rule ingest applies.
pub fn check_stored(event: &AuditEvent) -> Result<(), Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut check = |field: &str, result: Result<(), String>| {
        if let Err(message) = result {
            errors.push((field.to_string(), message));
        }
    };
    check("id", check_identifier(&event.id));
    check("tenant_id", check_identifier(&event.tenant_id));
    check("actor_id", check_text(&event.actor_id, MAX_TEXT_CHARS));
    check("action", check_text(&event.action, MAX_TEXT_CHARS));
    check(
        "resource_type",
        check_text(&event.resource_type, MAX_TEXT_CHARS),
    );
    check(
        "resource_id",
        check_text(&event.resource_id, MAX_TEXT_CHARS),
    );
    if let Some(actor_type) = &event.actor_type {
        check("actor_type", check_text(actor_type, 64));
    }
    check(
        "occurred_at",
        check_time(event.occurred_at, event.received_at),
    );
    check(
        "occurred_at",
        if event.occurred_at.trunc_subsecs(6) == event.occurred_at {
            Ok(())
        } else {
            Err("must have at most microsecond precision".into())
        },
    );
    check(
        "metadata",
        check_json(&Value::Object(event.metadata.clone()), 1),
    );
    if event.changes.len() > MAX_CHANGED_FIELDS {
        check("changes", Err("has too many fields".into()));
    }
    for (name, change) in &event.changes {
        let normalized = matches!(change, Value::Object(pair)
            if pair.len() == 2 && pair.contains_key("before") && pair.contains_key("after"));
        let result = check_text(name, MAX_TEXT_CHARS)
            .and_then(|()| check_json(change, 2))
            .and_then(|()| {
                if normalized {
                    Ok(())
                } else {
                    Err("must be in the normalized {\"before\", \"after\"} form".into())
                }
            });
        check(&format!("changes.{}", printable(name)), result);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;
