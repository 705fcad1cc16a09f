use super::*;

fn own() -> TenantId {
    TenantId::default_tenant()
}
use crate::fields::MAX_TIMESTAMP_MICROS;
use chrono::TimeZone;
use serde_json::json;

fn timestamp(year: i32, month: u32, day: u32, h: u32, m: u32, s: u32) -> Timestamp {
    Timestamp::new(Utc.with_ymd_and_hms(year, month, day, h, m, s).unwrap()).unwrap()
}

fn errors(query: &str) -> FieldErrors {
    EventQuery::parse(Some(query), &own()).unwrap_err()
}

#[test]
fn no_parameters_mean_the_default_tenant_newest_first_50_at_a_time() {
    let q = EventQuery::parse(None, &own()).unwrap();

    assert_eq!(q.tenant_id, "default");
    assert_eq!(q.sort, Sort::Newest);
    assert_eq!(
        q.paging,
        Paging::Keyset {
            limit: 50,
            after: None
        }
    );
}

#[test]
fn every_filter_is_read() {
    let q = EventQuery::parse(Some(
        "tenant_id=acme&actor_id=user_123&action=billing_update&resource_type=invoice&resource_id=inv_999\
         &from=2026-01-01T00:00:00%2B02:00&to=1767225600&changed_field=status&changed_to=failed&changed_from=pending\
         &sort=occurred_at&limit=1000",
    ), &own())
    .unwrap();

    assert_eq!(q.tenant_id, "acme");
    assert_eq!(q.actor_id.as_deref(), Some("user_123"));
    assert_eq!(q.action.as_deref(), Some("billing_update"));
    assert_eq!(q.resource_id.as_deref(), Some("inv_999"));
    assert_eq!(q.from.unwrap().to_rfc3339(), "2025-12-31T22:00:00+00:00");
    assert_eq!(q.to.unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
    assert_eq!(q.sort, Sort::Oldest);
    assert_eq!(
        q.paging,
        Paging::Keyset {
            limit: 1000,
            after: None
        }
    );
    let changed = q.changed.unwrap();
    assert_eq!(
        changed.containment(),
        vec![json!({"status": {"after": "failed", "before": "pending"}})]
    );
}

#[test]
fn a_changed_value_that_reads_as_a_number_matches_either_form() {
    let q = EventQuery::parse(Some("changed_field=amount&changed_to=500"), &own()).unwrap();

    assert_eq!(
        q.changed.unwrap().containment(),
        vec![
            json!({"amount": {"after": "500"}}),
            json!({"amount": {"after": 500}})
        ]
    );
}

#[test]
fn changed_field_alone_asks_only_that_the_field_changed() {
    let q = EventQuery::parse(Some("changed_field=status"), &own()).unwrap();

    assert!(q.changed.unwrap().containment().is_empty());
}

#[test]
fn an_invalid_sort_is_named() {
    assert_eq!(
        errors("sort=time")["sort"],
        "must be one of -occurred_at, occurred_at"
    );
}

#[test]
fn unknown_and_duplicated_parameters_are_named() {
    let e = errors("actor=me&action=a&action=b");

    assert!(e["actor"].starts_with("is not a recognized parameter"));
    assert_eq!(e["action"], "is given more than once");
}

#[test]
fn limits_out_of_range_or_not_numbers_are_refused() {
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=-5",
        "limit=ten",
        "limit=1e3",
        "limit=",
    ] {
        assert!(errors(bad).contains_key("limit"), "{bad}");
    }
}

#[test]
fn bad_times_and_empty_ranges_are_refused() {
    for bad in [
        "from=yesterday",
        "from=2026-13-01T00:00:00Z",
        "from=1e9",
        "from=-1",
        "from=NaN",
        "from=99999999999999",
    ] {
        assert!(errors(bad).contains_key("from"), "{bad}");
    }
    assert!(errors("from=2026-02-01T00:00:00Z&to=2026-02-01T00:00:00Z").contains_key("to"));
}

#[test]
fn epoch_seconds_may_be_fractional() {
    let q = EventQuery::parse(Some("from=1767225600.25"), &own()).unwrap();

    assert_eq!(q.from.unwrap().timestamp_micros(), 1_767_225_600_250_000);
}

#[test]
fn cursors_round_trip_and_tampered_ones_are_refused() {
    let cursor = Cursor::after(timestamp(2026, 1, 31, 23, 59, 59), "evt-1", Sort::Newest);
    let q = EventQuery::parse(Some(&format!("cursor={}", cursor.encode())), &own()).unwrap();
    assert_eq!(
        q.paging,
        Paging::Keyset {
            limit: 50,
            after: Some(cursor.clone())
        }
    );

    for bad in [
        "garbage",
        "eyJ0IjoxfQ",
        "%00%01",
        &"A".repeat(600),
        "' OR 1=1 --",
    ] {
        assert!(
            errors(&format!("cursor={bad}"))["cursor"].contains("not a cursor"),
            "{bad}"
        );
    }
    let other_sort = format!("cursor={}&sort=occurred_at", cursor.encode());
    assert!(errors(&other_sort)["cursor"].contains("other sort order"));
}

