//! ELF64 core headers ("elfcorehdr") of a crashed x86_64 Linux kernel, and the layout of the
//! `/proc/vmcore`-style ELF file built from them.
//!
//! Before the crash, kexec-tools or the kernel (kexec_file) builds an `ET_CORE` ELF header
//! followed by program headers only. Every `p_offset` in it is a **physical address** in the old
//! kernel's memory: PT_NOTE headers point at the per-CPU `crash_notes` buffers and at the
//! VMCOREINFO note, PT_LOAD headers describe RAM (`p_offset` is where the bytes really are, which
//! differs from `p_paddr` for kexec-tools' backup copy of low memory).
//!
//! * [`parse_core_headers`] reads and validates those headers through [`PhysMem`], walks every
//!   note buffer exactly like Linux `fs/proc/vmcore.c` (`update_note_header_size_elf64()`), and
//!   returns the merged notes, the decoded `NT_PRSTATUS` notes and the VMCOREINFO text.
//! * [`plan_vmcore`] computes the output file the way `/proc/vmcore` presents it: one merged
//!   PT_NOTE, every PT_LOAD page-aligned in the file (`merge_note_headers_elf64()`,
//!   `process_ptload_program_headers_elf64()`).
//!
//! * [`build_core_headers`] is the other side, for a loader: the headers kexec-tools builds
//!   (`crash_create_elf64_headers()`), from the note buffers, the kernel text and the RAM ranges.
//!
//! * [`FileHeader`], [`Phdr`], [`dynamic_entries`] and [`relas`] decode ELF64 structures from
//!   bytes for the host tools that read ELF files (the image check of `cargo xtask build`, the
//!   vmcore reader of the end-to-end test), so that every ELF field is read in one place.
//!
//! The crate is pure logic: no `unsafe`, no hardware access, host tested.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod build;
mod elf64;
mod error;
pub mod le;
mod notes;
mod overlap;
mod parse;
mod phdr;
mod plan;
mod prstatus;

use alloc::vec::Vec;
use core::ops::Range;

pub use build::{
    build_core_headers, max_program_headers, program_header_count, BuildError, CoreHeaderSpec,
    KernelText, NoteBuffer, CORE_HEADER_ALIGN,
};
pub use elf64::{
    dynamic_entries, relas, section_header_info, DynamicEntry, FileHeader, Rela, DT_REL, DT_RELA,
    DT_RELASZ, DT_RELR, DYN_SIZE, EHDR_LEN, ET_DYN, PT_DYNAMIC, PT_INTERP, RELA_SIZE,
    R_X86_64_RELATIVE, SHDR_SIZE,
};
pub use error::{CoreWarning, ElfCoreError};
pub use minicap_physmem::{PhysMem, PhysMemError};
pub use overlap::KERNEL_TEXT_MAP;
pub use parse::{for_each_load_range, parse_core_headers};
pub use phdr::{Phdr, PHDR_LEN};
pub use plan::{plan_vmcore, DataChunk, VmcoreLayout};
pub use prstatus::{PrStatus, PRSTATUS_MIN_SIZE, PRSTATUS_REGS_OFFSET, REG_COUNT, REG_NAMES};

