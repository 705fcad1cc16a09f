//! Merkle trees over SHA-256 as RFC 6962 defines them and RFC 9162 (section 2.1) restates them:
//! the hashes, the Merkle Tree Hash of a list of leaves, inclusion and consistency proofs, and
//! the compact right edge of a tree that a writer keeps to append leaves.
//!
//! Proofs are generated in two steps so that the leaves never have to be in memory: a plan
//! names the perfect subtrees a proof needs ([`Subtree`]), a store answers their hashes in
//! one round trip ([`SubtreeStore`]), and the plan assembles the proof from them. Proofs are
//! verified by the algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2, which consume the
//! path and check that it is used up exactly.
//!
//! A proof binds a leaf or an old root to a root *of a given size*: the size must come from
//! the same signed checkpoint as the root. A path that verifies for size `n` can verify for
//! another size against the same root hash (the shapes of the two trees can agree along the
//! path), so a verifier must never take the size from the proof's sender alone.

use std::fmt;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Length in bytes of every hash in the tree.
pub const HASH_LEN: usize = 32;

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// A SHA-256 hash in the tree: a leaf hash, a node hash or a root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash([u8; HASH_LEN]);

/// Why bytes or text are not a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("a hash is {HASH_LEN} bytes, not {0}")]
    Length(usize),
    #[error("a hash in hex is 64 lowercase hex digits")]
    Hex,
    #[error("a hash in base64 is 44 characters of standard, padded base64")]
    Base64,
}

impl Hash {
    pub const fn from_bytes(bytes: [u8; HASH_LEN]) -> Self {
        Self(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, HashError> {
        <[u8; HASH_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| HashError::Length(bytes.len()))
    }

    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// The leaf hash of `data`: SHA-256(0x00 || data).
    pub fn leaf(data: &[u8]) -> Self {
        let mut sha = Sha256::new();
        sha.update([LEAF_PREFIX]);
        sha.update(data);
        Self(sha.finalize().into())
    }

    /// The hash of an interior node: SHA-256(0x01 || left || right).
    pub fn node(left: &Hash, right: &Hash) -> Self {
        let mut sha = Sha256::new();
        sha.update([NODE_PREFIX]);
        sha.update(left.0);
        sha.update(right.0);
        Self(sha.finalize().into())
    }

    /// The Merkle Tree Hash of the empty tree: SHA-256 of nothing.
    pub fn empty() -> Self {
        Self(Sha256::digest([]).into())
    }

    /// Lowercase hex, 64 digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Exactly 64 lowercase hex digits.
    pub fn parse_hex(text: &str) -> Result<Self, HashError> {
        if text.len() != 2 * HASH_LEN || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(HashError::Hex);
        }
        let mut bytes = [0; HASH_LEN];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| HashError::Hex)?;
        Ok(Self(bytes))
    }

    /// Standard, padded base64 (RFC 4648 section 4), as checkpoints carry roots.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Standard, padded, canonical base64 of exactly 32 bytes; nothing else.
    pub fn parse_base64(text: &str) -> Result<Self, HashError> {
        // 32 bytes are 44 characters with one `=`; the engine refuses non-zero trailing bits.
        if text.len() != 44 {
            return Err(HashError::Base64);
        }
        let bytes = STANDARD.decode(text).map_err(|_| HashError::Base64)?;
        Self::from_slice(&bytes).map_err(|_| HashError::Base64)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The Merkle Tree Hash of leaves given by their leaf hashes (RFC 9162 section 2.1.1): the
/// list is split at the largest power of two smaller than its length. This is the definition
/// itself, in O(n) time; [`Frontier`] computes the same root incrementally.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::empty(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            Hash::node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// A perfect subtree: the `2^level` leaves `[index * 2^level, (index + 1) * 2^level)`.
/// Level 0 is a single leaf, whose hash is its leaf hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtree {
    level: u8,
    index: u64,
}

impl Subtree {
    /// `None` unless the subtree's leaves all have indexes below 2^64.
    pub fn new(level: u8, index: u64) -> Option<Self> {
        if level > 63 {
            return None;
        }
        index.checked_add(1)?.checked_mul(1 << level)?;
        Some(Self { level, index })
    }

