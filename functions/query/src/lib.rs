//! The query API: filtered, paginated reads, one event, a resource's history and its state
//! at a point in time. Every caller is authenticated and reads its own tenant; every
//! answered read leaves an access event in the caller's tenant log. Every answer is JSON
//! (but an export's file and the console's files, under `/console/`, served without a
//! token); every bad parameter is a 400 that names it.

pub mod console;
pub mod export;

use std::time::Duration;

use chrono::Utc;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Error, Request, Response};
use percent_encoding::percent_decode_str;
use sentinel_domain::access::{is_access_event, Read, ACCESS_ACTION};
use sentinel_domain::fields::{EventId, TenantId, Timestamp};
use sentinel_domain::log::{CheckpointAnswer, ConsistencyError, LogReader};
use sentinel_domain::publish::{publish_before, OutgoingRecord, RecordSink, RetryPolicy};
use sentinel_domain::query::{is_event_id, EventQuery, Params, StateQuery, CONSISTENCY_PARAMS};
use sentinel_domain::read::{EventReader, Page};
use sentinel_domain::store::StoreError;
use sentinel_domain::validation::FieldErrors;
use sentinel_lambda::http::{error, json, method_not_allowed, not_found, unavailable};
use sentinel_lambda::identity::{foreign_tenant, Authenticator, Principal, Scope};
use sentinel_lambda::metrics::{Metrics, Unit};
use sentinel_lambda::ErrorBody;
use serde_json::{Map, Value};

/// How long an answer may wait for its access event to be on the stream.
pub const ACCESS_LOG_BUDGET: Duration = Duration::from_secs(2);

/// What the handler needs, built once per cold start.
pub struct Query<'a> {
    pub reader: &'a dyn EventReader,
    /// The verifiable log: checkpoints and proofs.
    pub log: &'a dyn LogReader,
    pub auth: &'a Authenticator,
    /// The stream access events are written to (the write path's own).
    pub access_log: &'a dyn RecordSink,
}

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

const NO_SUCH_EVENT: &str = "no event with that id";
const NO_CHECKPOINT: &str =
    "no checkpoint has been signed for this tenant yet; one follows within a minute of its first event";

/// 409 for an event that is in the log but that no signed checkpoint covers yet.
fn not_yet_checkpointed(log_index: u64) -> Response<Body> {
    let mut response = error(
        StatusCode::CONFLICT,
        ErrorBody::new(
            "not_yet_checkpointed",
            format!(
                "the event is at log index {log_index}, but no signed checkpoint covers it yet; checkpoints follow within a minute, try again then"
            ),
        ),
    );
    response.headers_mut().insert(
        lambda_http::http::header::RETRY_AFTER,
        lambda_http::http::HeaderValue::from_static("30"),
    );
    response
}

/// An answer that ends the request early (boxed: a response is large).
type Refusal = Box<Response<Body>>;

fn refused(error: StoreError) -> Refusal {
    Box::new(storage_error(error))
}

enum Route {
    List,
    Event(String),
    Proof(String),
    Checkpoint,
    Consistency,
    History(String, String),
    State(String, String),
    WhoAmI,
    Export,
}

impl Route {
    fn name(&self) -> &'static str {
        match self {
            Route::List => "list",
            Route::Event(_) => "get",
            Route::Proof(_) => "proof",
            Route::Checkpoint => "checkpoint",
            Route::Consistency => "consistency",
            Route::History(..) => "history",
            Route::State(..) => "state",
            Route::WhoAmI => "whoami",
            Route::Export => "export",
        }
    }
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
        ["events", id, "proof"] if !id.is_empty() => Some(Route::Proof(id.to_string())),
        ["checkpoint"] => Some(Route::Checkpoint),
        ["whoami"] => Some(Route::WhoAmI),
        ["export"] => Some(Route::Export),
        ["consistency"] => Some(Route::Consistency),
        ["resources", kind, id, "history"] => {
            Some(Route::History(kind.to_string(), id.to_string()))
        }
        ["resources", kind, id, "state"] => Some(Route::State(kind.to_string(), id.to_string())),
        _ => None,
    }
}

/// What a request was, for its metrics: the route's name and the rows it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// `list`, `get`, `proof`, `checkpoint`, `consistency`, `history`, `state`, `whoami`,
    /// `export`, `console`, or `unknown`.
    pub route: &'static str,
    /// Events (or state fields) in the answer, if it was a read.
    pub rows: Option<usize>,
}

impl Default for Served {
    fn default() -> Self {
        Self {
            route: "unknown",
            rows: None,
        }
    }
}

