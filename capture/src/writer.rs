//! Writing the dump, in an order that keeps the on-device header true at
//! every moment:
//!
//! 1. log, flush, header "writing" (with `written` = 0), flush: before the
//!    first byte of the dump, so a power loss from here on leaves a header
//!    that says "writing", never the previous dump's "complete" over
//!    half-new data;
//! 2. the vmcore: ELF header and notes, then every PT_LOAD straight from old
//!    memory by DMA, up to `max_in_flight()` writes outstanding (oldest
//!    completed first); the CPU hashes each piece after submitting it, while
//!    the device works; ranges the memory map does not call memory are not
//!    read: zeros go in their place;
//! 3. every 10 %: every outstanding write completed, then log, the chunk
//!    table's blocks holding new entries, flush, header with `written` = the
//!    bytes just flushed, flush (a checkpoint);
//! 4. final flush, then the same with the header "complete" and its check
//!    (`minicap.verify=`: the chunk table's XXH64, the SHA-256, or nothing).
//!
//! On any failure after step 1 the outstanding writes are completed (their
//! outcome no longer matters) and the header becomes "failed" with the
//! failure code and message, `written` still the bytes confirmed at the last
//! checkpoint. The log and the table always go before the header that
//! counts them.
//!
//! That is the whole ELF vmcore (dump level 0). The files whose pages the CPU reads and
//! filters, the filtered ELF vmcore ([`elf_filtered`], `makedumpfile -E`) and the
//! kdump-compressed format ([`kdump`]), keep the same order (triage text and header
//! "writing" first, checkpoints, "complete" or "failed" last) through one shared device
//! sink of staged 4 KiB blocks, read back at the end for the checksums.
//!
//! The kdump-compressed and filtered ELF writers also run over a line that can only
//! append (`minicap.target=serial`): [`stream_kdump`] and [`stream_filtered_elf`] send
//! their writes as the frames of `minicap-serialstream` to a [`ByteOutput`], no header
//! and no read-back (the stream sink module).
//!
//! The writer touches no hardware: the device is a [`BlockDevice`], and old
//! memory, the console log, the clock and DMA buffers come from a
//! [`WriterEnv`] (the kernel's thin adapters; fakes in the tests).

use crate::failure::{DeviceName, WriteStep};
use crate::memory::SkippedRanges;
use crate::profile::{Phase, Profile};
use crate::text::FixedString;
use crate::{Failure, TimeLimit};
use alloc::collections::VecDeque;
use core::fmt;
use minicap_chunksum::{FeedError, TABLE_BLOCK_LEN};
use minicap_drivers::BlockDevice;
use minicap_dumpheader::{
    DumpHeader, DumpState, Verification, DUMP_OFFSET, HEADER_LEN, LOG_CAPACITY, LOG_OFFSET,
    TRIAGE_CAPACITY, TRIAGE_OFFSET,
};
use minicap_elfcore::VmcoreLayout;
use minicap_physmem::{PAGE_BYTES, PAGE_SIZE};

mod device_sink;
pub mod elf_filtered;
#[cfg(test)]
mod fakes;
mod integrity;
pub mod kdump;
mod stream_sink;

use core::cell::Cell;
use device_sink::{DeviceSink, FileProgress, PageCounts};
pub use device_sink::{STAGES, STAGE_BYTES};
pub use elf_filtered::{ElfFilterError, ElfFilterOptions, ElfStats, FilteredElf};
pub use integrity::{verification, ChunkSize, Verified};
use integrity::{ChunkTable, Integrity};
pub use kdump::{FrameFilter, KdumpDump, KdumpSummary, KeepAll};
pub use stream_sink::{stream_filtered_elf, stream_kdump, ByteOutput, StreamSummary, StreamTarget};

/// Bytes of console log kept and stored: the device's log area.
#[allow(clippy::cast_possible_truncation)] // 64 KiB fits every usize
pub const LOG_BYTES: usize = LOG_CAPACITY as usize;
/// The header is written as one block this big: the largest logical block
/// size minicap supports, so the write never needs a read-modify-write.
pub const HEADER_BLOCK: usize = PAGE_BYTES;
/// How often the header's `written` field is brought up to date (percent).
pub const CHECKPOINT_PERCENT: u64 = 10;
/// Most writes kept outstanding, whatever the device allows.
pub const MAX_IN_FLIGHT: usize = 64;
/// Size of the zero buffer written in place of skipped ranges.
const ZERO_BYTES: usize = 64 << 10;

