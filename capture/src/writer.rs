//! Writing the dump, in an order that keeps the on-device header true at
//! every moment:
//!
//! 1. log, flush, header "writing" (with `written` = 0), flush: before the
//!    first byte of the dump, so a power loss from here on leaves a header
//!    that says "writing", never the previous dump's "complete" over
//!    half-new data;
//! 2. the vmcore: ELF header and notes, then every PT_LOAD straight from old
//!    memory by DMA (the CPU hashes the same bytes meanwhile); ranges the
//!    memory map does not call memory are not read: zeros go in their place;
//! 3. every 10 %: flush, then log + header with `written` = the bytes just
//!    flushed (a checkpoint);
//! 4. final flush, then log + header "complete" with the SHA-256.
//!
//! On any failure after step 1 the header becomes "failed" with the failure
//! code and message, `written` still the bytes confirmed at the last
//! checkpoint. The log always goes before the header that counts it.
//!
//! The writer touches no hardware: the device is a [`BlockDevice`], and old
//! memory, the console log, the clock and DMA buffers come from a
//! [`WriterEnv`] (the kernel's thin adapters; fakes in the tests).

use crate::failure::{DeviceName, WriteStep};
use crate::memory::SkippedRanges;
use crate::text::FixedString;
use crate::Failure;
use core::fmt;
use minicap_drivers::BlockDevice;
use minicap_dumpheader::{
    DumpHeader, DumpState, DUMP_OFFSET, HEADER_LEN, LOG_CAPACITY, LOG_OFFSET,
};
use minicap_elfcore::VmcoreLayout;
use minicap_physmem::{PAGE_BYTES, PAGE_SIZE};
use sha2::{Digest, Sha256};

/// Bytes of console log kept and stored: the device's log area.
#[allow(clippy::cast_possible_truncation)] // 64 KiB fits every usize
pub const LOG_BYTES: usize = LOG_CAPACITY as usize;
/// The header is written as one block this big: the largest logical block
/// size minicap supports, so the write never needs a read-modify-write.
pub const HEADER_BLOCK: usize = PAGE_BYTES;
/// How often the header's `written` field is brought up to date (percent).
pub const CHECKPOINT_PERCENT: u64 = 10;
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
    /// A monotonic clock in microseconds.
    fn now_us(&mut self) -> u64;
    /// Print one console line (it goes into the log too).
    fn say(&mut self, line: fmt::Arguments<'_>);
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
}

/// Write the dump. `header` is the new header ("writing", layout fields
/// set); on return it is what the device's header says. Returns the
/// vmcore's SHA-256.
pub fn write_dump<D: BlockDevice, E: WriterEnv>(
    device: &mut D,
    env: &mut E,
    header: &mut DumpHeader,
    dump: &Dump<'_>,
) -> Result<[u8; 32], Failure> {
    let block_size = device.sector_size();
    if !block_size_supported(block_size) {
        return Err(Failure::UnsupportedBlockSize {
            device: *dump.device_name,
            block_size,
        });
    }
    // Every buffer first: running out of memory must leave the device alone.
    let mut records = Records::new(env)?;
    let prefix = vmcore_prefix(env, dump)?;
    let zeros = if dump.skipped.is_empty() {
        None
    } else {
        Some(env.dma_buffer(ZERO_BYTES).ok_or(Failure::OutOfMemory {
            what: "the zero buffer",
        })?)
    };
    let (ranges, bytes) = crate::memory::skipped_totals(dump.skipped);
    header.skipped_ranges = ranges;
    header.skipped_bytes = bytes;
    header.state = DumpState::Writing;
    header.written = 0;
    records
        .write(device, env, header)
        .map_err(|e| Failure::HeaderWrite {
            device: *dump.device_name,
            error: FixedString::display(e),
        })?;

    let started = env.now_us();
    let mut vmcore = Vmcore {
        device,
        env,
        records: &mut records,
        header,
        hasher: Sha256::new(),
        progress: Progress::new(dump.layout.total_len, started),
        zeros,
        skipped: dump.skipped,
    };
    match vmcore.write(dump.layout, prefix) {
        Ok(sha256) => Ok(sha256),
        Err(failure) => {
            let Vmcore {
                device,
                env,
                records,
                header,
                ..
            } = vmcore;
            header.state = DumpState::Failed;
            header.failure_code = failure.code();
            header.set_message(FixedString::<256>::display(failure).as_str());
            env.say(format_args!(
                "capture failed after {} of {} bytes were confirmed on the device: {failure}",
                header.written, header.dump_length
            ));
            let _ = records.write(device, env, header);
            Err(failure)
        }
    }
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

/// The device's records: the console log into its area, a flush, then the
/// minicap header that describes it (so the header never claims a log that
/// is not on the device), then a flush. The header goes out as a whole
/// 4 KiB block (the header, then the zeros `minicap format` left).
struct Records<B> {
    header: B,
    log: B,
}

impl<B: DmaBuffer> Records<B> {
    fn new<E: WriterEnv<Buffer = B>>(env: &mut E) -> Result<Self, Failure> {
        let header = env.dma_buffer(HEADER_BLOCK).ok_or(Failure::OutOfMemory {
            what: "the header buffer",
        })?;
        let log = env.dma_buffer(LOG_BYTES).ok_or(Failure::OutOfMemory {
            what: "the log buffer",
        })?;
        Ok(Self { header, log })
    }

    fn write<D: BlockDevice, E: WriterEnv<Buffer = B>>(
        &mut self,
        device: &mut D,
        env: &mut E,
        header: &mut DumpHeader,
    ) -> Result<(), D::Error> {
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
            device.write(LOG_OFFSET, self.log.addr(), blocks)?;
            device.flush()?;
        }
        header.log_length = u32::try_from(length).unwrap_or(0);
        let encoded = header.encode();
        self.header.with_bytes_mut(|bytes| {
            bytes.fill(0);
            bytes[..HEADER_LEN].copy_from_slice(&encoded);
        });
        device.write(0, self.header.addr(), HEADER_BLOCK as u64)?;
        device.flush()
    }
}

