//! The filter, bit by bit, on synthetic `struct page`s of the fake machine
//! (`common/mod.rs`).

// The fake machine is a few hundred KiB: every cast here is lossless.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::ops::Range;

use common::*;
use minicap_pagefilter::{applicable_level, FilterStats, PageFilter, Problem};
use minicap_physmem::SliceMem;
use minicap_vmcoreinfo::{OldMemory, PageTables, VmcoreInfo};

/// Free, offline and poisoned pages, described line by line.
fn free_scenario() -> Machine {
    let mut m = Machine::new();
    let buddy = |order| Page {
        private: order,
        mapcount: BUDDY,
        ..Page::default()
    };
    m.page(16, buddy(4)); // free block of 16
    m.page(
        64,
        Page {
            flags: PG_SLAB,
            ..buddy(0)
        },
    ); // slab: not free
    m.page(128, buddy(11)); // order >= LENGTH(zone.free_area): kept
    m.compound(
        256,
        2,
        Page {
            mapcount: OFFLINE,
            ..Page::default()
        },
        false,
    ); // offline compound page of order 2
    m.page(
        300,
        Page {
            compound_head: VMEMMAP + 299 * SIZE_PAGE + 1,
            ..buddy(3)
        },
    ); // a tail page: its head decides
    m.page(
        512,
        Page {
            flags: PG_HWPOISON,
            ..Page::default()
        },
    ); // poisoned
    m.page(1020, buddy(3)); // free block running into the next cycle and section
    m.page(1536, buddy(5));
    m.page(2100, buddy(0)); // section 2 has no memory map: never seen
    m.page(3072, buddy(10)); // not RAM (the hole): not looked at
    m.page(3400, buddy(0));
    m
}

#[test]
fn free_offline_and_poisoned_pages_are_excluded() {
    let (ranges, stats) = free_scenario().run(16).unwrap();
    assert_eq!(
        ranges,
        vec![
            16..32,
            256..260,
            512..513,
            1020..1024,
            1024..1028,
            1536..1568,
            3400..3401
        ]
    );
    assert_eq!(
        stats,
        FilterStats {
            free_pages: 16 + 4 + 4 + 32 + 1,
            hwpoison_pages: 1,
            offline_pages: 4,
            // Section 2, and pfns 3840..4096 whose struct pages are not mapped.
            unreadable_pages: 1024 + 256,
            bad_orders: 1,
            ..FilterStats::default()
        }
    );
}

#[test]
fn without_level_16_only_offline_and_poisoned_pages_go() {
    let (ranges, stats) = free_scenario().run(1).unwrap();
    assert_eq!(ranges, vec![256..260, 512..513]);
    assert_eq!(stats.free_pages, 0);
}

#[test]
fn without_filter_bits_or_pg_hwpoison_no_struct_page_is_read() {
    // makedumpfile create_2nd_bitmap(): offline pages go only when the filter runs.
    let mut m = free_scenario();
    m.edit("NUMBER(PG_hwpoison)=22\n", "");
    let (ranges, stats) = m.run(1).unwrap();
    assert!(ranges.is_empty());
    assert_eq!(stats, FilterStats::default());
}

