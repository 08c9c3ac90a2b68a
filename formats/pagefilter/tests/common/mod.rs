//! The fake machine of the tests: 4-level page tables mapping `vmemmap` with 4 KiB pages,
//! a SPARSEMEM_EXTREME `mem_section`, and `struct page`s laid out like Linux 6.1's, with
//! the VMCOREINFO Linux 6.1 writes.

// The fake machine is a few hundred KiB: every cast here is lossless.
#![allow(clippy::cast_possible_truncation, dead_code)]

use std::ops::Range;

use minicap_elfcore::LoadSegment;
use minicap_pagefilter::{applicable_level, FilterStats, LevelReason, PageFilter};
use minicap_physmem::SliceMem;
use minicap_vmcoreinfo::{OldMemory, PageTables, VmcoreInfo, KERNEL_IMAGE_BASE};

pub const DIRECT: u64 = 0xffff_8880_0000_0000;
pub const VMEMMAP: u64 = 0xffff_ea00_0000_0000;
pub const PGD: u64 = 0x1000;
pub const ROOTS: u64 = 0x5000;
pub const POINTER_VAR: u64 = 0x5800;
pub const SECTIONS: u64 = 0x6000;
pub const PAGES: u64 = 0x1_0000;
pub const SIZE_PAGE: u64 = 64;
// Linux 6.1 x86_64 flag numbers (as its VMCOREINFO says).
pub const PG_LRU: u64 = 1 << 4;
pub const PG_SLAB: u64 = 1 << 9;
pub const PG_SWAPCACHE: u64 = 1 << 10;
pub const PG_PRIVATE: u64 = 1 << 13;
pub const HEAD: u64 = 1 << 16;
pub const PG_SWAPBACKED: u64 = 1 << 19;
pub const PG_HWPOISON: u64 = 1 << 22;
pub const BUDDY: u32 = -129i32 as u32;
pub const OFFLINE: u32 = -257i32 as u32;
pub const NO_MAPCOUNT: u32 = u32::MAX;
/// A `struct address_space` of a file, and an `anon_vma` with `PAGE_MAPPING_ANON`.
pub const FILE_MAPPING: u64 = DIRECT + 0x20_0000;
pub const ANON_MAPPING: u64 = DIRECT + 0x30_0000 + 1;

/// One `struct page`.
#[derive(Clone, Copy)]
pub struct Page {
    pub flags: u64,
    pub compound_head: u64,
    pub mapping: u64,
    pub private: u64,
    pub mapcount: u32,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            flags: 0,
            compound_head: 0,
            mapping: 0,
            private: 0,
            mapcount: NO_MAPCOUNT,
        }
    }
}

pub struct Machine {
    pub ram_bytes: Vec<u8>,
    pub vmcoreinfo: String,
    /// Physical RAM ranges (PT_LOADs).
    pub ram: Vec<Range<u64>>,
}

impl Machine {
    pub fn new() -> Self {
        let mut m = Self {
            ram_bytes: vec![0; 0x6_0000],
            vmcoreinfo: format!(
                "OSRELEASE=6.1.0\nSYMBOL(mem_section)={:x}\nLENGTH(mem_section)=1\nSIZE(mem_section)=16\n\
OFFSET(mem_section.section_mem_map)=0\nNUMBER(SECTION_SIZE_BITS)=22\nNUMBER(MAX_PHYSMEM_BITS)=30\n\
SIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page._refcount)=52\nOFFSET(page.mapping)=24\n\
OFFSET(page.lru)=8\nOFFSET(page._mapcount)=48\nOFFSET(page.private)=40\nOFFSET(page.compound_dtor)=16\n\
OFFSET(page.compound_order)=17\nOFFSET(page.compound_head)=8\nLENGTH(zone.free_area)=11\n\
NUMBER(PG_lru)=4\nNUMBER(PG_private)=13\nNUMBER(PG_swapcache)=10\nNUMBER(PG_swapbacked)=19\n\
NUMBER(PG_slab)=9\nNUMBER(PG_head_mask)=65536\nNUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n\
NUMBER(HUGETLB_PAGE_DTOR)=2\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\nNUMBER(PG_hwpoison)=22\n\
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
        // Every struct page an ordinary unmapped page.
        for pfn in 0..3840 {
            m.page(pfn, Page::default());
        }
        m
    }

    pub fn set(&mut self, at: u64, v: u64) {
        self.ram_bytes[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Writes `struct page` of `pfn`.
    pub fn page(&mut self, pfn: u64, p: Page) {
        let at = PAGES + pfn * SIZE_PAGE;
        self.set(at, p.flags);
        self.set(at + 8, p.compound_head);
        self.set(at + 24, p.mapping);
        self.set(at + 40, p.private);
        self.ram_bytes[at as usize + 48..at as usize + 52]
            .copy_from_slice(&p.mapcount.to_le_bytes());
    }

    /// A compound page of `1 << order` frames at `head`: `p` for the head, tails pointing
    /// to it, the order (and hugetlb destructor if `hugetlb`) in the first tail.
    pub fn compound(&mut self, head: u64, order: u8, p: Page, hugetlb: bool) {
        self.page(
            head,
            Page {
                flags: p.flags | HEAD,
                ..p
            },
        );
        for tail in head + 1..head + (1 << order) {
            self.page(
                tail,
                Page {
                    compound_head: VMEMMAP + head * SIZE_PAGE + 1,
                    ..Page::default()
                },
            );
        }
        let first_tail = (PAGES + (head + 1) * SIZE_PAGE) as usize;
        self.ram_bytes[first_tail + 17] = order;
        self.ram_bytes[first_tail + 16] = if hugetlb { 2 } else { 1 };
    }

    pub fn edit(&mut self, from: &str, to: &str) {
        assert!(self.vmcoreinfo.contains(from), "{from}");
        self.vmcoreinfo = self.vmcoreinfo.replace(from, to);
    }

    pub fn loads(&self) -> Vec<LoadSegment> {
        self.ram
            .iter()
            .map(|r| LoadSegment {
                paddr: r.start,
                vaddr: DIRECT + r.start,
                memsz: r.end - r.start,
                source: r.start,
                flags: 7,
            })
            .collect()
    }

    /// Runs the filter at `dump_level` (bits the layout lacks dropped, as the kernel does)
    /// over cycles of 1024 frames; returns the excluded ranges.
    pub fn run(&self, dump_level: u8) -> Result<(Vec<Range<u64>>, FilterStats), LevelReason> {
        let loads = self.loads();
        let mem = SliceMem::new(0, &self.ram_bytes);
        let vi = VmcoreInfo::new(self.vmcoreinfo.as_bytes());
        let old = OldMemory::new(&mem, &loads, vi.phys_base())
            .with_page_tables(PageTables::from_vmcoreinfo(&vi).unwrap());
        let decision = applicable_level(dump_level, &vi, &self.ram);
        let layout = decision.layout.expect("a layout");
        let mut filter = PageFilter::new(old, layout, &self.ram, 4096, decision.level)?;
        assert_eq!(filter.level(), decision.level);
        let mut out: Vec<Range<u64>> = Vec::new();
        for start in (0..4096).step_by(1024) {
            filter.exclude(start..start + 1024, |r| {
                assert!(
                    start <= r.start && r.end <= start + 1024 && r.start < r.end,
                    "{r:?} outside the cycle"
                );
                // Cycles may split one exclusion; keep them split, but merge nothing else.
                out.push(r);
            });
        }
        Ok((out, filter.stats()))
    }
}
