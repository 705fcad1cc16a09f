//! A tenant's log in the archive bucket as level-0 tiles (issue 11, point 4;
//! docs/verifiable-log.md, "The log's tiles"): what lets a month whose partition was dropped
//! verify from S3 alone.
//!
//! The layout is level 0 of C2SP tlog-tiles (`tile/0/<N>[.p/<W>]`) under the tenant's
//! prefix `log/<tenant>/`: tile `N` holds the leaf hashes of log indexes `256·N` to
//! `256·N + 255`, concatenated (32 bytes each). A full tile never changes once written; a
//! tile with fewer leaves (the tree's right edge) is a partial tile of width `W`, and a wider
//! one (or the full one) may be written beside it later. Higher levels are not written: a
//! verifier folds the leaves itself, and the signed checkpoints in S3 say what root they
//! must give.

use crate::fields::TenantId;
use crate::merkle::{Hash, HASH_LEN};

/// Leaves per tile.
pub const TILE_WIDTH: u64 = 256;

/// The prefix of a tenant's tiles: `log/<tenant>/tile/0/`.
pub fn tiles_prefix(tenant: &TenantId) -> String {
    format!("log/{}/tile/0/", tenant.as_str())
}

/// The key of tile `n` holding `width` leaves (1 to 256): `…/tile/0/<N>` for a full tile,
/// `…/tile/0/<N>.p/<W>` for a partial one. `N` is written in 3-digit path elements, each but
/// the last prefixed by `x` (1234067 → `x001/x234/067`).
pub fn tile_key(tenant: &TenantId, n: u64, width: u64) -> String {
    debug_assert!((1..=TILE_WIDTH).contains(&width));
    let mut key = tiles_prefix(tenant);
    key.push_str(&tile_path(n));
    if width < TILE_WIDTH {
        key.push_str(&format!(".p/{width}"));
    }
    key
}

fn tile_path(n: u64) -> String {
    let digits = format!("{n:03}");
    // Left-pad to a multiple of three digits, then split.
    let pad = (3 - digits.len() % 3) % 3;
    let padded = format!("{}{digits}", "0".repeat(pad));
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .map(|c| std::str::from_utf8(c).expect("digits"))
        .collect();
    let last = groups.len() - 1;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i < last {
                format!("x{g}")
            } else {
                g.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The tile number and width a key under `prefix` names, if it is a tile key written as
/// [`tile_key`] writes it (so exactly one key names each tile and width).
pub fn parse_tile_key(prefix: &str, key: &str) -> Option<(u64, u64)> {
    let rest = key.strip_prefix(prefix)?;
    let (path, width) = match rest.split_once(".p/") {
        Some((path, width)) => {
            let w: u64 = width.parse().ok()?;
            if !(1..TILE_WIDTH).contains(&w) || width != w.to_string() {
                return None;
            }
            (path, w)
        }
        None => (rest, TILE_WIDTH),
    };
    let elements: Vec<&str> = path.split('/').collect();
    let last = elements.len() - 1;
    let mut digits = String::new();
    for (i, element) in elements.iter().enumerate() {
        let group = if i < last {
            element.strip_prefix('x')?
        } else {
            element
        };
        if group.len() != 3 || !group.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.push_str(group);
    }
    let n: u64 = digits.parse().ok()?;
    (tile_path(n) == path).then_some((n, width))
}

/// The tiles that hold a tree of `size` leaves, in order: `(n, width)`.
pub fn tiles_of(size: u64) -> impl Iterator<Item = (u64, u64)> {
    let count = size.div_ceil(TILE_WIDTH);
    (0..count).map(move |n| (n, (size - n * TILE_WIDTH).min(TILE_WIDTH)))
}

/// A tile's bytes: its leaf hashes, concatenated.
pub fn encode_tile(leaves: &[Hash]) -> Vec<u8> {
    leaves.iter().flat_map(|h| *h.as_bytes()).collect()
}

/// Why a tile's bytes are not a tile of the width its key names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("it is {got} bytes, not the {expected} of {width} leaf hashes")]
pub struct TileLengthError {
    pub got: usize,
    pub expected: usize,
    pub width: u64,
}

/// The leaf hashes of a tile of `width` leaves.
pub fn decode_tile(bytes: &[u8], width: u64) -> Result<Vec<Hash>, TileLengthError> {
    let expected = width as usize * HASH_LEN;
    if bytes.len() != expected {
        return Err(TileLengthError {
            got: bytes.len(),
            expected,
            width,
        });
    }
    Ok(bytes
        .chunks_exact(HASH_LEN)
        .map(|c| Hash::from_slice(c).expect("32 bytes"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        "acme".parse().unwrap()
    }

    #[test]
    fn tile_keys_follow_tlog_tiles_path_elements() {
        let t = tenant();
        assert_eq!(tile_key(&t, 0, 256), "log/acme/tile/0/000");
        assert_eq!(tile_key(&t, 5, 17), "log/acme/tile/0/005.p/17");
        assert_eq!(tile_key(&t, 999, 256), "log/acme/tile/0/999");
        assert_eq!(tile_key(&t, 1000, 256), "log/acme/tile/0/x001/000");
        assert_eq!(
            tile_key(&t, 1_234_067, 3),
            "log/acme/tile/0/x001/x234/067.p/3"
        );
    }

    #[test]
    fn a_tile_key_gives_back_its_number_and_width_and_nothing_else_parses() {
        let t = tenant();
        let prefix = tiles_prefix(&t);
        for (n, w) in [(0, 256), (7, 1), (999, 255), (1000, 256), (1_234_067, 3)] {
            assert_eq!(parse_tile_key(&prefix, &tile_key(&t, n, w)), Some((n, w)));
        }
        for bad in [
            "log/acme/tile/0/1",
            "log/acme/tile/0/0001",
            "log/acme/tile/0/x000/001",
            "log/acme/tile/0/001/002",
            "log/acme/tile/0/001.p/0",
            "log/acme/tile/0/001.p/256",
            "log/acme/tile/0/001.p/07",
            "log/acme/tile/0/abc",
            "log/other/tile/0/000",
        ] {
            assert_eq!(parse_tile_key(&prefix, bad), None, "{bad}");
        }
    }

    #[test]
    fn a_tree_is_held_by_full_tiles_then_one_partial() {
        assert_eq!(tiles_of(0).count(), 0);
        assert_eq!(tiles_of(1).collect::<Vec<_>>(), vec![(0, 1)]);
        assert_eq!(tiles_of(256).collect::<Vec<_>>(), vec![(0, 256)]);
        assert_eq!(
            tiles_of(600).collect::<Vec<_>>(),
            vec![(0, 256), (1, 256), (2, 88)]
        );
    }

    #[test]
    fn a_tile_round_trips_and_a_wrong_length_is_refused() {
        let leaves: Vec<Hash> = (0..3u8).map(|i| Hash::leaf(&[i])).collect();
        let bytes = encode_tile(&leaves);
        assert_eq!(decode_tile(&bytes, 3).unwrap(), leaves);
        assert!(decode_tile(&bytes, 4).is_err());
        assert!(decode_tile(&bytes[..95], 3).is_err());
    }
}