/// Page cache, private cache and user pages, described line by line.
fn cache_and_user_scenario() -> Machine {
    let mut m = Machine::new();
    let file = Page {
        mapping: FILE_MAPPING,
        ..Page::default()
    };
    let anon = Page {
        mapping: ANON_MAPPING,
        mapcount: 0,
        ..Page::default()
    };
    // File page on the LRU: cache.
    m.page(
        600,
        Page {
            flags: PG_LRU,
            ..file
        },
    );
    // With buffer heads (PG_private): private cache.
    m.page(
        601,
        Page {
            flags: PG_LRU | PG_PRIVATE,
            ..file
        },
    );
    // Anonymous page on the LRU: user data, never cache.
    m.page(
        602,
        Page {
            flags: PG_LRU,
            ..anon
        },
    );
    // shmem page in the swap cache (swapbacked, not anonymous): cache.
    m.page(
        603,
        Page {
            flags: PG_SWAPCACHE | PG_SWAPBACKED,
            ..file
        },
    );
    // PG_owner_priv_1 without PG_swapbacked is PG_checked, not swap cache: kept.
    m.page(
        604,
        Page {
            flags: PG_SWAPCACHE,
            ..file
        },
    );
    // A slab page whose slab_cache pointer has bit 0 set: not anonymous, kept.
    m.page(
        605,
        Page {
            flags: PG_SLAB,
            ..anon
        },
    );
    // Anonymous, swapped in, in the swap cache: user data.
    m.page(
        606,
        Page {
            flags: PG_SWAPCACHE | PG_SWAPBACKED | PG_LRU,
            ..anon
        },
    );
    // A file THP of order 3 on the LRU: cache, whole.
    m.compound(
        608,
        3,
        Page {
            flags: PG_LRU,
            ..file
        },
        false,
    );
    // A hugetlbfs page of order 2 (not on the LRU, not anonymous): user data, whole.
    m.compound(640, 2, file, true);
    // An anonymous compound head not aligned to its order (4): one frame.
    m.compound(648, 4, anon, false);
    // Private file THP of order 1.
    m.compound(
        680,
        1,
        Page {
            flags: PG_LRU | PG_PRIVATE,
            ..file
        },
        false,
    );
    // An ordinary kernel page, unmapped page, a page table: kept.
    m.page(
        700,
        Page {
            mapping: 0,
            ..Page::default()
        },
    );
    m
}

fn excluded_frames(ranges: &[Range<u64>]) -> Vec<u64> {
    ranges.iter().flat_map(Clone::clone).collect()
}

#[test]
fn level_2_leaves_out_non_private_cache() {
    let (ranges, stats) = cache_and_user_scenario().run(2).unwrap();
    assert_eq!(ranges, vec![600..601, 603..604, 608..616]);
    assert_eq!(stats.cache_pages, 1 + 1 + 8);
    assert_eq!(stats.excluded(), stats.cache_pages);
}

#[test]
fn level_4_leaves_out_all_cache_counted_apart() {
    let (ranges, stats) = cache_and_user_scenario().run(4).unwrap();
    assert_eq!(
        ranges,
        vec![600..601, 601..602, 603..604, 608..616, 680..682]
    );
    assert_eq!(stats.cache_pages, 1 + 1 + 8);
    assert_eq!(stats.cache_private_pages, 1 + 2);
}

#[test]
fn level_8_leaves_out_anonymous_and_hugetlb_pages() {
    let (ranges, stats) = cache_and_user_scenario().run(8).unwrap();
    assert_eq!(ranges, vec![602..603, 606..607, 640..644, 648..649]);
    assert_eq!(stats.user_pages, 1 + 1 + 4 + 1);
    assert_eq!(stats.excluded(), stats.user_pages);
}

#[test]
fn level_30_is_the_union_and_31_the_same_here() {
    let m = cache_and_user_scenario();
    let (ranges, stats) = m.run(30).unwrap();
    let mut union: Vec<u64> = [2, 4, 8]
        .iter()
        .flat_map(|&l| excluded_frames(&m.run(l).unwrap().0))
        .collect();
    union.sort_unstable();
    union.dedup();
    assert_eq!(excluded_frames(&ranges), union);
    assert_eq!(
        (
            stats.cache_pages,
            stats.cache_private_pages,
            stats.user_pages
        ),
        (10, 3, 7)
    );
    assert_eq!(m.run(31).unwrap(), (ranges, stats));
}

#[test]
fn hugetlb_needs_its_destructor() {
    let mut m = cache_and_user_scenario();
    m.edit("NUMBER(HUGETLB_PAGE_DTOR)=2\n", "");
    let (ranges, _) = m.run(8).unwrap();
    assert_eq!(ranges, vec![602..603, 606..607, 648..649]);
}

#[test]
fn without_pg_head_mask_compound_pages_count_as_one_frame() {
    let mut m = cache_and_user_scenario();
    m.edit("NUMBER(PG_head_mask)=65536\n", "");
    let (ranges, _) = m.run(2).unwrap();
    assert_eq!(ranges, vec![600..601, 603..604, 608..609]);
}