/// A buffer devices reach by DMA at [`DmaBuffer::addr`].
pub trait DmaBuffer {
    /// Its physical address.
    fn addr(&self) -> u64;
    /// Run `f` on its bytes (never while a request that uses it is outstanding).
    fn with_bytes_mut<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R;
}

/// What the writer needs from the machine besides the device.
pub trait WriterEnv {
    /// The DMA buffers it hands out.
    type Buffer: DmaBuffer;
    /// A zeroed, page-aligned DMA buffer of `len` bytes that lives for the
    /// rest of the run; `None` when memory is short.
    fn dma_buffer(&mut self, len: usize) -> Option<Self::Buffer>;
    /// Run `f` on old memory `[addr, addr + len)`; false if it is not mapped.
    fn with_old_memory(&mut self, addr: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> bool;
    /// Copy the console log so far, oldest byte first; returns the bytes copied.
    fn copy_log(&mut self, out: &mut [u8]) -> usize;
    /// A monotonic clock in microseconds (the [`Profile`]'s clock).
    fn now_us(&mut self) -> u64;
    /// Print one console line (it goes into the log too).
    fn say(&mut self, line: fmt::Arguments<'_>);
    /// The bound on the whole capture on the [`WriterEnv::now_us`] clock
    /// (`minicap.timeout=`), `None` for none.
    fn time_limit(&self) -> Option<TimeLimit>;
}

/// `Ok` while the whole capture is within its time limit, else [`Failure::TimedOut`]:
/// checked before each new piece of the dump, never in the middle of one.
fn within_time_limit<E: WriterEnv>(env: &mut E) -> Result<(), Failure> {
    match env.time_limit() {
        Some(limit) => {
            let now = env.now_us();
            limit.check(now, true)
        }
        None => Ok(()),
    }
}

/// Whether minicap can write a device with logical blocks of `block_size`
/// bytes: a power of two no larger than the header block (every offset and
/// length the writer uses is a multiple of 4096).
pub fn block_size_supported(block_size: u32) -> bool {
    block_size.is_power_of_two() && (512..=HEADER_BLOCK).contains(&(block_size as usize))
}

/// What to write.
pub struct Dump<'a> {
    /// The vmcore's layout (ELF header bytes, chunks of old memory).
    pub layout: &'a VmcoreLayout,
    /// The merged notes.
    pub notes: &'a [u8],
    /// Old-memory ranges not to read (zeros instead).
    pub skipped: &'a SkippedRanges,
    /// The device's name, for messages.
    pub device_name: &'a DeviceName,
    /// What to record so that the dump can be checked (`minicap.verify=`).
    pub verify: Verification,
}

/// Write the dump. `header` is the new header ("writing", layout fields
/// set); on return it is what the device's header says. The writing phase
/// and its split go into `profile`, whose line is printed before the final
/// header. Returns what was recorded to check the dump.
pub fn write_dump<D: BlockDevice, E: WriterEnv>(
    device: &mut D,
    env: &mut E,
    header: &mut DumpHeader,
    triage: Option<&Triage<E::Buffer>>,
    dump: &Dump<'_>,
    profile: &mut Profile,
) -> Result<Verified, Failure> {
    let block_size = device.sector_size();
    if !block_size_supported(block_size) {
        return Err(Failure::UnsupportedBlockSize {
            device: *dump.device_name,
            block_size,
        });
    }
    header.set_verification(dump.verify);
    // Every buffer first: running out of memory must leave the device alone.
    let mut integrity = Integrity::for_header(header)?;
    let mut records = Records::new(env, integrity.table().is_some())?;
    let prefix = vmcore_prefix(env, dump)?;
    let zeros = if dump.skipped.is_empty() {
        None
    } else {
        Some(env.dma_buffer(ZERO_BYTES).ok_or(Failure::OutOfMemory {
            what: "the zero buffer",
        })?)
    };
    let depth = device.max_in_flight().clamp(1, MAX_IN_FLIGHT);
    let mut in_flight = VecDeque::new();
    in_flight
        .try_reserve_exact(depth)
        .map_err(|_| Failure::OutOfMemory {
            what: "the list of writes in flight",
        })?;
    let (ranges, bytes) = crate::memory::skipped_totals(dump.skipped);
    header.skipped_ranges = ranges;
    header.skipped_bytes = bytes;
    profile.enter(Phase::Write, env.now_us());
    begin(
        device,
        env,
        &mut records,
        header,
        integrity.table(),
        triage,
        dump.device_name,
    )?;

    let started = env.now_us();
    let mut vmcore = Vmcore {
        device,
        env,
        records: &mut records,
        header,
        integrity,
        progress: Progress::new(dump.layout.total_len, started),
        zeros,
        skipped: dump.skipped,
        in_flight,
        depth,
        profile,
        first_write_said: false,
    };
    match vmcore.write(dump.layout, prefix) {
        Ok(verified) => Ok(verified),
        Err(failure) => {
            let drained = vmcore.complete_all_ignoring_errors();
            if drained && matches!(failure, Failure::TimedOut { .. }) {
                // The time limit stops between pieces: every piece counted was written
                // without error and hashed, so the failed header (which follows a flush)
                // claims them all, not only the last checkpoint's.
                vmcore.header.written = vmcore.progress.done;
            }
            let Vmcore {
                device,
                env,
                records,
                header,
                mut integrity,
                profile,
                ..
            } = vmcore;
            Err(record_failure(
                device,
                env,
                records,
                header,
                integrity.table(),
                profile,
                failure,
            ))
        }
    }
}

/// Write a kdump-compressed dump (`minicap.format=kdump`): the triage text and the
/// "writing" header first, as for ELF, then the file (see [`kdump`]). `header` is the new
/// header ("writing", format and dump level set; `dump_length` a bound, replaced by the
/// file's length at the end).
pub fn write_kdump_dump<D, E, M, F>(
    device: &mut D,
    env: &mut E,
    header: &mut DumpHeader,
    triage: Option<&Triage<E::Buffer>>,
    dump: KdumpDump<'_, M, F>,
    profile: &mut Profile,
) -> Result<KdumpSummary, Failure>
where
    D: BlockDevice,
    E: WriterEnv,
    M: minicap_physmem::PhysMem + ?Sized,
    F: FrameFilter,
{
    let mut records = begin_staged(
        device,
        env,
        header,
        triage,
        dump.device_name,
        dump.verify,
        profile,
    )?;
    kdump::write_kdump_file(device, env, &mut records, header, dump, profile)
}

/// What to write for a filtered ELF vmcore (`minicap.format=elf`, dump level above 0).
pub struct FilteredElfDump<'a, M: ?Sized, F> {
    /// The file: core headers, RAM, old memory, filter, level.
    pub elf: FilteredElf<'a, M, F>,
    /// The device's name, for messages.
    pub device_name: &'a DeviceName,
    /// What to record so that the dump can be checked.
    pub verify: Verification,
}

