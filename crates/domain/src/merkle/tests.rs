use super::*;

fn h(hex: &str) -> Hash {
    Hash::parse_hex(hex).unwrap()
}

/// Known answers from the RFC 6962 reference test data, as kept in transparency-dev/merkle
/// (`testonly/constants.go`: `LeafInputs`, `NodeHashes`, `RootHashes`, `CompactTrees`; and
/// `proof/verify_test.go`: `inclusionProofs`, `consistencyProofs`, whose leaf numbers count
/// from 1), the same 8-leaf data the certificate-transparency implementations test with.
mod reference {
    use super::*;

    pub fn leaf_inputs() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|x| hex::decode(x).unwrap())
        .collect()
    }

    /// Every complete subtree's hash, by level, then index within the level.
    pub fn node_hashes() -> Vec<Vec<Hash>> {
        [
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
                "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
            ][..],
            &[
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            ],
            &[
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
            &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
        ]
        .iter()
        .map(|level| level.iter().map(|x| h(x)).collect())
        .collect()
    }

    /// The root at every size from 0 to 8.
    pub fn roots() -> Vec<Hash> {
        [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ]
        .iter()
        .map(|x| h(x))
        .collect()
    }

    /// (leaf index, tree size, path). The Go vectors number leaves from 1.
    pub fn inclusion_proofs() -> Vec<(u64, u64, Vec<Hash>)> {
        let n = node_hashes();
        vec![
            (0, 1, vec![]),
            (0, 8, vec![n[0][1], n[1][1], n[2][1]]),
            (5, 8, vec![n[0][4], n[1][3], n[2][0]]),
            (2, 3, vec![n[1][0]]),
            (1, 5, vec![n[0][0], n[1][1], n[0][4]]),
        ]
    }

    /// (old size, new size, path).
    pub fn consistency_proofs() -> Vec<(u64, u64, Vec<Hash>)> {
        let n = node_hashes();
        vec![
            (1, 1, vec![]),
            (1, 8, vec![n[0][1], n[1][1], n[2][1]]),
            (6, 8, vec![n[1][2], n[1][3], n[2][0]]),
            (2, 5, vec![n[1][1], n[0][4]]),
            (6, 7, vec![n[1][2], n[0][6], n[2][0]]),
        ]
    }

    /// The frontier's hashes at every size from 0 to 8, as (level, index) into `node_hashes`.
    pub fn compact_trees() -> Vec<Vec<(usize, usize)>> {
        vec![
            vec![],
            vec![(0, 0)],
            vec![(1, 0)],
            vec![(1, 0), (0, 2)],
            vec![(2, 0)],
            vec![(2, 0), (0, 4)],
            vec![(2, 0), (1, 2)],
            vec![(2, 0), (1, 2), (0, 6)],
            vec![(3, 0)],
        ]
    }

    pub fn log() -> MemoryLog {
        MemoryLog::from_leaves(leaf_inputs().iter().map(|d| Hash::leaf(d)).collect())
    }
}

fn log_of(size: u64) -> MemoryLog {
    MemoryLog::from_leaves(
        (0..size)
            .map(|i| Hash::leaf(format!("event {i}").as_bytes()))
            .collect(),
    )
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut bytes = *hash.as_bytes();
    bytes[bit / 8] ^= 1 << (bit % 8);
    Hash::from_bytes(bytes)
}

/// The bits of a hash to flip: every one in trees up to [`EVERY_BIT_MAX_SIZE`] leaves; in
/// larger ones, a bit in the first, last and two middle bytes (each flip costs a whole
/// verification in an unoptimized test build, and a comparison that skipped bytes would show
/// at the ends as well as anywhere).
fn bits_to_flip(size: u64) -> Vec<usize> {
    if size <= EVERY_BIT_MAX_SIZE {
        (0..8 * HASH_LEN).collect()
    } else {
        vec![0, 8 * 11 + 3, 8 * 20 + 6, 8 * HASH_LEN - 1]
    }
}

/// Every change of one of `bits` in one hash of `path`.
fn single_bit_changes<'a>(
    path: &'a [Hash],
    bits: &'a [usize],
) -> impl Iterator<Item = Vec<Hash>> + 'a {
    (0..path.len()).flat_map(move |i| {
        bits.iter().map(move |&bit| {
            let mut changed = path.to_vec();
            changed[i] = flip(&path[i], bit);
            changed
        })
    })
}

