//! What the filter knows about the crashed kernel's `struct page` and `mem_section`, every
//! value already checked by [`crate::applicable_level`]. A part is `None` when VMCOREINFO
//! lacks it or holds nonsense for it; the level bits that need it are then off.

/// Where `struct page`s are: SPARSEMEM_EXTREME's `mem_section` (makedumpfile
/// `get_mm_sparsemem()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionLayout {
    /// `SYMBOL(mem_section)`: the root array, or (4.15+) a pointer to it.
    pub mem_section: u64,
    /// Number of root pointers (`LENGTH(mem_section)`, or what SPARSEMEM_EXTREME implies).
    pub roots: u64,
    /// `SIZE(mem_section)`.
    pub struct_size: u64,
    /// `OFFSET(mem_section.section_mem_map)`.
    pub section_mem_map: u64,
    /// `NUMBER(SECTION_SIZE_BITS)`.
    pub section_size_bits: u32,
}

impl SectionLayout {
    /// Page frames per memory section.
    pub fn pages_per_section(&self) -> u64 {
        1 << (self.section_size_bits - 12)
    }

    /// Sections per root pointer (`SECTIONS_PER_ROOT`: one 4 KiB page of `mem_section`s).
    pub fn sections_per_root(&self) -> u64 {
        4096 / self.struct_size
    }
}

/// How slab pages are told apart (makedumpfile `isSlab()`): they must never be taken for
/// free or anonymous pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlabMarks {
    /// `NUMBER(PG_slab)` (before 6.10).
    pub pg_slab: Option<u32>,
    /// Low 32 bits of `NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)` (6.10+).
    pub page_type: Option<u32>,
}

/// What dump level bit 16 (free pages) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeLayout {
    /// `OFFSET(page.private)`: a buddy page's order.
    pub private: u64,
    /// Low 32 bits of `NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)`.
    pub buddy: u32,
    /// Low 32 bits of `NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)` (6.5+).
    pub unaccepted: Option<u32>,
    /// `LENGTH(zone.free_area)`: buddy orders are below it.
    pub free_area_len: u64,
}

/// The page flag numbers dump level bits 2 and 4 (page cache) read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheFlags {
    /// `NUMBER(PG_lru)`.
    pub lru: u32,
    /// `NUMBER(PG_private)`.
    pub private: u32,
    /// `NUMBER(PG_swapcache)`.
    pub swapcache: u32,
    /// `NUMBER(PG_swapbacked)`: `PG_swapcache` means swap cache only with it (4.10+).
    pub swapbacked: u32,
}

/// Where a compound head's order is, in the `struct page` after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSource {
    /// The low byte of the next page's flags (`folio._flags_1`, 6.6+).
    FlagsLowByte,
    /// The byte at this offset in the next `struct page` (`page.compound_order`, or
    /// `folio._folio_order - SIZE(page)`).
    Byte(u64),
}

/// How a hugetlbfs compound page is recognised (makedumpfile `isHugetlb()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugetlbMark {
    /// The head's `_mapcount` is `NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)` (6.9+).
    PageType(u32),
    /// Bit `NUMBER(PG_hugetlb)` of the next page's flags (6.6+).
    TailFlag(u32),
    /// The byte at `offset` in the next `struct page` (`page.compound_dtor`, or
    /// `folio._folio_dtor - SIZE(page)`) is `NUMBER(HUGETLB_PAGE_DTOR)`.
    Destructor {
        /// Offset in the next `struct page`.
        offset: u64,
        /// The hugetlb destructor's number.
        value: u8,
    },
}

/// Compound (multi-frame) pages: excluded whole when their head is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompoundLayout {
    /// `NUMBER(PG_head_mask)`: one bit.
    pub head_mask: u64,
    /// Where the order is (None: compound pages count as one frame).
    pub order: Option<OrderSource>,
    /// How hugetlbfs pages are recognised (None: they are not).
    pub hugetlb: Option<HugetlbMark>,
}

/// Sizes, offsets and values from VMCOREINFO, checked (see the crate docs for which level
/// bit needs which part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLayout {
    /// `SIZE(page)`.
    pub page_size: u64,
    /// `OFFSET(page.flags)`.
    pub flags: u64,
    /// `OFFSET(page.compound_head)`: bit 0 marks a compound tail page.
    pub compound_head: u64,
    /// `OFFSET(page._mapcount)` (the `page_type` word).
    pub mapcount: u64,
    /// `OFFSET(page.mapping)`: bit 0 (`PAGE_MAPPING_ANON`) marks an anonymous page.
    pub mapping: Option<u64>,
    /// Slab page markers.
    pub slab: Option<SlabMarks>,
    /// Free page markers (bit 16).
    pub free: Option<FreeLayout>,
    /// Page cache flags (bits 2 and 4).
    pub cache: Option<CacheFlags>,
    /// Compound pages.
    pub compound: Option<CompoundLayout>,
    /// `NUMBER(PG_hwpoison)`.
    pub hwpoison: Option<u32>,
    /// Low 32 bits of `NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)`.
    pub offline: Option<u32>,
    /// Where the `struct page` arrays are.
    pub sections: SectionLayout,
}

impl PageLayout {
    /// The dump level bits (2, 4, 8, 16) this layout has what it takes to apply.
    pub fn supported_bits(&self) -> u8 {
        let mut bits = 0;
        if self.slab.is_some() {
            if self.free.is_some() {
                bits |= crate::DL_EXCLUDE_FREE;
            }
            if self.mapping.is_some() {
                bits |= crate::DL_EXCLUDE_USER_DATA;
                if self.cache.is_some() {
                    bits |= crate::DL_EXCLUDE_CACHE | crate::DL_EXCLUDE_CACHE_PRI;
                }
            }
        }
        bits
    }
}
