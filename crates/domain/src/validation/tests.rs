use super::*;
use chrono::TimeZone;
use serde_json::json;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("generated-{n}")
    }
}

fn valid() -> Value {
    json!({
        "actor_id": "user_123",
        "action": "billing_update",
        "resource_type": "invoice",
        "resource_id": "inv_999",
        "changes": {"status": {"before": "pending", "after": "paid"}, "amount": 500},
        "metadata": {"ip": "192.168.1.50"}
    })
}

fn parse(value: &Value) -> Result<Vec<AuditEvent>, IngestRejection> {
    parse_as("default", value)
}

fn parse_as(tenant: &str, value: &Value) -> Result<Vec<AuditEvent>, IngestRejection> {
    let tenant = TenantId::parse(tenant).unwrap();
    parse_request(&serde_json::to_vec(value).unwrap(), now(), &tenant, ids())
}

fn field_errors(value: &Value) -> FieldErrors {
    match parse(value) {
        Err(IngestRejection::Invalid(fields)) => fields,
        other => panic!("expected field errors, got {other:?}"),
    }
}

#[test]
fn a_single_event_gets_an_id_the_callers_tenant_and_the_time_of_receipt() {
    let events = parse(&valid()).unwrap();

    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.id, "generated-1");
    assert_eq!(event.tenant_id, "default");
    assert_eq!(event.occurred_at, now());
    assert_eq!(event.received_at, now());
    assert_eq!(event.actor_type, None);
    assert_eq!(event.metadata["ip"], "192.168.1.50");
}

#[test]
fn changes_are_normalized_to_before_and_after() {
    let mut body = valid();
    body["changes"] = json!({
        "status": {"before": "pending", "after": "paid"},
        "amount": 500,
        "note": {"after": "hi"},
        "owner": {"before": "alice"},
        "address": {"city": "Paris"},
        "tags": ["a"],
        "cleared": null
    });

    let changes = &parse(&body).unwrap()[0].changes;

    assert_eq!(
        changes["status"],
        json!({"before": "pending", "after": "paid"})
    );
    assert_eq!(changes["amount"], json!({"before": null, "after": 500}));
    assert_eq!(changes["note"], json!({"before": null, "after": "hi"}));
    assert_eq!(changes["owner"], json!({"before": "alice", "after": null}));
    assert_eq!(
        changes["address"],
        json!({"before": null, "after": {"city": "Paris"}})
    );
    assert_eq!(changes["tags"], json!({"before": null, "after": ["a"]}));
    assert_eq!(changes["cleared"], json!({"before": null, "after": null}));
}

#[test]
fn normalizing_twice_changes_nothing() {
    let once = parse(&valid()).unwrap().remove(0);
    let mut again = valid();
    again["changes"] = Value::Object(once.changes.as_map().clone());

    assert_eq!(parse(&again).unwrap()[0].changes, once.changes);
}

#[test]
fn a_client_id_and_tenant_and_time_are_kept() {
    let mut body = valid();
    body["id"] = json!("order-42:v1.2_x");
    body["tenant_id"] = json!("acme");
    body["occurred_at"] = json!("2026-01-31T23:59:59.999999Z");
    body["actor_type"] = json!("service");

    let event = parse_as("acme", &body).unwrap().remove(0);

    assert_eq!(event.id, "order-42:v1.2_x");
    assert_eq!(event.tenant_id, "acme");
    assert_eq!(
        event.occurred_at,
        Utc.with_ymd_and_hms(2026, 1, 31, 23, 59, 59).unwrap()
            + chrono::Duration::microseconds(999_999)
    );
    assert_eq!(event.actor_type.as_deref(), Some("service"));
}

#[test]
fn nanoseconds_are_refused_not_truncated() {
    let mut body = valid();
    body["occurred_at"] = json!("2026-01-31T23:59:59.9999999Z");

    let errors = field_errors(&body);

    assert!(errors["occurred_at"].contains("microsecond"), "{errors:?}");
}

#[test]
fn trailing_zero_nanoseconds_are_kept_as_the_same_instant() {
    let mut body = valid();
    body["occurred_at"] = json!("2026-01-31T23:59:59.999999000Z");

    let event = parse(&body).unwrap().remove(0);

    assert_eq!(event.occurred_at.timestamp_subsec_nanos(), 999_999_000);
}

