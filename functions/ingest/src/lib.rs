//! `POST /events`: validates audit events, puts them on the stream, answers 202 with their ids,
//! or 503 with the ids to send again, always before the invocation's deadline.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Error, Request, RequestExt, Response};
use sentinel_aws::kinesis::KinesisTimeouts;
use sentinel_domain::fields::IdempotencyKey;
use sentinel_domain::publish::{publish_before, OutgoingRecord, RecordSink, RetryPolicy};
use sentinel_domain::validation::{
    parse_request, FieldErrors, IngestRejection, KeyedIds, MAX_BODY_BYTES,
};
use sentinel_lambda::http::{error, json_text, method_not_allowed, not_found, unavailable};
use sentinel_lambda::identity::{foreign_tenant, Authenticator, Scope};
use sentinel_lambda::metrics::{Metrics, Unit};
use sentinel_lambda::settings::{parsed, required};
use sentinel_lambda::ErrorBody;
use serde_json::json;
use tokio::time::Instant;

/// The ingest function's settings, read once per cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub stream_name: String,
    pub budget: PublishBudget,
    pub kinesis: KinesisTimeouts,
}

impl Settings {
    /// `STREAM_NAME` is required; `PUBLISH_BUDGET_MS` and `PUBLISH_MARGIN_MS` default to
    /// [`PublishBudget::default`].
    pub fn from_env() -> anyhow::Result<Self> {
        let defaults = PublishBudget::default();
        Ok(Self {
            stream_name: required("STREAM_NAME")?,
            budget: PublishBudget {
                max: parsed("PUBLISH_BUDGET_MS", positive_millis)?.unwrap_or(defaults.max),
                margin: parsed("PUBLISH_MARGIN_MS", millis)?.unwrap_or(defaults.margin),
            },
            kinesis: KinesisTimeouts::default(),
        })
    }
}

/// Parses a duration setting given in whole milliseconds.
pub fn millis(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| "must be a whole number of milliseconds".into())
}

/// Parses a duration setting given in whole milliseconds, at least 1.
pub fn positive_millis(text: &str) -> Result<Duration, String> {
    match millis(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err("must be a whole number of milliseconds, at least 1".into()),
    }
}

/// How long a request may spend putting its events on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishBudget {
    /// The most a request spends publishing, however far off the invocation's deadline is.
    pub max: Duration,
    /// Kept back before the invocation's deadline, to write the answer.
    pub margin: Duration,
}

impl Default for PublishBudget {
    /// Inside the function's 10 s timeout and API Gateway's 12 s.
    fn default() -> Self {
        Self {
            max: Duration::from_secs(8),
            margin: Duration::from_secs(1),
        }
    }
}

impl PublishBudget {
    /// When publishing must be over: `max` from now, or `margin` before the invocation's
    /// deadline if that comes sooner. Without an invocation deadline, `max` from now.
    pub fn deadline(&self, invocation_deadline: Option<SystemTime>) -> Instant {
        let now = Instant::now();
        let allowed = match invocation_deadline.map(|d| d.duration_since(SystemTime::now())) {
            Some(Ok(left)) => self.max.min(left.saturating_sub(self.margin)),
            Some(Err(past)) if past.duration() <= self.margin => Duration::ZERO,
            // Lambda stops a function at its deadline, so one long past when the request is
            // handled is not a real deadline (cargo lambda sends one near the epoch, or a
            // clock went wrong): the budget alone bounds the publish.
            Some(Err(past)) => {
                tracing::warn!(
                    past_by_ms = past.duration().as_millis() as u64,
                    "the invocation deadline has already passed; bounding the publish by the budget"
                );
                self.max
            }
            None => self.max,
        };
        now + allowed
    }
}

/// What the handler needs, built once per cold start.
pub struct Ingest {
    sink: Arc<dyn RecordSink>,
    auth: Arc<Authenticator>,
    policy: RetryPolicy,
    budget: PublishBudget,
}

impl Ingest {
    pub fn new(sink: Arc<dyn RecordSink>, auth: Arc<Authenticator>) -> Self {
        Self::with_policy(sink, auth, RetryPolicy::default())
    }

    pub fn with_policy(
        sink: Arc<dyn RecordSink>,
        auth: Arc<Authenticator>,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            sink,
            auth,
            policy,
            budget: PublishBudget::default(),
        }
    }

    pub fn with_budget(self, budget: PublishBudget) -> Self {
        Self { budget, ..self }
    }
}

