//! The cyclic writer (makedumpfile `write_kdump_pages_and_bitmap_cyclic()`).

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::header::{
    DiskDumpHeader, PageDesc, SubHeader, Utsname, DUMP_DH_COMPRESSED_INCOMPLETE, PAGE_DESC_SIZE,
};
use crate::layout::{Layout, BLOCK_SIZE};
use crate::{KdumpError, PageCompressor};

const BLOCK: usize = 4096;
/// Page size of the dumped memory (x86_64).
pub const PAGE_SIZE: usize = 4096;
/// [`PAGE_SIZE`] as the descriptors' and header's `u32`.
const PAGE_SIZE_U32: u32 = 4096;
/// `dump_level` bit 1: pages of zeros share one stored zero page.
pub const DL_EXCLUDE_ZERO: i32 = 1;

/// Where the file's bytes go. Every call writes whole, block-aligned blocks (offset and length
/// are multiples of 4096), in the order the writer produces them.
pub trait Sink {
    /// The sink's error.
    type Error;
    /// Writes `bytes` at file offset `offset`.
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// Where the pages come from, and which of them to leave out.
pub trait PageSource {
    /// The source's error (a page that cannot be read is left out, not fatal).
    type Error;

    /// Reads page frame `pfn` of the old kernel (bytes outside RAM in a partial page: zero).
    fn read_page(&mut self, pfn: u64, page: &mut [u8; PAGE_SIZE]) -> Result<(), Self::Error>;

    /// Clears in `dumpable` the frames not to dump (page filtering). Called once per cycle
    /// before any page of it is read; `dumpable` starts with every RAM frame set.
    fn filter(&mut self, dumpable: &mut CycleBitmap<'_>) {
        let _ = dumpable;
    }

    /// Called between the counting pass and the writing pass: the cycles start again from
    /// the lowest frame, and [`PageSource::filter`] must decide the same way again.
    fn restart(&mut self) {}
}

/// One cycle's slice of a bitmap: frame `start_pfn + i` is bit `i % 8` of byte `i / 8`
/// (LSB first, makedumpfile `set_bit_on_2nd_bitmap()`).
pub struct CycleBitmap<'a> {
    start_pfn: u64,
    end_pfn: u64,
    bits: &'a mut [u8],
}

impl CycleBitmap<'_> {
    /// The frames this cycle covers.
    pub fn pfns(&self) -> Range<u64> {
        self.start_pfn..self.end_pfn
    }

    /// Whether `pfn` is set (false outside the cycle).
    pub fn is_set(&self, pfn: u64) -> bool {
        self.index(pfn)
            .is_some_and(|(byte, bit)| self.bits[byte] & bit != 0)
    }

    /// Clears `pfn` (ignored outside the cycle).
    pub fn clear(&mut self, pfn: u64) {
        if let Some((byte, bit)) = self.index(pfn) {
            self.bits[byte] &= !bit;
        }
    }

    /// Clears every frame of `pfns` inside the cycle.
    pub fn clear_range(&mut self, pfns: Range<u64>) {
        for pfn in pfns.start.max(self.start_pfn)..pfns.end.min(self.end_pfn) {
            self.clear(pfn);
        }
    }

    fn set_range(&mut self, pfns: Range<u64>) {
        for pfn in pfns.start.max(self.start_pfn)..pfns.end.min(self.end_pfn) {
            if let Some((byte, bit)) = self.index(pfn) {
                self.bits[byte] |= bit;
            }
        }
    }

    fn index(&self, pfn: u64) -> Option<(usize, u8)> {
        if !(self.start_pfn..self.end_pfn).contains(&pfn) {
            return None;
        }
        let i = usize::try_from(pfn - self.start_pfn).ok()?;
        Some((i / 8, 1 << (i % 8)))
    }
}

/// What the file describes, besides the pages.
#[derive(Debug, Clone)]
pub struct DumpInfo<'a> {
    /// The old kernel's utsname (header).
    pub utsname: Utsname,
    /// Header timestamp, seconds and microseconds.
    pub time: (i64, i64),
    /// Number of `NT_PRSTATUS` notes.
    pub nr_cpus: i32,
    /// `NUMBER(phys_base)` (sub header).
    pub phys_base: u64,
    /// The `-d` mask (sub header). Bit [`DL_EXCLUDE_ZERO`] is applied by the writer; the
    /// other bits are the business of [`PageSource::filter`].
    pub dump_level: i32,
    /// The merged ELF notes (CPU notes and VMCOREINFO), embedded after the sub header.
    pub notes: &'a [u8],
    /// Byte range of the VMCOREINFO text inside `notes`.
    pub vmcoreinfo: Option<Range<usize>>,
    /// Physical byte ranges of RAM (the PT_LOADs' `p_paddr .. p_paddr + p_memsz`; overlaps
    /// allowed). A range covers the frames from the one holding its first byte up to, not
    /// including, the one holding its end: a partial last page is not dumped, as in
    /// makedumpfile's cyclic mode.
    pub ram: &'a [Range<u64>],
}