/// The path with one hash dropped, added or swapped, in every way that changes it.
fn reshaped(path: &[Hash], extras: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    for i in 0..path.len() {
        let mut shorter = path.to_vec();
        shorter.remove(i);
        out.push(shorter);
    }
    for extra in extras.iter().chain(path) {
        for at in 0..=path.len() {
            let mut longer = path.to_vec();
            longer.insert(at, *extra);
            out.push(longer);
        }
    }
    for a in 0..path.len() {
        for b in a + 1..path.len() {
            if path[a] != path[b] {
                let mut swapped = path.to_vec();
                swapped.swap(a, b);
                out.push(swapped);
            }
        }
    }
    out
}

const EXHAUSTIVE_MAX_SIZE: u64 = 70;
const EVERY_BIT_MAX_SIZE: u64 = 8;

#[test]
fn leaf_and_node_hashes_match_the_reference_data() {
    let leaves = reference::leaf_inputs();
    let nodes = reference::node_hashes();

    let leaf_hashes: Vec<Hash> = leaves.iter().map(|d| Hash::leaf(d)).collect();

    assert_eq!(leaf_hashes, nodes[0]);
    let log = reference::log();
    for (level, hashes) in nodes.iter().enumerate() {
        for (index, expected) in hashes.iter().enumerate() {
            let subtree = Subtree::new(level as u8, index as u64).unwrap();
            assert_eq!(log.subtree(subtree).unwrap(), *expected, "{subtree:?}");
        }
    }
}

#[test]
fn the_root_at_every_size_matches_the_reference_data() {
    let log = reference::log();

    let roots: Vec<Hash> = (0..=8).map(|size| log.root_at(size).unwrap()).collect();

    assert_eq!(roots, reference::roots());
    assert_eq!(Hash::empty(), reference::roots()[0]);
}

#[test]
fn inclusion_proofs_match_the_reference_data_and_verify() {
    let log = reference::log();
    let roots = reference::roots();

    for (index, size, expected) in reference::inclusion_proofs() {
        let path = log.inclusion_proof(index, size).unwrap();

        assert_eq!(path, expected, "leaf {index} of {size}");
        let leaf = log.leaves()[index as usize];
        verify_inclusion(index, size, &leaf, &path, &roots[size as usize]).unwrap();
    }
}

#[test]
fn consistency_proofs_match_the_reference_data_and_verify() {
    let log = reference::log();
    let roots = reference::roots();

    for (old, new, expected) in reference::consistency_proofs() {
        let path = log.consistency_proof(old, new).unwrap();

        assert_eq!(path, expected, "{old} to {new}");
        verify_consistency(old, new, &roots[old as usize], &roots[new as usize], &path).unwrap();
    }
}

#[test]
fn the_frontier_matches_the_reference_compact_trees() {
    let nodes = reference::node_hashes();
    let mut frontier = Frontier::new();

    for (size, expected) in reference::compact_trees().into_iter().enumerate() {
        let expected: Vec<Hash> = expected.iter().map(|&(l, i)| nodes[l][i]).collect();
        assert_eq!(frontier.hashes(), expected, "size {size}");
        assert_eq!(frontier.root(), reference::roots()[size]);
        if size < 8 {
            frontier.append(reference::log().leaves()[size]).unwrap();
        }
    }
}

#[test]
fn every_inclusion_proof_verifies_and_every_alteration_fails() {
    let log = log_of(EXHAUSTIVE_MAX_SIZE + 2);
    let roots: Vec<Hash> = (0..=log.size()).map(|n| log.root_at(n).unwrap()).collect();

    for size in 1..=EXHAUSTIVE_MAX_SIZE {
        let root = roots[size as usize];
        for index in 0..size {
            let leaf = log.leaves()[index as usize];
            let path = log.inclusion_proof(index, size).unwrap();
            let fails = |i: u64, n: u64, leaf: &Hash, path: &[Hash], root: &Hash| {
                verify_inclusion(i, n, leaf, path, root).is_err()
            };
            let case = format!("leaf {index} of {size}");

            assert_eq!(
                verify_inclusion(index, size, &leaf, &path, &root),
                Ok(()),
                "{case}"
            );
            let bits = bits_to_flip(size);
            for changed in single_bit_changes(&path, &bits) {
                assert!(
                    fails(index, size, &leaf, &changed, &root),
                    "{case}: {changed:?}"
                );
            }
            for &bit in &bits {
                assert!(
                    fails(index, size, &flip(&leaf, bit), &path, &root),
                    "{case}"
                );
                assert!(
                    fails(index, size, &leaf, &path, &flip(&root, bit)),
                    "{case}"
                );
            }
            let extras = [root, leaf, Hash::empty(), roots[size as usize + 1]];
            for changed in reshaped(&path, &extras) {
                assert!(
                    fails(index, size, &leaf, &changed, &root),
                    "{case}: {changed:?}"
                );
            }
            for other in (0..size + 2).filter(|&i| i != index) {
                assert!(
                    fails(other, size, &leaf, &path, &root),
                    "{case} as leaf {other}"
                );
                if let Some(their_leaf) = log.leaves().get(other as usize) {
                    assert!(
                        fails(other, size, their_leaf, &path, &root),
                        "{case} for {other}"
                    );
                }
            }
            // Against the root of the size claimed: the size travels with its root.
            for other in (1..=size + 2).filter(|&n| n != size) {
                let their_root = roots[other as usize];
                assert!(
                    fails(index, other, &leaf, &path, &their_root),
                    "{case} in {other}"
                );
            }
        }
    }
}

