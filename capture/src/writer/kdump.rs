//! Writing the kdump-compressed format (`minicap.format=kdump`) to the device.
//!
//! The file itself comes from [`minicap_kdumpfile::write_kdump`], which works in cycles of
//! page frames (makedumpfile's cyclic mode) and hands out whole 4 KiB blocks, not in file
//! order: the page data is appended, the descriptors go to their slots behind it, each
//! cycle's bitmap slices go back to the bitmaps, and block 0 is rewritten at the end
//! without its "incomplete" flag. This module is the [`Sink`] that turns those blocks into
//! large device writes, and the [`PageSource`] that reads old memory and filters it.
//!
//! * **Staging**: blocks are gathered in [`STAGES`] DMA buffers of up to [`STAGE_BYTES`],
//!   each holding one contiguous run of the file; a run goes to the device when its buffer
//!   is full or is needed for another run, up to `max_in_flight()` writes outstanding. A
//!   block that overlaps a run still in a buffer or in flight waits for it first, so a
//!   rewritten block (block 0) lands after the first version, never before.
//! * **Checkpoints**: every 10 % of the page frames, every write is completed, then the
//!   log and the header with `written` = the end of the furthest byte written (the file up
//!   to there is on the device, though the current cycle's bitmaps and block 0 are not
//!   final: makedumpfile and crash see an incomplete dump).
//! * **Integrity**: the chunk table or SHA-256 must cover the file in order, which is not
//!   the order it is written in; so after the last flush the file is read back in
//!   [`STAGE_BYTES`] pieces and hashed. This also proves the device returns what it was
//!   given.
//! * **A full device** stops the dump with what was written kept: the triage text and
//!   the last checkpoint are already safe.

use super::{
    hasher_bug, mib_per_s_x10, record_failure, Integrity, Records, Verified, WriterEnv,
    CHECKPOINT_PERCENT,
};
use crate::failure::{DeviceName, WriteStep};
use crate::profile::{Phase, Profile};
use crate::text::FixedString;
use crate::writer::DmaBuffer;
use crate::Failure;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::cell::Cell;
use core::ops::Range;
use minicap_bootinfo::cmdline::Compress;
use minicap_drivers::BlockDevice;
use minicap_dumpheader::{DumpHeader, DumpState, Verification, DUMP_OFFSET};
use minicap_kdumpfile::{
    write_kdump, CycleBitmap, DumpInfo, KdumpError, Lzo, NoCompression, PageSource, Sink,
    WriteStats, WriterOptions, Zlib, PAGE_SIZE,
};
use minicap_physmem::PhysMem;
use minicap_vmcoreinfo::OldMemory;

/// Most bytes of one staged run (and of one read-back piece).
pub const STAGE_BYTES: usize = 256 << 10;
/// Staging buffers: one more than the writes in flight, so that a run can fill while the
/// others are written.
pub const STAGES: usize = 5;

/// Decides, cycle by cycle, which page frames need not be dumped (`dump_level` bits 2 to
/// 16); see the pagefilter crate.
pub trait FrameFilter {
    /// Calls `exclude` with the ranges of `pfns` to leave out, ascending; called with
    /// consecutive cycles from low to high.
    fn exclude(&mut self, pfns: Range<u64>, exclude: &mut dyn FnMut(Range<u64>));