/// What a filtered ELF capture wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilteredElfSummary {
    /// The counts (PT_LOADs, pages dumped and left out, file length).
    pub stats: ElfStats,
    /// What was recorded to check the file.
    pub verified: Verified,
}

/// Write a filtered ELF vmcore (see [`elf_filtered`]): the triage text and the "writing"
/// header first, as for the whole vmcore, then the counting pass, then the file through
/// the staging buffers (the pages are read by the CPU, to be filtered), read back for the
/// checksums. `header` is the new header ("writing", format and dump level set;
/// `dump_length` a bound, replaced by the file's length once counted).
pub fn write_filtered_elf_dump<D, E, M, F>(
    device: &mut D,
    env: &mut E,
    header: &mut DumpHeader,
    triage: Option<&Triage<E::Buffer>>,
    dump: FilteredElfDump<'_, M, F>,
    profile: &mut Profile,
) -> Result<FilteredElfSummary, Failure>
where
    D: BlockDevice,
    E: WriterEnv,
    M: minicap_physmem::PhysMem + ?Sized,
    F: FrameFilter,
{
    let mut records = begin_staged(
        device,
        env,
        header,
        triage,
        dump.device_name,
        dump.verify,
        profile,
    )?;
    let FilteredElfDump {
        mut elf,
        device_name,
        verify,
    } = dump;
    let frames = Cell::new(0);
    let progress = FileProgress {
        done: &frames,
        total: elf.frames_to_walk(),
        what: "ELF vmcore",
        step: |offset| WriteStep::VmcorePrefix { offset },
    };
    let mut sink = DeviceSink::new(
        device,
        env,
        &mut records,
        header,
        profile,
        device_name,
        progress,
    )?;
    let result = write_filtered_elf_file(&mut sink, &mut elf, verify, &frames);
    result.map_err(|failure| sink.fail(failure))
}

