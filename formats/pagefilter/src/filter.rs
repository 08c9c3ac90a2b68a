//! The per-frame decision (makedumpfile `__exclude_unnecessary_pages()`).

use core::ops::Range;

use minicap_physmem::PhysMem;
use minicap_vmcoreinfo::{OldMemory, VirtReadError};

use crate::layout::OrderSource;
use crate::{FilterError, PageLayout};

/// Bytes of `struct page` read at once (an aligned batch of frames).
pub const BATCH_BYTES: usize = 4096;
/// Lowest kernel virtual address on x86_64 (below every `PAGE_OFFSET` and `vmemmap` base):
/// a decoded `struct page` array must lie above it (makedumpfile `is_kvaddr()`).
const KERNEL_SPACE: u64 = 0xff00_0000_0000_0000;
/// `SECTION_MAP_LAST_BIT` since 5.12: the low 5 bits of `section_mem_map` are flags.
const SECTION_MAP_MASK: u64 = !((1 << 5) - 1);
const SECTION_MARKED_PRESENT: u64 = 1;
/// makedumpfile's `DL_EXCLUDE_FREE`.
const DL_EXCLUDE_FREE: i32 = 16;

/// What the filter found so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Frames excluded as free (buddy, unaccepted).
    pub free_pages: u64,
    /// Frames excluded as hardware poisoned.
    pub hwpoison_pages: u64,
    /// Frames excluded as logically offline.
    pub offline_pages: u64,
    /// RAM frames kept because their `struct page` could not be found or read.
    pub unreadable_pages: u64,
    /// Buddy heads kept because their order was out of range.
    pub bad_orders: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Free,
    HwPoison,
    Offline,
}

/// Decides, frame by frame, what to leave out of the dump.
pub struct FreePageFilter<'a, M: ?Sized> {
    old: OldMemory<'a, M>,
    layout: PageLayout,
    ram: &'a [Range<u64>],
    exclude_free: bool,
    /// Address of the root pointer array.
    roots: u64,
    /// The section last looked up and its `struct page` array (pfn 0 based).
    section: Option<(u64, Option<u64>)>,
    /// An exclusion that ran past the frames of the previous call, and why.
    pending: Range<u64>,
    pending_kind: Kind,
    stats: FilterStats,
}

impl<'a, M: PhysMem + ?Sized> FreePageFilter<'a, M> {
    /// A filter for `dump_level` (bit 16: free pages; hwpoison and offline pages are always
    /// left out, as makedumpfile does; the cache and user-data bits are not implemented and
    /// ignored). `old` must translate `vmemmap` addresses (give it the page tables);
    /// `ram` are the PT_LOADs' physical byte ranges; `max_mapnr` bounds the sections
    /// validated.
    pub fn new(
        old: OldMemory<'a, M>,
        layout: PageLayout,
        ram: &'a [Range<u64>],
        dump_level: i32,
        max_mapnr: u64,
    ) -> Result<Self, FilterError> {
        let mut filter = Self {
            old,
            layout,
            ram,
            exclude_free: dump_level & DL_EXCLUDE_FREE != 0,
            roots: layout.mem_section,
            section: None,
            pending: 0..0,
            pending_kind: Kind::Free,
            stats: FilterStats::default(),
        };
        let sections = max_mapnr.div_ceil(layout.pages_per_section());
        // makedumpfile get_mem_section(): the symbol as the array, else as a pointer to it.
        if !filter.validate(sections)? {
            filter.roots = filter
                .old
                .read_u64(layout.mem_section)
                .map_err(FilterError::Unreadable)?;
            if !filter.validate(sections)? {
                return Err(FilterError::NoMemMap);
            }
        }
        Ok(filter)
    }

    /// What was excluded and kept so far.
    pub fn stats(&self) -> FilterStats {
        self.stats
    }

