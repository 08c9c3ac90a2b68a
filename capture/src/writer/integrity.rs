//! What the writer records so that `minicap save` can check the dump
//! (`minicap.verify=`): the XXH64 of every chunk in the table before the
//! dump, the SHA-256 of the whole dump, or nothing.
//!
//! Every byte of the vmcore goes through [`Integrity::update`] exactly once,
//! in order: the ELF header and notes, the PT_LOAD data, zeros for skipped
//! ranges.

use crate::text::FixedString;
use crate::Failure;
use alloc::vec::Vec;
use core::fmt;
use minicap_bootinfo::cmdline::Verify;
use minicap_chunksum::{
    block_device_offset, blocks_to_write, chunk_count, encode_block, finished_chunks, table_xxh64,
    ChunkHasher, FeedError, TABLE_BLOCK_LEN,
};
use minicap_dumpheader::{DumpHeader, Verification};
use minicap_physmem::{PAGE_BYTES, PAGE_SIZE};

// A table block is one page: the writer's block buffers are pages.
const _: () = assert!(TABLE_BLOCK_LEN == PAGE_SIZE);
use sha2::{Digest, Sha256};

/// The header's verification for the command line's `minicap.verify=`.
pub fn verification(option: Verify) -> Verification {
    match option {
        Verify::Chunks => Verification::Xxh64Chunks,
        Verify::Sha256 => Verification::Sha256,
        Verify::None => Verification::None,
    }
}

/// The running check of the vmcore.
pub enum Integrity {
    /// XXH64 per chunk.
    Chunks(ChunkTable),
    /// SHA-256 of the whole dump.
    Sha256(Sha256),
    /// Nothing.
    None,
}

impl Integrity {
    /// The check `header.verify` asks for (its `chunk_size` set for the
    /// dump length); the chunk table is allocated here, before anything is
    /// written.
    pub fn for_header(header: &DumpHeader) -> Result<Self, Failure> {
        Ok(match header.verify {
            Verification::Xxh64Chunks => Self::Chunks(ChunkTable::new(header)?),
            Verification::Sha256 => Self::Sha256(Sha256::new()),
            Verification::None => Self::None,
        })
    }

    /// The next bytes of the vmcore.
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), FeedError> {
        match self {
            Self::Chunks(table) => table.update(bytes),
            Self::Sha256(hasher) => {
                hasher.update(bytes);
                Ok(())
            }
            Self::None => Ok(()),
        }
    }

    /// The next `len` bytes of the vmcore are zeros (a multiple of 4 KiB).
    pub fn update_zeros(&mut self, len: u64) -> Result<(), FeedError> {
        if matches!(self, Self::None) {
            return Ok(());
        }
        let zero_page = [0u8; PAGE_BYTES];
        for _ in 0..len / PAGE_BYTES as u64 {
            self.update(&zero_page)?;
        }
        Ok(())
    }

    /// The chunk table, when there is one.
    pub fn table(&mut self) -> Option<&mut ChunkTable> {
        match self {
            Self::Chunks(table) => Some(table),
            Self::Sha256(_) | Self::None => None,
        }
    }

    /// Once every byte went through [`Integrity::update`]: puts the final
    /// value into the header (the SHA-256; the chunk table's checksum is set
    /// by each header write).
    pub fn seal(&mut self, header: &mut DumpHeader) {
        if let Self::Sha256(hasher) = self {
            header.sha256 = core::mem::take(hasher).finalize().into();
        }
    }

    /// What the complete header records.
    pub fn verified(&self, header: &DumpHeader) -> Verified {
        match self {
            Self::Chunks(table) => Verified::Chunks {
                chunk_size: table.hasher.chunk_size(),
                chunks: table.entries.len() as u64,
                table_xxh64: header.table_xxh64,
            },
            Self::Sha256(_) => Verified::Sha256(header.sha256),
            Self::None => Verified::None,
        }
    }
}

