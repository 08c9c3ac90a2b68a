//! The filtered ELF vmcore (`minicap.format=elf` with `minicap.dump_level=` above 0): what
//! `makedumpfile -E -d N /proc/vmcore` writes, inside the capture kernel.
//!
//! # The file
//!
//! | where | what |
//! |---|---|
//! | 0 | `Elf64_Ehdr` (`ET_CORE`, `EM_X86_64`; `e_ident` padding, `e_entry`, `e_flags` of the core headers), one PT_NOTE, the PT_LOADs; with [`PN_XNUM`] program headers or more, `e_phnum` = `PN_XNUM`, and section header 0 right after them holds the count in `sh_info` (the ELF extended numbering makedumpfile's `write_elf_header()` writes); zeros up to a multiple of 4096 |
//! | then | the merged notes (the same as the unfiltered vmcore's), zeros up to a multiple of 4096 |
//! | then | each PT_LOAD's bytes, in program header order; each starts on a page, `p_offset % 4096 == p_paddr % 4096` |
//!
//! The PT_LOADs mirror makedumpfile 1.7's `write_elf_pages_cyclic()`: each PT_LOAD of the
//! core headers (the kernel-text one included: makedumpfile keeps it, cut the same way) is
//! walked frame by frame; a frame is dumped when it is RAM, the page filter keeps it, and,
//! with bit 1 of the level, it is not all zeros (`exclude_zero_pages_cyclic()`). A run of
//! [`PFN_EXCLUDED`] (256) or more excluded frames followed by a dumped one ends the
//! PT_LOAD there: the new one starts at the dumped frame, `p_paddr` and `p_vaddr` moved on
//! by the old one's `p_memsz` (so `p_vaddr` keeps its offset to `p_paddr`, in the direct
//! map and the kernel text mapping alike). A PT_LOAD's `p_memsz` counts the excluded
//! frames at its end, its `p_filesz` not: an ELF reader (crash, gdb) reads zeros there. A
//! shorter run of excluded frames stays inside the PT_LOAD, as in makedumpfile, so the
//! PT_LOADs cover exactly the frames makedumpfile's do; but where makedumpfile copies
//! those frames' contents, minicap writes zeros: an excluded page leaves the file's
//! contents either way. A partial first page is always kept and a partial last page
//! counted in `p_memsz` only when excluded, as makedumpfile does; a PT_LOAD with no bytes
//! in the file has `p_offset` 0.
//!
//! # Two passes, bounded memory
//!
//! The program headers come before the data, and their number is only known once every
//! frame is decided, zero pages included. So, like makedumpfile's
//! `get_loads_dumpfile_cyclic()` before `write_elf_pages_cyclic()`, a counting pass goes
//! over every frame (running the filter and, at bit 1, reading each candidate page) and
//! counts the PT_LOADs and pages; the writing pass decides the same way again, writing
//! program headers and pages as it goes, and checks it came to the same counts. Both walk
//! each PT_LOAD in cycles of [`ElfFilterOptions::cycle_frames`] frames aligned to the
//! cycle size (the filter runs from the cycle's start, as makedumpfile's cyclic bitmaps
//! do), restarting the filter for each PT_LOAD: memory is one cycle's bitmap, one page and
//! one block of program headers, whatever the RAM.

use crate::writer::FrameFilter;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use core::convert::Infallible;
use core::fmt;
use core::ops::Range;
use minicap_elfcore::{
    CoreHeaders, LoadSegment, Phdr, EHDR_SIZE, ELFCLASS64, ELFDATA2LSB, ELF_MAGIC, EM_X86_64,
    ET_CORE, EV_CURRENT, PHDR_LEN, PHDR_SIZE, PN_XNUM, PT_LOAD, PT_NOTE, SHDR_SIZE,
};
use minicap_kdumpfile::Sink;
use minicap_physmem::{PhysMem, PAGE_BYTES, PAGE_SIZE};
use minicap_vmcoreinfo::OldMemory;

/// Fewest consecutive excluded frames that end a PT_LOAD (makedumpfile `PFN_EXCLUDED`);
/// shorter runs stay inside it.
pub const PFN_EXCLUDED: u64 = 256;
/// `dump_level` bit 1: pages of zeros are left out.
const DL_EXCLUDE_ZERO: u8 = 1;
/// `p_paddr` of a PT_LOAD without a physical address (makedumpfile `NOT_PADDR`): skipped.
const NOT_PADDR: u64 = u64::MAX;
/// A page of zeros, for the excluded frames inside a PT_LOAD.
const ZERO_PAGE: [u8; PAGE_BYTES] = [0; PAGE_BYTES];

