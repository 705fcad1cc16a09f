//! The tenant's log as the archiver put it in S3: level-0 tiles of leaf hashes
//! (`sentinel_domain::tiles`). With `--s3-only`, the verifier reads them instead of
//! `log_entries`: it folds their leaves into the tree, and at each signed checkpoint's size
//! (from the checkpoint bucket) the rebuilt root must be the signed root. The leaves are
//! kept in a temporary file (32 bytes each), not in memory, so that each archived row's leaf
//! can be looked up by its log index.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

use futures_util::{StreamExt, TryStreamExt};
use sentinel_domain::fields::TenantId;
use sentinel_domain::merkle::{Frontier, Hash, HASH_LEN};
use sentinel_domain::tiles::{self, TILE_WIDTH};

use crate::archive::S3Archive;
use crate::engine::Check;
use crate::findings::Finding;
use crate::source::SourceError;
use crate::Progress;

/// Tiles read at once.
const CONCURRENT_GETS: usize = 16;

/// What the tiles gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TileCounts {
    /// Tiles read.
    pub tiles: u64,
    /// Leaves they hold, from index 0 on without a gap: the tree size they rebuild.
    pub leaves: u64,
    /// Signed checkpoints whose root they were checked against, and those that matched.
    pub checkpoints_checked: u64,
    pub checkpoints_matched: u64,
    /// Signed checkpoints larger than the tiles reach: not checked here.
    pub checkpoints_beyond: u64,
}

/// The leaves the tiles hold, by log index.
pub struct TileLog {
    file: std::fs::File,
    size: u64,
}

impl TileLog {
    /// The leaves held: indexes `0..size`.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The leaf at `index`, if the tiles reach it.
    pub fn leaf(&self, index: u64) -> Result<Option<Hash>, SourceError> {
        if index >= self.size {
            return Ok(None);
        }
        let mut bytes = [0u8; HASH_LEN];
        self.file
            .read_exact_at(&mut bytes, index * HASH_LEN as u64)
            .map_err(|e| SourceError::new("could not read the tiles' temporary file", e))?;
        Ok(Some(Hash::from_slice(&bytes).expect("32 bytes")))
    }
}

/// Which tiles the listing holds: per tile number, whether the full tile is there, and the
/// widest partial one.
#[derive(Debug, Default, Clone, Copy)]
struct Listed {
    full: bool,
    widest_partial: Option<u64>,
}

/// The tiles to read, in order, as far as they go without a gap: `(n, width)`.
fn plan(listed: &BTreeMap<u64, Listed>) -> Vec<(u64, u64)> {
    let mut plan = Vec::new();
    for n in 0.. {
        match listed.get(&n) {
            Some(l) if l.full => plan.push((n, TILE_WIDTH)),
            Some(Listed {
                widest_partial: Some(w),
                ..
            }) => {
                plan.push((n, *w));
                break;
            }
            _ => break,
        }
    }
    plan
}

/// Reads the tenant's tiles and checks every checkpoint of `checks` they reach.
pub async fn read(
    s3: &S3Archive,
    tenant: &TenantId,
    checks: &[Check],
    progress: &dyn Progress,
    findings: &mut Vec<Finding>,
) -> Result<(TileLog, TileCounts), SourceError> {
    let prefix = tiles::tiles_prefix(tenant);
    let keys = s3.list(&prefix).await?;
    let mut listed: BTreeMap<u64, Listed> = BTreeMap::new();
    for key in keys {
        match tiles::parse_tile_key(&prefix, &key) {
            Some((n, TILE_WIDTH)) => listed.entry(n).or_default().full = true,
            Some((n, w)) => {
                let l = listed.entry(n).or_default();
                l.widest_partial = l.widest_partial.max(Some(w));
            }
            None => findings.push(Finding::LogTileInvalid {
                key,
                reason: "not the key of a tile".into(),
            }),
        }
    }
    let plan = plan(&listed);
    let planned: u64 = plan.iter().map(|(_, w)| w).sum();
    if let Some((&last, _)) = listed.iter().next_back() {
        let reached = plan.last().map_or(0, |(n, _)| n + 1);
        if last >= reached {
            findings.push(Finding::LogTileMissing {
                key: tiles::tile_key(tenant, reached, TILE_WIDTH),
                reason: format!(
                    "tile {last} is there, so the tiles stop short at {planned} leaves"
                ),
            });
        }
    }
    let mut checks: Vec<&Check> = checks.iter().collect();
    checks.sort_by_key(|c| c.size);
    let mut counts = TileCounts {
        checkpoints_beyond: checks.iter().filter(|c| c.size > planned).count() as u64,
        ..TileCounts::default()
    };
    let mut pending = checks.into_iter().filter(|c| c.size <= planned).peekable();

    let file = tempfile::tempfile()
        .map_err(|e| SourceError::new("could not make a temporary file for the tiles", e))?;
    let mut out = BufWriter::new(&file);
    let mut frontier = Frontier::new();
    let mut check_root =
        |frontier: &Frontier, counts: &mut TileCounts, findings: &mut Vec<Finding>| {
            while let Some(check) = pending.next_if(|c| c.size == frontier.size()) {
                counts.checkpoints_checked += 1;
                if frontier.root() == check.root {
                    counts.checkpoints_matched += 1;
                } else {
                    findings.push(Finding::LogTilesRootMismatch {
                        checkpoint: check.reference.clone(),
                    });
                }
            }
        };
    check_root(&frontier, &mut counts, findings);
    progress.start(planned);
    let mut tiles = futures_util::stream::iter(plan.iter().copied())
        .map(|(n, width)| {
            let key = tiles::tile_key(tenant, n, width);
            async move { s3.get(&key).await.map(|bytes| (key, width, bytes)) }
        })
        .buffered(CONCURRENT_GETS);
    while let Some((key, width, bytes)) = tiles.try_next().await? {
        let leaves = match bytes.map(|b| tiles::decode_tile(&b, width)) {
            Some(Ok(leaves)) => leaves,
            Some(Err(e)) => {
                findings.push(Finding::LogTileInvalid {
                    key,
                    reason: e.to_string(),
                });
                break;
            }
            None => {
                findings.push(Finding::LogTileMissing {
                    key,
                    reason: "listed, then gone".into(),
                });
                break;
            }
        };
        counts.tiles += 1;
        for leaf in leaves {
            out.write_all(leaf.as_bytes())
                .map_err(|e| SourceError::new("could not write the tiles' temporary file", e))?;
            frontier
                .append(leaf)
                .map_err(|e| SourceError::new("the tiles' tree", e))?;
            check_root(&frontier, &mut counts, findings);
        }
        progress.advance(width);
    }
    progress.finish();
    out.flush()
        .map_err(|e| SourceError::new("could not write the tiles' temporary file", e))?;
    drop(out);
    counts.leaves = frontier.size();
    Ok((
        TileLog {
            file,
            size: frontier.size(),
        },
        counts,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_takes_full_tiles_then_the_widest_partial_and_stops_at_a_gap() {
        let mut listed = BTreeMap::new();
        listed.insert(
            0,
            Listed {
                full: true,
                widest_partial: Some(10),
            },
        );
        listed.insert(
            1,
            Listed {
                full: false,
                widest_partial: Some(200),
            },
        );
        assert_eq!(plan(&listed), vec![(0, 256), (1, 200)]);
        listed.remove(&0);
        assert_eq!(plan(&listed), vec![]);
    }
}
