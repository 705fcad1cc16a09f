//! `GET /export`: the events of a `GET /events` filter as CSV or NDJSON, a bounded part per
//! request, continued with the cursor in `Sentinel-Next-Cursor`.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use sentinel_domain::query::{Cursor, EventQuery, Paging, Params, MAX_LIMIT};
use sentinel_domain::read::{answer_bytes, EventReader, Page};
use sentinel_domain::store::StoreError;
use sentinel_domain::validation::FieldErrors;
use sentinel_domain::AuditEvent;

/// At most this many events in one export answer.
pub const MAX_EXPORT_ROWS: usize = 10_000;
/// An answer stops after the event that takes it to this many bytes, measured as Lambda
/// carries it (see [`answer_bytes`]): Lambda's buffered answers are at most 6 MB, and one
/// stored event (at most 256 KiB, its quotes doubled in CSV and escaped again) stays far
/// below the margin.
pub const MAX_EXPORT_BYTES: usize = 2 * 1024 * 1024;
/// The header holding the cursor of the next part; absent on the last one.
pub const NEXT_CURSOR_HEADER: &str = "sentinel-next-cursor";

/// The parameters an export takes: its own `format` and `limit`, and the list's filters,
/// `sort` and `cursor`.
pub const EXPORT_PARAMS: &[&str] = &[
    "format",
    "limit",
    "tenant_id",
    "actor_id",
    "action",
    "resource_type",
    "resource_id",
    "from",
    "to",
    "changed_field",
    "changed_to",
    "changed_from",
    "sort",
    "cursor",
];

/// The CSV header row: one column per event field, `changes` and `metadata` as JSON text.
pub const CSV_COLUMNS: [&str; 11] = [
    "id",
    "tenant_id",
    "occurred_at",
    "received_at",
    "actor_id",
    "actor_type",
    "action",
    "resource_type",
    "resource_id",
    "changes",
    "metadata",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

/// A validated export request: the list query, its format and how many rows at most.
#[derive(Debug)]
pub struct ExportQuery {
    pub events: EventQuery,
    pub format: Format,
    pub rows: usize,
}

impl ExportQuery {
    /// `format` (`csv` or `ndjson`, the default) and `limit` (1 to [`MAX_EXPORT_ROWS`], the
    /// default) are the export's own; every other parameter is `GET /events`'s, offset
    /// paging excepted.
    pub fn parse(
        query: Option<&str>,
        caller: &sentinel_domain::fields::TenantId,
    ) -> Result<Self, FieldErrors> {
        // Unknown and repeated names, as every endpoint names them.
        let mut errors = Params::parse(query, EXPORT_PARAMS)
            .tenant(caller)
            .err()
            .unwrap_or_default();
        let mut format = None;
        let mut rows = None;
        let mut rest = form_urlencoded::Serializer::new(String::new());
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match name.as_ref() {
                "format" if format.is_some() => {}
                "format" => {
                    format = Some(match value.as_ref() {
                        "csv" => Format::Csv,
                        "ndjson" => Format::Ndjson,
                        _ => {
                            errors.insert("format".into(), "must be `csv` or `ndjson`".into());
                            Format::Ndjson
                        }
                    })
                }
                "limit" if rows.is_some() => {}
                "limit" => {
                    rows = Some(match value.parse::<usize>() {
                        Ok(n) if (1..=MAX_EXPORT_ROWS).contains(&n) => n,
                        _ => {
                            errors.insert(
                                "limit".into(),
                                format!("must be a whole number from 1 to {MAX_EXPORT_ROWS}"),
                            );
                            MAX_EXPORT_ROWS
                        }
                    })
                }
                name if EXPORT_PARAMS.contains(&name) => {
                    rest.append_pair(name, &value);
                }
                // Named above.
                _ => {}
            }
        }
        let rest = rest.finish();
        let events = EventQuery::parse(Some(&rest), caller);
        match events {
            Ok(events) if errors.is_empty() => Ok(Self {
                events,
                format: format.unwrap_or(Format::Ndjson),
                rows: rows.unwrap_or(MAX_EXPORT_ROWS),
            }),
            Ok(_) => Err(errors),
            Err(mut more) => {
                more.append(&mut errors);
                Err(more)
            }
        }
    }
}

/// What an export read: its body, the events in it and the cursor after the last.
pub struct Exported {
    pub body: String,
    pub rows: usize,
    pub next_cursor: Option<String>,
}

