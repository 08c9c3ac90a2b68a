//! Writing the kdump-compressed format (`minicap.format=kdump`) to the device.
//!
//! The file itself comes from [`minicap_kdumpfile::write_kdump`], which works in cycles of
//! page frames (makedumpfile's cyclic mode) and hands out whole 4 KiB blocks, not in file
//! order: the page data is appended, the descriptors go to their slots behind it, each
//! cycle's bitmap slices go back to the bitmaps, and block 0 is rewritten at the end
//! without its "incomplete" flag. This module hands those blocks to the device sink
//! (staging into large device writes, checkpoints, read-back for the checksums, a full
//! device: shared with the filtered ELF vmcore), and is the [`PageSource`] that reads old
//! memory and filters it.

use super::device_sink::{DeviceSink, FileProgress, PageCounts};
use super::{Records, Verified, WriterEnv};
use crate::failure::{DeviceName, WriteStep};
use crate::profile::Profile;
use crate::text::FixedString;
use crate::Failure;
use core::cell::Cell;
use core::fmt;
use core::ops::Range;
use minicap_bootinfo::cmdline::Compress;
use minicap_drivers::BlockDevice;
use minicap_dumpheader::{DumpHeader, Verification};
use minicap_kdumpfile::{
    write_kdump, CycleBitmap, DumpInfo, KdumpError, Lzo, NoCompression, PageSource, Sink,
    WriteStats, WriterOptions, Zlib, PAGE_SIZE,
};
use minicap_physmem::PhysMem;
use minicap_vmcoreinfo::OldMemory;

/// Decides, cycle by cycle, which page frames need not be dumped (`dump_level` bits 2 to
/// 16); see the pagefilter crate.
pub trait FrameFilter {
    /// Calls `exclude` with the ranges of `pfns` to leave out, ascending; called with
    /// consecutive cycles from low to high.
    fn exclude(&mut self, pfns: Range<u64>, exclude: &mut dyn FnMut(Range<u64>));

    /// Start a new ascending sequence of cycles, from any frame: a second pass, or the
    /// next PT_LOAD of a filtered ELF vmcore.
    fn restart(&mut self) {}
}

/// Keeps every frame (dump level 0 or 1).
pub struct KeepAll;

impl FrameFilter for KeepAll {
    fn exclude(&mut self, _pfns: Range<u64>, _exclude: &mut dyn FnMut(Range<u64>)) {}
}

/// What to write.
pub struct KdumpDump<'a, M: ?Sized, F> {
    /// What the file describes: utsname, notes, VMCOREINFO, phys_base, RAM, dump level.
    pub info: DumpInfo<'a>,
    /// The old kernel's memory, read through the PT_LOADs' current location.
    pub old: OldMemory<'a, M>,
    /// The filter for the dump level.
    pub filter: F,
    /// `minicap.compress=`.
    pub compress: Compress,
    /// The device's name, for messages.
    pub device_name: &'a DeviceName,
    /// What to record so that the dump can be checked.
    pub verify: Verification,
    /// The cycle size (memory of the bitmaps).
    pub options: WriterOptions,
}

/// What a kdump-compressed capture wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdumpSummary {
    /// The writer's counts (pages dumped, filtered, compressed; file length).
    pub stats: WriteStats,
    /// What was recorded to check the file.
    pub verified: Verified,
}

/// Writes the kdump-compressed file after the triage text and the first header (both
/// already on the device: `records` has written them). `header` is the "writing" header.
pub(super) fn write_kdump_file<D, E, M, F>(
    device: &mut D,
    env: &mut E,
    records: &mut Records<E::Buffer>,
    header: &mut DumpHeader,
    dump: KdumpDump<'_, M, F>,
    profile: &mut Profile,
) -> Result<KdumpSummary, Failure>
where
    D: BlockDevice,
    E: WriterEnv,
    M: PhysMem + ?Sized,
    F: FrameFilter,
{
    let current_pfn = Cell::new(0);
    let progress = kdump_progress(&dump.info, &current_pfn);
    let mut sink = DeviceSink::new(
        device,
        env,
        records,
        header,
        profile,
        dump.device_name,
        progress,
    )?;
    let verify = dump.verify;
    let result = write_kdump_pages(&mut sink, dump, &current_pfn).and_then(|stats| {
        let pages = PageCounts {
            ram: stats.ram_pages,
            dumped: stats.dumped_pages,
        };
        let verified = sink.finish(
            stats.file_len,
            verify,
            pages,
            format_args!(
                "kdump-compressed file of {} bytes written and flushed: {}",
                stats.file_len,
                PageTally(&stats)
            ),
        )?;
        Ok(KdumpSummary { stats, verified })
    });
    result.map_err(|failure| sink.fail(failure))
}

