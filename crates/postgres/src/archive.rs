//! The archiver's side of PostgreSQL: each month's progress in `archive_months`, the month
//! partitions, the per-month advisory lock, and the guarded detach and drop (migration V2).
//!
//! [`PgArchiveLedger`] is the archiver's [`ArchiveLedger`]: each month it locks is held on a
//! pooled connection of its own, which also streams the month out for the export
//! ([`PgHeldMonth::client`]).

use anyhow::Context;
use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use tokio_postgres::Client;

use chrono::{DateTime, Utc};
use sentinel_domain::archive::{AdapterError, ArchiveLedger, ChainedNote, HeldMonth};
pub use sentinel_domain::archive::{MonthFacts, Partition, Progress, State};
use sentinel_domain::manifest::CoveringCheckpoint;
use sentinel_domain::manifest::Manifest;
use sentinel_domain::merkle::Hash;
use sentinel_domain::Month;

/// First key of the archiver's advisory locks; the second is the month.
const LOCK_CLASS: i32 = 0x5e47_0a4c;

async fn load(client: &Client, month: Month) -> anyhow::Result<Option<Progress>> {
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
        state: {
            let state: &str = row.get(0);
            State::parse(state).with_context(|| format!("unknown archive state {state:?}"))?
        },
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
async fn begin(client: &Client, month: Month) -> anyhow::Result<()> {
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
async fn begin_late_batch(client: &Client, month: Month, parts: usize) -> anyhow::Result<()> {
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

async fn mark_exported(
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

async fn mark_verified(client: &Client, month: Month) -> anyhow::Result<()> {
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
async fn mark_for_export(
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
async fn record_error(client: &Client, month: Month, error: &str) -> anyhow::Result<()> {
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
async fn detach(client: &Client, month: Month) -> anyhow::Result<bool> {
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
async fn drop_detached(client: &Client, month: Month) -> anyhow::Result<()> {
    client
        .execute(
            "SELECT sentinel_drop_archived_month($1)",
            &[&month.first_day()],
        )
        .await
        .context("failed to drop the detached partition")?;
    Ok(())
}

async fn partition(client: &Client, month: Month) -> anyhow::Result<Partition> {
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
async fn attached_months(client: &Client) -> anyhow::Result<Vec<Month>> {
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
async fn unfinished_months(client: &Client) -> anyhow::Result<Vec<Month>> {
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
async fn month_facts(client: &Client, month: Month) -> anyhow::Result<MonthFacts> {
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
    Ok(MonthFacts {
        rows: row.get::<_, i64>(0) as u64,
        min_occurred_at: row.get(1),
        max_occurred_at: row.get(2),
    })
}

/// Creates the month's partition unless it exists; returns whether it created it.
async fn ensure_partition(client: &Client, month: Month) -> anyhow::Result<bool> {
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
async fn try_lock(client: &Client, month: Month) -> anyhow::Result<bool> {
    Ok(client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&LOCK_CLASS, &month.lock_key()],
        )
        .await
        .context("failed to take the month's lock")?
        .get(0))
}

async fn unlock(client: &Client, month: Month) -> anyhow::Result<()> {
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

/// The archive ledger in PostgreSQL.
#[derive(Clone)]
pub struct PgArchiveLedger {
    pool: Pool,
}

impl PgArchiveLedger {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    async fn client(&self) -> anyhow::Result<Object> {
        self.pool.get().await.context("no database connection")
    }
}

#[async_trait]
impl ArchiveLedger for PgArchiveLedger {
    type Held = PgHeldMonth;

    async fn ensure_partition(&self, month: Month) -> Result<bool, AdapterError> {
        let client = self.client().await?;
        Ok(ensure_partition(&client, month).await?)
    }

    async fn attached_months(&self) -> Result<Vec<Month>, AdapterError> {
        let client = self.client().await?;
        Ok(attached_months(&client).await?)
    }

    async fn unfinished_months(&self) -> Result<Vec<Month>, AdapterError> {
        let client = self.client().await?;
        Ok(unfinished_months(&client).await?)
    }

    /// The lock is a session-level advisory lock on a connection taken from the pool for
    /// as long as the month is held.
    async fn try_lock(&self, month: Month) -> Result<Option<PgHeldMonth>, AdapterError> {
        let client = self.client().await?;
        if !try_lock(&client, month).await? {
            return Ok(None);
        }
        Ok(Some(PgHeldMonth {
            month,
            client: Some(client),
        }))
    }

    async fn latest_checkpoints(
        &self,
        tenants: &[String],
    ) -> Result<Vec<(String, CoveringCheckpoint)>, AdapterError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT ON (tenant_id) tenant_id, tree_size, root_hash, signed_at \
                 FROM checkpoints WHERE tenant_id = ANY($1) \
                 ORDER BY tenant_id, tree_size DESC, signed_at DESC",
                &[&tenants],
            )
            .await
            .context("could not read the tenants' checkpoints")?;
        rows.iter()
            .map(|r| {
                let root = Hash::from_slice(r.get(2)).context("a checkpoint's root hash")?;
                Ok((
                    r.get::<_, String>(0),
                    CoveringCheckpoint {
                        tree_size: u64::try_from(r.get::<_, i64>(1))
                            .context("a checkpoint's size")?,
                        root_hash: root.to_base64(),
                        signed_at: r.get(3),
                    },
                ))
            })
            .collect::<anyhow::Result<_>>()
            .map_err(Into::into)
    }

    async fn log_leaves(
        &self,
        tenant: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, AdapterError> {
        let client = self.client().await?;
        let (first, end) = (
            i64::try_from(from).context("a log index")?,
            i64::try_from(to).context("a log index")?,
        );
        let rows = client
            .query(
                "SELECT log_index, leaf_hash FROM log_entries \
                 WHERE tenant_id = $1 AND log_index >= $2 AND log_index < $3 \
                 ORDER BY log_index",
                &[&tenant, &first, &end],
            )
            .await
            .context("could not read the tenant's log")?;
        let mut leaves = Vec::with_capacity(rows.len());
        for (expected, row) in (first..).zip(&rows) {
            let index: i64 = row.get(0);
            if index != expected {
                return Err(anyhow::anyhow!(
                    "tenant {tenant}'s log has no entry at index {expected}"
                )
                .into());
            }
            leaves.push(Hash::from_slice(row.get(1)).context("a leaf hash")?);
        }
        if leaves.len() as u64 != to.saturating_sub(from) {
            return Err(anyhow::anyhow!(
                "tenant {tenant}'s log ends at index {}, before {to}",
                from + leaves.len() as u64
            )
            .into());
        }
        Ok(leaves)
    }

    async fn chain_tip(&self) -> Result<Option<ChainedNote>, AdapterError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT seq, month, manifest_sha256, signed_at, note FROM archive_manifests \
                 ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await
            .context("could not read the manifests' chain")?;
        Ok(row.map(|r| chained_note(&r)).transpose()?)
    }

    async fn append_note(&self, note: &ChainedNote) -> Result<bool, AdapterError> {
        let client = self.client().await?;
        let seq = i64::try_from(note.seq).context("a note's sequence number")?;
        let inserted = client
            .execute(
                "INSERT INTO archive_manifests (seq, month, manifest_sha256, signed_at, note) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
                &[
                    &seq,
                    &note.month.first_day(),
                    &note.manifest.as_bytes().as_slice(),
                    &note.signed_at,
                    &note.note,
                ],
            )
            .await
            .context("could not append to the manifests' chain")?;
        Ok(inserted == 1)
    }

    async fn note_of(&self, month: Month) -> Result<Option<ChainedNote>, AdapterError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT seq, month, manifest_sha256, signed_at, note FROM archive_manifests \
                 WHERE month = $1 ORDER BY seq DESC LIMIT 1",
                &[&month.first_day()],
            )
            .await
            .context("could not read the manifests' chain")?;
        Ok(row.map(|r| chained_note(&r)).transpose()?)
    }
}

fn chained_note(row: &tokio_postgres::Row) -> anyhow::Result<ChainedNote> {
    let at: DateTime<Utc> = row.get(3);
    Ok(ChainedNote {
        seq: u64::try_from(row.get::<_, i64>(0)).context("a note's sequence number")?,
        month: Month::from_first_day(row.get(1)).context("a note's month")?,
        manifest: Hash::from_slice(row.get(2)).context("a note's manifest hash")?,
        signed_at: at,
        note: row.get(4),
    })
}

/// A month under its advisory lock, on the connection that holds the lock. Dropped without
/// [`HeldMonth::release`] (a panic, a cancelled run), it closes that connection rather than
/// return it to the pool with the lock still held.
pub struct PgHeldMonth {
    month: Month,
    client: Option<Object>,
}

impl PgHeldMonth {
    /// The connection that holds the month's lock, for streaming the month out.
    pub fn client(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a held month has its connection")
    }

    fn session(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a held month has its connection")
    }
}

impl Drop for PgHeldMonth {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

#[async_trait]
impl HeldMonth for PgHeldMonth {
    fn month(&self) -> Month {
        self.month
    }

    async fn progress(&mut self) -> Result<Option<Progress>, AdapterError> {
        Ok(load(self.session(), self.month).await?)
    }

    async fn partition(&mut self) -> Result<Partition, AdapterError> {
        Ok(partition(self.session(), self.month).await?)
    }

    async fn facts(&mut self) -> Result<MonthFacts, AdapterError> {
        Ok(month_facts(self.session(), self.month).await?)
    }

    async fn begin(&mut self) -> Result<(), AdapterError> {
        Ok(begin(self.session(), self.month).await?)
    }

    async fn begin_late_batch(&mut self, first_part: usize) -> Result<(), AdapterError> {
        Ok(begin_late_batch(self.session(), self.month, first_part).await?)
    }

    async fn mark_exported(
        &mut self,
        manifest: &Manifest,
        batch_rows: u64,
    ) -> Result<(), AdapterError> {
        Ok(mark_exported(self.session(), self.month, manifest, batch_rows).await?)
    }

    async fn mark_verified(&mut self) -> Result<(), AdapterError> {
        Ok(mark_verified(self.session(), self.month).await?)
    }

    async fn mark_for_export(&mut self, from: State, why: &str) -> Result<(), AdapterError> {
        Ok(mark_for_export(self.session(), self.month, from, why).await?)
    }

    async fn record_error(&mut self, error: &str) -> Result<(), AdapterError> {
        Ok(record_error(self.session(), self.month, error).await?)
    }

    async fn detach(&mut self) -> Result<bool, AdapterError> {
        Ok(detach(self.session(), self.month).await?)
    }

    async fn drop_detached(&mut self) -> Result<(), AdapterError> {
        Ok(drop_detached(self.session(), self.month).await?)
    }

    /// Unlocks the month; if that fails, closes the connection, which releases it for sure.
    async fn release(mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        match unlock(&client, self.month).await {
            Ok(()) => drop(client),
            Err(error) => {
                tracing::warn!(month = %self.month, error = %format!("{error:#}"), "dropping the connection to release the lock");
                drop(Object::take(client));
            }
        }
    }
}
