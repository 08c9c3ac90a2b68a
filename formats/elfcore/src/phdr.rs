//! One `Elf64_Phdr`, read from the core headers and written into the vmcore.

use alloc::vec::Vec;

/// The fields of an `Elf64_Phdr`, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_paddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

/// Fields of a buffer the caller sized (56 bytes): never missing.
fn u32_at(b: &[u8], off: usize) -> u32 {
    minicap_physmem::le_u32(b, off).unwrap_or(0)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    minicap_physmem::le_u64(b, off).unwrap_or(0)
}

impl Phdr {
    /// Decode the 56 bytes of `b`.
    pub fn decode(b: &[u8]) -> Self {
        Self {
            p_type: u32_at(b, 0),
            p_flags: u32_at(b, 4),
            p_offset: u64_at(b, 8),
            p_vaddr: u64_at(b, 16),
            p_paddr: u64_at(b, 24),
            p_filesz: u64_at(b, 32),
            p_memsz: u64_at(b, 40),
            p_align: u64_at(b, 48),
        }
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
        assert_eq!(Phdr::decode(&v), p);
    }
}