/// The two passes of the filtered ELF vmcore, into `sink`.
fn write_filtered_elf_file<D, E, M, F>(
    sink: &mut DeviceSink<'_, '_, D, E>,
    elf: &mut FilteredElf<'_, M, F>,
    verify: Verification,
    frames: &Cell<u64>,
) -> Result<FilteredElfSummary, Failure>
where
    D: BlockDevice,
    E: WriterEnv,
    M: minicap_physmem::PhysMem + ?Sized,
    F: FrameFilter,
{
    let layout = elf
        .count()
        .map_err(|e| elf_failure(e, |never| match never {}))?;
    sink.say(format_args!(
        "filtered ELF vmcore: {} PT_LOAD(s){}, {} pages of data, {} bytes",
        layout.counts.loads,
        if layout.extended {
            " (e_phnum PN_XNUM: the count in section header 0)"
        } else {
            ""
        },
        layout.counts.data_pages,
        layout.file_len
    ));
    if layout.file_len > sink.capacity() {
        return Err(sink.full());
    }
    sink.header_mut().dump_length = layout.file_len;
    let stats = elf
        .write(sink, &layout, frames)
        .map_err(|e| elf_failure(e, |failure| failure))?;
    let pages = PageCounts {
        ram: stats.ram_pages,
        dumped: stats.dumped_pages,
    };
    let verified = sink.finish(
        layout.file_len,
        verify,
        pages,
        format_args!(
            "filtered ELF vmcore of {} bytes written and flushed: {} RAM pages; {} pages dumped in {} PT_LOAD(s); left out: {} filtered, {} zero, {} unreadable; {} excluded inside PT_LOADs (zeros)",
            layout.file_len,
            stats.ram_pages,
            stats.dumped_pages,
            layout.counts.loads,
            stats.filtered_pages,
            stats.zero_pages,
            stats.unreadable_pages,
            stats.gap_pages
        ),
    )?;
    Ok(FilteredElfSummary { stats, verified })
}

/// A failure of the filtered ELF writer: the sink's own (`sink`), or an internal one.
fn elf_failure<E: fmt::Display>(
    error: ElfFilterError<E>,
    sink: impl FnOnce(E) -> Failure,
) -> Failure {
    match error {
        ElfFilterError::Sink(failure) => sink(failure),
        other => Failure::Internal(FixedString::display(format_args!(
            "filtered ELF vmcore: {other}"
        ))),
    }
}

/// The start of a file written through the staging buffers (kdump-compressed, filtered
/// ELF): the block size checked, the buffers of the records taken, then [`begin`]. Such a
/// file is hashed once complete, by reading it back in order, so until then the header
/// records no check (a partial file says so); the chunk table's block buffer is taken now
/// all the same, so that the end needs no new DMA buffer.
fn begin_staged<D: BlockDevice, E: WriterEnv>(
    device: &mut D,
    env: &mut E,
    header: &mut DumpHeader,
    triage: Option<&Triage<E::Buffer>>,
    device_name: &DeviceName,
    verify: Verification,
    profile: &mut Profile,
) -> Result<Records<E::Buffer>, Failure> {
    let block_size = device.sector_size();
    if !block_size_supported(block_size) {
        return Err(Failure::UnsupportedBlockSize {
            device: *device_name,
            block_size,
        });
    }
    header.set_verification(Verification::None);
    let mut records = Records::new(env, verify == Verification::Xxh64Chunks)?;
    profile.enter(Phase::Write, env.now_us());
    begin(device, env, &mut records, header, None, triage, device_name)?;
    Ok(records)
}

/// The triage text (the crashed kernel's log, registers, release) in a DMA buffer.
pub struct Triage<B> {
    /// The text, from its start.
    pub buffer: B,
    /// Its length in bytes (at most [`TRIAGE_CAPACITY`]).
    pub len: usize,
}