/// Tuning of the memory used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfFilterOptions {
    /// Frames decided at once (one bit each): a multiple of 8, not 0.
    pub cycle_frames: u64,
}

impl Default for ElfFilterOptions {
    fn default() -> Self {
        // A 16 KiB bitmap: cycles of 512 MiB, as the kdump-compressed writer's.
        Self {
            cycle_frames: 1 << 17,
        }
    }
}

/// What the filtered vmcore is made of.
pub struct FilteredElf<'a, M: ?Sized, F> {
    /// The core headers: PT_LOADs, notes, ELF header fields.
    pub core: &'a CoreHeaders,
    /// Physical ranges of RAM to dump (the PT_LOADs without what is not memory): a frame
    /// outside them is excluded.
    pub ram: &'a [Range<u64>],
    /// The old kernel's memory, read through the PT_LOADs' current location.
    pub old: OldMemory<'a, M>,
    /// The filter of the level's bits 2 to 16.
    pub filter: F,
    /// The level applied (bit 1: zero pages excluded).
    pub dump_level: u8,
    /// The cycle size.
    pub options: ElfFilterOptions,
}

/// What the counting pass found: the file's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ElfCounts {
    /// PT_LOADs of the file.
    pub loads: u64,
    /// Pages of PT_LOAD data in the file (dumped ones and the zeros of short excluded runs).
    pub data_pages: u64,
}

/// Where the parts of the file are, from the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfLayout {
    /// The counts it was made from.
    pub counts: ElfCounts,
    /// Program headers (PT_NOTE included).
    pub phnum: u64,
    /// Whether `e_phnum` is [`PN_XNUM`] and section header 0 holds the count.
    pub extended: bool,
    /// Offset of the notes (the headers, rounded up to a page).
    pub notes_offset: u64,
    /// Offset of the first PT_LOAD's data.
    pub data_offset: u64,
    /// Length of the file.
    pub file_len: u64,
}

/// What was written, besides the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ElfStats {
    /// The file's shape.
    pub layout: Option<ElfLayout>,
    /// Frames of RAM (each once, though the kernel-text PT_LOAD repeats some).
    pub ram_pages: u64,
    /// Pages written with their contents (twice for a frame in two PT_LOADs).
    pub dumped_pages: u64,
    /// Frames the page filter left out, in the PT_LOADs walked.
    pub filtered_pages: u64,
    /// Frames of zeros left out (bit 1).
    pub zero_pages: u64,
    /// Frames that could not be read: left out at bit 1, zeros otherwise.
    pub unreadable_pages: u64,
    /// Excluded frames inside a PT_LOAD (runs shorter than [`PFN_EXCLUDED`]): zeros.
    pub gap_pages: u64,
}

/// Why the filtered vmcore could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfFilterError<E> {
    /// The sink failed.
    Sink(E),
    /// More program headers than section header 0's `sh_info` (32 bits) can count.
    TooManyLoads(u64),
    /// The layout's offsets overflow.
    LayoutOverflow,
    /// `cycle_frames` is 0 or not a multiple of 8.
    BadOptions,
    /// The writing pass did not come to the counting pass's counts (old memory changed
    /// under the capture): the program headers already written are wrong.
    PassesDisagree {
        /// What the counting pass found.
        counted: ElfCounts,
        /// What the writing pass did.
        written: ElfCounts,
    },
}

impl<E: fmt::Display> fmt::Display for ElfFilterError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sink(e) => write!(f, "{e}"),
            Self::TooManyLoads(n) => write!(f, "{n} PT_LOADs: more than ELF can count"),
            Self::LayoutOverflow => f.write_str("the filtered vmcore's offsets overflow"),
            Self::BadOptions => f.write_str("cycle size not a multiple of 8 frames"),
            Self::PassesDisagree { counted, written } => write!(
                f,
                "the writing pass made {} PT_LOADs of {} pages, the counting pass {} of {}: old memory changed",
                written.loads, written.data_pages, counted.loads, counted.data_pages
            ),
        }
    }
}

