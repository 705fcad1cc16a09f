//! Reads for the query API on PostgreSQL: filtered lists, one event, resource state.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use postgres_types::ToSql;
use serde_json::Value;
use tokio_postgres::Row;

use sentinel_domain::fields::{Changes, Metadata, Timestamp};
use sentinel_domain::query::{Cursor, EventQuery, Paging, Sort, StateQuery, EXACT_COUNT_LIMIT};
use sentinel_domain::read::EventReader;
pub use sentinel_domain::read::{
    FieldState, KeysetPage, OffsetMeta, OffsetPage, Page, ResourceState,
};
use sentinel_domain::store::StoreError;
use sentinel_domain::AuditEvent;

use crate::classify;

const SELECT: &str =
    "SELECT id, tenant_id, occurred_at, received_at, actor_id, actor_type, action, \
                      resource_type, resource_id, changes, metadata FROM audit_events";

type Param = Box<dyn ToSql + Sync + Send>;

/// A parameterized statement: the SQL never holds a value from the request.
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Statement {
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

fn where_clause(query: &EventQuery, statement: &mut Statement) -> String {
    let mut conditions = vec![format!(
        "tenant_id = {}",
        statement.bind(query.tenant_id.clone())
    )];
    for (column, value) in [
        ("actor_id", &query.actor_id),
        ("action", &query.action),
        ("resource_type", &query.resource_type),
        ("resource_id", &query.resource_id),
    ] {
        if let Some(value) = value {
            conditions.push(format!("{column} = {}", statement.bind(value.clone())));
        }
    }
    if let Some(from) = query.from {
        conditions.push(format!("occurred_at >= {}", statement.bind(from.get())));
    }
    if let Some(to) = query.to {
        conditions.push(format!("occurred_at < {}", statement.bind(to.get())));
    }
    if let Some(changed) = &query.changed {
        let documents = changed.containment();
        if documents.is_empty() {
            conditions.push(format!(
                "changes ? {}",
                statement.bind(changed.field.clone())
            ));
        } else {
            let alternatives: Vec<String> = documents
                .into_iter()
                .map(|doc| {
                    format!(
                        "changes @> {}::jsonb",
                        statement.bind(postgres_types::Json(doc))
                    )
                })
                .collect();
            conditions.push(format!("({})", alternatives.join(" OR ")));
        }
    }
    conditions.join(" AND ")
}

fn order(sort: Sort) -> &'static str {
    match sort {
        Sort::Newest => "occurred_at DESC, id DESC",
        Sort::Oldest => "occurred_at ASC, id ASC",
    }
}

/// The statement for one page of a list (keyset pages fetch one extra row to know if
/// another page follows).
pub fn list_statement(query: &EventQuery) -> Statement {
    let mut statement = Statement {
        sql: String::new(),
        params: Vec::new(),
    };
    let mut conditions = where_clause(query, &mut statement);
    let tail = match &query.paging {
        Paging::Keyset { limit, after } => {
            if let Some(cursor) = after {
                let op = match query.sort {
                    Sort::Newest => "<",
                    Sort::Oldest => ">",
                };
                let t = statement.bind(cursor.occurred_at().get());
                let i = statement.bind(cursor.id.clone());
                conditions.push_str(&format!(" AND (occurred_at, id) {op} ({t}, {i})"));
            }
            format!("LIMIT {}", statement.bind(limit + 1))
        }
        Paging::Offset { page, per_page } => {
            let offset = statement.bind((page - 1) * per_page);
            format!("OFFSET {offset} LIMIT {}", statement.bind(*per_page))
        }
    };
    statement.sql = format!(
        "{SELECT} WHERE {conditions} ORDER BY {} {tail}",
        order(query.sort)
    );
    statement
}

