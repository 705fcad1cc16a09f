//! The archiver's side of PostgreSQL: each month's progress in `archive_months`, the month
//! partitions, the per-month advisory lock, and the guarded detach and drop (migration V2).

use anyhow::Context;
use tokio_postgres::Client;

use sentinel_domain::manifest::Manifest;
use sentinel_domain::Month;

/// First key of the archiver's advisory locks; the second is the month.
const LOCK_CLASS: i32 = 0x5e47_0a4c;

/// Where a month's archiving stands. Each step commits before the next one starts, so a
/// crash anywhere resumes from the last committed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Parts are being written; S3 may hold partial or stray objects for this batch.
    Exporting,
    /// Parts and manifest are in S3 and the manifest is recorded; not yet read back.
    Exported,
    /// Read back from S3 and matched against PostgreSQL.
    Verified,
    /// Detached from `audit_events` after a last count under lock; not yet dropped.
    Detached,
    /// The partition is gone; S3 holds the month.
    Dropped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Exporting => "exporting",
            State::Exported => "exported",
            State::Verified => "verified",
            State::Detached => "detached",
            State::Dropped => "dropped",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "exporting" => State::Exporting,
            "exported" => State::Exported,
            "verified" => State::Verified,
            "detached" => State::Detached,
            "dropped" => State::Dropped,
            other => anyhow::bail!("unknown archive state {other:?}"),
        })
    }
}

/// One row of `archive_months`.
#[derive(Debug, Clone)]
pub struct Progress {
    pub month: Month,
    pub state: State,
    /// 1 for the month's first export, one more for each batch of late events.
    pub batch: u32,
    /// Parts before this index belong to earlier, finished batches.
    pub first_part: usize,
    /// Rows of the current batch, once exported.
    pub batch_rows: Option<u64>,
    pub manifest: Option<Manifest>,
    pub error: Option<String>,
}

/// How a month's partition stands in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Attached,
    /// A table of that name exists but is not a partition of `audit_events`.
    Detached,
    Absent,
}

pub async fn load(client: &Client, month: Month) -> anyhow::Result<Option<Progress>> {
    let row = client
        .query_opt(
            "SELECT state, batch, first_part, batch_rows, manifest, error \
             FROM archive_months WHERE month = $1",
            &[&month.first_day()],
        )
        .await
        .context("failed to read the month's archive progress")?;
    let Some(row) = row else {
        return Ok(None);
    };
    let manifest: Option<serde_json::Value> = row.get(4);
    Ok(Some(Progress {
        month,
        state: State::parse(row.get(0))?,
        batch: row.get::<_, i32>(1) as u32,
        first_part: row.get::<_, i32>(2) as usize,
        batch_rows: row.get::<_, Option<i64>>(3).map(|n| n as u64),
        manifest: manifest
            .map(serde_json::from_value)
            .transpose()
            .context("the recorded manifest is not a manifest")?,
        error: row.get(5),
    }))
}

/// Starts the month's first export.
pub async fn begin(client: &Client, month: Month) -> anyhow::Result<()> {
    client
        .execute(
            "INSERT INTO archive_months (month, state) VALUES ($1, 'exporting') \
             ON CONFLICT (month) DO NOTHING",
            &[&month.first_day()],
        )
        .await
        .context("failed to record the start of the export")?;
    Ok(())
}

/// Starts exporting late events that arrived after the month was dropped.
pub async fn begin_late_batch(client: &Client, month: Month, parts: usize) -> anyhow::Result<()> {
    transition(
        client,
        month,
        State::Dropped,
        "state = 'exporting', batch = batch + 1, first_part = $3, batch_rows = NULL, error = NULL",
        &[&(parts as i32)],
    )
    .await
    .context("failed to record the start of a late batch")
}

pub async fn mark_exported(
    client: &Client,
    month: Month,
    manifest: &Manifest,
    batch_rows: u64,
) -> anyhow::Result<()> {
    let json = serde_json::to_value(manifest).expect("a manifest serializes");
    transition(
        client,
        month,
        State::Exporting,
        "state = 'exported', manifest = $3, batch_rows = $4, rows = $5, bytes = $6, error = NULL",
        &[
            &json,
            &(batch_rows as i64),
            &(manifest.rows as i64),
            &(manifest.bytes as i64),
        ],
    )
    .await
    .context("failed to record the export")
}

pub async fn mark_verified(client: &Client, month: Month) -> anyhow::Result<()> {
    transition(
        client,
        month,
        State::Exported,
        "state = 'verified', error = NULL",
        &[],
    )
    .await
    .context("failed to record the verification")
}

/// Sends an exported month back to export, keeping its partition, with the reason.
pub async fn mark_for_export(
    client: &Client,
    month: Month,
    from: State,
    why: &str,
) -> anyhow::Result<()> {
    transition(
        client,
        month,
        from,
        "state = 'exporting', error = $3",
        &[&why],
    )
    .await
    .context("failed to send the month back to export")
}