/// The request's metrics (EMF), under the `Route` dimension: its latency, its rows, and
/// whether it was refused (4xx) or failed (5xx).
pub fn metrics(served: &Served, status: StatusCode, took: Duration) -> Metrics {
    let mut m = Metrics::new("query").dimension("Route", served.route);
    m.put("Latency", Unit::Milliseconds, took.as_secs_f64() * 1000.0)
        .put_all(
            "Rows",
            Unit::Count,
            served.rows.iter().map(|&r| r as f64).collect(),
        )
        .put(
            "ClientErrors",
            Unit::Count,
            if status.is_client_error() { 1.0 } else { 0.0 },
        )
        .put(
            "ServerErrors",
            Unit::Count,
            if status.is_server_error() { 1.0 } else { 0.0 },
        );
    m
}

/// Handles one HTTP request, and writes its metrics line.
pub async fn handle(state: &Query<'_>, request: Request) -> Result<Response<Body>, Error> {
    let started = std::time::Instant::now();
    let mut served = Served::default();
    let response = respond(state, request, &mut served).await?;
    metrics(&served, response.status(), started.elapsed()).emit();
    Ok(response)
}

/// Answers one request, noting in `served` what it was.
#[tracing::instrument(skip_all, fields(method = %request.method(), path = %request.uri().path(), tenant))]
pub async fn respond(
    state: &Query<'_>,
    request: Request,
    served: &mut Served,
) -> Result<Response<Body>, Error> {
    if console::is_console(request.uri().path()) {
        served.route = "console";
        return Ok(console::serve(
            request.method(),
            request.uri().path(),
            request.headers(),
        ));
    }
    let Some(route) = route(request.uri().path()) else {
        return Ok(not_found(
            "no such endpoint; see /events, /events/{id}, /events/{id}/proof, /resources/{type}/{id}/history, /resources/{type}/{id}/state, /checkpoint, /consistency, /export, /whoami and the console at /console/",
        ));
    };
    served.route = route.name();
    if request.method() != Method::GET {
        return Ok(method_not_allowed(
            "GET",
            "the query API is read-only: use GET",
        ));
    }
    let principal = match state.auth.authorize(&request, Scope::EventsRead).await {
        Ok(principal) => principal,
        Err(refused) => return Ok(*refused),
    };
    tracing::Span::current().record("tenant", principal.tenant.as_str());
    let query = request.uri().query();
    let answer = match answer(state, &principal, route, query).await {
        Ok(answer) => answer,
        Err(response) => return Ok(*response),
    };
    served.rows = answer.read.as_ref().map(|r| r.rows);
    let response = match answer.read {
        Some(read) => match record_read(state, &principal, &read).await {
            Ok(()) => answer.response,
            Err(response) => *response,
        },
        None => answer.response,
    };
    tracing::info!(status = response.status().as_u16(), "query answered");
    Ok(response)
}

/// An answer, and the read it must be recorded as (none for a read of the access log).
struct Answer {
    response: Response<Body>,
    read: Option<Read>,
}

/// The tenant a query reads: the caller's, or, for an operator, the one it names.
fn readable(principal: &Principal, tenant: &str) -> Result<TenantId, Refusal> {
    if tenant == principal.tenant.as_str() {
        return Ok(principal.tenant.clone());
    }
    if principal.has(Scope::TenantsRead) {
        return tenant
            .parse()
            .map_err(|why: String| Box::new(invalid([("tenant_id".to_string(), why)].into())));
    }
    Err(Box::new(foreign_tenant(
        [(
            "tenant_id".to_string(),
            format!(
                "must be the caller's own tenant (or left out); reading another needs {}",
                Scope::TenantsRead
            ),
        )]
        .into(),
    )))
}

/// The request's parameters, as given, for the access event (they have passed the query's
/// checks by then).
fn filters(query: Option<&str>) -> Map<String, Value> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect()
}

fn page_rows(page: &Page) -> usize {
    match page {
        Page::Keyset(page) => page.data.len(),
        Page::Offset(page) => page.data.len(),
    }
}

