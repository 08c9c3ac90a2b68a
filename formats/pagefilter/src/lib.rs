//! Which page frames of the crashed kernel need not be dumped, decided from its `struct page`
//! array read through VMCOREINFO (makedumpfile `-d 16`, "exclude free pages").
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
//! # The decision (makedumpfile `__exclude_unnecessary_pages()`, free-page part)
//!
//! For each RAM frame, from `struct page`: `flags` (`OFFSET(page.flags)`), the 32-bit
//! `_mapcount`/`page_type` word (`OFFSET(page._mapcount)`), `private` and `compound_head`.
//!
//! * A compound tail page (`compound_head & 1`) is left alone: its head decides.
//! * A buddy page: `_mapcount == (u32)NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)` and not a slab page
//!   (`flags & 1 << NUMBER(PG_slab)`, or on 6.10+ `_mapcount == PAGE_SLAB_MAPCOUNT_VALUE`)
//!   heads a free block of `1 << private` frames, all excluded; an order of at least
//!   `LENGTH(zone.free_area)` is ignored (makedumpfile warns and keeps the page).
//! * An unaccepted page (`PAGE_UNACCEPTED_MAPCOUNT_VALUE`, 6.5+) excludes
//!   `1 << (LENGTH(zone.free_area) - 1)` frames.
//! * Whatever the dump level, makedumpfile also drops hardware-poisoned pages
//!   (`NUMBER(PG_hwpoison)`) and logically offline ones (`PAGE_OFFLINE_MAPCOUNT_VALUE`, not
//!   slab): so does this filter, `1 << order` frames for a compound head (order from the
//!   next `struct page`: the low byte of its flags on 6.6+ kernels that export
//!   `PG_hugetlb` or `PAGE_HUGETLB_MAPCOUNT_VALUE`, else the byte at
//!   `OFFSET(page.compound_order)` / `OFFSET(folio._folio_order) - SIZE(page)`; invalid if
//!   not below 64 or the pfn is not aligned to it).
//!
//! An exclusion running past the end of the frames asked for is carried over to the next
//! call, as makedumpfile carries it to the next cycle.
//!
//! # Bounded and careful
//!
//! `struct page`s are read in aligned batches of [`BATCH_BYTES`] bytes (64 pages of 64
//! bytes); nothing else is kept but the current section. Old memory is not trusted: a
//! section or batch that cannot be read keeps its pages (counted in
//! [`FilterStats::unreadable_pages`]), an order is bounded by `LENGTH(zone.free_area)` (and
//! by 63 for compound pages), and frames outside the range asked for are never reported.
//!
//! Pure logic: no `unsafe`, no allocation, host tested.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod filter;
mod layout;

pub use filter::{FilterStats, FreePageFilter, BATCH_BYTES};
pub use layout::{FilterError, PageLayout};