/// The progress of a kdump-compressed file, for the checkpoints and progress lines: the
/// page frame being read (`current_pfn`, set by the [`OldPages`]) out of the highest RAM
/// frame.
pub(super) fn kdump_progress<'a>(
    info: &DumpInfo<'_>,
    current_pfn: &'a Cell<u64>,
) -> FileProgress<'a> {
    let max_pfn = info
        .ram
        .iter()
        .map(|r| r.end.div_ceil(PAGE_SIZE as u64))
        .max()
        .unwrap_or(0);
    FileProgress {
        done: current_pfn,
        total: max_pfn,
        what: "kdump file",
        step: |offset| WriteStep::KdumpFile { offset },
    }
}

/// Old memory, filtered, into `sink` as a kdump-compressed file with the codec
/// `minicap.compress=` chose: what the disk and the serial stream share.
pub(super) fn write_kdump_pages<S, M, F>(
    sink: &mut S,
    dump: KdumpDump<'_, M, F>,
    current_pfn: &Cell<u64>,
) -> Result<WriteStats, Failure>
where
    S: Sink<Error = Failure>,
    M: PhysMem + ?Sized,
    F: FrameFilter,
{
    let mut source = OldPages {
        old: dump.old,
        filter: dump.filter,
        current_pfn,
    };
    let (info, options) = (&dump.info, dump.options);
    let written = match dump.compress {
        Compress::Lzo => write_kdump(sink, &mut source, &mut Lzo::new(), info, options),
        Compress::Zlib => write_kdump(sink, &mut source, &mut Zlib::new(), info, options),
        Compress::None => write_kdump(sink, &mut source, &mut NoCompression, info, options),
    };
    written.map_err(|e| match e {
        KdumpError::Sink(failure) => failure,
        other => Failure::Internal(FixedString::display(format_args!(
            "kdump-compressed format: {other}"
        ))),
    })
}

/// "N RAM pages, N filtered out, ...": what became of the pages, for the closing line.
pub(super) struct PageTally<'a>(pub(super) &'a WriteStats);

impl fmt::Display for PageTally<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "{} RAM pages, {} filtered out, {} unreadable, {} dumped ({} zero, {} compressed, {} stored raw)",
            s.ram_pages,
            s.filtered_pages,
            s.unreadable_pages,
            s.dumped_pages,
            s.zero_pages,
            s.compressed_pages,
            s.raw_pages
        )
    }
}

/// Old memory, page by page, and the filter of the dump level (the disk and the serial
/// stream read pages the same way).
pub(super) struct OldPages<'a, M: ?Sized, F> {
    pub(super) old: OldMemory<'a, M>,
    pub(super) filter: F,
    /// The frame being read, for the progress the sink reports.
    pub(super) current_pfn: &'a Cell<u64>,
}

impl<M: PhysMem + ?Sized, F: FrameFilter> PageSource for OldPages<'_, M, F> {
    type Error = ();

    fn read_page(&mut self, pfn: u64, page: &mut [u8; PAGE_SIZE]) -> Result<(), ()> {
        self.current_pfn.set(pfn);
        let addr = pfn.checked_mul(PAGE_SIZE as u64).ok_or(())?;
        self.old.read_phys(addr, page).map_err(|_| ())
    }

    fn filter(&mut self, dumpable: &mut CycleBitmap<'_>) {
        let pfns = dumpable.pfns();
        self.current_pfn.set(pfns.start);
        self.filter
            .exclude(pfns, &mut |range| dumpable.clear_range(range));
    }

    fn restart(&mut self) {
        self.current_pfn.set(0);
        self.filter.restart();
    }
}

#[cfg(test)]
mod tests;