    /// Start again from the lowest frame (a second pass).
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
    let max_pfn = dump
        .info
        .ram
        .iter()
        .map(|r| r.end.div_ceil(PAGE_SIZE as u64))
        .max()
        .unwrap_or(0);
    let depth = device.max_in_flight().clamp(1, STAGES - 1);
    let stage_bytes = usize::try_from(device.max_transfer())
        .unwrap_or(STAGE_BYTES)
        .clamp(PAGE_SIZE, STAGE_BYTES)
        & !(PAGE_SIZE - 1);
    let mut stages = Vec::new();
    stages
        .try_reserve_exact(STAGES)
        .map_err(|_| Failure::OutOfMemory {
            what: "the staging buffers",
        })?;
    for _ in 0..STAGES {
        let buffer = env.dma_buffer(stage_bytes).ok_or(Failure::OutOfMemory {
            what: "the staging buffers",
        })?;
        stages.push(Stage {
            buffer,
            start: 0,
            len: 0,
            state: StageState::Free,
        });
    }
    let current_pfn = Cell::new(0);
    let capacity = device.capacity().saturating_sub(DUMP_OFFSET);
    let started = env.now_us();
    let mut sink = DeviceSink {
        device,
        env,
        records,
        header,
        profile,
        device_name: dump.device_name,
        stages,
        stage_bytes,
        in_flight: VecDeque::new(),
        depth,
        high_water: 0,
        capacity,
        current_pfn: &current_pfn,
        max_pfn,
        next_percent: CHECKPOINT_PERCENT,
        started_us: started,
        first_write_said: false,
    };
    sink.in_flight
        .try_reserve_exact(STAGES)
        .map_err(|_| Failure::OutOfMemory {
            what: "the list of writes in flight",
        })?;
    let mut source = OldPages {
        old: dump.old,
        filter: dump.filter,
        current_pfn: &current_pfn,
    };
    let options = dump.options;
    let written = match dump.compress {
        Compress::Lzo => write_kdump(&mut sink, &mut source, &mut Lzo::new(), &dump.info, options),
        Compress::Zlib => write_kdump(
            &mut sink,
            &mut source,
            &mut Zlib::new(),
            &dump.info,
            options,
        ),
        Compress::None => write_kdump(
            &mut sink,
            &mut source,
            &mut NoCompression,
            &dump.info,
            options,
        ),
    };
    let result = written
        .map_err(|e| match e {
            KdumpError::Sink(failure) => failure,
            other => Failure::Internal(FixedString::display(format_args!(
                "kdump-compressed format: {other}"
            ))),
        })
        .and_then(|stats| sink.finish(stats, dump.verify));
    match result {
        Ok(summary) => Ok(summary),
        Err(failure) => {
            sink.complete_all_ignoring_errors();
            let DeviceSink {
                device,
                env,
                records,
                header,
                profile,
                ..
            } = sink;
            Err(record_failure(
                device, env, records, header, None, profile, failure,
            ))
        }
    }
}

/// Old memory, page by page, and the filter of the dump level.
struct OldPages<'a, M: ?Sized, F> {
    old: OldMemory<'a, M>,
    filter: F,
    /// The frame being read, for the progress the sink reports.
    current_pfn: &'a Cell<u64>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StageState {
    Free,
    Filling,
    InFlight,
}

/// A DMA buffer holding the file's bytes `[start, start + len)`.
struct Stage<B> {
    buffer: B,
    start: u64,
    len: usize,
    state: StageState,
}

impl<B> Stage<B> {
    fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    fn overlaps(&self, range: &Range<u64>) -> bool {
        self.state != StageState::Free && self.start < range.end && range.start < self.end()
    }
}

/// The device as the kdump writer's [`Sink`].
struct DeviceSink<'a, 'r, D, E: WriterEnv> {
    device: &'a mut D,
    env: &'a mut E,
    records: &'r mut Records<E::Buffer>,
    header: &'a mut DumpHeader,
    profile: &'a mut Profile,
    device_name: &'a DeviceName,
    stages: Vec<Stage<E::Buffer>>,
    stage_bytes: usize,
    /// Stages being written, oldest first (the device completes them in this order).
    in_flight: VecDeque<usize>,
    depth: usize,
    /// End of the furthest byte handed to the device.
    high_water: u64,
    /// Bytes of the device after [`DUMP_OFFSET`].
    capacity: u64,
    current_pfn: &'a Cell<u64>,
    max_pfn: u64,
    next_percent: u64,
    started_us: u64,
    first_write_said: bool,
}

