//! The kdump-compressed dump format ("diskdump", `makedumpfile -c/-l/-z/-E`-less output), as
//! written by makedumpfile and read by crash and makedumpfile itself.
//!
//! # File layout (block size = page size = 4096)
//!
//! | where | what | mirrors |
//! |---|---|---|
//! | block 0 | [`DiskDumpHeader`]: `"KDUMP   "`, header version 6, utsname, time, `status` (compression flag), block size, `sub_hdr_size`, `bitmap_blocks`, `max_mapnr`, `nr_cpus` | makedumpfile `write_kdump_header()` |
//! | block 1 | [`SubHeader`] (104 bytes: `phys_base`, `dump_level`, VMCOREINFO and note offsets, `max_mapnr_64`), then right after it the ELF notes of the old kernel; `sub_hdr_size` blocks in all | same |
//! | then | 1st bitmap ("frame is RAM"), then 2nd bitmap ("frame has a descriptor"), each `ceil(max_mapnr / 8)` bytes rounded up to a block; bit `pfn % 8` of byte `pfn / 8` | `create_1st_bitmap()`, `create_2nd_bitmap()` |
//! | `data_offset` | one 24-byte [`PageDesc`] per set bit of the 2nd bitmap, in frame order | `write_kdump_pages_cyclic()` |
//! | then | page data: the shared zero page first if `dump_level & 1`, then each page's bytes | same |
//!
//! A reader finds frame `pfn`'s descriptor as "the number of set 2nd-bitmap bits before
//! `pfn`" (crash `pfn_to_pos()`), so descriptors must be dense and ordered. Page data may start
//! anywhere after the table. Like makedumpfile's `get_num_dumpable_cyclic()`, this writer
//! first counts the pages to dump (a pass over the cycles that runs the filter but reads no
//! page; [`PageSource::restart`] then rewinds it), sizes the table to that count and starts
//! the page data at the next block boundary after it. Only a page that turns out unreadable
//! during the writing pass leaves its slot unused (a hole at the end of the table).
//!
//! Each page is compressed on its own (a fresh zlib stream per page, like makedumpfile's
//! `compress2()` call per page) and stored raw when compression does not make it smaller;
//! crash decompresses each one with `uncompress()` into exactly one block. A page of zeros
//! gets a copy of the zero page's descriptor when `dump_level & 1`, and stays set in the 2nd
//! bitmap. `max_mapnr` is the highest RAM end in frames, rounded up; a RAM range marks the
//! frames from the one holding its first byte to the last whole one (makedumpfile's cyclic
//! `create_bitmap_from_memhole()`: a partial last page is left out).
//!
//! # Bounded memory: cycles
//!
//! [`write_kdump`] works like makedumpfile's cyclic mode: it covers the frames in cycles of
//! `8 × B` frames, where `B` is [`WriterOptions::cycle_bitmap_bytes`]. For each cycle it
//! builds that slice of both bitmaps, lets [`PageSource::filter`] clear frames, streams the
//! cycle's pages (descriptor and data), then writes the two bitmap slices. Everything goes to
//! a [`Sink`] as whole 4096-byte blocks at block-aligned offsets, so a block device can take
//! them directly. The heap it uses is fixed, whatever the size of RAM:
//!
//! `memory = 2 × B (bitmap slices) + 5 × 4096 (page, compressed page, descriptor block, data
//! block, header block) + the compressor's state` (for [`Zlib`], miniz_oxide's
//! `CompressorOxide`, about 310 KiB allocated once; its per-page reset frees and re-allocates
//! a 64 KiB code buffer, so the peak does not grow). With the default `B` = 16 KiB, a cycle
//! covers 512 MiB, and 1 TiB of RAM needs the same memory as 1 GiB: it just takes 2048
//! cycles instead of 2. The descriptor table is not held: each 4096-byte block of it is
//! written once, when full.
//!
//! For a sink that can only append, [`Flattened`] wraps every write in a record of
//! makedumpfile's flattened format (`makedumpfile -F`), which `makedumpfile -R` turns back
//! into the file.
//!
//! The header is written first with `DUMP_DH_COMPRESSED_INCOMPLETE` set and written again
//! without it at the end, so an interrupted dump says so (crash reports it as incomplete).
//!
//! Pure logic: no `unsafe`, no hardware; host tested with an independent reader.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod compress;
mod flattened;
mod header;
mod layout;
mod writer;

use core::fmt;

pub use compress::{Lzo, NoCompression, PageCompressor, Zlib};
pub use flattened::{Flattened, Stream, FLAT_HEADER_SIZE};
pub use header::{
    DiskDumpHeader, PageDesc, SubHeader, Utsname, DISK_DUMP_HEADER_SIZE,
    DUMP_DH_COMPRESSED_INCOMPLETE, DUMP_DH_COMPRESSED_LZO, DUMP_DH_COMPRESSED_SNAPPY,
    DUMP_DH_COMPRESSED_ZLIB, DUMP_DH_COMPRESSED_ZSTD, HEADER_VERSION, KDUMP_SIGNATURE,
    PAGE_DESC_SIZE, SUB_HEADER_SIZE, UTS_LEN,
};
pub use layout::{Layout, BLOCK_SIZE};
pub use writer::{
    write_kdump, CycleBitmap, DumpInfo, PageSource, Sink, WriteStats, WriterOptions,
    DL_EXCLUDE_ZERO, PAGE_SIZE,
};

/// Why a kdump-compressed file could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdumpError<E> {
    /// The sink failed; the file is incomplete (its header says so if block 0 was written).
    Sink(E),
    /// The memory or the notes are too large for the format's 32-bit header fields.
    TooLarge,
    /// More pages to dump than descriptor slots (cannot happen with RAM-sized slots).
    TooManyPages,
    /// `cycle_bitmap_bytes` is 0 or not a multiple of 4096.
    BadOptions,
    /// The VMCOREINFO range is not inside the notes.
    BadVmcoreinfoRange,
}

impl<E: fmt::Display> fmt::Display for KdumpError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sink(e) => write!(f, "writing the dump failed: {e}"),
            Self::TooLarge => write!(f, "memory too large for the kdump-compressed format"),
            Self::TooManyPages => write!(f, "more dumpable pages than descriptor slots"),
            Self::BadOptions => write!(f, "cycle bitmap size must be a multiple of 4096"),
            Self::BadVmcoreinfoRange => write!(f, "VMCOREINFO range outside the notes"),
        }
    }
}
