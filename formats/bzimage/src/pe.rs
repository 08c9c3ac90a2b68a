//! Reading the PE/COFF view of an image with the rules of the code that hashes and verifies it:
//! Linux `pefile_parse_binary()` and `pefile_digest_pe_contents()`
//! (crypto/asymmetric_keys/verify_pefile.c, used by kexec_file_load to check a signature) and
//! sbsigntool's parser.
//!
//! The Authenticode digest covers the headers up to `SizeOfHeaders` (without the checksum and
//! the certificate-table entry), then each section's raw data in file order, then whatever
//! follows the last section up to the certificate table. The kernel hashes those pieces as if
//! they were contiguous, so a byte between two sections would be hashed at the wrong place: a
//! signable image has sections that tile the file from `SizeOfHeaders` on, which
//! [`PeImage::parse`] checks.

use core::fmt;
use core::ops::Range;

use crate::bytes::{get, get_u16, get_u32};
use crate::layout::*;

/// Most sections [`PeImage`] records; minicap's image has two.
pub const MAX_SECTIONS: usize = 8;

/// Why the PE/COFF view of an image is unusable for signing or verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeError {
    /// No "MZ" at 0, or the file is shorter than a DOS header.
    NoMz,
    /// `e_lfanew` points inside the DOS header or past the file.
    BadPeOffset {
        /// The offset found.
        offset: u32,
    },
    /// No "PE\0\0" at `e_lfanew`.
    NoPeSignature,
    /// The optional header is not PE32+ (or runs past the file).
    NotPe32Plus,
    /// `SizeOfHeaders` does not cover the optional header, or is not inside the file.
    BadHeaderSize {
        /// `SizeOfHeaders`.
        size: u32,
    },
    /// The data directories or the section table do not fit in `SizeOfHeaders`, or there are
    /// too few directories to hold a certificate table.
    TablesOutsideHeaders,
    /// More sections than [`MAX_SECTIONS`].
    TooManySections {
        /// `NumberOfSections`.
        count: u16,
    },
    /// A section's raw data does not start where the previous one (or the headers) ended, so
    /// the Authenticode digest would not cover the file as it is.
    SectionGap {
        /// Index of the offending section (in file order).
        index: usize,
        /// Where its data starts.
        offset: u32,
        /// Where it should start.
        expected: u32,
    },
    /// A section's raw data runs past the file.
    SectionOutsideFile {
        /// Index of the section.
        index: usize,
    },
    /// The certificate table is not at the end of the file or is not 8-byte aligned.
    BadCertificateTable {
        /// Its file offset.
        offset: u32,
        /// Its size.
        size: u32,
    },
}

impl fmt::Display for PeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMz => write!(f, "no \"MZ\" DOS header"),
            Self::BadPeOffset { offset } => {
                write!(f, "e_lfanew {offset:#x} is inside the DOS header or past the file")
            }
            Self::NoPeSignature => write!(f, "no \"PE\\0\\0\" signature at e_lfanew"),
            Self::NotPe32Plus => write!(f, "the optional header is not a whole PE32+ header"),
            Self::BadHeaderSize { size } => write!(
                f,
                "SizeOfHeaders {size:#x} does not cover the optional header or exceeds the file"
            ),
            Self::TablesOutsideHeaders => write!(
                f,
                "data directories (with a certificate entry) and section table do not fit in SizeOfHeaders"
            ),
            Self::TooManySections { count } => {
                write!(f, "{count} sections, more than {MAX_SECTIONS}")
            }
            Self::SectionGap {
                index,
                offset,
                expected,
            } => write!(
                f,
                "section {index} starts at {offset:#x}, not {expected:#x}: the signed digest would skip bytes"
            ),
            Self::SectionOutsideFile { index } => {
                write!(f, "section {index}'s raw data runs past the file")
            }
            Self::BadCertificateTable { offset, size } => write!(
                f,
                "certificate table {size:#x} bytes at {offset:#x} is not 8-byte aligned at the end of the file"
            ),
        }
    }
}

