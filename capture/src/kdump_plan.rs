//! The plan of a kdump-compressed dump: what its header describes (utsname, time, CPUs,
//! `phys_base`, notes and VMCOREINFO), which physical ranges are RAM to dump, and the dump
//! level that can really be applied, with the page filter for it.
//!
//! The dump level asked for (`minicap.dump_level=`) may need more than the crashed kernel's
//! VMCOREINFO gives: bit 1 (zero pages) needs nothing, the others need the `struct page`
//! array found through `mem_section` and the old page tables. When those are missing or
//! make no sense, the level drops to what is still safe (bit 1 alone at worst), the reason
//! goes to the console and the header, and the dump is written anyway.

use crate::memory::SkippedRanges;
use crate::text::FixedString;
use crate::writer::FrameFilter;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;
use minicap_elfcore::CoreHeaders;
use minicap_kdumpfile::{DumpInfo, Utsname, UTS_LEN};
use minicap_pagefilter::{FilterError, FreePageFilter, PageLayout};
use minicap_physmem::PhysMem;
use minicap_vmcoreinfo::{OldMemory, PageTables, VmcoreInfo};

/// makedumpfile's `-d` bit for zero pages: the writer's own business, always possible.
pub const DL_ZERO: u8 = 1;
/// The bits that need the crashed kernel's `struct page`s.
pub const DL_NEEDS_PAGES: u8 = 2 | 4 | 8 | 16;
/// The bits this version can apply from `struct page`s.
pub const DL_SUPPORTED: u8 = 16;

/// Why the dump level applied is lower than the one asked for.
pub type LevelNote = FixedString<160>;

/// The level to apply and why it is lower than asked, if it is.
#[derive(Debug, Clone, Copy)]
pub struct LevelChoice {
    /// `minicap.dump_level=` (or the format's default).
    pub requested: u8,
    /// What the filter really does.
    pub applied: u8,
    /// Why `applied < requested`; empty otherwise.
    pub note: LevelNote,
}

/// Builds the page filter again (for each pass over the frames).
type BuildFilter<'a, M> = Box<dyn Fn() -> Result<FreePageFilter<'a, M>, FilterError> + 'a>;

/// The page filter of the applied level.
pub enum PlannedFilter<'a, M: ?Sized> {
    /// Only zero pages (or nothing) are left out.
    None,
    /// Free pages (bit 16), plus the hardware-poisoned and offline pages makedumpfile
    /// always drops.
    Pages {
        /// The filter of the current pass (None if it could not be built again).
        filter: Option<FreePageFilter<'a, M>>,
        /// How to build it.
        build: BuildFilter<'a, M>,
    },
}

impl<M: PhysMem + ?Sized> FrameFilter for PlannedFilter<'_, M> {
    fn exclude(&mut self, pfns: Range<u64>, exclude: &mut dyn FnMut(Range<u64>)) {
        if let Self::Pages {
            filter: Some(filter),
            ..
        } = self
        {
            filter.exclude(pfns, exclude);
        }
    }

    fn restart(&mut self) {
        if let Self::Pages { filter, build } = self {
            *filter = build().ok();
        }
    }
}

/// Everything the kdump writer needs besides the device.
pub struct KdumpPlan<'a, M: ?Sized> {
    /// What the file's headers say.
    pub info: DumpInfo<'a>,
    /// Old memory through the PT_LOADs, the kernel image rule and the old page tables.
    pub old: OldMemory<'a, M>,
    /// The dump level.
    pub level: LevelChoice,
    /// Its filter.
    pub filter: PlannedFilter<'a, M>,
}