    /// Whether every present section up to `sections` decodes to a kernel address, and at
    /// least one is present.
    fn validate(&mut self, sections: u64) -> Result<bool, FilterError> {
        let mut any = false;
        let per_root = self.layout.sections_per_root();
        for nr in 0..sections {
            // An unreadable root array rules this reading out; an unreadable section is
            // just a section without memory map (makedumpfile validate_mem_section()).
            if nr % per_root == 0
                && self
                    .old
                    .read_u64(self.roots.wrapping_add(nr / per_root * 8))
                    .is_err()
            {
                return Ok(false);
            }
            let first_page = |map: u64| {
                map.wrapping_add(
                    (nr * self.layout.pages_per_section()).wrapping_mul(self.layout.page_size),
                )
            };
            match self.mem_map_of(nr) {
                Ok(Some(map)) if first_page(map) < KERNEL_SPACE => return Ok(false),
                Ok(Some(_)) => any = true,
                Ok(None) | Err(_) => {}
            }
        }
        self.section = None;
        Ok(any)
    }

    /// Section `nr`'s `struct page` array, indexed by absolute pfn (None: no memory map).
    fn mem_map_of(&self, nr: u64) -> Result<Option<u64>, VirtReadError> {
        let l = &self.layout;
        let root_index = nr / l.sections_per_root();
        if root_index >= l.roots {
            return Ok(None);
        }
        let root = self.old.read_u64(self.roots.wrapping_add(root_index * 8))?;
        if root == 0 {
            return Ok(None);
        }
        let ms = root.wrapping_add((nr % l.sections_per_root()) * l.section_struct_size);
        let map = self.old.read_u64(ms.wrapping_add(l.section_mem_map))?;
        if map & SECTION_MARKED_PRESENT == 0 {
            return Ok(None);
        }
        // The encoded value is the array minus the section's first pfn (in struct pages),
        // i.e. already indexed by absolute pfn.
        Ok(Some(map & SECTION_MAP_MASK))
    }

    fn cached_mem_map(&mut self, nr: u64) -> Result<Option<u64>, VirtReadError> {
        if let Some((cached, map)) = self.section {
            if cached == nr {
                return Ok(map);
            }
        }
        let map = self.mem_map_of(nr)?;
        self.section = Some((nr, map));
        Ok(map)
    }

    fn in_ram(&self, pfn: u64) -> bool {
        let addr = pfn.saturating_mul(4096);
        self.ram.iter().any(|r| r.contains(&addr))
    }

    /// Calls `exclude` with the frame ranges of `pfns` to leave out, in ascending order
    /// (ranges may include frames that are not RAM; they never leave `pfns`). Call it with
    /// consecutive ranges (cycles) from low to high.
    pub fn exclude(&mut self, pfns: Range<u64>, mut exclude: impl FnMut(Range<u64>)) {
        let mut pfn = pfns.start;
        if self.pending.start < self.pending.end {
            let end = self.pending.end.min(pfns.end);
            if pfns.start < end {
                exclude(pfns.start..end);
                self.count(self.pending_kind, end - pfns.start);
            }
            pfn = pfn.max(self.pending.end);
            self.pending = if self.pending.end > pfns.end {
                pfns.end..self.pending.end
            } else {
                0..0
            };
        }
        let per_batch = BATCH_BYTES as u64 / self.layout.page_size;
        let mut batch = [0u8; BATCH_BYTES];
        while pfn < pfns.end {
            if !self.in_ram(pfn) {
                pfn += 1;
                continue;
            }
            let pps = self.layout.pages_per_section();
            let nr = pfn / pps;
            let section_end = (nr + 1) * pps;
            let batch_end = ((pfn / per_batch + 1) * per_batch)
                .min(section_end)
                .min(pfns.end);
            let count = batch_end - pfn;
            let len = usize::try_from(count * self.layout.page_size).unwrap_or(BATCH_BYTES);
            let read = match self.cached_mem_map(nr) {
                Ok(Some(map)) => {
                    let at = map.wrapping_add(pfn.wrapping_mul(self.layout.page_size));
                    self.old.read(at, &mut batch[..len]).is_ok()
                }
                _ => false,
            };
            if !read {
                self.stats.unreadable_pages +=
                    (pfn..batch_end).filter(|&p| self.in_ram(p)).count() as u64;
                pfn = batch_end;
                continue;
            }
            let mut index = 0u64;
            while pfn + index < batch_end {
                let p = pfn + index;
                if !self.in_ram(p) {
                    index += 1;
                    continue;
                }
                match self.decide(&batch[..len], index, p) {
                    None => index += 1,
                    Some((frames, kind)) => {
                        let end = p.saturating_add(frames);
                        exclude(p..end.min(pfns.end));
                        self.count(kind, end.min(pfns.end) - p);
                        if end > pfns.end {
                            self.pending = pfns.end..end;
                            self.pending_kind = kind;
                        }
                        index = end - pfn;
                    }
                }
            }
            pfn += index;
        }
    }

