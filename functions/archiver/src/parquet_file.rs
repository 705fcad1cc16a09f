//! The archive's Parquet files: the typed schema, writer settings, Arrow batches built from
//! PostgreSQL's binary COPY rows, and reading a file's footer back.

use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{FooterTail, KeyValue, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use tokio_postgres::binary_copy::BinaryCopyOutRow;
use tokio_postgres::types::Type;

use sentinel_domain::manifest::{PartLog, COLUMNS, SCHEMA_VERSION};
use sentinel_domain::merkle::HASH_LEN;

/// Where `occurred_at` sits among the Parquet leaf columns.
pub const OCCURRED_AT_COLUMN: usize = 2;
pub const TENANT_COLUMN: usize = 1;
/// The event's place in its tenant's log.
pub const LOG_INDEX_COLUMN: usize = 12;
pub const LEAF_HASH_COLUMN: usize = 13;

const TIMESTAMP_COLUMNS: [usize; 3] = [2, 3, 4];
/// Columns whose values are nearly all distinct: a dictionary only costs time.
const DISTINCT_COLUMNS: [usize; 5] = [0, 10, 11, 12, 13];
/// Columns whose min/max statistics are useless and bloat the footer: the large JSON ones and
/// the hashes.
const NO_STATISTICS_COLUMNS: [usize; 3] = [10, 11, 13];
/// Large JSON columns, exported as their text.
const JSON_COLUMNS: [usize; 2] = [10, 11];

/// The types `COPY … (FORMAT binary)` sends for [`copy_sql`]'s columns.
pub const COPY_TYPES: [Type; 14] = [
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::BYTEA,
];

/// The Arrow type of column `i`.
fn data_type(i: usize) -> DataType {
    if TIMESTAMP_COLUMNS.contains(&i) {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    } else if i == LOG_INDEX_COLUMN {
        DataType::Int64
    } else if i == LEAF_HASH_COLUMN {
        DataType::FixedSizeBinary(HASH_LEN as i32)
    } else {
        DataType::Utf8
    }
}

/// The Arrow schema of every archived file.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .enumerate()
            .map(|(i, (name, _, nullable))| Field::new(*name, data_type(i), *nullable))
            .collect::<Vec<_>>(),
    ))
}

/// Streams one month's rows with each event's log entry, sorted by tenant, then log index
/// (rows without an entry last, by id): the same rows always give the same bytes, and a
/// verifier reads one tenant's rows of a part in its log's order. The bounds are built from
/// integers, never from input, so they are safe to inline (COPY takes no parameters).
pub fn copy_sql(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let bound = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S+00").to_string();
    // The manifest's columns, the JSON ones as their text.
    let columns = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| {
            if JSON_COLUMNS.contains(&i) {
                format!("e.{name}::text")
            } else if i == LOG_INDEX_COLUMN || i == LEAF_HASH_COLUMN {
                format!("l.{name}")
            } else {
                format!("e.{name}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "COPY (SELECT {columns} FROM audit_events e LEFT JOIN log_entries l \
         ON l.tenant_id = e.tenant_id AND l.event_id = e.id AND l.occurred_at = e.occurred_at \
         WHERE e.occurred_at >= '{start}' AND e.occurred_at < '{end}' \
         ORDER BY e.tenant_id, l.log_index, e.id) TO STDOUT (FORMAT binary)",
        start = bound(start),
        end = bound(end)
    )
}

/// zstd, row groups of at most `row_group_rows` rows or `row_group_bytes` encoded bytes,
/// delta-encoded timestamps, and statistics wherever a reader can prune with them.
pub fn writer_properties(
    row_group_rows: usize,
    row_group_bytes: usize,
    zstd_level: i32,
) -> WriterProperties {
    let column = |i: usize| parquet::schema::types::ColumnPath::from(COLUMNS[i].0);
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(zstd_level).unwrap_or_default(),
        ))
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_max_row_group_bytes(Some(row_group_bytes.max(1)))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("sentinel.table".into(), "audit_events".to_string()),
            KeyValue::new("sentinel.schema_version".into(), SCHEMA_VERSION.to_string()),
        ]));
    for i in TIMESTAMP_COLUMNS {
        builder = builder
            .set_column_dictionary_enabled(column(i), false)
            .set_column_encoding(column(i), Encoding::DELTA_BINARY_PACKED);
    }
    for i in DISTINCT_COLUMNS {
        builder = builder.set_column_dictionary_enabled(column(i), false);
    }
    for i in NO_STATISTICS_COLUMNS {
        builder = builder.set_column_statistics_enabled(column(i), EnabledStatistics::None);
    }
    builder = builder.set_column_encoding(column(LOG_INDEX_COLUMN), Encoding::DELTA_BINARY_PACKED);
    builder.build()
}

