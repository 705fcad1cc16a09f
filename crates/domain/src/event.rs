//! The audit event as Sentinel stores it, and its canonical encoding.
//!
//! # Canonical encoding
//!
//! An event has exactly one byte form, used on the stream and, later, hashed into the
//! tenant's log: compact JSON (no whitespace) of the stream envelope `{"v":1,"event":{…}}`
//! with the event's members in this order: `id`, `tenant_id`, `occurred_at`, `received_at`,
//! `actor_id`, `actor_type` (left out when absent), `action`, `resource_type`,
//! `resource_id`, `changes`, `metadata`. Object keys inside `changes` and `metadata` are
//! sorted by their UTF-8 bytes; times are RFC 3339 in UTC with exactly six fractional digits
//! and `Z`; strings escape only `"`, `\` and control characters (as serde_json does);
//! integers are plain decimals and other numbers take the shortest form that reads back as
//! the same binary64 value. Decoding refuses every record that is not in this form, so
//! `encode(decode(bytes)) == bytes` for every record that decodes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fields::{
    Action, ActorId, ActorType, Changes, EventId, Metadata, ResourceId, ResourceType, TenantId,
    Timestamp,
};

/// Version of the stream record envelope written by ingest and read by the writer.
pub const STREAM_SCHEMA_VERSION: u32 = 1;
/// Largest single event once encoded (Kinesis takes 1 MiB per record).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// How far past the time of receipt `occurred_at` may lie (client clock skew).
pub const MAX_FUTURE_SKEW_SECONDS: i64 = 300;

/// A validated, normalized audit event: what ingest puts on the stream and the writer stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EventParts")]
pub struct AuditEvent {
    pub id: EventId,
    pub tenant_id: TenantId,
    pub occurred_at: Timestamp,
    pub received_at: Timestamp,
    pub actor_id: ActorId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_type: Option<ActorType>,
    pub action: Action,
    pub resource_type: ResourceType,
    pub resource_id: ResourceId,
    pub changes: Changes,
    pub metadata: Metadata,
}

/// The fields as they decode, before the rules that relate them are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventParts {
    id: EventId,
    tenant_id: TenantId,
    occurred_at: Timestamp,
    received_at: Timestamp,
    actor_id: ActorId,
    #[serde(default)]
    actor_type: Option<ActorType>,
    action: Action,
    resource_type: ResourceType,
    resource_id: ResourceId,
    changes: Changes,
    metadata: Metadata,
}

impl TryFrom<EventParts> for AuditEvent {
    type Error = String;

    fn try_from(parts: EventParts) -> Result<Self, String> {
        check_occurred_at(parts.occurred_at, parts.received_at)
            .map_err(|why| format!("occurred_at {why}"))?;
        Ok(Self {
            id: parts.id,
            tenant_id: parts.tenant_id,
            occurred_at: parts.occurred_at,
            received_at: parts.received_at,
            actor_id: parts.actor_id,
            actor_type: parts.actor_type,
            action: parts.action,
            resource_type: parts.resource_type,
            resource_id: parts.resource_id,
            changes: parts.changes,
            metadata: parts.metadata,
        })
    }
}

