//! Building the ELF core headers a loader hands to a crash kernel (`elfcorehdr=`), the way
//! kexec-tools does for x86_64 with `kexec_load(2)`.
//!
//! Mirrors kexec-tools `crash_create_elf64_headers()` (`kexec/crashdump-elf.c`), as called by
//! `load_crashdump_segments()` (`kexec/arch/i386/crashdump-x86.c`):
//!
//! * an `ET_CORE` / `EM_X86_64` ELF header, `e_phoff` 64, no section headers, `e_entry` and
//!   `e_flags` 0, `EI_OSABI` `ELFOSABI_NONE`;
//! * one PT_NOTE per CPU buffer (`/sys/devices/system/cpu/cpuN/crash_notes`, size
//!   `crash_notes_size`), then one for VMCOREINFO (`/sys/kernel/vmcoreinfo`): `p_offset` =
//!   `p_paddr` = the buffer's physical address, `p_vaddr` 0, `p_filesz` = `p_memsz` = the
//!   buffer size, `p_flags` and `p_align` 0;
//! * the kernel-text PT_LOAD (`PF_R|PF_W|PF_X`, `p_paddr` = `p_offset` = "Kernel code" in
//!   `/proc/iomem`, `p_vaddr` its address in the kernel text mapping), which overlaps the RAM
//!   PT_LOAD holding it;
//! * one PT_LOAD per RAM range (`PF_R|PF_W|PF_X`, `p_vaddr` = `page_offset + p_paddr`, the
//!   direct map), the crash region already taken out by the caller;
//! * the whole buffer zero-padded to a multiple of [`CORE_HEADER_ALIGN`] (1 KiB,
//!   `ELF_CORE_HEADER_ALIGN`, because `elfcorehdr=` is passed in KiB).
//!
//! One deliberate difference: kexec-tools points the PT_LOAD of the first 640 KiB at a backup
//! copy it makes in the crash region (`p_offset != p_paddr`, `get_backup_area()`), so that the
//! crash kernel may reuse low memory. Current Linux keeps the whole low 1 MiB reserved when
//! `crashkernel=` is given (Documentation/admin-guide/kdump/kdump.rst), and minicap never uses
//! memory below 1 MiB, so every PT_LOAD built here reads memory in place (`p_offset ==
//! p_paddr`) and no backup segment is needed.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::phdr::Phdr;
use crate::{
    to_u64, EHDR_SIZE, ELFCLASS64, ELFDATA2LSB, ELF_MAGIC, EM_X86_64, ET_CORE, EV_CURRENT,
    MAX_HEADER_SIZE, PF_R, PF_W, PF_X, PHDR_SIZE, PN_XNUM, PT_LOAD, PT_NOTE,
};

/// The built headers are padded to a multiple of this (kexec-tools `ELF_CORE_HEADER_ALIGN`).
pub const CORE_HEADER_ALIGN: u64 = 1024;

/// A note buffer in the running kernel's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteBuffer {
    /// Physical address of the buffer.
    pub addr: u64,
    /// Size of the buffer in bytes (the whole buffer, not just the notes in it).
    pub size: u64,
}

/// Where the running kernel's image is, for the kernel-text PT_LOAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelText {
    /// Physical address ("Kernel code" in `/proc/iomem`).
    pub paddr: u64,
    /// Virtual address in the kernel text mapping (1 MiB aligned down by kexec-tools).
    pub vaddr: u64,
    /// Size in bytes (page-aligned up by kexec-tools).
    pub size: u64,
}

/// Everything the core headers describe.
#[derive(Debug, Clone, Copy)]
pub struct CoreHeaderSpec<'a> {
    /// One buffer per possible CPU, in CPU order.
    pub cpu_notes: &'a [NoteBuffer],
    /// The VMCOREINFO note buffer, if the kernel exports one.
    pub vmcoreinfo: Option<NoteBuffer>,
    /// The kernel-text mapping, if known.
    pub kernel_text: Option<KernelText>,
    /// The RAM to dump, half-open ranges, the crash region already excluded.
    pub ram: &'a [Range<u64>],
    /// The direct map's base (`PAGE_OFFSET`): RAM PT_LOADs get `p_vaddr = page_offset + paddr`.
    pub page_offset: u64,
}

/// Why core headers cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// No RAM range to describe: the dump would be empty.
    NoRam,
    /// A RAM range is empty or reversed.
    EmptyRange(Range<u64>),
    /// A note buffer or the kernel text has size 0.
    EmptySegment {
        /// The segment's physical address.
        addr: u64,
    },
    /// A segment's end does not fit in 64 bits.
    AddressOverflow {
        /// The segment's physical address.
        addr: u64,
        /// Its size.
        size: u64,
    },
    /// More program headers than `e_phnum` can hold, or headers larger than a capture kernel
    /// accepts ([`MAX_HEADER_SIZE`]).
    TooManyProgramHeaders(usize),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRam => write!(f, "no System RAM outside the crash region to describe"),
            Self::EmptyRange(r) => write!(f, "empty RAM range {:#x}-{:#x}", r.start, r.end),
            Self::EmptySegment { addr } => {
                write!(f, "note buffer or kernel text at {addr:#x} has size 0")
            }
            Self::AddressOverflow { addr, size } => {
                write!(
                    f,
                    "segment at {addr:#x} of {size:#x} bytes ends beyond 2^64"
                )
            }
            Self::TooManyProgramHeaders(n) => write!(
                f,
                "{n} program headers do not fit in an ELF core header (at most {})",
                max_program_headers()
            ),
        }
    }
}

