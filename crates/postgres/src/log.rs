//! The verifiable log on PostgreSQL (issue 11; docs/verifiable-log.md): the checkpointer,
//! which extends each tenant's tree from the leaves the writer appended and signs
//! checkpoints, and the reader of proofs for the query API.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use postgres_types::Type;

use sentinel_domain::checkpoint::{SignedNote, VerifierKey};
use sentinel_domain::fields::{TenantId, Timestamp};
use sentinel_domain::log::{
    self, is_stored_level, stored_parts, CheckpointArchive, ConsistencyError, EventInLog,
    LogReader, Signer, StoredCheckpoint,
};
use sentinel_domain::merkle::{self, Frontier, Hash, ProofPlan, Subtree};
use sentinel_domain::store::StoreError;

use crate::reader::{event_from_row, tenant_snapshot};
use crate::{classify, pool_error};

/// Leaves read per round trip while extending a tree.
const LEAVES_PER_READ: i64 = 10_000;

/// Why a tenant's checkpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log is not what the writer leaves: a leaf is missing or the log shrank. Nothing
    /// is signed over it; `sentinel verify` names what changed.
    #[error("the log of tenant {tenant} is broken: {reason}")]
    Broken { tenant: String, reason: String },
    #[error("signing the checkpoint failed: {0}")]
    Sign(String),
    #[error("writing the checkpoint to S3 failed: {0}")]
    Archive(String),
}

fn db(error: tokio_postgres::Error) -> CheckpointerError {
    CheckpointerError::Store(classify(&error))
}

/// What a run did for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A checkpoint was signed: for new leaves, or as the heartbeat.
    Signed { size: u64, appended: u64 },
    /// The latest checkpoint still covers every leaf and is recent enough.
    Unchanged { size: u64 },
}

/// Extends tenants' trees and signs their checkpoints. Connect it as `sentinel_checkpointer`.
pub struct Checkpointer {
    pool: Pool,
    stack: String,
    key: VerifierKey,
    signer: Arc<dyn Signer>,
    archive: Arc<dyn CheckpointArchive>,
    heartbeat: Duration,
}

impl Checkpointer {
    /// `key` is the public half of what `signer` signs with; every note is checked with it
    /// before it is kept, so a misconfigured key signs nothing.
    pub fn new(
        pool: Pool,
        stack: impl Into<String>,
        key: VerifierKey,
        signer: Arc<dyn Signer>,
        archive: Arc<dyn CheckpointArchive>,
        heartbeat: Duration,
    ) -> Self {
        Self {
            pool,
            stack: stack.into(),
            key,
            signer,
            archive,
            heartbeat,
        }
    }