/// One column's Arrow builder.
enum ColumnBuilder {
    Text(StringBuilder),
    Time(TimestampMicrosecondBuilder),
    Index(Int64Builder),
    Hash(FixedSizeBinaryBuilder),
}

/// Collects COPY rows into Arrow record batches.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self {
            schema: schema(),
            columns: (0..COLUMNS.len())
                .map(|i| match data_type(i) {
                    DataType::Timestamp(..) => {
                        ColumnBuilder::Time(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
                    }
                    DataType::Int64 => ColumnBuilder::Index(Int64Builder::new()),
                    DataType::FixedSizeBinary(n) => {
                        ColumnBuilder::Hash(FixedSizeBinaryBuilder::new(n))
                    }
                    _ => ColumnBuilder::Text(StringBuilder::new()),
                })
                .collect(),
            rows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn push(&mut self, row: &BinaryCopyOutRow) -> Result<(), tokio_postgres::Error> {
        for (i, column) in self.columns.iter_mut().enumerate() {
            match column {
                ColumnBuilder::Time(b) => {
                    let at: DateTime<Utc> = row.try_get(i)?;
                    b.append_value(at.timestamp_micros());
                }
                ColumnBuilder::Text(b) => b.append_option(row.try_get::<Option<&str>>(i)?),
                ColumnBuilder::Index(b) => b.append_option(row.try_get::<Option<i64>>(i)?),
                ColumnBuilder::Hash(b) => match row.try_get::<Option<&[u8]>>(i)? {
                    // log_entries' CHECK keeps every hash at 32 bytes.
                    Some(hash) => b
                        .append_value(hash)
                        .expect("log_entries holds 32-byte leaf hashes"),
                    None => b.append_null(),
                },
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows pushed so far, as one batch; the builder starts over empty.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|column| -> ArrayRef {
                match column {
                    ColumnBuilder::Text(b) => Arc::new(b.finish()),
                    ColumnBuilder::Time(b) => Arc::new(b.finish()),
                    ColumnBuilder::Index(b) => Arc::new(b.finish()),
                    ColumnBuilder::Hash(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), columns).expect("the builders match the schema")
    }
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// What the manifest records about a run of rows: time and id ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowStats {
    pub rows: u64,
    pub min_occurred_at: Option<i64>,
    pub max_occurred_at: Option<i64>,
    pub min_id: Option<String>,
    pub max_id: Option<String>,
    /// Each tenant's rows, in the order they came (by tenant); checkpoints not yet named.
    pub logs: Vec<PartLog>,
}

impl RowStats {
    pub fn add(&mut self, batch: &RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        let occurred = batch
            .column(OCCURRED_AT_COLUMN)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("occurred_at is a timestamp column");
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("id is a string column");
        let values = occurred.values();
        let (lo, hi) = values
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        self.min_occurred_at = Some(self.min_occurred_at.map_or(lo, |m| m.min(lo)));
        self.max_occurred_at = Some(self.max_occurred_at.map_or(hi, |m| m.max(hi)));
        let mut lo = self.min_id.take();
        let mut hi = self.max_id.take();
        let (mut batch_lo, mut batch_hi): (Option<&str>, Option<&str>) = (None, None);
        for i in 0..ids.len() {
            let id = ids.value(i);
            if batch_lo.is_none_or(|m| id < m) {
                batch_lo = Some(id);
            }
            if batch_hi.is_none_or(|m| id > m) {
                batch_hi = Some(id);
            }
        }
        if let Some(b) = batch_lo {
            if lo.as_deref().is_none_or(|m| b < m) {
                lo = Some(b.to_string());
            }
        }
        if let Some(b) = batch_hi {
            if hi.as_deref().is_none_or(|m| b > m) {
                hi = Some(b.to_string());
            }
        }
        self.min_id = lo;
        self.max_id = hi;
        self.rows += batch.num_rows() as u64;
        self.add_logs(batch);
    }

    /// Counts each tenant's rows and log indexes. Rows come sorted by tenant, so a tenant
    /// seen before the last one means they were not: that would break the part's promise.
    fn add_logs(&mut self, batch: &RecordBatch) {
        let tenants = batch
            .column(TENANT_COLUMN)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("tenant_id is a string column");
        let indexes = batch
            .column(LOG_INDEX_COLUMN)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("log_index is an int64 column");
        for i in 0..batch.num_rows() {
            let tenant = tenants.value(i);
            if self.logs.last().is_none_or(|l| l.tenant_id != tenant) {
                self.logs.push(PartLog {
                    tenant_id: tenant.to_string(),
                    rows: 0,
                    unlogged: 0,
                    first_index: None,
                    last_index: None,
                    checkpoint: None,
                });
            }
            let log = self.logs.last_mut().expect("just pushed");
            log.rows += 1;
            match indexes.is_valid(i).then(|| indexes.value(i)) {
                Some(index) if index >= 0 => {
                    let index = index as u64;
                    log.first_index = Some(log.first_index.map_or(index, |f| f.min(index)));
                    log.last_index = Some(log.last_index.map_or(index, |l| l.max(index)));
                }
                _ => log.unlogged += 1,
            }
        }
    }

    /// Whether each tenant's rows came together (a sorted export).
    pub fn tenants_in_order(&self) -> bool {
        self.logs
            .windows(2)
            .all(|w| w[0].tenant_id < w[1].tenant_id)
    }
}

/// Why a file's footer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FooterError {
    #[error("is not a Parquet file: {0}")]
    Invalid(String),
    /// The footer is longer than the bytes kept; fetch this many from the end.
    #[error("footer needs {0} bytes")]
    NeedMore(usize),
}

/// Decodes the footer from the last bytes of a file.
pub fn read_footer(tail: &[u8]) -> Result<ParquetMetaData, FooterError> {
    let invalid = |e: parquet::errors::ParquetError| FooterError::Invalid(e.to_string());
    if tail.len() < 8 {
        return Err(FooterError::Invalid("shorter than a footer".into()));
    }
    let last: [u8; 8] = tail[tail.len() - 8..].try_into().expect("8 bytes");
    let footer = FooterTail::try_new(&last).map_err(invalid)?;
    let needed = footer.metadata_length() + 8;
    if needed > tail.len() {
        return Err(FooterError::NeedMore(needed));
    }
    ParquetMetaDataReader::decode_metadata(&tail[tail.len() - needed..tail.len() - 8])
        .map_err(invalid)
}

/// Row count and `occurred_at` range a file's footer declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FooterFacts {
    pub rows: u64,
    pub min_occurred_at: Option<i64>,
    pub max_occurred_at: Option<i64>,
}

pub fn footer_facts(metadata: &ParquetMetaData) -> Result<FooterFacts, String> {
    let mut facts = FooterFacts {
        rows: 0,
        min_occurred_at: None,
        max_occurred_at: None,
    };
    let declared = metadata.file_metadata().num_rows();
    for group in metadata.row_groups() {
        facts.rows += group.num_rows() as u64;
        if group.num_rows() == 0 {
            continue;
        }
        match group.column(OCCURRED_AT_COLUMN).statistics() {
            Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                (Some(&lo), Some(&hi)) => {
                    facts.min_occurred_at = Some(facts.min_occurred_at.map_or(lo, |m| m.min(lo)));
                    facts.max_occurred_at = Some(facts.max_occurred_at.map_or(hi, |m| m.max(hi)));
                }
                _ => return Err("occurred_at statistics have no min/max".into()),
            },
            _ => return Err("occurred_at has no 64-bit statistics".into()),
        }
    }
    if declared as u64 != facts.rows {
        return Err(format!(
            "the footer declares {declared} rows but its row groups hold {}",
            facts.rows
        ));
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::FixedSizeBinaryArray;
    use parquet::arrow::ArrowWriter;

    fn batch(ids: &[&str], micros: &[i64]) -> RecordBatch {
        let schema = schema();
        let columns: Vec<ArrayRef> = (0..COLUMNS.len())
            .map(|i| -> ArrayRef {
                if TIMESTAMP_COLUMNS.contains(&i) {
                    Arc::new(TimestampMicrosecondArray::from(micros.to_vec()).with_timezone("UTC"))
                } else if i == LOG_INDEX_COLUMN {
                    Arc::new(Int64Array::from_iter(
                        (0..ids.len()).map(|n| (n % 2 == 0).then_some(n as i64 + 10)),
                    ))
                } else if i == LEAF_HASH_COLUMN {
                    Arc::new(
                        FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                            (0..ids.len()).map(|n| (n % 2 == 0).then_some([n as u8; 32])),
                            32,
                        )
                        .unwrap(),
                    )
                } else if i == TENANT_COLUMN {
                    Arc::new(StringArray::from(vec!["acme"; ids.len()]))
                } else if i == 6 {
                    Arc::new(StringArray::from(vec![None::<&str>; ids.len()]))
                } else if i == 0 {
                    Arc::new(StringArray::from(ids.to_vec()))
                } else {
                    Arc::new(StringArray::from(vec!["{}"; ids.len()]))
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn row_stats_track_time_and_id_ranges_across_batches() {
        let mut stats = RowStats::default();
        stats.add(&batch(&["b", "c"], &[20, 10]));
        stats.add(&batch(&["a", "d"], &[30, 15]));
        assert_eq!(stats.rows, 4);
        assert_eq!(
            (stats.min_occurred_at, stats.max_occurred_at),
            (Some(10), Some(30))
        );
        assert_eq!(
            (stats.min_id.as_deref(), stats.max_id.as_deref()),
            (Some("a"), Some("d"))
        );
    }

    #[test]
    fn the_footer_read_from_the_tail_declares_rows_and_time_range() {
        let mut writer =
            ArrowWriter::try_new(Vec::new(), schema(), Some(writer_properties(2, 1 << 20, 1)))
                .unwrap();
        writer.write(&batch(&["a", "b", "c"], &[5, 3, 9])).unwrap();
        let file = writer.into_inner().unwrap();
        let mut tail = sentinel_aws::s3::Tail::new(64 * 1024);
        for chunk in file.chunks(7) {
            tail.push(chunk);
        }

        let metadata = read_footer(tail.bytes()).unwrap();
        let facts = footer_facts(&metadata).unwrap();

        assert_eq!(metadata.num_row_groups(), 2, "row groups of at most 2 rows");
        assert_eq!(
            facts,
            FooterFacts {
                rows: 3,
                min_occurred_at: Some(3),
                max_occurred_at: Some(9)
            }
        );
    }

    #[test]
    fn a_footer_longer_than_the_tail_asks_for_more() {
        let mut writer = ArrowWriter::try_new(Vec::new(), schema(), None).unwrap();
        writer.write(&batch(&["a"], &[1])).unwrap();
        let file = writer.into_inner().unwrap();
        let short = &file[file.len() - 20..];
        assert!(matches!(read_footer(short), Err(FooterError::NeedMore(n)) if n > 20));
        assert!(matches!(
            read_footer(b"not a parquet file"),
            Err(FooterError::Invalid(_))
        ));
    }

    #[test]
    fn the_copy_statement_bounds_the_month_exclusively() {
        let sql = copy_sql(
            "2024-02-01T00:00:00Z".parse().unwrap(),
            "2024-03-01T00:00:00Z".parse().unwrap(),
        );
        assert!(sql.contains(
            "e.occurred_at >= '2024-02-01 00:00:00+00' AND e.occurred_at < '2024-03-01 00:00:00+00'"
        ));
        assert!(sql.starts_with(
            "COPY (SELECT e.id, e.tenant_id, e.occurred_at, e.received_at, e.stored_at, \
             e.actor_id, e.actor_type, e.action, e.resource_type, e.resource_id, \
             e.changes::text, e.metadata::text, l.log_index, l.leaf_hash FROM"
        ));
        assert!(sql.ends_with("ORDER BY e.tenant_id, l.log_index, e.id) TO STDOUT (FORMAT binary)"));
    }

    #[test]
    fn row_stats_count_each_tenants_rows_and_log_indexes() {
        let mut stats = RowStats::default();
        // Rows 0 and 2 have indexes 10 and 12; row 1 has none.
        stats.add(&batch(&["a", "b", "c"], &[1, 2, 3]));
        assert_eq!(stats.logs.len(), 1);
        let log = &stats.logs[0];
        assert_eq!(
            (log.tenant_id.as_str(), log.rows, log.unlogged),
            ("acme", 3, 1)
        );
        assert_eq!((log.first_index, log.last_index), (Some(10), Some(12)));
        assert!(stats.tenants_in_order());
    }
}