#[test]
fn every_consistency_proof_verifies_and_every_alteration_fails() {
    let log = log_of(EXHAUSTIVE_MAX_SIZE + 2);
    let roots: Vec<Hash> = (0..=log.size()).map(|n| log.root_at(n).unwrap()).collect();

    for new in 1..=EXHAUSTIVE_MAX_SIZE {
        for old in 1..=new {
            let (old_root, new_root) = (roots[old as usize], roots[new as usize]);
            let path = log.consistency_proof(old, new).unwrap();
            let fails = |m: u64, n: u64, r1: &Hash, r2: &Hash, path: &[Hash]| {
                verify_consistency(m, n, r1, r2, path).is_err()
            };
            let case = format!("{old} to {new}");

            assert_eq!(
                verify_consistency(old, new, &old_root, &new_root, &path),
                Ok(()),
                "{case}"
            );
            assert_eq!(path.is_empty(), old == new, "{case}");
            let bits = bits_to_flip(new);
            for changed in single_bit_changes(&path, &bits) {
                assert!(
                    fails(old, new, &old_root, &new_root, &changed),
                    "{case}: {changed:?}"
                );
            }
            for &bit in &bits {
                assert!(
                    fails(old, new, &flip(&old_root, bit), &new_root, &path),
                    "{case}"
                );
                assert!(
                    fails(old, new, &old_root, &flip(&new_root, bit), &path),
                    "{case}"
                );
            }
            let extras = [old_root, new_root, Hash::empty()];
            for changed in reshaped(&path, &extras) {
                assert!(
                    fails(old, new, &old_root, &new_root, &changed),
                    "{case}: {changed:?}"
                );
            }
            if old != new {
                assert!(
                    fails(old, new, &new_root, &old_root, &path),
                    "{case}: roots swapped"
                );
                assert!(
                    fails(old, new, &old_root, &new_root, &[]),
                    "{case}: empty path"
                );
            }
            // Other sizes, each against its own root.
            for other in (0..=new + 2).filter(|&m| m != old) {
                let r1 = roots[other as usize];
                assert!(
                    fails(other, new, &r1, &new_root, &path),
                    "{case} from {other}"
                );
            }
            for other in (0..=EXHAUSTIVE_MAX_SIZE + 2).filter(|&n| n != new) {
                let r2 = roots[other as usize];
                assert!(
                    fails(old, other, &old_root, &r2, &path),
                    "{case} to {other}"
                );
            }
        }
    }
}

#[test]
fn the_frontier_root_equals_the_merkle_tree_hash_at_every_size() {
    let log = log_of(300);
    let mut frontier = Frontier::new();

    for size in 0..=log.size() {
        assert_eq!(frontier.size(), size);
        assert_eq!(frontier.root(), log.root_at(size).unwrap(), "size {size}");
        if size < log.size() {
            frontier.append(log.leaves()[size as usize]).unwrap();
        }
    }
}

#[test]
fn appending_reports_exactly_the_subtrees_the_leaf_completes() {
    let log = log_of(130);
    let mut frontier = Frontier::new();
    let mut reported = Vec::new();

    for leaf in log.leaves() {
        reported.extend(frontier.append(*leaf).unwrap());
    }

    // Each perfect subtree within 130 leaves, once, with its hash.
    let mut expected = Vec::new();
    for level in 0..8u8 {
        for index in 0..(130u64 >> level) {
            let subtree = Subtree::new(level, index).unwrap();
            expected.push((subtree, log.subtree(subtree).unwrap()));
        }
    }
    reported.sort_by_key(|(s, _)| *s);
    expected.sort_by_key(|(s, _)| *s);
    assert_eq!(reported, expected);
}

