//! The event's fields as types. Each rule lives in one `parse`; a value of one of these types
//! has passed it, and deserializing goes through the same `parse`, so a decoded event is valid
//! by construction.

use std::fmt;
use std::ops::Deref;

use chrono::{DateTime, Datelike, SubsecRound, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Longest `id` or `tenant_id`.
pub const MAX_ID_CHARS: usize = 128;
/// Longest actor, action and resource string, and changed field name.
pub const MAX_TEXT_CHARS: usize = 256;
/// Longest `actor_type`.
pub const MAX_ACTOR_TYPE_CHARS: usize = 64;
/// Deepest nesting inside `changes` and `metadata`: they are level 1, their values level 2,
/// and a change's `before` and `after` level 3.
pub const MAX_JSON_DEPTH: usize = 32;
/// Most fields one event may change.
pub const MAX_CHANGED_FIELDS: usize = 1000;
/// The tenant of an event that names none.
pub const DEFAULT_TENANT: &str = "default";

/// Checks an identifier: 1 to 128 characters of `A-Z a-z 0-9 . _ : -`.
fn identifier(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_ID_CHARS {
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

/// Checks free text: not blank, at most `max` characters, no control characters.
fn text(value: &str, max: usize) -> Result<(), String> {
    // One pass over the characters (most text is short ASCII, checked byte by byte).
    let mut chars = 0usize;
    let mut blank = true;
    let mut control = false;
    if value.is_ascii() {
        chars = value.len();
        for b in value.bytes() {
            blank &= (b as char).is_whitespace();
            control |= b.is_ascii_control();
        }
    } else {
        for c in value.chars() {
            chars += 1;
            blank &= c.is_whitespace();
            control |= c.is_control();
        }
    }
    if blank {
        return Err("must not be blank".into());
    }
    if chars > max {
        return Err(format!("must be at most {max} characters"));
    }
    if control {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

macro_rules! string_type {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks the value, answering the reason it is refused.
            pub fn parse(value: impl Into<String>) -> Result<Self, String> {
                let value = value.into();
                Self::check(&value)?;
                Ok(Self(value))
            }

            /// The rule [`Self::parse`] applies, without taking the value.
            pub fn check(value: &str) -> Result<(), String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                Self::parse(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(value: &str) -> Result<Self, String> {
                Self::parse(value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::parse(value).map_err(|why| {
                    serde::de::Error::custom(format_args!("{} {why}", stringify!($name)))
                })
            }
        }
    };
}

string_type!(
    /// An event's id: the client's idempotency key, or a UUIDv7 assigned at ingest.
    EventId,
    identifier
);
string_type!(
    /// A tenant: the owner of a set of events.
    TenantId,
    identifier
);
string_type!(
    /// Who did it, e.g. `user_123`.
    ActorId,
    |v| text(v, MAX_TEXT_CHARS)
);
string_type!(
    /// What kind of actor, e.g. `user`, `service`, `system`.
    ActorType,
    |v| text(v, MAX_ACTOR_TYPE_CHARS)
);
string_type!(
    /// What was done, e.g. `billing_update`.
    Action,
    |v| text(v, MAX_TEXT_CHARS)
);
string_type!(
    /// The kind of resource, e.g. `invoice`.
    ResourceType,
    |v| text(v, MAX_TEXT_CHARS)
);
string_type!(
    /// The resource, e.g. `inv_999`.
    ResourceId,
    |v| text(v, MAX_TEXT_CHARS)
);
string_type!(
    /// The name of a changed field.
    FieldName,
    |v| text(v, MAX_TEXT_CHARS)
);

/// Longest `Idempotency-Key` header value.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

string_type!(
    /// A request's `Idempotency-Key`: 1 to 255 visible ASCII characters (no spaces).
    IdempotencyKey,
    |v| {
        if v.is_empty() || v.len() > MAX_IDEMPOTENCY_KEY_CHARS {
            return Err(format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"));
        }
        if !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("may only contain visible ASCII characters (no spaces)".into());
        }
        Ok(())
    }
);

impl EventId {
    /// The id of the event at `position` (from 0) of a request sent with `key`: a UUID
    /// (version 8) made of the first 16 bytes of SHA-256 over the tenant, the key and the
    /// position, each length-prefixed. The same request sent again gets the same ids; other
    /// tenants, keys and positions get others.
    pub fn derived(tenant: &TenantId, key: &IdempotencyKey, position: usize) -> Self {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(b"sentinel idempotency-key v1");
        for part in [tenant.as_str(), key.as_str(), &position.to_string()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        let id = uuid::Builder::from_custom_bytes(bytes).into_uuid();
        Self(id.hyphenated().to_string())
    }
}

impl TenantId {
    /// The tenant of events that name none.
    pub fn default_tenant() -> Self {
        Self(DEFAULT_TENANT.to_string())
    }
}

/// An instant as Sentinel stores it: UTC, from 1970-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999999Z, with at most microsecond precision (what PostgreSQL keeps),
/// and never a leap second (PostgreSQL would move `23:59:60` into the next minute, and so
/// possibly the next month's partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

/// The latest instant a [`Timestamp`] may hold.
pub const MAX_TIMESTAMP_MICROS: i64 = 253_402_300_799_999_999;

impl Timestamp {
    /// Checks an instant against the rules above. Nothing is rounded: an instant with
    /// nanoseconds is refused, not truncated.
    pub fn new(at: DateTime<Utc>) -> Result<Self, String> {
        if at.nanosecond() >= 1_000_000_000 {
            return Err("must not be a leap second (:60)".into());
        }
        if at < DateTime::UNIX_EPOCH {
            return Err("must not be before 1970-01-01T00:00:00Z".into());
        }
        if at.timestamp_micros() > MAX_TIMESTAMP_MICROS {
            return Err("must not be after 9999-12-31T23:59:59.999999Z".into());
        }
        if at.trunc_subsecs(6) != at {
            return Err("must have at most microsecond precision (6 fractional digits)".into());
        }
        Ok(Self(at))
    }

    /// Parses RFC 3339 text (any offset; kept as UTC).
    pub fn parse(text: &str) -> Result<Self, String> {
        let at = DateTime::parse_from_rfc3339(text)
            .map_err(|_| "must be an RFC 3339 timestamp, e.g. 2026-01-31T23:59:59Z".to_string())?;
        Self::new(at.with_timezone(&Utc))
    }

    /// Now, to the microsecond.
    pub fn now() -> Self {
        Self::truncating(Utc::now())
    }

    /// An instant the clock gave: truncated to the microsecond, which is the only change
    /// allowed, because no client wrote it.
    pub fn truncating(at: DateTime<Utc>) -> Self {
        let at = at.trunc_subsecs(6);
        Self::new(at).unwrap_or_else(|why| panic!("the clock gave {at:?}, which {why}"))
    }

    /// From microseconds since the epoch (PostgreSQL's own precision).
    pub fn from_micros(micros: i64) -> Option<Self> {
        DateTime::from_timestamp_micros(micros).and_then(|at| Self::new(at).ok())
    }

    pub fn get(self) -> DateTime<Utc> {
        self.0
    }

    pub fn micros(self) -> i64 {
        self.0.timestamp_micros()
    }

    /// The canonical text: RFC 3339, UTC, exactly six fractional digits, `Z`.
    pub fn to_canonical(self) -> String {
        String::from_utf8(self.canonical_bytes().to_vec()).expect("ASCII digits")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical())
    }
}

impl Deref for Timestamp {
    type Target = DateTime<Utc>;
    fn deref(&self) -> &DateTime<Utc> {
        &self.0
    }
}

impl PartialEq<DateTime<Utc>> for Timestamp {
    fn eq(&self, other: &DateTime<Utc>) -> bool {
        self.0 == *other
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(at: Timestamp) -> Self {
        at.0
    }
}

impl Timestamp {
    /// The canonical text in a fixed 27-byte buffer: `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Every
    /// `Timestamp` has a four-digit year and no leap second, so the width never changes.
    fn canonical_bytes(self) -> [u8; 27] {
        fn put(buf: &mut [u8], mut value: u32) {
            for slot in buf.iter_mut().rev() {
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        let at = self.0;
        let date = at.date_naive();
        let time = at.time();
        let mut buf = *b"0000-00-00T00:00:00.000000Z";
        put(&mut buf[0..4], date.year() as u32);
        put(&mut buf[5..7], date.month());
        put(&mut buf[8..10], date.day());
        put(&mut buf[11..13], time.hour());
        put(&mut buf[14..16], time.minute());
        put(&mut buf[17..19], time.second());
        put(&mut buf[20..26], time.nanosecond() / 1_000);
        buf
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.canonical_bytes();
        serializer.serialize_str(std::str::from_utf8(&bytes).expect("ASCII digits"))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(|why| serde::de::Error::custom(format_args!("time {why}")))
    }
}

/// Checks nesting depth (`depth` is the level of `value`), that no string or key holds
/// NUL, which PostgreSQL's jsonb refuses, and that no number is negative zero, which jsonb
/// would keep as `0` (its numeric type has no signed zero): stored, it would read back as
/// another value.
pub(crate) fn check_json(value: &Value, depth: usize) -> Result<(), String> {
    if depth > MAX_JSON_DEPTH {
        return Err(format!("is nested deeper than {MAX_JSON_DEPTH} levels"));
    }
    match value {
        Value::String(text) if text.contains('\0') => {
            Err("must not contain NUL (\\u0000) characters".into())
        }
        Value::Number(number)
            if number
                .as_f64()
                .is_some_and(|f| f == 0.0 && f.is_sign_negative()) =>
        {
            Err("must not be negative zero (-0), which PostgreSQL cannot keep; send 0".into())
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

/// One field's change: the value before and after (either may be `null`).
pub type Change = (Value, Value);

/// What an event changed, in the stored form `{"field": {"before": x, "after": y}}`, at most
/// [`MAX_CHANGED_FIELDS`] fields, each named by a [`FieldName`].
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct Changes(Map<String, Value>);

impl Changes {
    /// From the client's form: each field is `{"before": x, "after": y}` (either side may be
    /// left out and means `null`), or a bare value that means the new value. Errors are keyed
    /// by field name.
    pub fn normalize(changes: Map<String, Value>) -> Result<Self, Vec<(String, String)>> {
        Self::build(changes, |value| {
            if is_change_form(&value) {
                let Value::Object(mut pair) = value else {
                    unreachable!("is_change_form checked it")
                };
                Ok(pair_value(
                    pair.remove("before").unwrap_or(Value::Null),
                    pair.remove("after").unwrap_or(Value::Null),
                ))
            } else {
                Ok(pair_value(Value::Null, value))
            }
        })
    }

    /// From the stored form: every field must already be exactly `{"before", "after"}`.
    /// Checked in place: the map is kept as it is, not rebuilt.
    pub fn parse_stored(changes: Map<String, Value>) -> Result<Self, Vec<(String, String)>> {
        check_field_count(changes.len())?;
        let errors: Vec<(String, String)> = changes
            .iter()
            .filter_map(|(name, value)| {
                check_field(name, value, |value| match value {
                    Value::Object(pair)
                        if pair.len() == 2
                            && pair.contains_key("before")
                            && pair.contains_key("after") =>
                    {
                        Ok(())
                    }
                    _ => Err("must be in the stored {\"before\", \"after\"} form".into()),
                })
                .err()
                .map(|why| (name.clone(), why))
            })
            .collect();
        if errors.is_empty() {
            Ok(Self(changes))
        } else {
            Err(errors)
        }
    }

    fn build(
        changes: Map<String, Value>,
        mut shape: impl FnMut(Value) -> Result<Value, String>,
    ) -> Result<Self, Vec<(String, String)>> {
        check_field_count(changes.len())?;
        let mut errors = Vec::new();
        let mut normalized = Map::new();
        for (name, value) in changes {
            let result = shape(value)
                .and_then(|change| check_field(&name, &change, |_| Ok(())).map(|()| change));
            match result {
                Ok(change) => {
                    normalized.insert(name, change);
                }
                Err(why) => errors.push((name, why)),
            }
        }
        if errors.is_empty() {
            Ok(Self(normalized))
        } else {
            Err(errors)
        }
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Each changed field with its before and after.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value, &Value)> {
        self.0.iter().map(|(name, pair)| {
            (
                name.as_str(),
                pair.get("before").unwrap_or(&Value::Null),
                pair.get("after").unwrap_or(&Value::Null),
            )
        })
    }
}

impl Deref for Changes {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl Deref for Metadata {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Map<String, Value> {
        &self.0
    }
}

fn check_field_count(fields: usize) -> Result<(), Vec<(String, String)>> {
    if fields > MAX_CHANGED_FIELDS {
        return Err(vec![(
            String::new(),
            format!("changes {fields} fields; at most {MAX_CHANGED_FIELDS} are allowed"),
        )]);
    }
    Ok(())
}

/// The rules every changed field meets in its stored form, so ingest and the writer apply
/// the same limits: the name is a [`FieldName`], the pair has the `shape`, and the values
/// pass [`check_json`].
fn check_field(
    name: &str,
    change: &Value,
    shape: impl FnOnce(&Value) -> Result<(), String>,
) -> Result<(), String> {
    FieldName::check(name).map_err(|why| format!("field name {why}"))?;
    shape(change)?;
    check_json(change, 2)
}

fn pair_value(before: Value, after: Value) -> Value {
    let mut pair = Map::new();
    pair.insert("before".into(), before);
    pair.insert("after".into(), after);
    Value::Object(pair)
}

fn is_change_form(value: &Value) -> bool {
    matches!(value, Value::Object(map)
        if !map.is_empty() && map.keys().all(|k| k == "before" || k == "after"))
}

impl<'de> Deserialize<'de> for Changes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::deserialize(deserializer)?;
        Self::parse_stored(map).map_err(|errors| {
            let (name, why) = &errors[0];
            serde::de::Error::custom(format_args!("changes.{} {why}", printable(name)))
        })
    }
}

/// Free-form context of an event (`ip`, `user_agent`, …): a JSON object, nested at most
/// [`MAX_JSON_DEPTH`] levels into the event, with no NUL anywhere.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct Metadata(Map<String, Value>);

impl Metadata {
    pub fn parse(metadata: Map<String, Value>) -> Result<Self, String> {
        metadata
            .iter()
            .try_for_each(|(key, value)| {
                if key.contains('\0') {
                    Err("must not contain NUL (\\u0000) characters in keys".to_string())
                } else {
                    check_json(value, 2)
                }
            })
            .map(|()| Self(metadata))
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::deserialize(deserializer)?;
        Self::parse(map).map_err(|why| serde::de::Error::custom(format_args!("metadata {why}")))
    }
}

/// Keeps hostile keys from bloating or garbling an error message.
pub fn printable(key: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_follow_one_rule() {
        assert!(EventId::parse("order-42:v1.x_y").is_ok());
        assert!(EventId::parse("").is_err());
        assert!(EventId::parse("a".repeat(129)).is_err());
        assert!(EventId::parse("a b").is_err());
        assert!(TenantId::parse("ünïcode").is_err());
        assert_eq!(TenantId::default_tenant(), "default");
    }

    #[test]
    fn text_is_bounded_and_printable() {
        assert!(Action::parse("billing_update").is_ok());
        assert!(Action::parse("  ").is_err());
        assert!(Action::parse("a\u{7}b").is_err());
        assert!(Action::parse("é".repeat(256)).is_ok());
        assert!(Action::parse("é".repeat(257)).is_err());
        assert!(ActorType::parse("x".repeat(65)).is_err());
    }

    #[test]
    fn a_newtype_deserializes_only_through_its_parser() {
        let error = serde_json::from_value::<EventId>(json!("no spaces")).unwrap_err();
        assert!(
            error.to_string().contains("EventId may only contain"),
            "{error}"
        );
        let id: EventId = serde_json::from_value(json!("ok-1")).unwrap();
        assert_eq!(serde_json::to_value(&id).unwrap(), json!("ok-1"));
    }

    #[test]
    fn a_leap_second_is_refused_not_moved() {
        let error = Timestamp::parse("2026-01-31T23:59:60Z").unwrap_err();
        assert!(error.contains("leap second"), "{error}");
        let error = Timestamp::parse("2026-06-30T23:59:60.5+00:00").unwrap_err();
        assert!(error.contains("leap second"), "{error}");
    }

    #[test]
    fn times_outside_the_stored_range_or_precision_are_refused() {
        assert!(Timestamp::parse("1969-12-31T23:59:59.999999Z").is_err());
        assert!(Timestamp::parse("1970-01-01T00:00:00Z").is_ok());
        assert!(Timestamp::parse("9999-12-31T23:59:59.999999Z").is_ok());
        assert!(Timestamp::parse("9999-12-31T23:59:59.999999-01:00").is_err());
        let error = Timestamp::parse("2026-01-01T00:00:00.1234567Z").unwrap_err();
        assert!(error.contains("microsecond"), "{error}");
        assert!(Timestamp::parse("2026-01-01T00:00:00.123456000Z").is_ok());
    }

    #[test]
    fn timestamps_have_one_canonical_text() {
        let at = Timestamp::parse("2026-01-31T18:59:59.5-05:00").unwrap();
        assert_eq!(at.to_canonical(), "2026-01-31T23:59:59.500000Z");
        assert_eq!(
            serde_json::to_string(&at).unwrap(),
            "\"2026-01-31T23:59:59.500000Z\""
        );
        let back: Timestamp = serde_json::from_str("\"2026-01-31T23:59:59.500000Z\"").unwrap();
        assert_eq!(back, at);
    }

    #[test]
    fn the_canonical_text_matches_rfc3339_at_every_width_boundary() {
        let instants = [
            "1970-01-01T00:00:00Z",
            "1999-12-31T23:59:59.999999Z",
            "2026-02-28T09:05:07.000001Z",
            "2024-02-29T12:00:00.5Z",
            "9999-12-31T23:59:59.999999Z",
        ];
        for text in instants {
            let at = Timestamp::parse(text).unwrap();
            assert_eq!(
                at.to_canonical(),
                at.get()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "{text}"
            );
        }
        let mut micros = 0i64;
        while micros < MAX_TIMESTAMP_MICROS {
            let at = Timestamp::from_micros(micros).unwrap();
            assert_eq!(
                serde_json::to_string(&at).unwrap(),
                format!("\"{}\"", at.get().format("%Y-%m-%dT%H:%M:%S%.6fZ"))
            );
            micros += 7_919_876_543_211;
        }
    }

    #[test]
    fn text_rules_treat_ascii_and_unicode_alike() {
        assert_eq!(Action::check(" \t "), Err("must not be blank".into()));
        assert_eq!(Action::check("\u{b}"), Err("must not be blank".into()));
        assert_eq!(Action::check("\u{3000}"), Err("must not be blank".into()));
        assert_eq!(
            Action::check("a\u{85}b"),
            Err("must not contain control characters".into())
        );
        assert_eq!(
            Action::check("a\u{1f}"),
            Err("must not contain control characters".into())
        );
        assert!(Action::check(&"x".repeat(256)).is_ok());
        assert!(Action::check(&"x".repeat(257)).is_err());
    }

    #[test]
    fn stored_changes_are_kept_exactly_when_valid_and_named_when_not() {
        let map = json!({"b": {"before": 1, "after": 2}, "a": {"before": null, "after": [3]}});
        let changes = Changes::parse_stored(map.as_object().unwrap().clone()).unwrap();
        assert_eq!(changes.as_map(), map.as_object().unwrap());
        let bad = json!({"ok": {"before": 1, "after": 2}, " ": {"before": 1, "after": 2},
                         "x": {"before": "a\u{0}", "after": 1}});
        let errors = Changes::parse_stored(bad.as_object().unwrap().clone()).unwrap_err();
        let names: Vec<&str> = errors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [" ", "x"]);
        assert!(errors[0].1.starts_with("field name"), "{errors:?}");
        assert!(errors[1].1.contains("NUL"), "{errors:?}");
    }

    #[test]
    fn changes_normalize_bare_values_and_half_pairs() {
        let map = json!({"a": 1, "b": {"after": 2}, "c": {"before": 3, "after": 4}});
        let changes = Changes::normalize(map.as_object().unwrap().clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&changes).unwrap(),
            json!({
                "a": {"before": null, "after": 1},
                "b": {"before": null, "after": 2},
                "c": {"before": 3, "after": 4},
            })
        );
    }

    #[test]
    fn stored_changes_must_already_be_normalized() {
        let error = serde_json::from_value::<Changes>(json!({"status": "paid"})).unwrap_err();
        assert!(error.to_string().contains("changes.status"), "{error}");
        let error =
            serde_json::from_value::<Changes>(json!({"s": {"before": 1, "after": 2, "x": 3}}))
                .unwrap_err();
        assert!(error.to_string().contains("stored"), "{error}");
    }

    #[test]
    fn nul_and_deep_nesting_are_refused_in_metadata() {
        assert!(Metadata::parse(json!({"k": "a\u{0}b"}).as_object().unwrap().clone()).is_err());
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!([deep]);
        }
        assert!(Metadata::parse(json!({"k": deep}).as_object().unwrap().clone()).is_err());
    }
}
