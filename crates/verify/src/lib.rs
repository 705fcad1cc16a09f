//! `sentinel verify` (issue 11; docs/verify.md): checks one tenant's verifiable log with read
//! access and the public key only.
//!
//! - **Checkpoints** ([`checkpoints`]): every copy's signature, in PostgreSQL and in S3, and
//!   that both hold the same ones.
//! - **The tree** ([`engine`]): every leaf recomputed from its event's row, in log-index
//!   order, folded into O(log n) hashes; at each checkpoint's size the rebuilt root must be the
//!   signed root. Gaps, deleted and inserted rows, swapped entries, a month gone outside the
//!   archiver, and the newest events cut off are named.
//! - **Rollback** ([`state`]): the largest checkpoint a clean run verified is kept; the next
//!   run must find one at least as large, with the same tree at that size.
//!
//! Leaves come through [`source::LeafSource`] (PostgreSQL now; an archived month's Parquet is
//! the next source) and checkpoints through [`source::CheckpointSource`].

pub mod archive;
pub mod checkpoints;
pub mod engine;
pub mod fast;
pub mod findings;
pub mod key;
pub mod multiset;
pub mod pg;
pub mod rows;
pub mod s3;
pub mod source;
pub mod state;
pub mod tiles;

use std::collections::HashSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use sentinel_domain::checkpoint::{open_checkpoint, Origin, VerifierKey};
use sentinel_domain::fields::TenantId;
use sentinel_domain::log::{checkpoint_key, checkpoint_time};
use sentinel_domain::merkle::{self, Hash};
use sentinel_domain::Month;

use crate::checkpoints::{rfc3339, ValidCheckpoint};
use crate::engine::{Check, Engine, EventCounts, MAX_LISTED};
use crate::findings::{group, CheckpointRef, EventRef, Finding, Store};
use crate::pg::PgLog;
use crate::source::{CheckpointSource, LeafSource, SourceError};

/// S3 checkpoints signed this close to the database snapshot, and not in it, are left for
/// the next run: the checkpointer writes S3 first and commits after.
pub const SNAPSHOT_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// What to verify, and with what.
#[derive(Debug, Clone)]
pub struct Config {
    pub tenant: TenantId,
    /// Names the log (`sentinel/<stack>/<tenant>`).
    pub stack: String,
    pub keys: Vec<VerifierKey>,
    /// Keys the archive's manifest notes may be signed with (`sentinel/<stack>/archive`).
    pub archive_keys: Vec<VerifierKey>,
    /// Rows of events with `occurred_at` in `[from, to)` are recomputed; the others' logged
    /// leaves go into the tree as they are.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Where the last verified checkpoint is kept; `None` checks no rollback.
    pub state_dir: Option<PathBuf>,
    /// Compare the rows with the log row by row (the join) even when they all match, instead
    /// of trying the streams first.
    pub join: bool,
}

/// Progress of a long run, for a terminal.
pub trait Progress: Send + Sync {
    /// The log's entries are being read: `total` of them, as far as tenant_logs knows.
    fn start(&self, total: u64);
    fn advance(&self, entries: u64);
    fn finish(&self);
}

