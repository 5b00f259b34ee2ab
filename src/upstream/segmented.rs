//! An append-only table whose elements never move: segments of doubling size, each allocated
//! once and then only read. It lets the process-wide upstream state grow with reloads while
//! shards hold plain references into it: a read is an Acquire load of the segment pointer and
//! an index, with no lock and no reference count. Growing happens on the control thread only.

use std::sync::OnceLock;

/// log2 of the first segment's length.
const FIRST_BITS: u32 = 6;
/// Segment `k` holds `64 << k` elements: 26 segments hold more than 2^32.
const SEGMENTS: usize = 26;

/// Elements created with `T::default()` a segment at a time, addressed by index.
pub struct Segmented<T> {
    segments: [OnceLock<Box<[T]>>; SEGMENTS],
}

impl<T> Default for Segmented<T> {
    fn default() -> Self {
        Self {
            segments: [const { OnceLock::new() }; SEGMENTS],
        }
    }
}

/// (segment, offset) of an element.
#[inline]
fn locate(index: usize) -> (usize, usize) {
    let shifted = index + (1 << FIRST_BITS);
    let bit = usize::BITS - 1 - shifted.leading_zeros();
    ((bit - FIRST_BITS) as usize, shifted - (1 << bit))
}

impl<T: Default> Segmented<T> {
    /// Makes sure elements `0..len` exist (allocating whole segments).
    pub fn grow_to(&self, len: usize) {
        if len == 0 {
            return;
        }
        let (last, _) = locate(len - 1);
        for (k, segment) in self.segments.iter().enumerate().take(last + 1) {
            segment.get_or_init(|| {
                (0..1usize << (k as u32 + FIRST_BITS))
                    .map(|_| T::default())
                    .collect()
            });
        }
    }
}

impl<T> Segmented<T> {
    /// The element at `index`, if its segment exists.
    #[inline]
    pub fn get(&self, index: usize) -> Option<&T> {
        let (segment, offset) = locate(index);
        self.segments.get(segment)?.get()?.get(offset)
    }

    /// How many elements exist (a multiple of the segment sizes).
    pub fn capacity(&self) -> usize {
        self.segments
            .iter()
            .take_while(|s| s.get().is_some())
            .map(|s| s.get().map_or(0, |s| s.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn indices_map_to_consecutive_segment_slots() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(63), (0, 63));
        assert_eq!(locate(64), (1, 0));
        assert_eq!(locate(191), (1, 127));
        assert_eq!(locate(192), (2, 0));
    }

    #[test]
    fn elements_exist_once_grown_and_stay_where_they_are() {
        let table: Segmented<AtomicU32> = Segmented::default();
        assert!(table.get(0).is_none());
        table.grow_to(1);
        assert_eq!(table.capacity(), 64);
        let first = table.get(0).unwrap() as *const AtomicU32;
        table.get(5).unwrap().store(7, Ordering::Relaxed);
        assert!(table.get(64).is_none());
        table.grow_to(1000);
        assert!(table.capacity() >= 1000);
        assert_eq!(first, table.get(0).unwrap() as *const AtomicU32);
        assert_eq!(table.get(5).unwrap().load(Ordering::Relaxed), 7);
        assert_eq!(table.get(999).unwrap().load(Ordering::Relaxed), 0);
    }
}