/// Reads the export's events page by page, up to its rows and [`MAX_EXPORT_BYTES`].
pub async fn export(reader: &dyn EventReader, query: &ExportQuery) -> Result<Exported, StoreError> {
    let mut q = query.events.clone();
    let Paging::Keyset { mut after, .. } = q.paging.clone() else {
        unreachable!("ExportQuery::parse refuses offset paging")
    };
    let mut body = String::new();
    if query.format == Format::Csv {
        body.push_str(&csv_row(CSV_COLUMNS.iter().map(|c| c.to_string())));
    }
    let mut bytes = answer_bytes(body.as_str());
    let mut rows = 0;
    loop {
        let want = (query.rows - rows).min(MAX_LIMIT as usize);
        q.paging = Paging::Keyset {
            limit: want as i64,
            after: after.clone(),
        };
        let Page::Keyset(page) = reader.list(&q).await? else {
            unreachable!("a keyset query answers a keyset page")
        };
        let count = page.data.len();
        for (i, event) in page.data.iter().enumerate() {
            let line = match query.format {
                Format::Csv => csv_row(csv_fields(event)),
                Format::Ndjson => serde_json::to_string(event).expect("events serialize") + "\n",
            };
            bytes += answer_bytes(line.as_str());
            body.push_str(&line);
            rows += 1;
            let last = i + 1 == count && page.next_cursor.is_none();
            if bytes >= MAX_EXPORT_BYTES && !last {
                // Full: the next part starts right after this event.
                let next = Cursor::after(event.occurred_at, event.id.as_str(), q.sort);
                return Ok(Exported {
                    body,
                    rows,
                    next_cursor: Some(next.encode()),
                });
            }
        }
        match page.next_cursor {
            Some(cursor) if rows < query.rows => after = Cursor::decode(&cursor),
            next_cursor => {
                return Ok(Exported {
                    body,
                    rows,
                    next_cursor,
                })
            }
        }
    }
}

fn csv_fields(event: &AuditEvent) -> impl Iterator<Item = String> {
    let value = serde_json::to_value(event).expect("events serialize");
    let fields: Vec<String> = CSV_COLUMNS
        .iter()
        .map(|column| match &value[*column] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        })
        .collect();
    fields.into_iter()
}

/// One RFC 4180 row: a field with a comma, a quote or a line break is quoted, its quotes
/// doubled. Values are kept exactly (an auditor's copy), so a spreadsheet that evaluates
/// formulas should import the file as text.
fn csv_row(fields: impl Iterator<Item = String>) -> String {
    let mut row = String::new();
    for (i, field) in fields.enumerate() {
        if i > 0 {
            row.push(',');
        }
        if field.contains([',', '"', '\n', '\r']) {
            row.push('"');
            row.push_str(&field.replace('"', "\"\""));
            row.push('"');
        } else {
            row.push_str(&field);
        }
    }
    row.push_str("\r\n");
    row
}

/// The export's answer: the body as a download, and the next part's cursor if any.
pub fn response(exported: Exported, format: Format, tenant: &str) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type())
        .header(header::CACHE_CONTROL, "no-store")
        .header(
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"sentinel-events-{tenant}.{}\"",
                format.extension()
            ),
        )
        .header("sentinel-export-rows", exported.rows);
    if let Some(cursor) = &exported.next_cursor {
        builder = builder.header(
            NEXT_CURSOR_HEADER,
            HeaderValue::from_str(cursor).expect("a cursor is URL-safe text"),
        );
    }
    builder
        .body(Body::Text(exported.body))
        .expect("the export's headers are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<ExportQuery, FieldErrors> {
        ExportQuery::parse(Some(query), &"acme".parse().unwrap())
    }

    #[test]
    fn a_csv_field_with_a_comma_quote_or_newline_is_quoted() {
        let row = csv_row(
            ["plain", "a,b", "say \"hi\"", "two\nlines", ""]
                .into_iter()
                .map(String::from),
        );

        assert_eq!(row, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
    }

    #[test]
    fn the_export_takes_the_list_filters_and_its_own_format_and_limit() {
        let q = parse("format=csv&limit=20&actor_id=u1&changed_field=status").unwrap();

        assert_eq!((q.format, q.rows), (Format::Csv, 20));
        assert_eq!(q.events.actor_id.as_deref(), Some("u1"));
        assert_eq!(parse("").unwrap().format, Format::Ndjson);
    }

    #[test]
    fn a_bad_format_limit_or_offset_page_is_named() {
        let errors = parse("format=xlsx&limit=0&page=2&actor_id=&bogus=1").unwrap_err();

        for name in ["format", "limit", "page", "actor_id", "bogus"] {
            assert!(errors.contains_key(name), "{name}: {errors:?}");
        }
        let errors = parse("format=csv&format=csv&limit=10001").unwrap_err();
        assert!(errors.contains_key("format") && errors.contains_key("limit"));
    }
}
