//! The device as a [`Sink`] of whole 4 KiB blocks at any file offset: what the writers of
//! the kdump-compressed format and of the filtered ELF vmcore share. Both produce their
//! file out of order (page data appended, descriptors or program headers in their own
//! area, a header block rewritten at the end) and read old memory with the CPU, so the
//! device gets copies, not old memory by DMA.
//!
//! * **Staging**: blocks are gathered in [`STAGES`] DMA buffers of up to [`STAGE_BYTES`],
//!   each holding one contiguous run of the file; a run goes to the device when its buffer
//!   is full or is needed for another run, up to `max_in_flight()` writes outstanding. A
//!   block that overlaps a run still in a buffer or in flight waits for it first, so a
//!   rewritten block lands after the first version, never before.
//! * **Checkpoints**: every 10 % of the progress the writer reports (page frames gone
//!   through), every write is completed, then the log and the header with `written` = the
//!   end of the furthest byte written (the file up to there is on the device, though parts
//!   written last, such as a header block, are not final yet).
//! * **Integrity**: the chunk table or SHA-256 must cover the file in order, which is not
//!   the order it is written in; so after the last flush the file is read back in
//!   [`STAGE_BYTES`] pieces and hashed. This also proves the device returns what it was
//!   given.
//! * **A full device** stops the dump with what was written kept: the triage text and
//!   the last checkpoint are already safe.

use super::{
    hasher_bug, mib_per_s_x10, record_failure, start_write_timed, wait_timed, within_time_limit,
    Integrity, RecordStep, Records, Verified, WriterEnv, CHECKPOINT_PERCENT,
};
use crate::failure::{DeviceName, WriteStep};
use crate::profile::{Phase, Profile};
use crate::writer::DmaBuffer;
use crate::Failure;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use core::ops::Range;
use minicap_drivers::BlockDevice;
use minicap_dumpheader::{DumpHeader, DumpState, Verification, DUMP_OFFSET};
use minicap_kdumpfile::{Sink, PAGE_SIZE};

/// Most bytes of one staged run (and of one read-back piece).
pub const STAGE_BYTES: usize = 256 << 10;
/// Staging buffers: one more than the writes in flight, so that a run can fill while the
/// others are written.
pub const STAGES: usize = 5;

/// How far the writer is, for the checkpoints, and how to name its file in messages.
pub struct FileProgress<'a> {
    /// Units done so far (the writer sets it as it goes).
    pub done: &'a Cell<u64>,
    /// Units in all.
    pub total: u64,
    /// The file, in the checkpoint line ("kdump file").
    pub what: &'static str,
    /// The step a failed write at a device offset was.
    pub step: fn(u64) -> WriteStep,
}

/// Pages of the dump, for the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCounts {
    /// RAM page frames of the crashed kernel.
    pub ram: u64,
    /// Pages written to the dump.
    pub dumped: u64,
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

/// The device as a file writer's [`Sink`].
pub(super) struct DeviceSink<'a, 'r, D, E: WriterEnv> {
    device: &'a mut D,
    env: &'a mut E,
    records: &'r mut Records<E::Buffer>,
    header: &'a mut DumpHeader,
    profile: &'a mut Profile,
    device_name: &'a DeviceName,
    progress: FileProgress<'a>,
    stages: Vec<Stage<E::Buffer>>,
    stage_bytes: usize,
    /// Stages being written, oldest first (the device completes them in this order).
    in_flight: VecDeque<usize>,
    depth: usize,
    /// End of the furthest byte handed to the device.
    high_water: u64,
    /// Bytes of the device after [`DUMP_OFFSET`].
    capacity: u64,
    next_percent: u64,
    started_us: u64,
    first_write_said: bool,
}

