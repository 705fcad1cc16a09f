//! Sentinel's PostgreSQL adapters: where the database is and how to reach it, the schema,
//! the writer's idempotent batch store, the query reader, and the archiver's progress.

pub mod archive;
pub mod conflicts;
pub mod log;
#[cfg(feature = "migrations")]
pub mod migrations;
pub mod reader;
pub mod settings;
pub mod writer;

#[cfg(feature = "migrations")]
pub use migrations::{migrate, migrate_with};
pub use settings::DatabaseSettings;

use deadpool_postgres::Pool;
use sentinel_domain::store::StoreError;

/// Builds a pool from a connection string that connects lazily and replaces broken
/// connections (TLS if the URL says `sslmode=require`).
pub fn pool(database_url: &str, max_size: usize) -> anyhow::Result<Pool> {
    DatabaseSettings::from_url(database_url)?.pool(max_size)
}

/// Sorts a database error into "retry may help" and "this data can never be stored".
pub fn classify(error: &tokio_postgres::Error) -> StoreError {
    let message = match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    };
    match error.code().map(|c| c.code()) {
        // Data exceptions (22), integrity violations (23, which includes "no partition of
        // relation found for row", 23514, after the store's one repair) and program limits
        // such as an index row too large (54) are about the rows themselves: retrying the
        // same rows cannot help, so they are never reported as "unavailable".
        Some(code)
            if code.starts_with("22") || code.starts_with("23") || code.starts_with("54") =>
        {
            StoreError::Refused(message)
        }
        _ => StoreError::Unavailable(message),
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {error}"))
}