/// The rule between the two times: an event may not claim to have happened more than
/// [`MAX_FUTURE_SKEW_SECONDS`] after Sentinel received it.
pub fn check_occurred_at(occurred_at: Timestamp, received_at: Timestamp) -> Result<(), String> {
    if occurred_at.micros() > received_at.micros() + MAX_FUTURE_SKEW_SECONDS * 1_000_000 {
        return Err(format!(
            "must not be more than {MAX_FUTURE_SKEW_SECONDS} seconds in the future"
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    v: u32,
    event: &'a AuditEvent,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    v: u32,
    event: AuditEvent,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

/// Why a stream record could not be turned back into an event.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("record is not a JSON stream envelope: {0}")]
    Malformed(String),
    #[error("unsupported stream schema version {0} (expected {STREAM_SCHEMA_VERSION})")]
    UnsupportedVersion(u32),
    #[error("record is {0} bytes; an event encodes to at most {MAX_EVENT_BYTES}")]
    TooLarge(usize),
    #[error("event violates the contract: {0}")]
    Invalid(String),
    #[error(
        "record is not in the canonical encoding (re-encoding it gives other bytes: \
         duplicate keys, numbers that do not survive, or another spelling)"
    )]
    NotCanonical,
}

impl AuditEvent {
    /// The Kinesis partition key: one resource's events share a shard, so they stay in order.
    pub fn partition_key(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.tenant_id.as_str(),
            self.resource_type.as_str(),
            self.resource_id.as_str(),
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// The event's leaf in its tenant's Merkle log (RFC 6962): SHA-256 of `0x00` and the
    /// canonical encoding.
    pub fn leaf_hash(&self) -> crate::merkle::Hash {
        crate::merkle::Hash::leaf(&self.encode())
    }

    /// The canonical encoding: the versioned stream record (see the module's docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(512);
        self.encode_into(&mut bytes);
        bytes
    }

    /// Appends the canonical encoding to `bytes`.
    pub fn encode_into(&self, bytes: &mut Vec<u8>) {
        serde_json::to_writer(
            &mut *bytes,
            &EnvelopeRef {
                v: STREAM_SCHEMA_VERSION,
                event: self,
            },
        )
        .expect("an AuditEvent always serializes");
    }

    /// Decodes a stream record, applying every rule of the ingest contract: the fields'
    /// rules (through their types), the future-time rule, the size limit, and the canonical
    /// form. Anything that fails here can never be stored.
    ///
    /// The canonical form is checked by re-encoding the event and comparing: an event is
    /// answered only if `data` is, byte for byte, its canonical encoding, which
    /// [`HashedEvent::decode`] relies on.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        if data.len() > MAX_EVENT_BYTES {
            return Err(DecodeError::TooLarge(data.len()));
        }
        // One UTF-8 check for the whole record, so the parser need not check each string;
        // invalid UTF-8 goes through `from_slice` for the same error as before.
        let parsed = match std::str::from_utf8(data) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(data),
        };
        let envelope: Envelope = match parsed {
            Ok(envelope) => envelope,
            Err(error) => {
                return Err(match serde_json::from_slice::<VersionOnly>(data) {
                    Ok(VersionOnly { v }) if v != STREAM_SCHEMA_VERSION => {
                        DecodeError::UnsupportedVersion(v)
                    }
                    Ok(_) if error.is_data() => DecodeError::Invalid(error.to_string()),
                    _ => DecodeError::Malformed(error.to_string()),
                })
            }
        };
        if envelope.v != STREAM_SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedVersion(envelope.v));
        }
        let mut again = Vec::with_capacity(data.len());
        envelope.event.encode_into(&mut again);
        if again != data {
            return Err(DecodeError::NotCanonical);
        }
        Ok(envelope.event)
    }
}

/// An event and its leaf hash in its tenant's log, made together so that the hash is always
/// SHA-256 of `0x00` and the event's canonical encoding ([`AuditEvent::leaf_hash`]): the
/// fields are private, and the event can be read but not changed.
///
/// The writer decodes its records into these: [`HashedEvent::decode`] hashes the record's
/// own bytes, which decoding proves are the canonical encoding, instead of encoding the
/// event a second time (once to check the record, once to hash it).
#[derive(Debug, Clone, PartialEq)]
pub struct HashedEvent {
    event: AuditEvent,
    leaf: crate::merkle::Hash,
}

impl HashedEvent {
    /// Hashes the event's canonical encoding (encodes it).
    pub fn new(event: AuditEvent) -> Self {
        let leaf = event.leaf_hash();
        Self { event, leaf }
    }

    /// Decodes a stream record as [`AuditEvent::decode`] does, and hashes the record itself.
    /// `AuditEvent::decode` answers an event only when the record is byte for byte that
    /// event's canonical encoding (it re-encodes and compares), so `data` is exactly what
    /// [`AuditEvent::leaf_hash`] would encode and hash; a record in any other form (other
    /// spacing, key order or spelling) is refused there, and gets no leaf at all.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let event = AuditEvent::decode(data)?;
        // Test builds check the premise again; release builds rely on `decode`'s check.
        debug_assert_eq!(
            event.encode(),
            data,
            "decode answered a non-canonical record"
        );
        Ok(Self {
            leaf: crate::merkle::Hash::leaf(data),
            event,
        })
    }

    pub fn event(&self) -> &AuditEvent {
        &self.event
    }

    /// The event's leaf: SHA-256 of `0x00` and its canonical encoding.
    pub fn leaf_hash(&self) -> crate::merkle::Hash {
        self.leaf
    }

    pub fn into_event(self) -> AuditEvent {
        self.event
    }
}

impl From<AuditEvent> for HashedEvent {
    fn from(event: AuditEvent) -> Self {
        Self::new(event)
    }
}

impl std::ops::Deref for HashedEvent {
    type Target = AuditEvent;

