//! The graph's hash maps: a fast, non-cryptographic hasher for keys that are the graph's own.

use std::collections::HashMap;

/// A fast, non-cryptographic hasher for the graph's maps keyed by what the graph made (node
/// indices, digests): multiply-rotate over 8-byte words. Text an agent chose (keys, addresses,
/// attribute values) goes in [`SeededMap`]s instead, so nobody can pick values that collide.
#[derive(Clone, Copy, Default)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;
pub(crate) type FastSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<FxHasher>>;

/// A map keyed by text from events, with a hash seeded at random per map (aHash).
pub(crate) type SeededMap<K, V> = HashMap<K, V, ahash::RandomState>;
/// A set of text from events ([`SeededMap`]).
pub(crate) type SeededSet<K> = std::collections::HashSet<K, ahash::RandomState>;