/// No progress shown.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CheckpointCounts {
    pub total: u64,
    pub valid: u64,
    pub in_postgresql: u64,
    /// `None` when no bucket was checked.
    pub in_s3: Option<u64>,
    /// S3 checkpoints signed during the run, left for the next one.
    pub newer_than_snapshot: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Trusted {
    pub state_dir: Option<String>,
    /// The checkpoint the last clean run verified.
    pub before: Option<CheckpointRef>,
    /// The checkpoint this run keeps (only a run without findings keeps one).
    pub saved: Option<CheckpointRef>,
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tenant: String,
    pub origin: String,
    /// The key's name and ID (`sentinel/<stack>+<8 hex digits>`).
    pub keys: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub checkpoints: CheckpointCounts,
    pub events: EventCounts,
    /// The log's size (one past the last index read).
    pub log_size: u64,
    /// The largest valid checkpoint's size: leaves past it are not signed yet (a checkpoint
    /// follows within a minute).
    pub signed_size: Option<u64>,
    pub trusted: Trusted,
    /// How the rows were compared with the log: `streams` (apart, by a keyed multiset digest:
    /// they all matched) or `join` (row by row, naming each that differs).
    pub compared_by: &'static str,
    /// The S3 archive's check; `None` when no archive bucket was given.
    pub archive: Option<archive::ArchiveCounts>,
    /// `--s3-only`: the log's tiles in S3 stood in for PostgreSQL, which was not read.
    pub tiles: Option<tiles::TileCounts>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Everything verified.
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// The findings of one kind.
    pub fn of_kind(&self, kind: &str) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.kind() == kind).collect()
    }

    /// The report as `aws cloudtrail validate-logs` would print it: what was asked, the
    /// counts, then one line per failure.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "Validating the log {} (tenant {}) with key {}\n",
            self.origin,
            self.tenant,
            self.keys.join(", ")
        ));
        match (&self.from, &self.to) {
            (None, None) => out.push_str("Results requested for every event\n"),
            (from, to) => out.push_str(&format!(
                "Results requested for events that occurred from {} to {}\n",
                from.as_deref().unwrap_or("the start"),
                to.as_deref().unwrap_or("now")
            )),
        }
        let source = match self.tiles {
            Some(_) => "in the log's tiles in S3; PostgreSQL not read: --s3-only",
            None => "entries",
        };
        out.push_str(&format!(
            "Results found for log indexes 0 to {} ({} {source})\n\n",
            group(self.log_size.saturating_sub(1)),
            group(self.events.log_entries)
        ));
        let c = &self.checkpoints;
        let copies = match (c.in_s3, &self.tiles) {
            (Some(s3), Some(_)) => format!("S3 {}", group(s3)),
            (Some(s3), None) => {
                format!("PostgreSQL {}, S3 {}", group(c.in_postgresql), group(s3))
            }
            (None, _) => format!(
                "PostgreSQL {}; S3 not checked: no --checkpoint-bucket",
                group(c.in_postgresql)
            ),
        };
        out.push_str(&format!(
            "{}/{} checkpoints valid ({copies})\n",
            group(c.valid),
            group(c.total)
        ));
        if let Some(t) = &self.tiles {
            out.push_str(&format!(
                "{}/{} checkpoints' roots rebuilt from {} tiles of the log",
                group(t.checkpoints_matched),
                group(t.checkpoints_checked),
                group(t.tiles)
            ));
            if t.checkpoints_beyond > 0 {
                out.push_str(&format!(
                    " ({} larger checkpoints are past what the tiles hold: the archiver puts the log in S3 up to each archived month's covering checkpoint)",
                    group(t.checkpoints_beyond)
                ));
            }
            out.push('\n');
        }
        let e = &self.events;
        if self.tiles.is_none() {
            out.push_str(&format!(
                "{}/{} events valid\n",
                group(e.valid),
                group(e.checked)
            ));
        }
        out.push_str(match self.compared_by {
            "streams" => {
                "Rows compared with the log as two streams (a keyed multiset digest): all matched\n"
            }
            "tiles" => "Archived rows compared with the leaves of the log's tiles, by log index\n",
            _ => "Rows compared with the log row by row (a join)\n",
        });
        let signed = self.signed_size.unwrap_or(0);
        if self.log_size > signed && self.tiles.is_none() {
            out.push_str(&format!(
                "{} events after the latest checkpoint (size {}) are not signed yet\n",
                group(self.log_size - signed),
                group(signed)
            ));
        }
        if e.outside_range > 0 {
            out.push_str(&format!(
                "{} events outside the requested range: their logged leaf hashes were used in the tree, their rows not recomputed\n",
                group(e.outside_range)
            ));
        }
        match &self.archive {
            Some(a) => {
                out.push_str(&format!(
                    "{}/{} manifest notes valid (s3://{}/manifests/{})\n",
                    group(a.valid_notes),
                    group(a.notes),
                    a.bucket,
                    if self.tiles.is_some() { "" } else { " and PostgreSQL" }
                ));
                out.push_str(&format!(
                    "{}/{} archived events valid ({} months, {} Parquet parts read)\n",
                    group(a.valid),
                    group(a.checked),
                    group(a.months),
                    group(a.parts)
                ));
            }
            None if e.archived > 0 => out.push_str(&format!(
                "{} events in archived months: their logged leaf hashes were used in the tree, their archived rows NOT CHECKED: no --archive-bucket\n",
                group(e.archived)
            )),
            None => {}
        }
        if c.newer_than_snapshot > 0 {
            out.push_str(&format!(
                "{} S3 checkpoints signed after the database snapshot were left for the next run\n",
                group(c.newer_than_snapshot)
            ));
        }
        match (
            &self.trusted.state_dir,
            &self.trusted.before,
            &self.trusted.saved,
        ) {
            (None, ..) => out.push_str("Rollback not checked: no state directory\n"),
            (Some(dir), before, saved) => {
                if let Some(before) = before {
                    out.push_str(&format!("The last run verified the {before}\n"));
                }
                match saved {
                    Some(saved) => {
                        out.push_str(&format!("Trusting the {saved} from now on ({dir})\n"))
                    }
                    None => out.push_str(&format!(
                        "The trusted checkpoint was left as it was ({dir})\n"
                    )),
                }
            }
        }
        if !self.findings.is_empty() {
            out.push('\n');
            for finding in &self.findings {
                out.push_str(&finding.to_string());
                out.push('\n');
            }
        }
        out
    }
}

