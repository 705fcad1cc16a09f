//! The console, in a real browser: Debian's headless Chromium, driven through chromedriver,
//! against the query handler served over HTTP with the real PostgreSQL (read as the reader
//! role) and checkpoints signed by the real checkpointer. Each test has a database of its
//! own. The console's new endpoints (`/whoami`, `/export`) are tested here through the
//! handler too. Screenshots of the main views go to docs/console/.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{Duration, SecondsFormat, Utc};
use common::browser::{Browser, Server};
use common::log::Api;
use lambda_http::Body;
use sentinel_domain::fields::{Changes, Metadata, Timestamp};
use sentinel_domain::merkle::{self, Hash};
use sentinel_domain::AuditEvent;
use sentinel_lambda::identity::dev::TokenClaims;
use sentinel_lambda::identity::Scope;
use serde_json::{json, Value};

const DESKTOP: (u32, u32) = (1280, 800);

fn ago(minutes: i64) -> String {
    (Utc::now() - Duration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[allow(clippy::too_many_arguments)]
fn event(
    tenant: &str,
    id: &str,
    at: &str,
    actor: &str,
    action: &str,
    resource: (&str, &str),
    changes: Value,
) -> AuditEvent {
    let mut event = sentinel_testing::log::sample_event(tenant, id, at);
    event.received_at = Timestamp::parse(at).unwrap();
    event.actor_id = actor.parse().unwrap();
    event.action = action.parse().unwrap();
    event.resource_type = resource.0.parse().unwrap();
    event.resource_id = resource.1.parse().unwrap();
    event.changes = Changes::parse_stored(changes.as_object().unwrap().clone()).unwrap();
    event
}

/// An invoice's life in four events, two days to an hour ago, and `background` other events
/// (one a minute, newest first from 2 minutes ago) of other invoices by dave and erin.
fn story(tenant: &str, background: usize) -> Vec<AuditEvent> {
    let inv = ("invoice", "inv_1");
    let mut events = vec![
        event(
            tenant,
            "inv1-created",
            &ago(2 * 24 * 60),
            "alice",
            "invoice.create",
            inv,
            json!({"status": {"before": null, "after": "draft"}, "amount": {"before": null, "after": 100},
                   "lines": {"before": null, "after": {"items": [{"sku": "a-1", "qty": 1}], "currency": "EUR"}}}),
        ),
        event(
            tenant,
            "inv1-sent",
            &ago(24 * 60),
            "alice",
            "invoice.send",
            inv,
            json!({"status": {"before": "draft", "after": "pending"}}),
        ),
        event(
            tenant,
            "inv1-edited",
            &ago(3 * 60),
            "bob",
            "invoice.update",
            inv,
            json!({"amount": {"before": 100, "after": 150},
                   "lines": {"before": {"items": [{"sku": "a-1", "qty": 1}], "currency": "EUR"},
                             "after": {"items": [{"sku": "a-1", "qty": 2}], "currency": "EUR", "note": "rush"}}}),
        ),
        event(
            tenant,
            "inv1-paid",
            &ago(60),
            "carol",
            "invoice.pay",
            inv,
            json!({"status": {"before": "pending", "after": "paid"}}),
        ),
    ];
    for i in 0..background {
        let actor = if i % 2 == 0 { "dave" } else { "erin" };
        let id = format!("bg-{i:05}");
        events.push(event(
            tenant,
            &id,
            &ago(2 + i as i64),
            actor,
            "invoice.update",
            ("invoice", &format!("inv_bg_{}", i % 7)),
            json!({"note": {"before": i, "after": i + 1}}),
        ));
    }
    events
}

/// A served API with `events` stored and checkpointed, and a browser at `size`.
struct Console {
    api: Arc<Api>,
    server: Server,
    browser: Browser,
}

impl Console {
    async fn new(events: &[AuditEvent], size: (u32, u32)) -> Self {
        let api = Api::new().await;
        api.store(events).await;
        api.checkpoint().await;
        let api = Arc::new(api);
        let server = Server::start(api.clone()).await;
        let browser = Browser::start(size.0, size.1).await;
        Self {
            api,
            server,
            browser,
        }
    }

    fn token(&self, tenant: &str) -> String {
        self.api.issuer.token(tenant, &[Scope::EventsRead])
    }

    /// Opens the console signed in as a reader of `tenant`, with the log's public key, at
    /// `view` (a fragment route such as `#/events?actor_id=bob`), and waits for it.
    async fn open_as(&self, tenant: &str, view: &str) {
        let link = format!(
            "{}#token={}&key={}",
            self.server.console(),
            self.token(tenant),
            form_urlencoded::byte_serialize(self.api.key.to_text().as_bytes()).collect::<String>()
        );
        self.browser.goto(&link).await;
        self.browser
            .until(
                "the signed-in header",
                "return document.getElementById('who-tenant')?.textContent",
            )
            .await;
        if !view.is_empty() {
            self.show(view).await;
        }
    }

    /// Goes to a view of the signed-in console, as following a link does, and waits until
    /// the view before it is gone.
    async fn show(&self, view: &str) {
        self.browser
            .run(
                "window.previousView = document.getElementById('view').firstChild; location.hash = arguments[0].slice(1); window.scrollTo(0, 0);",
                json!([view]),
            )
            .await;
        self.browser
            .until(
                "the view to change",
                "return document.getElementById('view').firstChild !== window.previousView",
            )
            .await;
    }

    /// Waits for the events list to settle and answers the ids shown, in order.
    async fn listed(&self) -> Vec<String> {
        self.browser
            .until(
                "the events list",
                "const s = document.getElementById('events-status'); return s && /events? ?(·|match)/.test(s.textContent) && !/Loading/.test(s.textContent);",
            )
            .await;
        let ids = self
            .browser
            .run(
                "return [...document.querySelectorAll('#events li.event')].map(e => e.dataset.id);",
                json!([]),
            )
            .await;
        serde_json::from_value(ids).unwrap()
    }

    /// Saves a screenshot of the view in the build's directory, and in docs/console/ too
    /// with `SENTINEL_UPDATE_SCREENSHOTS=1` (relative times and the date make every shot
    /// differ, so a plain test run leaves the committed ones alone).
    async fn screenshot(&self, name: &str) {
        let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console")];
        if std::env::var_os("SENTINEL_UPDATE_SCREENSHOTS").is_some() {
            dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/console"));
        }
        for dir in dirs {
            self.browser.screenshot(&dir.join(name)).await;
        }
    }
}

fn ids_of(events: &[AuditEvent], keep: impl Fn(&AuditEvent) -> bool) -> Vec<String> {
    let mut kept: Vec<&AuditEvent> = events.iter().filter(|e| keep(e)).collect();
    kept.sort_by(|a, b| {
        (b.occurred_at.to_string(), b.id.as_str()).cmp(&(a.occurred_at.to_string(), a.id.as_str()))
    });
    kept.iter().map(|e| e.id.as_str().to_string()).collect()
}

#[tokio::test]
async fn the_console_signs_in_from_its_link_and_keeps_the_token_out_of_the_url() {
    let events = story("acme", 20);
    let console = Console::new(&events, DESKTOP).await;

    console.open_as("acme", "").await;

    let b = &console.browser;
    assert_eq!(b.text("#who-tenant").await, "acme");
    assert_eq!(b.text("#who-subject").await, "test-user");
    let url = b.url().await;
    assert!(
        url.ends_with("/lambda-url/query/console/#/events") && !url.contains("token"),
        "{url}"
    );
    let kept = b
        .run("return [sessionStorage.getItem('sentinel.token') !== null, localStorage.getItem('sentinel.token')]", json!([]))
        .await;
    assert_eq!(kept, json!([true, null]), "kept for the tab only");
    assert_eq!(console.listed().await, ids_of(&events, |_| true));
    console.screenshot("events.png").await;
    // Nothing the policy refused, no script error.
    let log = b.log().await;
    assert!(
        !log.contains("Content Security Policy") && !log.contains("Uncaught"),
        "{log}"
    );
}

#[tokio::test]
async fn an_expired_token_leads_back_to_sign_in_with_a_clear_message_and_a_pasted_one_signs_in() {
    let events = story("acme", 3);
    let console = Console::new(&events, DESKTOP).await;
    let mut claims = TokenClaims::local("acme", "auditor", &[Scope::EventsRead], 3600);
    claims.iat -= 7200;
    claims.exp = claims.iat + 60;
    let expired = console.api.issuer.sign(&claims);
    let b = &console.browser;
    b.goto(&format!("{}#token={expired}", console.server.console()))
        .await;

    let message = b
        .until(
            "the sign-in message",
            "return document.getElementById('signin').hidden ? '' : document.getElementById('signin-message').textContent",
        )
        .await;

    let message = message.as_str().unwrap();
    assert!(
        message.contains("refused the token") && message.contains("expired"),
        "{message}"
    );
    assert_eq!(
        b.run("return sessionStorage.getItem('sentinel.token')", json!([]))
            .await,
        Value::Null
    );
    console.screenshot("sign-in.png").await;
    b.type_into("#token", &console.token("acme")).await;
    b.click("#signin-form button[type=submit]").await;
    b.until(
        "the signed-in header",
        "return document.getElementById('who-tenant')?.textContent",
    )
    .await;
    assert_eq!(console.listed().await.len(), events.len());
}

#[tokio::test]
async fn filters_narrow_the_list_and_a_view_is_shared_by_its_link() {
    let events = story("acme", 30);
    let console = Console::new(&events, DESKTOP).await;
    console.open_as("acme", "").await;
    console.listed().await;
    let b = &console.browser;

    b.type_into("#f-changed_field", "status").await;
    b.type_into("#f-changed_to", "paid").await;
    b.click("#filters button[type=submit]").await;
    b.until(
        "the filtered list",
        "return location.hash.includes('changed_to=paid') && document.querySelectorAll('#events li.event').length === 1",
    )
    .await;

    assert_eq!(console.listed().await, ["inv1-paid"]);
    // The link alone, in a fresh load, shows the same view.
    let shared = b.url().await;
    b.goto("about:blank").await;
    b.goto(&shared).await;
    assert_eq!(console.listed().await, ["inv1-paid"]);
    // An actor and a preset time range: dave's events of the last hour.
    console.show("#/events?actor_id=dave&range=1h").await;
    let listed = console.listed().await;
    let hour_ago = Utc::now() - Duration::minutes(60);
    let expected = ids_of(&events, |e| {
        e.actor_id.as_str() == "dave"
            && e.occurred_at.to_string() > hour_ago.to_rfc3339_opts(SecondsFormat::Micros, true)
    });
    assert!(!expected.is_empty());
    assert_eq!(listed, expected);
    assert_eq!(
        b.run(
            "return [document.getElementById('f-actor_id').value, document.getElementById('f-range').value]",
            json!([])
        )
        .await,
        json!(["dave", "1h"]),
        "the form shows the view's filters"
    );
    // Oldest first, within an absolute range.
    console
        .show(&format!(
            "#/events?sort=occurred_at&from={}&to={}",
            ago(3 * 24 * 60),
            ago(12 * 60)
        ))
        .await;
    assert_eq!(console.listed().await, ["inv1-created", "inv1-sent"]);
}

#[tokio::test]
async fn scrolling_pages_through_every_event_with_no_cap() {
    let events = story("acme", 1_196);
    let console = Console::new(&events, DESKTOP).await;
    console.open_as("acme", "").await;
    let b = &console.browser;

    let mut shown = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let status = b.text("#events-status").await;
        if status.contains("end of the log") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{shown} shown: {status}"
        );
        b.run("window.scrollTo(0, document.body.scrollHeight)", json!([]))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        shown = b
            .run(
                "return document.querySelectorAll('#events li.event').length",
                json!([]),
            )
            .await
            .as_u64()
            .unwrap();
    }

    assert!(shown >= 1100, "{shown}");
    let listed = console.listed().await;
    assert_eq!(listed.len(), 1_200);
    assert_eq!(listed, ids_of(&events, |_| true), "each once, newest first");
    assert_eq!(
        b.text("#events-status").await,
        "1200 events · end of the log"
    );
    // Open an event far down, and come back: the list is as it was, where it was.
    let far = b
        .run(
            "const a = document.querySelector('#events li.event:nth-child(1150) a'); a.scrollIntoView({block: 'center'}); return [scrollY, a.closest('li').dataset.id]",
            json!([]),
        )
        .await;
    let (y, id) = (far[0].as_f64().unwrap(), far[1].as_str().unwrap());
    b.click("#events li.event:nth-child(1150) a").await;
    b.until(
        "the event",
        &format!("return document.querySelector('h1 code')?.textContent === '{id}'"),
    )
    .await;
    b.run("history.back()", json!([])).await;
    let back = b
        .until(
            "the list again",
            "return document.querySelectorAll('#events li.event').length === 1200 && [scrollY]",
        )
        .await;
    assert!(
        (back[0].as_f64().unwrap() - y).abs() < 2.0,
        "scrolled to {back}, was {y}"
    );
}

