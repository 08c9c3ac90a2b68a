//! Writing the dump: the minicap header, then the vmcore straight from old
//! memory by DMA (the CPU hashes the same bytes), with checkpoints that keep
//! the header's `written` field true, then the final header.

use crate::console;
use crate::failure::Failure;
use crate::hw::dma::DmaBuffer;
use crate::hw::{phys, tsc};
use crate::{failure, say};
use alloc::vec::Vec;
use minicap_drivers::BlockDevice;
use minicap_dumpheader::{DumpHeader, DumpState, DUMP_OFFSET, HEADER_LEN, LOG_OFFSET};
use minicap_elfcore::{CoreHeaders, VmcoreLayout};
use sha2::{Digest, Sha256};

const PAGE: u64 = 4096;
const PAGE_BYTES: usize = 4096;
/// The header is written as one block this big (a multiple of every
/// logical block size minicap supports).
const HEADER_BLOCK: usize = 4096;
const LOG_BYTES: usize = 64 << 10;
const _: () = assert!(LOG_BYTES as u64 == minicap_dumpheader::LOG_CAPACITY);
/// How often the header's `written` field is brought up to date (percent).
const CHECKPOINT_PERCENT: u64 = 10;

/// Writes the device's records: the console log into its area, a flush,
/// then the minicap header that describes it (so the header never claims a
/// log that is not on the device), then a flush. Owns the DMA buffers this
/// needs. The header goes out as a whole 4 KiB block (the header, then the
/// zeros `minicap format` left): that works on 512-byte and 4 KiB-sector
/// disks alike without a read-modify-write.
pub struct Records {
    header: DmaBuffer,
    log: DmaBuffer,
}

impl Records {
    /// Allocate the DMA buffers.
    pub fn new() -> Result<Self, Failure> {
        let header = DmaBuffer::new(HEADER_BLOCK, PAGE_BYTES)
            .ok_or_else(|| failure!("out of memory for the header buffer"))?;
        let log = DmaBuffer::new(LOG_BYTES, PAGE_BYTES)
            .ok_or_else(|| failure!("out of memory for the log buffer"))?;
        Ok(Self { header, log })
    }

    /// Store the console log so far, then `header` (with `log_length` set).
    pub fn write<D: BlockDevice>(
        &mut self,
        device: &mut D,
        header: &mut DumpHeader,
    ) -> Result<(), D::Error> {
        let length = self.log.with_bytes_mut(|bytes| {
            let n = console::copy_log(bytes);
            // The tail of the last block: zeros, not stale text.
            let end = (n.div_ceil(PAGE_BYTES) * PAGE_BYTES).min(bytes.len());
            bytes[n..end].fill(0);
            n
        });
        if length > 0 {
            let blocks = (length as u64).div_ceil(PAGE) * PAGE;
            device.write(LOG_OFFSET, self.log.device_address(), blocks)?;
            device.flush()?;
        }
        header.log_length = u32::try_from(length).unwrap_or(0);
        let encoded = header.encode();
        self.header.with_bytes_mut(|bytes| {
            bytes.fill(0);
            bytes[..HEADER_LEN].copy_from_slice(&encoded);
        });
        device.write(0, self.header.device_address(), HEADER_BLOCK as u64)?;
        device.flush()
    }
}