/// Verifies one tenant's log. An `Err` is a run that could not finish (the database or the
/// bucket unreachable, a state directory unreadable); anything wrong with the log itself is a
/// finding in the report.
pub async fn verify(
    config: &Config,
    pg: &PgLog,
    s3: Option<&dyn CheckpointSource>,
    archive: Option<&archive::S3Archive>,
    progress: &dyn Progress,
) -> Result<Report, SourceError> {
    let tenant = &config.tenant;
    let origin = sentinel_domain::log::origin(&config.stack, tenant)
        .map_err(|e| SourceError::new("the log's origin", e))?;
    let mut findings = Vec::new();

    // Checkpoints: PostgreSQL's (in the snapshot), then S3's.
    let in_postgresql = pg.checkpoints(tenant).await?;
    let in_s3 = match s3 {
        Some(s3) => Some(s3.checkpoints(tenant).await?),
        None => None,
    };
    let s3_checked = in_s3.is_some();
    let checked = checkpoints::check(
        tenant,
        &origin,
        &config.keys,
        Some(in_postgresql),
        in_s3,
        Some(pg.snapshot_at() - SNAPSHOT_MARGIN),
        &mut findings,
    );
    let largest = checked.valid.iter().max_by_key(|c| (c.size, c.signed_at));

    let mut checks: Vec<Check> = checked.valid.iter().map(Check::signed).collect();
    let (mut trusted, trusted_before) =
        trusted_before(config, &origin, largest, &mut checks, &mut findings)?;

    // The tree, from every entry in index order.
    let archived = pg.archived_months().await?;
    let attached = pg.attached_months().await?;
    let recorded = pg.recorded_size(tenant).await?;
    // The fast path first: the log and the rows streamed apart and compared by a keyed
    // digest. Only if they differ, the join, which names every row that differs.
    let fast = if config.join {
        None
    } else {
        fast::check(pg, config, &archived, checks.clone(), recorded, progress).await?
    };
    let compared_by = if fast.is_some() { "streams" } else { "join" };
    let mut extra = Vec::new();
    let engine = match fast {
        Some(engine) => engine,
        None => {
            let mut engine = Engine::new(checks);
            progress.start(recorded.unwrap_or(0));
            let mut leaves = pg
                .leaves(tenant, config.from, config.to, archived.clone())
                .await?;
            while let Some(batch) = leaves.next_batch().await? {
                let n = batch.len() as u64;
                for entry in batch {
                    engine.push(entry);
                }
                progress.advance(n);
            }
            progress.finish();

            // Rows no log entry points at.
            let mut listed = 0;
            pg.unlogged_rows(tenant, config.from, config.to, |id, at| {
                listed += 1;
                let event = EventRef {
                    event_id: id,
                    log_index: None,
                    month: Month::of(at).to_string(),
                };
                engine.inserted(event, listed <= MAX_LISTED);
            })
            .await?;
            if listed > MAX_LISTED {
                extra.push(Finding::NotListed {
                    of_kind: "row_inserted".into(),
                    more: (listed - MAX_LISTED) as u64,
                });
            }
            engine
        }
    };
    // A root that fails with every row matching its logged leaf: the leaves moved or were
    // rewritten together; the subtrees stored at checkpoint time say where.
    if let Some(&size) = engine.unexplained_failures().first() {
        extra.extend(locate(pg, tenant, size).await?);
    }
    let log_size = engine.end();
    let (tree_findings, events, failed_in_tree) = engine.finish(recorded, &attached, extra);
    if recorded.is_none() && checked.total == 0 && events.log_entries == 0 && events.inserted == 0 {
        pg.close().await;
        return Err(SourceError(format!(
            "tenant {} has no log: no entries, no checkpoints",
            tenant.as_str()
        )));
    }
    findings.extend(tree_findings);
    // The archive: its chain of manifests, and the archived rows against the log.
    let archive = match archive {
        Some(s3) => {
            let input = archive::ArchiveCheck {
                tenant,
                stack: &config.stack,
                keys: &config.archive_keys,
                checkpoints: &checked.valid,
                archived: &archived,
                from: config.from,
                to: config.to,
            };
            Some(
                archive::check(
                    archive::LogSource::Postgresql(pg),
                    s3,
                    &input,
                    &mut findings,
                )
                .await?,
            )
        }
        None => None,
    };
    pg.close().await;

    let failed: HashSet<&String> = checked.failed.iter().chain(&failed_in_tree).collect();
    let checkpoints = CheckpointCounts {
        total: checked.total,
        valid: checked.total.saturating_sub(failed.len() as u64),
        in_postgresql: checked.in_postgresql,
        in_s3: s3_checked.then_some(checked.in_s3),
        newer_than_snapshot: checked.too_new,
    };

    trust(
        config,
        &origin,
        &findings,
        largest,
        trusted_before.as_ref(),
        &mut trusted,
    )?;

    Ok(Report {
        tenant: tenant.as_str().to_string(),
        origin: origin.as_str().to_string(),
        keys: config
            .keys
            .iter()
            .map(|k| format!("{}+{:08x}", k.name(), k.key_id()))
            .collect(),
        from: config.from.map(rfc3339),
        to: config.to.map(rfc3339),
        checkpoints,
        events,
        log_size,
        signed_size: largest.map(|l| l.size),
        trusted,
        compared_by,
        archive,
        tiles: None,
        findings,
    })
}