/// The chunk table: every entry, kept in the heap (8 bytes per chunk, at most
/// 896 KiB; 25 KiB for a 3 GiB dump), written to the device block by block
/// at each checkpoint.
pub struct ChunkTable {
    hasher: ChunkHasher,
    entries: Vec<u64>,
    /// Entries the device holds final, as of the last header written.
    on_device: u64,
}

impl ChunkTable {
    fn new(header: &DumpHeader) -> Result<Self, Failure> {
        let hasher = ChunkHasher::with_chunk_size(header.dump_length, header.chunk_size)
            .ok_or_else(|| Failure::Internal(FixedString::display("chunk size 0 in the header")))?;
        let count = usize::try_from(chunk_count(header.dump_length, header.chunk_size))
            .unwrap_or(usize::MAX);
        let mut entries = Vec::new();
        entries
            .try_reserve_exact(count)
            .map_err(|_| Failure::OutOfMemory {
                what: "the chunk checksum table",
            })?;
        entries.resize(count, 0);
        Ok(Self {
            hasher,
            entries,
            on_device: 0,
        })
    }

    fn update(&mut self, bytes: &[u8]) -> Result<(), FeedError> {
        self.hasher.update_into(bytes, &mut self.entries)
    }

    /// The entries of the chunks wholly within the first `written` bytes
    /// (all of them hashed already).
    pub fn finished(&self, written: u64) -> &[u64] {
        let k = finished_chunks(written, self.hasher.dump_length(), self.hasher.chunk_size())
            .min(self.hasher.finished());
        &self.entries[..usize::try_from(k).unwrap_or(0)]
    }

    /// The table blocks that must reach the device before a header claims
    /// `written` bytes: (device offset, block index) of each.
    pub fn blocks_for(&self, written: u64) -> impl Iterator<Item = (u64, u64)> {
        let k = self.finished(written).len() as u64;
        blocks_to_write(self.on_device, k).map(|block| (block_device_offset(block), block))
    }

    /// Encodes block `block` as it must be when the header claims `written`.
    pub fn encode(&self, written: u64, block: u64, out: &mut [u8]) {
        let mut buf = [0u8; PAGE_BYTES];
        encode_block(self.finished(written), block, &mut buf);
        out[..buf.len()].copy_from_slice(&buf);
    }

    /// The header's `table_xxh64` when it claims `written` bytes.
    pub fn checksum(&self, written: u64) -> u64 {
        table_xxh64(self.finished(written))
    }

    /// A header claiming `written` bytes is on the device (and so are the
    /// table entries it covers).
    pub fn confirmed(&mut self, written: u64) {
        self.on_device = self.finished(written).len() as u64;
    }
}

/// What the success line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// `chunks` XXH64 values of `chunk_size`-byte chunks; the table's own XXH64.
    Chunks {
        /// Bytes per chunk.
        chunk_size: u64,
        /// Table entries.
        chunks: u64,
        /// The header's `table_xxh64`.
        table_xxh64: u64,
    },
    /// The SHA-256 of the whole dump.
    Sha256([u8; 32]),
    /// Nothing recorded.
    None,
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chunks {
                chunk_size,
                chunks,
                table_xxh64,
            } => write!(
                f,
                "xxh64 per {} chunk ({chunks} chunks), table xxh64 {table_xxh64:016x}",
                ChunkSize(*chunk_size)
            ),
            Self::Sha256(sha256) => {
                f.write_str("sha256 ")?;
                sha256.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Self::None => f.write_str("not verified (minicap.verify=none)"),
        }
    }
}

/// A chunk size as `minicap info` shows it: "1 MiB", "16 MiB", "1 GiB".
pub struct ChunkSize(pub u64);

impl fmt::Display for ChunkSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = self.0;
        if size >= 1 << 30 && size.is_multiple_of(1 << 30) {
            write!(f, "{} GiB", size >> 30)
        } else if size.is_multiple_of(1 << 20) {
            write!(f, "{} MiB", size >> 20)
        } else {
            write!(f, "{size} bytes")
        }
    }
}