    fn deref(&self) -> &AuditEvent {
        &self.event
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    pub(crate) fn sample() -> AuditEvent {
        AuditEvent {
            id: "evt-1".parse().unwrap(),
            tenant_id: "default".parse().unwrap(),
            occurred_at: Timestamp::parse("2026-01-31T23:59:59Z").unwrap(),
            received_at: Timestamp::parse("2026-02-01T00:00:01Z").unwrap(),
            actor_id: "user_123".parse().unwrap(),
            actor_type: Some("user".parse().unwrap()),
            action: "billing_update".parse().unwrap(),
            resource_type: "invoice".parse().unwrap(),
            resource_id: "inv_999".parse().unwrap(),
            changes: Changes::parse_stored(
                json!({"status": {"before": "pending", "after": "paid"}, "amount": {"before": 1.5, "after": 18446744073709551615u64}})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .unwrap(),
            metadata: Metadata::parse(
                json!({"z": [1, -2, 0.1, 1e300, null, true], "a": {"é": "\u{1F9FE}\"q\"\n", "b": {}}})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .unwrap(),
        }
    }

    fn reencoded(value: &Value) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    #[test]
    fn an_encoded_event_decodes_to_the_same_event() {
        let event = sample();
        assert_eq!(AuditEvent::decode(&event.encode()).unwrap(), event);
    }

    #[test]
    fn the_encoding_is_stable_across_decode_encode_round_trips() {
        let first = sample().encode();
        let mut bytes = first.clone();
        for _ in 0..3 {
            bytes = AuditEvent::decode(&bytes).unwrap().encode();
            assert_eq!(bytes, first);
        }
    }

    #[test]
    fn the_canonical_form_is_exactly_as_documented() {
        let mut event = sample();
        event.actor_type = None;
        event.changes = Changes::default();
        event.metadata =
            Metadata::parse(json!({"b": 1, "a": 0.5}).as_object().unwrap().clone()).unwrap();
        assert_eq!(
            String::from_utf8(event.encode()).unwrap(),
            r#"{"v":1,"event":{"id":"evt-1","tenant_id":"default","occurred_at":"2026-01-31T23:59:59.000000Z","received_at":"2026-02-01T00:00:01.000000Z","actor_id":"user_123","action":"billing_update","resource_type":"invoice","resource_id":"inv_999","changes":{},"metadata":{"a":0.5,"b":1}}}"#
        );
    }

    #[test]
    fn the_leaf_hash_is_sha_256_of_0x00_and_the_canonical_record() {
        let event = sample();
        let mut prefixed = vec![0u8];
        prefixed.extend(event.encode());

        let leaf = event.leaf_hash();

        assert_eq!(
            leaf.as_bytes(),
            &<[u8; 32]>::from(Sha256::digest(&prefixed))
        );
        assert_ne!(
            leaf.as_bytes(),
            &<[u8; 32]>::from(Sha256::digest(event.encode()))
        );
    }

    /// Events of the shapes the writer meets: every optional part present or absent, text
    /// that needs escaping, numbers at the edges of what survives, nested metadata.
    fn varied() -> Vec<AuditEvent> {
        let mut events = vec![sample()];
        let mut bare = sample();
        bare.actor_type = None;
        bare.changes = Changes::default();
        bare.metadata = Metadata::default();
        events.push(bare);
        let mut texts = sample();
        texts.id = "client.key:42-Z_9".parse().unwrap();
        texts.actor_id = "Zoë \"the admin\" \\ ünïcödé 🧾".parse().unwrap();
        texts.resource_id = "path/with spaces/and\ttab"
            .parse()
            .unwrap_or(texts.resource_id);
        texts.occurred_at = Timestamp::parse("2026-01-31T23:59:59.123456Z").unwrap();
        texts.metadata = Metadata::parse(
            json!({"ctrl": "\u{7}\u{1f}\r\n", "slash": "a/b", "emoji": "\u{1F600}", "nested": {"z": [], "a": [{"y": 1, "x": 0.5}]}, "big": 1.7976931348623157e308, "small": 5e-324, "neg": -9223372036854775808i64})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        events.push(texts);
        for i in 0..50 {
            let mut e = sample();
            e.id = format!("evt-{i}").parse().unwrap();
            e.tenant_id = format!("tenant-{}", i % 7).parse().unwrap();
            e.changes = Changes::parse_stored(
                json!({format!("field_{i}"): {"before": i, "after": i as f64 / 3.0}, "status": {"before": null, "after": "x".repeat(i)}})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .unwrap();
            events.push(e);
        }
        events
    }

    #[test]
    fn a_hashed_event_decoded_from_its_record_has_the_leaf_of_its_canonical_encoding() {
        for event in varied() {
            let record = event.encode();
            let decoded = HashedEvent::decode(&record).unwrap();
            assert_eq!(decoded.event(), &event);
            assert_eq!(decoded.leaf_hash(), event.leaf_hash(), "{event:?}");
            assert_eq!(
                decoded.leaf_hash(),
                HashedEvent::new(event.clone()).leaf_hash()
            );
            // The event that is stored is the decoded one: its own canonical leaf is the same.
            assert_eq!(decoded.leaf_hash(), decoded.event().leaf_hash());
        }
    }

    #[test]
    fn a_record_in_another_form_gets_no_leaf_from_its_bytes() {
        // Every other spelling of a valid event is refused by decode, so no leaf is ever
        // hashed from bytes that are not the canonical encoding of what is stored.
        for event in varied() {
            let canonical = event.encode();
            let text = String::from_utf8(canonical.clone()).unwrap();
            let value: Value = serde_json::from_slice(&canonical).unwrap();
            let mut others: Vec<Vec<u8>> = vec![
                serde_json::to_vec_pretty(&value).unwrap(),
                format!(" {text}").into_bytes(),
                format!("{text}\n").into_bytes(),
                text.replacen("\"v\":1,", "\"v\": 1,", 1).into_bytes(),
                text.replacen(",\"event\":", ", \"event\":", 1).into_bytes(),
                // The members in another order.
                text.replacen("{\"v\":1,\"event\":", "{\"event\":", 1)
                    .strip_suffix('}')
                    .map(|t| format!("{t},\"v\":1}}").into_bytes())
                    .unwrap(),
            ];
            let event_value = &value["event"];
            let reordered: Vec<String> = event_value
                .as_object()
                .unwrap()
                .iter()
                .rev()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
                .collect();
            others.push(format!("{{\"v\":1,\"event\":{{{}}}}}", reordered.join(",")).into_bytes());
            if let Some(metadata) = event_value["metadata"].as_object().filter(|m| m.len() > 1) {
                let reversed: Vec<String> = metadata
                    .iter()
                    .rev()
                    .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
                    .collect();
                let canonical_metadata = serde_json::to_string(metadata).unwrap();
                others.push(
                    text.replacen(
                        &canonical_metadata,
                        &format!("{{{}}}", reversed.join(",")),
                        1,
                    )
                    .into_bytes(),
                );
            }
            if text.contains('é') {
                others.push(text.replacen('é', "\\u00e9", 1).into_bytes());
            }
            for other in others {
                assert_ne!(other, canonical);
                // The same event, in other bytes: refused, not hashed.
                let same: Value = serde_json::from_slice(&other).unwrap();
                assert_eq!(same, value);
                assert_eq!(
                    HashedEvent::decode(&other),
                    Err(DecodeError::NotCanonical),
                    "{}",
                    String::from_utf8_lossy(&other)
                );
            }
        }
    }

    #[test]
    fn object_keys_are_sorted_whatever_order_they_were_built_in() {
        // Guards the canonical form against serde_json's `preserve_order` feature being
        // switched on somewhere in the build.
        let mut map = Map::new();
        map.insert("b".into(), json!(1));
        map.insert("a".into(), json!(2));
        assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn a_record_with_other_spacing_key_order_or_spelling_is_not_canonical() {
        let canonical: Value = serde_json::from_slice(&sample().encode()).unwrap();
        let pretty = serde_json::to_vec_pretty(&canonical).unwrap();
        assert_eq!(AuditEvent::decode(&pretty), Err(DecodeError::NotCanonical));
        let text = String::from_utf8(sample().encode()).unwrap();
        for (from, to) in [
            (".000000Z", "Z"),
            ("\"v\":1,", "\"v\":1.0,"),
            ("0.1", "0.10"),
            ("1e+300", "1.0e+300"),
        ] {
            assert!(text.contains(from), "{from} in {text}");
            let changed = text.replacen(from, to, 1);
            assert!(
                AuditEvent::decode(changed.as_bytes()).is_err(),
                "{from} -> {to} was accepted"
            );
        }
    }

    #[test]
    fn a_duplicate_key_on_the_stream_is_refused() {
        let text = String::from_utf8(sample().encode()).unwrap();
        let twice = text.replacen(
            "\"action\":\"billing_update\"",
            "\"action\":\"billing_update\",\"action\":\"other\"",
            1,
        );
        assert!(AuditEvent::decode(twice.as_bytes()).is_err());
        let twice = text.replacen("\"metadata\":{", "\"metadata\":{\"x\":1,\"x\":2,", 1);
        assert_eq!(
            AuditEvent::decode(twice.as_bytes()),
            Err(DecodeError::NotCanonical)
        );
    }

    #[test]
    fn a_number_that_does_not_survive_is_refused_on_the_stream() {
        let text = String::from_utf8(sample().encode()).unwrap();
        let lossy = text.replacen("18446744073709551615", "18446744073709551617", 1);
        assert_eq!(
            AuditEvent::decode(lossy.as_bytes()),
            Err(DecodeError::NotCanonical)
        );
    }

    #[test]
    fn a_record_from_a_future_schema_version_is_refused() {
        let mut value: Value = serde_json::from_slice(&sample().encode()).unwrap();
        value["v"] = json!(2);
        let err = AuditEvent::decode(&reencoded(&value)).unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedVersion(2));
    }

    #[test]
    fn a_record_that_is_not_utf8_is_malformed_even_inside_a_string() {
        let text = String::from_utf8(sample().encode()).unwrap();
        let mut bytes = text.replacen("user_123", "user_12\u{1}", 1).into_bytes();
        let at = bytes.iter().position(|&b| b == 1).unwrap();
        bytes[at] = 0xff;
        let err = AuditEvent::decode(&bytes).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn a_record_that_is_not_json_is_malformed() {
        let err = AuditEvent::decode(b"\xff\xfe not json").unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn a_record_with_an_unnormalized_change_is_invalid() {
        let mut value: Value = serde_json::from_slice(&sample().encode()).unwrap();
        value["event"]["changes"] = json!({"status": "paid"});
        let err = AuditEvent::decode(&reencoded(&value)).unwrap_err();
        assert!(matches!(err, DecodeError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn a_record_from_the_far_future_is_invalid_on_the_stream_too() {
        let mut value: Value = serde_json::from_slice(&sample().encode()).unwrap();
        value["event"]["occurred_at"] = json!("2027-02-01T00:00:00.000000Z");
        let err = AuditEvent::decode(&reencoded(&value)).unwrap_err();
        assert!(
            matches!(&err, DecodeError::Invalid(m) if m.contains("future")),
            "{err:?}"
        );
        let mut event = sample();
        event.occurred_at = Timestamp::parse("2026-02-01T00:05:01Z").unwrap();
        assert_eq!(AuditEvent::decode(&event.encode()), Ok(event));
    }

    #[test]
    fn a_leap_second_on_the_stream_is_invalid() {
        let mut value: Value = serde_json::from_slice(&sample().encode()).unwrap();
        value["event"]["occurred_at"] = json!("2026-01-31T23:59:60.000000Z");
        let err = AuditEvent::decode(&reencoded(&value)).unwrap_err();
        assert!(
            matches!(&err, DecodeError::Invalid(m) if m.contains("leap second")),
            "{err:?}"
        );
    }

    #[test]
    fn an_oversized_record_is_refused_before_it_is_parsed() {
        let mut value: Value = serde_json::from_slice(&sample().encode()).unwrap();
        value["event"]["metadata"] = json!({"blob": "x".repeat(MAX_EVENT_BYTES)});
        let bytes = reencoded(&value);
        assert_eq!(
            AuditEvent::decode(&bytes),
            Err(DecodeError::TooLarge(bytes.len()))
        );
    }

    #[test]
    fn a_record_with_an_unknown_field_is_invalid() {
        let mut value: Value = serde_json::from_slice(&sample().encode()).unwrap();
        value["event"]["extra"] = json!(1);
        assert!(AuditEvent::decode(&reencoded(&value)).is_err());
    }

    #[test]
    fn partition_keys_follow_the_resource_and_fit_kinesis() {
        let a = sample();
        let mut b = sample();
        b.id = "evt-2".parse().unwrap();
        b.actor_id = "someone_else".parse().unwrap();
        let mut c = sample();
        c.resource_id = "inv_1000".parse().unwrap();
        assert_eq!(a.partition_key(), b.partition_key());
        assert_ne!(a.partition_key(), c.partition_key());
        assert!(a.partition_key().len() <= 256);
    }

    #[test]
    fn partition_keys_do_not_collide_when_parts_shift() {
        let mut a = sample();
        a.resource_type = "ab".parse().unwrap();
        a.resource_id = "c".parse().unwrap();
        let mut b = sample();
        b.resource_type = "a".parse().unwrap();
        b.resource_id = "bc".parse().unwrap();
        assert_ne!(a.partition_key(), b.partition_key());
    }
}
