//! Reading and validating the ELF core headers, and merging their notes.

use alloc::vec;
use alloc::vec::Vec;

use core::ops::Range;

use minicap_physmem::PhysMem;

use crate::elf64::{FileHeader, EHDR_LEN};
use crate::notes::walk;
use crate::overlap::check_no_overlap;
use crate::phdr::Phdr;
use crate::{
    page_round_up, to_u64, CoreHeaders, CoreWarning, ElfCoreError, LoadSegment, PrStatus,
    EHDR_SIZE, ELFCLASS64, ELFDATA2LSB, ELF_MAGIC, EM_X86_64, ET_CORE, EV_CURRENT, MAX_HEADER_SIZE,
    MAX_NOTE_BYTES_READ, MAX_NOTE_SEGMENT_SIZE, MAX_TOTAL_NOTES_SIZE, NT_PRSTATUS, NT_VMCOREINFO,
    PHDR_SIZE, PN_XNUM, PT_LOAD, PT_NOTE,
};

/// What the ELF header says about the program header table.
struct TableInfo {
    header_size: u64,
    ident: [u8; 16],
    e_entry: u64,
    e_flags: u32,
    table_addr: u64,
    table_len: u64,
    too_large: ElfCoreError,
}

/// Read and validate the ELF header at `addr`.
fn read_ehdr<M: PhysMem + ?Sized>(mem: &M, addr: u64) -> Result<TableInfo, ElfCoreError> {
    let mut raw = [0u8; EHDR_LEN];
    mem.read(addr, &mut raw)?;
    let ehdr = FileHeader::decode(&raw);

    if ehdr.magic() != ELF_MAGIC {
        return Err(ElfCoreError::BadMagic(ehdr.magic()));
    }
    if ehdr.class() != ELFCLASS64 {
        return Err(ElfCoreError::NotElf64(ehdr.class()));
    }
    if ehdr.data_encoding() != ELFDATA2LSB {
        return Err(ElfCoreError::NotLittleEndian(ehdr.data_encoding()));
    }
    if ehdr.ident_version() != EV_CURRENT {
        return Err(ElfCoreError::BadIdentVersion(ehdr.ident_version()));
    }
    if ehdr.e_type != ET_CORE {
        return Err(ElfCoreError::NotCore(ehdr.e_type));
    }
    if ehdr.e_machine != EM_X86_64 {
        return Err(ElfCoreError::BadMachine(ehdr.e_machine));
    }
    if ehdr.e_version != u32::from(EV_CURRENT) {
        return Err(ElfCoreError::BadVersion(ehdr.e_version));
    }
    if u64::from(ehdr.e_ehsize) != EHDR_SIZE {
        return Err(ElfCoreError::BadEhsize(ehdr.e_ehsize));
    }
    if u64::from(ehdr.e_phentsize) != PHDR_SIZE {
        return Err(ElfCoreError::BadPhentsize(ehdr.e_phentsize));
    }
    let FileHeader {
        e_ident,
        e_entry,
        e_phoff,
        e_flags,
        e_phnum,
        ..
    } = ehdr;
    if e_phnum == 0 {
        return Err(ElfCoreError::NoProgramHeaders);
    }
    if e_phnum == PN_XNUM {
        return Err(ElfCoreError::ExtendedPhnum);
    }

    let table_len = u64::from(e_phnum) * PHDR_SIZE;
    let too_large = ElfCoreError::HeadersTooLarge {
        phoff: e_phoff,
        phnum: e_phnum,
    };
    let header_size = e_phoff
        .checked_add(table_len)
        .ok_or(too_large)?
        .max(EHDR_SIZE);
    if header_size > MAX_HEADER_SIZE {
        return Err(too_large);
    }
    let addr_overflow = ElfCoreError::HeaderAddressOverflow {
        addr,
        phoff: e_phoff,
    };
    let table_addr = addr.checked_add(e_phoff).ok_or(addr_overflow)?;
    table_addr.checked_add(table_len).ok_or(addr_overflow)?;
    Ok(TableInfo {
        header_size,
        ident: e_ident,
        e_entry,
        e_flags,
        table_addr,
        table_len,
        too_large,
    })
}