impl<D: BlockDevice, E: WriterEnv> Sink for DeviceSink<'_, '_, D, E> {
    type Error = Failure;

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Failure> {
        within_time_limit(self.env)?;
        self.checkpoint_if_due()?;
        let end = offset.saturating_add(bytes.len() as u64);
        if end > self.capacity {
            return Err(self.full());
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

impl<'a, 'r, D: BlockDevice, E: WriterEnv> DeviceSink<'a, 'r, D, E> {
    /// The sink, with its staging buffers taken from `env` (the device untouched if they
    /// cannot be had). `records` has already written the triage text and the "writing"
    /// header.
    pub(super) fn new(
        device: &'a mut D,
        env: &'a mut E,
        records: &'r mut Records<E::Buffer>,
        header: &'a mut DumpHeader,
        profile: &'a mut Profile,
        device_name: &'a DeviceName,
        progress: FileProgress<'a>,
    ) -> Result<Self, Failure> {
        let depth = device.max_in_flight().clamp(1, STAGES - 1);
        let stage_bytes = usize::try_from(device.max_transfer())
            .unwrap_or(STAGE_BYTES)
            .clamp(PAGE_SIZE, STAGE_BYTES)
            & !(PAGE_SIZE - 1);
        let no_memory = Failure::OutOfMemory {
            what: "the staging buffers",
        };
        let mut stages = Vec::new();
        stages.try_reserve_exact(STAGES).map_err(|_| no_memory)?;
        for _ in 0..STAGES {
            let buffer = env.dma_buffer(stage_bytes).ok_or(no_memory)?;
            stages.push(Stage {
                buffer,
                start: 0,
                len: 0,
                state: StageState::Free,
            });
        }
        let mut in_flight = VecDeque::new();
        in_flight
            .try_reserve_exact(STAGES)
            .map_err(|_| Failure::OutOfMemory {
                what: "the list of writes in flight",
            })?;
        let capacity = device.capacity().saturating_sub(DUMP_OFFSET);
        let started_us = env.now_us();
        Ok(Self {
            device,
            env,
            records,
            header,
            profile,
            device_name,
            progress,
            stages,
            stage_bytes,
            in_flight,
            depth,
            high_water: 0,
            capacity,
            next_percent: CHECKPOINT_PERCENT,
            started_us,
            first_write_said: false,
        })
    }

    /// Bytes of the device the file may use.
    pub(super) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The failure of a file that does not fit.
    pub(super) fn full(&self) -> Failure {
        Failure::DumpDeviceFull {
            device: *self.device_name,
            capacity: self.capacity,
        }
    }

    /// Print one console line.
    pub(super) fn say(&mut self, line: fmt::Arguments<'_>) {
        self.env.say(line);
    }

    /// The header being kept up to date (e.g. its `dump_length` once the file's length is
    /// known; the next checkpoint stores it).
    pub(super) fn header_mut(&mut self) -> &mut DumpHeader {
        self.header
    }

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
        let stage = &mut self.stages[i];
        let offset = DUMP_OFFSET + stage.start;
        start_write_timed(
            self.device,
            self.env,
            self.profile,
            &mut self.first_write_said,
            (offset, stage.buffer.addr(), stage.len as u64),
        )
        .map_err(|e| Failure::device((self.progress.step)(offset), e))?;
        stage.state = StageState::InFlight;
        self.in_flight.push_back(i);
        Ok(())
    }

    /// Waits for the oldest write in flight.
    fn complete_oldest(&mut self) -> Result<(), Failure> {
        let Some(i) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let waited = wait_timed(self.device, self.env, self.profile);
        let stage = &mut self.stages[i];
        stage.state = StageState::Free;
        let offset = DUMP_OFFSET + stage.start;
        waited.map_err(|e| Failure::device((self.progress.step)(offset), e))
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

    /// After a failure: lets the device finish what it was given, then writes the header
    /// "failed" (`written` still the last checkpoint; after the time limit, which stops
    /// between writes, everything handed to the device if it all went well, as a checkpoint
    /// would claim). Returns the failure.
    pub(super) fn fail(mut self, failure: Failure) -> Failure {
        if matches!(failure, Failure::TimedOut { .. }) && self.sync().is_ok() {
            self.header.written = self.high_water;
        }
        while !self.in_flight.is_empty() {
            let _ = self.complete_oldest();
        }
        record_failure(
            self.device,
            self.env,
            self.records,
            self.header,
            None,
            self.profile,
            failure,
        )
    }

    /// Every 10 % of the progress: everything on the device, then the header claiming it.
    fn checkpoint_if_due(&mut self) -> Result<(), Failure> {
        let percent = u64::try_from(
            u128::from(self.progress.done.get()) * 100 / u128::from(self.progress.total.max(1)),
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
            "{percent:3}% of memory: {} MiB of {} written, {}.{} MiB/s",
            self.high_water >> 20,
            self.progress.what,
            rate / 10,
            rate % 10
        ));
        let written = self.high_water;
        self.records
            .write(self.device, self.env, self.header, None, written)
            .map_err(|(step, e)| match step {
                RecordStep::Flush => Failure::device(WriteStep::CheckpointFlush { percent }, e),
                RecordStep::Write => Failure::device(WriteStep::CheckpointHeader { percent }, e),
            })?;
        self.profile.write.checkpoints_us += self.env.now_us().saturating_sub(t0);
        Ok(())
    }

    /// The file (`file_len` bytes) is complete in the buffers: put it on the device, read it
    /// back for the checksums `verify` asks for, say `summary`, and write the "complete"
    /// header with `pages`.
    pub(super) fn finish(
        &mut self,
        file_len: u64,
        verify: Verification,
        pages: PageCounts,
        summary: fmt::Arguments<'_>,
    ) -> Result<Verified, Failure> {
        let split = self.profile.write;
        self.profile.enter(Phase::Final, self.env.now_us());
        self.sync()?;
        self.device
            .flush()
            .map_err(|e| Failure::device(WriteStep::FinalFlush, e))?;
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
                let offset = DUMP_OFFSET + done;
                self.device
                    .read(offset, buffer.addr(), len)
                    .map_err(|e| Failure::device(WriteStep::ReadBack { offset }, e))?;
                // len <= stage_bytes, a usize.
                let n = usize::try_from(len).unwrap_or(0);
                let fed = buffer.with_bytes_mut(|b| integrity.update(&b[..n]));
                fed.map_err(hasher_bug)?;
                done += len;
            }
        }
        self.profile.write = split;
        self.profile.write.hashing_us += self.env.now_us().saturating_sub(t0);
        self.env.say(summary);
        self.header.pages_ram = pages.ram;
        self.header.pages_dumped = pages.dumped;
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
        Ok(integrity.verified(self.header))
    }
}