/// Before the first byte of the dump: the triage text, flushed, then the log and the
/// header "writing" (with `written` = 0 and the triage length), flushed. From here on a
/// failure leaves the triage text readable.
fn begin<D: BlockDevice, E: WriterEnv>(
    device: &mut D,
    env: &mut E,
    records: &mut Records<E::Buffer>,
    header: &mut DumpHeader,
    table: Option<&mut ChunkTable>,
    triage: Option<&Triage<E::Buffer>>,
    device_name: &DeviceName,
) -> Result<(), Failure> {
    header.state = DumpState::Writing;
    header.written = 0;
    header.triage_length = 0;
    if let Some(triage) = triage.filter(|t| t.len > 0) {
        let len = (triage.len as u64).min(TRIAGE_CAPACITY);
        let blocks = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        device
            .write(TRIAGE_OFFSET, triage.buffer.addr(), blocks)
            .and_then(|()| device.flush())
            .map_err(|e| Failure::TriageWrite {
                device: *device_name,
                error: FixedString::display(e),
            })?;
        header.triage_length = u32::try_from(len).unwrap_or(0);
    }
    records
        .write(device, env, header, table, 0)
        .map_err(|(_, e)| Failure::HeaderWrite {
            device: *device_name,
            error: FixedString::display(e),
        })
}

/// After a failure once writing began (every outstanding write completed): the header
/// "failed" with the failure's code and message, `written` still the bytes confirmed at
/// the last checkpoint. Returns the failure.
fn record_failure<D: BlockDevice, E: WriterEnv>(
    device: &mut D,
    env: &mut E,
    records: &mut Records<E::Buffer>,
    header: &mut DumpHeader,
    table: Option<&mut ChunkTable>,
    profile: &mut Profile,
    failure: Failure,
) -> Failure {
    header.state = DumpState::Failed;
    header.failure_code = failure.code();
    header.set_message(FixedString::<256>::display(failure).as_str());
    env.say(format_args!(
        "capture failed after {} of {} bytes were confirmed on the device: {failure}",
        header.written, header.dump_length
    ));
    if profile.current() == Phase::Write {
        profile.enter(Phase::Final, env.now_us());
    }
    let now = env.now_us();
    env.say(format_args!("{}", profile.line(now)));
    let confirmed = header.written;
    let _ = records.write(device, env, header, table, confirmed);
    failure
}

/// The ELF header block and the padded notes, in one DMA buffer.
fn vmcore_prefix<E: WriterEnv>(env: &mut E, dump: &Dump<'_>) -> Result<E::Buffer, Failure> {
    let header = &dump.layout.header;
    let notes_padded = usize::try_from(dump.layout.notes_len_padded).ok();
    let len = notes_padded.and_then(|n| n.checked_add(header.len()));
    let mut buffer = len
        .and_then(|len| env.dma_buffer(len))
        .ok_or(Failure::OutOfMemory { what: "the notes" })?;
    buffer.with_bytes_mut(|bytes| {
        bytes[..header.len()].copy_from_slice(header);
        bytes[header.len()..header.len() + dump.notes.len()].copy_from_slice(dump.notes);
    });
    Ok(buffer)
}

/// Which part of [`Records::write`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordStep {
    /// Writing the log, a table block or the header, or the last flush.
    Write,
    /// The flush that confirms the dump bytes, log and table the header claims.
    Flush,
}

/// The device's records: the console log into its area, the chunk table's
/// new blocks, a flush, then the minicap header that describes them (so the
/// header never claims a log, table entries or dump bytes that are not on
/// the device), then a flush. The header goes out as a whole 4 KiB block
/// (the header, then the zeros `minicap format` left).
struct Records<B> {
    header: B,
    log: B,
    table: Option<B>,
}

impl<B: DmaBuffer> Records<B> {
    fn new<E: WriterEnv<Buffer = B>>(env: &mut E, with_table: bool) -> Result<Self, Failure> {
        let header = env.dma_buffer(HEADER_BLOCK).ok_or(Failure::OutOfMemory {
            what: "the header buffer",
        })?;
        let log = env.dma_buffer(LOG_BYTES).ok_or(Failure::OutOfMemory {
            what: "the log buffer",
        })?;
        let table = match with_table {
            true => Some(env.dma_buffer(PAGE_BYTES).ok_or(Failure::OutOfMemory {
                what: "the chunk table buffer",
            })?),
            false => None,
        };
        Ok(Self { header, log, table })
    }