impl<'a, M: PhysMem + ?Sized, F: FrameFilter> FilteredElf<'a, M, F> {
    /// Frames the writing pass goes through (the progress total).
    pub fn frames_to_walk(&self) -> u64 {
        walked_loads(self.core)
            .map(|l| {
                let pfns = frames_of(l).1;
                pfns.end - pfns.start
            })
            .sum()
    }

    /// The counting pass: the PT_LOADs and data pages the file will have, and its layout.
    pub fn count(&mut self) -> Result<ElfLayout, ElfFilterError<Infallible>> {
        let mut stats = ElfStats::default();
        let counts = self.walk(None::<&mut Output<'_, NoSink>>, &mut stats, &Cell::new(0))?;
        layout(self.core, counts)
    }

    /// The writing pass for `layout` (from [`FilteredElf::count`]): the file to `sink`,
    /// `progress` set to the frames gone through.
    pub fn write<S: Sink>(
        &mut self,
        sink: &mut S,
        layout: &ElfLayout,
        progress: &Cell<u64>,
    ) -> Result<ElfStats, ElfFilterError<S::Error>> {
        let mut headers = BlockStream::new(0);
        headers.push(sink, &elf_header(self.core, layout))?;
        push_phdr(&mut headers, sink, &note_phdr(self.core, layout))?;
        write_notes(sink, layout.notes_offset, &self.core.notes)?;
        let mut stats = ElfStats {
            layout: Some(*layout),
            ram_pages: self
                .ram
                .iter()
                .map(|r| (r.end / PAGE_SIZE).saturating_sub(r.start / PAGE_SIZE))
                .sum(),
            ..ElfStats::default()
        };
        let mut out = Output {
            sink,
            headers,
            data_at: layout.data_offset,
        };
        let written = self.walk(Some(&mut out), &mut stats, progress)?;
        if written != layout.counts {
            return Err(ElfFilterError::PassesDisagree {
                counted: layout.counts,
                written,
            });
        }
        let Output {
            sink, mut headers, ..
        } = out;
        if layout.extended {
            headers.push(sink, &section_header_0(layout.phnum))?;
        }
        headers.finish(sink)?;
        Ok(stats)
    }

    /// One pass over every PT_LOAD: the counts, and with `out` the program headers and the
    /// pages written.
    fn walk<S: Sink>(
        &mut self,
        mut out: Option<&mut Output<'_, S>>,
        stats: &mut ElfStats,
        progress: &Cell<u64>,
    ) -> Result<ElfCounts, ElfFilterError<S::Error>> {
        let cycle = self.options.cycle_frames;
        if cycle == 0 || !cycle.is_multiple_of(8) {
            return Err(ElfFilterError::BadOptions);
        }
        let bitmap_len = usize::try_from(cycle / 8).map_err(|_| ElfFilterError::BadOptions)?;
        let mut bits = vec![0u8; bitmap_len];
        let mut page = Box::new([0u8; PAGE_BYTES]);
        let mut counts = ElfCounts::default();
        let mut data_at = out.as_ref().map_or(0, |o| o.data_at);
        let core = self.core;
        for load in walked_loads(core) {
            self.filter.restart();
            let (head, pfns, tail) = frames_of(load);
            let mut seg = Segment {
                paddr: load.paddr,
                vaddr: load.vaddr,
                flags: load.flags,
                memsz: 0,
                filesz: 0,
                data_at,
            };
            if head > 0 {
                // A partial first page is kept, as makedumpfile does, without a verdict.
                seg.memsz = head;
                seg.filesz = head;
                if let Some(out) = out.as_deref_mut() {
                    // Both below 4096.
                    let at = usize::try_from(load.paddr % PAGE_SIZE).unwrap_or(0);
                    let len = usize::try_from(head).unwrap_or(0);
                    page.fill(0);
                    if self
                        .old
                        .read_phys(load.paddr, &mut page[at..at + len])
                        .is_err()
                    {
                        stats.unreadable_pages += 1;
                        page.fill(0);
                    }
                    out.page(&page)?;
                }
                counts.data_pages += 1;
                data_at += PAGE_SIZE;
            }
            let mut excluded = 0u64;
            let mut start = pfns.start / cycle * cycle;
            while start < pfns.end {
                let end = (start + cycle).min(pfns.end);
                self.decide(start..end, &mut bits, stats, &pfns);
                for pfn in pfns.start.max(start)..end {
                    if out.is_some() {
                        progress.set(progress.get() + 1);
                    }
                    let size = if pfn + 1 == pfns.end && tail > 0 {
                        tail
                    } else {
                        PAGE_SIZE
                    };
                    let candidate = bit(&bits, pfn - start);
                    let keep =
                        candidate && self.read_and_check(pfn, out.is_some(), &mut page, stats);
                    if !keep {
                        excluded += 1;
                        seg.memsz += size;
                        continue;
                    }
                    if excluded >= PFN_EXCLUDED {
                        // Long enough to leave out: the PT_LOAD ends here.
                        let next = seg.cut();
                        if let Some(out) = out.as_deref_mut() {
                            out.phdr(&seg)?;
                        }
                        counts.loads += 1;
                        seg = Segment { data_at, ..next };
                        excluded = 0;
                    }
                    // Short runs of excluded frames stay, as zeros.
                    for _ in 0..excluded {
                        if let Some(out) = out.as_deref_mut() {
                            out.page(&ZERO_PAGE)?;
                        }
                        data_at += PAGE_SIZE;
                        counts.data_pages += 1;
                        stats.gap_pages += 1;
                    }
                    seg.filesz += excluded * PAGE_SIZE + size;
                    seg.memsz += size;
                    excluded = 0;
                    if let Some(out) = out.as_deref_mut() {
                        out.page(&page)?;
                        stats.dumped_pages += 1;
                    }
                    data_at += PAGE_SIZE;
                    counts.data_pages += 1;
                }
                start = end;
            }
            if let Some(out) = out.as_deref_mut() {
                out.phdr(&seg)?;
            }
            counts.loads += 1;
        }
        Ok(counts)
    }

    /// Sets in `bits` the frames of `cycle` that are RAM and that the filter keeps.
    fn decide(
        &mut self,
        cycle: Range<u64>,
        bits: &mut [u8],
        stats: &mut ElfStats,
        walked: &Range<u64>,
    ) {
        bits.fill(0);
        for r in self.ram {
            let from = (r.start / PAGE_SIZE).max(cycle.start);
            let to = (r.end / PAGE_SIZE).min(cycle.end);
            for pfn in from..to {
                set_bit(bits, pfn - cycle.start, true);
            }
        }
        let start = cycle.start;
        self.filter.exclude(cycle, &mut |range| {
            for pfn in range {
                let i = pfn - start;
                if bit(bits, i) {
                    set_bit(bits, i, false);
                    if walked.contains(&pfn) {
                        stats.filtered_pages += 1;
                    }
                }
            }
        });
    }

    /// Reads frame `pfn` into `page` when it must be (bit 1, or `writing`); false if it is
    /// left out: all zeros at bit 1, or unreadable at bit 1 (zeros written otherwise).
    fn read_and_check(
        &mut self,
        pfn: u64,
        writing: bool,
        page: &mut [u8; PAGE_BYTES],
        stats: &mut ElfStats,
    ) -> bool {
        let zero_bit = self.dump_level & DL_EXCLUDE_ZERO != 0;
        if !zero_bit && !writing {
            return true;
        }
        let read = pfn
            .checked_mul(PAGE_SIZE)
            .is_some_and(|addr| self.old.read_phys(addr, &mut page[..]).is_ok());
        if !read {
            stats.unreadable_pages += 1;
            page.fill(0);
            return !zero_bit;
        }
        if zero_bit && page.iter().all(|&b| b == 0) {
            stats.zero_pages += 1;
            return false;
        }
        true
    }
}

/// A PT_LOAD of the file being built.
#[derive(Debug, Clone, Copy)]
struct Segment {
    paddr: u64,
    vaddr: u64,
    flags: u32,
    memsz: u64,
    filesz: u64,
    /// Where its data starts in the file (a page boundary).
    data_at: u64,
}

impl Segment {
    /// The PT_LOAD that follows this one in memory, empty.
    fn cut(&self) -> Self {
        Self {
            paddr: self.paddr + self.memsz,
            vaddr: self.vaddr.wrapping_add(self.memsz),
            memsz: 0,
            filesz: 0,
            ..*self
        }
    }

