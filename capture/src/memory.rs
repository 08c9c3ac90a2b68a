//! Memory planning, before there is a heap:
//!
//! * which memory minicap may use: what the loader's e820 map calls RAM
//!   (kexec-tools lists the crash region minus the ELF core headers and the
//!   backup copy of low memory), above 1 MiB, minus everything the dump reads
//!   or describes and everything still in use (image, boot_params, command
//!   line, ELF core headers, the page tables kexec left active);
//! * which PT_LOAD ranges the dump may read ([`outside_ram`]);
//! * what minicap's own identity map maps write-back ([`write_back_ranges`]).

use crate::Failure;
use core::ops::Range;
use minicap_bootinfo::{E820Entry, E820Kind, RangeSet, RangeSetError};
use minicap_elfcore::LoadSegment;
use minicap_physmem::{page_ceil, page_floor};

/// The free-memory set: room for a fragmented map.
pub type FreeMemory = RangeSet<512>;
/// Most disjoint PT_LOAD ranges outside RAM tracked (each is a corrupt header).
pub const SKIP_CAPACITY: usize = 64;
/// PT_LOAD ranges (page-rounded, by where they are read) that the dump
/// must not read: zeros go to the device instead.
pub type SkippedRanges = RangeSet<SKIP_CAPACITY>;

const ONE_MIB: u64 = 1 << 20;
/// Smallest heap minicap starts with: headers, queues and page tables fit
/// comfortably in this.
pub const MIN_HEAP: u64 = 1 << 20;

/// The x86 architectural MMIO window below 4 GiB: IO-APICs (0xfec00000),
/// HPET (0xfed00000), VT-d units, the local APIC (0xfee00000), the firmware
/// flash. Never RAM on x86, and not always listed in e820 (QEMU's and many
/// firmwares' maps leave the IO-APIC and local APIC out).
pub const FIXED_MMIO: Range<u64> = 0xfec0_0000..0x1_0000_0000;

/// e820 kinds that are memory (reading them has no side effect): minicap
/// maps them write-back and may dump them.
pub fn is_memory(kind: E820Kind) -> bool {
    matches!(
        kind,
        E820Kind::Ram | E820Kind::Acpi | E820Kind::Nvs | E820Kind::Pmem | E820Kind::Pram
    )
}

/// A range rounded out to whole pages; the end saturates at the last page
/// boundary instead of wrapping.
pub fn page_round_out(range: Range<u64>) -> Range<u64> {
    page_floor(range.start)..page_ceil(range.end).unwrap_or(page_floor(u64::MAX))
}

fn fragmented(e: RangeSetError) -> Failure {
    Failure::MemoryMapTooFragmented(e)
}

/// Usable RAM from the loader's e820 map: RAM entries, page-aligned
/// inwards, above 1 MiB (low memory may still hold firmware data).
pub fn usable_ram(e820: impl Iterator<Item = E820Entry>) -> Result<FreeMemory, Failure> {
    let mut free = FreeMemory::new();
    for entry in e820 {
        if entry.kind != E820Kind::Ram {
            continue;
        }
        let Some(end) = entry.end() else { continue };
        // Page-align inwards: a partial page is not ours to use.
        let start = page_ceil(entry.addr).unwrap_or(u64::MAX).max(ONE_MIB);
        let end = page_floor(end);
        if start < end {
            free.insert(start..end).map_err(fragmented)?;
        }
    }
    Ok(free)
}

/// Take `range` (rounded out to pages) out of `free`.
pub fn exclude(free: &mut FreeMemory, range: Range<u64>) -> Result<(), Failure> {
    free.remove(page_round_out(range)).map_err(fragmented)
}

/// The largest free range, for the heap.
pub fn choose_heap(free: &FreeMemory) -> Result<Range<u64>, Failure> {
    let largest = free.iter().max_by_key(|r| r.end - r.start).unwrap_or(0..0);
    if largest.end - largest.start < MIN_HEAP {
        return Err(Failure::CrashMemoryTooSmall {
            largest: largest.end - largest.start,
            needed: MIN_HEAP,
        });
    }
    Ok(largest)
}

/// The memory `elfcorehdr=ADDR` or `SIZE@ADDR` occupies, given the header
/// size read from it: an absurd SIZE (near 2^64) is reported as what it is
/// instead of wrapping in later page arithmetic.
pub fn elfcorehdr_range(
    addr: u64,
    size: Option<u64>,
    header_size: u64,
) -> Result<Range<u64>, Failure> {
    let len = size.unwrap_or(0).max(header_size);
    addr.checked_add(len)
        .filter(|&end| page_ceil(end).is_some())
        .map(|end| addr..end)
        .ok_or(Failure::ElfcorehdrOutOfRange { addr, size: len })
}

/// Reject a PT_LOAD range (where it was or where it is read) that covers
/// minicap's own image: its code, stacks and console log ring would be read
/// while minicap changes them. (The heap is kept out of PT_LOADs the other
/// way round: it is carved from memory no PT_LOAD touches.)
pub fn check_not_minicap(
    core_addr: u64,
    load: Range<u64>,
    image: Range<u64>,
) -> Result<(), Failure> {
    if load.start < image.end && image.start < load.end {
        return Err(Failure::LoadOverlapsMinicap {
            addr: core_addr,
            load: (load.start, load.end),
            image: (image.start, image.end),
        });
    }
    Ok(())
}