#[test]
fn offset_paging_cannot_mix_with_keyset_and_is_bounded() {
    let q = EventQuery::parse(Some("page=3&per_page=20"), &own()).unwrap();
    assert_eq!(
        q.paging,
        Paging::Offset {
            page: 3,
            per_page: 20
        }
    );

    assert!(errors("page=2&limit=10").contains_key("limit"));
    assert!(errors("page=2&cursor=x").contains_key("cursor"));
    assert!(errors("page=0").contains_key("page"));
    assert!(errors("per_page=1001").contains_key("per_page"));
    assert!(errors("page=1000000&per_page=1000")["page"].contains("too deep"));
}

#[test]
fn change_values_need_a_field_and_resource_ids_need_a_type() {
    assert!(errors("changed_to=failed").contains_key("changed_to"));
    assert!(errors("resource_id=inv_1").contains_key("resource_id"));
}

#[test]
fn injection_attempts_are_plain_values_or_refused() {
    let q = EventQuery::parse(Some("actor_id=%27%3B%20DROP%20TABLE%20audit_events%3B--&changed_field=%22%7D%7D&changed_to=%7B%22%24ne%22%3A1%7D"), &own()).unwrap();
    assert_eq!(q.actor_id.as_deref(), Some("'; DROP TABLE audit_events;--"));
    assert_eq!(q.changed.unwrap().to.unwrap()[0], json!("{\"$ne\":1}"));

    assert!(errors("tenant_id=a%27b").contains_key("tenant_id"));
    assert!(errors("actor_id=a%00b").contains_key("actor_id"));
    assert!(errors(&format!("action={}", "x".repeat(257))).contains_key("action"));
}

#[test]
fn history_defaults_to_oldest_first_and_refuses_list_filters() {
    let q = EventQuery::history("invoice", "inv_999", None, &own()).unwrap();
    assert_eq!(q.sort, Sort::Oldest);
    assert_eq!(q.resource_id.as_deref(), Some("inv_999"));

    assert!(
        EventQuery::history("invoice", "inv_999", Some("actor_id=x"), &own())
            .unwrap_err()
            .contains_key("actor_id")
    );
    assert!(EventQuery::history("invoice", "", None, &own())
        .unwrap_err()
        .contains_key("id"));
}

#[test]
fn state_defaults_to_now_and_reads_at() {
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap();
    assert_eq!(
        StateQuery::parse("invoice", "inv_1", None, now, &own())
            .unwrap()
            .at,
        now
    );

    let q = StateQuery::parse(
        "invoice",
        "inv_1",
        Some("at=2026-03-01T14:02:00Z"),
        now,
        &own(),
    )
    .unwrap();
    assert_eq!(q.at.to_rfc3339(), "2026-03-01T14:02:00+00:00");

    assert!(
        StateQuery::parse("invoice", "inv_1", Some("at=soon"), now, &own())
            .unwrap_err()
            .contains_key("at")
    );
    assert!(
        StateQuery::parse("invoice", "inv_1", Some("limit=5"), now, &own())
            .unwrap_err()
            .contains_key("limit")
    );
}

#[test]
fn values_the_database_cannot_hold_are_refused_up_front() {
    let far = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"t":-8000000000000000000,"i":"x","s":"-occurred_at"}"#);
    assert!(errors(&format!("cursor={far}")).contains_key("cursor"));
    assert!(errors("changed_field=status&changed_to=a%00b").contains_key("changed_to"));
    assert!(errors("changed_field=status&changed_from=a%00b").contains_key("changed_from"));
    assert!(!is_event_id("a\0b") && !is_event_id("") && is_event_id("evt-1:2.3_x"));
}

#[test]
fn thousands_of_bad_parameters_report_no_more_errors_than_ingest_does() {
    let query: Vec<String> = (0..6000).map(|i| format!("unknown_{i}=1")).collect();

    let e = errors(&format!("{}&limit=0&sort=x", query.join("&")));

    assert_eq!(e.len(), MAX_REPORTED_ERRORS);
}

#[test]
fn parameter_names_are_echoed_cut_short_and_without_control_characters() {
    let long = "n".repeat(10_000);
    let e = errors(&format!("{long}=1&a%00b%1B%5B31m%7F=2&%C3%A9%0A=3"));

    assert!(e.contains_key(&format!("{}…", "n".repeat(MAX_SHOWN_NAME_CHARS))));
    assert!(e.contains_key("a?b?[31m?"));
    assert!(e.contains_key("é?"));
    assert_eq!(e.len(), 3);
}

