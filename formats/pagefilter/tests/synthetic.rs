//! The filter on a fake machine: 4-level page tables mapping `vmemmap` with 4 KiB pages, a
//! SPARSEMEM_EXTREME `mem_section`, and `struct page`s laid out like Linux 6.1's.

// The fake machine is a few hundred KiB: every cast here is lossless.
#![allow(clippy::cast_possible_truncation)]

use std::ops::Range;

use minicap_elfcore::LoadSegment;
use minicap_pagefilter::{FilterError, FilterStats, FreePageFilter, PageLayout};
use minicap_physmem::SliceMem;
use minicap_vmcoreinfo::{OldMemory, PageTables, VmcoreInfo, KERNEL_IMAGE_BASE};

const DIRECT: u64 = 0xffff_8880_0000_0000;
const VMEMMAP: u64 = 0xffff_ea00_0000_0000;
const PGD: u64 = 0x1000;
const ROOTS: u64 = 0x5000;
const POINTER_VAR: u64 = 0x5800;
const SECTIONS: u64 = 0x6000;
const PAGES: u64 = 0x1_0000;
const SIZE_PAGE: u64 = 64;
const HEAD: u64 = 1 << 16;
const PG_SLAB: u64 = 9;
const PG_HWPOISON: u64 = 22;
const BUDDY: u32 = -129i32 as u32;
const OFFLINE: u32 = -257i32 as u32;

struct Machine {
    ram_bytes: Vec<u8>,
    vmcoreinfo: String,
    /// Physical RAM ranges (PT_LOADs).
    ram: Vec<Range<u64>>,
}

impl Machine {
    fn new() -> Self {
        let mut m = Self {
            ram_bytes: vec![0; 0x6_0000],
            vmcoreinfo: format!(
                "OSRELEASE=6.1.0\nSYMBOL(mem_section)={:x}\nLENGTH(mem_section)=1\nSIZE(mem_section)=16\n\
OFFSET(mem_section.section_mem_map)=0\nNUMBER(SECTION_SIZE_BITS)=22\nNUMBER(MAX_PHYSMEM_BITS)=30\n\
SIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page._refcount)=52\nOFFSET(page.mapping)=24\n\
OFFSET(page.lru)=8\nOFFSET(page._mapcount)=48\nOFFSET(page.private)=40\nOFFSET(page.compound_order)=17\n\
OFFSET(page.compound_head)=8\nLENGTH(zone.free_area)=11\nNUMBER(PG_slab)=9\nNUMBER(PG_head_mask)=65536\n\
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\nNUMBER(PG_hwpoison)=22\n\
NUMBER(phys_base)=0\nSYMBOL(init_top_pgt)={:x}\nNUMBER(pgtable_l5_enabled)=0\nNUMBER(sme_mask)=0\n",
                DIRECT + ROOTS,
                KERNEL_IMAGE_BASE + PGD
            ),
            // 16 MiB of RAM minus a hole at [12 MiB, 13 MiB).
            ram: vec![0..0xc0_0000, 0xd0_0000..0x100_0000],
        };
        // vmemmap[0 .. 4096 pages] -> PAGES, 4 KiB at a time; the last 4 table pages (struct
        // pages of pfns 3840..4096) are not mapped.
        m.set(PGD + ((VMEMMAP >> 39) & 511) * 8, 0x2000 | 1);
        m.set(0x2000 + ((VMEMMAP >> 30) & 511) * 8, 0x3000 | 1);
        m.set(0x3000 + ((VMEMMAP >> 21) & 511) * 8, 0x4000 | 1);
        for i in 0..60 {
            m.set(0x4000 + i * 8, (PAGES + i * 0x1000) | 1);
        }
        // One root; sections 0, 1 and 3 present, 2 not.
        m.set(ROOTS, DIRECT + SECTIONS);
        m.set(POINTER_VAR, DIRECT + ROOTS);
        for nr in [0u64, 1, 3] {
            m.set(SECTIONS + nr * 16, VMEMMAP | 0xf);
        }
        m
    }

