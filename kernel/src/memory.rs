//! The kernel's half of memory planning: the parts that touch hardware (the
//! live page tables, the heap, minicap's own identity map). The plan itself
//! (usable RAM, exclusions, heap choice, what is dumped and what is mapped
//! write-back) is `minicap_capture::memory`, host tested.

use crate::failure::Failure;
use crate::hw::{heap_init, paging};
use core::ops::Range;
pub use minicap_capture::memory::*;
use minicap_physmem::PAGE_SIZE;

const FOUR_GIB: u64 = 4 << 30;

/// Take the page tables kexec left active out of `free`: minicap runs on them
/// until its own are built.
pub fn exclude_live_page_tables(free: &mut FreeMemory) -> Result<(), Failure> {
    let mut result = Ok(());
    paging::for_each_table_page(|page| {
        if result.is_ok() {
            result = free.remove(page..page + PAGE_SIZE);
        }
    });
    result.map_err(Failure::MemoryMapTooFragmented)
}

/// Give the largest free range to the heap; returns it.
pub fn init_heap(free: &FreeMemory) -> Result<Range<u64>, Failure> {
    let heap_range = choose_heap(free)?;
    // SAFETY-relevant reasoning lives in `heap_init::init_checked`'s contract: this range
    // is usable RAM (e820), mapped by the inherited tables (they map the whole
    // crash region), and holds none of the reserved ranges nor any live
    // page-table page.
    heap_init::init_checked(heap_range.clone());
    Ok(heap_range)
}

/// Build minicap's identity map: `cached` ranges write-back, everything else
/// up to `top` (at least 4 GiB, so the PCI hole and APICs are reachable)
/// uncached; then switch to it. Returns (table pages, depth, 1 GiB pages).
pub fn build_identity_map(cached: &FreeMemory, top: u64) -> Result<(u64, u32, bool), Failure> {
    let oom = |_| Failure::OutOfMemoryForPageTables;
    let top = top.max(FOUR_GIB).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let mut map = paging::IdentityMap::new().map_err(oom)?;
    let mut at = 0;
    for range in cached.iter() {
        let range = page_round_out(range);
        if range.start >= top {
            break;
        }
        if at < range.start {
            map.map(at, range.start, paging::Caching::Uncached)
                .map_err(oom)?;
        }
        let end = range.end.min(top);
        map.map(range.start.max(at), end, paging::Caching::WriteBack)
            .map_err(oom)?;
        at = at.max(end);
    }
    if at < top {
        map.map(at, top, paging::Caching::Uncached).map_err(oom)?;
    }
    paging::activate_and_keep(map);
    let guard = paging::ACTIVE.lock();
    let map = guard
        .as_ref()
        .map(|m| (m.table_pages, m.depth(), m.uses_gigabyte_pages()));
    Ok(map.unwrap_or((0, 0, false)))
}