#[tokio::test]
async fn an_event_shows_every_field_and_the_before_and_after_of_each_change() {
    let events = story("acme", 5);
    let console = Console::new(&events, DESKTOP).await;
    console.open_as("acme", "#/events/inv1-edited").await;
    let b = &console.browser;

    b.until(
        "the diff",
        "return document.querySelector('#changes table')",
    )
    .await;

    let rows = b
        .run(
            "return [...document.querySelectorAll('#changes tbody tr')].map(r => [...r.children].map(c => c.innerText))",
            json!([]),
        )
        .await;
    assert_eq!(
        rows,
        json!([
            ["amount", "100", "150"],
            ["lines.items[0].qty", "1", "2"],
            ["lines.note", "—", "\"rush\""],
        ])
    );
    let fields = b.text("#event-fields").await;
    for shown in [
        "inv1-edited",
        "acme",
        "bob",
        "invoice.update",
        "invoice/inv_1",
    ] {
        assert!(fields.contains(shown), "{shown} in {fields}");
    }
    assert!(b.text("#metadata").await.contains("192.0.2.7"));
    console.screenshot("event.png").await;
    // The actor's other events, by link.
    b.click("#actor-link").await;
    assert_eq!(console.listed().await, ["inv1-edited"]);
    // The resource's other events.
    b.run("history.back()", json!([])).await;
    b.until(
        "the event again",
        "return document.getElementById('resource-events-link')",
    )
    .await;
    b.click("#resource-events-link").await;
    assert_eq!(
        console.listed().await,
        ["inv1-paid", "inv1-edited", "inv1-sent", "inv1-created"]
    );
}