/// The invocation's deadline, when the request came through the Lambda runtime.
fn invocation_deadline(request: &Request) -> Option<SystemTime> {
    request
        .lambda_context_ref()
        .filter(|context| context.deadline > 0)
        .map(|context| context.deadline())
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// What one request did, for its metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Events the stream took.
    pub accepted: u64,
    /// Events valid but not taken by the stream after every retry (a 503).
    pub unaccepted: u64,
    /// Records sent to the stream again after it refused them.
    pub retried_records: u64,
}

/// The request's metrics (EMF): events accepted, events the stream never took, publish
/// retries, and the request refused (by its status) if it was.
pub fn metrics(tally: &Tally, status: StatusCode, took: std::time::Duration) -> Metrics {
    let mut m = Metrics::new("ingest");
    m.put("EventsAccepted", Unit::Count, tally.accepted as f64)
        .put("EventsUnaccepted", Unit::Count, tally.unaccepted as f64)
        .put("PublishRetries", Unit::Count, tally.retried_records as f64)
        .put(
            "RequestsRefused",
            Unit::Count,
            if status.is_client_error() { 1.0 } else { 0.0 },
        )
        .put(
            "RequestTime",
            Unit::Milliseconds,
            took.as_secs_f64() * 1000.0,
        );
    m
}

/// Handles one HTTP request. Every answer, error or not, is JSON. Writes the request's
/// metrics line.
pub async fn handle(state: &Ingest, request: Request) -> Result<Response<Body>, Error> {
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    let response = answer(state, request, &mut tally).await?;
    metrics(&tally, response.status(), started.elapsed()).emit();
    Ok(response)
}

/// Answers one request, counting in `tally` what it did.
#[tracing::instrument(skip_all, fields(method = %request.method(), path = %request.uri().path(), tenant))]
pub async fn answer(
    state: &Ingest,
    request: Request,
    tally: &mut Tally,
) -> Result<Response<Body>, Error> {
    let path = request.uri().path().trim_end_matches('/');
    if path != "/events" {
        return Ok(not_found("no such endpoint; events are posted to /events"));
    }
    if request.method() != Method::POST {
        return Ok(method_not_allowed("POST", "use POST to send events"));
    }
    let principal = match state.auth.authorize(&request, Scope::EventsWrite).await {
        Ok(principal) => principal,
        Err(refused) => return Ok(*refused),
    };
    tracing::Span::current().record("tenant", principal.tenant.as_str());
    if !is_json(&request) {
        return Ok(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorBody::new(
                "unsupported_media_type",
                "send events as Content-Type: application/json",
            ),
        ));
    }
    let body: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if body.len() > MAX_BODY_BYTES {
        return Ok(too_large());
    }
    let idempotency_key = match idempotency_key(&request) {
        Ok(key) => key,
        Err(why) => {
            tracing::info!(%why, "invalid Idempotency-Key refused");
            return Ok(error(
                StatusCode::BAD_REQUEST,
                ErrorBody::new(
                    "invalid_idempotency_key",
                    "the Idempotency-Key header is invalid; nothing was accepted",
                )
                .with_fields(FieldErrors::from([(
                    IDEMPOTENCY_KEY_HEADER.to_string(),
                    why,
                )])),
            ));
        }
    };

    let now = Utc::now();
    let parsed = match &idempotency_key {
        Some(key) => {
            let ids = KeyedIds {
                tenant: &principal.tenant,
                key,
            };
            parse_request(body, now, &principal.tenant, ids)
        }
        None => parse_request(body, now, &principal.tenant, uuid_v7),
    };
    let events = match parsed {
        Ok(events) => events,
        Err(IngestRejection::TooLarge) => return Ok(too_large()),
        Err(IngestRejection::ForeignTenant(fields)) => {
            tracing::warn!(
                subject = %principal.subject,
                fields = fields.len(),
                "events naming another tenant refused"
            );
            return Ok(foreign_tenant(fields));
        }
        Err(IngestRejection::Malformed(reason)) => {
            tracing::info!(%reason, "malformed request body");
            return Ok(error(
                StatusCode::BAD_REQUEST,
                ErrorBody::new(
                    "malformed_json",
                    format!("request body is not valid JSON: {reason}"),
                ),
            ));
        }
        Err(IngestRejection::Invalid(fields)) => {
            tracing::info!(invalid_fields = fields.len(), "invalid events refused");
            return Ok(error(
                StatusCode::BAD_REQUEST,
                ErrorBody::new(
                    "validation_failed",
                    "one or more events are invalid; nothing was accepted",
                )
                .with_fields(fields),
            ));
        }
    };

    let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    let records = events.iter().map(OutgoingRecord::from_event).collect();
    let deadline = state.budget.deadline(invocation_deadline(&request));
    let report = publish_before(state.sink.as_ref(), records, &state.policy, deadline).await;
    tally.accepted = report.accepted.len() as u64;
    tally.unaccepted = report.unaccepted.len() as u64;
    tally.retried_records = u64::from(report.retried_records);
    if report.is_complete() {
        tracing::info!(
            accepted = ids.len(),
            calls = report.calls,
            "events accepted"
        );
        return Ok(json_text(
            StatusCode::ACCEPTED,
            json!({ "ids": ids }).to_string(),
        ));
    }
    tracing::error!(
        accepted = report.accepted.len(),
        unaccepted = report.unaccepted.len(),
        reasons = ?report.unaccepted.iter().map(|(_, r)| r.as_str()).collect::<std::collections::BTreeSet<_>>(),
        "the stream did not accept every event"
    );
    let unaccepted: Vec<&str> = report
        .unaccepted
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    Ok(unavailable(
        ErrorBody::new(
            "stream_unavailable",
            format!(
                "{} of {} events were not accepted; send the request again with these ids \
                 (set each event's \"id\"): events already accepted are stored once",
                unaccepted.len(),
                ids.len()
            ),
        )
        .with("ids", json!(ids))
        .with("unaccepted_ids", json!(unaccepted)),
    ))
}

