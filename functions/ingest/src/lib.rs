//! `POST /events`: validates audit events, puts them on the stream, answers 202 with their ids.

use std::sync::Arc;

use chrono::Utc;
use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Error, Request, Response};
use sentinel_domain::publish::{publish, OutgoingRecord, RecordSink, RetryPolicy};
use sentinel_domain::validation::{parse_request, IngestRejection, MAX_BODY_BYTES};
use sentinel_lambda::http::{error, json_text, method_not_allowed, not_found, unavailable};
use sentinel_lambda::ErrorBody;
use serde_json::json;

/// What the handler needs, built once per cold start.
pub struct Ingest {
    sink: Arc<dyn RecordSink>,
    policy: RetryPolicy,
}

impl Ingest {
    pub fn new(sink: Arc<dyn RecordSink>) -> Self {
        Self::with_policy(sink, RetryPolicy::default())
    }

    pub fn with_policy(sink: Arc<dyn RecordSink>, policy: RetryPolicy) -> Self {
        Self { sink, policy }
    }
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Handles one HTTP request. Every answer, error or not, is JSON.
#[tracing::instrument(skip_all, fields(method = %request.method(), path = %request.uri().path()))]
pub async fn handle(state: &Ingest, request: Request) -> Result<Response<Body>, Error> {
    let path = request.uri().path().trim_end_matches('/');
    if path != "/events" {
        return Ok(not_found("no such endpoint; events are posted to /events"));
    }
    if request.method() != Method::POST {
        return Ok(method_not_allowed("POST", "use POST to send events"));
    }
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

    let events = match parse_request(body, Utc::now(), uuid_v7) {
        Ok(events) => events,
        Err(IngestRejection::TooLarge) => return Ok(too_large()),
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

    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let records = events.iter().map(OutgoingRecord::from_event).collect();
    let report = publish(state.sink.as_ref(), records, &state.policy).await;
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