#[test]
fn a_frontier_rebuilt_from_stored_subtrees_continues_the_same_tree() {
    let log = log_of(100);
    for size in 0..90u64 {
        let hashes = Frontier::subtrees_of(size)
            .into_iter()
            .map(|s| log.subtree(s).unwrap())
            .collect();

        let mut frontier = Frontier::from_hashes(size, hashes).unwrap();
        for leaf in &log.leaves()[size as usize..] {
            frontier.append(*leaf).unwrap();
        }

        assert_eq!(frontier.root(), log.root_at(100).unwrap(), "from {size}");
    }
}

#[test]
fn a_frontier_refuses_the_wrong_number_of_hashes() {
    let hashes = vec![Hash::empty(); 2];

    let result = Frontier::from_hashes(5, hashes[..1].to_vec());

    assert_eq!(
        result,
        Err(FrontierError::WrongHashCount {
            size: 5,
            expected: 2,
            got: 1
        })
    );
    assert!(Frontier::from_hashes(5, hashes).is_ok());
    assert!(Frontier::from_hashes(0, vec![]).unwrap().root() == Hash::empty());
}

#[test]
fn a_full_frontier_refuses_another_leaf() {
    let mut frontier = Frontier::from_hashes(u64::MAX, vec![Hash::empty(); 64]).unwrap();

    let result = frontier.append(Hash::empty());

    assert_eq!(result, Err(FrontierError::Full));
    assert_eq!(frontier.size(), u64::MAX);
}

#[test]
fn inclusion_needs_an_index_below_the_size() {
    let leaf = Hash::leaf(b"x");

    for (index, size) in [(0, 0), (1, 1), (5, 3), (u64::MAX, u64::MAX)] {
        let expected = Err(ProofError::IndexOutOfRange { index, size });
        assert_eq!(inclusion_plan(index, size).map(|_| ()), expected);
        assert_eq!(verify_inclusion(index, size, &leaf, &[], &leaf), expected);
    }
}

#[test]
fn the_only_leaf_of_a_tree_is_its_root_with_an_empty_path() {
    let leaf = Hash::leaf(b"only");

    assert_eq!(verify_inclusion(0, 1, &leaf, &[], &leaf), Ok(()));
    assert_eq!(inclusion_plan(0, 1).unwrap().subtrees(), &[]);
    assert_eq!(
        verify_inclusion(0, 1, &leaf, &[leaf], &Hash::node(&leaf, &leaf)),
        Err(ProofError::PathTooLong)
    );
}

#[test]
fn consistency_from_the_empty_tree_is_not_provable() {
    let empty = Hash::empty();
    let root = Hash::leaf(b"x");

    assert_eq!(consistency_plan(0, 5), Err(ProofError::EmptyOldTree));
    assert_eq!(consistency_plan(0, 0), Err(ProofError::EmptyOldTree));
    assert_eq!(
        verify_consistency(0, 1, &empty, &root, &[]),
        Err(ProofError::EmptyOldTree)
    );
    assert_eq!(
        verify_consistency(0, 0, &empty, &empty, &[]),
        Err(ProofError::EmptyOldTree)
    );
}

#[test]
fn consistency_between_equal_sizes_needs_equal_roots_and_an_empty_path() {
    let a = Hash::leaf(b"a");
    let b = Hash::leaf(b"b");

    assert_eq!(consistency_plan(7, 7).unwrap().subtrees(), &[]);
    assert_eq!(verify_consistency(7, 7, &a, &a, &[]), Ok(()));
    assert_eq!(
        verify_consistency(7, 7, &a, &b, &[]),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(7, 7, &a, &a, &[a]),
        Err(ProofError::PathTooLong)
    );
}

#[test]
fn consistency_to_a_smaller_tree_is_refused() {
    let a = Hash::leaf(b"a");

    assert_eq!(
        consistency_plan(5, 4),
        Err(ProofError::SizeDecreased { old: 5, new: 4 })
    );
    assert_eq!(
        verify_consistency(5, 4, &a, &a, &[a]),
        Err(ProofError::SizeDecreased { old: 5, new: 4 })
    );
}

#[test]
fn a_power_of_two_old_tree_leaves_its_root_out_of_the_path() {
    let log = log_of(16);

    for old in [1, 2, 4, 8] {
        let path = log.consistency_proof(old, 16).unwrap();

        let old_root = log.root_at(old).unwrap();
        assert!(!path.contains(&old_root), "{old}");
        assert_eq!(path.len(), 4 - old.trailing_zeros() as usize, "{old}");
    }
}