#[tokio::test]
async fn numbers_a_double_cannot_hold_are_shown_exactly_and_the_event_still_verifies() {
    let mut events = story("acme", 2);
    events.push(event(
        "acme",
        "big-numbers",
        &ago(30),
        "treasury",
        "ledger.adjust",
        ("ledger", "l_1"),
        json!({"balance": {"before": 9_007_199_254_740_993_u64, "after": 12_345_678_901_234_567_890_u64},
               "rate": {"before": 0.1, "after": 1e300}}),
    ));
    let console = Console::new(&events, DESKTOP).await;
    console.open_as("acme", "#/events/big-numbers").await;
    let b = &console.browser;

    b.until(
        "the diff",
        "return document.querySelector('#changes table')",
    )
    .await;

    let rows = b
        .run(
            "return [...document.querySelectorAll('#changes tbody tr')].map(r => [...r.children].map(c => c.innerText))",
            json!([]),
        )
        .await;
    assert_eq!(
        rows,
        json!([
            ["balance", "9007199254740993", "12345678901234567890"],
            ["rate", "0.1", "1e+300"],
        ])
    );
    let (class, text) = badge(b).await;
    assert_eq!(class, "badge verified", "{text}");
}

#[tokio::test]
async fn a_resource_shows_its_state_at_a_moment_chosen_on_its_timeline() {
    let events = story("acme", 5);
    let console = Console::new(&events, DESKTOP).await;
    console.open_as("acme", "#/resources/invoice/inv_1").await;
    let b = &console.browser;
    b.until(
        "the timeline",
        "return document.querySelectorAll('#timeline li').length === 4 && document.getElementById('state-fields')",
    )
    .await;
    let state_now = b.text("#state-fields").await;
    assert!(state_now.contains("\"paid\""), "{state_now}");

    // The second event on the timeline: sent, before bob's edit.
    b.click("#timeline li:nth-child(2) a.button").await;
    b.until(
        "the state after the second event",
        "return document.querySelector('#timeline li.chosen')?.dataset.id === 'inv1-sent' && document.getElementById('state-fields')",
    )
    .await;

    let rows = b
        .run(
            "return [...document.querySelectorAll('#state-fields tbody tr')].map(r => [r.dataset.field, r.children[1].innerText, r.querySelector('a').textContent])",
            json!([]),
        )
        .await;
    assert_eq!(
        rows,
        json!([
            ["amount", "100", "inv1-created"],
            ["lines", "{\n  \"currency\": \"EUR\",\n  \"items\": [\n    {\n      \"qty\": 1,\n      \"sku\": \"a-1\"\n    }\n  ]\n}", "inv1-created"],
            ["status", "\"pending\"", "inv1-sent"],
        ])
    );
    assert!(b.text("#state-summary").await.contains("2 events"));
    assert!(b.url().await.contains("?at="), "the moment is in the link");
    console.screenshot("resource.png").await;
    // A moment typed in, before the resource existed.
    b.run(
        "document.getElementById('at').value = '2020-01-02T12:00:00'",
        json!([]),
    )
    .await;
    b.click("#at-form button").await;
    b.until(
        "the empty state",
        "return /no events at or before/.test(document.getElementById('state-summary')?.textContent)",
    )
    .await;
}