impl core::error::Error for PeError {}

/// One section header's placement fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Section {
    /// Name, NUL padded.
    pub name: [u8; 8],
    /// `VirtualSize`.
    pub virtual_size: u32,
    /// `VirtualAddress` (RVA).
    pub virtual_address: u32,
    /// `SizeOfRawData`.
    pub raw_size: u32,
    /// `PointerToRawData`.
    pub raw_offset: u32,
    /// `Characteristics`.
    pub characteristics: u32,
}

/// The PE/COFF fields signing and verification depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeImage {
    /// COFF `Machine`.
    pub machine: u16,
    /// `AddressOfEntryPoint`.
    pub entry_point: u32,
    /// `SectionAlignment`.
    pub section_alignment: u32,
    /// `FileAlignment`.
    pub file_alignment: u32,
    /// `SizeOfImage`.
    pub size_of_image: u32,
    /// `SizeOfHeaders`.
    pub size_of_headers: u32,
    /// `Subsystem`.
    pub subsystem: u16,
    /// File offset of `CheckSum` (excluded from the digest).
    pub checksum_offset: usize,
    /// File offset of the certificate-table directory entry (excluded from the digest).
    pub cert_entry_offset: usize,
    /// The certificate table: (file offset, size); (0, 0) when unsigned.
    pub cert_table: (u32, u32),
    /// Where the last section's raw data ends: the end of what is signed.
    pub signed_end: u32,
    sections: [Section; MAX_SECTIONS],
    section_count: usize,
}

impl PeImage {
    /// Reads and checks the PE/COFF view of `file`.
    pub fn parse(file: &[u8]) -> Result<Self, PeError> {
        if get::<2>(file, 0) != Some(MZ_MAGIC) {
            return Err(PeError::NoMz);
        }
        let pe = get_u32(file, OFF_E_LFANEW).ok_or(PeError::NoMz)?;
        let pe_at = pe as usize;
        if pe_at < MZ_HEADER_SIZE || get::<4>(file, pe_at).is_none() {
            return Err(PeError::BadPeOffset { offset: pe });
        }
        if get::<4>(file, pe_at) != Some(PE_MAGIC) {
            return Err(PeError::NoPeSignature);
        }
        let coff = pe_at + 4;
        let machine = get_u16(file, coff).ok_or(PeError::NoPeSignature)?;
        let section_count = get_u16(file, coff + 2).ok_or(PeError::NoPeSignature)?;
        let opt = pe_at + PE_HEADER_SIZE;
        let fixed_end = opt + PE32PLUS_FIXED_SIZE;
        if get_u16(file, opt) != Some(PE32PLUS_MAGIC) || file.len() < fixed_end {
            return Err(PeError::NotPe32Plus);
        }
        // The optional header is inside the file from here on.
        let u32_at = |at: usize| get_u32(file, at).unwrap_or(0);
        let size_of_headers = u32_at(opt + 60);
        let header_len = size_of_headers as usize;
        if fixed_end >= header_len || header_len >= file.len() {
            return Err(PeError::BadHeaderSize {
                size: size_of_headers,
            });
        }
        let directories = u32_at(opt + 108) as usize;
        if directories <= CERT_TABLE_DIRECTORY
            || directories > (header_len - fixed_end) / DATA_DIRECTORY_SIZE
        {
            return Err(PeError::TablesOutsideHeaders);
        }
        let cert_entry_offset = fixed_end + CERT_TABLE_DIRECTORY * DATA_DIRECTORY_SIZE;
        let cert_table = (u32_at(cert_entry_offset), u32_at(cert_entry_offset + 4));
        let table = fixed_end + directories * DATA_DIRECTORY_SIZE;
        if usize::from(section_count) > (header_len - table) / SECTION_HEADER_SIZE {
            return Err(PeError::TablesOutsideHeaders);
        }
        if usize::from(section_count) > MAX_SECTIONS {
            return Err(PeError::TooManySections {
                count: section_count,
            });
        }
        let mut sections = [Section::default(); MAX_SECTIONS];
        for (i, section) in sections
            .iter_mut()
            .take(usize::from(section_count))
            .enumerate()
        {
            let at = table + i * SECTION_HEADER_SIZE;
            *section = Section {
                name: get::<8>(file, at).unwrap_or_default(),
                virtual_size: u32_at(at + 8),
                virtual_address: u32_at(at + 12),
                raw_size: u32_at(at + 16),
                raw_offset: u32_at(at + 20),
                characteristics: u32_at(at + 36),
            };
        }
        let mut image = Self {
            machine,
            entry_point: u32_at(opt + 16),
            section_alignment: u32_at(opt + 32),
            file_alignment: u32_at(opt + 36),
            size_of_image: u32_at(opt + 56),
            size_of_headers,
            subsystem: get_u16(file, opt + 68).unwrap_or(0),
            checksum_offset: opt + 64,
            cert_entry_offset,
            cert_table,
            signed_end: size_of_headers,
            sections,
            section_count: usize::from(section_count),
        };
        image.check_coverage(file.len())?;
        Ok(image)
    }