/// Tuning of the writer's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Bytes of one bitmap buffer: a multiple of 4096; each cycle covers 8 × this many page
    /// frames.
    pub cycle_bitmap_bytes: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        // 16 KiB per bitmap: cycles of 131072 frames (512 MiB).
        Self {
            cycle_bitmap_bytes: 16 * 1024,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// The layout used.
    pub layout: Option<Layout>,
    /// Frames marked RAM (1st bitmap).
    pub ram_pages: u64,
    /// Frames the filter left out.
    pub filtered_pages: u64,
    /// Frames left out because they could not be read.
    pub unreadable_pages: u64,
    /// Pages given a descriptor (2nd bitmap).
    pub dumped_pages: u64,
    /// Of those, pages of zeros pointing at the shared zero page.
    pub zero_pages: u64,
    /// Of those, pages stored compressed.
    pub compressed_pages: u64,
    /// Of those, pages stored raw.
    pub raw_pages: u64,
    /// Length of the file (a multiple of 4096).
    pub file_len: u64,
}

/// Writes a kdump-compressed file to `sink`: header, sub header with notes, then per cycle
/// the pages (descriptors and data) and that cycle's part of both bitmaps, and finally the
/// header again without `DUMP_DH_COMPRESSED_INCOMPLETE`. See the crate docs for the layout
/// and the memory used.
pub fn write_kdump<S: Sink, P: PageSource, C: PageCompressor>(
    sink: &mut S,
    source: &mut P,
    compressor: &mut C,
    info: &DumpInfo<'_>,
    options: WriterOptions,
) -> Result<WriteStats, KdumpError<S::Error>> {
    let cycle_bytes = options.cycle_bitmap_bytes;
    if cycle_bytes == 0 || !cycle_bytes.is_multiple_of(BLOCK) {
        return Err(KdumpError::BadOptions);
    }
    if let Some(r) = &info.vmcoreinfo {
        if r.start > r.end || r.end > info.notes.len() {
            return Err(KdumpError::BadVmcoreinfoRange);
        }
    }
    let cycle_pfns = 8 * cycle_bytes as u64;
    let max_mapnr = info
        .ram
        .iter()
        .map(|r| r.end.div_ceil(BLOCK_SIZE))
        .max()
        .unwrap_or(0);
    let mut bitmap1 = vec![0u8; cycle_bytes];
    let mut bitmap2 = vec![0u8; cycle_bytes];

    // A counting pass, as makedumpfile's get_num_dumpable_cyclic(): the RAM bitmap and the
    // filter's verdict, no page read, so that the descriptor table has one slot per page
    // to dump and the page data follows it without a hole.
    let mut ram_pages = 0u64;
    let mut dumpable_pages = 0u64;
    for start in (0..max_mapnr).step_by(cycle_bytes * 8) {
        let cycle = fill_ram(&mut bitmap1, start, cycle_pfns, max_mapnr, info.ram);
        let range = cycle.pfns();
        ram_pages += count_bits(&bitmap1);
        bitmap2.copy_from_slice(&bitmap1);
        let mut dumpable = CycleBitmap {
            start_pfn: range.start,
            end_pfn: range.end,
            bits: &mut bitmap2,
        };
        source.filter(&mut dumpable);
        for (d, r) in bitmap2.iter_mut().zip(&bitmap1) {
            *d &= r;
        }
        dumpable_pages += count_bits(&bitmap2);
    }
    source.restart();
    let notes_len = info.notes.len() as u64;
    let layout = Layout::new(max_mapnr, notes_len, dumpable_pages)?;

    let header = |status| DiskDumpHeader {
        utsname: info.utsname,
        time_sec: info.time.0,
        time_usec: info.time.1,
        status,
        block_size: PAGE_SIZE_U32,
        sub_hdr_size: u32::try_from(layout.sub_hdr_blocks).unwrap_or(u32::MAX),
        bitmap_blocks: u32::try_from(layout.bitmap_blocks()).unwrap_or(u32::MAX),
        max_mapnr: u32::try_from(max_mapnr).unwrap_or(u32::MAX),
        nr_cpus: info.nr_cpus,
    };
    let mut block = vec![0u8; BLOCK];
    block[..crate::header::DISK_DUMP_HEADER_SIZE]
        .copy_from_slice(&header(compressor.flag() | DUMP_DH_COMPRESSED_INCOMPLETE).encode());
    sink.write(0, &block).map_err(KdumpError::Sink)?;
    write_sub_header(sink, &layout, info, &mut block)?;

    let mut stats = WriteStats {
        layout: Some(layout),
        ram_pages,
        ..WriteStats::default()
    };
    let mut out = Output::new(&layout);
    let zero_desc = if info.dump_level & DL_EXCLUDE_ZERO != 0 {
        let at = out.append_data(sink, &[0u8; PAGE_SIZE])?;
        Some(PageDesc {
            offset: at,
            size: PAGE_SIZE_U32,
            flags: 0,
        })
    } else {
        None
    };
    let mut page = [0u8; PAGE_SIZE];
    let mut packed = vec![0u8; PAGE_SIZE];
    for start in (0..max_mapnr).step_by(cycle_bytes * 8) {
        let ram = fill_ram(&mut bitmap1, start, cycle_pfns, max_mapnr, info.ram);
        let range = ram.pfns();
        bitmap2.copy_from_slice(&bitmap1);
        let mut dumpable = CycleBitmap {
            start_pfn: range.start,
            end_pfn: range.end,
            bits: &mut bitmap2,
        };
        source.filter(&mut dumpable);
        for pfn in range.clone() {
            let ram_bit = bit(&bitmap1, pfn - start);
            let keep = dumpable.is_set(pfn) && ram_bit;
            if !keep {
                dumpable.clear(pfn);
                stats.filtered_pages += u64::from(ram_bit);
                continue;
            }
            if source.read_page(pfn, &mut page).is_err() {
                dumpable.clear(pfn);
                stats.unreadable_pages += 1;
                continue;
            }
            let desc = match zero_desc {
                Some(zero) if is_zero(&page) => {
                    stats.zero_pages += 1;
                    zero
                }
                _ => match compressor.compress(&page, &mut packed) {
                    Some(n) if n < PAGE_SIZE => {
                        stats.compressed_pages += 1;
                        PageDesc {
                            offset: out.append_data(sink, &packed[..n])?,
                            // n < PAGE_SIZE: lossless.
                            size: u32::try_from(n).unwrap_or(PAGE_SIZE_U32),
                            flags: compressor.flag(),
                        }
                    }
                    _ => {
                        stats.raw_pages += 1;
                        PageDesc {
                            offset: out.append_data(sink, &page)?,
                            size: PAGE_SIZE_U32,
                            flags: 0,
                        }
                    }
                },
            };
            out.append_desc(sink, &desc.encode())?;
            stats.dumped_pages += 1;
        }
        // This cycle's part of both bitmaps (the 2nd now final), clipped to the bitmap size.
        let at = start / 8;
        let len = usize::try_from((layout.bitmap_bytes - at).min(cycle_bytes as u64))
            .unwrap_or(cycle_bytes);
        sink.write(layout.bitmap1_offset() + at, &bitmap1[..len])
            .map_err(KdumpError::Sink)?;
        sink.write(layout.bitmap2_offset() + at, &bitmap2[..len])
            .map_err(KdumpError::Sink)?;
    }
    stats.file_len = out.finish(sink)?;
    block[..crate::header::DISK_DUMP_HEADER_SIZE]
        .copy_from_slice(&header(compressor.flag()).encode());
    sink.write(0, &block).map_err(KdumpError::Sink)?;
    Ok(stats)
}