/// The PT_LOADs' physical ranges without the `skipped` ones (not RAM: not dumped), merged
/// and sorted.
pub fn dump_ram(core: &CoreHeaders, skipped: &SkippedRanges) -> Vec<Range<u64>> {
    let mut ram: Vec<Range<u64>> = Vec::new();
    for load in &core.loads {
        let mut pieces = alloc::vec![load.paddr..load.paddr.saturating_add(load.memsz)];
        for s in skipped.iter() {
            // Skipped ranges are where the bytes are read (`source`), PT_LOADs say `paddr`.
            let lo = s.start.max(load.source);
            let hi = s.end.min(load.source.saturating_add(load.memsz));
            if lo >= hi {
                continue;
            }
            let cut = lo - load.source + load.paddr..hi - load.source + load.paddr;
            pieces = pieces
                .into_iter()
                .flat_map(|p| {
                    [p.start..p.end.min(cut.start), p.start.max(cut.end)..p.end]
                        .into_iter()
                        .filter(|r| r.start < r.end)
                })
                .collect();
        }
        ram.extend(pieces);
    }
    ram.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ram.len());
    for r in ram {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// The plan for `core`, old memory `mem` and the `ram` of [`dump_ram`], at the level
/// `requested`.
pub fn plan_kdump<'a, M: PhysMem + ?Sized>(
    mem: &'a M,
    core: &'a CoreHeaders,
    ram: &'a [Range<u64>],
    requested: u8,
) -> KdumpPlan<'a, M> {
    let text = core.vmcoreinfo_text().unwrap_or(&[]);
    let vi = VmcoreInfo::new(text);
    let tables = PageTables::from_vmcoreinfo(&vi);
    // One view for the filter, one for the pages and the header (it is not `Copy`).
    let old_memory = || {
        let old = OldMemory::new(mem, &core.loads, vi.phys_base());
        match tables {
            Some(tables) => old.with_page_tables(tables),
            None => old,
        }
    };
    let old = old_memory();
    let max_pfn = ram.iter().map(|r| r.end.div_ceil(4096)).max().unwrap_or(0);
    let phys_base = vi.phys_base();
    let layout = PageLayout::from_vmcoreinfo(&vi);
    let build: BuildFilter<'a, M> = Box::new(move || {
        let tables = tables.ok_or(FilterError::MissingKey("SYMBOL(init_top_pgt)"))?;
        let old = OldMemory::new(mem, &core.loads, phys_base).with_page_tables(tables);
        FreePageFilter::new(old, layout?, ram, 16, max_pfn)
    });
    let (level, filter) = choose_filter(build, requested);
    let info = DumpInfo {
        utsname: utsname(&old, &vi),
        time: (crash_time(core), 0),
        nr_cpus: i32::try_from(core.cpus.len()).unwrap_or(i32::MAX),
        phys_base: vi.phys_base().unwrap_or(0),
        dump_level: i32::from(level.applied),
        notes: &core.notes,
        vmcoreinfo: core.vmcoreinfo.clone(),
        ram,
    };
    KdumpPlan {
        info,
        old,
        level,
        filter,
    }
}

/// The filter for `requested`, or the reason it cannot be built.
fn choose_filter<'a, M: PhysMem + ?Sized>(
    build: BuildFilter<'a, M>,
    requested: u8,
) -> (LevelChoice, PlannedFilter<'a, M>) {
    let mut note = LevelNote::new();
    let mut applied = requested & (DL_ZERO | DL_SUPPORTED);
    if requested & DL_NEEDS_PAGES & !DL_SUPPORTED != 0 {
        let _ = fmt::Write::write_fmt(
            &mut note,
            format_args!(
                "bits {:#x} (page cache, private cache, user pages) are not implemented yet",
                requested & DL_NEEDS_PAGES & !DL_SUPPORTED
            ),
        );
    }
    let mut filter = PlannedFilter::None;
    if applied & DL_NEEDS_PAGES != 0 {
        match build() {
            Ok(f) => {
                filter = PlannedFilter::Pages {
                    filter: Some(f),
                    build,
                }
            }
            Err(reason) => {
                applied &= !DL_NEEDS_PAGES;
                if !note.as_str().is_empty() {
                    let _ = fmt::Write::write_str(&mut note, "; ");
                }
                let _ =
                    fmt::Write::write_fmt(&mut note, format_args!("no page filtering: {reason}"));
            }
        }
    }
    (
        LevelChoice {
            requested,
            applied,
            note,
        },
        filter,
    )
}

/// The crashed kernel's `struct new_utsname`, or one with only the release from
/// VMCOREINFO if it cannot be read.
fn utsname<M: PhysMem + ?Sized>(old: &OldMemory<'_, M>, vi: &VmcoreInfo<'_>) -> Utsname {
    let mut raw = [0u8; 6 * UTS_LEN];
    match vi.utsname_address().map(|a| old.read(a, &mut raw)) {
        Some(Ok(())) => Utsname::from_bytes(&raw),
        _ => Utsname::new(["Linux", "", vi.osrelease().unwrap_or(""), "", "x86_64", ""]),
    }
}

fn crash_time(core: &CoreHeaders) -> i64 {
    core.vmcoreinfo_value("CRASHTIME")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}