#[test]
fn a_leap_second_is_refused_at_the_end_of_a_month() {
    // PostgreSQL would file 23:59:60 at 00:00:00 of the next month, outside the partition
    // the writer prepared (defect: it then retried forever and blocked the shard).
    for leap in [
        "2026-01-31T23:59:60Z",
        "2016-12-31T23:59:60.5+00:00",
        "2026-06-30T18:59:60-05:00",
    ] {
        let mut body = valid();
        body["occurred_at"] = json!(leap);

        let errors = field_errors(&body);

        assert!(
            errors["occurred_at"].contains("leap second"),
            "{leap}: {errors:?}"
        );
    }
}

#[test]
fn a_duplicate_key_is_refused_and_named() {
    let body = br#"{"actor_id": "u", "action": "a", "action": "b", "resource_type": "t", "resource_id": "r"}"#;

    let Err(IngestRejection::Invalid(errors)) =
        parse_request(body, now(), &TenantId::default_tenant(), ids())
    else {
        panic!("a duplicate key must be refused");
    };

    assert!(errors["action"].contains("duplicate key"), "{errors:?}");
}

#[test]
fn a_duplicate_key_deep_in_a_batch_is_named_with_its_path() {
    let body = br#"{"events": [{"actor_id": "u", "action": "a", "resource_type": "t", "resource_id": "r"},
        {"actor_id": "u", "action": "a", "resource_type": "t", "resource_id": "r", "metadata": {"ip": "1", "ip": "2"}}]}"#;

    let Err(IngestRejection::Invalid(errors)) =
        parse_request(body, now(), &TenantId::default_tenant(), ids())
    else {
        panic!("a duplicate key must be refused");
    };

    assert!(errors.contains_key("events[1].metadata.ip"), "{errors:?}");
}

#[test]
fn a_number_that_cannot_be_kept_exactly_is_refused_and_named() {
    for number in [
        "18446744073709551617",
        "-9223372036854775809",
        "0.30000000000000000001",
        "12345678901234567.5",
        "1e400",
    ] {
        let body = format!(
            r#"{{"actor_id": "u", "action": "a", "resource_type": "t", "resource_id": "r", "changes": {{"n": {number}}}}}"#
        );

        let Err(IngestRejection::Invalid(errors)) =
            parse_request(body.as_bytes(), now(), &TenantId::default_tenant(), ids())
        else {
            panic!("{number} must be refused");
        };

        assert!(
            errors["changes.n"].contains("send such values as strings"),
            "{number}: {errors:?}"
        );
    }
}

#[test]
fn numbers_that_survive_are_kept_with_their_value() {
    let body = br#"{"actor_id": "u", "action": "a", "resource_type": "t", "resource_id": "r",
        "changes": {"big": 18446744073709551615, "neg": -9223372036854775808, "f": 0.1, "e": 1e2},
        "metadata": {"pi": 3.141592653589793}}"#;

    let event = parse_request(body, now(), &TenantId::default_tenant(), ids())
        .unwrap()
        .remove(0);

    assert_eq!(
        event.changes["big"]["after"],
        json!(18446744073709551615u64)
    );
    assert_eq!(event.changes["neg"]["after"], json!(i64::MIN));
    assert_eq!(event.changes["f"]["after"], json!(0.1));
    assert_eq!(event.changes["e"]["after"], json!(100.0));
    assert_eq!(event.metadata["pi"], json!(std::f64::consts::PI));
}

#[test]
fn offsets_are_converted_to_utc() {
    let mut body = valid();
    body["occurred_at"] = json!("2026-02-01T01:00:00+02:00");

    let event = parse(&body).unwrap().remove(0);

    assert_eq!(
        event.occurred_at,
        Utc.with_ymd_and_hms(2026, 1, 31, 23, 0, 0).unwrap()
    );
}

#[test]
fn a_batch_is_parsed_in_order() {
    let mut second = valid();
    second["id"] = json!("b");
    let body = json!({"events": [valid(), second]});

    let events = parse(&body).unwrap();

    assert_eq!(
        events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["generated-1", "b"]
    );
}