/// Counts matches up to [`EXACT_COUNT_LIMIT`] + 1, so a count never scans more than that.
pub fn count_statement(query: &EventQuery) -> Statement {
    let mut statement = Statement {
        sql: String::new(),
        params: Vec::new(),
    };
    let conditions = where_clause(query, &mut statement);
    let limit = statement.bind(EXACT_COUNT_LIMIT + 1);
    statement.sql = format!("SELECT count(*) FROM (SELECT 1 FROM audit_events WHERE {conditions} LIMIT {limit}) bounded");
    statement
}

fn estimate_statement(query: &EventQuery) -> Statement {
    let mut statement = Statement {
        sql: String::new(),
        params: Vec::new(),
    };
    let conditions = where_clause(query, &mut statement);
    statement.sql = format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM audit_events WHERE {conditions}");
    statement
}

/// A stored time, read back as a [`Timestamp`]: one outside its range (which RFC 3339 could
/// not write with a four-digit year) is an error, never served.
fn stored_time(row: &Row, index: usize) -> Result<Timestamp, StoreError> {
    let at = row
        .try_get(index)
        .map_err(|e| StoreError::Refused(format!("stored time {index} is unreadable: {e}")))?;
    Timestamp::new(at).map_err(|why| StoreError::Refused(format!("stored time {index} {why}")))
}

/// An event read back: every field goes through its type's parser again, so a row that was
/// altered behind the writer's back is an error, never served as valid.
fn event_from_row(row: &Row) -> Result<AuditEvent, StoreError> {
    let stored =
        |why: String| StoreError::Refused(format!("a stored event breaks its rules: {why}"));
    let unreadable = |e: tokio_postgres::Error| {
        StoreError::Refused(format!("a stored event is unreadable: {e}"))
    };
    fn field<T: std::str::FromStr<Err = String>>(row: &Row, index: usize) -> Result<T, StoreError> {
        let text: &str = row.try_get(index).map_err(|e| {
            StoreError::Refused(format!("stored column {index} is unreadable: {e}"))
        })?;
        text.parse()
            .map_err(|why| StoreError::Refused(format!("stored column {index} {why}")))
    }
    let object = |index: usize| match row.try_get::<_, Value>(index).map_err(unreadable)? {
        Value::Object(map) => Ok(map),
        _ => Err(stored(format!("column {index} is not a JSON object"))),
    };
    Ok(AuditEvent {
        id: field(row, 0)?,
        tenant_id: field(row, 1)?,
        occurred_at: stored_time(row, 2)?,
        received_at: stored_time(row, 3)?,
        actor_id: field(row, 4)?,
        actor_type: match row.try_get::<_, Option<&str>>(5).map_err(unreadable)? {
            None => None,
            Some(text) => Some(text.parse().map_err(stored)?),
        },
        action: field(row, 6)?,
        resource_type: field(row, 7)?,
        resource_id: field(row, 8)?,
        changes: Changes::parse_stored(object(9)?)
            .map_err(|errors| stored(format!("changes.{} {}", errors[0].0, errors[0].1)))?,
        metadata: Metadata::parse(object(10)?).map_err(stored)?,
    })
}

/// Read access to events. Connect it as a role with SELECT only (`sentinel_reader`).
#[derive(Clone)]
pub struct PgReader {
    pool: Pool,
}