#[tokio::test]
async fn a_state_larger_than_one_answer_is_shown_whole() {
    // 30 fields of about 150 KB, each set by its own event: more than one answer's 4 MiB.
    let big = "z".repeat(150_000);
    let mut events: Vec<AuditEvent> = (0..30)
        .map(|i| {
            event(
                "acme",
                &format!("set-{i:02}"),
                &ago(100 - i),
                "loader",
                "document.update",
                ("document", "d_1"),
                json!({ format!("part_{i:02}"): {"before": null, "after": big} }),
            )
        })
        .collect();
    // And one field set, then removed.
    events.push(event(
        "acme",
        "set-draft",
        &ago(50),
        "loader",
        "document.update",
        ("document", "d_1"),
        json!({"draft": {"before": null, "after": true}}),
    ));
    events.push(event(
        "acme",
        "unset-draft",
        &ago(40),
        "loader",
        "document.update",
        ("document", "d_1"),
        json!({"draft": {"before": true, "after": null}}),
    ));
    let console = Console::new(&events, DESKTOP).await;
    let (_, first) = console.api.get("/resources/document/d_1/state", "").await;
    assert!(first["next_cursor"].is_string(), "the API answers in parts");

    console.open_as("acme", "#/resources/document/d_1").await;

    let b = &console.browser;
    let fields = b
        .until(
            "the whole state",
            "const t = document.getElementById('state-fields'); return t && [t.querySelectorAll('tbody tr').length, document.getElementById('state-removed')?.innerText]",
        )
        .await;
    assert_eq!(fields[0], json!(30));
    let removed = fields[1].as_str().unwrap();
    assert!(
        removed.contains("draft") && removed.contains("unset-draft"),
        "{removed}"
    );
}