    /// Store the log, the table and `header` claiming `confirm` bytes of the
    /// dump (every one of them written before). No write may be outstanding.
    fn write<D: BlockDevice, E: WriterEnv<Buffer = B>>(
        &mut self,
        device: &mut D,
        env: &mut E,
        header: &mut DumpHeader,
        table: Option<&mut ChunkTable>,
        confirm: u64,
    ) -> Result<(), (RecordStep, D::Error)> {
        let write = |e| (RecordStep::Write, e);
        let length = self.log.with_bytes_mut(|bytes| {
            let n = env.copy_log(bytes);
            // The tail of the last block: zeros, not stale text.
            let end = n
                .div_ceil(PAGE_BYTES)
                .saturating_mul(PAGE_BYTES)
                .min(bytes.len());
            bytes[n..end].fill(0);
            n
        });
        if length > 0 {
            let blocks = u64::try_from(length.div_ceil(PAGE_BYTES) * PAGE_BYTES).unwrap_or(0);
            device
                .write(LOG_OFFSET, self.log.addr(), blocks)
                .map_err(write)?;
        }
        if let (Some(table), Some(buffer)) = (table.as_deref(), self.table.as_mut()) {
            for (offset, block) in table.blocks_for(confirm) {
                buffer.with_bytes_mut(|bytes| table.encode(confirm, block, bytes));
                device
                    .write(offset, buffer.addr(), TABLE_BLOCK_LEN)
                    .map_err(write)?;
            }
        }
        device.flush().map_err(|e| (RecordStep::Flush, e))?;

        header.written = confirm;
        header.log_length = u32::try_from(length).unwrap_or(0);
        if let Some(table) = table.as_deref() {
            header.table_xxh64 = table.checksum(confirm);
        }
        let encoded = header.encode();
        self.header.with_bytes_mut(|bytes| {
            bytes.fill(0);
            bytes[..HEADER_LEN].copy_from_slice(&encoded);
        });
        device
            .write(0, self.header.addr(), HEADER_BLOCK as u64)
            .map_err(write)?;
        device.flush().map_err(write)?;
        if let Some(table) = table {
            table.confirmed(confirm);
        }
        Ok(())
    }
}

/// The vmcore being written.
struct Vmcore<'a, D, E: WriterEnv> {
    device: &'a mut D,
    env: &'a mut E,
    records: &'a mut Records<E::Buffer>,
    header: &'a mut DumpHeader,
    integrity: Integrity,
    progress: Progress,
    zeros: Option<E::Buffer>,
    skipped: &'a SkippedRanges,
    /// The writes outstanding, oldest first.
    in_flight: VecDeque<WriteStep>,
    /// How many may be outstanding.
    depth: usize,
    profile: &'a mut Profile,
    first_write_said: bool,
}

