//! A fixed-capacity set of physical address ranges.
//!
//! The capture kernel must never write outside the memory it was given. It computes that memory
//! as "usable RAM of the crash region minus its own image, boot_params, the command line, the
//! elfcorehdr and the live page tables": inserts followed by removes on a [`RangeSet`]. The set
//! lives on the stack or in a static because there is no heap yet.

use core::fmt;
use core::ops::Range;

/// Why an update of a [`RangeSet`] was refused. The set is unchanged after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSetError {
    /// The result would need more than `capacity` disjoint ranges.
    CapacityExceeded {
        /// The set's fixed capacity.
        capacity: usize,
    },
    /// `start > end`: almost certainly an arithmetic slip by the caller, so it is not silently
    /// treated as empty.
    InvalidRange {
        /// Start of the rejected range.
        start: u64,
        /// End of the rejected range.
        end: u64,
    },
}

impl fmt::Display for RangeSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CapacityExceeded { capacity } => {
                write!(f, "range set full ({capacity} disjoint ranges)")
            }
            Self::InvalidRange { start, end } => {
                write!(f, "invalid range [{start:#x}, {end:#x}): start after end")
            }
        }
    }
}

impl core::error::Error for RangeSetError {}

/// Sorted set of disjoint half-open ranges `[start, end)` with room for `N` of them.
///
/// Invariant: the first `len` slots are non-empty, sorted, and neither overlap nor touch
/// (touching ranges are merged), so the representation of a set of addresses is unique and
/// [`RangeSet::iter`] yields maximal ranges.
#[derive(Clone, PartialEq, Eq)]
pub struct RangeSet<const N: usize> {
    ranges: [(u64, u64); N],
    len: usize,
}

impl<const N: usize> Default for RangeSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for RangeSet<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<const N: usize> RangeSet<N> {
    /// An empty set; `const` so that it can initialise a static.
    pub const fn new() -> Self {
        Self {
            ranges: [(0, 0); N],
            len: 0,
        }
    }

    /// Number of disjoint ranges currently held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no address at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of disjoint ranges (`N`).
    pub fn capacity(&self) -> usize {
        N
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    fn slice(&self) -> &[(u64, u64)] {
        &self.ranges[..self.len]
    }

    /// Adds `range`, merging it with every range it overlaps or touches. An empty range is a
    /// no-op. Fails only if the range is disjoint from all others and the set is full.
    pub fn insert(&mut self, range: Range<u64>) -> Result<(), RangeSetError> {
        let (start, end) = check(&range)?;
        if start == end {
            return Ok(());
        }
        let s = self.slice();
        // First range that ends at or after `start` (touching counts) ...
        let i = s.partition_point(|r| r.1 < start);
        // ... up to the first that starts after `end`: ranges i..j merge with the new one.
        let j = s.partition_point(|r| r.0 <= end);
        if i == j {
            if self.len == N {
                return Err(RangeSetError::CapacityExceeded { capacity: N });
            }
            self.ranges.copy_within(i..self.len, i + 1);
            self.ranges[i] = (start, end);
            self.len += 1;
        } else {
            let merged = (start.min(s[i].0), end.max(s[j - 1].1));
            self.ranges[i] = merged;
            self.ranges.copy_within(j..self.len, i + 1);
            self.len -= j - i - 1;
        }
        Ok(())
    }

    /// Takes `range` out of the set, trimming or splitting the ranges it touches. An empty range
    /// is a no-op. Fails only when it would split a range and the set is full.
    pub fn remove(&mut self, range: Range<u64>) -> Result<(), RangeSetError> {
        let (start, end) = check(&range)?;
        if start == end {
            return Ok(());
        }
        let s = self.slice();
        // Ranges i..j overlap [start, end).
        let i = s.partition_point(|r| r.1 <= start);
        let j = s.partition_point(|r| r.0 < end);
        if i >= j {
            return Ok(());
        }
        let left = (s[i].0 < start).then_some((s[i].0, start));
        let right = (s[j - 1].1 > end).then_some((end, s[j - 1].1));
        let pieces = usize::from(left.is_some()) + usize::from(right.is_some());
        let new_len = self.len - (j - i) + pieces;
        if new_len > N {
            return Err(RangeSetError::CapacityExceeded { capacity: N });
        }
        self.ranges.copy_within(j..self.len, i + pieces);
        for (k, piece) in (i..).zip([left, right].into_iter().flatten()) {
            self.ranges[k] = piece;
        }
        self.len = new_len;
        Ok(())
    }

    /// The ranges in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.slice().iter().map(|&(s, e)| s..e)
    }

