//! The plan of a filtered dump: which physical ranges are RAM to dump, the dump level that
//! can really be applied with the page filter for it ([`plan_filter`], for both the
//! kdump-compressed format and the filtered ELF vmcore), and what a kdump-compressed
//! header describes (utsname, time, CPUs, `phys_base`, notes and VMCOREINFO:
//! [`plan_kdump`]).
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
use minicap_pagefilter::{applicable_level, LevelReason, PageFilter, DL_EXCLUDE_ZERO};
use minicap_physmem::PhysMem;
use minicap_vmcoreinfo::{OldMemory, PageTables, VmcoreInfo};

/// Why the dump level applied is lower than the one asked for, or what was ignored.
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
    /// A VMCOREINFO value that made no sense and was not used, the level unchanged (e.g. a
    /// nonsense `PG_hwpoison`); empty otherwise.
    pub ignored: LevelNote,
}

/// Builds the page filter again (for each pass over the frames).
type BuildFilter<'a, M> = Box<dyn Fn() -> Result<PageFilter<'a, M>, LevelReason> + 'a>;

/// The page filter of the applied level.
pub enum PlannedFilter<'a, M: ?Sized> {
    /// No `struct page` can be read: only zero pages (bit 1) are left out.
    None,
    /// The page filter (bits 2 to 16 of the level, and the hardware-poisoned and offline
    /// pages makedumpfile always leaves out).
    Pages {
        /// The filter of the current pass (None if it could not be built again); boxed,
        /// being much larger than the other variant.
        filter: Option<Box<PageFilter<'a, M>>>,
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
            *filter = build().ok().map(Box::new);
        }
    }
}

/// The dump level applicable and its filter, whatever the format.
pub struct FilterPlan<'a, M: ?Sized> {
    /// Old memory through the PT_LOADs, the kernel image rule and the old page tables.
    pub old: OldMemory<'a, M>,
    /// The dump level.
    pub level: LevelChoice,
    /// Its filter.
    pub filter: PlannedFilter<'a, M>,
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

/// The level applicable to `core`, old memory `mem` and the `ram` of [`dump_ram`] when
/// `requested` is asked for, and its filter.
pub fn plan_filter<'a, M: PhysMem + ?Sized>(
    mem: &'a M,
    core: &'a CoreHeaders,
    ram: &'a [Range<u64>],
    requested: u8,
) -> FilterPlan<'a, M> {
    let text = core.vmcoreinfo_text().unwrap_or(&[]);
    let vi = VmcoreInfo::new(text);
    let tables = PageTables::from_vmcoreinfo(&vi);
    let old = OldMemory::new(mem, &core.loads, vi.phys_base());
    let old = match tables {
        Some(tables) => old.with_page_tables(tables),
        None => old,
    };
    let max_pfn = ram.iter().map(|r| r.end.div_ceil(4096)).max().unwrap_or(0);
    let phys_base = vi.phys_base();
    let decision = applicable_level(requested, &vi, ram);
    let mut level = LevelChoice {
        requested,
        applied: decision.level,
        note: decision
            .lowered
            .map_or_else(LevelNote::new, LevelNote::display),
        ignored: decision
            .ignored
            .map_or_else(LevelNote::new, LevelNote::display),
    };
    // Whenever `struct page` can be found, even at level 0 or 1: hardware-poisoned pages
    // are never read (makedumpfile drops them at every level).
    let filter = match (decision.layout, tables) {
        (Some(layout), Some(tables)) => {
            let applied = decision.level;
            let build: BuildFilter<'a, M> = Box::new(move || {
                let old = OldMemory::new(mem, &core.loads, phys_base).with_page_tables(tables);
                PageFilter::new(old, layout, ram, max_pfn, applied)
            });
            match build() {
                Ok(filter) => PlannedFilter::Pages {
                    filter: Some(Box::new(filter)),
                    build,
                },
                Err(reason) => {
                    level.applied = reason.level;
                    level.note = LevelNote::display(reason);
                    PlannedFilter::None
                }
            }
        }
        (Some(_), None) if decision.level & !DL_EXCLUDE_ZERO != 0 => {
            level.applied = decision.level & DL_EXCLUDE_ZERO;
            let _ = fmt::Write::write_fmt(
                &mut level.note,
                format_args!(
                    "VMCOREINFO lacks the kernel page tables (SYMBOL(init_top_pgt)): page filtering off, dump level {}",
                    level.applied
                ),
            );
            PlannedFilter::None
        }
        _ => PlannedFilter::None,
    };
    FilterPlan { old, level, filter }
}

/// The plan of a kdump-compressed dump for `core`, old memory `mem` and the `ram` of
/// [`dump_ram`], at the level `requested`.
pub fn plan_kdump<'a, M: PhysMem + ?Sized>(
    mem: &'a M,
    core: &'a CoreHeaders,
    ram: &'a [Range<u64>],
    requested: u8,
) -> KdumpPlan<'a, M> {
    let FilterPlan { old, level, filter } = plan_filter(mem, core, ram, requested);
    let vi = VmcoreInfo::new(core.vmcoreinfo_text().unwrap_or(&[]));
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

#[cfg(test)]
mod tests;