    /// The tenants whose log grew since their head, or whose latest checkpoint is older than
    /// the heartbeat (or who have none).
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Vec<TenantId>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let heartbeat = chrono::Duration::from_std(self.heartbeat).unwrap_or(chrono::Duration::MAX);
        let rows = client
            .query(
                "SELECT t.tenant_id FROM tenant_logs t \
                 LEFT JOIN log_heads h ON h.tenant_id = t.tenant_id \
                 LEFT JOIN LATERAL (SELECT max(signed_at) AS signed_at FROM checkpoints c \
                     WHERE c.tenant_id = t.tenant_id) c ON true \
                 WHERE t.size > coalesce(h.size, 0) OR c.signed_at IS NULL OR c.signed_at <= $1 \
                 ORDER BY t.tenant_id",
                &[&(now - heartbeat)],
            )
            .await
            .map_err(|e| classify(&e))?;
        rows.iter()
            .map(|r| {
                r.get::<_, &str>(0)
                    .parse()
                    .map_err(|why: String| StoreError::Refused(format!("a stored tenant id {why}")))
            })
            .collect()
    }

    /// Brings one tenant's tree up to its log and signs a checkpoint if there are new leaves
    /// or the heartbeat is due, in one transaction: the head, the subtrees and the
    /// checkpoint are kept together, and the checkpoint is in S3 before they commit.
    pub async fn checkpoint(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Outcome, CheckpointerError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db)?;
        let tenant_id = tenant.as_str();
        tx.execute(
            "INSERT INTO log_heads (tenant_id, size, frontier) VALUES ($1, 0, ''::bytea) \
             ON CONFLICT (tenant_id) DO NOTHING",
            &[&tenant_id],
        )
        .await
        .map_err(db)?;
        let head = tx
            .query_one(
                "SELECT size, frontier FROM log_heads WHERE tenant_id = $1 FOR UPDATE",
                &[&tenant_id],
            )
            .await
            .map_err(db)?;
        let broken = |reason: String| CheckpointerError::Broken {
            tenant: tenant_id.to_string(),
            reason,
        };
        let mut frontier = frontier_of(head.get(0), head.get(1)).map_err(&broken)?;
        let target: i64 = tx
            .query_opt(
                "SELECT size FROM tenant_logs WHERE tenant_id = $1",
                &[&tenant_id],
            )
            .await
            .map_err(db)?
            .map_or(0, |r| r.get(0));
        let target = u64::try_from(target).map_err(|_| broken("a negative size".into()))?;
        let from = frontier.size();
        if target < from {
            return Err(broken(format!(
                "the log holds {target} leaves but {from} were already checkpointed"
            )));
        }
        extend(&tx, tenant_id, &mut frontier, target)
            .await
            .map_err(|e| match e {
                Extend::Db(e) => db(e),
                Extend::Broken(reason) => broken(reason),
            })?;

        let last = tx
            .query_opt(
                "SELECT tree_size, signed_at FROM checkpoints WHERE tenant_id = $1 \
                 ORDER BY signed_at DESC LIMIT 1",
                &[&tenant_id],
            )
            .await
            .map_err(db)?
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, DateTime<Utc>>(1)));
        let heartbeat = chrono::Duration::from_std(self.heartbeat).unwrap_or(chrono::Duration::MAX);
        if let Some((size, _)) = last {
            if size > target {
                return Err(broken(format!(
                    "the log holds {target} leaves but checkpoint {size} was signed"
                )));
            }
        }
        let fresh = last.is_some_and(|(size, at)| size == target && at > now - heartbeat);
        save_head(&tx, tenant_id, &frontier).await.map_err(db)?;
        if fresh {
            tx.commit().await.map_err(db)?;
            return Ok(Outcome::Unchanged { size: target });
        }
        // Times only increase, even if the clock steps back.
        let mut at = now.trunc_subsecs(6);
        if let Some((_, last_at)) = last {
            at = at.max(last_at + chrono::Duration::microseconds(1));
        }
        let at = Timestamp::new(at).map_err(|why| broken(format!("the time {why}")))?;
        let text = log::checkpoint(&self.stack, tenant, target, frontier.root(), at)
            .map_err(|e| broken(e.to_string()))?
            .to_text();
        let signature = self
            .signer
            .sign(text.as_bytes())
            .await
            .map_err(|e| CheckpointerError::Sign(e.to_string()))?;
        let note = SignedNote::new(text, vec![self.key.signature_line(signature)])
            .map_err(|e| CheckpointerError::Sign(e.to_string()))?;
        note.verify(std::slice::from_ref(&self.key)).map_err(|e| {
            CheckpointerError::Sign(format!(
                "the signature does not verify with the configured public key ({e}): is the key the signer's?"
            ))
        })?;
        let note = note.to_text();
        tx.execute(
            "INSERT INTO checkpoints (tenant_id, tree_size, root_hash, signed_at, note) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &tenant_id,
                &(target as i64),
                &&frontier.root().as_bytes()[..],
                &at.get(),
                &note,
            ],
        )
        .await
        .map_err(db)?;
        self.archive
            .put(&log::checkpoint_key(tenant, target, at), note.as_bytes())
            .await
            .map_err(|e| CheckpointerError::Archive(e.to_string()))?;
        tx.commit().await.map_err(db)?;
        Ok(Outcome::Signed {
            size: target,
            appended: target - from,
        })
    }
}