/// The request header whose value keys a request's ids (like WorkOS's and Stripe's).
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The request's `Idempotency-Key`, if it has one; refused when given twice or invalid.
fn idempotency_key(request: &Request) -> Result<Option<IdempotencyKey>, String> {
    let mut values = request.headers().get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("must be given once".into());
    }
    let text = value
        .to_str()
        .map_err(|_| "may only contain visible ASCII characters (no spaces)".to_string())?;
    IdempotencyKey::parse(text).map(Some)
}

fn too_large() -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorBody::new(
            "payload_too_large",
            format!("request body must be at most {MAX_BODY_BYTES} bytes; split the batch"),
        ),
    )
}

fn uuid_v7() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: PublishBudget = PublishBudget {
        max: Duration::from_secs(8),
        margin: Duration::from_secs(1),
    };

    /// Asserts that `deadline` lies `expected` from now, give or take the time a slow machine
    /// takes to get here.
    fn assert_in(deadline: Instant, expected: Duration) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            left <= expected && left + Duration::from_millis(900) > expected,
            "{left:?} left, expected {expected:?}"
        );
    }

    #[test]
    fn an_invocation_deadline_already_past_is_not_trusted_and_the_budget_applies() {
        let budget = PublishBudget {
            max: Duration::from_secs(2),
            margin: Duration::from_secs(1),
        };

        let deadline = budget.deadline(Some(SystemTime::now() - Duration::from_secs(60)));

        assert_in(deadline, Duration::from_secs(2));
    }

    #[test]
    fn without_an_invocation_the_deadline_is_the_whole_budget() {
        assert_in(BUDGET.deadline(None), Duration::from_secs(8));
    }

    #[test]
    fn a_near_invocation_deadline_less_the_margin_wins_over_the_budget() {
        let invocation = SystemTime::now() + Duration::from_secs(4);

        assert_in(BUDGET.deadline(Some(invocation)), Duration::from_secs(3));
    }

    #[test]
    fn a_far_invocation_deadline_leaves_the_budget_in_force() {
        let invocation = SystemTime::now() + Duration::from_secs(900);

        assert_in(BUDGET.deadline(Some(invocation)), Duration::from_secs(8));
    }

    #[test]
    fn an_invocation_inside_its_margin_leaves_no_time_to_publish() {
        for invocation in [
            SystemTime::now() + Duration::from_millis(500),
            SystemTime::now(),
            SystemTime::now() - Duration::from_millis(900),
        ] {
            let deadline = BUDGET.deadline(Some(invocation));

            assert!(deadline <= Instant::now(), "{invocation:?}");
        }
    }

    #[test]
    fn durations_are_read_in_whole_milliseconds() {
        assert_eq!(millis("1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(millis("0"), Ok(Duration::ZERO));
        assert_eq!(
            millis("1.5s"),
            Err("must be a whole number of milliseconds".to_string())
        );
        assert_eq!(
            positive_millis("0"),
            Err("must be a whole number of milliseconds, at least 1".to_string())
        );
        assert_eq!(positive_millis("250"), Ok(Duration::from_millis(250)));
    }
}