#[test]
fn a_batch_with_one_bad_event_is_refused_whole_and_names_it() {
    let mut bad = valid();
    bad.as_object_mut().unwrap().remove("action");
    let body = json!({"events": [valid(), valid(), valid(), bad]});

    let errors = field_errors(&body);

    assert_eq!(errors.len(), 1);
    assert_eq!(errors["events[3].action"], "is required");
}

#[test]
fn missing_required_fields_are_each_named() {
    let errors = field_errors(&json!({}));

    for field in ["actor_id", "action", "resource_type", "resource_id"] {
        assert_eq!(errors[field], "is required", "{field}");
    }
}

#[test]
fn wrong_types_are_named_with_what_was_sent() {
    let body = json!({
        "id": 7,
        "tenant_id": ["a"],
        "occurred_at": 1700000000,
        "actor_id": {"id": 1},
        "action": true,
        "resource_type": "invoice",
        "resource_id": 999,
        "changes": "status=paid",
        "metadata": [1, 2]
    });

    let errors = field_errors(&body);

    assert_eq!(errors["id"], "must be a string, not a number");
    assert_eq!(errors["tenant_id"], "must be a string, not an array");
    assert_eq!(errors["occurred_at"], "must be a string, not a number");
    assert_eq!(errors["actor_id"], "must be a string, not an object");
    assert_eq!(errors["action"], "must be a string, not a boolean");
    assert_eq!(errors["resource_id"], "must be a string, not a number");
    assert_eq!(errors["changes"], "must be an object of changed fields");
    assert_eq!(errors["metadata"], "must be an object");
    assert!(!errors.contains_key("resource_type"));
}

#[test]
fn unknown_fields_are_refused_so_typos_are_caught() {
    let mut body = valid();
    body["acton"] = json!("x");

    assert_eq!(field_errors(&body)["acton"], "is not a recognized field");
}

#[test]
fn ids_outside_the_allowed_alphabet_or_length_are_refused() {
    for bad in [
        "",
        "has space",
        "semi;colon",
        "quote'",
        "ünï",
        &"x".repeat(129),
    ] {
        let mut body = valid();
        body["id"] = json!(bad);
        assert!(
            field_errors(&body).contains_key("id"),
            "{bad:?} was accepted"
        );
    }
    let mut body = valid();
    body["id"] = json!("x".repeat(128));
    assert!(parse(&body).is_ok());
}

#[test]
fn huge_strings_are_refused() {
    let mut body = valid();
    body["actor_id"] = json!("a".repeat(257));
    body["resource_id"] = json!("r".repeat(1_000_000));

    let errors = field_errors(&body);

    assert_eq!(errors["actor_id"], "must be at most 256 characters");
    assert_eq!(errors["resource_id"], "must be at most 256 characters");
}

#[test]
fn blank_strings_and_control_characters_are_refused() {
    let mut body = valid();
    body["actor_id"] = json!("   ");
    body["action"] = json!("drop\u{0007}table");
    body["resource_type"] = json!("line\nbreak");

    let errors = field_errors(&body);

    assert_eq!(errors["actor_id"], "must not be blank");
    assert_eq!(errors["action"], "must not contain control characters");
    assert_eq!(
        errors["resource_type"],
        "must not contain control characters"
    );
}

#[test]
fn nul_inside_changes_or_metadata_is_refused_because_jsonb_cannot_hold_it() {
    let mut body = valid();
    body["changes"] = json!({"status": {"after": "a\u{0000}b"}});
    let errors = field_errors(&body);
    assert!(errors["changes.status.after"].contains("NUL"), "{errors:?}");

    let mut body = valid();
    body["metadata"] = json!({"k\u{0000}": 1});
    let errors = field_errors(&body);
    assert!(errors.values().any(|m| m.contains("NUL")), "{errors:?}");

    let mut body = valid();
    body["action"] = json!("drop\u{0000}table");
    let errors = field_errors(&body);
    assert!(errors["action"].contains("NUL"), "{errors:?}");
}