fn frontier_of(size: i64, bytes: &[u8]) -> Result<Frontier, String> {
    let size = u64::try_from(size).map_err(|_| "a negative head size".to_string())?;
    let hashes = bytes
        .chunks(32)
        .map(Hash::from_slice)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the head's frontier: {e}"))?;
    Frontier::from_hashes(size, hashes).map_err(|e| format!("the head's frontier: {e}"))
}

async fn save_head(
    tx: &Transaction<'_>,
    tenant_id: &str,
    frontier: &Frontier,
) -> Result<(), tokio_postgres::Error> {
    let bytes: Vec<u8> = frontier
        .hashes()
        .iter()
        .flat_map(|h| h.as_bytes().iter().copied())
        .collect();
    tx.execute(
        "UPDATE log_heads SET size = $2, frontier = $3 WHERE tenant_id = $1",
        &[&tenant_id, &(frontier.size() as i64), &bytes],
    )
    .await
    .map(drop)
}

enum Extend {
    Db(tokio_postgres::Error),
    Broken(String),
}

/// Appends the leaves `frontier.size()..target` in index order, storing the subtrees they
/// complete at the stored levels.
async fn extend(
    tx: &Transaction<'_>,
    tenant_id: &str,
    frontier: &mut Frontier,
    target: u64,
) -> Result<(), Extend> {
    let read = tx
        .prepare_typed(
            "SELECT log_index, leaf_hash FROM log_entries \
             WHERE tenant_id = $1 AND log_index >= $2 AND log_index < $3 \
             ORDER BY log_index LIMIT $4",
            &[Type::TEXT, Type::INT8, Type::INT8, Type::INT8],
        )
        .await
        .map_err(Extend::Db)?;
    let insert = tx
        .prepare_typed(
            "INSERT INTO log_subtrees (tenant_id, level, idx, hash) \
             SELECT $1, * FROM unnest($2::int2[], $3::int8[], $4::bytea[])",
            &[
                Type::TEXT,
                Type::INT2_ARRAY,
                Type::INT8_ARRAY,
                Type::BYTEA_ARRAY,
            ],
        )
        .await
        .map_err(Extend::Db)?;
    while frontier.size() < target {
        let next = frontier.size();
        let rows = tx
            .query(
                &read,
                &[
                    &tenant_id,
                    &(next as i64),
                    &(target as i64),
                    &LEAVES_PER_READ,
                ],
            )
            .await
            .map_err(Extend::Db)?;
        if rows.is_empty() {
            return Err(Extend::Broken(format!("no leaf at index {next}")));
        }
        let (mut levels, mut indexes, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            let index: i64 = row.get(0);
            let expected = frontier.size();
            if index as u64 != expected {
                return Err(Extend::Broken(format!("no leaf at index {expected}")));
            }
            let leaf = Hash::from_slice(row.get(1))
                .map_err(|e| Extend::Broken(format!("leaf {index}: {e}")))?;
            let completed = frontier
                .append(leaf)
                .map_err(|e| Extend::Broken(e.to_string()))?;
            for (subtree, hash) in completed {
                if is_stored_level(subtree.level()) {
                    levels.push(i16::from(subtree.level()));
                    indexes.push(subtree.index() as i64);
                    hashes.push(hash.as_bytes().to_vec());
                }
            }
        }
        if !levels.is_empty() {
            tx.execute(&insert, &[&tenant_id, &levels, &indexes, &hashes])
                .await
                .map_err(Extend::Db)?;
        }
    }
    Ok(())
}