    pub fn level(&self) -> u8 {
        self.level
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    /// The first leaf.
    pub fn start(&self) -> u64 {
        self.index << self.level
    }

    /// One past the last leaf.
    pub fn end(&self) -> u64 {
        (self.index + 1) << self.level
    }

    /// The two halves, or `None` for a leaf.
    pub fn children(&self) -> Option<(Subtree, Subtree)> {
        let level = self.level.checked_sub(1)?;
        let left = Subtree {
            level,
            index: self.index * 2,
        };
        let right = Subtree {
            level,
            index: self.index * 2 + 1,
        };
        Some((left, right))
    }
}

/// Why a proof cannot be made or does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the old tree size {old} is larger than the new tree size {new}")]
    SizeDecreased { old: u64, new: u64 },
    #[error("nothing proves consistency from the empty tree: a tree of size 0 has no checkpoint to hold")]
    EmptyOldTree,
    #[error("the proof has more hashes than the tree sizes call for")]
    PathTooLong,
    #[error("the proof has fewer hashes than the tree sizes call for")]
    PathTooShort,
    #[error("the proof does not lead to the old root")]
    OldRootMismatch,
    #[error("the proof does not lead to the root")]
    RootMismatch,
    #[error("{expected} subtree hashes were needed, {got} were given")]
    WrongHashCount { expected: usize, got: usize },
}

/// The perfect subtrees a proof needs, and how to make the proof from their hashes.
///
/// Each hash of a proof is the Merkle Tree Hash of a range of leaves that is either one
/// perfect subtree or, at the right edge of the tree, several (largest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    /// The subtrees to fetch, in proof order.
    subtrees: Vec<Subtree>,
    /// How many consecutive subtrees make each hash of the proof.
    parts: Vec<usize>,
}

impl ProofPlan {
    fn from_ranges(ranges: &[(u64, u64)]) -> Self {
        let mut plan = Self {
            subtrees: Vec::new(),
            parts: Vec::with_capacity(ranges.len()),
        };
        for &(start, end) in ranges {
            let before = plan.subtrees.len();
            decompose(start, end, &mut plan.subtrees);
            plan.parts.push(plan.subtrees.len() - before);
        }
        plan
    }

    /// The subtrees whose hashes [`ProofPlan::assemble`] takes, in that order.
    pub fn subtrees(&self) -> &[Subtree] {
        &self.subtrees
    }

    /// The proof's hashes from the hashes of [`ProofPlan::subtrees`], given in the same order.
    pub fn assemble(&self, hashes: &[Hash]) -> Result<Vec<Hash>, ProofError> {
        if hashes.len() != self.subtrees.len() {
            return Err(ProofError::WrongHashCount {
                expected: self.subtrees.len(),
                got: hashes.len(),
            });
        }
        let mut rest = hashes;
        let mut path = Vec::with_capacity(self.parts.len());
        for &count in &self.parts {
            let (range, tail) = rest.split_at(count);
            rest = tail;
            path.push(fold_right_edge(range));
        }
        Ok(path)
    }
}

/// The plan of the inclusion proof of leaf `index` in the tree of `size` leaves: the audit
/// path of RFC 9162 section 2.1.3.1, from the leaf's sibling up to the root's child.
pub fn inclusion_plan(index: u64, size: u64) -> Result<ProofPlan, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut start, mut end) = (0, size);
    let mut ranges = Vec::new();
    while end - start > 1 {
        let k = largest_power_of_two_below(end - start);
        if index < start + k {
            ranges.push((start + k, end));
            end = start + k;
        } else {
            ranges.push((start, start + k));
            start += k;
        }
    }
    ranges.reverse();
    Ok(ProofPlan::from_ranges(&ranges))
}

/// The plan of the consistency proof from the tree of `old` leaves to the tree of `new`
/// leaves (RFC 9162 section 2.1.4.1). `old` must be at least 1: the empty tree is a prefix of
/// every tree, but that needs no proof and this module makes none. Equal sizes need no hash.
pub fn consistency_plan(old: u64, new: u64) -> Result<ProofPlan, ProofError> {
    if old == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if old > new {
        return Err(ProofError::SizeDecreased { old, new });
    }
    // SUBPROOF(m, D[start:end], known): `m` counts from `start`; `known` is whether the
    // verifier already holds MTH(D[start:start + m]) (it holds the old root).
    let (mut start, mut end, mut m, mut known) = (0, new, old, true);
    let mut ranges = Vec::new();
    while m != end - start {
        let k = largest_power_of_two_below(end - start);
        if m <= k {
            ranges.push((start + k, end));
            end = start + k;
        } else {
            ranges.push((start, start + k));
            start += k;
            m -= k;
            known = false;
        }
    }
    if !known {
        ranges.push((start, end));
    }
    ranges.reverse();
    Ok(ProofPlan::from_ranges(&ranges))
}