    /// Total number of bytes covered. Cannot overflow: the ranges are disjoint subsets of
    /// `[0, u64::MAX)`.
    pub fn total(&self) -> u64 {
        self.slice().iter().map(|&(s, e)| e - s).sum()
    }

    /// Whether `addr` lies in the set.
    pub fn contains(&self, addr: u64) -> bool {
        let s = self.slice();
        let i = s.partition_point(|r| r.1 <= addr);
        s.get(i).is_some_and(|r| r.0 <= addr)
    }

    /// Whether every address of `range` lies in the set (true for an empty range). Because
    /// touching ranges are merged, this holds exactly when one stored range covers it.
    pub fn contains_range(&self, range: Range<u64>) -> bool {
        if range.start >= range.end {
            return true;
        }
        let s = self.slice();
        let i = s.partition_point(|r| r.1 <= range.start);
        s.get(i)
            .is_some_and(|r| r.0 <= range.start && range.end <= r.1)
    }

    /// Whether any address of `range` lies in the set (false for an empty range).
    pub fn overlaps(&self, range: Range<u64>) -> bool {
        if range.start >= range.end {
            return false;
        }
        let s = self.slice();
        let i = s.partition_point(|r| r.1 <= range.start);
        s.get(i).is_some_and(|r| r.0 < range.end)
    }
}

