//! Reads for the query API on PostgreSQL: filtered lists, one event, resource state.
//!
//! Rows are fetched a few at a time through a portal, so an answer stops at its byte budget
//! without the rest of the rows ever leaving the database.

use std::sync::LazyLock;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use postgres_types::{ToSql, Type};
use serde_json::Value;
use tokio_postgres::{Row, Transaction};

use sentinel_domain::fields::{Changes, Metadata, Timestamp};
use sentinel_domain::query::{EventQuery, Paging, Sort, StateQuery, EXACT_COUNT_LIMIT};
use sentinel_domain::read::{EventReader, PageBuilder, StateBuilder, StateSummary};
pub use sentinel_domain::read::{
    FieldState, KeysetPage, OffsetMeta, OffsetPage, Page, ResourceState,
};
use sentinel_domain::store::StoreError;
use sentinel_domain::AuditEvent;

use crate::classify;

/// Rows fetched per round trip: a bounded amount of memory even when every row is a
/// 256 KiB event, and few round trips for a page of small ones.
const FETCH_ROWS: i32 = 64;

/// Every stored column of an event, in the writer's order (the one column list).
static SELECT: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM tenant_events", *crate::writer::COLUMNS));

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
    if !query.include_access_events {
        conditions.push(format!(
            "action <> {}",
            statement.bind(sentinel_domain::access::ACCESS_ACTION)
        ));
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
        "{} WHERE {conditions} ORDER BY {} {tail}",
        *SELECT,
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
    statement.sql = format!("SELECT count(*) FROM (SELECT 1 FROM tenant_events WHERE {conditions} LIMIT {limit}) bounded");
    statement
}

fn estimate_statement(query: &EventQuery) -> Statement {
    let mut statement = Statement {
        sql: String::new(),
        params: Vec::new(),
    };
    let conditions = where_clause(query, &mut statement);
    statement.sql = format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM tenant_events WHERE {conditions}");
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
pub(crate) fn event_from_row(row: &Row) -> Result<AuditEvent, StoreError> {
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

/// Names the tenant the transaction reads, for the row-level security policy of the reader
/// role (`sentinel.tenant_id`, for this transaction only). Typed, so it takes one message
/// and no round trip of its own: it is sent ahead of the read it guards.
pub(crate) async fn read_tenant(
    transaction: &Transaction<'_>,
    tenant: &str,
) -> Result<(), StoreError> {
    transaction
        .query_typed(
            "SELECT set_config('sentinel.tenant_id', $1, true)",
            &[(&tenant, Type::TEXT)],
        )
        .await
        .map(drop)
        .map_err(|e| classify(&e))
}

/// A read-only, repeatable-read transaction that names the tenant it reads (as
/// [`read_tenant`]): one snapshot for every query of an answer.
pub(crate) async fn tenant_snapshot<'a>(
    client: &'a mut deadpool_postgres::Client,
    tenant: &str,
) -> Result<deadpool_postgres::Transaction<'a>, StoreError> {
    let transaction = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(|e| classify(&e))?;
    read_tenant(&transaction, tenant).await?;
    Ok(transaction)
}

/// Runs `statement` in `transaction` and offers its rows, [`FETCH_ROWS`] at a time, until
/// `offer` refuses one or the rows run out.
async fn offer_rows(
    transaction: &Transaction<'_>,
    tenant: &str,
    statement: &Statement,
    mut offer: impl FnMut(&Row) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let refs = statement.refs();
    let (named, portal) = tokio::join!(
        read_tenant(transaction, tenant),
        transaction.bind(statement.sql.as_str(), &refs)
    );
    named?;
    let portal = portal.map_err(|e| classify(&e))?;
    loop {
        let rows = transaction
            .query_portal(&portal, FETCH_ROWS)
            .await
            .map_err(|e| classify(&e))?;
        for row in &rows {
            if !offer(row)? {
                return Ok(());
            }
        }
        if rows.len() < FETCH_ROWS as usize {
            return Ok(());
        }
    }
}

