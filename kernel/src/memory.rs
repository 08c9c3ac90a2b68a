//! Which memory minicap may use, and its own page tables.
//!
//! Usable memory is what the loader's e820 map calls RAM (kexec-tools lists
//! the crash region minus the ELF core headers and the backup copy of low
//! memory), above 1 MiB, minus everything still needed: the image, the
//! boot_params page, the command line, the ELF core headers, and the page
//! tables kexec left active (until minicap has switched away from them).

use crate::hw::{heap, paging};
use core::ops::Range;
use minicap_bootinfo::{E820Entry, E820Kind, RangeSet, RangeSetError};

const PAGE: u64 = 4096;
const ONE_MIB: u64 = 1 << 20;
const FOUR_GIB: u64 = 4 << 30;
/// Smallest heap minicap starts with: headers, queues and page tables fit
/// comfortably in this.
pub const MIN_HEAP: u64 = 1 << 20;

/// Why no memory plan could be made.
#[derive(Debug)]
pub enum MemoryError {
    /// Too many fragments to track.
    Fragments(RangeSetError),
    /// The largest free range is too small.
    TooLittle {
        /// Largest free range found.
        largest: u64,
    },
}

impl core::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Fragments(e) => write!(f, "memory map too fragmented: {e}"),
            Self::TooLittle { largest } => write!(
                f,
                "not enough usable crash-kernel memory: largest free range is {} bytes, need {} (raise crashkernel=)",
                largest, MIN_HEAP
            ),
        }
    }
}

impl From<RangeSetError> for MemoryError {
    fn from(e: RangeSetError) -> Self {
        Self::Fragments(e)
    }
}

fn page_round(range: Range<u64>) -> Range<u64> {
    (range.start & !(PAGE - 1))..range.end.div_ceil(PAGE) * PAGE
}

/// Usable RAM from the loader's e820 map: RAM entries, page-aligned
/// inwards, above 1 MiB (low memory may still hold firmware data).
pub fn usable_ram(e820: impl Iterator<Item = E820Entry>) -> Result<RangeSet<512>, MemoryError> {
    let mut free = RangeSet::<512>::new();
    for entry in e820 {
        if entry.kind != E820Kind::Ram {
            continue;
        }
        let Some(end) = entry.end() else { continue };
        // Page-align inwards: a partial page is not ours to use.
        let start = entry.addr.div_ceil(PAGE) * PAGE;
        let end = end & !(PAGE - 1);
        let start = start.max(ONE_MIB);
        if start < end {
            free.insert(start..end)?;
        }
    }
    Ok(free)
}

/// Take `range` (rounded out to pages) out of `free`.
pub fn exclude(free: &mut RangeSet<512>, range: Range<u64>) -> Result<(), MemoryError> {
    Ok(free.remove(page_round(range))?)
}

/// Take the page tables kexec left active out of `free`: minicap runs on them
/// until its own are built.
pub fn exclude_live_page_tables(free: &mut RangeSet<512>) -> Result<(), MemoryError> {
    let mut result = Ok(());
    paging::for_each_table_page(|page| {
        if result.is_ok() {
            result = free.remove(page..page + PAGE);
        }
    });
    Ok(result?)
}

/// Give the largest free range to the heap; returns it.
pub fn init_heap(free: &RangeSet<512>) -> Result<Range<u64>, MemoryError> {
    let largest = free.iter().max_by_key(|r| r.end - r.start).unwrap_or(0..0);
    if largest.end - largest.start < MIN_HEAP {
        return Err(MemoryError::TooLittle {
            largest: largest.end - largest.start,
        });
    }
    // SAFETY-relevant reasoning lives in `heap::init`'s contract: this range
    // is usable RAM (e820), mapped by the inherited tables (they map the whole
    // crash region), and holds none of the reserved ranges nor any live
    // page-table page.
    heap::init_checked(largest.clone());
    Ok(largest)
}

/// Build minicap's identity map: `cached` ranges write-back, everything else
/// up to `top` (at least 4 GiB, so the PCI hole and APICs are reachable)
/// uncached; then switch to it.
pub fn build_identity_map(
    cached: &RangeSet<512>,
    top: u64,
) -> Result<(u64, u32, bool), paging::OutOfFrames> {
    let top = top.max(FOUR_GIB).div_ceil(PAGE) * PAGE;
    let mut map = paging::IdentityMap::new()?;
    let mut at = 0;
    for range in cached.iter() {
        let range = page_round(range);
        if range.start >= top {
            break;
        }
        if at < range.start {
            map.map(at, range.start, paging::Caching::Uncached)?;
        }
        let end = range.end.min(top);
        map.map(range.start.max(at), end, paging::Caching::WriteBack)?;
        at = at.max(end);
    }
    if at < top {
        map.map(at, top, paging::Caching::Uncached)?;
    }
    paging::activate_and_keep(map);
    let guard = paging::ACTIVE.lock();
    let map = guard
        .as_ref()
        .map(|m| (m.table_pages, m.depth(), m.uses_gigabyte_pages()));
    Ok(map.unwrap_or((0, 0, false)))
}
