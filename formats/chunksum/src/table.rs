//! The table on the device: its checksum and the 4 KiB blocks a checkpoint writes.
//!
//! A capture writes the table in whole 4 KiB blocks (a sector size every device accepts),
//! before the header that counts its entries: console log, table blocks, flush, header, flush.
//! So a header never describes entries that are not on the device yet.

use core::ops::Range;

use minicap_dumpheader::{CHUNK_ENTRY_LEN, CHUNK_TABLE_CAPACITY, CHUNK_TABLE_OFFSET};
use xxhash_rust::xxh64::Xxh64;

/// Bytes per table block.
pub const TABLE_BLOCK_LEN: u64 = 4096;

/// Entries per table block.
pub const ENTRIES_PER_BLOCK: u64 = TABLE_BLOCK_LEN / CHUNK_ENTRY_LEN;

/// Blocks in the table area (224).
pub const TABLE_BLOCKS: u64 = CHUNK_TABLE_CAPACITY / TABLE_BLOCK_LEN;

/// XXH64 (seed 0) of `entries` as little-endian bytes: the header's `table_xxh64` when
/// `entries` are those of the finished chunks.
pub fn table_xxh64(entries: &[u64]) -> u64 {
    let mut state = Xxh64::new(0);
    let mut buf = [0u8; 512];
    for group in entries.chunks(buf.len() / 8) {
        for (out, entry) in buf.chunks_exact_mut(8).zip(group) {
            out.copy_from_slice(&entry.to_le_bytes());
        }
        state.update(&buf[..group.len() * 8]);
    }
    state.digest()
}

/// The table blocks a checkpoint must write when the device already holds the first
/// `on_device` final entries and `finished` entries are final now: from the block holding
/// entry `on_device` (it may hold non-final values from the last checkpoint) to the block
/// holding entry `finished - 1`. Empty when nothing new is final.
pub fn blocks_to_write(on_device: u64, finished: u64) -> Range<u64> {
    let first = on_device / ENTRIES_PER_BLOCK;
    if finished <= on_device {
        return first..first;
    }
    first..finished.div_ceil(ENTRIES_PER_BLOCK)
}

/// Where table block `block` lies on the device.
pub fn block_device_offset(block: u64) -> u64 {
    CHUNK_TABLE_OFFSET + block * TABLE_BLOCK_LEN
}

/// Fills `out` with table block `block`: entries `block * 512 ..` of `table` as
/// little-endian bytes, zero past the end of `table`.
pub fn encode_block(table: &[u64], block: u64, out: &mut [u8; 4096]) {
    out.fill(0);
    let first = usize::try_from(block.saturating_mul(ENTRIES_PER_BLOCK)).unwrap_or(usize::MAX);
    let entries = table.get(first..).unwrap_or(&[]);
    for (slot, entry) in out.chunks_exact_mut(8).zip(entries) {
        slot.copy_from_slice(&entry.to_le_bytes());
    }
}