#[test]
fn proofs_at_the_largest_sizes_name_valid_subtrees() {
    let size = u64::MAX;

    let inclusion = inclusion_plan(size - 1, size).unwrap();
    let consistency = consistency_plan(size - 1, size).unwrap();

    for plan in [&inclusion, &consistency] {
        assert!(plan.subtrees().iter().all(|s| s.end() <= size));
    }
    assert_eq!(inclusion.parts.len(), 63);
}

#[test]
fn assembling_needs_exactly_the_planned_hashes() {
    let plan = inclusion_plan(3, 8).unwrap();

    let result = plan.assemble(&[Hash::empty(); 2]);

    assert_eq!(
        result,
        Err(ProofError::WrongHashCount {
            expected: 3,
            got: 2
        })
    );
}

#[tokio::test]
async fn proofs_come_through_the_subtree_store_port() {
    let log = log_of(21);

    let inclusion = prove_inclusion(&log, 13, 21).await.unwrap();
    let consistency = prove_consistency(&log, 6, 21).await.unwrap();

    let root = log.root_at(21).unwrap();
    verify_inclusion(13, 21, &log.leaves()[13], &inclusion, &root).unwrap();
    verify_consistency(6, 21, &log.root_at(6).unwrap(), &root, &consistency).unwrap();
    assert!(matches!(
        prove_inclusion(&log, 13, 40).await,
        Err(ProveError::Store(MissingSubtree { .. }))
    ));
}

#[test]
fn hashes_parse_only_their_canonical_hex_and_base64() {
    let hash = Hash::leaf(b"x");

    assert_eq!(Hash::parse_hex(&hash.to_hex()), Ok(hash));
    assert_eq!(Hash::parse_base64(&hash.to_base64()), Ok(hash));
    assert_eq!(
        Hash::parse_hex(&hash.to_hex().to_uppercase()),
        Err(HashError::Hex)
    );
    assert_eq!(Hash::parse_hex(&hash.to_hex()[..62]), Err(HashError::Hex));
    assert_eq!(
        Hash::parse_hex(&format!("{}0", hash.to_hex())),
        Err(HashError::Hex)
    );
    let b64 = hash.to_base64();
    assert_eq!(
        Hash::parse_base64(b64.trim_end_matches('=')),
        Err(HashError::Base64)
    );
    assert_eq!(
        Hash::parse_base64(&format!(" {}", &b64[1..])),
        Err(HashError::Base64)
    );
    // The last character before `=` carries 4 bits that must be zero.
    let noncanonical = format!("{}B=", "A".repeat(42));
    assert_eq!(Hash::parse_base64(&noncanonical), Err(HashError::Base64));
    assert_eq!(
        Hash::parse_base64(&format!("{}A=", "A".repeat(42))),
        Ok(Hash::from_bytes([0; 32]))
    );
    assert_eq!(
        Hash::parse_base64(&STANDARD.encode([0u8; 33])),
        Err(HashError::Base64)
    );
    assert_eq!(Hash::from_slice(&[0; 31]), Err(HashError::Length(31)));
}

#[test]
fn subtrees_beyond_two_to_the_sixty_four_leaves_do_not_exist() {
    assert!(Subtree::new(63, 1).is_none());
    assert!(Subtree::new(64, 0).is_none());
    assert!(Subtree::new(0, u64::MAX).is_none());
    assert_eq!(Subtree::new(63, 0).unwrap().end(), 1 << 63);
    assert_eq!(Subtree::new(0, u64::MAX - 1).unwrap().end(), u64::MAX);
}

#[test]
fn a_path_can_verify_under_a_wrong_size_against_the_same_root_so_sizes_come_signed() {
    // Leaf 0 takes the left branch twice in trees of 3 and of 4 leaves alike, so the path
    // of size 3 leads to the size-3 root under either size. Only the checkpoint, which signs
    // the size with the root, tells them apart; against the size-4 root it fails.
    let log = log_of(4);
    let path = log.inclusion_proof(0, 3).unwrap();
    let leaf = log.leaves()[0];
    let (root_3, root_4) = (log.root_at(3).unwrap(), log.root_at(4).unwrap());

    let under_size_4 = verify_inclusion(0, 4, &leaf, &path, &root_3);

    assert_eq!(under_size_4, Ok(()));
    assert_eq!(
        verify_inclusion(0, 4, &leaf, &path, &root_4),
        Err(ProofError::RootMismatch)
    );
}
