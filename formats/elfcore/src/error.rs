//! Errors (fatal) and warnings (non-fatal) of parsing and planning.

use core::fmt;

use minicap_physmem::PhysMemError;

/// Why the ELF core headers cannot be used, or a vmcore cannot be planned from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfCoreError {
    /// The ELF header or program header table could not be read (e.g. it lies outside RAM).
    Read(PhysMemError),
    /// `e_ident[0..4]` is not `\x7fELF`.
    BadMagic([u8; 4]),
    /// `e_ident[EI_CLASS]` is not `ELFCLASS64`.
    NotElf64(u8),
    /// `e_ident[EI_DATA]` is not `ELFDATA2LSB`.
    NotLittleEndian(u8),
    /// `e_ident[EI_VERSION]` is not `EV_CURRENT`.
    BadIdentVersion(u8),
    /// `e_version` is not `EV_CURRENT`.
    BadVersion(u32),
    /// `e_type` is not `ET_CORE`.
    NotCore(u16),
    /// `e_machine` is not `EM_X86_64`.
    BadMachine(u16),
    /// `e_ehsize` is not 64.
    BadEhsize(u16),
    /// `e_phentsize` is not 56.
    BadPhentsize(u16),
    /// `e_phnum` is 0.
    NoProgramHeaders,
    /// `e_phnum` is `PN_XNUM` (extended numbering through section header 0 is not supported).
    ExtendedPhnum,
    /// `max(64, e_phoff + e_phnum * 56)` exceeds [`crate::MAX_HEADER_SIZE`] (or overflows).
    HeadersTooLarge {
        /// `e_phoff`.
        phoff: u64,
        /// `e_phnum`.
        phnum: u16,
    },
    /// The headers' address plus `e_phoff` (and the table size) wraps around the address space.
    HeaderAddressOverflow {
        /// Physical address of the ELF header.
        addr: u64,
        /// `e_phoff`.
        phoff: u64,
    },
    /// A PT_LOAD's `p_paddr + p_memsz` overflows.
    LoadPaddrOverflow {
        /// Index of the program header.
        phdr: usize,
        /// `p_paddr`.
        paddr: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A PT_LOAD's `p_offset + p_memsz`, rounded up to a page, overflows.
    LoadSourceOverflow {
        /// Index of the program header.
        phdr: usize,
        /// `p_offset` (the physical source address).
        source: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// No PT_LOAD with a non-zero size: there is no memory to dump.
    NoLoadSegments,
    /// Two PT_LOADs of the same kind (both RAM through the direct map, or both the kernel
    /// text mapping) describe overlapping physical memory: no loader builds that, so the
    /// table is corrupt and which PT_LOAD is right cannot be told.
    OverlappingLoads {
        /// Index of the first program header (the lower index).
        first: usize,
        /// Its `[p_paddr, p_paddr + p_memsz)`.
        first_range: (u64, u64),
        /// Index of the other program header.
        second: usize,
        /// Its `[p_paddr, p_paddr + p_memsz)`.
        second_range: (u64, u64),
    },
    /// A PT_NOTE's `p_memsz` exceeds [`crate::MAX_NOTE_SEGMENT_SIZE`].
    NoteSegmentTooLarge {
        /// Index of the program header.
        phdr: usize,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A PT_NOTE's `p_offset + p_memsz` overflows.
    NoteAddressOverflow {
        /// Index of the program header.
        phdr: usize,
        /// `p_offset` (physical address of the note buffer).
        addr: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// The merged notes would exceed [`crate::MAX_TOTAL_NOTES_SIZE`].
    NotesTooLarge {
        /// Index of the program header whose notes crossed the limit.
        phdr: usize,
        /// Merged size including that program header's notes.
        total: u64,
    },
    /// The PT_NOTEs up to `phdr` would have more than [`crate::MAX_NOTE_BYTES_READ`] bytes
    /// of old memory read.
    NoteSegmentsTooLarge {
        /// Index of the program header that crossed the limit.
        phdr: usize,
        /// The PT_NOTEs' `p_memsz` so far, that one included.
        total: u64,
    },
    /// [`crate::plan_vmcore`]: more PT_LOADs than an ELF header can count without `PN_XNUM`.
    TooManyLoads(usize),
    /// [`crate::plan_vmcore`]: `loads[load].source + memsz`, rounded up to a page, overflows.
    InvalidLoad {
        /// Index into [`crate::CoreHeaders::loads`].
        load: usize,
        /// Its `source`.
        source: u64,
        /// Its `memsz`.
        memsz: u64,
    },
    /// [`crate::plan_vmcore`]: the output file would be larger than `u64::MAX` bytes.
    LayoutOverflow,
}

impl fmt::Display for ElfCoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Read(e) => write!(f, "cannot read the ELF core headers: {e}"),
            Self::BadMagic(m) => write!(
                f,
                "ELF core headers: bad magic {:02x} {:02x} {:02x} {:02x} (expected 7f 45 4c 46)",
                m[0], m[1], m[2], m[3]
            ),
            Self::NotElf64(c) => write!(
                f,
                "ELF core headers: EI_CLASS is {c}, expected 2 (ELFCLASS64)"
            ),
            Self::NotLittleEndian(d) => write!(
                f,
                "ELF core headers: EI_DATA is {d}, expected 1 (ELFDATA2LSB)"
            ),
            Self::BadIdentVersion(v) => write!(
                f,
                "ELF core headers: EI_VERSION is {v}, expected 1 (EV_CURRENT)"
            ),
            Self::BadVersion(v) => write!(
                f,
                "ELF core headers: e_version is {v}, expected 1 (EV_CURRENT)"
            ),
            Self::NotCore(t) => write!(f, "ELF core headers: e_type is {t}, expected 4 (ET_CORE)"),
            Self::BadMachine(m) => write!(
                f,
                "ELF core headers: e_machine is {m}, expected 62 (EM_X86_64)"
            ),
            Self::BadEhsize(s) => write!(f, "ELF core headers: e_ehsize is {s}, expected 64"),
            Self::BadPhentsize(s) => {
                write!(f, "ELF core headers: e_phentsize is {s}, expected 56")
            }
            Self::NoProgramHeaders => write!(f, "ELF core headers: e_phnum is 0"),
            Self::ExtendedPhnum => write!(
                f,
                "ELF core headers: e_phnum is 0xffff (PN_XNUM extended numbering is not supported)"
            ),
            Self::HeadersTooLarge { phoff, phnum } => write!(
                f,
                "ELF core headers: e_phoff {phoff:#x} + e_phnum {phnum} * 56 exceeds the {:#x}-byte limit",
                crate::MAX_HEADER_SIZE
            ),
            Self::HeaderAddressOverflow { addr, phoff } => write!(
                f,
                "ELF core headers at {addr:#x}: e_phoff {phoff:#x} wraps around the address space"
            ),
            Self::LoadPaddrOverflow { phdr, paddr, memsz } => write!(
                f,
                "ELF core headers: PT_LOAD #{phdr}: p_paddr {paddr:#x} + p_memsz {memsz:#x} overflows"
            ),
            Self::LoadSourceOverflow {
                phdr,
                source,
                memsz,
            } => write!(
                f,
                "ELF core headers: PT_LOAD #{phdr}: p_offset {source:#x} + p_memsz {memsz:#x} overflows"
            ),
            Self::NoLoadSegments => write!(
                f,
                "ELF core headers: no PT_LOAD with a non-zero size, nothing to dump"
            ),
            Self::OverlappingLoads {
                first,
                first_range,
                second,
                second_range,
            } => write!(
                f,
                "ELF core headers: PT_LOAD #{second} ({:#x}-{:#x}) overlaps PT_LOAD #{first} ({:#x}-{:#x}): the same memory described twice",
                second_range.0, second_range.1, first_range.0, first_range.1
            ),
            Self::NoteSegmentTooLarge { phdr, memsz } => write!(
                f,
                "ELF core headers: PT_NOTE #{phdr}: p_memsz {memsz:#x} exceeds the {:#x}-byte limit",
                crate::MAX_NOTE_SEGMENT_SIZE
            ),
            Self::NoteAddressOverflow { phdr, addr, memsz } => write!(
                f,
                "ELF core headers: PT_NOTE #{phdr}: p_offset {addr:#x} + p_memsz {memsz:#x} overflows"
            ),
            Self::NotesTooLarge { phdr, total } => write!(
                f,
                "ELF core headers: notes up to PT_NOTE #{phdr} total {total:#x} bytes, over the {:#x}-byte limit",
                crate::MAX_TOTAL_NOTES_SIZE
            ),
            Self::NoteSegmentsTooLarge { phdr, total } => write!(
                f,
                "ELF core headers: the PT_NOTEs up to #{phdr} span {total:#x} bytes, over the {:#x}-byte limit",
                crate::MAX_NOTE_BYTES_READ
            ),
            Self::TooManyLoads(n) => write!(
                f,
                "vmcore layout: {n} PT_LOADs plus one PT_NOTE do not fit in e_phnum (max 65534)"
            ),
            Self::InvalidLoad {
                load,
                source,
                memsz,
            } => write!(
                f,
                "vmcore layout: load #{load}: source {source:#x} + memsz {memsz:#x} overflows"
            ),
            Self::LayoutOverflow => write!(f, "vmcore layout: file size overflows u64"),
        }
    }
}