#[test]
fn times_outside_what_a_timestamp_holds_are_refused_with_its_rule() {
    for (bad, rule) in [
        ("0000-01-01T00:00:00Z", "before 1970-01-01T00:00:00Z"),
        ("1969-12-31T23:59:59.999999Z", "before 1970-01-01T00:00:00Z"),
        ("1970-01-01T00:59:59%2B01:00", "before 1970-01-01T00:00:00Z"),
        (
            "9999-12-31T23:59:59-00:01",
            "after 9999-12-31T23:59:59.999999Z",
        ),
        (
            "9999-12-31T23:00:00-05:00",
            "after 9999-12-31T23:59:59.999999Z",
        ),
        ("253402300800", "after 9999-12-31T23:59:59.999999Z"),
        ("253402300800.000000", "after 9999-12-31T23:59:59.999999Z"),
        ("99999999999999", "after 9999-12-31T23:59:59.999999Z"),
        (
            "100000000000000000000000000000",
            "after 9999-12-31T23:59:59.999999Z",
        ),
        ("2016-12-31T23:59:60Z", "leap second"),
    ] {
        assert!(
            errors(&format!("from={bad}"))["from"].contains(rule),
            "{bad}"
        );
        assert!(errors(&format!("to={bad}"))["to"].contains(rule), "{bad}");
        let state = StateQuery::parse(
            "invoice",
            "inv_1",
            Some(&format!("at={bad}")),
            Utc::now(),
            &own(),
        );
        assert!(state.unwrap_err()["at"].contains(rule), "{bad}");
    }
    for bad in ["1e9", "-1", "+1", "NaN", "inf", ".", "1.2.3", "0x10", " 1"] {
        assert_eq!(
            errors(&format!("from={bad}"))["from"],
            TimeError::NotATime.to_string(),
            "{bad}"
        );
    }
}

#[test]
fn the_first_and_last_moments_a_timestamp_holds_are_times() {
    let range = EventQuery::parse(Some("from=0&to=253402300799.999999"), &own()).unwrap();
    assert_eq!(range.from.unwrap().micros(), 0);
    assert_eq!(range.to.unwrap().micros(), MAX_TIMESTAMP_MICROS);

    for last in [
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59.9999999Z",
        "9999-12-31T18:59:59.999999-05:00",
        "253402300799.9999999",
    ] {
        let q = StateQuery::parse(
            "invoice",
            "inv_1",
            Some(&format!("at={last}")),
            Utc::now(),
            &own(),
        )
        .unwrap();
        assert_eq!(q.at.micros(), MAX_TIMESTAMP_MICROS, "{last}");
        assert_eq!(
            serde_json::to_value(q.at).unwrap(),
            json!("9999-12-31T23:59:59.999999Z")
        );
    }
}

#[test]
fn epoch_seconds_are_read_exactly_to_the_microsecond() {
    for (text, micros) in [
        ("1767225600", 1_767_225_600_000_000),
        ("1767225600.", 1_767_225_600_000_000),
        ("1767225600.000001", 1_767_225_600_000_001),
        ("1767225600.0000019", 1_767_225_600_000_001),
        (".5", 500_000),
        ("0001767225600", 1_767_225_600_000_000),
        ("253402300799.999998", 253_402_300_799_999_998),
    ] {
        assert_eq!(parse_time(text).unwrap().micros(), micros, "{text}");
    }
}

#[test]
fn a_state_cursor_carries_its_at_and_refuses_another() {
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap();
    let cursor = StateCursor {
        at_micros: 1_767_225_600_123_456,
        after_field: "status".into(),
    }
    .encode();

    let q = StateQuery::parse(
        "invoice",
        "inv_1",
        Some(&format!("cursor={cursor}")),
        now,
        &own(),
    )
    .unwrap();
    let same = StateQuery::parse(
        "invoice",
        "inv_1",
        Some(&format!("cursor={cursor}&at=1767225600.123456")),
        now,
        &own(),
    )
    .unwrap();
    let other = StateQuery::parse(
        "invoice",
        "inv_1",
        Some(&format!("cursor={cursor}&at=1767225600")),
        now,
        &own(),
    );

    assert_eq!(q.at.timestamp_micros(), 1_767_225_600_123_456);
    assert_eq!(q.after_field.as_deref(), Some("status"));
    assert_eq!(same, q);
    assert!(other.unwrap_err()["cursor"].contains("another `at`"));
    for bad in [
        "nope",
        &"A".repeat(5000),
        &Cursor::after(Timestamp::truncating(now), "e1", Sort::Newest).encode(),
    ] {
        assert!(
            StateQuery::parse(
                "invoice",
                "inv_1",
                Some(&format!("cursor={bad}")),
                now,
                &own()
            )
            .unwrap_err()
            .contains_key("cursor"),
            "{bad}"
        );
    }
}

#[test]
fn state_at_now_keeps_microseconds_so_a_cursor_can_carry_it() {
    let now = Utc.timestamp_nanos(1_767_225_600_123_456_789);

    let q = StateQuery::parse("invoice", "inv_1", None, now, &own()).unwrap();

    assert_eq!(q.at.timestamp_micros(), 1_767_225_600_123_456);
    assert_eq!(q.at.timestamp_subsec_nanos() % 1000, 0);
}