/// Whether every byte of `page` is zero, eight bytes at a time (every RAM page is tested
/// at dump level 1, and the capture kernel's CPU may be emulated).
fn is_zero(page: &[u8; PAGE_SIZE]) -> bool {
    page.chunks_exact(8)
        .all(|w| u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) == 0)
}

fn count_bits(bits: &[u8]) -> u64 {
    bits.iter().map(|b| u64::from(b.count_ones())).sum()
}

fn bit(bits: &[u8], i: u64) -> bool {
    let i = usize::try_from(i).unwrap_or(usize::MAX);
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Sets, in `bits`, the RAM frames of the cycle starting at `start` (1st bitmap,
/// makedumpfile `create_bitmap_from_memhole()`: frames `start / 4096 .. end / 4096`).
fn fill_ram<'a>(
    bits: &'a mut [u8],
    start: u64,
    cycle_pfns: u64,
    max_mapnr: u64,
    ram: &[Range<u64>],
) -> CycleBitmap<'a> {
    bits.fill(0);
    let mut cycle = CycleBitmap {
        start_pfn: start,
        end_pfn: (start + cycle_pfns).min(max_mapnr),
        bits,
    };
    for r in ram {
        cycle.set_range(r.start / BLOCK_SIZE..r.end / BLOCK_SIZE);
    }
    cycle
}