async fn answer(
    state: &Query<'_>,
    principal: &Principal,
    route: Route,
    query: Option<&str>,
) -> Result<Answer, Refusal> {
    let audit_reader = principal.has(Scope::AuditRead);
    let reads_access_log = |q: &EventQuery| q.action.as_deref() == Some(ACCESS_ACTION);
    let needs_audit_read = || {
        error(
            StatusCode::FORBIDDEN,
            ErrorBody::new(
                "forbidden",
                format!(
                    "reading the access log needs the {} scope",
                    Scope::AuditRead
                ),
            )
            .with_fields(
                [(
                    "action".to_string(),
                    format!("{ACCESS_ACTION} needs {}", Scope::AuditRead),
                )]
                .into(),
            ),
        )
    };
    Ok(match route {
        Route::WhoAmI => {
            // It takes no parameters, and reads no events: the caller's own token, told back.
            Params::parse(query, &[])
                .tenant(&principal.tenant)
                .map_err(|f| Box::new(invalid(f)))?;
            let caller = serde_json::json!({
                "tenant_id": principal.tenant.as_str(),
                "subject": principal.subject.as_str(),
                "scopes": principal.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            });
            Answer {
                response: json(StatusCode::OK, &caller),
                read: None,
            }
        }
        Route::Export => {
            let mut q = export::ExportQuery::parse(query, &principal.tenant)
                .map_err(|f| Box::new(invalid(f)))?;
            let tenant = readable(principal, &q.events.tenant_id)?;
            if reads_access_log(&q.events) && !audit_reader {
                return Err(Box::new(needs_audit_read()));
            }
            q.events.include_access_events = audit_reader;
            let exported = export::export(state.reader, &q).await.map_err(refused)?;
            let mut read = Read::list(tenant.clone(), filters(query), exported.rows);
            read.route = "export";
            Answer {
                response: export::response(exported, q.format, tenant.as_str()),
                read: (!reads_access_log(&q.events)).then_some(read),
            }
        }
        Route::List | Route::History(..) => {
            let parsed = match &route {
                Route::History(kind, id) => EventQuery::history(kind, id, query, &principal.tenant),
                _ => EventQuery::parse(query, &principal.tenant),
            };
            let mut q = parsed.map_err(|f| Box::new(invalid(f)))?;
            let tenant = readable(principal, &q.tenant_id)?;
            if reads_access_log(&q) && !audit_reader {
                return Err(Box::new(needs_audit_read()));
            }
            q.include_access_events = audit_reader;
            let page = state.reader.list(&q).await.map_err(refused)?;
            let rows = page_rows(&page);
            let read = match &route {
                Route::History(kind, id) => {
                    Read::resource("history", tenant, kind, id, filters(query), rows)
                }
                _ => Read::list(tenant, filters(query), rows),
            };
            Answer {
                response: json(StatusCode::OK, &page),
                read: (!reads_access_log(&q)).then_some(read),
            }
        }
        Route::State(kind, id) => {
            let q = StateQuery::parse(&kind, &id, query, Utc::now(), &principal.tenant)
                .map_err(|f| Box::new(invalid(f)))?;
            let tenant = readable(principal, &q.tenant_id)?;
            let found = state.reader.state(&q).await.map_err(refused)?;
            let rows = found.as_ref().map_or(0, |s| s.fields.len());
            let read = Read::resource("state", tenant, &kind, &id, filters(query), rows);
            let response = match found {
                Some(found) => json(StatusCode::OK, &found),
                None => not_found("the resource has no events at or before `at`"),
            };
            Answer {
                response,
                read: Some(read),
            }
        }
        Route::Checkpoint => {
            let tenant = Params::parse(query, &["tenant_id"])
                .tenant(&principal.tenant)
                .map_err(|f| Box::new(invalid(f)))?;
            let tenant = readable(principal, &tenant)?;
            let latest = state
                .log
                .latest_checkpoint(&tenant)
                .await
                .map_err(refused)?;
            let read = Read::log(
                "checkpoint",
                tenant,
                filters(query),
                usize::from(latest.is_some()),
            );
            let response = match &latest {
                Some(checkpoint) => json(StatusCode::OK, &CheckpointAnswer::from(checkpoint)),
                None => not_found(NO_CHECKPOINT),
            };
            Answer {
                response,
                read: Some(read),
            }
        }
        Route::Consistency => {
            let q = Params::parse(query, CONSISTENCY_PARAMS)
                .consistency(&principal.tenant)
                .map_err(|f| Box::new(invalid(f)))?;
            let tenant = readable(principal, &q.tenant_id)?;
            let read = Read::log("consistency", tenant.clone(), filters(query), 1);
            let response = match state.log.consistency(&tenant, q.from, q.to).await {
                Ok((checkpoint, proof)) => json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "from": q.from,
                        "to": checkpoint.size,
                        "consistency_proof": proof.iter().map(|h| h.to_base64()).collect::<Vec<_>>(),
                        "checkpoint": CheckpointAnswer::from(&checkpoint),
                    }),
                ),
                Err(ConsistencyError::NoCheckpoint) => not_found(NO_CHECKPOINT),
                Err(ConsistencyError::Range(why)) => {
                    let field = if q.to.is_some() && why.starts_with("no checkpoint") {
                        "to"
                    } else {
                        "from"
                    };
                    invalid([(field.to_string(), why)].into())
                }
                Err(ConsistencyError::Store(e)) => return Err(refused(e)),
            };
            Answer {
                response,
                read: Some(read),
            }
        }
        Route::Proof(id) if !is_event_id(&id) => Answer {
            response: not_found(NO_SUCH_EVENT),
            read: None,
        },
        Route::Proof(id) => {
            let tenant = Params::parse(query, &["tenant_id"])
                .tenant(&principal.tenant)
                .map_err(|f| Box::new(invalid(f)))?;
            let tenant = readable(principal, &tenant)?;
            let found = state
                .log
                .event_in_log(&tenant, &id)
                .await
                .map_err(refused)?
                .filter(|found| audit_reader || !is_access_event(&found.event));
            let read_of_access_log = found.as_ref().is_some_and(|f| is_access_event(&f.event));
            let mut read = Read::get(tenant, &id, usize::from(found.is_some()));
            read.route = "proof";
            let response = match found {
                None => not_found(NO_SUCH_EVENT),
                Some(found) => match &found.proof {
                    Some((checkpoint, path)) => json(
                        StatusCode::OK,
                        &serde_json::json!({
                            "event": found.event,
                            "log_index": found.log_index,
                            "canonical_record": String::from_utf8(found.event.encode())
                                .expect("the canonical encoding is JSON text"),
                            "leaf_hash": found.event.leaf_hash().to_base64(),
                            "tree_size": checkpoint.size,
                            "inclusion_proof": path.iter().map(|h| h.to_base64()).collect::<Vec<_>>(),
                            "checkpoint": CheckpointAnswer::from(checkpoint),
                        }),
                    ),
                    None => not_yet_checkpointed(found.log_index),
                },
            };
            Answer {
                response,
                read: (!read_of_access_log).then_some(read),
            }
        }
        Route::Event(id) if !is_event_id(&id) => Answer {
            response: not_found(NO_SUCH_EVENT),
            read: None,
        },
        Route::Event(id) => {
            let tenant = Params::parse(query, &["tenant_id"])
                .tenant(&principal.tenant)
                .map_err(|f| Box::new(invalid(f)))?;
            let tenant = readable(principal, &tenant)?;
            // Another tenant's event is not found, exactly as one that does not exist.
            let found = state
                .reader
                .get(tenant.as_str(), &id)
                .await
                .map_err(refused)?
                .filter(|event| audit_reader || !is_access_event(event));
            let read_of_access_log = found.as_ref().is_some_and(is_access_event);
            let read = Read::get(tenant, &id, usize::from(found.is_some()));
            let response = match found {
                Some(event) => json(StatusCode::OK, &event),
                None => not_found(NO_SUCH_EVENT),
            };
            Answer {
                response,
                read: (!read_of_access_log).then_some(read),
            }
        }
    })
}