async fn badge(b: &Browser) -> (String, String) {
    let badge = b
        .until(
            "the verification result",
            "const e = document.getElementById('badge'); return e && !e.classList.contains('checking') && [e.className, e.textContent]",
        )
        .await;
    (
        badge[0].as_str().unwrap().to_string(),
        badge[1].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn the_verified_badge_checks_the_proof_in_the_browser_and_fails_after_tampering() {
    let events = story("acme", 40);
    let console = Console::new(&events, DESKTOP).await;
    console.open_as("acme", "#/events/inv1-edited").await;
    let b = &console.browser;

    let (class, text) = badge(b).await;
    assert_eq!(class, "badge verified", "{text}");
    assert!(
        text.contains("entry 2 of the log signed by sentinel/test at size 44"),
        "{text}"
    );
    console.screenshot("event-verified.png").await;

    // A superuser edits the row, past the triggers that keep the table append-only.
    console
        .api
        .db
        .client()
        .await
        .batch_execute(
            "SET session_replication_role = replica; \
             UPDATE audit_events SET actor_id = 'mallory' WHERE id = 'inv1-edited'; \
             SET session_replication_role = origin;",
        )
        .await
        .unwrap();
    b.run("location.reload()", json!([])).await;

    let (class, text) = badge(b).await;
    assert_eq!(class, "badge failed", "{text}");
    assert!(
        text.contains("does not lead to the signed root of tree 44"),
        "{text}"
    );
    assert!(b.text("#event-fields").await.contains("mallory"));
    console.screenshot("event-tampered.png").await;
    // An untouched event still verifies; with another key, nothing does.
    console.show("#/events/inv1-paid").await;
    assert_eq!(badge(b).await.0, "badge verified");
    let other = sentinel_testing::log::MemorySigner::new("another key").verifier("sentinel/test");
    b.run(
        "localStorage.setItem('sentinel.verifierKey', arguments[0]); location.reload();",
        json!([other.to_text()]),
    )
    .await;
    let (class, text) = badge(b).await;
    assert_eq!(class, "badge failed");
    assert!(
        text.contains("no signature by sentinel/test with this key's ID"),
        "{text}"
    );
    // The PEM `sentinel public-key` prints does as well as a verifier key.
    let der = base64::engine::general_purpose::STANDARD.encode(console.api.key.spki_der());
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
        &der[..64],
        &der[64..]
    );
    b.run(
        "localStorage.setItem('sentinel.verifierKey', arguments[0]); location.reload();",
        json!([pem]),
    )
    .await;
    let (class, text) = badge(b).await;
    assert_eq!(class, "badge verified", "{text}");
}

#[tokio::test]
async fn the_browsers_proof_checks_agree_with_the_server_at_every_index_and_size() {
    let events = story("acme", 36);
    let api = Api::new().await;
    api.store(&events[..9]).await;
    api.checkpoint().await;
    api.store(&events[9..]).await;
    api.checkpoint().await;
    let leaves: Vec<Hash> = events.iter().map(AuditEvent::leaf_hash).collect();
    let roots: Vec<String> = (1..=leaves.len())
        .map(|n| merkle::root(&leaves[..n]).to_base64())
        .collect();
    let api = Arc::new(api);
    let server = Server::start(api.clone()).await;
    let browser = Browser::start(DESKTOP.0, DESKTOP.1).await;
    let console = Console {
        api,
        server,
        browser,
    };
    console.open_as("acme", "").await;

    // verify.js, as the badge uses it, on every event's inclusion proof and on the
    // consistency proof from every size to the latest (40).
    let results = console
        .browser
        .run(
            r#"
            const [keyText, roots, ids] = arguments;
            const m = await import('./verify.js');
            const auth = { headers: { authorization: 'Bearer ' + sessionStorage.getItem('sentinel.token') } };
            const get = async (path) => (await fetch('../' + path, auth)).json();
            const key = await m.parseVerifierKey(keyText);
            const out = [];
            for (const id of ids) {
              const proof = await get('events/' + id + '/proof');
              const leaf = await m.leafHash(new TextEncoder().encode(proof.canonical_record));
              const root = await m.rootFromInclusionProof(proof.log_index, proof.tree_size, leaf, proof.inclusion_proof.map(m.fromBase64));
              out.push(m.toBase64(root) === roots[39] ? 'in' : 'not in');
            }
            const latest = await m.openCheckpoint((await get('checkpoint')).checkpoint, key);
            for (let from = 1; from < 40; from++) {
              const body = await get('consistency?from=' + from);
              const proof = body.consistency_proof.map(m.fromBase64);
              try {
                await m.verifyConsistency(from, Number(latest.size), m.fromBase64(roots[from - 1]), latest.root, proof);
                out.push('extends');
              } catch (e) { out.push(e.message); }
              try {
                await m.verifyConsistency(from, Number(latest.size), m.fromBase64(roots[from % 39]), latest.root, proof);
                out.push('accepted another root');
              } catch (e) { out.push('refused'); }
            }
            return out;
            "#,
            json!([
                console.api.key.to_text(),
                roots,
                events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>()
            ]),
        )
        .await;

    let results: Vec<String> = serde_json::from_value(results).unwrap();
    let (inclusion, consistency) = results.split_at(40);
    assert!(inclusion.iter().all(|r| r == "in"), "{inclusion:?}");
    let expected: Vec<&str> = (1..40).flat_map(|_| ["extends", "refused"]).collect();
    assert_eq!(consistency, expected);
}

#[tokio::test]
async fn the_export_downloads_the_filtered_events_and_reads_back() {
    let events = story("acme", 60);
    let console = Console::new(&events, DESKTOP).await;
    console.open_as("acme", "#/events?actor_id=dave").await;
    let dave = console.listed().await;
    let b = &console.browser;

    b.click("#export-csv").await;
    b.until(
        "the CSV export",
        "return /Exported/.test(document.getElementById('export-status').textContent)",
    )
    .await;
    let csv = b.download("sentinel-events-acme.csv").await;
    b.click("#export-ndjson").await;
    let ndjson = b.download("sentinel-events-acme.ndjson").await;

    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "id,tenant_id,occurred_at,received_at,actor_id,actor_type,action,resource_type,resource_id,changes,metadata");
    let csv_ids: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(csv_ids, dave);
    assert!(lines[1].contains(",dave,user,invoice.update,invoice,"));
    let exported: Vec<AuditEvent> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let originals: Vec<&AuditEvent> = dave
        .iter()
        .map(|id| events.iter().find(|e| e.id.as_str() == id).unwrap())
        .collect();
    assert_eq!(exported.iter().collect::<Vec<_>>(), originals, "exactly");
    // Audited like every read: a list, an export and another export.
    let routes: Vec<Value> = console
        .api
        .access_log
        .events()
        .iter()
        .map(|e| e.metadata.get("route").cloned().unwrap())
        .collect();
    assert_eq!(routes.iter().filter(|r| *r == "export").count(), 2);
}