/// The sub header and the notes, block by block.
fn write_sub_header<S: Sink>(
    sink: &mut S,
    layout: &Layout,
    info: &DumpInfo<'_>,
    block: &mut [u8],
) -> Result<(), KdumpError<S::Error>> {
    let notes_at = layout.notes_offset();
    let (offset_vmcoreinfo, size_vmcoreinfo) = match &info.vmcoreinfo {
        Some(r) if !r.is_empty() => (notes_at + r.start as u64, (r.end - r.start) as u64),
        _ => (0, 0),
    };
    let sub = SubHeader {
        phys_base: info.phys_base,
        dump_level: info.dump_level,
        offset_vmcoreinfo,
        size_vmcoreinfo,
        offset_note: if info.notes.is_empty() { 0 } else { notes_at },
        size_note: info.notes.len() as u64,
        max_mapnr_64: layout.max_mapnr,
    };
    let encoded = sub.encode();
    let mut rest = info.notes;
    for i in 0..layout.sub_hdr_blocks {
        block.fill(0);
        let mut at = 0;
        if i == 0 {
            block[..encoded.len()].copy_from_slice(&encoded);
            at = encoded.len();
        }
        let n = rest.len().min(BLOCK - at);
        block[at..at + n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        sink.write(layout.sub_header_offset() + i * BLOCK_SIZE, block)
            .map_err(KdumpError::Sink)?;
    }
    Ok(())
}

/// The two streams of the page part: descriptors (at their slots) and page data (appended),
/// each gathered in one block so that the sink only sees whole blocks.
struct Output {
    desc_block: Vec<u8>,
    desc_block_at: u64,
    desc_next: u64,
    desc_end: u64,
    data_block: Vec<u8>,
    data_block_at: u64,
    data_len: usize,
}

impl Output {
    fn new(layout: &Layout) -> Self {
        let desc_at = layout.desc_offset();
        Self {
            desc_block: vec![0; BLOCK],
            desc_block_at: desc_at,
            desc_next: desc_at,
            desc_end: layout.desc_at(layout.desc_slots),
            data_block: vec![0; BLOCK],
            data_block_at: layout.page_data_offset(),
            data_len: 0,
        }
    }

    /// Stores the next descriptor.
    fn append_desc<S: Sink>(
        &mut self,
        sink: &mut S,
        desc: &[u8; PAGE_DESC_SIZE],
    ) -> Result<(), KdumpError<S::Error>> {
        if self.desc_next + PAGE_DESC_SIZE as u64 > self.desc_end {
            return Err(KdumpError::TooManyPages);
        }
        let mut bytes = &desc[..];
        while !bytes.is_empty() {
            // Always within one block: lossless.
            let off = usize::try_from(self.desc_next - self.desc_block_at).unwrap_or(BLOCK);
            if off == BLOCK {
                sink.write(self.desc_block_at, &self.desc_block)
                    .map_err(KdumpError::Sink)?;
                self.desc_block.fill(0);
                self.desc_block_at += BLOCK_SIZE;
                continue;
            }
            let n = bytes.len().min(BLOCK - off);
            self.desc_block[off..off + n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.desc_next += n as u64;
        }
        Ok(())
    }

    /// Appends page data; returns its file offset.
    fn append_data<S: Sink>(
        &mut self,
        sink: &mut S,
        mut bytes: &[u8],
    ) -> Result<u64, KdumpError<S::Error>> {
        let at = self.data_block_at + self.data_len as u64;
        while !bytes.is_empty() {
            let n = bytes.len().min(BLOCK - self.data_len);
            self.data_block[self.data_len..self.data_len + n].copy_from_slice(&bytes[..n]);
            self.data_len += n;
            bytes = &bytes[n..];
            if self.data_len == BLOCK {
                sink.write(self.data_block_at, &self.data_block)
                    .map_err(KdumpError::Sink)?;
                self.data_block_at += BLOCK_SIZE;
                self.data_len = 0;
            }
        }
        Ok(at)
    }

    /// Writes the partial blocks; returns the file length.
    fn finish<S: Sink>(&mut self, sink: &mut S) -> Result<u64, KdumpError<S::Error>> {
        if self.desc_next > self.desc_block_at {
            sink.write(self.desc_block_at, &self.desc_block)
                .map_err(KdumpError::Sink)?;
        }
        if self.data_len > 0 {
            self.data_block[self.data_len..].fill(0);
            sink.write(self.data_block_at, &self.data_block)
                .map_err(KdumpError::Sink)?;
            self.data_block_at += BLOCK_SIZE;
            self.data_len = 0;
        }
        Ok(self.data_block_at)
    }
}
