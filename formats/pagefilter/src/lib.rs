//! Which page frames of the crashed kernel need not be dumped, decided from its `struct page`
//! array read through VMCOREINFO: makedumpfile's dump level (`-d`,
//! `minicap.dump_level=`) bits 2, 4, 8 and 16, as makedumpfile 1.7.x
//! `__exclude_unnecessary_pages()` decides them. Bit 1 (pages of zeros) is the writer's.
//!
//! # Use, once per dump
//!
//! 1. [`applicable_level`]`(requested, &vmcoreinfo, &ram)`: the level that is safe to apply,
//!    why it is lower than asked ([`LevelReason`], for the console and the dump header),
//!    and the checked [`PageLayout`].
//! 2. If there is a layout (even at level 0 or 1: poisoned pages are left out whatever the
//!    level), [`PageFilter::new`]`(old, layout, &ram, max_mapnr, level)`: finds the
//!    `struct page` arrays in old memory (an error says why not, and that the level is
//!    `level & 1`).
//! 3. [`PageFilter::exclude`]`(pfns, |range| ...)` for each cycle of frames, in order;
//!    [`PageFilter::stats`] at the end.
//!
//! # The level bits (makedumpfile's meanings)
//!
//! For each RAM frame, from its `struct page`, in makedumpfile's branch order; a compound
//! page (head flag `NUMBER(PG_head_mask)`) is decided by its head, whole: `1 << order`
//! frames; its tails (`page.compound_head & 1`) are skipped.
//!
//! * **16, free**: a buddy page (`_mapcount == NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)`, not
//!   slab) heads a free block of `1 << page.private` frames (an order not below
//!   `LENGTH(zone.free_area)` is counted as bad and kept); an unaccepted page
//!   (`PAGE_UNACCEPTED_MAPCOUNT_VALUE`, 6.5+) heads `1 << (LENGTH(zone.free_area) - 1)`.
//! * **2, page cache**: `is_cache_page()` — flag `PG_lru`, or `PG_swapcache` with
//!   `PG_swapbacked` (without it the bit is `PG_owner_priv_1`, e.g. a filesystem's
//!   `PG_checked` or Xen's pinned page tables) — and neither `PG_private` nor anonymous.
//! * **4, private cache**: a cache page, private or not, not anonymous.
//! * **8, user data**: anonymous (`isAnon()`: bit 0 of `page.mapping`,
//!   `PAGE_MAPPING_ANON`, and not slab as makedumpfile 1.7.3+ adds) or hugetlbfs
//!   (`isHugetlb()`).
//! * Always, when any `struct page` is read (a filter bit is set, or `NUMBER(PG_hwpoison)`
//!   is exported, as makedumpfile `create_2nd_bitmap()` decides): hardware-poisoned pages
//!   (`PG_hwpoison`) and logically offline ones (`PAGE_OFFLINE_MAPCOUNT_VALUE`, not slab).
//!
//! Slab pages (`isSlab()`: flag `PG_slab`, or on 6.10+ `_mapcount ==
//! PAGE_SLAB_MAPCOUNT_VALUE`) are never free, anonymous nor offline.
//!
//! A compound head's order and hugetlb marker are in the next `struct page`: on 6.9+
//! (`PAGE_HUGETLB_MAPCOUNT_VALUE`) the low byte of its flags and the head's `_mapcount`;
//! on 6.6+ (`PG_hugetlb`) that byte and that flag of the next page; before, the bytes at
//! `OFFSET(page.compound_order)` / `OFFSET(page.compound_dtor)` (or `folio._folio_order` /
//! `folio._folio_dtor` minus `SIZE(page)`, 6.3+), the latter equal to
//! `NUMBER(HUGETLB_PAGE_DTOR)` (makedumpfile `init_compound_offset()`; these are bytes
//! since 4.16, and read as bytes here). An order of 64 or more, or a head not aligned to
//! it, counts as 0.
//!
//! Differences from makedumpfile, all towards dumping more: a `struct page` that cannot be
//! read keeps its frames (makedumpfile gives up the whole filter); a missing key switches a
//! bit off rather than being read as -1; flag numbers are tested on all 64 bits
//! (makedumpfile's `test_bit()` only handles numbers below 32, which all x86_64 flags are);
//! pre-4.4 hugetlb destructors (`SYMBOL(free_huge_page)`) are not recognised.
//!
//! # Finding `struct page` (makedumpfile `get_mm_sparsemem()`)
//!
//! x86_64 kernels use SPARSEMEM_EXTREME: memory is cut in sections of
//! `2^NUMBER(SECTION_SIZE_BITS)` bytes; `SYMBOL(mem_section)` is an array of root pointers,
//! each to `4096 / SIZE(mem_section)` `struct mem_section`s. A section's `section_mem_map`
//! (at `OFFSET(mem_section.section_mem_map)`) has "present" in bit 0 and flags up to bit 4;
//! without those bits it is the section's `struct page` array minus the section's first pfn
//! times `SIZE(page)` (Linux `sparse_encode_mem_map()`), so `struct page` of `pfn` is at
//! `(section_mem_map & ~31) + pfn * SIZE(page)`: a `vmemmap` address, read through the old
//! page tables. (makedumpfile's `sparse_decode_mem_map()` adds the first pfn back to get
//! the section's first `struct page`, which must be a kernel address.)
//! Before 4.15 the symbol was the array itself, later a pointer to it; like makedumpfile's
//! `get_mem_section()`, the array reading is tried first and kept if every present section
//! decodes to a kernel address, else the pointer reading.
//!
//! # The safe-level rule ([`applicable_level`])
//!
//! Every value a bit reads is checked before the bit is applied: present and parsable,
//! `SIZE(page)` a multiple of 8 in 32..=256, each offset aligned and inside `struct page`
//! and no two of `flags`, `compound_head`, `_mapcount`, `private`, `mapping` overlapping,
//! flag numbers below 64 and distinct, page-type markers 32-bit values below -1 (-1 is an
//! ordinary `_mapcount`) and distinct, `PG_head_mask` a single bit, compound offsets inside
//! the next `struct page`, `HUGETLB_PAGE_DTOR` a byte, `LENGTH(zone.free_area)` at least 1
//! and small enough for a free block to fit a section, `SYMBOL(mem_section)` an aligned
//! address in the kernel half, `SIZE(mem_section)` in 8..=4096, `SECTION_SIZE_BITS` in
//! 15..=34, `MAX_PHYSMEM_BITS` above it and at most 52 and above the end of RAM,
//! `LENGTH(mem_section)` the number of roots SPARSEMEM_EXTREME implies. Then:
//!
//! * a problem with what every bit reads (`mem_section` and the section geometry,
//!   `SIZE(page)`, `page.flags`, `page.compound_head`, `page._mapcount`) switches filtering
//!   off: the level keeps only bit 1;
//! * a problem with what some bits read drops those bits only: bit 16 needs `page.private`,
//!   `PAGE_BUDDY_MAPCOUNT_VALUE`, `LENGTH(zone.free_area)` (and a sound
//!   `PAGE_UNACCEPTED_MAPCOUNT_VALUE` if present); bits 2 and 4 need `PG_lru`, `PG_private`,
//!   `PG_swapcache`, `PG_swapbacked` (so kernels before 4.10 get neither) and
//!   `page.mapping`; bit 8 needs `page.mapping` (and sound hugetlb markers if present);
//!   bits 2, 4, 8 and 16 (and offline pages) need a slab marker (`PG_slab` or
//!   `PAGE_SLAB_MAPCOUNT_VALUE`);
//!   bits 2, 4 and 8, which leave out whole compound pages, need a sound `PG_head_mask`
//!   and order offset if present (absent, compound pages count as one frame: only their
//!   head goes, which is safe);
//! * two overlapping fields, or two equal flag numbers or page types, cost the bits of
//!   both (which one is wrong is unknown): e.g. `page.private` over `page._mapcount`
//!   switches filtering off, `PAGE_HUGETLB_MAPCOUNT_VALUE` equal to the buddy marker drops
//!   bits 8 and 16;
//! * a nonsense `PG_hwpoison` or `PAGE_OFFLINE_MAPCOUNT_VALUE` is not used
//!   ([`LevelDecision::ignored`]).
//!
//! The reason reported is the first problem that cost a requested bit. Old memory is
//! checked by [`PageFilter::new`]: the root array must be readable and some section must
//! decode to a kernel address, every present one.
//!
//! # Bounded and careful
//!
//! Memory: one [`BATCH_BYTES`] buffer of `struct page`s (on the stack) and the current
//! section; nothing allocated, whatever the RAM size. Old memory is not trusted: a
//! section or batch that cannot be read keeps its frames (counted in
//! [`FilterStats::unreadable_pages`]), orders are bounded as above, and frames outside the
//! range asked for are never reported. An exclusion running past the end of a cycle is
//! completed at the start of the next, as makedumpfile carries it (`exclude_range()`).
//!
//! Pure logic: no `unsafe`, no allocation, host tested.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod classify;
mod filter;
mod layout;
mod level;
mod reason;
mod sections;

pub use filter::{FilterStats, PageFilter, BATCH_BYTES};
pub use layout::{
    CacheFlags, CompoundLayout, FreeLayout, HugetlbMark, OrderSource, PageLayout, SectionLayout,
    SlabMarks,
};
pub use level::{applicable_level, LevelDecision};
pub use reason::{Key, LevelReason, Problem};

/// Dump level bit 1: pages of zeros (the writer's, makedumpfile `DL_EXCLUDE_ZERO`).
pub const DL_EXCLUDE_ZERO: u8 = 1;
/// Dump level bit 2: page cache without private data (`DL_EXCLUDE_CACHE`).
pub const DL_EXCLUDE_CACHE: u8 = 2;
/// Dump level bit 4: page cache, private data or not (`DL_EXCLUDE_CACHE_PRI`).
pub const DL_EXCLUDE_CACHE_PRI: u8 = 4;
/// Dump level bit 8: user process data, anonymous or hugetlbfs (`DL_EXCLUDE_USER_DATA`).
pub const DL_EXCLUDE_USER_DATA: u8 = 8;
/// Dump level bit 16: free pages (`DL_EXCLUDE_FREE`).
pub const DL_EXCLUDE_FREE: u8 = 16;