/// Puts the read's access events on the stream: one in the caller's tenant, and one in the
/// tenant read if that is another. The answer waits for them; a read that cannot be recorded
/// is not answered.
async fn record_read(state: &Query<'_>, principal: &Principal, read: &Read) -> Result<(), Refusal> {
    let now = Timestamp::now();
    let scopes: Vec<&str> = principal.scopes.iter().map(|s| s.as_str()).collect();
    let mut tenants = vec![principal.tenant.clone()];
    if read.tenant_read != principal.tenant {
        tenants.push(read.tenant_read.clone());
    }
    let records: Vec<OutgoingRecord> = tenants
        .iter()
        .map(|tenant| {
            let id = EventId::parse(uuid::Uuid::now_v7().to_string()).expect("a UUID is an id");
            OutgoingRecord::from_event(&read.event(tenant, &principal.subject, &scopes, id, now))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + ACCESS_LOG_BUDGET;
    let report = publish_before(state.access_log, records, &RetryPolicy::default(), deadline).await;
    if report.is_complete() {
        return Ok(());
    }
    tracing::error!(
        unaccepted = report.unaccepted.len(),
        "the access log did not accept a read's access event; the answer is withheld"
    );
    Err(Box::new(unavailable(ErrorBody::new(
        "access_log_unavailable",
        "the read could not be recorded in the access log, so it was not answered; try again shortly",
    ))))
}

/// The query function's settings, read once per cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The stream access events are written to (`STREAM_NAME`, the write path's).
    pub stream_name: String,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            stream_name: sentinel_lambda::settings::required("STREAM_NAME")?,
        })
    }
}
