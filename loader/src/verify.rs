//! Checking a dump against what the capture recorded: the chunk table (XXH64 per chunk), the
//! whole-dump SHA-256, or nothing (`minicap.verify=none`).

use std::ops::Range;

use anyhow::{ensure, Context, Result};
use minicap_chunksum::{finished_chunks, table_xxh64, ChunkHasher, CHUNK_TABLE_OFFSET};
use minicap_dumpheader::DumpHeader;

use crate::device::Device;

/// The chunk table of a dump, as far as the header vouches for it.
pub enum Table {
    /// The entries of the finished chunks, their checksum matching the header's.
    Intact(Vec<u64>),
    /// The entries do not match the header's `table_xxh64`.
    Damaged {
        /// Entries checked.
        entries: u64,
        /// `table_xxh64` in the header.
        stored: u64,
        /// XXH64 of the entries on the device.
        computed: u64,
    },
}

/// Reads the table entries of the chunks wholly within `written` (the ones `table_xxh64`
/// covers) and checks them against the header. Only for a header with chunk checksums.
pub fn read_table(dev: &Device, h: &DumpHeader) -> Result<Table> {
    let entries = finished_chunks(h.written, h.dump_length, h.chunk_size);
    // At most MAX_CHUNKS entries (validated header): 896 KiB.
    let len = usize::try_from(entries * 8).context("chunk table too large")?;
    let bytes = dev
        .read_at(CHUNK_TABLE_OFFSET, len)
        .context("cannot read the chunk table")?;
    ensure!(
        bytes.len() == len,
        "the device ends inside the chunk table; truncated image?"
    );
    let table: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|e| u64::from_le_bytes(e.try_into().expect("8-byte chunks")))
        .collect();
    let computed = table_xxh64(&table);
    Ok(if computed == h.table_xxh64 {
        Table::Intact(table)
    } else {
        Table::Damaged {
            entries,
            stored: h.table_xxh64,
            computed,
        }
    })
}

/// Compares the dump's chunks with the table while the bytes stream past.
pub struct ChunkCheck {
    hasher: ChunkHasher,
    table: Vec<u64>,
    damaged: Vec<u64>,
}

impl ChunkCheck {
    /// A check of the dump `h` describes against `table` (from [`read_table`]).
    pub fn new(h: &DumpHeader, table: Vec<u64>) -> Result<Self> {
        let hasher = ChunkHasher::with_chunk_size(h.dump_length, h.chunk_size)
            .context("chunk size 0 in the header")?;
        Ok(Self {
            hasher,
            table,
            damaged: Vec::new(),
        })
    }

    /// The next bytes of the dump, in order.
    pub fn update(&mut self, data: &[u8]) {
        let Self {
            hasher,
            table,
            damaged,
        } = self;
        // The caller copies at most `written` <= `dump_length` bytes, so this cannot fail.
        let fed = hasher.update(data, |index, value| {
            let recorded = usize::try_from(index).ok().and_then(|i| table.get(i));
            if recorded != Some(&value) {
                damaged.push(index);
            }
        });
        debug_assert!(fed.is_ok(), "{fed:?}");
    }

    /// Chunks compared so far.
    pub fn checked(&self) -> u64 {
        self.hasher.finished()
    }

    /// Bytes fed after the last finished chunk (not verifiable: a partial dump's unfinished
    /// chunk).
    pub fn unverified_tail(&self) -> u64 {
        self.hasher.fed() - (self.checked() * self.hasher.chunk_size()).min(self.hasher.fed())
    }

    /// The damaged chunks, merged into runs of consecutive indices.
    pub fn damaged_runs(&self) -> Vec<Range<u64>> {
        merge_runs(&self.damaged)
    }
}

/// Merges increasing chunk indices into runs of consecutive ones (`start..end`).
pub fn merge_runs(indices: &[u64]) -> Vec<Range<u64>> {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for &i in indices {
        match runs.last_mut() {
            Some(run) if run.end == i => run.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

/// "damaged: bytes 0xSTART-0xEND (chunks I-J)": a run of chunks as the byte range of the dump
/// it covers (END exclusive).
pub fn describe_damage(run: &Range<u64>, chunk_size: u64, dump_length: u64) -> String {
    let start = run.start.saturating_mul(chunk_size);
    let end = run.end.saturating_mul(chunk_size).min(dump_length);
    let chunks = if run.end - run.start == 1 {
        format!("chunk {}", run.start)
    } else {
        format!("chunks {}-{}", run.start, run.end - 1)
    };
    format!("damaged: bytes {start:#x}-{end:#x} ({chunks})")
}

/// "1 MiB" for the chunk sizes the format allows (powers of two of at least 1 MiB).
pub fn chunk_size_text(chunk_size: u64) -> String {
    if chunk_size >= 1 << 30 && chunk_size.is_multiple_of(1 << 30) {
        format!("{} GiB", chunk_size >> 30)
    } else if chunk_size.is_multiple_of(1 << 20) {
        format!("{} MiB", chunk_size >> 20)
    } else {
        format!("{chunk_size} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_consecutive_chunks() {
        assert_eq!(merge_runs(&[]), Vec::<Range<u64>>::new());
        assert_eq!(merge_runs(&[4]), vec![4..5]);
        assert_eq!(merge_runs(&[0, 1, 2, 5, 7, 8]), vec![0..3, 5..6, 7..9]);
    }

    #[test]
    fn damage_is_described_as_dump_bytes() {
        let mib = 1 << 20;
        assert_eq!(
            describe_damage(&(3..4), mib, 10 * mib),
            "damaged: bytes 0x300000-0x400000 (chunk 3)"
        );
        assert_eq!(
            describe_damage(&(0..2), mib, 10 * mib),
            "damaged: bytes 0x0-0x200000 (chunks 0-1)"
        );
        // The short last chunk ends with the dump.
        assert_eq!(
            describe_damage(&(8..10), mib, 9 * mib + 5),
            "damaged: bytes 0x800000-0x900005 (chunks 8-9)"
        );
    }

    #[test]
    fn chunk_sizes_in_words() {
        assert_eq!(chunk_size_text(1 << 20), "1 MiB");
        assert_eq!(chunk_size_text(16 << 20), "16 MiB");
        assert_eq!(chunk_size_text(2 << 30), "2 GiB");
        assert_eq!(chunk_size_text(4096), "4096 bytes");
    }
}
