//! The streaming chunk hasher.

use core::fmt;

use minicap_dumpheader::{chunk_size_for, finished_chunks};
use xxhash_rust::xxh64::Xxh64;

/// Computes the chunk table of a dump of known length from its bytes fed in order.
///
/// The pieces may have any size and alignment: a chunk boundary may fall inside a piece, and a
/// chunk may be spread over many pieces. Each chunk's entry is produced once, when its last
/// byte arrives (for the short last chunk: when the dump's last byte arrives).
#[derive(Clone)]
pub struct ChunkHasher {
    chunk_size: u64,
    dump_length: u64,
    fed: u64,
    state: Xxh64,
}

/// Why [`ChunkHasher`] refused a piece; nothing of the piece was consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedError {
    /// The piece goes past the end of the dump.
    PastEnd {
        /// Bytes fed before this piece.
        fed: u64,
        /// Length of the piece.
        len: u64,
        /// The dump length the hasher was made for.
        dump_length: u64,
    },
    /// The table slice has no room for an entry the piece would finish.
    TableTooShort {
        /// Entries the table would need.
        needed: u64,
        /// Entries it has.
        len: u64,
    },
}

impl fmt::Display for FeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PastEnd {
                fed,
                len,
                dump_length,
            } => write!(
                f,
                "{len} more bytes after {fed} would pass the end of a {dump_length}-byte dump"
            ),
            Self::TableTooShort { needed, len } => {
                write!(f, "chunk table of {len} entries, {needed} needed")
            }
        }
    }
}

impl core::error::Error for FeedError {}

impl ChunkHasher {
    /// A hasher for a dump of `dump_length` bytes with the chunk size a writer uses for it
    /// ([`chunk_size_for`]).
    pub fn new(dump_length: u64) -> Self {
        Self::with_chunk_size(dump_length, chunk_size_for(dump_length))
            .expect("chunk_size_for is never zero")
    }

    /// A hasher with a given chunk size (a reader uses the header's). `None` for a zero chunk
    /// size. Any other size works; the on-device format requires a power of two of at least
    /// 1 MiB, which `DumpHeader::validate` checks.
    pub fn with_chunk_size(dump_length: u64, chunk_size: u64) -> Option<Self> {
        (chunk_size != 0).then(|| Self {
            chunk_size,
            dump_length,
            fed: 0,
            state: Xxh64::new(0),
        })
    }

    /// Bytes per chunk.
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// The dump length this hasher was made for.
    pub fn dump_length(&self) -> u64 {
        self.dump_length
    }

    /// Bytes fed so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// Entries produced so far: those of the chunks wholly within the bytes fed.
    pub fn finished(&self) -> u64 {
        finished_chunks(self.fed, self.dump_length, self.chunk_size)
    }

    /// Whether every byte of the dump has been fed (and so every entry produced).
    pub fn is_done(&self) -> bool {
        self.fed == self.dump_length
    }

    /// Feeds the next `data` bytes of the dump, calling `on_chunk(index, xxh64)` for every
    /// chunk they finish, in order. Refuses (consuming nothing) a piece that goes past the end
    /// of the dump.
    pub fn update(
        &mut self,
        mut data: &[u8],
        mut on_chunk: impl FnMut(u64, u64),
    ) -> Result<(), FeedError> {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        if len > self.dump_length - self.fed {
            return Err(FeedError::PastEnd {
                fed: self.fed,
                len,
                dump_length: self.dump_length,
            });
        }
        while !data.is_empty() {
            let index = self.fed / self.chunk_size;
            // The end of the chunk holding byte `fed`, clipped to the dump; saturating
            // because a chunk near the top of the u64 range may nominally end past it.
            let chunk_end = index
                .saturating_mul(self.chunk_size)
                .saturating_add(self.chunk_size)
                .min(self.dump_length);
            let room = chunk_end - self.fed;
            let take = usize::try_from(room).map_or(data.len(), |r| r.min(data.len()));
            let (piece, rest) = data.split_at(take);
            self.state.update(piece);
            // `take` <= `room`, a u64.
            self.fed += u64::try_from(take).unwrap_or(room);
            if self.fed == chunk_end {
                on_chunk(index, self.state.digest());
                self.state.reset(0);
            }
            data = rest;
        }
        Ok(())
    }

    /// Like [`ChunkHasher::update`], storing entry `i` in `table[i]`. Refuses (consuming
    /// nothing) a piece that would finish a chunk beyond the table.
    pub fn update_into(&mut self, data: &[u8], table: &mut [u64]) -> Result<(), FeedError> {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let end = self.fed.saturating_add(len).min(self.dump_length);
        let needed = finished_chunks(end, self.dump_length, self.chunk_size);
        let have = u64::try_from(table.len()).unwrap_or(u64::MAX);
        if needed > have {
            return Err(FeedError::TableTooShort { needed, len: have });
        }
        self.update(data, |index, value| {
            // In range: checked above.
            if let Some(slot) = usize::try_from(index).ok().and_then(|i| table.get_mut(i)) {
                *slot = value;
            }
        })
    }
}

impl fmt::Debug for ChunkHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkHasher")
            .field("chunk_size", &self.chunk_size)
            .field("dump_length", &self.dump_length)
            .field("fed", &self.fed)
            .finish_non_exhaustive()
    }
}