/// End of the lower canonical half: the highest physical address an
/// identity map can reach with `levels` paging levels (128 TiB with 4,
/// 64 PiB with 5).
pub fn address_limit(levels: u32) -> u64 {
    1 << (12 + 9 * levels - 1)
}

/// Every range the dump reads or describes must be reachable by minicap's
/// identity map.
pub fn check_mappable(loads: &[LoadSegment], limit: u64) -> Result<(), Failure> {
    for l in loads {
        for start in [l.paddr, l.source] {
            let end = start.saturating_add(l.memsz);
            if end > limit {
                return Err(Failure::MemoryNotMappable {
                    range: (start, end),
                    limit,
                });
            }
        }
    }
    Ok(())
}

/// The PT_LOAD ranges (by where they are read, `source`) that the dump must
/// not read, page-rounded.
///
/// The rule, from the map kexec-tools hands a crash kernel: old RAM is not
/// listed at all (only the crash region and the 640 KiB low-memory backup
/// are RAM), while firmware-reserved ranges, ACPI tables and NVS, and MMIO
/// windows the firmware reports (e.g. MMCONFIG) are listed with their types.
/// So a PT_LOAD byte is read unless the map lists it as something other
/// than memory ([`is_memory`]: RAM, ACPI, NVS, persistent memory), or it
/// lies in the architectural MMIO window [`FIXED_MMIO`] (which maps often
/// leave out) without the map calling it memory. Real RAM is never in
/// either, so it is never skipped; a corrupted header pointing a PT_LOAD at
/// an IO-APIC or other device registers is. (PCI BARs that the map does not
/// list cannot be told from unlisted old RAM by this rule.)
pub fn outside_ram(
    core_addr: u64,
    e820: impl Iterator<Item = E820Entry> + Clone,
    loads: &[LoadSegment],
) -> Result<SkippedRanges, Failure> {
    let mut forbidden = FreeMemory::new();
    forbidden.insert(FIXED_MMIO).map_err(fragmented)?;
    for entry in e820.clone().filter(|e| !is_memory(e.kind)) {
        let end = entry.end().unwrap_or(u64::MAX);
        forbidden.insert(entry.addr..end).map_err(fragmented)?;
    }
    for entry in e820.filter(|e| is_memory(e.kind)) {
        let end = entry.end().unwrap_or(u64::MAX);
        forbidden.remove(entry.addr..end).map_err(fragmented)?;
    }
    let mut skipped = SkippedRanges::new();
    skip_overlaps(core_addr, &mut skipped, loads, forbidden.iter())?;
    Ok(skipped)
}

/// Add to `skipped` the parts of PT_LOADs that cover device registers the
/// ACPI tables name (IO-APICs, IOMMU units): known only after minicap's own
/// page tables are up, and outside [`FIXED_MMIO`] on some machines (an AMD
/// IOMMU's registers sit in PCI space). Nothing has been read yet then.
pub fn skip_device_registers(
    core_addr: u64,
    skipped: &mut SkippedRanges,
    loads: &[LoadSegment],
    registers: impl Iterator<Item = Range<u64>>,
) -> Result<(), Failure> {
    skip_overlaps(core_addr, skipped, loads, registers)
}

/// Insert into `skipped` every page where a PT_LOAD's source range meets one
/// of `bad`.
fn skip_overlaps(
    core_addr: u64,
    skipped: &mut SkippedRanges,
    loads: &[LoadSegment],
    bad: impl Iterator<Item = Range<u64>>,
) -> Result<(), Failure> {
    for bad in bad {
        for l in loads {
            let start = bad.start.max(l.source);
            let end = bad.end.min(l.source.saturating_add(l.memsz));
            if start < end {
                skipped
                    .insert(page_round_out(start..end))
                    .map_err(|error| Failure::TooManySkippedRanges {
                        addr: core_addr,
                        error,
                    })?;
            }
        }
    }
    Ok(())
}

/// What minicap's identity map maps write-back: memory-kind e820 ranges
/// (up to `limit`), every PT_LOAD range except the skipped ones, and the
/// `reserved` ranges (image, hand-over data, heap); returns them and the
/// highest end. Everything else is mapped uncached (MMIO).
pub fn write_back_ranges(
    e820: impl Iterator<Item = E820Entry>,
    loads: &[LoadSegment],
    skipped: &SkippedRanges,
    reserved: impl IntoIterator<Item = Range<u64>>,
    limit: u64,
) -> Result<(FreeMemory, u64), Failure> {
    let mut cached = FreeMemory::new();
    for l in loads {
        for start in [l.paddr, l.source] {
            cached
                .insert(page_round_out(start..start.saturating_add(l.memsz)))
                .map_err(fragmented)?;
        }
    }
    for r in skipped.iter() {
        cached.remove(r).map_err(fragmented)?;
    }
    for entry in e820.filter(|e| is_memory(e.kind)) {
        let end = entry.end().unwrap_or(u64::MAX).min(limit);
        if entry.addr < end {
            cached
                .insert(page_round_out(entry.addr..end))
                .map_err(fragmented)?;
        }
    }
    for r in reserved {
        cached
            .insert(page_round_out(r.clone()))
            .map_err(fragmented)?;
    }
    let top = cached.iter().map(|r| r.end).max().unwrap_or(0);
    Ok((cached, top))
}

/// Bytes in `skipped`, and how many disjoint ranges.
pub fn skipped_totals(skipped: &SkippedRanges) -> (u32, u64) {
    (
        u32::try_from(skipped.len()).unwrap_or(u32::MAX),
        skipped.total(),
    )
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod kexec_file_tests;
