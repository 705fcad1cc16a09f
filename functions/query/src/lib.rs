//! The query API: filtered, paginated reads, one event, a resource's history and its state
//! at a point in time. Every answer is JSON; every bad parameter is a 400 that names it.

use chrono::Utc;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Error, Request, Response};
use percent_encoding::percent_decode_str;
use sentinel_domain::query::{is_event_id, EventQuery, Params, StateQuery};
use sentinel_domain::read::EventReader;
use sentinel_domain::store::StoreError;
use sentinel_domain::validation::FieldErrors;
use sentinel_lambda::http::{json, method_not_allowed, not_found, unavailable};
use sentinel_lambda::ErrorBody;

fn invalid(fields: FieldErrors) -> Response<Body> {
    json(
        StatusCode::BAD_REQUEST,
        &ErrorBody::new(
            "invalid_parameter",
            "one or more query parameters are invalid",
        )
        .with_fields(fields),
    )
}

fn storage_error(error: StoreError) -> Response<Body> {
    match error {
        StoreError::Unavailable(reason) => {
            tracing::error!(%reason, "database unavailable");
            unavailable(ErrorBody::new(
                "service_unavailable",
                "the event store is unavailable; try again shortly",
            ))
        }
        StoreError::Refused(reason) => {
            tracing::error!(%reason, "query failed");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &ErrorBody::new("internal_error", "the query failed"),
            )
        }
    }
}

enum Route {
    List,
    Event(String),
    History(String, String),
    State(String, String),
}

fn route(path: &str) -> Option<Route> {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["events"] => Some(Route::List),
        ["events", id] if !id.is_empty() => Some(Route::Event(id.to_string())),
        ["resources", kind, id, "history"] => {
            Some(Route::History(kind.to_string(), id.to_string()))
        }
        ["resources", kind, id, "state"] => Some(Route::State(kind.to_string(), id.to_string())),
        _ => None,
    }
}

/// Handles one HTTP request against the reader.
#[tracing::instrument(skip_all, fields(method = %request.method(), path = %request.uri().path()))]
pub async fn handle(reader: &dyn EventReader, request: Request) -> Result<Response<Body>, Error> {
    let Some(route) = route(request.uri().path()) else {
        return Ok(not_found(
            "no such endpoint; see /events, /events/{id}, /resources/{type}/{id}/history and /resources/{type}/{id}/state",
        ));
    };
    if request.method() != Method::GET {
        return Ok(method_not_allowed(
            "GET",
            "the query API is read-only: use GET",
        ));
    }
    let query = request.uri().query();
    let response = match route {
        Route::List => match EventQuery::parse(query) {
            Err(fields) => invalid(fields),
            Ok(q) => match reader.list(&q).await {
                Ok(page) => json(StatusCode::OK, &page),
                Err(e) => storage_error(e),
            },
        },
        Route::History(kind, id) => match EventQuery::history(&kind, &id, query) {
            Err(fields) => invalid(fields),
            Ok(q) => match reader.list(&q).await {
                Ok(page) => json(StatusCode::OK, &page),
                Err(e) => storage_error(e),
            },
        },
        Route::State(kind, id) => match StateQuery::parse(&kind, &id, query, Utc::now()) {
            Err(fields) => invalid(fields),
            Ok(q) => match reader.state(&q).await {
                Ok(Some(state)) => json(StatusCode::OK, &state),
                Ok(None) => not_found("the resource has no events at or before `at`"),
                Err(e) => storage_error(e),
            },
        },
        Route::Event(id) if !is_event_id(&id) => not_found("no event with that id"),
        Route::Event(id) => match Params::parse(query, &["tenant_id"]).tenant() {
            Err(fields) => invalid(fields),
            Ok(tenant) => match reader.get(&tenant, &id).await {
                Ok(Some(event)) => json(StatusCode::OK, &event),
                Ok(None) => not_found("no event with that id"),
                Err(e) => storage_error(e),
            },
        },
    };
    tracing::info!(status = response.status().as_u16(), "query answered");
    Ok(response)
}