impl PgReader {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("no database connection: {e}")))
    }

    #[tracing::instrument(skip_all)]
    pub async fn list(&self, query: &EventQuery) -> Result<Page, StoreError> {
        let client = self.client().await?;
        let statement = list_statement(query);
        let rows = client
            .query(&statement.sql, &statement.refs())
            .await
            .map_err(|e| classify(&e))?;
        let mut data = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<AuditEvent>, StoreError>>()?;
        match &query.paging {
            Paging::Keyset { limit, .. } => {
                let next_cursor = if data.len() as i64 > *limit {
                    data.truncate(*limit as usize);
                    data.last()
                        .map(|e| Cursor::after(e.occurred_at, &e.id, query.sort).encode())
                } else {
                    None
                };
                Ok(Page::Keyset(KeysetPage { data, next_cursor }))
            }
            Paging::Offset { page, per_page } => {
                let count = count_statement(query);
                let counted: i64 = client
                    .query_one(&count.sql, &count.refs())
                    .await
                    .map_err(|e| classify(&e))?
                    .get(0);
                let (total_count, exact) = if counted > EXACT_COUNT_LIMIT {
                    let estimate = estimate_statement(query);
                    let plan: Value = client
                        .query_one(&estimate.sql, &estimate.refs())
                        .await
                        .map_err(|e| classify(&e))?
                        .get(0);
                    let rows = plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0) as i64;
                    (rows.max(counted), false)
                } else {
                    (counted, true)
                };
                Ok(Page::Offset(OffsetPage {
                    data,
                    meta: OffsetMeta {
                        current_page: *page,
                        per_page: *per_page,
                        total_pages: (total_count + per_page - 1) / per_page,
                        total_count,
                        total_count_exact: exact,
                    },
                }))
            }
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<AuditEvent>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("{SELECT} WHERE id = $1 AND tenant_id = $2 LIMIT 1"),
                &[&id, &tenant_id],
            )
            .await
            .map_err(|e| classify(&e))?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// The resource's fields as of `query.at`, or None if it had no events by then.
    #[tracing::instrument(skip_all)]
    pub async fn state(&self, query: &StateQuery) -> Result<Option<ResourceState>, StoreError> {
        let client = self.client().await?;
        let at = query.at.get();
        let params: [&(dyn ToSql + Sync); 4] = [
            &query.tenant_id,
            &query.resource_type,
            &query.resource_id,
            &at,
        ];
        let summary = client
            .query_one(
                "SELECT count(*), (array_agg(id ORDER BY occurred_at DESC, id DESC))[1], max(occurred_at) \
                 FROM audit_events \
                 WHERE tenant_id = $1 AND resource_type = $2 AND resource_id = $3 AND occurred_at <= $4",
                &params,
            )
            .await
            .map_err(|e| classify(&e))?;
        let event_count: i64 = summary.get(0);
        if event_count == 0 {
            return Ok(None);
        }
        let rows = client
            .query(
                "SELECT DISTINCT ON (c.key) c.key, c.value -> 'after', e.id, e.occurred_at \
                 FROM audit_events e CROSS JOIN LATERAL jsonb_each(e.changes) c \
                 WHERE e.tenant_id = $1 AND e.resource_type = $2 AND e.resource_id = $3 AND e.occurred_at <= $4 \
                 ORDER BY c.key, e.occurred_at DESC, e.id DESC",
                &params,
            )
            .await
            .map_err(|e| classify(&e))?;
        let mut fields = BTreeMap::new();
        let mut removed_fields = BTreeMap::new();
        for row in rows {
            let value: Option<Value> = row.get(1);
            let state = FieldState {
                value: value.clone().unwrap_or(Value::Null),
                event_id: row.get(2),
                changed_at: stored_time(&row, 3)?,
            };
            match value {
                None | Some(Value::Null) => removed_fields.insert(row.get(0), state),
                Some(_) => fields.insert(row.get(0), state),
            };
        }
        Ok(Some(ResourceState {
            tenant_id: query.tenant_id.clone(),
            resource_type: query.resource_type.clone(),
            resource_id: query.resource_id.clone(),
            at: query.at,
            fields,
            removed_fields,
            event_count,
            last_event_id: summary.get(1),
            last_event_at: stored_time(&summary, 2)?,
        }))
    }
}

/// The port, for the handler. The inherent methods stay for callers that hold a `PgReader`.
#[async_trait]
impl EventReader for PgReader {
    async fn list(&self, query: &EventQuery) -> Result<Page, StoreError> {
        PgReader::list(self, query).await
    }

    async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<AuditEvent>, StoreError> {
        PgReader::get(self, tenant_id, id).await
    }

    async fn state(&self, query: &StateQuery) -> Result<Option<ResourceState>, StoreError> {
        PgReader::state(self, query).await
    }
}
