//! The ELF header and program headers at the start of a file (`/proc/kcore`, `minicap.elf`),
//! decoded by `minicap-elfcore` and bounds-checked here.

use std::fmt;

use minicap_elfcore::{FileHeader, Phdr, EM_X86_64, PHDR_LEN};

/// Why a file's program headers could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfFileError {
    /// Shorter than an ELF header, or not `\x7fELF`, 64-bit, little-endian.
    NotElf64,
    /// `e_machine` is not x86_64.
    NotX86_64(u16),
    /// `e_phentsize` is not 56.
    BadPhentsize(u16),
    /// The program header table lies beyond the end of the bytes read.
    TableOutside {
        /// `e_phoff`.
        phoff: u64,
        /// `e_phnum`.
        phnum: u16,
        /// Bytes available.
        len: usize,
    },
}

impl fmt::Display for ElfFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotElf64 => write!(f, "not a 64-bit little-endian ELF file"),
            Self::NotX86_64(m) => write!(f, "ELF machine {m}, not x86_64 (62)"),
            Self::BadPhentsize(n) => write!(f, "program header size {n}, not 56"),
            Self::TableOutside { phoff, phnum, len } => write!(
                f,
                "{phnum} program headers at offset {phoff} run past the {len} bytes read"
            ),
        }
    }
}

impl std::error::Error for ElfFileError {}

/// Bytes of the program header table that `header` announces, from the file's start: what to
/// read before calling [`program_headers`].
pub fn headers_len(header: &FileHeader) -> Option<u64> {
    header.program_header_offset(u64::from(header.e_phnum))
}

/// The ELF header and every program header of `bytes` (the file's first bytes).
pub fn program_headers(bytes: &[u8]) -> Result<(FileHeader, Vec<Phdr>), ElfFileError> {
    let header = FileHeader::read(bytes)
        .filter(FileHeader::is_elf64_le)
        .ok_or(ElfFileError::NotElf64)?;
    if header.e_machine != EM_X86_64 {
        return Err(ElfFileError::NotX86_64(header.e_machine));
    }
    if usize::from(header.e_phentsize) != PHDR_LEN {
        return Err(ElfFileError::BadPhentsize(header.e_phentsize));
    }
    let outside = ElfFileError::TableOutside {
        phoff: header.e_phoff,
        phnum: header.e_phnum,
        len: bytes.len(),
    };
    let start = usize::try_from(header.e_phoff).map_err(|_| outside.clone())?;
    let table = start
        .checked_add(usize::from(header.e_phnum) * PHDR_LEN)
        .and_then(|end| bytes.get(start..end))
        .ok_or(outside)?;
    let phdrs = table
        .chunks_exact(PHDR_LEN)
        .filter_map(Phdr::read)
        .collect();
    Ok((header, phdrs))
}