#[test]
fn mem_section_as_a_pointer_is_found() {
    let mut m = free_scenario();
    m.edit(
        &format!("SYMBOL(mem_section)={:x}", DIRECT + ROOTS),
        &format!("SYMBOL(mem_section)={:x}", DIRECT + POINTER_VAR),
    );
    let (ranges, _) = m.run(16).unwrap();
    assert_eq!(ranges.len(), 7);
}

#[test]
fn old_memory_without_struct_page_arrays_turns_filtering_off() {
    let fails = |m: &Machine, level| m.run(level).unwrap_err();
    // No present section at all.
    let mut m = free_scenario();
    for nr in 0..4 {
        m.set(SECTIONS + nr * 16, 0);
    }
    let reason = fails(&m, 31);
    assert_eq!(reason.problem, Problem::NoMemMap);
    assert_eq!(reason.level, 1);
    assert_eq!(
        reason.to_string(),
        "SYMBOL(mem_section) leads to no struct page array: page filtering off, dump level 1"
    );
    // A section decoding to a user address invalidates both readings.
    let mut m = free_scenario();
    m.set(SECTIONS + 16, 0x1000 | 1);
    assert_eq!(fails(&m, 16).problem, Problem::NoMemMap);
    assert_eq!(fails(&m, 16).level, 0);
    // mem_section outside RAM.
    let mut m = free_scenario();
    m.edit(
        &format!("SYMBOL(mem_section)={:x}", DIRECT + ROOTS),
        &format!("SYMBOL(mem_section)={:x}", DIRECT + 0x4000_0000),
    );
    assert!(matches!(
        fails(&m, 16).problem,
        Problem::MemSectionUnreadable(_)
    ));
}

#[test]
fn the_filter_drops_level_bits_its_layout_lacks() {
    let mut m = cache_and_user_scenario();
    m.edit("NUMBER(PG_lru)=4\n", "");
    let loads = m.loads();
    let mem = SliceMem::new(0, &m.ram_bytes);
    let vi = VmcoreInfo::new(m.vmcoreinfo.as_bytes());
    let old = OldMemory::new(&mem, &loads, vi.phys_base())
        .with_page_tables(PageTables::from_vmcoreinfo(&vi).unwrap());
    let layout = applicable_level(31, &vi, &m.ram).layout.unwrap();
    let filter = PageFilter::new(old, layout, &m.ram, 4096, 31).unwrap();
    assert_eq!(filter.level(), 25);
}

/// Garbage struct pages never panic, never report frames outside the cycle (checked in
/// `run`), and never exclude more frames than there are.
#[test]
fn random_struct_pages_never_panic() {
    let mut rng = fastrand::Rng::with_seed(7);
    let flag_bits =
        HEAD | PG_HWPOISON | PG_SLAB | PG_LRU | PG_PRIVATE | PG_SWAPCACHE | PG_SWAPBACKED;
    for _ in 0..200 {
        let mut m = cache_and_user_scenario();
        for _ in 0..300 {
            let pfn = rng.u64(0..3840);
            let mapcount = match rng.u8(0..4) {
                0 => BUDDY,
                1 => OFFLINE,
                2 => NO_MAPCOUNT,
                _ => rng.u32(..),
            };
            m.page(
                pfn,
                Page {
                    flags: rng.u64(..) & flag_bits,
                    compound_head: rng.u64(0..4),
                    mapping: rng.u64(0..4),
                    private: rng.u64(0..16),
                    mapcount,
                },
            );
            let byte = (PAGES + pfn * SIZE_PAGE) as usize + rng.usize(0..64);
            m.ram_bytes[byte] = rng.u8(..);
        }
        let (ranges, stats) = m.run(31).unwrap();
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        assert_eq!(total, stats.excluded());
        assert!(total <= 4096);
        let frames = excluded_frames(&ranges);
        assert!(
            frames.windows(2).all(|w| w[0] < w[1]),
            "overlap or disorder"
        );
    }
}