/// Records why the month's last attempt failed, leaving its state as it is.
pub async fn record_error(client: &Client, month: Month, error: &str) -> anyhow::Result<()> {
    client
        .execute(
            "UPDATE archive_months SET error = $2, updated_at = now() WHERE month = $1",
            &[&month.first_day(), &error],
        )
        .await
        .context("failed to record the error")?;
    Ok(())
}

async fn transition(
    client: &Client,
    month: Month,
    from: State,
    set: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> anyhow::Result<()> {
    let sql = format!(
        "UPDATE archive_months SET {set}, updated_at = now() WHERE month = $1 AND state = $2"
    );
    let (day, state) = (month.first_day(), from.as_str());
    let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&day, &state];
    all.extend_from_slice(params);
    let updated = client.execute(&sql, &all).await?;
    anyhow::ensure!(
        updated == 1,
        "{month} was no longer {} (another archiver without the lock?)",
        from.as_str()
    );
    Ok(())
}

/// Detaches a verified month after counting it under a lock that holds off new rows.
/// `Ok(false)`: rows arrived after the export; the month is back to `exporting`.
pub async fn detach(client: &Client, month: Month) -> anyhow::Result<bool> {
    Ok(client
        .query_one(
            "SELECT sentinel_detach_archived_month($1)",
            &[&month.first_day()],
        )
        .await
        .context("failed to detach the partition")?
        .get(0))
}

/// Drops a detached month's table.
pub async fn drop_detached(client: &Client, month: Month) -> anyhow::Result<()> {
    client
        .execute(
            "SELECT sentinel_drop_archived_month($1)",
            &[&month.first_day()],
        )
        .await
        .context("failed to drop the detached partition")?;
    Ok(())
}

pub async fn partition(client: &Client, month: Month) -> anyhow::Result<Partition> {
    let row = client
        .query_opt(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits i \
                            WHERE i.inhrelid = c.oid AND i.inhparent = 'audit_events'::regclass) \
             FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&month.partition_name()],
        )
        .await
        .context("failed to look up the month's partition")?;
    Ok(match row {
        None => Partition::Absent,
        Some(row) if row.get::<_, bool>(0) => Partition::Attached,
        Some(_) => Partition::Detached,
    })
}

/// Months with an attached `audit_events_YYYY_MM` partition.
pub async fn attached_months(client: &Client) -> anyhow::Result<Vec<Month>> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'audit_events'::regclass",
            &[],
        )
        .await
        .context("failed to list the month partitions")?;
    Ok(rows
        .iter()
        .filter_map(|r| Month::from_partition_name(r.get(0)))
        .collect())
}

/// Months whose archiving started and has not finished.
pub async fn unfinished_months(client: &Client) -> anyhow::Result<Vec<Month>> {
    let rows = client
        .query(
            "SELECT month FROM archive_months WHERE state <> 'dropped'",
            &[],
        )
        .await
        .context("failed to list unfinished months")?;
    Ok(rows
        .iter()
        .filter_map(|r| Month::from_first_day(r.get(0)))
        .collect())
}

/// Rows, and the `occurred_at` range in microseconds, PostgreSQL holds for the month.
pub async fn month_facts(
    client: &Client,
    month: Month,
) -> anyhow::Result<(u64, Option<i64>, Option<i64>)> {
    let row = client
        .query_one(
            "SELECT count(*), \
                    (extract(epoch FROM min(occurred_at)) * 1000000)::bigint, \
                    (extract(epoch FROM max(occurred_at)) * 1000000)::bigint \
             FROM audit_events WHERE occurred_at >= $1 AND occurred_at < $2",
            &[&month.start(), &month.end()],
        )
        .await
        .context("failed to count the month in PostgreSQL")?;
    Ok((row.get::<_, i64>(0) as u64, row.get(1), row.get(2)))
}

/// Creates the month's partition unless it exists; returns whether it created it.
pub async fn ensure_partition(client: &Client, month: Month) -> anyhow::Result<bool> {
    let missing = partition(client, month).await? == Partition::Absent;
    client
        .execute(
            "SELECT sentinel_ensure_month_partition($1)",
            &[&month.start()],
        )
        .await
        .with_context(|| format!("failed to create the partition for {month}"))?;
    Ok(missing)
}

/// Takes the month's archiving lock if no other archiver holds it.
pub async fn try_lock(client: &Client, month: Month) -> anyhow::Result<bool> {
    Ok(client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&LOCK_CLASS, &month.lock_key()],
        )
        .await
        .context("failed to take the month's lock")?
        .get(0))
}

pub async fn unlock(client: &Client, month: Month) -> anyhow::Result<()> {
    client
        .query_one(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&LOCK_CLASS, &month.lock_key()],
        )
        .await
        .context("failed to release the month's lock")?;
    Ok(())
}

/// The advisory lock keys of a month, for tests that play a second archiver.
pub fn lock_keys(month: Month) -> (i32, i32) {
    (LOCK_CLASS, month.lock_key())
}