/// Before there is a heap: validate the ELF header at `addr` and call
/// `visit` with every physical range a PT_LOAD describes or reads from
/// (`[p_paddr, +p_memsz)` and `[p_offset, +p_memsz)`), so that the capture
/// kernel can keep its own memory out of them. Returns the size of the
/// headers (ELF header and program header table). Ranges whose end would
/// overflow are reported as reaching the top of the address space.
pub fn for_each_load_range<M: PhysMem + ?Sized>(
    mem: &M,
    addr: u64,
    mut visit: impl FnMut(Range<u64>),
) -> Result<u64, ElfCoreError> {
    let info = read_ehdr(mem, addr)?;
    let mut raw = [0u8; 56];
    let mut at = info.table_addr;
    let end = info.table_addr + info.table_len;
    while at < end {
        mem.read(at, &mut raw)?;
        let ph = Phdr::decode(&raw);
        if ph.p_type == PT_LOAD && ph.p_memsz > 0 {
            visit(ph.p_paddr..ph.p_paddr.saturating_add(ph.p_memsz));
            visit(ph.p_offset..ph.p_offset.saturating_add(ph.p_memsz));
        }
        at += PHDR_SIZE;
    }
    Ok(info.header_size)
}

/// Reads and validates the ELF core headers at physical address `addr` (the `elfcorehdr=`
/// address), reads every PT_NOTE buffer and merges the notes like `/proc/vmcore`.
///
/// Fatal problems (unreadable or malformed ELF header or program headers, impossible segment
/// addresses, no PT_LOAD, two PT_LOADs describing the same memory: see
/// [`crate::KERNEL_TEXT_MAP`]) are errors. Note trouble is not fatal: an empty or all-zero note
/// buffer, a note exceeding its buffer (dropped with the rest of its buffer, as `/proc/vmcore`
/// does: an offline CPU's `crash_notes` may hold garbage, and the memory is still worth dumping), an unreadable note buffer, a missing VMCOREINFO or
/// NT_PRSTATUS are recorded in [`CoreHeaders::warnings`] and parsing goes on, so that the memory
/// can still be dumped.
///
/// Program header types other than PT_LOAD and PT_NOTE are ignored, and so are PT_LOADs with
/// `p_memsz == 0` (with a warning).
pub fn parse_core_headers<M: PhysMem + ?Sized>(
    mem: &M,
    addr: u64,
) -> Result<CoreHeaders, ElfCoreError> {
    let TableInfo {
        header_size,
        ident,
        e_entry,
        e_flags,
        table_addr,
        table_len,
        too_large,
    } = read_ehdr(mem, addr)?;
    // table_len <= MAX_HEADER_SIZE, so it fits in usize.
    let mut table = vec![0u8; usize::try_from(table_len).map_err(|_| too_large)?];
    mem.read(table_addr, &mut table)?;

    let mut out = CoreHeaders {
        header_size,
        e_ident: ident,
        e_entry,
        e_flags,
        loads: Vec::new(),
        notes: Vec::new(),
        cpus: Vec::new(),
        vmcoreinfo: None,
        warnings: Vec::new(),
    };

    // Bytes of old memory read for PT_NOTEs so far. The merged-notes limit alone does not
    // bound the reading: empty or unreadable buffers add nothing to the merged notes, so a
    // corrupt table of thousands of 1 MiB PT_NOTEs would have the capture read gigabytes
    // before giving up.
    let mut note_bytes_read: u64 = 0;
    // The program header index of each entry of `out.loads`, for errors.
    let mut load_phdrs = Vec::new();
    // Every chunk is 56 bytes long, so `read` decodes each and the indices stay right.
    for (i, ph) in table.chunks_exact(56).filter_map(Phdr::read).enumerate() {
        match ph.p_type {
            PT_LOAD => add_load(&mut out, &mut load_phdrs, i, &ph)?,
            PT_NOTE => {
                note_bytes_read = note_bytes_read.saturating_add(ph.p_memsz);
                if note_bytes_read > MAX_NOTE_BYTES_READ {
                    return Err(ElfCoreError::NoteSegmentsTooLarge {
                        phdr: i,
                        total: note_bytes_read,
                    });
                }
                add_notes(&mut out, mem, i, &ph)?;
            }
            _ => {}
        }
    }

    if out.loads.is_empty() {
        return Err(ElfCoreError::NoLoadSegments);
    }
    check_no_overlap(&out.loads, &load_phdrs)?;
    if out.vmcoreinfo.is_none() {
        out.warnings.push(CoreWarning::NoVmcoreinfo);
    }
    if out.cpus.is_empty() {
        out.warnings.push(CoreWarning::NoPrStatus);
    }
    Ok(out)
}