/// The checkpoint a clean run trusted before, from the state directory: a finding if the
/// largest valid checkpoint is smaller (a rollback), else a check the tree must meet.
fn trusted_before(
    config: &Config,
    origin: &Origin,
    largest: Option<&ValidCheckpoint>,
    checks: &mut Vec<Check>,
    findings: &mut Vec<Finding>,
) -> Result<(Trusted, Option<ValidCheckpoint>), SourceError> {
    let mut trusted = Trusted {
        state_dir: config.state_dir.as_ref().map(|d| d.display().to_string()),
        ..Trusted::default()
    };
    let Some(dir) = &config.state_dir else {
        return Ok((trusted, None));
    };
    let Some(note) = state::load(dir, origin).map_err(|e| SourceError(format!("{e:#}")))? else {
        return Ok((trusted, None));
    };
    match open_trusted(&config.tenant, origin, &config.keys, &note) {
        Ok(before) => {
            let reference = engine::trusted_reference(&before);
            trusted.before = Some(reference.clone());
            if largest.is_none_or(|l| l.size < before.size) {
                findings.push(Finding::RolledBack {
                    trusted: reference,
                    largest_size: largest.map(|l| l.size),
                });
            } else {
                checks.push(Check {
                    size: before.size,
                    root: before.root,
                    reference,
                    trusted: true,
                });
            }
            Ok((trusted, Some(before)))
        }
        Err(reason) => {
            findings.push(Finding::CheckpointInvalid {
                store: Store::State,
                checkpoint: CheckpointRef {
                    size: None,
                    signed_at: None,
                    location: state::path(dir, origin).display().to_string(),
                },
                reason,
            });
            Ok((trusted, None))
        }
    }
}