    fn phdr(&self) -> Phdr {
        Phdr {
            p_type: PT_LOAD,
            p_flags: self.flags,
            // No bytes in the file: no offset (makedumpfile writes 0).
            p_offset: if self.filesz == 0 {
                0
            } else {
                self.data_at + self.paddr % PAGE_SIZE
            },
            p_vaddr: self.vaddr,
            p_paddr: self.paddr,
            p_filesz: self.filesz,
            p_memsz: self.memsz,
            p_align: 0,
        }
    }
}

/// The PT_LOADs walked (those with a physical address).
fn walked_loads(core: &CoreHeaders) -> impl Iterator<Item = &LoadSegment> {
    core.loads.iter().filter(|l| l.paddr != NOT_PADDR)
}

/// The partial first page's bytes (0 if the PT_LOAD starts on a page), the frames walked
/// (a partial last one included) and the partial last page's bytes (0 if none), as
/// makedumpfile's `frac_head`, `pfn_start..pfn_end` and `frac_tail`.
fn frames_of(load: &LoadSegment) -> (u64, Range<u64>, u64) {
    let end = load.paddr.saturating_add(load.memsz);
    let in_page = load.paddr % PAGE_SIZE;
    let head = if in_page == 0 { 0 } else { PAGE_SIZE - in_page };
    let tail = end % PAGE_SIZE;
    let first = load.paddr.div_ceil(PAGE_SIZE);
    let last = end.div_ceil(PAGE_SIZE);
    if head > 0 && head >= load.memsz {
        // Inside one page: only the head.
        return (load.memsz, first..first, 0);
    }
    (head, first..last, tail)
}

fn bit(bits: &[u8], i: u64) -> bool {
    let i = usize::try_from(i).unwrap_or(usize::MAX);
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

fn set_bit(bits: &mut [u8], i: u64, on: bool) {
    let i = usize::try_from(i).unwrap_or(usize::MAX);
    if let Some(b) = bits.get_mut(i / 8) {
        if on {
            *b |= 1 << (i % 8);
        } else {
            *b &= !(1 << (i % 8));
        }
    }
}

/// The file's layout for `counts`.
fn layout<E>(core: &CoreHeaders, counts: ElfCounts) -> Result<ElfLayout, ElfFilterError<E>> {
    let phnum = counts
        .loads
        .checked_add(1)
        .filter(|&n| n <= u64::from(u32::MAX))
        .ok_or(ElfFilterError::TooManyLoads(counts.loads))?;
    let extended = phnum >= u64::from(PN_XNUM);
    let headers = phnum
        .checked_mul(PHDR_SIZE)
        .and_then(|n| n.checked_add(EHDR_SIZE))
        .and_then(|n| n.checked_add(if extended { SHDR_SIZE } else { 0 }))
        .ok_or(ElfFilterError::LayoutOverflow)?;
    let notes_offset = round_up(headers).ok_or(ElfFilterError::LayoutOverflow)?;
    let data_offset = round_up(core.notes.len() as u64)
        .and_then(|n| n.checked_add(notes_offset))
        .ok_or(ElfFilterError::LayoutOverflow)?;
    let file_len = counts
        .data_pages
        .checked_mul(PAGE_SIZE)
        .and_then(|n| n.checked_add(data_offset))
        .ok_or(ElfFilterError::LayoutOverflow)?;
    Ok(ElfLayout {
        counts,
        phnum,
        extended,
        notes_offset,
        data_offset,
        file_len,
    })
}

fn round_up(n: u64) -> Option<u64> {
    n.checked_next_multiple_of(PAGE_SIZE)
}

/// `Elf64_Ehdr` as `plan_vmcore()` writes it, with the counts of `layout`.
fn elf_header(core: &CoreHeaders, layout: &ElfLayout) -> Vec<u8> {
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(&ELF_MAGIC);
    h.extend_from_slice(&[ELFCLASS64, ELFDATA2LSB, EV_CURRENT]);
    h.extend_from_slice(&core.e_ident[7..16]);
    h.extend_from_slice(&ET_CORE.to_le_bytes());
    h.extend_from_slice(&EM_X86_64.to_le_bytes());
    h.extend_from_slice(&u32::from(EV_CURRENT).to_le_bytes());
    h.extend_from_slice(&core.e_entry.to_le_bytes());
    h.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // e_phoff
    let section_headers = EHDR_SIZE + layout.phnum * PHDR_SIZE;
    let (shoff, shentsize, shnum, phnum) = match u16::try_from(layout.phnum) {
        Ok(n) if !layout.extended => (0, 0u16, 0u16, n),
        _ => (section_headers, 64, 1, PN_XNUM),
    };
    h.extend_from_slice(&shoff.to_le_bytes());
    h.extend_from_slice(&core.e_flags.to_le_bytes());
    h.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h.extend_from_slice(&phnum.to_le_bytes());
    h.extend_from_slice(&shentsize.to_le_bytes());
    h.extend_from_slice(&shnum.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx: SHN_UNDEF
    h
}

/// Section header 0 of the extended numbering: `SHT_NULL`, `sh_info` = the program
/// header count, everything else 0.
fn section_header_0(phnum: u64) -> [u8; 64] {
    let mut s = [0u8; 64];
    s[44..48].copy_from_slice(&u32::try_from(phnum).unwrap_or(u32::MAX).to_le_bytes());
    s
}

/// The merged notes' PT_NOTE, as `plan_vmcore()` writes it.
fn note_phdr(core: &CoreHeaders, layout: &ElfLayout) -> Phdr {
    let len = core.notes.len() as u64;
    Phdr {
        p_type: PT_NOTE,
        p_flags: 0,
        p_offset: layout.notes_offset,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: len,
        p_memsz: len,
        p_align: 4,
    }
}

/// Appends `phdr`'s 56 bytes to the program header table.
fn push_phdr<S: Sink>(
    headers: &mut BlockStream,
    sink: &mut S,
    phdr: &Phdr,
) -> Result<(), ElfFilterError<S::Error>> {
    let mut bytes = Vec::with_capacity(PHDR_LEN);
    phdr.encode(&mut bytes);
    headers.push(sink, &bytes)
}

/// The notes at `offset`, zero padded to whole blocks.
fn write_notes<S: Sink>(
    sink: &mut S,
    offset: u64,
    notes: &[u8],
) -> Result<(), ElfFilterError<S::Error>> {
    let mut stream = BlockStream::new(offset);
    stream.push(sink, notes)?;
    stream.finish(sink)
}

/// Bytes appended at a growing offset, handed to the sink as whole 4 KiB blocks.
struct BlockStream {
    block: Box<[u8; PAGE_BYTES]>,
    block_at: u64,
    len: usize,
}

impl BlockStream {
    fn new(offset: u64) -> Self {
        Self {
            block: Box::new([0; PAGE_BYTES]),
            block_at: offset,
            len: 0,
        }
    }

    fn push<S: Sink>(
        &mut self,
        sink: &mut S,
        mut bytes: &[u8],
    ) -> Result<(), ElfFilterError<S::Error>> {
        while !bytes.is_empty() {
            let n = bytes.len().min(PAGE_BYTES - self.len);
            self.block[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
            if self.len == PAGE_BYTES {
                sink.write(self.block_at, &self.block[..])
                    .map_err(ElfFilterError::Sink)?;
                self.block_at += PAGE_SIZE;
                self.len = 0;
            }
        }
        Ok(())
    }

    /// The last, partial block, zero padded.
    fn finish<S: Sink>(&mut self, sink: &mut S) -> Result<(), ElfFilterError<S::Error>> {
        if self.len > 0 {
            self.block[self.len..].fill(0);
            sink.write(self.block_at, &self.block[..])
                .map_err(ElfFilterError::Sink)?;
            self.block_at += PAGE_SIZE;
            self.len = 0;
        }
        Ok(())
    }
}

/// The writing pass's output: program headers into the header area, pages appended.
struct Output<'s, S> {
    sink: &'s mut S,
    headers: BlockStream,
    /// Where the next page goes.
    data_at: u64,
}

impl<S: Sink> Output<'_, S> {
    fn page(&mut self, page: &[u8; PAGE_BYTES]) -> Result<(), ElfFilterError<S::Error>> {
        self.sink
            .write(self.data_at, page)
            .map_err(ElfFilterError::Sink)?;
        self.data_at += PAGE_SIZE;
        Ok(())
    }

    fn phdr(&mut self, seg: &Segment) -> Result<(), ElfFilterError<S::Error>> {
        push_phdr(&mut self.headers, self.sink, &seg.phdr())
    }
}

/// The counting pass writes nothing.
struct NoSink;

impl Sink for NoSink {
    type Error = Infallible;
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), Infallible> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