fn check(range: &Range<u64>) -> Result<(u64, u64), RangeSetError> {
    if range.start > range.end {
        Err(RangeSetError::InvalidRange {
            start: range.start,
            end: range.end,
        })
    } else {
        Ok((range.start, range.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v<const N: usize>(s: &RangeSet<N>) -> Vec<(u64, u64)> {
        s.iter().map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn empty() {
        let s = RangeSet::<4>::new();
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        assert_eq!(s.capacity(), 4);
        assert_eq!(s.total(), 0);
        assert!(!s.contains(0));
        assert!(s.contains_range(5..5));
        assert!(!s.contains_range(5..6));
        assert!(!s.overlaps(0..u64::MAX));
        assert_eq!(format!("{s:?}"), "[]");
    }

    #[test]
    fn insert_sorted_and_merged() {
        let mut s = RangeSet::<8>::new();
        s.insert(100..200).unwrap();
        s.insert(0..10).unwrap();
        s.insert(300..400).unwrap();
        assert_eq!(v(&s), [(0, 10), (100, 200), (300, 400)]);
        // Touching on both sides merges.
        s.insert(200..300).unwrap();
        assert_eq!(v(&s), [(0, 10), (100, 400)]);
        // Overlap on the left.
        s.insert(5..50).unwrap();
        assert_eq!(v(&s), [(0, 50), (100, 400)]);
        // Swallow everything.
        s.insert(0..1000).unwrap();
        assert_eq!(v(&s), [(0, 1000)]);
        // Contained: unchanged.
        s.insert(10..20).unwrap();
        assert_eq!(v(&s), [(0, 1000)]);
        assert_eq!(s.total(), 1000);
    }

    #[test]
    fn insert_merges_many() {
        let mut s = RangeSet::<8>::new();
        for k in 0..5u64 {
            s.insert(k * 10..k * 10 + 5).unwrap();
        }
        assert_eq!(s.len(), 5);
        s.insert(3..42).unwrap();
        assert_eq!(v(&s), [(0, 45)]);
    }

    #[test]
    fn insert_empty_and_invalid() {
        let mut s = RangeSet::<1>::new();
        s.insert(5..5).unwrap();
        assert!(s.is_empty());
        #[allow(clippy::reversed_empty_ranges)]
        let bad = 6..5;
        assert_eq!(
            s.insert(bad.clone()),
            Err(RangeSetError::InvalidRange { start: 6, end: 5 })
        );
        assert_eq!(
            s.remove(bad),
            Err(RangeSetError::InvalidRange { start: 6, end: 5 })
        );
    }

    #[test]
    fn insert_capacity() {
        let mut s = RangeSet::<2>::new();
        s.insert(0..10).unwrap();
        s.insert(20..30).unwrap();
        let before = s.clone();
        assert_eq!(
            s.insert(40..50),
            Err(RangeSetError::CapacityExceeded { capacity: 2 })
        );
        assert_eq!(s, before);
        // Merging still works when full.
        s.insert(10..20).unwrap();
        assert_eq!(v(&s), [(0, 30)]);
        s.insert(40..50).unwrap();
        assert_eq!(v(&s), [(0, 30), (40, 50)]);
    }

    #[test]
    fn zero_capacity() {
        let mut s = RangeSet::<0>::new();
        assert!(s.insert(0..1).is_err());
        s.remove(0..1).unwrap();
        assert_eq!(s.total(), 0);
    }

    #[test]
    fn remove_trims_and_splits() {
        let mut s = RangeSet::<4>::new();
        s.insert(0..100).unwrap();
        s.remove(40..60).unwrap();
        assert_eq!(v(&s), [(0, 40), (60, 100)]);
        s.remove(0..10).unwrap();
        assert_eq!(v(&s), [(10, 40), (60, 100)]);
        s.remove(90..200).unwrap();
        assert_eq!(v(&s), [(10, 40), (60, 90)]);
        // Spanning the gap trims both neighbours.
        s.remove(30..70).unwrap();
        assert_eq!(v(&s), [(10, 30), (70, 90)]);
        // Exact removal and removal of absent ranges.
        s.remove(10..30).unwrap();
        s.remove(0..5).unwrap();
        s.remove(30..70).unwrap();
        assert_eq!(v(&s), [(70, 90)]);
        s.remove(0..u64::MAX).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn remove_spanning_many() {
        let mut s = RangeSet::<8>::new();
        for k in 0..6u64 {
            s.insert(k * 10..k * 10 + 5).unwrap();
        }
        s.remove(12..43).unwrap();
        assert_eq!(v(&s), [(0, 5), (10, 12), (43, 45), (50, 55)]);
    }

    #[test]
    fn remove_split_needs_capacity() {
        let mut s = RangeSet::<2>::new();
        s.insert(0..100).unwrap();
        s.insert(200..300).unwrap();
        let before = s.clone();
        assert_eq!(
            s.remove(40..60),
            Err(RangeSetError::CapacityExceeded { capacity: 2 })
        );
        assert_eq!(s, before);
        // Trimming needs no extra slot.
        s.remove(0..10).unwrap();
        s.remove(290..300).unwrap();
        assert_eq!(v(&s), [(10, 100), (200, 290)]);
        // A removal spanning two ranges leaves at most two pieces: fine when full.
        s.remove(50..250).unwrap();
        assert_eq!(v(&s), [(10, 50), (250, 290)]);
    }

    #[test]
    fn contains_and_overlaps() {
        let mut s = RangeSet::<4>::new();
        s.insert(10..20).unwrap();
        s.insert(30..40).unwrap();
        assert!(!s.contains(9));
        assert!(s.contains(10));
        assert!(s.contains(19));
        assert!(!s.contains(20));
        assert!(s.contains(30));
        assert!(!s.contains(40));
        assert!(s.contains_range(10..20));
        assert!(s.contains_range(12..15));
        assert!(!s.contains_range(15..25));
        assert!(!s.contains_range(10..40));
        assert!(!s.contains_range(0..5));
        assert!(s.overlaps(15..35));
        assert!(s.overlaps(0..11));
        assert!(s.overlaps(39..100));
        assert!(!s.overlaps(20..30));
        assert!(!s.overlaps(0..10));
        assert!(!s.overlaps(40..100));
        assert!(!s.overlaps(15..15));
    }

    #[test]
    fn extremes() {
        let mut s = RangeSet::<4>::new();
        s.insert(0..u64::MAX).unwrap();
        assert_eq!(s.total(), u64::MAX);
        s.remove(0x1000..0x2000).unwrap();
        assert_eq!(s.total(), u64::MAX - 0x1000);
        assert!(s.contains(u64::MAX - 1));
        assert!(s.contains_range(0x2000..u64::MAX));
    }

    /// Models the crash-kernel computation: RAM of the crash region minus what must survive.
    #[test]
    fn crash_region_example() {
        let mut usable = RangeSet::<16>::new();
        usable.insert(0x1000..0xa0000).unwrap();
        usable.insert(0x6000_0000..0x7000_0000).unwrap();
        let image = 0x6000_0000..0x6040_0000;
        let zero_page = 0x6f00_0000..0x6f00_1000;
        let cmdline = 0x6f00_1000..0x6f00_1800;
        let elfcorehdr = 0x6fff_c000..0x7000_0000;
        for r in [image, zero_page, cmdline, elfcorehdr] {
            usable.remove(r).unwrap();
        }
        assert_eq!(
            v(&usable),
            [
                (0x1000, 0xa0000),
                (0x6040_0000, 0x6f00_0000),
                (0x6f00_1800, 0x6fff_c000)
            ]
        );
        assert!(!usable.overlaps(0x6f00_0000..0x6f00_1800));
    }

    fn idx(x: u64) -> usize {
        usize::try_from(x).unwrap()
    }

    /// Tiny deterministic generator so the model test needs no dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random inserts and removes against a bitmap model on a small universe.
    #[test]
    fn matches_bitmap_model() {
        const U: u64 = 96;
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _round in 0..200 {
            let mut s = RangeSet::<6>::new();
            let mut model = [false; 96];
            for _op in 0..60 {
                let a = rng.next() % (U + 1);
                let b = rng.next() % (U + 1);
                let (lo, hi) = (a.min(b), a.max(b));
                let insert = rng.next() & 1 == 0;
                let before = s.clone();
                let r = if insert {
                    s.insert(lo..hi)
                } else {
                    s.remove(lo..hi)
                };
                match r {
                    Ok(()) => {
                        for x in lo..hi {
                            model[idx(x)] = insert;
                        }
                    }
                    Err(RangeSetError::CapacityExceeded { .. }) => {
                        assert_eq!(s, before, "failed update must not change the set");
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
                // Same addresses, and canonical: sorted, non-empty, non-touching.
                for x in 0..U {
                    assert_eq!(s.contains(x), model[idx(x)], "addr {x} in {s:?}");
                }
                let ranges = v(&s);
                for w in ranges.windows(2) {
                    assert!(w[0].1 < w[1].0, "not canonical: {s:?}");
                }
                assert!(ranges.iter().all(|r| r.0 < r.1));
                let count = model.iter().filter(|&&b| b).count() as u64;
                assert_eq!(s.total(), count);
                // contains_range agrees with the model.
                let c = rng.next() % U;
                let d = c + rng.next() % (U - c);
                assert_eq!(s.contains_range(c..d), (c..d).all(|x| model[idx(x)]));
                assert_eq!(s.overlaps(c..d), (c..d).any(|x| model[idx(x)]));
            }
        }
    }
}