    fn set(&mut self, at: u64, v: u64) {
        self.ram_bytes[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Writes `struct page` of `pfn`.
    fn page(&mut self, pfn: u64, flags: u64, compound_head: u64, private: u64, mapcount: u32) {
        let at = PAGES + pfn * SIZE_PAGE;
        self.set(at, flags);
        self.set(at + 8, compound_head);
        self.set(at + 40, private);
        self.ram_bytes[at as usize + 48..at as usize + 52].copy_from_slice(&mapcount.to_le_bytes());
    }

    /// Runs the filter over `cycles` of 1024 frames; returns the excluded ranges.
    fn run(&self, dump_level: i32) -> Result<(Vec<Range<u64>>, FilterStats), FilterError> {
        let loads: Vec<LoadSegment> = self
            .ram
            .iter()
            .map(|r| LoadSegment {
                paddr: r.start,
                vaddr: DIRECT + r.start,
                memsz: r.end - r.start,
                source: r.start,
                flags: 7,
            })
            .collect();
        let mem = SliceMem::new(0, &self.ram_bytes);
        let vi = VmcoreInfo::new(self.vmcoreinfo.as_bytes());
        let old = OldMemory::new(&mem, &loads, vi.phys_base())
            .with_page_tables(PageTables::from_vmcoreinfo(&vi).unwrap());
        let layout = PageLayout::from_vmcoreinfo(&vi)?;
        let mut filter = FreePageFilter::new(old, layout, &self.ram, dump_level, 4096)?;
        let mut out: Vec<Range<u64>> = Vec::new();
        for start in (0..4096).step_by(1024) {
            filter.exclude(start..start + 1024, |r| {
                assert!(
                    start <= r.start && r.end <= start + 1024,
                    "{r:?} outside the cycle"
                );
                out.push(r);
            });
        }
        Ok((out, filter.stats()))
    }
}

/// The struct pages of the scenario described in each line.
fn scenario() -> Machine {
    let mut m = Machine::new();
    m.page(16, 0, 0, 4, BUDDY); // free block of 16
    m.page(64, 1 << PG_SLAB, 0, 0, BUDDY); // slab: not free
    m.page(128, 0, 0, 11, BUDDY); // order >= LENGTH(zone.free_area): kept
    m.page(256, HEAD, 0, 0, OFFLINE); // offline compound head of order 2
    m.ram_bytes[(PAGES + 257 * SIZE_PAGE + 17) as usize] = 2;
    m.page(300, 0, VMEMMAP + 299 * SIZE_PAGE + 1, 3, BUDDY); // a tail page: its head decides
    m.page(512, 1 << PG_HWPOISON, 0, 0, 0); // poisoned
    m.page(1020, 0, 0, 3, BUDDY); // free block running into the next cycle and section
    m.page(1536, 0, 0, 5, BUDDY);
    m.page(2100, 0, 0, 0, BUDDY); // section 2 has no memory map: never seen
    m.page(3072, 0, 0, 10, BUDDY); // not RAM (the hole): not looked at
    m.page(3400, 0, 0, 0, BUDDY);
    m
}

#[test]
fn free_offline_and_poisoned_pages_are_excluded() {
    let (ranges, stats) = scenario().run(16).unwrap();
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
        }
    );
}

#[test]
fn without_level_16_only_offline_and_poisoned_pages_go() {
    let (ranges, stats) = scenario().run(1).unwrap();
    assert_eq!(ranges, vec![256..260, 512..513]);
    assert_eq!(stats.free_pages, 0);
}

#[test]
fn mem_section_as_a_pointer_is_found() {
    let mut m = scenario();
    m.vmcoreinfo = m.vmcoreinfo.replace(
        &format!("SYMBOL(mem_section)={:x}", DIRECT + ROOTS),
        &format!("SYMBOL(mem_section)={:x}", DIRECT + POINTER_VAR),
    );
    let (ranges, _) = m.run(16).unwrap();
    assert_eq!(ranges.len(), 7);
}

#[test]
fn bad_vmcoreinfo_and_memory_are_errors() {
    let base = scenario();
    let mut m = scenario();
    m.vmcoreinfo = base
        .vmcoreinfo
        .replace("LENGTH(mem_section)=1", "LENGTH(mem_section)=4");
    assert_eq!(m.run(16).unwrap_err(), FilterError::NotSparsememExtreme);
    m.vmcoreinfo = base
        .vmcoreinfo
        .replace("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n", "");
    assert_eq!(
        m.run(16).unwrap_err(),
        FilterError::MissingKey("PAGE_BUDDY_MAPCOUNT_VALUE")
    );
    m.vmcoreinfo = base
        .vmcoreinfo
        .replace("OFFSET(page._mapcount)=48", "OFFSET(page._mapcount)=62");
    assert_eq!(
        m.run(16).unwrap_err(),
        FilterError::BadLayout("page._mapcount")
    );
    // No present section at all.
    let mut m = scenario();
    for nr in 0..4 {
        m.set(SECTIONS + nr * 16, 0);
    }
    assert_eq!(m.run(16).unwrap_err(), FilterError::NoMemMap);
    // A section decoding to a user address invalidates both readings.
    let mut m = scenario();
    m.set(SECTIONS + 16, 0x1000 | 1);
    assert_eq!(m.run(16).unwrap_err(), FilterError::NoMemMap);
}

/// Garbage struct pages never panic, never report frames outside the cycle (checked in
/// `run`), and never exclude more frames than there are.
#[test]
fn random_struct_pages_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut m = scenario();
        for _ in 0..200 {
            let pfn = rand() % 4096;
            let mapcount = if rand() % 2 == 0 {
                BUDDY
            } else {
                rand() as u32
            };
            m.page(
                pfn,
                rand() & (HEAD | 1 << PG_HWPOISON | 1 << PG_SLAB),
                rand() % 4,
                rand() % 16,
                mapcount,
            );
        }
        let (ranges, stats) = m.run(16).unwrap();
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        assert_eq!(
            total,
            stats.free_pages + stats.offline_pages + stats.hwpoison_pages
        );
        assert!(total <= 4096);
    }
}