impl<D: BlockDevice, E: WriterEnv> Sink for DeviceSink<'_, '_, D, E> {
    type Error = Failure;

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Failure> {
        self.checkpoint_if_due()?;
        let end = offset.saturating_add(bytes.len() as u64);
        if end > self.capacity {
            return Err(Failure::DumpDeviceFull {
                device: *self.device_name,
                capacity: self.capacity,
            });
        }
        let mut at = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            let i = match self.run_ending_at(at) {
                Some(i) => i,
                None => self.start_run(at, rest.len())?,
            };
            let stage_bytes = self.stage_bytes;
            let stage = &mut self.stages[i];
            let n = rest.len().min(stage_bytes - stage.len);
            let from = stage.len;
            stage
                .buffer
                .with_bytes_mut(|b| b[from..from + n].copy_from_slice(&rest[..n]));
            stage.len += n;
            at += n as u64;
            rest = &rest[n..];
            if stage.len == stage_bytes {
                self.submit(i)?;
            }
        }
        self.high_water = self.high_water.max(end);
        Ok(())
    }
}

impl<D: BlockDevice, E: WriterEnv> DeviceSink<'_, '_, D, E> {
    /// The filling stage whose run ends at `offset` and has room.
    fn run_ending_at(&self, offset: u64) -> Option<usize> {
        self.stages.iter().position(|s| {
            s.state == StageState::Filling && s.end() == offset && s.len < self.stage_bytes
        })
    }

    /// A stage for a new run at `offset`, after every run it overlaps is on the device.
    fn start_run(&mut self, offset: u64, len: usize) -> Result<usize, Failure> {
        let range = offset..offset.saturating_add(len as u64);
        while let Some(i) = self.stages.iter().position(|s| s.overlaps(&range)) {
            if self.stages[i].state == StageState::Filling {
                self.submit(i)?;
            }
            while self.stages[i].state == StageState::InFlight {
                self.complete_oldest()?;
            }
        }
        let free = loop {
            if let Some(i) = self.stages.iter().position(|s| s.state == StageState::Free) {
                break i;
            }
            if self.in_flight.is_empty() {
                // Every stage is filling: send the one that started lowest.
                let oldest = (0..self.stages.len())
                    .min_by_key(|&i| self.stages[i].start)
                    .unwrap_or(0);
                self.submit(oldest)?;
            }
            self.complete_oldest()?;
        };
        let stage = &mut self.stages[free];
        stage.start = offset;
        stage.len = 0;
        stage.state = StageState::Filling;
        Ok(free)
    }

    /// Sends stage `i`'s run to the device.
    fn submit(&mut self, i: usize) -> Result<(), Failure> {
        while self.in_flight.len() >= self.depth {
            self.complete_oldest()?;
        }
        if !self.first_write_said {
            self.first_write_said = true;
            let now = self.env.now_us();
            self.env.say(format_args!(
                "first dump write at +{} ms",
                self.profile.since_entry_us(now) / 1000
            ));
        }
        let stage = &mut self.stages[i];
        let offset = DUMP_OFFSET + stage.start;
        let t0 = self.env.now_us();
        let started = self
            .device
            .start_write(offset, stage.buffer.addr(), stage.len as u64);
        self.profile.write.submitting_us += self.env.now_us().saturating_sub(t0);
        started.map_err(|e| Failure::device(WriteStep::KdumpFile { offset }, e))?;
        stage.state = StageState::InFlight;
        self.in_flight.push_back(i);
        Ok(())
    }

    /// Waits for the oldest write in flight.
    fn complete_oldest(&mut self) -> Result<(), Failure> {
        let Some(i) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let t0 = self.env.now_us();
        let waited = self.device.wait();
        self.profile.write.device_wait_us += self.env.now_us().saturating_sub(t0);
        let stage = &mut self.stages[i];
        stage.state = StageState::Free;
        let offset = DUMP_OFFSET + stage.start;
        waited.map_err(|e| Failure::device(WriteStep::KdumpFile { offset }, e))
    }

    /// Sends every filling run and waits for every write.
    fn sync(&mut self) -> Result<(), Failure> {
        while let Some(i) = self
            .stages
            .iter()
            .position(|s| s.state == StageState::Filling)
        {
            self.submit(i)?;
        }
        while !self.in_flight.is_empty() {
            self.complete_oldest()?;
        }
        Ok(())
    }

    /// After a failure: let the device finish what it was given.
    fn complete_all_ignoring_errors(&mut self) {
        while !self.in_flight.is_empty() {
            let _ = self.complete_oldest();
        }
    }