/// The hashes of `subtrees` of a tenant's tree, from its leaves and stored subtrees: two
/// queries whatever the number of subtrees, sent together (one round trip).
async fn subtree_hashes(
    client: &Transaction<'_>,
    tenant_id: &str,
    subtrees: &[Subtree],
) -> Result<Vec<Hash>, StoreError> {
    let parts: Vec<(u8, std::ops::Range<u64>)> =
        subtrees.iter().map(|&s| stored_parts(s)).collect();
    let mut leaves: Vec<i64> = Vec::new();
    let (mut levels, mut indexes): (Vec<i16>, Vec<i64>) = (Vec::new(), Vec::new());
    for (base, range) in &parts {
        for i in range.clone() {
            if *base == 0 {
                leaves.push(i as i64);
            } else {
                levels.push(i16::from(*base));
                indexes.push(i as i64);
            }
        }
    }
    let unreadable =
        |what: String| StoreError::Refused(format!("a stored hash is unreadable: {what}"));
    let leaf_rows = async {
        if leaves.is_empty() {
            return Ok(Vec::new());
        }
        let statement = client.prepare_cached(LEAVES_SQL).await?;
        client.query(&statement, &[&tenant_id, &leaves]).await
    };
    let subtree_rows = async {
        if levels.is_empty() {
            return Ok(Vec::new());
        }
        let statement = client.prepare_cached(SUBTREES_SQL).await?;
        client
            .query(&statement, &[&tenant_id, &levels, &indexes])
            .await
    };
    let (leaf_rows, subtree_rows) =
        tokio::try_join!(leaf_rows, subtree_rows).map_err(|e| classify(&e))?;
    let mut found: HashMap<(u8, u64), Hash> = HashMap::new();
    for row in leaf_rows {
        let hash = Hash::from_slice(row.get(1)).map_err(|e| unreadable(e.to_string()))?;
        found.insert((0, row.get::<_, i64>(0) as u64), hash);
    }
    for row in subtree_rows {
        let hash = Hash::from_slice(row.get(2)).map_err(|e| unreadable(e.to_string()))?;
        found.insert(
            (row.get::<_, i16>(0) as u8, row.get::<_, i64>(1) as u64),
            hash,
        );
    }
    parts
        .into_iter()
        .map(|(base, range)| {
            let hashes = range
                .map(|i| {
                    found.get(&(base, i)).copied().ok_or_else(|| {
                        StoreError::Refused(format!(
                            "the log has no hash of subtree {i} at level {base}"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(merkle::root(&hashes))
        })
        .collect()
}

async fn assemble(
    client: &Transaction<'_>,
    tenant_id: &str,
    plan: &ProofPlan,
) -> Result<Vec<Hash>, StoreError> {
    let hashes = subtree_hashes(client, tenant_id, plan.subtrees()).await?;
    plan.assemble(&hashes)
        .map_err(|e| StoreError::Refused(format!("a proof could not be assembled: {e}")))
}

fn stored_checkpoint(row: &tokio_postgres::Row) -> Result<StoredCheckpoint, StoreError> {
    let bad =
        |what: String| StoreError::Refused(format!("a stored checkpoint is unreadable: {what}"));
    Ok(StoredCheckpoint {
        tenant_id: row.get::<_, &str>(0).parse().map_err(bad)?,
        size: u64::try_from(row.get::<_, i64>(1)).map_err(|e| bad(e.to_string()))?,
        root: Hash::from_slice(row.get(2)).map_err(|e| bad(e.to_string()))?,
        signed_at: row.get(3),
        note: row.get(4),
    })
}

const CHECKPOINT_COLUMNS: &str = "tenant_id, tree_size, root_hash, signed_at, note";

// The reads of a proof, each prepared once per connection (`prepare_cached`): a read then
// costs one round trip and, once PostgreSQL settles on a generic plan, no planning.

/// A tenant's latest checkpoint.
static LATEST_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = $1 \
         ORDER BY tree_size DESC, signed_at DESC LIMIT 1"
    )
});
/// Leaves by index.
const LEAVES_SQL: &str = "SELECT log_index, leaf_hash FROM log_entries \
     WHERE tenant_id = $1 AND log_index = ANY($2)";
/// Stored subtrees by level and index.
const SUBTREES_SQL: &str = "SELECT s.level, s.idx, s.hash FROM log_subtrees s \
     JOIN unnest($2::int2[], $3::int8[]) AS w(level, idx) ON s.level = w.level AND s.idx = w.idx \
     WHERE s.tenant_id = $1";
/// An event and its leaf's index (the last column), found by the leaf: the event's key is
/// the leaf's, so only the leaf's month is read. No row if the log has no such leaf or its
/// event is archived (its month exported and dropped). `OFFSET 0` keeps the planner from
/// flattening the subquery, which would look the id up in every month and only then compare
/// `occurred_at`; kept apart, the leaf's `occurred_at` prunes the other months at run time.
static EVENT_IN_LOG_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT e.*, l.log_index FROM log_entries l CROSS JOIN LATERAL ( \
             SELECT {} FROM tenant_events \
             WHERE tenant_id = $1 AND id = l.event_id AND occurred_at = l.occurred_at \
             OFFSET 0) e \
         WHERE l.tenant_id = $1 AND l.event_id = $2",
        *crate::writer::COLUMNS
    )
});

