//! The `/proc/vmcore`-style ELF output: header bytes and where every byte of the file comes from.

use alloc::vec::Vec;

use crate::phdr::Phdr;

use crate::{
    page_round_down, page_round_up, to_u64, CoreHeaders, ElfCoreError, EHDR_SIZE, ELFCLASS64,
    ELFDATA2LSB, ELF_MAGIC, EM_X86_64, ET_CORE, EV_CURRENT, PHDR_SIZE, PN_XNUM, PT_LOAD, PT_NOTE,
};

/// The layout of the ELF dump file, exactly as Linux `/proc/vmcore` presents it.
///
/// The file is, in order:
/// 1. [`VmcoreLayout::header`]: ELF header and program headers, zero padded to a page;
/// 2. at [`VmcoreLayout::notes_offset`]: [`CoreHeaders::notes`], then zeros up to
///    [`VmcoreLayout::notes_len_padded`] bytes;
/// 3. every [`DataChunk`] of [`VmcoreLayout::chunks`], back to back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmcoreLayout {
    /// The file's first bytes: `Elf64_Ehdr`, one merged PT_NOTE, then one PT_LOAD per
    /// [`CoreHeaders::loads`] entry in order; zero padded to a multiple of 4096.
    pub header: Vec<u8>,
    /// File offset of the merged notes (`== header.len()`).
    pub notes_offset: u64,
    /// Bytes reserved for the notes: `notes.len()` rounded up to 4096 (0 if there are none).
    pub notes_len_padded: u64,
    /// Memory contents: `chunks[i]` holds `loads[i]`, in file order.
    pub chunks: Vec<DataChunk>,
    /// Size of the whole file.
    pub total_len: u64,
}

/// A page-aligned run of physical memory copied into the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChunk {
    /// Where the run starts in the file (a multiple of 4096).
    pub file_offset: u64,
    /// Page-aligned physical address to read from (`rounddown(load.source, 4096)`).
    pub source: u64,
    /// Bytes to copy: a multiple of 4096 (`roundup(source + memsz, 4096) - rounddown(source)`).
    pub len: u64,
}

/// Little-endian appends.
fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// Plans the ELF dump file the way Linux `fs/proc/vmcore.c` builds `/proc/vmcore`:
///
/// * ELF header: `e_ident` magic/class/data/version canonical, OS ABI, ABI version and padding
///   copied from [`CoreHeaders::e_ident`]; `ET_CORE`, `EM_X86_64`, `EV_CURRENT`; `e_entry` and
///   `e_flags` copied; `e_phoff` 64, no section headers, `e_phnum = 1 + loads.len()`.
/// * One merged PT_NOTE first: `p_offset` = header size rounded up to 4096, `p_vaddr = p_paddr =
///   0`, `p_filesz = p_memsz = notes.len()`, `p_flags` 0, `p_align` 4.
/// * For each load in order: `start = rounddown(source, 4096)`, `end = roundup(source + memsz,
///   4096)`; `[start, end)` is appended at the running file offset `off`, and the PT_LOAD gets
///   `p_offset = off + (source - start)`, its own `p_paddr`, `p_vaddr`, `p_flags`,
///   `p_filesz = p_memsz = memsz`, `p_align` 0. The kernel-text PT_LOAD is kept, as in
///   `/proc/vmcore`, even though it duplicates RAM another PT_LOAD covers.
pub fn plan_vmcore(h: &CoreHeaders) -> Result<VmcoreLayout, ElfCoreError> {
    if h.loads.is_empty() {
        return Err(ElfCoreError::NoLoadSegments);
    }
    let too_many = ElfCoreError::TooManyLoads(h.loads.len());
    let phnum = h
        .loads
        .len()
        .checked_add(1)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n != PN_XNUM)
        .ok_or(too_many)?;

    let header_len = EHDR_SIZE + u64::from(phnum) * PHDR_SIZE;
    let header_padded = page_round_up(header_len).ok_or(ElfCoreError::LayoutOverflow)?;
    let notes_len = to_u64(h.notes.len());
    let notes_padded = page_round_up(notes_len).ok_or(ElfCoreError::LayoutOverflow)?;

    let mut off = header_padded
        .checked_add(notes_padded)
        .ok_or(ElfCoreError::LayoutOverflow)?;
    let mut chunks = Vec::with_capacity(h.loads.len());
    let mut phdrs = Vec::with_capacity(h.loads.len());
    for (load, l) in h.loads.iter().enumerate() {
        let start = page_round_down(l.source);
        let end = l
            .source
            .checked_add(l.memsz)
            .and_then(page_round_up)
            .ok_or(ElfCoreError::InvalidLoad {
                load,
                source: l.source,
                memsz: l.memsz,
            })?;
        let len = end - start;
        // off + (source - start) <= off + len, checked just below.
        let next = off.checked_add(len).ok_or(ElfCoreError::LayoutOverflow)?;
        chunks.push(DataChunk {
            file_offset: off,
            source: start,
            len,
        });
        phdrs.push(Phdr {
            p_type: PT_LOAD,
            p_flags: l.flags,
            p_offset: off + (l.source - start),
            p_vaddr: l.vaddr,
            p_paddr: l.paddr,
            p_filesz: l.memsz,
            p_memsz: l.memsz,
            p_align: 0,
        });
        off = next;
    }

    let cap = usize::try_from(header_padded).map_err(|_| ElfCoreError::LayoutOverflow)?;
    let mut header = Vec::with_capacity(cap);
    header.extend_from_slice(&ELF_MAGIC);
    header.extend_from_slice(&[ELFCLASS64, ELFDATA2LSB, EV_CURRENT]);
    header.extend_from_slice(&h.e_ident[7..16]);
    put16(&mut header, ET_CORE);
    put16(&mut header, EM_X86_64);
    put32(&mut header, u32::from(EV_CURRENT));
    put64(&mut header, h.e_entry);
    put64(&mut header, EHDR_SIZE); // e_phoff
    put64(&mut header, 0); // e_shoff
    put32(&mut header, h.e_flags);
    put16(&mut header, 64); // e_ehsize
    put16(&mut header, 56); // e_phentsize
    put16(&mut header, phnum);
    put16(&mut header, 0); // e_shentsize
    put16(&mut header, 0); // e_shnum
    put16(&mut header, 0); // e_shstrndx
    Phdr {
        p_type: PT_NOTE,
        p_flags: 0,
        p_offset: header_padded,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: notes_len,
        p_memsz: notes_len,
        p_align: 4,
    }
    .encode(&mut header);
    for p in &phdrs {
        p.encode(&mut header);
    }
    header.resize(cap, 0);

    Ok(VmcoreLayout {
        header,
        notes_offset: header_padded,
        notes_len_padded: notes_padded,
        chunks,
        total_len: off,
    })
}