#[tokio::test]
async fn a_token_of_another_tenant_sees_none_of_the_first_tenants_events() {
    let mut events = story("acme", 10);
    events.push(event(
        "globex",
        "globex-1",
        &ago(5),
        "gina",
        "order.create",
        ("order", "o_1"),
        json!({"total": {"before": null, "after": 9}}),
    ));
    let console = Console::new(&events, DESKTOP).await;
    console.open_as("globex", "").await;
    let b = &console.browser;

    assert_eq!(console.listed().await, ["globex-1"]);
    console.show("#/events?actor_id=alice").await;
    assert_eq!(console.listed().await, Vec::<String>::new());
    assert_eq!(
        b.text("#events-status").await,
        "0 events match these filters"
    );
    console.show("#/events/inv1-edited").await;
    let missing = b
        .until(
            "the missing event",
            "return document.querySelector('#view .error')?.textContent",
        )
        .await;
    assert_eq!(missing, json!("Could not load: no event with that id"));
    console.show("#/resources/invoice/inv_1").await;
    b.until(
        "the empty resource",
        "return /no events at or before/.test(document.getElementById('state-summary')?.textContent) && document.querySelectorAll('#timeline li').length === 0",
    )
    .await;
}

#[tokio::test]
async fn the_console_reads_at_phone_width_and_works_by_keyboard_with_labels_and_visible_focus() {
    let events = story("acme", 8);
    let console = Console::new(&events, (390, 844)).await;
    console.open_as("acme", "").await;
    console.listed().await;
    let b = &console.browser;

    let layout = b
        .run(
            "return [document.documentElement.scrollWidth <= innerWidth, [...document.querySelectorAll('input, select, textarea')].every(e => e.labels.length > 0)]",
            json!([]),
        )
        .await;
    let wide = b
        .run("return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 8)", json!([]))
        .await;
    assert_eq!(
        layout,
        json!([true, true]),
        "no sideways scrolling ({wide}); every control labelled"
    );
    console.screenshot("events-phone.png").await;

    // By keyboard: Tab to the folded filters, Enter opens them, Tab to the first, type,
    // Enter applies it.
    b.run("document.getElementById('sign-out').focus()", json!([]))
        .await;
    b.keys("\u{E004}\u{E007}\u{E004}carol\u{E007}").await;
    b.until(
        "the keyboard filter",
        "return location.hash.includes('actor_id=carol') && document.querySelectorAll('#events li.event').length === 1",
    )
    .await;
    assert_eq!(console.listed().await, ["inv1-paid"]);
    // Focus is visible.
    b.run("document.getElementById('sign-out').focus()", json!([]))
        .await;
    b.keys("\u{E004}").await;
    let outline = b
        .run(
            "const e = document.activeElement; const s = getComputedStyle(e); return [e.tagName, e.textContent, s.outlineStyle, s.outlineWidth]",
            json!([]),
        )
        .await;
    assert_eq!(
        outline,
        json!(["SUMMARY", "Filters (1 set)", "solid", "3px"])
    );
}

#[tokio::test]
async fn live_tail_shows_new_events_at_the_top_as_they_are_stored() {
    let events = story("acme", 5);
    let console = Console::new(&events, DESKTOP).await;
    console.open_as("acme", "#/events?live=1").await;
    assert_eq!(console.listed().await.len(), 9);
    let b = &console.browser;
    assert_eq!(
        b.run("return document.getElementById('live').checked", json!([]))
            .await,
        json!(true)
    );

    console
        .api
        .store(&[event(
            "acme",
            "late-1",
            &ago(0),
            "frank",
            "invoice.void",
            ("invoice", "inv_9"),
            json!({"status": {"before": "paid", "after": "void"}}),
        )])
        .await;

    b.until(
        "the new event at the top",
        "const e = document.querySelector('#events li.event'); return e.dataset.id === 'late-1' && e.classList.contains('fresh')",
    )
    .await;
    assert_eq!(console.listed().await.len(), 10);
    assert_eq!(b.text("#events-status").await, "10 events · end of the log");
}

