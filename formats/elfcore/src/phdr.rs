//! One `Elf64_Phdr`, read from the core headers and written into the vmcore.

use alloc::vec::Vec;

use crate::le::{array_at, field};

/// Size of `Elf64_Phdr`, as a length.
pub const PHDR_LEN: usize = 56;

/// The fields of an `Elf64_Phdr`, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phdr {
    /// `p_type` ([`crate::PT_LOAD`], [`crate::PT_NOTE`], ...).
    pub p_type: u32,
    /// `p_flags` ([`crate::PF_R`], [`crate::PF_W`], [`crate::PF_X`]).
    pub p_flags: u32,
    /// `p_offset`: file offset of the segment (a physical address in core headers).
    pub p_offset: u64,
    /// `p_vaddr`.
    pub p_vaddr: u64,
    /// `p_paddr`.
    pub p_paddr: u64,
    /// `p_filesz`: bytes of the segment present in the file.
    pub p_filesz: u64,
    /// `p_memsz`: bytes of the segment in memory.
    pub p_memsz: u64,
    /// `p_align`.
    pub p_align: u64,
}

impl Phdr {
    /// Decodes the 56 bytes of an `Elf64_Phdr`.
    pub fn decode(b: &[u8; PHDR_LEN]) -> Self {
        Self {
            p_type: u32::from_le_bytes(field(b, 0)),
            p_flags: u32::from_le_bytes(field(b, 4)),
            p_offset: u64::from_le_bytes(field(b, 8)),
            p_vaddr: u64::from_le_bytes(field(b, 16)),
            p_paddr: u64::from_le_bytes(field(b, 24)),
            p_filesz: u64::from_le_bytes(field(b, 32)),
            p_memsz: u64::from_le_bytes(field(b, 40)),
            p_align: u64::from_le_bytes(field(b, 48)),
        }
    }

    /// Decodes the program header at the start of `b`; `None` if `b` is shorter than 56 bytes.
    pub fn read(b: &[u8]) -> Option<Self> {
        Some(Self::decode(&array_at(b, 0)?))
    }

    /// Append the 56-byte little-endian encoding to `v`.
    pub fn encode(&self, v: &mut Vec<u8>) {
        v.extend_from_slice(&self.p_type.to_le_bytes());
        v.extend_from_slice(&self.p_flags.to_le_bytes());
        for x in [
            self.p_offset,
            self.p_vaddr,
            self.p_paddr,
            self.p_filesz,
            self.p_memsz,
            self.p_align,
        ] {
            v.extend_from_slice(&x.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Phdr {
            p_type: 1,
            p_flags: 7,
            p_offset: 0x1000,
            p_vaddr: 0xffff_8880_0010_0000,
            p_paddr: 0x10_0000,
            p_filesz: 0x20_0000,
            p_memsz: 0x20_0000,
            p_align: 4,
        };
        let mut v = Vec::new();
        p.encode(&mut v);
        assert_eq!(v.len(), 56);
        assert_eq!(Phdr::read(&v), Some(p));
        assert_eq!(Phdr::read(&v[..55]), None);
    }
}
