//! The cyclic walk over the frames (makedumpfile `exclude_unnecessary_pages()` with its
//! `cycle->exclude_pfn_*` carry-over).

use core::ops::Range;

use minicap_physmem::PhysMem;
use minicap_vmcoreinfo::OldMemory;

use crate::classify::{classify, Kind, Verdict};
use crate::reason::{LevelReason, FILTER_BITS};
use crate::sections::MemMap;
use crate::PageLayout;

/// Bytes of `struct page` read at once: an aligned batch of a power of two of frames
/// (64 frames of 64-byte `struct page`s), so a compound head, aligned to its order, is
/// never the last of a batch and its order is always in the batch.
pub const BATCH_BYTES: usize = 4096;

/// What the filter left out, and kept for want of a readable `struct page`, so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Frames left out as page cache without private data (bits 2 and 4).
    pub cache_pages: u64,
    /// Frames left out as page cache with private data (bit 4).
    pub cache_private_pages: u64,
    /// Frames left out as user data: anonymous or hugetlbfs (bit 8).
    pub user_pages: u64,
    /// Frames left out as free: buddy or unaccepted (bit 16).
    pub free_pages: u64,
    /// Frames left out as hardware poisoned.
    pub hwpoison_pages: u64,
    /// Frames left out as logically offline.
    pub offline_pages: u64,
    /// RAM frames kept because their `struct page` could not be found or read.
    pub unreadable_pages: u64,
    /// Buddy heads kept because their order was not below `LENGTH(zone.free_area)`.
    pub bad_orders: u64,
}

impl FilterStats {
    /// Frames left out, all kinds.
    pub fn excluded(&self) -> u64 {
        self.cache_pages
            + self.cache_private_pages
            + self.user_pages
            + self.free_pages
            + self.hwpoison_pages
            + self.offline_pages
    }

    fn count(&mut self, kind: Kind, frames: u64) {
        let counter = match kind {
            Kind::Cache => &mut self.cache_pages,
            Kind::CachePrivate => &mut self.cache_private_pages,
            Kind::User => &mut self.user_pages,
            Kind::Free => &mut self.free_pages,
            Kind::HwPoison => &mut self.hwpoison_pages,
            Kind::Offline => &mut self.offline_pages,
        };
        *counter += frames;
    }
}

/// Decides, cycle by cycle, which frames of the crashed kernel to leave out of the dump.
pub struct PageFilter<'a, M: ?Sized> {
    map: MemMap<'a, M>,
    layout: PageLayout,
    ram: &'a [Range<u64>],
    /// The level bits applied (those of the level the layout supports).
    level: u8,
    /// Whether `struct page`s are read at all (makedumpfile `create_2nd_bitmap()`: only
    /// with a filter bit, or to leave out poisoned pages).
    active: bool,
    /// An exclusion that ran past the frames of the previous call, and why.
    pending: Range<u64>,
    pending_kind: Kind,
    stats: FilterStats,
}

impl<'a, M: PhysMem + ?Sized> PageFilter<'a, M> {
    /// A filter applying `dump_level` (from [`crate::applicable_level`]; bits the layout
    /// does not support are ignored) with `layout` (its `layout`). `old` must translate
    /// `vmemmap` addresses (give it the old page tables); `ram` are the PT_LOADs' physical
    /// byte ranges; `max_mapnr` (frames) bounds the sections checked.
    ///
    /// Fails when `SYMBOL(mem_section)` does not lead, in old memory, to `struct page`
    /// arrays in kernel space: the reason then says the level to apply instead
    /// (`dump_level & 1`, no filtering).
    pub fn new(
        old: OldMemory<'a, M>,
        layout: PageLayout,
        ram: &'a [Range<u64>],
        max_mapnr: u64,
        dump_level: u8,
    ) -> Result<Self, LevelReason> {
        let sections = max_mapnr.div_ceil(layout.sections.pages_per_section());
        let map = MemMap::locate(old, layout.sections, layout.page_size, sections).map_err(
            |problem| LevelReason {
                problem,
                requested: dump_level,
                level: dump_level & !FILTER_BITS,
            },
        )?;
        let level = dump_level & (layout.supported_bits() | !FILTER_BITS);
        Ok(Self {
            map,
            layout,
            ram,
            level,
            active: level & FILTER_BITS != 0 || layout.hwpoison.is_some(),
            pending: 0..0,
            pending_kind: Kind::Free,
            stats: FilterStats::default(),
        })
    }