async fn latest(
    client: &Transaction<'_>,
    tenant_id: &str,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let statement = client
        .prepare_cached(&LATEST_SQL)
        .await
        .map_err(|e| classify(&e))?;
    client
        .query_opt(&statement, &[&tenant_id])
        .await
        .map_err(|e| classify(&e))?
        .as_ref()
        .map(stored_checkpoint)
        .transpose()
}

/// Proofs for the query API. Connect it as `sentinel_reader`: every read names its tenant
/// for the row-level security policies, as the event reader does.
#[derive(Clone)]
pub struct PgLogReader {
    pool: Pool,
}

impl PgLogReader {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl LogReader for PgLogReader {
    async fn latest_checkpoint(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = tenant_snapshot(&mut client, tenant.as_str()).await?;
        latest(&tx, tenant.as_str()).await
    }

    async fn event_in_log(
        &self,
        tenant: &TenantId,
        event_id: &str,
    ) -> Result<Option<EventInLog>, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tenant_id = tenant.as_str();
        let tx = tenant_snapshot(&mut client, tenant_id).await?;
        // The event with its leaf, and the latest checkpoint: one round trip.
        let found = async {
            let statement = tx
                .prepare_cached(&EVENT_IN_LOG_SQL)
                .await
                .map_err(|e| classify(&e))?;
            tx.query_opt(&statement, &[&tenant_id, &event_id])
                .await
                .map_err(|e| classify(&e))
        };
        let (found, latest) = tokio::try_join!(found, latest(&tx, tenant_id))?;
        let Some(row) = found else {
            return Ok(None);
        };
        let event = event_from_row(&row)?;
        let index = u64::try_from(row.get::<_, i64>(row.len() - 1))
            .map_err(|e| StoreError::Refused(format!("a stored log index: {e}")))?;
        let proof = match latest {
            Some(checkpoint) if index < checkpoint.size => {
                let plan = merkle::inclusion_plan(index, checkpoint.size)
                    .map_err(|e| StoreError::Refused(e.to_string()))?;
                let hashes = assemble(&tx, tenant_id, &plan).await?;
                Some((checkpoint, hashes))
            }
            _ => None,
        };
        Ok(Some(EventInLog {
            event,
            log_index: index,
            proof,
        }))
    }

    async fn consistency(
        &self,
        tenant: &TenantId,
        from: u64,
        to: Option<u64>,
    ) -> Result<(StoredCheckpoint, Vec<Hash>), ConsistencyError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tenant_id = tenant.as_str();
        let tx = tenant_snapshot(&mut client, tenant_id).await?;
        let checkpoint = match to {
            None => latest(&tx, tenant_id).await?,
            Some(to) => tx
                .query_opt(
                    &format!(
                        "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints \
                         WHERE tenant_id = $1 AND tree_size = $2 \
                         ORDER BY signed_at DESC LIMIT 1"
                    ),
                    &[&tenant_id, &i64::try_from(to).unwrap_or(i64::MAX)],
                )
                .await
                .map_err(|e| classify(&e))?
                .as_ref()
                .map(stored_checkpoint)
                .transpose()?,
        };
        let Some(checkpoint) = checkpoint else {
            return Err(match to {
                None => ConsistencyError::NoCheckpoint,
                Some(to) => {
                    ConsistencyError::Range(format!("no checkpoint was signed at tree size {to}"))
                }
            });
        };
        let plan = merkle::consistency_plan(from, checkpoint.size)
            .map_err(|e| ConsistencyError::Range(e.to_string()))?;
        let hashes = assemble(&tx, tenant_id, &plan).await?;
        Ok((checkpoint, hashes))
    }
}