impl core::error::Error for ElfCoreError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Read(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PhysMemError> for ElfCoreError {
    fn from(e: PhysMemError) -> Self {
        Self::Read(e)
    }
}

/// Something odd but survivable in the ELF core headers; parsing went on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreWarning {
    /// A PT_NOTE held no note: zero `p_memsz`, or the first `n_namesz` is 0 (the buffer of a CPU
    /// that never saved its state: offline, or it did not answer the NMI).
    EmptyNoteSegment {
        /// Index of the program header.
        phdr: usize,
        /// `p_offset` (physical address of the buffer).
        addr: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A note would extend past its PT_NOTE's `p_memsz`; it and the rest of that buffer were
    /// dropped, as `/proc/vmcore` does ("Exceeded p_memsz, dropping PT_NOTE entry").
    NoteExceedsSegment {
        /// Index of the program header.
        phdr: usize,
        /// Offset of the dropped note within the buffer.
        offset: u64,
        /// Its `n_namesz`.
        namesz: u32,
        /// Its `n_descsz`.
        descsz: u32,
    },
    /// A PT_NOTE buffer could not be read; its notes are missing from the output.
    NoteSegmentUnreadable {
        /// Index of the program header.
        phdr: usize,
        /// The failed read.
        error: PhysMemError,
    },
    /// A "CORE"/`NT_PRSTATUS` note was too short to hold `pr_reg`; it was kept in the merged
    /// notes but not decoded.
    ShortPrStatus {
        /// Index of the program header.
        phdr: usize,
        /// Its `n_descsz`.
        descsz: u32,
    },
    /// More than one VMCOREINFO note; the first one is used.
    DuplicateVmcoreinfo {
        /// Index of the program header of the extra note.
        phdr: usize,
    },
    /// A PT_LOAD with `p_memsz == 0` was ignored.
    EmptyLoadSegment {
        /// Index of the program header.
        phdr: usize,
    },
    /// A PT_LOAD's `p_filesz` differs from `p_memsz`; `p_memsz` is used (as `/proc/vmcore`).
    LoadFileSizeMismatch {
        /// Index of the program header.
        phdr: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// No VMCOREINFO note: crash/makedumpfile will lack symbol and layout information.
    NoVmcoreinfo,
    /// No `NT_PRSTATUS` note: no CPU registers were saved.
    NoPrStatus,
}

impl fmt::Display for CoreWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::EmptyNoteSegment { phdr, addr, memsz } => write!(
                f,
                "PT_NOTE #{phdr} at {addr:#x} (p_memsz {memsz:#x}) holds no notes (CPU offline or not stopped?)"
            ),
            Self::NoteExceedsSegment {
                phdr,
                offset,
                namesz,
                descsz,
            } => write!(
                f,
                "PT_NOTE #{phdr}: note at offset {offset:#x} (n_namesz {namesz:#x}, n_descsz {descsz:#x}) exceeds p_memsz, dropped"
            ),
            Self::NoteSegmentUnreadable { phdr, error } => {
                write!(f, "PT_NOTE #{phdr} skipped: {error}")
            }
            Self::ShortPrStatus { phdr, descsz } => write!(
                f,
                "PT_NOTE #{phdr}: NT_PRSTATUS n_descsz {descsz} is shorter than {} bytes, registers not decoded",
                crate::PRSTATUS_MIN_SIZE
            ),
            Self::DuplicateVmcoreinfo { phdr } => write!(
                f,
                "PT_NOTE #{phdr}: another VMCOREINFO note, the first one is used"
            ),
            Self::EmptyLoadSegment { phdr } => {
                write!(f, "PT_LOAD #{phdr} has p_memsz 0, ignored")
            }
            Self::LoadFileSizeMismatch {
                phdr,
                filesz,
                memsz,
            } => write!(
                f,
                "PT_LOAD #{phdr}: p_filesz {filesz:#x} != p_memsz {memsz:#x}, using p_memsz"
            ),
            Self::NoVmcoreinfo => write!(f, "no VMCOREINFO note"),
            Self::NoPrStatus => write!(f, "no NT_PRSTATUS note: no CPU registers were saved"),
        }
    }
}