// ---------------------------------------------------------------- the API, without a browser

fn text(response: &lambda_http::Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Empty => String::new(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn whoami_tells_the_tokens_tenant_subject_and_scopes() {
    let api = Api::new().await;
    let token = format!(
        "Bearer {}",
        api.issuer
            .token_for("acme", "auditor-7", &[Scope::EventsRead, Scope::AuditRead])
    );

    let (status, body) = api.get_as(&token, "/whoami", "").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"tenant_id": "acme", "subject": "auditor-7", "scopes": ["events:read", "audit:read"]})
    );
    assert!(api.access_log.events().is_empty(), "it reads no events");
    let (status, body) = api.get_as("", "/whoami", "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
}

#[tokio::test]
async fn the_console_files_need_no_token_and_carry_a_strict_policy() {
    let api = Api::new().await;

    let response = api.response_as("", "/console/", "").await;

    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'self'"),
        "{csp}"
    );
    assert!(text(&response).contains("app.js"));
    for asset in ["app.js", "verify.js", "app.css", "favicon.svg"] {
        let response = api.response_as("", &format!("/console/{asset}"), "").await;
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    assert!(api.access_log.events().is_empty());
}

#[tokio::test]
async fn the_export_comes_in_bounded_parts_each_continued_by_its_cursor_and_each_audited() {
    let api = Api::new().await;
    let events = story("acme", 25);
    api.store(&events).await;
    let token = api.issuer.bearer("acme", &[Scope::EventsRead]);

    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut parts = 0;
    loop {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("format", "ndjson")
            .append_pair("limit", "10");
        if let Some(cursor) = &cursor {
            query.append_pair("cursor", cursor);
        }
        let response = api.response_as(&token, "/export", &query.finish()).await;
        assert_eq!(response.status(), 200, "{}", text(&response));
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
        parts += 1;
        for line in text(&response).lines() {
            let event: Value = serde_json::from_str(line).unwrap();
            ids.push(event["id"].as_str().unwrap().to_string());
        }
        match response.headers().get("sentinel-next-cursor") {
            Some(next) => cursor = Some(next.to_str().unwrap().to_string()),
            None => break,
        }
    }

    assert_eq!(parts, 3);
    assert_eq!(ids, ids_of(&events, |_| true));
    let access = api.access_log.events();
    assert_eq!(access.len(), 3);
    assert!(access
        .iter()
        .all(|e| e.metadata.get("route") == Some(&json!("export"))));
    assert_eq!(access[0].metadata.get("rows"), Some(&json!(10)));
    // CSV: a header row, one row per event, JSON in the changes column, quoted.
    let response = api
        .response_as(&token, "/export", "format=csv&actor_id=bob")
        .await;
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"sentinel-events-acme.csv\""
    );
    let csv = text(&response);
    let rows: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows[1].starts_with("inv1-edited,acme,"), "{}", rows[1]);
    assert!(
        rows[1].contains(",\"{\"\"amount\"\":{\"\"after\"\":150,"),
        "{}",
        rows[1]
    );
}

#[tokio::test]
async fn a_large_export_stops_near_two_mib_and_its_parts_hold_every_event_once() {
    let api = Api::new().await;
    // 30 events of about 150 KB each: 4.5 MB in all, more than one part holds.
    let big = "q\"x".repeat(50_000);
    let events: Vec<AuditEvent> = (0..30)
        .map(|i| {
            let mut e = event(
                "acme",
                &format!("big-{i:02}"),
                &ago(i),
                "bulk",
                "invoice.update",
                ("invoice", "inv_big"),
                json!({"note": {"before": null, "after": i}}),
            );
            e.metadata =
                Metadata::parse(json!({ "blob": big }).as_object().unwrap().clone()).unwrap();
            e
        })
        .collect();
    api.store(&events).await;
    let token = api.issuer.bearer("acme", &[Scope::EventsRead]);

    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("format=csv&cursor={c}"),
            None => "format=csv".to_string(),
        };
        let response = api.response_as(&token, "/export", &query).await;
        assert_eq!(response.status(), 200);
        let csv = text(&response);
        sizes.push(serde_json::to_string(&csv).unwrap().len());
        ids.extend(
            csv.split("\r\n")
                .skip(1)
                .filter(|l| !l.is_empty())
                .map(|l| l.split(',').next().unwrap().to_string()),
        );
        match response.headers().get("sentinel-next-cursor") {
            Some(next) => cursor = Some(next.to_str().unwrap().to_string()),
            None => break,
        }
    }

    assert!(sizes.len() >= 3, "{sizes:?}");
    let limit = 2 * 1024 * 1024 + 400_000;
    assert!(sizes.iter().all(|&s| s < limit), "{sizes:?}");
    assert_eq!(ids, ids_of(&events, |_| true));
}