impl core::error::Error for BuildError {}

/// The largest program header count [`build_core_headers`] emits: below `PN_XNUM`, and small
/// enough that the capture kernel's [`MAX_HEADER_SIZE`] check accepts the result.
pub fn max_program_headers() -> usize {
    let by_size = (MAX_HEADER_SIZE - EHDR_SIZE) / PHDR_SIZE;
    usize::try_from(by_size.min(u64::from(PN_XNUM - 1))).unwrap_or(usize::MAX)
}

/// Number of program headers `spec` produces.
pub fn program_header_count(spec: &CoreHeaderSpec<'_>) -> usize {
    spec.cpu_notes.len()
        + usize::from(spec.vmcoreinfo.is_some())
        + usize::from(spec.kernel_text.is_some())
        + spec.ram.len()
}

/// Builds the ELF core headers described by `spec`: the ELF header, the program header table,
/// zero padding to [`CORE_HEADER_ALIGN`].
pub fn build_core_headers(spec: &CoreHeaderSpec<'_>) -> Result<Vec<u8>, BuildError> {
    if spec.ram.is_empty() {
        return Err(BuildError::NoRam);
    }
    let count = program_header_count(spec);
    if count > max_program_headers() {
        return Err(BuildError::TooManyProgramHeaders(count));
    }
    let phnum = u16::try_from(count).map_err(|_| BuildError::TooManyProgramHeaders(count))?;

    let mut out = Vec::with_capacity(64 + count * 56);
    encode_ehdr(&mut out, phnum);
    for note in spec.cpu_notes.iter().chain(spec.vmcoreinfo.iter()) {
        check_extent(note.addr, note.size)?;
        note_phdr(note).encode(&mut out);
    }
    if let Some(text) = spec.kernel_text {
        check_extent(text.paddr, text.size)?;
        load_phdr(text.paddr, text.vaddr, text.size).encode(&mut out);
    }
    for range in spec.ram {
        if range.start >= range.end {
            return Err(BuildError::EmptyRange(range.clone()));
        }
        let vaddr = spec.page_offset.wrapping_add(range.start);
        load_phdr(range.start, vaddr, range.end - range.start).encode(&mut out);
    }
    let padded = to_u64(out.len()).div_ceil(CORE_HEADER_ALIGN) * CORE_HEADER_ALIGN;
    out.resize(usize::try_from(padded).unwrap_or(out.len()), 0);
    Ok(out)
}

fn check_extent(addr: u64, size: u64) -> Result<(), BuildError> {
    if size == 0 {
        return Err(BuildError::EmptySegment { addr });
    }
    addr.checked_add(size)
        .map(|_| ())
        .ok_or(BuildError::AddressOverflow { addr, size })
}

fn note_phdr(note: &NoteBuffer) -> Phdr {
    Phdr {
        p_type: PT_NOTE,
        p_flags: 0,
        p_offset: note.addr,
        p_vaddr: 0,
        p_paddr: note.addr,
        p_filesz: note.size,
        p_memsz: note.size,
        p_align: 0,
    }
}

fn load_phdr(paddr: u64, vaddr: u64, size: u64) -> Phdr {
    Phdr {
        p_type: PT_LOAD,
        p_flags: PF_R | PF_W | PF_X,
        p_offset: paddr,
        p_vaddr: vaddr,
        p_paddr: paddr,
        p_filesz: size,
        p_memsz: size,
        p_align: 0,
    }
}

/// The 64-byte `Elf64_Ehdr` of an x86_64 core file with `phnum` program headers after it.
fn encode_ehdr(out: &mut Vec<u8>, phnum: u16) {
    let mut ident = [0u8; 16];
    ident[..4].copy_from_slice(&ELF_MAGIC);
    ident[4] = ELFCLASS64;
    ident[5] = ELFDATA2LSB;
    ident[6] = EV_CURRENT;
    // EI_OSABI (7) = ELFOSABI_NONE and the padding stay 0.
    out.extend_from_slice(&ident);
    out.extend_from_slice(&ET_CORE.to_le_bytes());
    out.extend_from_slice(&EM_X86_64.to_le_bytes());
    out.extend_from_slice(&u32::from(EV_CURRENT).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [EHDR_SIZE, PHDR_SIZE] {
        // e_ehsize, e_phentsize: 64 and 56 always fit.
        out.extend_from_slice(&u16::try_from(half).unwrap_or(0).to_le_bytes());
    }
    out.extend_from_slice(&phnum.to_le_bytes());
    out.extend_from_slice(&[0u8; 6]); // e_shentsize, e_shnum, e_shstrndx
}