    fn count(&mut self, kind: Kind, frames: u64) {
        match kind {
            Kind::Free => self.stats.free_pages += frames,
            Kind::HwPoison => self.stats.hwpoison_pages += frames,
            Kind::Offline => self.stats.offline_pages += frames,
        }
    }

    /// The exclusion starting at frame `pfn`, whose `struct page` is entry `index` of
    /// `batch` (makedumpfile's branch order).
    fn decide(&mut self, batch: &[u8], index: u64, pfn: u64) -> Option<(u64, Kind)> {
        let l = self.layout;
        let base = usize::try_from(index * l.page_size).ok()?;
        let page = batch.get(base..base + usize::try_from(l.page_size).ok()?)?;
        let u64_at = |off: u64| {
            let o = usize::try_from(off).unwrap_or(usize::MAX);
            page.get(o..o + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        };
        let flags = u64_at(l.flags);
        let mapcount = {
            let o = usize::try_from(l.mapcount).unwrap_or(usize::MAX);
            page.get(o..o + 4)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
        };
        let private = u64_at(l.private);
        let compound_head = l.compound_head.map_or(0, u64_at);
        if compound_head & 1 != 0 {
            return None;
        }
        let bit = |b: Option<u32>| b.is_some_and(|b| flags & (1 << b) != 0);
        let is_slab = l.slab == Some(mapcount) || bit(l.pg_slab);
        if self.exclude_free && mapcount == l.buddy && !is_slab {
            let limit = l.free_area_len.unwrap_or(64);
            if private >= limit {
                self.stats.bad_orders += 1;
                return None;
            }
            return Some((1 << private, Kind::Free));
        }
        if self.exclude_free && l.unaccepted == Some(mapcount) {
            return l.free_area_len.map(|n| (1 << (n - 1), Kind::Free));
        }
        if bit(l.pg_hwpoison) {
            return Some((
                1 << self.compound_order(batch, flags, index, pfn),
                Kind::HwPoison,
            ));
        }
        if l.offline == Some(mapcount) && !is_slab {
            return Some((
                1 << self.compound_order(batch, flags, index, pfn),
                Kind::Offline,
            ));
        }
        None
    }

    /// The order of a compound head, from the next `struct page` in the batch (0 if this is
    /// not a head, the next entry is not in the batch, or the order is invalid).
    fn compound_order(&self, batch: &[u8], flags: u64, index: u64, pfn: u64) -> u64 {
        let l = self.layout;
        if l.head_mask.is_none_or(|m| flags & m == 0) {
            return 0;
        }
        let next = usize::try_from((index + 1) * l.page_size).unwrap_or(usize::MAX);
        let at = |off: u64| next.checked_add(usize::try_from(off).ok()?);
        let order = match l.order {
            OrderSource::FlagsLowByte => at(l.flags).and_then(|o| batch.get(o)).copied(),
            OrderSource::Byte(off) => at(off).and_then(|o| batch.get(o)).copied(),
            OrderSource::Unknown => None,
        };
        let order = u64::from(order.unwrap_or(0));
        if order >= 64 || pfn & ((1 << order) - 1) != 0 {
            0
        } else {
            order
        }
    }
}
