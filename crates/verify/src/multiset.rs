//! An order-independent digest of a multiset of (event key, leaf) pairs, for the verifier's
//! fast path ([`crate::fast`]): the rows and the log are streamed apart, in whatever order
//! each comes fastest, and the two digests compared.
//!
//! The digest is the sum, modulo 2^256, of a keyed hash of each element (MSet-Add-Hash,
//! Clarke et al., 2003), under a key drawn at random for each run. Whoever wrote the rows did
//! so before the key existed, so cannot choose them to make two different multisets sum
//! alike (an unkeyed sum or XOR could be collided by choosing rows). The count is compared
//! too.

use chrono::{DateTime, Utc};
use sentinel_domain::merkle::Hash;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Multiset {
    key: [u8; 32],
    sum: [u64; 4],
    count: u64,
}

impl Multiset {
    /// An empty multiset under `key` (draw it with [`Multiset::random_key`]).
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            sum: [0; 4],
            count: 0,
        }
    }

    pub fn random_key() -> [u8; 32] {
        rand::random()
    }

    /// Adds one element: the event (its id and time: its key among the tenant's rows) and a
    /// leaf.
    pub fn add(&mut self, event_id: &str, occurred_at: DateTime<Utc>, leaf: &Hash) {
        let mut sha = Sha256::new();
        sha.update(self.key);
        sha.update((event_id.len() as u64).to_be_bytes());
        sha.update(event_id.as_bytes());
        sha.update(occurred_at.timestamp_micros().to_be_bytes());
        sha.update(leaf.as_bytes());
        let digest: [u8; 32] = sha.finalize().into();
        let limbs: [u64; 4] = std::array::from_fn(|i| {
            u64::from_le_bytes(digest[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
        });
        self.add_limbs(&limbs);
        self.count += 1;
    }

    /// Adds every element of `other` (same key).
    pub fn merge(&mut self, other: &Multiset) {
        debug_assert_eq!(self.key, other.key);
        let limbs = other.sum;
        self.add_limbs(&limbs);
        self.count += other.count;
    }

    fn add_limbs(&mut self, limbs: &[u64; 4]) {
        let mut carry = false;
        for (sum, limb) in self.sum.iter_mut().zip(limbs) {
            let (a, c1) = sum.overflowing_add(*limb);
            let (b, c2) = a.overflowing_add(carry as u64);
            *sum = b;
            carry = c1 || c2;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_digest_ignores_order_and_tells_any_change_apart() {
        let key = [7; 32];
        let t = at("2026-11-20T10:00:00Z");
        let (a, b, c) = (Hash::leaf(b"a"), Hash::leaf(b"b"), Hash::leaf(b"c"));
        let set = |items: &[(&str, DateTime<Utc>, Hash)]| {
            let mut m = Multiset::new(key);
            for (id, t, h) in items {
                m.add(id, *t, h);
            }
            m
        };
        let base = set(&[("e1", t, a), ("e2", t, b), ("e3", t, c)]);
        assert_eq!(base, set(&[("e3", t, c), ("e1", t, a), ("e2", t, b)]));
        let mut halves = set(&[("e1", t, a)]);
        halves.merge(&set(&[("e3", t, c), ("e2", t, b)]));
        assert_eq!(base, halves);
        for other in [
            set(&[("e1", t, a), ("e2", t, b)]),
            set(&[("e1", t, a), ("e2", t, b), ("e3", t, c), ("e3", t, c)]),
            set(&[("e1", t, b), ("e2", t, a), ("e3", t, c)]),
            set(&[("e1", t, a), ("e2", t, b), ("e4", t, c)]),
            set(&[
                ("e1", t, a),
                ("e2", t, b),
                ("e3", at("2026-11-20T10:00:00.000001Z"), c),
            ]),
        ] {
            assert_ne!(base, other);
        }
        let mut other_key = Multiset::new([8; 32]);
        other_key.add("e1", t, &a);
        assert_ne!(
            set(&[("e1", t, a)]).sum,
            other_key.sum,
            "the key changes every sum"
        );
    }

    #[test]
    fn sums_carry_across_limbs() {
        let mut m = Multiset::new([0; 32]);
        m.sum = [u64::MAX, u64::MAX, 0, 0];
        m.add_limbs(&[1, 0, 0, 0]);
        assert_eq!(m.sum, [0, 0, 1, 0]);
        m.sum = [u64::MAX; 4];
        m.add_limbs(&[1, 0, 0, 0]);
        assert_eq!(m.sum, [0; 4], "modulo 2^256");
    }
}