/// Page size of the output file layout (x86_64 `PAGE_SIZE`).
pub use minicap_physmem::PAGE_SIZE;
/// Size of `Elf64_Ehdr`.
pub const EHDR_SIZE: u64 = 64;
/// Size of `Elf64_Phdr`.
pub const PHDR_SIZE: u64 = 56;
/// Size of `Elf64_Nhdr` (`n_namesz`, `n_descsz`, `n_type`).
pub const NHDR_SIZE: u64 = 12;
/// `e_type` of a core file.
pub const ET_CORE: u16 = 4;
/// `e_machine` for x86_64.
pub const EM_X86_64: u16 = 62;
/// `EV_CURRENT`, for both `e_ident[EI_VERSION]` and `e_version`.
pub const EV_CURRENT: u8 = 1;
/// `e_ident[EI_CLASS]` for 64-bit objects.
pub const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]` for little-endian objects.
pub const ELFDATA2LSB: u8 = 1;
/// The ELF magic, `e_ident[0..4]`.
pub const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
/// Program header type of a loadable segment.
pub const PT_LOAD: u32 = 1;
/// Program header type of a note segment.
pub const PT_NOTE: u32 = 4;
/// `e_phnum` value meaning "the real count is in section header 0" (not supported here).
pub const PN_XNUM: u16 = 0xffff;
/// Note type of `struct elf_prstatus` (owner "CORE").
pub const NT_PRSTATUS: u32 = 1;
/// Note type of the VMCOREINFO note (owner "VMCOREINFO").
pub const NT_VMCOREINFO: u32 = 0;
/// `p_flags` bit: executable.
pub const PF_X: u32 = 1;
/// `p_flags` bit: writable.
pub const PF_W: u32 = 2;
/// `p_flags` bit: readable.
pub const PF_R: u32 = 4;

/// Upper bound on the ELF header plus program header table (`max(64, e_phoff + e_phnum * 56)`).
pub const MAX_HEADER_SIZE: u64 = 1 << 20;
/// Upper bound on one PT_NOTE's `p_memsz` (real buffers are 368 and 4132 bytes).
pub const MAX_NOTE_SEGMENT_SIZE: u64 = 1 << 20;
/// Upper bound on the merged notes of all PT_NOTEs together (bounds the heap used).
pub const MAX_TOTAL_NOTES_SIZE: u64 = 16 << 20;
/// Upper bound on the `p_memsz` of all PT_NOTEs together: the old memory read for notes
/// (a real kernel's are one buffer per possible CPU, a few hundred bytes each, and VMCOREINFO).
pub const MAX_NOTE_BYTES_READ: u64 = 32 << 20;

/// One PT_LOAD of the crashed kernel's ELF core headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// `p_paddr`: the physical address this memory had in the old kernel.
    pub paddr: u64,
    /// `p_vaddr`: its virtual address in the old kernel (direct map, or kernel text mapping).
    pub vaddr: u64,
    /// `p_memsz`: size in bytes (never 0 here).
    pub memsz: u64,
    /// `p_offset`: the physical address where the bytes are to be read now. Equal to `paddr`
    /// except for kexec-tools' backup copy of low memory, which lives in the crash region.
    pub source: u64,
    /// `p_flags` (`PF_R | PF_W | PF_X` from both builders).
    pub flags: u32,
}

/// Everything [`parse_core_headers`] learned from the ELF core headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreHeaders {
    /// Bytes of the ELF header plus program header table in memory:
    /// `max(64, e_phoff + e_phnum * 56)`, i.e. `64 + e_phnum * 56` for the usual `e_phoff == 64`.
    pub header_size: u64,
    /// `e_ident` as read (validated magic, class, data and version; OS ABI and padding kept).
    pub e_ident: [u8; 16],
    /// `e_entry` as read (0 from both builders).
    pub e_entry: u64,
    /// `e_flags` as read (0 from both builders).
    pub e_flags: u32,
    /// Every PT_LOAD with `p_memsz > 0`, in program header order (the kernel-text one included).
    pub loads: Vec<LoadSegment>,
    /// The real notes of every PT_NOTE, concatenated in program header order, without the
    /// terminating empty note headers and without trailing buffer space (as `/proc/vmcore`).
    pub notes: Vec<u8>,
    /// The decoded "CORE"/`NT_PRSTATUS` notes, in order (one per CPU that saved its state).
    pub cpus: Vec<PrStatus>,
    /// Byte range, within [`CoreHeaders::notes`], of the first VMCOREINFO note's descriptor
    /// (the `KEY=VALUE\n` text, `n_descsz` bytes).
    pub vmcoreinfo: Option<Range<usize>>,
    /// Non-fatal findings, in the order they were found.
    pub warnings: Vec<CoreWarning>,
}

impl CoreHeaders {
    /// The VMCOREINFO text (`KEY=VALUE\n` lines), if a VMCOREINFO note was found.
    pub fn vmcoreinfo_text(&self) -> Option<&[u8]> {
        self.notes.get(self.vmcoreinfo.clone()?)
    }

    /// The value of the first VMCOREINFO line `key=VALUE`, without the newline.
    ///
    /// `key` is matched exactly, e.g. `"OSRELEASE"`, `"PAGESIZE"`, `"CRASHTIME"`,
    /// `"SYMBOL(init_uts_ns)"`, `"NUMBER(phys_base)"`. Returns `None` if there is no VMCOREINFO,
    /// no such line, or the value is not UTF-8.
    pub fn vmcoreinfo_value(&self, key: &str) -> Option<&str> {
        let key = key.as_bytes();
        self.vmcoreinfo_text()?
            .split(|&b| b == b'\n')
            .find_map(|line| {
                let value = line.strip_prefix(key)?.strip_prefix(b"=")?;
                core::str::from_utf8(value).ok()
            })
    }

    /// Sum of every PT_LOAD's `memsz` (saturating). The kernel-text PT_LOAD is counted too, so
    /// this is the size of the memory part of the ELF output, not the amount of distinct RAM.
    pub fn total_load_bytes(&self) -> u64 {
        self.loads
            .iter()
            .fold(0u64, |acc, l| acc.saturating_add(l.memsz))
    }
}

/// `usize` -> `u64` without a truncating cast (lossless on every supported target).
pub(crate) fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

pub(crate) use minicap_physmem::{page_ceil as page_round_up, page_floor as page_round_down};