    /// Every 10 % of the page frames: everything on the device, then the header claiming it.
    fn checkpoint_if_due(&mut self) -> Result<(), Failure> {
        let percent = u64::try_from(
            u128::from(self.current_pfn.get()) * 100 / u128::from(self.max_pfn.max(1)),
        )
        .unwrap_or(100);
        if percent < self.next_percent || percent >= 100 {
            return Ok(());
        }
        while self.next_percent <= percent {
            self.next_percent += CHECKPOINT_PERCENT;
        }
        self.sync()?;
        let t0 = self.env.now_us();
        let rate = mib_per_s_x10(self.high_water, t0.saturating_sub(self.started_us));
        self.env.say(format_args!(
            "{percent:3}% of memory: {} MiB of kdump file written, {}.{} MiB/s",
            self.high_water >> 20,
            rate / 10,
            rate % 10
        ));
        let written = self.high_water;
        self.records
            .write(self.device, self.env, self.header, None, written)
            .map_err(|(step, e)| match step {
                super::RecordStep::Flush => {
                    Failure::device(WriteStep::CheckpointFlush { percent }, e)
                }
                super::RecordStep::Write => {
                    Failure::device(WriteStep::CheckpointHeader { percent }, e)
                }
            })?;
        self.profile.write.checkpoints_us += self.env.now_us().saturating_sub(t0);
        Ok(())
    }

    /// The file is complete in the buffers: put it on the device, read it back for the
    /// checksums `verify` asks for, and write the "complete" header.
    fn finish(&mut self, stats: WriteStats, verify: Verification) -> Result<KdumpSummary, Failure> {
        let split = self.profile.write;
        self.profile.enter(Phase::Final, self.env.now_us());
        self.sync()?;
        self.device
            .flush()
            .map_err(|e| Failure::device(WriteStep::FinalFlush, e))?;
        let file_len = stats.file_len;
        self.header.dump_length = file_len;
        self.header.set_verification(verify);
        let mut integrity = match Integrity::for_header(self.header) {
            Ok(integrity) => integrity,
            Err(failure) => {
                // The file is complete; only its check is lost.
                self.env.say(format_args!(
                    "warning: {failure}: the dump is written without a checksum"
                ));
                self.header.set_verification(Verification::None);
                Integrity::None
            }
        };
        let t0 = self.env.now_us();
        if !matches!(integrity, Integrity::None) {
            let buffer = &mut self.stages[0].buffer;
            let mut done = 0;
            while done < file_len {
                let len = (file_len - done).min(self.stage_bytes as u64);
                self.device
                    .read(DUMP_OFFSET + done, buffer.addr(), len)
                    .map_err(|e| {
                        Failure::device(
                            WriteStep::ReadBack {
                                offset: DUMP_OFFSET + done,
                            },
                            e,
                        )
                    })?;
                // len <= stage_bytes, a usize.
                let n = usize::try_from(len).unwrap_or(0);
                let fed = buffer.with_bytes_mut(|b| integrity.update(&b[..n]));
                fed.map_err(hasher_bug)?;
                done += len;
            }
        }
        self.profile.write = split;
        self.profile.write.hashing_us += self.env.now_us().saturating_sub(t0);
        self.env.say(format_args!(
            "kdump-compressed file of {file_len} bytes written and flushed: {} RAM pages, {} filtered out, {} unreadable, {} dumped ({} zero, {} compressed, {} stored raw)",
            stats.ram_pages,
            stats.filtered_pages,
            stats.unreadable_pages,
            stats.dumped_pages,
            stats.zero_pages,
            stats.compressed_pages,
            stats.raw_pages
        ));
        self.header.pages_ram = stats.ram_pages;
        self.header.pages_dumped = stats.dumped_pages;
        self.header.state = DumpState::Complete;
        integrity.seal(self.header);
        let now = self.env.now_us();
        self.env.say(format_args!("{}", self.profile.line(now)));
        self.records
            .write(
                self.device,
                self.env,
                self.header,
                integrity.table(),
                file_len,
            )
            .map_err(|(_, e)| Failure::device(WriteStep::FinalHeader, e))?;
        Ok(KdumpSummary {
            stats,
            verified: integrity.verified(self.header),
        })
    }
}

#[cfg(test)]
mod tests;