/// A clean run trusts its largest checkpoint from now on (never a smaller one than before).
fn trust(
    config: &Config,
    origin: &Origin,
    findings: &[Finding],
    largest: Option<&ValidCheckpoint>,
    before: Option<&ValidCheckpoint>,
    trusted: &mut Trusted,
) -> Result<(), SourceError> {
    if let (Some(dir), true, Some(largest)) = (&config.state_dir, findings.is_empty(), largest) {
        if before.is_none_or(|b| largest.size >= b.size) {
            state::save(dir, origin, &largest.note).map_err(|e| SourceError(format!("{e:#}")))?;
            trusted.saved = Some(engine::trusted_reference(largest));
        }
    }
    Ok(())
}

/// Verifies one tenant's archived months from S3 alone (`--s3-only`), for an auditor without
/// access to the database, or after it is gone: the signed checkpoints from the checkpoint
/// bucket; the tenant's log from its tiles in the archive bucket, every checkpoint they reach
/// rebuilt from them; the chain of manifest notes; and each archived month's parts and rows,
/// each row's leaf matched with the tiles' leaf at its log index.
pub async fn verify_s3_only(
    config: &Config,
    checkpoints: &dyn CheckpointSource,
    archive: &archive::S3Archive,
    progress: &dyn Progress,
) -> Result<Report, SourceError> {
    let tenant = &config.tenant;
    let origin = sentinel_domain::log::origin(&config.stack, tenant)
        .map_err(|e| SourceError::new("the log's origin", e))?;
    let mut findings = Vec::new();
    let in_s3 = checkpoints.checkpoints(tenant).await?;
    let checked = checkpoints::check(
        tenant,
        &origin,
        &config.keys,
        None,
        Some(in_s3),
        None,
        &mut findings,
    );
    let largest = checked.valid.iter().max_by_key(|c| (c.size, c.signed_at));
    let mut checks: Vec<Check> = checked.valid.iter().map(Check::signed).collect();
    let (mut trusted, before) =
        trusted_before(config, &origin, largest, &mut checks, &mut findings)?;

    let (log, tile_counts) = tiles::read(archive, tenant, &checks, progress, &mut findings).await?;
    if tile_counts.leaves == 0 && checked.total == 0 {
        return Err(SourceError(format!(
            "tenant {} has no log in S3: no tiles under s3://{}/{}, no checkpoints",
            tenant.as_str(),
            archive.name(),
            sentinel_domain::tiles::tiles_prefix(tenant)
        )));
    }
    let none_archived = std::collections::BTreeSet::new();
    let input = archive::ArchiveCheck {
        tenant,
        stack: &config.stack,
        keys: &config.archive_keys,
        checkpoints: &checked.valid,
        archived: &none_archived,
        from: config.from,
        to: config.to,
    };
    let archived = archive::check(
        archive::LogSource::Tiles(&log),
        archive,
        &input,
        &mut findings,
    )
    .await?;

    trust(
        config,
        &origin,
        &findings,
        largest,
        before.as_ref(),
        &mut trusted,
    )?;
    let events = EventCounts {
        log_entries: tile_counts.leaves,
        checked: archived.checked,
        valid: archived.valid,
        archived: archived.checked,
        ..EventCounts::default()
    };
    Ok(Report {
        tenant: tenant.as_str().to_string(),
        origin: origin.as_str().to_string(),
        keys: config
            .keys
            .iter()
            .map(|k| format!("{}+{:08x}", k.name(), k.key_id()))
            .collect(),
        from: config.from.map(rfc3339),
        to: config.to.map(rfc3339),
        checkpoints: CheckpointCounts {
            total: checked.total,
            valid: checked.total.saturating_sub(checked.failed.len() as u64),
            in_postgresql: 0,
            in_s3: Some(checked.in_s3),
            newer_than_snapshot: 0,
        },
        events,
        log_size: tile_counts.leaves,
        signed_size: largest.map(|l| l.size),
        trusted,
        compared_by: "tiles",
        archive: Some(archived),
        tiles: Some(tile_counts),
        findings,
    })
}

fn open_trusted(
    tenant: &TenantId,
    origin: &Origin,
    keys: &[VerifierKey],
    note: &str,
) -> Result<ValidCheckpoint, String> {
    let checkpoint = open_checkpoint(note.as_bytes(), origin, keys).map_err(|e| e.to_string())?;
    let at = checkpoint_time(&checkpoint).ok_or("the note has no time line")?;
    Ok(ValidCheckpoint {
        size: checkpoint.size(),
        root: *checkpoint.root(),
        signed_at: at.get(),
        note: note.to_string(),
        key: checkpoint_key(tenant, checkpoint.size(), at),
    })
}