/// Write the vmcore after the header area: ELF headers, notes, then every
/// PT_LOAD from old memory; returns the vmcore's SHA-256. `header` is
/// "writing" on entry and "complete" on success; on failure the caller
/// records the failure in it.
pub fn write_vmcore<D: BlockDevice>(
    device: &mut D,
    records: &mut Records,
    header: &mut DumpHeader,
    core: &CoreHeaders,
    layout: &VmcoreLayout,
) -> Result<[u8; 32], Failure> {
    let total = layout.total_len;
    let mut hasher = Sha256::new();
    let mut progress = Progress::new(total);

    // The ELF header block and the notes come from the heap.
    let notes_len =
        usize::try_from(layout.notes_len_padded).map_err(|_| failure!("notes too large"))?;
    let mut notes = Vec::new();
    notes
        .try_reserve_exact(notes_len)
        .map_err(|_| failure!("out of memory for the notes"))?;
    notes.extend_from_slice(&core.notes);
    notes.resize(notes_len, 0);
    for (offset, bytes) in [(0, &layout.header[..]), (layout.notes_offset, &notes[..])] {
        if bytes.is_empty() {
            continue;
        }
        device
            .write(
                DUMP_OFFSET + offset,
                phys::address_of(bytes),
                bytes.len() as u64,
            )
            .map_err(|e| failure!("writing the vmcore at byte {offset}: {e}"))?;
        hasher.update(bytes);
        progress.advance(bytes.len() as u64);
    }

    // Memory, by DMA from where it is; hashed by the CPU from the same place.
    let step = device.max_transfer().max(PAGE) & !(PAGE - 1);
    for chunk in &layout.chunks {
        let mut done = 0;
        while done < chunk.len {
            let len = (chunk.len - done).min(step);
            let source = chunk.source + done;
            let offset = DUMP_OFFSET + chunk.file_offset + done;
            // The device reads this piece by DMA while the CPU hashes it.
            let t0 = tsc::now_us();
            device
                .start_write(offset, source, len)
                .map_err(|e| failure!("writing memory {source:#x} to byte {offset:#x}: {e}"))?;
            let hashed = phys::with_slice(source, len, |bytes| hasher.update(bytes));
            let t1 = tsc::now_us();
            let waited = device.wait();
            progress.hash_us += t1 - t0;
            progress.io_us += tsc::now_us() - t1;
            waited.map_err(|e| failure!("writing memory {source:#x} to byte {offset:#x}: {e}"))?;
            hashed.ok_or_else(|| failure!("old memory at {source:#x} is not mapped"))?;
            done += len;
            if let Some(percent) = progress.advance(len) {
                // Checkpoint: what is flushed is what the header claims.
                device
                    .flush()
                    .map_err(|e| failure!("flush after {percent}%: {e}"))?;
                header.written = progress.done;
                records
                    .write(device, header)
                    .map_err(|e| failure!("updating the header after {percent}%: {e}"))?;
            }
        }
    }

    device.flush().map_err(|e| failure!("final flush: {e}"))?;
    let sha256: [u8; 32] = hasher.finalize().into();
    // Said before the final header write, so that it is in the stored log.
    say!(
        "all {total} bytes written and flushed; time spent: SHA-256 {} ms (the device writing meanwhile), then waiting for the device {} ms",
        progress.hash_us / 1000,
        progress.io_us / 1000
    );
    header.state = DumpState::Complete;
    header.written = total;
    header.sha256 = sha256;
    records
        .write(device, header)
        .map_err(|e| failure!("writing the final header: {e}"))?;
    Ok(sha256)
}

/// MiB/s × 10 (one decimal without floating point).
pub fn mib_per_s_x10(bytes: u64, us: u64) -> u64 {
    if us == 0 {
        return 0;
    }
    u64::try_from(u128::from(bytes) * 10_000_000 / (u128::from(us) << 20)).unwrap_or(u64::MAX)
}

/// Progress reporting: a line every `CHECKPOINT_PERCENT` percent.
struct Progress {
    total: u64,
    done: u64,
    next_percent: u64,
    started_us: u64,
    io_us: u64,
    hash_us: u64,
}

impl Progress {
    fn new(total: u64) -> Self {
        Self {
            total: total.max(1),
            done: 0,
            next_percent: CHECKPOINT_PERCENT,
            started_us: tsc::now_us(),
            io_us: 0,
            hash_us: 0,
        }
    }

    /// Count `bytes`; returns the percentage when a checkpoint is crossed.
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
        let rate = mib_per_s_x10(self.done, tsc::now_us().saturating_sub(self.started_us));
        say!(
            "{percent:3}% {} / {} MiB, {}.{} MiB/s",
            self.done >> 20,
            self.total >> 20,
            rate / 10,
            rate % 10
        );
        Some(percent)
    }
}