    /// The sections, in table order.
    pub fn sections(&self) -> &[Section] {
        &self.sections[..self.section_count]
    }

    /// The file ranges the Authenticode digest covers, in the order the kernel hashes them
    /// (`pefile_digest_pe_contents()`): the headers without `CheckSum` and the certificate
    /// entry, each section's raw data in file order, then the rest of the file before the
    /// certificate table. `file_len` is the length of the file this header was parsed from.
    pub fn digest_ranges(&self, file_len: usize) -> impl Iterator<Item = Range<usize>> {
        let headers = self.size_of_headers as usize;
        let checksum = self.checksum_offset;
        let cert_entry = self.cert_entry_offset;
        let mut order = self.sections;
        let order = &mut order[..self.section_count];
        order.sort_unstable_by_key(|s| s.raw_offset);
        let mut sections: [Range<usize>; MAX_SECTIONS] = core::array::from_fn(|_| 0..0);
        let mut hashed = headers;
        for (slot, s) in sections.iter_mut().zip(order.iter()) {
            let start = s.raw_offset as usize;
            *slot = start..start + s.raw_size as usize;
            hashed += s.raw_size as usize;
        }
        let trailing = hashed
            ..file_len
                .saturating_sub(self.cert_table.1 as usize)
                .max(hashed);
        [
            0..checksum,
            checksum + 4..cert_entry,
            cert_entry + 8..headers,
        ]
        .into_iter()
        .chain(sections.into_iter().take(self.section_count))
        .chain(core::iter::once(trailing))
        .filter(|r| !r.is_empty())
    }

    /// Sections with file data must tile the file from `SizeOfHeaders` (in file order, as the
    /// digest walks them), and a certificate table must be 8-byte aligned right after them and
    /// end the file.
    fn check_coverage(&mut self, file_len: usize) -> Result<(), PeError> {
        let mut order = self.sections;
        let order = &mut order[..self.section_count];
        order.sort_unstable_by_key(|s| s.raw_offset);
        let mut end = self.size_of_headers;
        for (index, section) in order.iter().filter(|s| s.raw_size != 0).enumerate() {
            if section.raw_offset != end {
                return Err(PeError::SectionGap {
                    index,
                    offset: section.raw_offset,
                    expected: end,
                });
            }
            end = section
                .raw_offset
                .checked_add(section.raw_size)
                .filter(|&e| e as usize <= file_len)
                .ok_or(PeError::SectionOutsideFile { index })?;
        }
        self.signed_end = end;
        let (offset, size) = self.cert_table;
        if (offset, size) != (0, 0) {
            let aligned_after_sections = offset >= end && offset % 8 == 0;
            let ends_file = u64::from(offset) + u64::from(size) == file_len as u64;
            if !aligned_after_sections || !ends_file {
                return Err(PeError::BadCertificateTable { offset, size });
            }
        }
        Ok(())
    }
}
