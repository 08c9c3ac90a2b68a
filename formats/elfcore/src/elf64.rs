//! ELF64 little-endian file structures decoded from bytes: the file header, section header 0's
//! `sh_info` (extended program header count), dynamic entries and `Elf64_Rela` relocations.
//!
//! Decoding only reads fields; what a file must look like is the caller's decision (the core
//! header parser, the image check of `cargo xtask build` and the vmcore reader of the end-to-end
//! test each check what they rely on).

use crate::le::{array_at, field, u32_at, u64_at};
use crate::{ELFCLASS64, ELFDATA2LSB, ELF_MAGIC};

/// Size of `Elf64_Ehdr`, as a length.
pub const EHDR_LEN: usize = 64;
/// Size of `Elf64_Shdr`.
pub const SHDR_SIZE: u64 = 64;
/// Size of `Elf64_Dyn`.
pub const DYN_SIZE: usize = 16;
/// Size of `Elf64_Rela`.
pub const RELA_SIZE: usize = 24;
/// `e_type` of a position-independent executable or shared object.
pub const ET_DYN: u16 = 3;
/// Program header type of the dynamic section.
pub const PT_DYNAMIC: u32 = 2;
/// Program header type naming a program interpreter (dynamic loader).
pub const PT_INTERP: u32 = 3;
/// Dynamic tag: address of the `Elf64_Rela` table.
pub const DT_RELA: u64 = 7;
/// Dynamic tag: size in bytes of the `Elf64_Rela` table.
pub const DT_RELASZ: u64 = 8;
/// Dynamic tag: address of an `Elf64_Rel` table.
pub const DT_REL: u64 = 17;
/// Dynamic tag: address of a packed `RELR` relocation table.
pub const DT_RELR: u64 = 36;
/// x86_64 relocation type "add the load base".
pub const R_X86_64_RELATIVE: u32 = 8;

/// The fields of an `Elf64_Ehdr` (`e_ident` kept whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// `e_ident`: magic, class, data encoding, version, OS ABI, padding.
    pub e_ident: [u8; 16],
    /// `e_type`.
    pub e_type: u16,
    /// `e_machine`.
    pub e_machine: u16,
    /// `e_version`.
    pub e_version: u32,
    /// `e_entry`.
    pub e_entry: u64,
    /// `e_phoff`: file offset of the program header table.
    pub e_phoff: u64,
    /// `e_shoff`: file offset of the section header table.
    pub e_shoff: u64,
    /// `e_flags`.
    pub e_flags: u32,
    /// `e_ehsize`.
    pub e_ehsize: u16,
    /// `e_phentsize`.
    pub e_phentsize: u16,
    /// `e_phnum` ([`crate::PN_XNUM`]: see [`section_header_info`]).
    pub e_phnum: u16,
    /// `e_shentsize`.
    pub e_shentsize: u16,
    /// `e_shnum`.
    pub e_shnum: u16,
    /// `e_shstrndx`.
    pub e_shstrndx: u16,
}

impl FileHeader {
    /// Decodes the 64 bytes of an `Elf64_Ehdr`.
    pub fn decode(b: &[u8; EHDR_LEN]) -> Self {
        Self {
            e_ident: field(b, 0),
            e_type: u16::from_le_bytes(field(b, 16)),
            e_machine: u16::from_le_bytes(field(b, 18)),
            e_version: u32::from_le_bytes(field(b, 20)),
            e_entry: u64::from_le_bytes(field(b, 24)),
            e_phoff: u64::from_le_bytes(field(b, 32)),
            e_shoff: u64::from_le_bytes(field(b, 40)),
            e_flags: u32::from_le_bytes(field(b, 48)),
            e_ehsize: u16::from_le_bytes(field(b, 52)),
            e_phentsize: u16::from_le_bytes(field(b, 54)),
            e_phnum: u16::from_le_bytes(field(b, 56)),
            e_shentsize: u16::from_le_bytes(field(b, 58)),
            e_shnum: u16::from_le_bytes(field(b, 60)),
            e_shstrndx: u16::from_le_bytes(field(b, 62)),
        }
    }

    /// Decodes the file header at the start of `file`; `None` if it is shorter than 64 bytes.
    pub fn read(file: &[u8]) -> Option<Self> {
        Some(Self::decode(&array_at(file, 0)?))
    }

    /// `e_ident[0..4]`.
    pub fn magic(&self) -> [u8; 4] {
        [
            self.e_ident[0],
            self.e_ident[1],
            self.e_ident[2],
            self.e_ident[3],
        ]
    }

    /// `e_ident[EI_CLASS]`.
    pub fn class(&self) -> u8 {
        self.e_ident[4]
    }

    /// `e_ident[EI_DATA]`.
    pub fn data_encoding(&self) -> u8 {
        self.e_ident[5]
    }

    /// `e_ident[EI_VERSION]`.
    pub fn ident_version(&self) -> u8 {
        self.e_ident[6]
    }

    /// Whether the magic, class and data encoding say "ELF64 little-endian", the only kind this
    /// crate decodes.
    pub fn is_elf64_le(&self) -> bool {
        self.magic() == ELF_MAGIC
            && self.class() == ELFCLASS64
            && self.data_encoding() == ELFDATA2LSB
    }

