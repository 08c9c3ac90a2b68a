//! Refusing PT_LOADs that describe the same physical memory twice.
//!
//! Both builders of crash-kernel core headers (kexec-tools `crash_create_elf64_headers()`,
//! the kernel's `crash_prepare_elf64_headers()`) emit one PT_LOAD per RAM range, disjoint,
//! plus one PT_LOAD for the kernel text mapping that overlaps the RAM PT_LOAD holding the
//! kernel image by design (same bytes, a second virtual address). So overlap is allowed
//! between the two kinds and nowhere else: two RAM PT_LOADs (or two kernel-text ones) over
//! the same physical page mean the table was damaged, and which of them is right cannot be
//! told. `/proc/vmcore` does not check this (`process_ptload_program_headers_elf64()`); a
//! capture that must stand behind its dump does.
//!
//! A PT_LOAD is of the kernel-text kind when its `p_vaddr` lies in x86_64's kernel text
//! mapping, at or above `__START_KERNEL_map`; every other one (the direct map, or a
//! `p_vaddr` of 0 from a builder that does not fill it) counts as RAM.

use alloc::vec::Vec;

use crate::{ElfCoreError, LoadSegment};

/// x86_64 `__START_KERNEL_map`: the kernel text mapping starts here.
pub const KERNEL_TEXT_MAP: u64 = 0xffff_ffff_8000_0000;

/// Checks that no two PT_LOADs of one kind overlap in `[p_paddr, p_paddr + p_memsz)`.
/// `phdrs[i]` is the program header index of `loads[i]`, for the error. Every
/// `paddr + memsz` has been checked not to overflow. O(n log n): the table can hold
/// thousands of PT_LOADs.
pub(crate) fn check_no_overlap(loads: &[LoadSegment], phdrs: &[usize]) -> Result<(), ElfCoreError> {
    let kind = |l: &LoadSegment| l.vaddr >= KERNEL_TEXT_MAP;
    let end = |l: &LoadSegment| l.paddr.saturating_add(l.memsz);
    let mut order: Vec<usize> = (0..loads.len()).collect();
    order.sort_unstable_by_key(|&i| (kind(&loads[i]), loads[i].paddr));
    // The PT_LOAD reaching furthest among those of the current kind seen so far.
    let mut furthest: Option<usize> = None;
    for &i in &order {
        let here = &loads[i];
        if let Some(f) = furthest.filter(|&f| kind(&loads[f]) == kind(here)) {
            let before = &loads[f];
            if here.paddr < end(before) {
                let (a, b) = if phdrs[f] < phdrs[i] { (f, i) } else { (i, f) };
                let range = |l: &LoadSegment| (l.paddr, end(l));
                return Err(ElfCoreError::OverlappingLoads {
                    first: phdrs[a],
                    first_range: range(&loads[a]),
                    second: phdrs[b],
                    second_range: range(&loads[b]),
                });
            }
            if end(here) <= end(before) {
                continue;
            }
        }
        furthest = Some(i);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;

    fn ram(paddr: u64, memsz: u64) -> LoadSegment {
        LoadSegment {
            paddr,
            vaddr: DIRECT_MAP + paddr,
            memsz,
            source: paddr,
            flags: 7,
        }
    }

    fn text(paddr: u64, memsz: u64) -> LoadSegment {
        LoadSegment {
            vaddr: 0xffff_ffff_8100_0000,
            ..ram(paddr, memsz)
        }
    }

    fn check(loads: &[LoadSegment]) -> Result<(), ElfCoreError> {
        let phdrs: Vec<usize> = (0..loads.len()).map(|i| i + 2).collect();
        check_no_overlap(loads, &phdrs)
    }

    #[test]
    fn kexec_layout_is_accepted() {
        // Kernel text inside the big RAM range, adjacent RAM ranges, a p_vaddr of 0.
        let loads = [
            text(0x100_0000, 0x200_0000),
            ram(0x1000, 0x9f000),
            ram(0x10_0000, 0x3000_0000),
            ram(0x3000_0000 + 0x10_0000, 0x1000),
            LoadSegment {
                vaddr: 0,
                ..ram(0x4000_0000, 0x1000)
            },
        ];
        assert_eq!(check(&loads), Ok(()));
        assert_eq!(check(&[]), Ok(()));
    }

    #[test]
    fn overlapping_ram_is_named_by_program_header() {
        let loads = [
            ram(0x10_0000, 0x100_0000),
            ram(0x200_0000, 0x1000),
            ram(0x80_0000, 0x1000),
        ];
        assert_eq!(
            check(&loads),
            Err(ElfCoreError::OverlappingLoads {
                first: 2,
                first_range: (0x10_0000, 0x110_0000),
                second: 4,
                second_range: (0x80_0000, 0x80_1000),
            })
        );
        assert_eq!(
            check(&loads).unwrap_err().to_string(),
            "ELF core headers: PT_LOAD #4 (0x800000-0x801000) overlaps PT_LOAD #2 \
             (0x100000-0x1100000): the same memory described twice"
        );
    }

    #[test]
    fn overlap_behind_a_contained_range_is_found() {
        // B inside A, then C starting inside A but after B's end.
        let loads = [
            ram(0, 0x10_0000),
            ram(0x1000, 0x1000),
            ram(0x8_0000, 0x10_0000),
        ];
        assert!(matches!(
            check(&loads),
            Err(ElfCoreError::OverlappingLoads {
                first: 2,
                second: 3,
                ..
            })
        ));
    }

    #[test]
    fn two_kernel_text_loads_must_not_overlap() {
        let loads = [text(0x100_0000, 0x2000), text(0x100_1000, 0x2000)];
        assert!(check(&loads).is_err());
    }
}