impl<D: BlockDevice, E: WriterEnv> Vmcore<'_, D, E> {
    fn write(&mut self, layout: &VmcoreLayout, mut prefix: E::Buffer) -> Result<Verified, Failure> {
        let total = layout.total_len;
        let step = (self.device.max_transfer().max(PAGE_SIZE)) & !(PAGE_SIZE - 1);

        // ELF header block and notes: hashed before the device reads the
        // buffer (nothing may touch it while a write from it is outstanding).
        let prefix_len = layout.notes_offset + layout.notes_len_padded;
        let fed = prefix.with_bytes_mut(|bytes| {
            let len = usize::try_from(prefix_len).map_or(bytes.len(), |n| n.min(bytes.len()));
            self.integrity.update(&bytes[..len])
        });
        fed.map_err(hasher_bug)?;
        let addr = prefix.addr();
        let mut done = 0;
        while done < prefix_len {
            let len = (prefix_len - done).min(step);
            self.submit(
                DUMP_OFFSET + done,
                addr + done,
                len,
                WriteStep::VmcorePrefix { offset: done },
            )?;
            done += len;
            self.advance(len)?;
        }

        // Memory, by DMA from where it is; hashed by the CPU from the same
        // place while the device works.
        for chunk in &layout.chunks {
            let mut done = 0;
            while done < chunk.len {
                let source = chunk.source + done;
                let offset = DUMP_OFFSET + chunk.file_offset + done;
                let left = chunk.len - done;
                let len = match self.skipped_at(source) {
                    Some(end) => self.write_zeros(source, offset, left.min(end - source))?,
                    None => {
                        let len = left.min(step).min(self.next_skipped(source) - source);
                        self.write_memory(source, offset, len)?;
                        len
                    }
                };
                done += len;
                self.advance(len)?;
                within_time_limit(self.env)?;
            }
        }

        let split = self.profile.write;
        self.profile.enter(Phase::Final, self.env.now_us());
        self.complete_all()?;
        self.device
            .flush()
            .map_err(|e| Failure::device(WriteStep::FinalFlush, e))?;
        self.profile.write = split;
        self.env.say(format_args!(
            "all {total} bytes written and flushed (up to {} write(s) in flight)",
            self.depth
        ));
        self.header.state = DumpState::Complete;
        self.integrity.seal(self.header);
        // Said before the final header write, so that it is in the stored log.
        let now = self.env.now_us();
        self.env.say(format_args!("{}", self.profile.line(now)));
        self.records
            .write(
                self.device,
                self.env,
                self.header,
                self.integrity.table(),
                total,
            )
            .map_err(|(_, e)| Failure::device(WriteStep::FinalHeader, e))?;
        Ok(self.integrity.verified(self.header))
    }

    /// Begin one write of the vmcore, first completing the oldest
    /// outstanding ones until there is room.
    fn submit(&mut self, offset: u64, phys: u64, len: u64, step: WriteStep) -> Result<(), Failure> {
        while self.in_flight.len() >= self.depth {
            self.complete_oldest()?;
        }
        start_write_timed(
            self.device,
            self.env,
            self.profile,
            &mut self.first_write_said,
            (offset, phys, len),
        )
        .map_err(|e| Failure::device(step, e))?;
        self.in_flight.push_back(step);
        Ok(())
    }

    /// Wait for the oldest outstanding write.
    fn complete_oldest(&mut self) -> Result<(), Failure> {
        let Some(step) = self.in_flight.pop_front() else {
            return Ok(());
        };
        wait_timed(self.device, self.env, self.profile).map_err(|e| Failure::device(step, e))
    }

    /// Wait for every outstanding write.
    fn complete_all(&mut self) -> Result<(), Failure> {
        while !self.in_flight.is_empty() {
            self.complete_oldest()?;
        }
        Ok(())
    }

    /// After a failure: let the device finish what it was given, so that
    /// the failed header can follow. Returns whether every write succeeded.
    fn complete_all_ignoring_errors(&mut self) -> bool {
        let mut all_ok = true;
        while !self.in_flight.is_empty() {
            all_ok &= self.complete_oldest().is_ok();
        }
        all_ok
    }

    /// If `addr` is in a skipped range, that range's end.
    fn skipped_at(&self, addr: u64) -> Option<u64> {
        self.skipped
            .iter()
            .find(|r| r.start <= addr && addr < r.end)
            .map(|r| r.end)
    }

    /// Where the next skipped range after `addr` starts (or the top).
    fn next_skipped(&self, addr: u64) -> u64 {
        self.skipped
            .iter()
            .map(|r| r.start)
            .find(|&s| s > addr)
            .unwrap_or(u64::MAX)
    }

    /// One piece of old memory: the device reads it by DMA while the CPU
    /// hashes it (not even read when nothing is recorded).
    fn write_memory(&mut self, source: u64, offset: u64, len: u64) -> Result<(), Failure> {
        self.submit(offset, source, len, WriteStep::Memory { source, offset })?;
        if matches!(self.integrity, Integrity::None) {
            return Ok(());
        }
        let t0 = self.env.now_us();
        let integrity = &mut self.integrity;
        let mut fed = Ok(());
        let mapped = self.env.with_old_memory(source, len, &mut |bytes| {
            fed = integrity.update(bytes);
        });
        self.profile.write.hashing_us += self.env.now_us().saturating_sub(t0);
        if !mapped {
            return Err(Failure::OldMemoryUnmapped { source });
        }
        fed.map_err(hasher_bug)
    }

    /// Zeros in place of a skipped range; returns the bytes written (at
    /// most the zero buffer).
    fn write_zeros(&mut self, source: u64, offset: u64, len: u64) -> Result<u64, Failure> {
        let Some(zeros) = self.zeros.as_ref() else {
            return Err(Failure::OutOfMemory {
                what: "the zero buffer",
            });
        };
        let len = len.min(ZERO_BYTES as u64);
        let addr = zeros.addr();
        self.submit(offset, addr, len, WriteStep::Memory { source, offset })?;
        let t0 = self.env.now_us();
        let fed = self.integrity.update_zeros(len);
        self.profile.write.hashing_us += self.env.now_us().saturating_sub(t0);
        fed.map_err(hasher_bug)?;
        Ok(len)
    }

    /// Count `len` bytes; at a checkpoint, complete every write, then store
    /// the log, the table and the header claiming them.
    fn advance(&mut self, len: u64) -> Result<(), Failure> {
        let Some(percent) = self.progress.advance(len) else {
            return Ok(());
        };
        self.complete_all()?;
        let t0 = self.env.now_us();
        let p = &self.progress;
        let rate = mib_per_s_x10(p.done, t0.saturating_sub(p.started_us));
        self.env.say(format_args!(
            "{percent:3}% {} / {} MiB, {}.{} MiB/s",
            p.done >> 20,
            p.total >> 20,
            rate / 10,
            rate % 10
        ));
        let done = p.done;
        self.records
            .write(
                self.device,
                self.env,
                self.header,
                self.integrity.table(),
                done,
            )
            .map_err(|(step, e)| match step {
                RecordStep::Flush => Failure::device(WriteStep::CheckpointFlush { percent }, e),
                RecordStep::Write => Failure::device(WriteStep::CheckpointHeader { percent }, e),
            })?;
        self.profile.write.checkpoints_us += self.env.now_us().saturating_sub(t0);
        Ok(())
    }
}