    /// File offset of program header `index` (`e_phoff + index * e_phentsize`), or `None` on
    /// overflow.
    pub fn program_header_offset(&self, index: u64) -> Option<u64> {
        index
            .checked_mul(u64::from(self.e_phentsize))?
            .checked_add(self.e_phoff)
    }
}

/// `sh_info` of a section header (the first bytes of an `Elf64_Shdr`); for section header 0 of
/// a file with `e_phnum == PN_XNUM` it is the real program header count. `None` if `b` is too
/// short.
pub fn section_header_info(b: &[u8]) -> Option<u32> {
    u32_at(b, 0x2c)
}

/// One `Elf64_Dyn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynamicEntry {
    /// `d_tag`.
    pub tag: u64,
    /// `d_un` (a value or an address, depending on the tag).
    pub value: u64,
}

/// The entries of a dynamic section, in order (a trailing partial entry is ignored).
pub fn dynamic_entries(b: &[u8]) -> impl Iterator<Item = DynamicEntry> + '_ {
    b.chunks_exact(DYN_SIZE).filter_map(|e| {
        Some(DynamicEntry {
            tag: u64_at(e, 0)?,
            value: u64_at(e, 8)?,
        })
    })
}

/// One `Elf64_Rela`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rela {
    /// `r_offset`: where to apply it.
    pub offset: u64,
    /// `r_info`: symbol index (high 32 bits) and type (low 32 bits).
    pub info: u64,
    /// `r_addend`.
    pub addend: i64,
}

impl Rela {
    /// The relocation type, `ELF64_R_TYPE(r_info)`.
    pub fn kind(&self) -> u32 {
        u32::try_from(self.info & 0xffff_ffff).unwrap_or(u32::MAX)
    }
}

/// The entries of a relocation table, in order (a trailing partial entry is ignored).
pub fn relas(b: &[u8]) -> impl Iterator<Item = Rela> + '_ {
    b.chunks_exact(RELA_SIZE).filter_map(|r| {
        Some(Rela {
            offset: u64_at(r, 0)?,
            info: u64_at(r, 8)?,
            addend: i64::from_le_bytes(array_at(r, 16)?),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes() -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..4].copy_from_slice(&ELF_MAGIC);
        b[4] = ELFCLASS64;
        b[5] = ELFDATA2LSB;
        b[6] = 1;
        b[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&0x1234u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[40..48].copy_from_slice(&0x9000u64.to_le_bytes());
        b[48..52].copy_from_slice(&7u32.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&3u16.to_le_bytes());
        b[58..60].copy_from_slice(&64u16.to_le_bytes());
        b[60..62].copy_from_slice(&5u16.to_le_bytes());
        b[62..64].copy_from_slice(&4u16.to_le_bytes());
        b
    }

    #[test]
    fn decodes_every_file_header_field() {
        let b = header_bytes();
        let h = FileHeader::decode(&b);
        assert_eq!(FileHeader::read(&b), Some(h));
        assert!(h.is_elf64_le());
        assert_eq!(h.ident_version(), 1);
        assert_eq!((h.e_type, h.e_machine, h.e_version), (ET_DYN, 62, 1));
        assert_eq!((h.e_entry, h.e_phoff, h.e_shoff), (0x1234, 64, 0x9000));
        assert_eq!(h.e_flags, 7);
        assert_eq!((h.e_ehsize, h.e_phentsize, h.e_phnum), (64, 56, 3));
        assert_eq!((h.e_shentsize, h.e_shnum, h.e_shstrndx), (64, 5, 4));
        assert_eq!(h.program_header_offset(2), Some(64 + 112));
        assert!(FileHeader::read(&b[..63]).is_none());
        let mut big_endian = b;
        big_endian[5] = 2;
        assert!(!FileHeader::decode(&big_endian).is_elf64_le());
        let mut overflow = h;
        overflow.e_phoff = u64::MAX;
        assert_eq!(overflow.program_header_offset(1), None);
    }

    #[test]
    fn dynamic_entries_and_relocations() {
        let mut d = alloc::vec::Vec::new();
        for (tag, value) in [(DT_RELA, 0x2000u64), (DT_RELASZ, 48), (0, 0)] {
            d.extend_from_slice(&tag.to_le_bytes());
            d.extend_from_slice(&value.to_le_bytes());
        }
        d.push(0xff); // a partial entry is ignored
        let entries: alloc::vec::Vec<_> = dynamic_entries(&d).collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[1],
            DynamicEntry {
                tag: DT_RELASZ,
                value: 48
            }
        );

        let mut r = alloc::vec::Vec::new();
        for (offset, info, addend) in [(0x10u64, 8u64, -4i64), (0x18, (5 << 32) | 1, 0)] {
            r.extend_from_slice(&offset.to_le_bytes());
            r.extend_from_slice(&info.to_le_bytes());
            r.extend_from_slice(&addend.to_le_bytes());
        }
        let rs: alloc::vec::Vec<_> = relas(&r).collect();
        assert_eq!(rs.len(), 2);
        assert_eq!(
            (rs[0].offset, rs[0].kind(), rs[0].addend),
            (0x10, R_X86_64_RELATIVE, -4)
        );
        assert_eq!(rs[1].kind(), 1);

        let mut sh = [0u8; 64];
        sh[0x2c..0x30].copy_from_slice(&70_000u32.to_le_bytes());
        assert_eq!(section_header_info(&sh), Some(70_000));
        assert_eq!(section_header_info(&sh[..0x2f]), None);
    }
}