#[tokio::test]
async fn hostile_export_parameters_are_400s_that_name_them_and_nothing_is_read() {
    let api = Api::new().await;
    api.store(&story("acme", 3)).await;
    let long = "x".repeat(5000);
    let cases = [
        ("format=xlsx", "format"),
        ("format=csv&format=ndjson", "format"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("limit=10001", "limit"),
        ("page=2", "page"),
        ("per_page=5", "per_page"),
        ("from=yesterday", "from"),
        ("cursor=not-a-cursor", "cursor"),
        ("changed_to=paid", "changed_to"),
        ("drop=table", "drop"),
    ];
    for (query, named) in cases {
        let (status, body) = api.get("/export", query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], json!("invalid_parameter"), "{query}");
        assert!(
            body["error"]["fields"][named].is_string(),
            "{query}: {body}"
        );
    }
    let (status, body) = api.get("/export", &format!("actor_id={long}")).await;
    assert_eq!(status, 400);
    assert!(body["error"]["fields"]["actor_id"].is_string(), "{body}");
    let (status, body) = api.get("/export", &format!("{long}=1")).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["fields"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .chars()
            .count(),
        65,
        "a long name is cut (64 and an ellipsis)"
    );
    let (status, _) = api.get("/export", "tenant_id=globex").await;
    assert_eq!(status, 403, "another tenant");
    assert!(
        api.access_log.events().is_empty(),
        "a refused export reads nothing"
    );
    let (status, body) = api.get("/whoami", "anything=1").await;
    assert_eq!(status, 400, "whoami takes no parameters");
    assert!(body["error"]["fields"]["anything"].is_string(), "{body}");
}

// ---------------------------------------------------------------- measurement

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Loads `view` afresh `runs` times (after one warm-up) and answers the `mark`'s times, in
/// ms from the navigation's start, as the Performance API measures them.
async fn load_times(console: &Console, view: &str, mark: &str, runs: usize) -> Vec<f64> {
    let b = &console.browser;
    let mut times = Vec::new();
    for run in 0..=runs {
        b.goto("about:blank").await;
        b.goto(&format!("{}{view}", console.server.console())).await;
        let at = b
            .until(
                mark,
                &format!("return performance.getEntriesByName('{mark}')[0]?.startTime"),
            )
            .await;
        if run > 0 {
            times.push(at.as_f64().unwrap());
        }
    }
    times.sort_by(f64::total_cmp);
    times
}

/// Not part of the suite: it stores a million events (SENTINEL_CONSOLE_EVENTS to change
/// that). `cargo test -p query --test console -- --ignored --nocapture measure`
#[tokio::test]
#[ignore]
async fn measure_the_first_page_and_a_state_view_in_the_browser_with_a_million_events() {
    let total: usize = std::env::var("SENTINEL_CONSOLE_EVENTS")
        .map(|n| n.parse().unwrap())
        .unwrap_or(1_000_000);
    let api = Api::new().await;
    let started = std::time::Instant::now();
    let now = Utc::now();
    let actions = ["invoice.update", "invoice.pay", "invoice.send"];
    for chunk in (0..total).step_by(10_000) {
        let events: Vec<AuditEvent> = (chunk..(chunk + 10_000).min(total))
            .map(|i| {
                let at = (now - Duration::seconds(2 * i as i64))
                    .to_rfc3339_opts(SecondsFormat::Micros, true);
                event(
                    "acme",
                    &format!("m-{i:07}"),
                    &at,
                    &format!("user_{}", i % 500),
                    actions[i % 3],
                    ("invoice", &format!("inv_{}", i % 10_000)),
                    json!({"amount": {"before": i, "after": i + 1}, "status": {"before": "pending", "after": "paid"}}),
                )
            })
            .collect();
        api.store(&events).await;
    }
    let stored = started.elapsed();
    api.db
        .client()
        .await
        .batch_execute("ANALYZE")
        .await
        .unwrap();
    let api = Arc::new(api);
    let server = Server::start(api.clone()).await;
    let browser = Browser::start(DESKTOP.0, DESKTOP.1).await;
    let console = Console {
        api,
        server,
        browser,
    };
    console.open_as("acme", "").await;

    let runs = 20;
    let first_page = load_times(&console, "#/events", "sentinel:events-rendered", runs).await;
    let state = load_times(
        &console,
        "#/resources/invoice/inv_42",
        "sentinel:state-rendered",
        runs,
    )
    .await;

    println!("{total} events stored in {stored:.1?}");
    for (what, times) in [
        ("first page of events", &first_page),
        ("state view", &state),
    ] {
        println!(
            "{what}: p50 {:.0} ms, p95 {:.0} ms, min {:.0}, max {:.0} ({runs} loads)",
            percentile(times, 0.5),
            percentile(times, 0.95),
            times[0],
            times[times.len() - 1]
        );
    }
}
