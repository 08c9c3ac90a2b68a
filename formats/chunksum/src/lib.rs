//! Per-chunk XXH64 checksums of a minicap dump ([`Verification::Xxh64Chunks`]).
//!
//! The dump is cut into chunks of `chunk_size` bytes ([`chunk_size_for`]); the table at
//! [`CHUNK_TABLE_OFFSET`] on the device holds, per chunk, the XXH64 (seed 0) of its bytes as a
//! little-endian `u64`. The layout itself is defined in `minicap-dumpheader`; this crate
//! computes the values:
//!
//! * [`ChunkHasher`]: fed the dump's bytes in order, in pieces of any size, it yields each
//!   chunk's entry as soon as the chunk's last byte has been fed. The capture kernel uses it
//!   while the device writes; `minicap save` uses it while copying.
//! * [`table_xxh64`]: the checksum of the table itself (the header's `table_xxh64`).
//! * [`blocks_to_write`], [`encode_block`], [`block_device_offset`]: which 4 KiB blocks of the
//!   table a checkpoint must write, and their bytes.
//!
//! # Use in the capture kernel
//!
//! ```text
//! header.set_verification(Verification::Xxh64Chunks);      // after dump_length is known
//! let mut hasher = ChunkHasher::new(header.dump_length);   // chunk size = header.chunk_size
//! let mut table = vec![0u64; chunk_count(dump_length, chunk_size)];  // 8 bytes per chunk
//! let mut on_device = 0;                                   // entries already on the device
//! for each piece of the dump, in order:
//!     hasher.update_into(piece, &mut table)?;              // before or while it is written
//! at each checkpoint, with `written` bytes written and flushed (all of them hashed):
//!     let k = finished_chunks(written, dump_length, chunk_size);
//!     header.written = written;
//!     header.table_xxh64 = table_xxh64(&table[..k]);
//!     write the console log;
//!     for block in blocks_to_write(on_device, k) {
//!         encode_block(&table[..k], block, &mut buf);      // 4 KiB
//!         write buf at block_device_offset(block);
//!     }
//!     flush; write the header; flush; on_device = k;
//! ```
//!
//! The final header (complete) is the same checkpoint with `written == dump_length`.
//!
//! XXH64 rather than a cryptographic hash because the capture runs on one CPU while the device
//! writes: scalar XXH64 is about ten times as fast as SHA-256 natively and fifty times as fast
//! under QEMU TCG. It detects accidental damage, not tampering.
//!
//! `no_std` without `alloc`: the capture kernel keeps the table in a slice it owns.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod hasher;
mod table;

pub use hasher::{ChunkHasher, FeedError};
pub use table::{
    block_device_offset, blocks_to_write, encode_block, table_xxh64, ENTRIES_PER_BLOCK,
    TABLE_BLOCKS, TABLE_BLOCK_LEN,
};

pub use minicap_dumpheader::{
    chunk_count, chunk_size_for, finished_chunks, Verification, CHUNK_TABLE_OFFSET, MAX_CHUNKS,
    MIN_CHUNK_SIZE,
};

/// XXH64 with seed 0 of `data`: the value of one chunk read whole.
pub fn xxh64(data: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(data, 0)
}

#[cfg(test)]
mod tests;
