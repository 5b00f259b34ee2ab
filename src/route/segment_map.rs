//! Literal path segments -> trie node. Few children (the usual case) are compared in a short
//! vector; many children (a root with a thousand base paths) go through a hash table, so a
//! lookup never scans a list whose length grows with the number of APIs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Above this many children a node switches from a scan to a hash table.
const SCAN_LIMIT: usize = 8;

#[derive(Clone, Debug, Default)]
pub struct SegmentMap {
    scan: Vec<(Box<[u8]>, u32)>,
    table: HashMap<Box<[u8]>, u32, BuildHasherDefault<FxHasher>>,
}

impl SegmentMap {
    pub fn get(&self, segment: &[u8]) -> Option<u32> {
        if self.table.is_empty() {
            self.scan
                .iter()
                .find(|(key, _)| **key == *segment)
                .map(|&(_, node)| node)
        } else {
            self.table.get(segment).copied()
        }
    }

    /// Inserts unless present; returns the node stored for `segment`.
    pub fn get_or_insert(&mut self, segment: &[u8], new_node: impl FnOnce() -> u32) -> u32 {
        if let Some(node) = self.get(segment) {
            return node;
        }
        let node = new_node();
        if self.table.is_empty() && self.scan.len() < SCAN_LIMIT {
            self.scan.push((segment.into(), node));
        } else {
            self.table.extend(self.scan.drain(..));
            self.table.insert(segment.into(), node);
        }
        node
    }
}

/// The Fx hash (rustc's): a multiply-rotate over 8-byte words. Not DoS-resistant, which is
/// fine here: the tables are built from the configuration and only looked up with request
/// bytes, so a client cannot grow a collision chain.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((chunk, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*chunk));
            bytes = rest;
        }
        if !bytes.is_empty() {
            let mut tail = [0u8; 8];
            tail[..bytes.len()].copy_from_slice(bytes);
            self.add(u64::from_le_bytes(tail));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_before_and_after_switching_to_a_table() {
        let mut map = SegmentMap::default();
        for i in 0..100u32 {
            let key = format!("seg{i}");
            assert_eq!(map.get_or_insert(key.as_bytes(), || i), i);
            for j in 0..=i {
                assert_eq!(
                    map.get(format!("seg{j}").as_bytes()),
                    Some(j),
                    "after {i} inserts"
                );
            }
            assert_eq!(map.get(b"absent"), None);
        }
    }

    #[test]
    fn get_or_insert_keeps_the_first_node() {
        let mut map = SegmentMap::default();
        assert_eq!(map.get_or_insert(b"a", || 1), 1);
        assert_eq!(map.get_or_insert(b"a", || 2), 1);
    }
}