/// Checks that `leaf` (a leaf hash) is leaf `index` of the tree of `size` leaves whose root is
/// `root`, by RFC 9162 section 2.1.3.2. The whole path must be used, and nothing more.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return Err(ProofError::PathTooLong);
        }
        if f & 1 == 1 || f == s {
            r = Hash::node(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = Hash::node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::PathTooShort);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`, by RFC 9162 section 2.1.4.2. Equal sizes need an
/// empty path and equal roots; an old size of 0 is refused (see [`consistency_plan`]).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> Result<(), ProofError> {
    if old_size == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if old_size > new_size {
        return Err(ProofError::SizeDecreased {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !path.is_empty() {
            return Err(ProofError::PathTooLong);
        }
        if old_root != new_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    if path.is_empty() {
        return Err(ProofError::PathTooShort);
    }
    // When the old tree is a perfect subtree the path leaves out its root, which the
    // verifier holds: it starts from there.
    let (first, rest) = if old_size.is_power_of_two() {
        (old_root, path)
    } else {
        (&path[0], &path[1..])
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::PathTooLong);
        }
        if f & 1 == 1 || f == s {
            fr = Hash::node(c, &fr);
            sr = Hash::node(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = Hash::node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::PathTooShort);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The port proofs are generated through: whatever holds a log's subtree hashes (the writer
/// stores each perfect subtree as [`Frontier::append`] completes it).
#[async_trait]
pub trait SubtreeStore: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The hashes of `subtrees`, in the same order. The subtrees all lie within a size the
    /// caller knows the log has reached.
    async fn subtree_hashes(&self, subtrees: &[Subtree]) -> Result<Vec<Hash>, Self::Error>;
}

/// Why a proof could not be generated through a [`SubtreeStore`].
#[derive(Debug, thiserror::Error)]
pub enum ProveError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error("the subtree store failed")]
    Store(#[source] E),
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves, from `store`.
pub async fn prove_inclusion<S: SubtreeStore + ?Sized>(
    store: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let plan = inclusion_plan(index, size)?;
    let hashes = store
        .subtree_hashes(plan.subtrees())
        .await
        .map_err(ProveError::Store)?;
    Ok(plan.assemble(&hashes)?)
}

/// The consistency proof from size `old` to size `new`, from `store`.
pub async fn prove_consistency<S: SubtreeStore + ?Sized>(
    store: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let plan = consistency_plan(old, new)?;
    let hashes = store
        .subtree_hashes(plan.subtrees())
        .await
        .map_err(ProveError::Store)?;
    Ok(plan.assemble(&hashes)?)
}

/// The right edge of a tree in O(log n) space: the hashes of the perfect subtrees that
/// partition its leaves, largest (leftmost) first, one per set bit of the size. This is
/// what a writer keeps to append leaves and compute each new root (a "compact range" from
/// leaf 0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

/// Why a frontier cannot be built or grown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontierError {
    #[error("a tree of size {size} has {expected} right-edge subtrees, {got} hashes were given")]
    WrongHashCount {
        size: u64,
        expected: usize,
        got: usize,
    },
    #[error("the tree is full: it holds 2^64 - 1 leaves")]
    Full,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The perfect subtrees that partition a tree of `size` leaves, largest first: what to
    /// load to rebuild its frontier with [`Frontier::from_hashes`].
    pub fn subtrees_of(size: u64) -> Vec<Subtree> {
        let mut subtrees = Vec::with_capacity(size.count_ones() as usize);
        decompose(0, size, &mut subtrees);
        subtrees
    }

    /// The frontier of a tree of `size` leaves from the hashes of [`Frontier::subtrees_of`].
    pub fn from_hashes(size: u64, hashes: Vec<Hash>) -> Result<Self, FrontierError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(FrontierError::WrongHashCount {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The right-edge subtree hashes, largest first, as [`Frontier::subtrees_of`] names them.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf (its leaf hash). Returns every perfect subtree the leaf completes with
    /// its hash, smallest first: the leaf itself, then each parent it closes.
    pub fn append(&mut self, leaf: Hash) -> Result<Vec<(Subtree, Hash)>, FrontierError> {
        let index = self.size;
        let size = index.checked_add(1).ok_or(FrontierError::Full)?;
        // The leaf closes one subtree per trailing one bit of its index.
        let merges = index.trailing_ones() as u8;
        let mut completed = Vec::with_capacity(usize::from(merges) + 1);
        let mut hash = leaf;
        completed.push((Subtree { level: 0, index }, hash));
        for level in 1..=merges {
            let left = self.hashes.pop().expect("one right-edge hash per set bit");
            hash = Hash::node(&left, &hash);
            completed.push((
                Subtree {
                    level,
                    index: index >> level,
                },
                hash,
            ));
        }
        self.hashes.push(hash);
        self.size = size;
        Ok(completed)
    }

    /// The root of the tree: the right-edge hashes folded from the right.
    pub fn root(&self) -> Hash {
        if self.hashes.is_empty() {
            return Hash::empty();
        }
        fold_right_edge(&self.hashes)
    }
}

/// A log held in memory as its leaf hashes: the reference [`SubtreeStore`] for tests and
/// fakes. Subtree hashes are recomputed from the leaves.
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    leaves: Vec<Hash>,
}

/// A subtree beyond the leaves a [`MemoryLog`] holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subtree {subtree:?} lies beyond the log's {size} leaves")]
pub struct MissingSubtree {
    pub subtree: Subtree,
    pub size: u64,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_leaves(leaves: Vec<Hash>) -> Self {
        Self { leaves }
    }

    pub fn push(&mut self, leaf: Hash) {
        self.leaves.push(leaf);
    }

    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    pub fn leaves(&self) -> &[Hash] {
        &self.leaves
    }

    /// The root of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        let size = usize::try_from(size).ok()?;
        self.leaves.get(..size).map(root)
    }

    pub fn subtree(&self, subtree: Subtree) -> Result<Hash, MissingSubtree> {
        let missing = || MissingSubtree {
            subtree,
            size: self.size(),
        };
        let start = usize::try_from(subtree.start()).map_err(|_| missing())?;
        let end = usize::try_from(subtree.end()).map_err(|_| missing())?;
        self.leaves.get(start..end).map(root).ok_or_else(missing)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, ProveError<MissingSubtree>> {
        let plan = inclusion_plan(index, size)?;
        self.assemble(&plan)
    }

    /// The consistency proof between the trees of the first `old` and `new` leaves.
    pub fn consistency_proof(
        &self,
        old: u64,
        new: u64,
    ) -> Result<Vec<Hash>, ProveError<MissingSubtree>> {
        let plan = consistency_plan(old, new)?;
        self.assemble(&plan)
    }

    fn assemble(&self, plan: &ProofPlan) -> Result<Vec<Hash>, ProveError<MissingSubtree>> {
        let hashes = plan
            .subtrees()
            .iter()
            .map(|&s| self.subtree(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ProveError::Store)?;
        Ok(plan.assemble(&hashes)?)
    }
}

#[async_trait]
impl SubtreeStore for MemoryLog {
    type Error = MissingSubtree;

    async fn subtree_hashes(&self, subtrees: &[Subtree]) -> Result<Vec<Hash>, MissingSubtree> {
        subtrees.iter().map(|&s| self.subtree(s)).collect()
    }
}

/// The largest power of two strictly below `n`, for `n >= 2`.
fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Appends the perfect subtrees that partition `[start, end)`, largest first. For the ranges
/// proofs use (a node of the tree, whose start is aligned to its size rounded up to a power of
/// two) these are the binary digits of its size, and [`fold_right_edge`] gives its hash.
fn decompose(start: u64, end: u64, out: &mut Vec<Subtree>) {
    let mut at = start;
    while at < end {
        let alignment = at.trailing_zeros().min(63);
        let fits = 63 - (end - at).leading_zeros();
        let level = alignment.min(fits) as u8;
        out.push(Subtree {
            level,
            index: at >> level,
        });
        at += 1 << level;
    }
}

/// The hash of a range from its perfect subtrees' hashes, largest first: each is the left
/// child of the node that covers the ones after it.
fn fold_right_edge(hashes: &[Hash]) -> Hash {
    let (last, rest) = hashes
        .split_last()
        .expect("a range has at least one subtree");
    rest.iter()
        .rev()
        .fold(*last, |right, left| Hash::node(left, &right))
}

#[cfg(test)]
mod tests;