/// Begin one dump write of `(offset, phys, len)`: the first one of the run is said on the
/// console (`first dump write at +N ms`), and the time spent submitting is counted in the
/// profile. Shared by the whole vmcore and the staged formats.
fn start_write_timed<D: BlockDevice, E: WriterEnv>(
    device: &mut D,
    env: &mut E,
    profile: &mut Profile,
    first_said: &mut bool,
    (offset, phys, len): (u64, u64, u64),
) -> Result<(), D::Error> {
    if !*first_said {
        *first_said = true;
        let now = env.now_us();
        env.say(format_args!(
            "first dump write at +{} ms",
            profile.since_entry_us(now) / 1000
        ));
    }
    let t0 = env.now_us();
    let started = device.start_write(offset, phys, len);
    profile.write.submitting_us += env.now_us().saturating_sub(t0);
    started
}

/// Wait for the oldest dump write, the wait counted in the profile.
fn wait_timed<D: BlockDevice, E: WriterEnv>(
    device: &mut D,
    env: &mut E,
    profile: &mut Profile,
) -> Result<(), D::Error> {
    let t0 = env.now_us();
    let waited = device.wait();
    profile.write.device_wait_us += env.now_us().saturating_sub(t0);
    waited
}

/// The chunk hasher refused a piece: the writer fed it out of order.
fn hasher_bug(error: FeedError) -> Failure {
    Failure::Internal(FixedString::display(format_args!(
        "chunk checksums: {error}"
    )))
}

/// MiB/s × 10 (one decimal without floating point).
pub fn mib_per_s_x10(bytes: u64, us: u64) -> u64 {
    if us == 0 {
        return 0;
    }
    u64::try_from(u128::from(bytes) * 10_000_000 / (u128::from(us) << 20)).unwrap_or(u64::MAX)
}

/// Progress: a checkpoint every `CHECKPOINT_PERCENT` percent.
struct Progress {
    total: u64,
    done: u64,
    next_percent: u64,
    started_us: u64,
}

impl Progress {
    fn new(total: u64, now_us: u64) -> Self {
        Self {
            total: total.max(1),
            done: 0,
            next_percent: CHECKPOINT_PERCENT,
            started_us: now_us,
        }
    }

    /// Count `bytes`; returns the percentage when a checkpoint is crossed
    /// (not at 100 %: the final header follows).
    fn advance(&mut self, bytes: u64) -> Option<u64> {
        self.done += bytes;
        let percent =
            u64::try_from(u128::from(self.done) * 100 / u128::from(self.total)).unwrap_or(100);
        if percent < self.next_percent || percent >= 100 {
            return None;
        }
        while self.next_percent <= percent {
            self.next_percent += CHECKPOINT_PERCENT;
        }
        Some(percent)
    }
}

#[cfg(test)]
mod tests;