/// The vmcore being written.
struct Vmcore<'a, D, E: WriterEnv> {
    device: &'a mut D,
    env: &'a mut E,
    records: &'a mut Records<E::Buffer>,
    header: &'a mut DumpHeader,
    hasher: Sha256,
    progress: Progress,
    zeros: Option<E::Buffer>,
    skipped: &'a SkippedRanges,
}

impl<D: BlockDevice, E: WriterEnv> Vmcore<'_, D, E> {
    fn write(&mut self, layout: &VmcoreLayout, mut prefix: E::Buffer) -> Result<[u8; 32], Failure> {
        let total = layout.total_len;
        // ELF header block and notes.
        let prefix_len = layout.notes_offset + layout.notes_len_padded;
        let addr = prefix.addr();
        self.device
            .write(DUMP_OFFSET, addr, prefix_len)
            .map_err(|e| Failure::device(WriteStep::VmcorePrefix { offset: 0 }, e))?;
        prefix.with_bytes_mut(|bytes| self.hasher.update(bytes));
        self.advance(prefix_len)?;

        // Memory, by DMA from where it is; hashed by the CPU from the same place.
        let step = (self.device.max_transfer().max(PAGE_SIZE)) & !(PAGE_SIZE - 1);
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
            }
        }

        self.device
            .flush()
            .map_err(|e| Failure::device(WriteStep::FinalFlush, e))?;
        let sha256: [u8; 32] = core::mem::take(&mut self.hasher).finalize().into();
        // Said before the final header write, so that it is in the stored log.
        self.env.say(format_args!(
            "all {total} bytes written and flushed; time spent: SHA-256 {} ms (the device writing meanwhile), then waiting for the device {} ms",
            self.progress.hash_us / 1000,
            self.progress.io_us / 1000
        ));
        self.header.state = DumpState::Complete;
        self.header.written = total;
        self.header.sha256 = sha256;
        self.records
            .write(self.device, self.env, self.header)
            .map_err(|e| Failure::device(WriteStep::FinalHeader, e))?;
        Ok(sha256)
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
    /// hashes it.
    fn write_memory(&mut self, source: u64, offset: u64, len: u64) -> Result<(), Failure> {
        let step = WriteStep::Memory { source, offset };
        let t0 = self.env.now_us();
        self.device
            .start_write(offset, source, len)
            .map_err(|e| Failure::device(step, e))?;
        let hasher = &mut self.hasher;
        let hashed = self
            .env
            .with_old_memory(source, len, &mut |bytes| hasher.update(bytes));
        let t1 = self.env.now_us();
        let waited = self.device.wait();
        self.progress.hash_us += t1.saturating_sub(t0);
        self.progress.io_us += self.env.now_us().saturating_sub(t1);
        waited.map_err(|e| Failure::device(step, e))?;
        if !hashed {
            return Err(Failure::OldMemoryUnmapped { source });
        }
        Ok(())
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
        self.device
            .write(offset, zeros.addr(), len)
            .map_err(|e| Failure::device(WriteStep::Memory { source, offset }, e))?;
        let zero_page = [0u8; PAGE_BYTES];
        for _ in 0..len / PAGE_SIZE {
            self.hasher.update(zero_page);
        }
        Ok(len)
    }

    /// Count `len` bytes; at a checkpoint, flush and bring the header up to date.
    fn advance(&mut self, len: u64) -> Result<(), Failure> {
        let Some(percent) = self.progress.advance(len) else {
            return Ok(());
        };
        let now = self.env.now_us();
        let p = &self.progress;
        let rate = mib_per_s_x10(p.done, now.saturating_sub(p.started_us));
        self.env.say(format_args!(
            "{percent:3}% {} / {} MiB, {}.{} MiB/s",
            p.done >> 20,
            p.total >> 20,
            rate / 10,
            rate % 10
        ));
        // Checkpoint: what is flushed is what the header claims.
        self.device
            .flush()
            .map_err(|e| Failure::device(WriteStep::CheckpointFlush { percent }, e))?;
        self.header.written = self.progress.done;
        self.records
            .write(self.device, self.env, self.header)
            .map_err(|e| Failure::device(WriteStep::CheckpointHeader { percent }, e))
    }
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
    io_us: u64,
    hash_us: u64,
}

impl Progress {
    fn new(total: u64, now_us: u64) -> Self {
        Self {
            total: total.max(1),
            done: 0,
            next_percent: CHECKPOINT_PERCENT,
            started_us: now_us,
            io_us: 0,
            hash_us: 0,
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