/// Leaves per block the checkpointer stores a subtree hash of (level 4).
const BLOCK: u64 = 16;
/// Blocks compared per round trip.
const BLOCKS_PER_READ: u64 = 4096;
/// Differing blocks named at most.
const MAX_BLOCKS: usize = 8;

struct Block {
    index: u64,
    stored: Hash,
    leaves: Vec<(u64, Hash, String, DateTime<Utc>)>,
}

/// Where the log's leaves below `size` differ from the 16-leaf subtrees the checkpointer
/// stored (level 4 of `log_subtrees`), and if two leaves were swapped, which two.
async fn locate(pg: &PgLog, tenant: &TenantId, size: u64) -> Result<Vec<Finding>, SourceError> {
    let blocks = size / BLOCK;
    let mut differing: Vec<(u64, Hash)> = Vec::new();
    let mut first = 0;
    while first < blocks && differing.len() < MAX_BLOCKS {
        let last = (first + BLOCKS_PER_READ).min(blocks);
        let mut hashes = Vec::with_capacity((last - first) as usize);
        let mut current = Vec::with_capacity(BLOCK as usize);
        pg.logged_leaves(tenant, first * BLOCK, last * BLOCK, |_, leaf, _, _| {
            current.push(leaf);
            if current.len() == BLOCK as usize {
                hashes.push(merkle::root(&current));
                current.clear();
            }
        })
        .await?;
        let indexes: Vec<u64> = (first..last).collect();
        let stored = pg.stored_subtrees(tenant, 4, &indexes).await?;
        for (block, hash) in (first..).zip(hashes) {
            if let Some(stored) = stored.get(&block).filter(|s| **s != hash) {
                differing.push((block, *stored));
            }
        }
        first = last;
    }
    let mut found = Vec::new();
    for (index, stored) in differing.into_iter().take(MAX_BLOCKS) {
        let mut leaves = Vec::new();
        pg.logged_leaves(
            tenant,
            index * BLOCK,
            (index + 1) * BLOCK,
            |i, leaf, id, at| {
                leaves.push((i, leaf, id, at));
            },
        )
        .await?;
        found.push(Block {
            index,
            stored,
            leaves,
        });
    }
    if let Some((p, q)) = swapped_pair(&found) {
        let event = |(i, _, id, at): &(u64, Hash, String, DateTime<Utc>)| EventRef {
            event_id: id.clone(),
            log_index: Some(*i),
            month: Month::of(*at).to_string(),
        };
        return Ok(vec![Finding::Swapped {
            first: event(&found[p.0].leaves[p.1]),
            second: event(&found[q.0].leaves[q.1]),
        }]);
    }
    Ok(found
        .into_iter()
        .map(|b| Finding::BlockDiffers {
            first_index: b.index * BLOCK,
            last_index: (b.index + 1) * BLOCK - 1,
            event_ids: b.leaves.into_iter().map(|(_, _, id, _)| id).collect(),
        })
        .collect())
}

/// The two leaves whose exchange makes every differing block its stored hash again.
fn swapped_pair(blocks: &[Block]) -> Option<((usize, usize), (usize, usize))> {
    if blocks.is_empty() || blocks.len() > 2 {
        return None;
    }
    let positions: Vec<(usize, usize)> = blocks
        .iter()
        .enumerate()
        .flat_map(|(b, block)| (0..block.leaves.len()).map(move |l| (b, l)))
        .collect();
    let mut leaves: Vec<Vec<Hash>> = blocks
        .iter()
        .map(|b| b.leaves.iter().map(|l| l.1).collect())
        .collect();
    for (n, &p) in positions.iter().enumerate() {
        for &q in &positions[n + 1..] {
            let (a, b) = (leaves[p.0][p.1], leaves[q.0][q.1]);
            if a == b {
                continue;
            }
            leaves[p.0][p.1] = b;
            leaves[q.0][q.1] = a;
            let all = blocks
                .iter()
                .zip(&leaves)
                .all(|(block, l)| l.len() == BLOCK as usize && merkle::root(l) == block.stored);
            leaves[p.0][p.1] = a;
            leaves[q.0][q.1] = b;
            if all {
                return Some((p, q));
            }
        }
    }
    None
}