    /// The level applied: the one asked for, without the bits the layout cannot support.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// What was left out and kept so far.
    pub fn stats(&self) -> FilterStats {
        self.stats
    }

    /// Calls `exclude` with the frame ranges of `pfns` to leave out, in ascending order
    /// (ranges may include frames that are not RAM; they never leave `pfns`). Call it with
    /// consecutive ranges (cycles) from low to high: an exclusion running past the end of
    /// `pfns` is completed at the start of the next call.
    pub fn exclude(&mut self, pfns: Range<u64>, mut exclude: impl FnMut(Range<u64>)) {
        if !self.active {
            return;
        }
        let mut pfn = pfns.start;
        if self.pending.start < self.pending.end {
            let end = self.pending.end.min(pfns.end);
            if pfns.start < end {
                exclude(pfns.start..end);
                self.stats.count(self.pending_kind, end - pfns.start);
            }
            pfn = pfn.max(self.pending.end);
            self.pending = if self.pending.end > pfns.end {
                pfns.end..self.pending.end
            } else {
                0..0
            };
        }
        let page_size = self.layout.page_size;
        // At most 256 (checked), so every byte count below fits the batch.
        let page_bytes = usize::try_from(page_size).unwrap_or(BATCH_BYTES);
        let per_batch = prev_power_of_two(BATCH_BYTES as u64 / page_size);
        let pages_per_section = self.map.layout().pages_per_section();
        let mut batch = [0u8; BATCH_BYTES];
        while pfn < pfns.end {
            let Some(next_ram) = self.next_ram_pfn(pfn) else {
                break;
            };
            pfn = next_ram;
            if pfn >= pfns.end {
                break;
            }
            // Read from `pfn` to the end of its aligned batch (within the section), even
            // past `pfns.end`: a head's next struct page must be there.
            let batch_start = pfn / per_batch * per_batch;
            let batch_end =
                (batch_start + per_batch).min((pfn / pages_per_section + 1) * pages_per_section);
            let len = usize::try_from(batch_end - pfn).unwrap_or(0) * page_bytes;
            let read = match self.map.array_for(pfn) {
                Some(array) => {
                    let at = array.wrapping_add(pfn.wrapping_mul(page_size));
                    self.map.old.read(at, &mut batch[..len]).is_ok()
                }
                None => false,
            };
            let decide_end = batch_end.min(pfns.end);
            if !read {
                self.stats.unreadable_pages +=
                    (pfn..decide_end).filter(|&p| self.in_ram(p)).count() as u64;
                pfn = decide_end;
                continue;
            }
            let first = pfn;
            let entry = |p: u64| {
                let at = usize::try_from(p - first).ok()? * page_bytes;
                batch.get(at..at + page_bytes)
            };
            while pfn < decide_end {
                if !self.in_ram(pfn) {
                    pfn += 1;
                    continue;
                }
                let Some(page) = entry(pfn) else { break };
                let next = (pfn + 1 < batch_end).then(|| entry(pfn + 1)).flatten();
                match classify(&self.layout, self.level, page, next, pfn) {
                    Verdict::Keep => pfn += 1,
                    Verdict::BadOrder => {
                        self.stats.bad_orders += 1;
                        pfn += 1;
                    }
                    Verdict::Exclude { frames, kind } => {
                        let end = pfn.saturating_add(frames);
                        let here = end.min(pfns.end);
                        exclude(pfn..here);
                        self.stats.count(kind, here - pfn);
                        if end > pfns.end {
                            self.pending = pfns.end..end;
                            self.pending_kind = kind;
                        }
                        pfn = end;
                    }
                }
            }
        }
    }

    fn in_ram(&self, pfn: u64) -> bool {
        let addr = pfn.saturating_mul(4096);
        self.ram.iter().any(|r| r.contains(&addr))
    }

    /// The first frame at or after `pfn` that starts in RAM (makedumpfile `is_in_segs()`).
    fn next_ram_pfn(&self, pfn: u64) -> Option<u64> {
        if self.in_ram(pfn) {
            return Some(pfn);
        }
        let addr = pfn.saturating_mul(4096);
        self.ram
            .iter()
            .filter(|r| r.end > addr && r.start < r.end)
            .map(|r| r.start.max(addr).div_ceil(4096))
            .filter(|&p| self.in_ram(p))
            .min()
    }
}

fn prev_power_of_two(n: u64) -> u64 {
    1 << (63 - n.max(1).leading_zeros())
}
