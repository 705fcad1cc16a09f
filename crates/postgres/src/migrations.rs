//! The schema: the SQL files under `migrations/`, embedded and applied in order.

use anyhow::{bail, Context};

use crate::settings::DatabaseSettings;

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

const MIGRATION_LOCK_KEY: i64 = 0x5e47_1e11;

/// Applies pending migrations to the database a connection string names. See
/// [`migrate_with`].
pub async fn migrate(database_url: &str) -> anyhow::Result<Vec<String>> {
    migrate_with(&DatabaseSettings::from_url(database_url)?).await
}

/// Applies pending migrations, one migrator at a time. Safe to run again: applied
/// migrations are skipped.
pub async fn migrate_with(settings: &DatabaseSettings) -> anyhow::Result<Vec<String>> {
    let mut client = settings
        .connect()
        .await
        .context("failed to connect to the database to migrate it")?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("failed to take the migration lock")?;
    let result = embedded::migrations::runner()
        .set_grouped(false)
        .run_async(&mut client)
        .await
        .context("failed to apply migrations");
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    Ok(result?
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// Creates the database the settings name if the server lacks it, from the `postgres`
/// maintenance database.
pub async fn ensure_database(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let Some(name) = settings.config.get_dbname().map(str::to_string) else {
        bail!("the database connection names no database");
    };
    let mut admin = settings.clone();
    admin.config.dbname("postgres");
    let client = admin
        .connect()
        .await
        .context("failed to connect to the server's postgres database")?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let create: String = client
            .query_one("SELECT format('CREATE DATABASE %I', $1::text)", &[&name])
            .await?
            .get(0);
        client
            .batch_execute(&create)
            .await
            .with_context(|| format!("failed to create database {name}"))?;
        tracing::info!(database = name, "database created");
    }
    Ok(())
}