#[test]
fn deep_nesting_inside_changes_is_refused() {
    let mut deep = json!("leaf");
    for _ in 0..40 {
        deep = json!({ "n": deep });
    }
    let mut body = valid();
    body["changes"] = json!({ "tree": deep.clone() });
    body["metadata"] = json!({ "tree": deep });

    let errors = field_errors(&body);

    assert!(errors["changes.tree"].contains("nested deeper"));
    assert!(errors["metadata"].contains("nested deeper"));
}

#[test]
fn nesting_beyond_the_json_parser_limit_is_refused_not_a_crash() {
    let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));

    let result = parse_request(body.as_bytes(), now(), &TenantId::default_tenant(), ids());

    let Err(IngestRejection::Invalid(errors)) = result else {
        panic!("{result:?}")
    };
    let (path, message) = errors.iter().next().unwrap();
    assert!(message.contains("nested deeper"), "{message}");
    assert!(path.chars().count() <= 200, "{path}");
}

#[test]
fn non_utf8_bodies_are_malformed() {
    let result = parse_request(
        b"{\"actor_id\": \"\xff\xfe\"}",
        now(),
        &TenantId::default_tenant(),
        ids(),
    );

    match result {
        Err(IngestRejection::Malformed(message)) => assert!(message.contains("UTF-8")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_and_empty_bodies_are_malformed() {
    for body in [&b"{"[..], b"", b"  ", b"not json", b"{\"a\":1}{}"] {
        assert!(
            matches!(
                parse_request(body, now(), &TenantId::default_tenant(), ids()),
                Err(IngestRejection::Malformed(_))
            ),
            "{body:?}"
        );
    }
}

#[test]
fn a_body_that_is_not_an_object_is_refused() {
    for body in [json!([valid()]), json!("event"), json!(42), json!(null)] {
        assert!(field_errors(&body).contains_key("body"), "{body}");
    }
}

#[test]
fn timestamps_far_in_the_future_or_before_1970_or_unparseable_are_refused() {
    for bad in [
        "2126-01-01T00:00:00Z",
        "2026-11-22T12:05:01Z",
        "1969-12-31T23:59:59Z",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-01-01 00:00:00",
    ] {
        let mut body = valid();
        body["occurred_at"] = json!(bad);
        assert!(
            field_errors(&body).contains_key("occurred_at"),
            "{bad} was accepted"
        );
    }
    let mut within_skew = valid();
    within_skew["occurred_at"] = json!("2026-11-22T12:04:59Z");
    assert!(parse(&within_skew).is_ok());
}

#[test]
fn five_hundred_events_are_accepted_and_501_are_refused() {
    let batch = |n: usize| json!({ "events": vec![valid(); n] });

    assert_eq!(parse(&batch(500)).unwrap().len(), 500);
    let errors = field_errors(&batch(501));
    assert_eq!(
        errors["events"],
        "holds 501 events; at most 500 are allowed"
    );
}

#[test]
fn an_empty_batch_or_a_batch_that_is_not_an_array_is_refused() {
    assert!(field_errors(&json!({"events": []})).contains_key("events"));
    assert!(field_errors(&json!({"events": {"a": 1}})).contains_key("events"));
    assert!(field_errors(&json!({"events": [valid()], "extra": 1})).contains_key("extra"));
    assert!(field_errors(&json!({"events": [1]})).contains_key("events[0]"));
}

#[test]
fn an_event_too_large_for_a_stream_record_is_refused() {
    let mut body = valid();
    let big: Map<String, Value> = (0..300)
        .map(|i| (format!("k{i}"), json!("v".repeat(1000))))
        .collect();
    body["metadata"] = Value::Object(big);

    let errors = field_errors(&body);

    assert!(
        errors["body"].contains("at most 262144 are allowed"),
        "{errors:?}"
    );
}

#[test]
fn a_body_over_the_limit_is_too_large() {
    let body = vec![b' '; MAX_BODY_BYTES + 1];

    assert_eq!(
        parse_request(&body, now(), &TenantId::default_tenant(), ids()),
        Err(IngestRejection::TooLarge)
    );
}

#[test]
fn error_reports_are_bounded() {
    let mut bad = valid();
    bad["action"] = json!(1);
    bad["actor_id"] = json!(1);
    let body = json!({ "events": vec![bad; 500] });

    assert_eq!(field_errors(&body).len(), MAX_REPORTED_ERRORS);
}

#[test]
fn hostile_field_names_are_made_printable_in_errors() {
    let mut body = valid();
    body[format!("\u{1b}[31m{}", "k".repeat(500))] = json!(1);

    let errors = field_errors(&body);

    let key = errors.keys().next().unwrap();
    assert!(!key.chars().any(char::is_control));
    assert!(key.chars().count() <= 65);
}

#[test]
fn a_parsed_event_passes_the_writers_decode() {
    let event = parse(&valid()).unwrap().remove(0);

    assert_eq!(AuditEvent::decode(&event.encode()), Ok(event));
}

#[test]
fn the_writers_decode_refuses_what_ingest_would_refuse() {
    let event = parse(&valid()).unwrap().remove(0);
    let canonical: Value = serde_json::from_slice(&event.encode()).unwrap();
    for (field, bad) in [
        ("action", json!("")),
        ("id", json!("bad id")),
        ("occurred_at", json!("2027-01-01T00:00:00.000000Z")),
        ("occurred_at", json!("2026-01-31T23:59:60.000000Z")),
        ("tenant_id", json!("x".repeat(129))),
        ("actor_id", json!("a\u{1}b")),
    ] {
        let mut record = canonical.clone();
        record["event"][field] = bad.clone();

        let result = AuditEvent::decode(&serde_json::to_vec(&record).unwrap());

        assert!(
            result.is_err(),
            "{field} = {bad} was accepted by the writer"
        );
    }
}

#[test]
fn an_event_naming_another_tenant_is_refused_and_named_not_rewritten() {
    let mut foreign = valid();
    foreign["tenant_id"] = json!("globex");
    let mut own = valid();
    own["tenant_id"] = json!("acme");
    let mut missing_action = valid();
    missing_action.as_object_mut().unwrap().remove("action");
    let body = json!({"events": [own, valid(), foreign, missing_action]});

    let result = parse_as("acme", &body);

    let Err(IngestRejection::ForeignTenant(fields)) = result else {
        panic!("expected a foreign tenant, got {result:?}")
    };
    assert_eq!(
        fields,
        FieldErrors::from([(
            "events[2].tenant_id".to_string(),
            "must be the caller's own tenant (or left out)".to_string()
        )])
    );
}

#[test]
fn events_that_name_no_tenant_get_the_callers() {
    let body = json!({"events": [valid(), valid()]});

    let events = parse_as("acme", &body).unwrap();

    assert!(events.iter().all(|e| e.tenant_id == "acme"));
}

#[test]
fn the_sentinel_action_namespace_is_reserved() {
    for action in [
        "sentinel.events.read",
        " Sentinel.insight.start",
        "SENTINEL.x",
    ] {
        let mut body = valid();
        body["action"] = json!(action);

        let errors = field_errors(&body);

        assert!(
            errors["action"].contains("Sentinel's own"),
            "{action}: {errors:?}"
        );
    }
    let mut body = valid();
    body["action"] = json!("sentinels_update");
    assert!(parse(&body).is_ok());
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).unwrap()
}

fn keyed(tenant: &str, idempotency_key: &str, value: &Value) -> Vec<String> {
    let tenant = TenantId::parse(tenant).unwrap();
    let key = key(idempotency_key);
    let ids = KeyedIds {
        tenant: &tenant,
        key: &key,
    };
    parse_request(&serde_json::to_vec(value).unwrap(), now(), &tenant, ids)
        .unwrap()
        .into_iter()
        .map(|event| event.id.into_string())
        .collect()
}

#[test]
fn a_request_sent_again_with_its_idempotency_key_gets_the_same_ids() {
    let batch = json!({"events": [valid(), valid(), valid()]});

    let first = keyed("acme", "order-42-retry-safe", &batch);
    let again = keyed("acme", "order-42-retry-safe", &batch);

    assert_eq!(first, again);
    assert_eq!(first.len(), 3);
    assert_ne!(first[0], first[1]);
    assert_ne!(first[1], first[2]);
}

#[test]
fn keyed_ids_differ_by_tenant_key_and_position() {
    let single = valid();

    let acme = keyed("acme", "k1", &single);
    let globex = keyed("globex", "k1", &single);
    let other_key = keyed("acme", "k2", &single);
    let second_position = keyed("acme", "k1", &json!({"events": [valid(), valid()]}));

    assert_ne!(acme, globex);
    assert_ne!(acme, other_key);
    assert_eq!(acme[0], second_position[0]);
    assert_ne!(acme[0], second_position[1]);
}

#[test]
fn a_keyed_id_is_a_version_8_uuid() {
    let id = EventId::derived(&TenantId::parse("acme").unwrap(), &key("k"), 7);

    let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
    assert_eq!(uuid.get_version_num(), 8);
    assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
    assert_eq!(uuid.hyphenated().to_string(), id.as_str());
}

#[test]
fn keyed_ids_do_not_run_together_across_the_parts_they_are_made_of() {
    // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    let a = EventId::derived(&TenantId::parse("ab").unwrap(), &key("c"), 0);
    let b = EventId::derived(&TenantId::parse("a").unwrap(), &key("bc"), 0);

    assert_ne!(a, b);
}

#[test]
fn an_event_that_brings_its_own_id_keeps_it_under_an_idempotency_key() {
    let mut own = valid();
    own["id"] = json!("client-chosen-1");

    let ids = keyed("acme", "k1", &json!({"events": [valid(), own, valid()]}));

    assert_eq!(ids[1], "client-chosen-1");
    let tenant = TenantId::parse("acme").unwrap();
    assert_eq!(ids[0], EventId::derived(&tenant, &key("k1"), 0).as_str());
    assert_eq!(ids[2], EventId::derived(&tenant, &key("k1"), 2).as_str());
}

#[test]
fn idempotency_keys_outside_visible_ascii_or_too_long_are_refused() {
    for bad in [
        "".to_string(),
        "a".repeat(256),
        "has space".to_string(),
        "tab\there".to_string(),
        "nul\0".to_string(),
        "clé".to_string(),
        "line\nbreak".to_string(),
    ] {
        assert!(IdempotencyKey::parse(bad.clone()).is_err(), "{bad:?}");
    }
    for good in [
        "a",
        "8f14e45f-ceea-467f-a0e6-1f2c3d4e5f60",
        &"x".repeat(255),
        "a/b+c=d~!",
    ] {
        assert!(IdempotencyKey::parse(good).is_ok(), "{good:?}");
    }
}

#[test]
fn negative_zero_is_refused_because_jsonb_would_keep_it_as_zero() {
    for (body, field) in [
        (
            r#"{"actor_id":"a","action":"b","resource_type":"c","resource_id":"d","changes":{"amount":-0.0}}"#,
            "changes.amount",
        ),
        (
            r#"{"actor_id":"a","action":"b","resource_type":"c","resource_id":"d","changes":{"amount":{"before":-0,"after":1}}}"#,
            "changes.amount",
        ),
        (
            r#"{"actor_id":"a","action":"b","resource_type":"c","resource_id":"d","metadata":{"geo":[1,{"lat":-0e3}]}}"#,
            "metadata",
        ),
    ] {
        let result = parse_request(body.as_bytes(), now(), &TenantId::default_tenant(), ids());

        let Err(IngestRejection::Invalid(errors)) = result else {
            panic!("{body} was not refused: {result:?}");
        };
        assert!(
            errors
                .get(field)
                .is_some_and(|m| m.contains("negative zero")),
            "{body}: {errors:?}"
        );
    }
}

#[test]
fn zero_and_tiny_negative_numbers_are_kept() {
    let body = r#"{"actor_id":"a","action":"b","resource_type":"c","resource_id":"d","changes":{"a":0,"b":0.0,"c":-5e-324,"d":-1}}"#;

    let events = parse_request(body.as_bytes(), now(), &TenantId::default_tenant(), ids()).unwrap();

    let encoded = String::from_utf8(events[0].encode()).unwrap();
    assert!(
        encoded.contains(r#""c":{"after":-5e-324,"before":null}"#),
        "{encoded}"
    );
}