/// Adds the PT_LOAD to `out.loads`, and its index to `load_phdrs`, if it has a size.
fn add_load(
    out: &mut CoreHeaders,
    load_phdrs: &mut Vec<usize>,
    phdr: usize,
    ph: &Phdr,
) -> Result<(), ElfCoreError> {
    if ph.p_memsz == 0 {
        out.warnings.push(CoreWarning::EmptyLoadSegment { phdr });
        return Ok(());
    }
    ph.p_paddr
        .checked_add(ph.p_memsz)
        .ok_or(ElfCoreError::LoadPaddrOverflow {
            phdr,
            paddr: ph.p_paddr,
            memsz: ph.p_memsz,
        })?;
    ph.p_offset
        .checked_add(ph.p_memsz)
        .and_then(page_round_up)
        .ok_or(ElfCoreError::LoadSourceOverflow {
            phdr,
            source: ph.p_offset,
            memsz: ph.p_memsz,
        })?;
    if ph.p_filesz != ph.p_memsz {
        out.warnings.push(CoreWarning::LoadFileSizeMismatch {
            phdr,
            filesz: ph.p_filesz,
            memsz: ph.p_memsz,
        });
    }
    out.loads.push(LoadSegment {
        paddr: ph.p_paddr,
        vaddr: ph.p_vaddr,
        memsz: ph.p_memsz,
        source: ph.p_offset,
        flags: ph.p_flags,
    });
    load_phdrs.push(phdr);
    Ok(())
}

fn add_notes<M: PhysMem + ?Sized>(
    out: &mut CoreHeaders,
    mem: &M,
    phdr: usize,
    ph: &Phdr,
) -> Result<(), ElfCoreError> {
    let (addr, memsz) = (ph.p_offset, ph.p_memsz);
    if memsz > MAX_NOTE_SEGMENT_SIZE {
        return Err(ElfCoreError::NoteSegmentTooLarge { phdr, memsz });
    }
    if addr.checked_add(memsz).is_none() {
        return Err(ElfCoreError::NoteAddressOverflow { phdr, addr, memsz });
    }
    let empty = CoreWarning::EmptyNoteSegment { phdr, addr, memsz };
    if memsz == 0 {
        out.warnings.push(empty);
        return Ok(());
    }
    // memsz <= MAX_NOTE_SEGMENT_SIZE, so it fits in usize.
    let Ok(len) = usize::try_from(memsz) else {
        return Err(ElfCoreError::NoteSegmentTooLarge { phdr, memsz });
    };
    let mut buf = vec![0u8; len];
    if let Err(error) = mem.read(addr, &mut buf) {
        out.warnings
            .push(CoreWarning::NoteSegmentUnreadable { phdr, error });
        return Ok(());
    }

    let w = walk(&buf);
    if let Some(o) = w.overflow {
        out.warnings.push(CoreWarning::NoteExceedsSegment {
            phdr,
            offset: o.offset,
            namesz: o.namesz,
            descsz: o.descsz,
        });
    }
    if w.real_len == 0 {
        if w.overflow.is_none() {
            out.warnings.push(empty);
        }
        return Ok(());
    }
    let total = to_u64(out.notes.len()) + to_u64(w.real_len);
    if total > MAX_TOTAL_NOTES_SIZE {
        return Err(ElfCoreError::NotesTooLarge { phdr, total });
    }

    let base = out.notes.len();
    out.notes.extend_from_slice(&buf[..w.real_len]);
    for note in &w.notes {
        let name = note.name(&buf);
        if name == b"CORE" && note.ntype == NT_PRSTATUS {
            let desc = &buf[note.desc.clone()];
            match PrStatus::decode(desc) {
                Some(p) => out.cpus.push(p),
                None => out.warnings.push(CoreWarning::ShortPrStatus {
                    phdr,
                    descsz: u32::try_from(desc.len()).unwrap_or(u32::MAX),
                }),
            }
        } else if name == b"VMCOREINFO" && note.ntype == NT_VMCOREINFO {
            if out.vmcoreinfo.is_some() {
                out.warnings.push(CoreWarning::DuplicateVmcoreinfo { phdr });
            } else {
                out.vmcoreinfo = Some(base + note.desc.start..base + note.desc.end);
            }
        }
    }
    Ok(())
}