/// The state's fields as of `at`, in the byte order of their names (so that a cursor can
/// continue after one): each field's `after` in its latest change.
pub fn state_fields_statement(query: &StateQuery) -> Statement {
    let mut statement = Statement {
        sql: String::new(),
        params: Vec::new(),
    };
    let mut conditions = format!(
        "e.tenant_id = {} AND e.resource_type = {} AND e.resource_id = {} AND e.occurred_at <= {}",
        statement.bind(query.tenant_id.clone()),
        statement.bind(query.resource_type.clone()),
        statement.bind(query.resource_id.clone()),
        statement.bind(query.at.get()),
    );
    if let Some(after) = &query.after_field {
        conditions.push_str(&format!(
            " AND c.key COLLATE \"C\" > {}",
            statement.bind(after.clone())
        ));
    }
    statement.sql = format!(
        "SELECT DISTINCT ON (c.key COLLATE \"C\") c.key, c.value -> 'after', e.id, e.occurred_at \
         FROM tenant_events e CROSS JOIN LATERAL jsonb_each(e.changes) c \
         WHERE {conditions} \
         ORDER BY c.key COLLATE \"C\", e.occurred_at DESC, e.id DESC"
    );
    statement
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

    /// One page of the events `query` selects, within the answer's byte budget.
    #[tracing::instrument(skip_all)]
    pub async fn list(&self, query: &EventQuery) -> Result<Page, StoreError> {
        let mut client = self.client().await?;
        let transaction = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| classify(&e))?;
        let statement = list_statement(query);
        let rows = match &query.paging {
            Paging::Keyset { limit, .. } => *limit as usize,
            Paging::Offset { per_page, .. } => *per_page as usize,
        };
        let mut builder = PageBuilder::new(rows);
        offer_rows(&transaction, &query.tenant_id, &statement, |row| {
            Ok(builder.offer(event_from_row(row)?))
        })
        .await?;
        let page = match &query.paging {
            Paging::Keyset { .. } => Page::Keyset(builder.keyset(query.sort)),
            Paging::Offset { page, per_page } => {
                let count = count_statement(query);
                let counted: i64 = transaction
                    .query_one(&count.sql, &count.refs())
                    .await
                    .map_err(|e| classify(&e))?
                    .get(0);
                let (total_count, exact) = if counted > EXACT_COUNT_LIMIT {
                    let estimate = estimate_statement(query);
                    let plan: Value = transaction
                        .query_one(&estimate.sql, &estimate.refs())
                        .await
                        .map_err(|e| classify(&e))?
                        .get(0);
                    let rows = plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0) as i64;
                    (rows.max(counted), false)
                } else {
                    (counted, true)
                };
                Page::Offset(builder.offset(query.sort, *page, *per_page, total_count, exact))
            }
        };
        transaction.commit().await.map_err(|e| classify(&e))?;
        Ok(page)
    }

    #[tracing::instrument(skip_all)]
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<AuditEvent>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| classify(&e))?;
        let sql = format!("{} WHERE id = $1 AND tenant_id = $2 LIMIT 1", *SELECT);
        let params: [&(dyn ToSql + Sync); 2] = [&id, &tenant_id];
        let (named, row) = tokio::join!(
            read_tenant(&transaction, tenant_id),
            transaction.query_opt(&sql, &params)
        );
        named?;
        let row = row.map_err(|e| classify(&e))?;
        transaction.commit().await.map_err(|e| classify(&e))?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// The resource's fields as of `query.at`, within the answer's byte budget, or None if
    /// it had no events by then.
    #[tracing::instrument(skip_all)]
    pub async fn state(&self, query: &StateQuery) -> Result<Option<ResourceState>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client
            .build_transaction()
            .read_only(true)
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await
            .map_err(|e| classify(&e))?;
        let at = query.at.get();
        let params: [&(dyn ToSql + Sync); 4] = [
            &query.tenant_id,
            &query.resource_type,
            &query.resource_id,
            &at,
        ];
        let (named, summary) = tokio::join!(
            read_tenant(&transaction, &query.tenant_id),
            transaction.query_one(
                "SELECT count(*), (array_agg(id ORDER BY occurred_at DESC, id DESC))[1], max(occurred_at) \
                 FROM tenant_events \
                 WHERE tenant_id = $1 AND resource_type = $2 AND resource_id = $3 AND occurred_at <= $4",
                &params,
            )
        );
        named?;
        let summary = summary.map_err(|e| classify(&e))?;
        let event_count: i64 = summary.get(0);
        if event_count == 0 {
            return Ok(None);
        }
        let summary = StateSummary {
            event_count,
            last_event_id: summary.get(1),
            last_event_at: stored_time(&summary, 2)?,
        };
        let mut builder = StateBuilder::new();
        offer_rows(
            &transaction,
            &query.tenant_id,
            &state_fields_statement(query),
            |row| {
                let value: Option<Value> = row.get(1);
                let state = FieldState {
                    value: value.unwrap_or(Value::Null),
                    event_id: row.get(2),
                    changed_at: stored_time(row, 3)?,
                };
                Ok(builder.offer(row.get(0), state))
            },
        )
        .await?;
        transaction.commit().await.map_err(|e| classify(&e))?;
        Ok(Some(builder.finish(query, summary)))
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
