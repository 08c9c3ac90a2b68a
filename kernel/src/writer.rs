//! Writing the dump: the minicap header, then the vmcore straight from old
//! memory by DMA (the CPU hashes the same bytes), with checkpoints that keep
//! the header's `written` field true, then the final header.

use crate::failure::Failure;
use crate::hw::{phys, tsc};
use crate::{failure, say};
use alloc::vec::Vec;
use minicap_drivers::BlockDevice;
use minicap_dumpheader::{DumpHeader, DumpState, DUMP_OFFSET, HEADER_LEN};
use minicap_elfcore::{CoreHeaders, VmcoreLayout};
use sha2::{Digest, Sha256};

const PAGE: u64 = 4096;
/// How often the header's `written` field is brought up to date (percent).
const CHECKPOINT_PERCENT: u64 = 10;

/// Write the 512-byte minicap header at the start of the device, through the
/// DMA page `page`.
pub fn write_header<D: BlockDevice>(
    device: &mut D,
    page: u64,
    header: &DumpHeader,
) -> Result<(), D::Error> {
    phys::copy_into_dma(page, &header.encode());
    device.write(0, page, HEADER_LEN as u64)
}

/// What writing the vmcore took.
pub struct Written {
    /// SHA-256 of the vmcore as stored.
    pub sha256: [u8; 32],
    /// Time spent waiting for the device after hashing a piece.
    pub io_us: u64,
    /// Time hashing (the device writes meanwhile).
    pub hash_us: u64,
}

/// Write the vmcore after the header area: ELF headers, notes, then every
/// PT_LOAD from old memory. `header` is "writing" on entry and "complete" on
/// success; on failure the caller records the failure in it.
pub fn write_vmcore<D: BlockDevice>(
    device: &mut D,
    header_page: u64,
    header: &mut DumpHeader,
    core: &CoreHeaders,
    layout: &VmcoreLayout,
) -> Result<Written, Failure> {
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
                write_header(device, header_page, header)
                    .map_err(|e| failure!("updating the header after {percent}%: {e}"))?;
            }
        }
    }

    device.flush().map_err(|e| failure!("final flush: {e}"))?;
    let sha256: [u8; 32] = hasher.finalize().into();
    header.state = DumpState::Complete;
    header.written = total;
    header.sha256 = sha256;
    write_header(device, header_page, header)
        .map_err(|e| failure!("writing the final header: {e}"))?;
    device
        .flush()
        .map_err(|e| failure!("flushing the final header: {e}"))?;
    Ok(Written {
        sha256,
        io_us: progress.io_us,
        hash_us: progress.hash_us,
    })
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
