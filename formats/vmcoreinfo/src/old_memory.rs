//! Reading the old kernel's virtual addresses through [`PhysMem`] (see the crate docs).

use core::fmt;

use minicap_elfcore::LoadSegment;
use minicap_physmem::{PhysMem, PhysMemError};

/// `__START_KERNEL_map`: the virtual base of the x86_64 kernel image mapping.
pub const KERNEL_IMAGE_BASE: u64 = 0xffff_ffff_8000_0000;

/// Translation granule: reads are split and translated per 4 KiB page.
const PAGE: u64 = 4096;

/// Why a virtual range of the old kernel could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtReadError {
    /// No translation: a direct-map address outside every PT_LOAD's `p_vaddr` range (or a
    /// kernel-image address without `NUMBER(phys_base)` nor a covering PT_LOAD).
    Unmapped {
        /// The virtual address.
        vaddr: u64,
    },
    /// The translated physical address is not inside any PT_LOAD (not old-kernel RAM).
    OutsideLoads {
        /// The virtual address.
        vaddr: u64,
        /// Its physical translation.
        paddr: u64,
    },
    /// The range `vaddr..vaddr+len` wraps around the address space.
    Wraps {
        /// The virtual address.
        vaddr: u64,
    },
    /// Physical memory refused the read.
    Memory(PhysMemError),
}

impl fmt::Display for VirtReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unmapped { vaddr } => {
                write!(f, "virtual address {vaddr:#x} is in no PT_LOAD")
            }
            Self::OutsideLoads { vaddr, paddr } => write!(
                f,
                "virtual address {vaddr:#x} translates to {paddr:#x}, outside every PT_LOAD"
            ),
            Self::Wraps { vaddr } => write!(f, "range at {vaddr:#x} wraps the address space"),
            Self::Memory(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for VirtReadError {}

impl From<PhysMemError> for VirtReadError {
    fn from(e: PhysMemError) -> Self {
        Self::Memory(e)
    }
}

/// The old kernel's memory as seen through its virtual addresses.
#[derive(Debug, Clone, Copy)]
pub struct OldMemory<'a, M: ?Sized> {
    mem: &'a M,
    loads: &'a [LoadSegment],
    phys_base: Option<u64>,
}

impl<'a, M: PhysMem + ?Sized> OldMemory<'a, M> {
    /// `loads` are the PT_LOADs of the ELF core headers; `phys_base` is
    /// [`crate::VmcoreInfo::phys_base`] (None if VMCOREINFO lacks it).
    pub fn new(mem: &'a M, loads: &'a [LoadSegment], phys_base: Option<u64>) -> Self {
        Self {
            mem,
            loads,
            phys_base,
        }
    }

    /// The physical address of `vaddr` in the old kernel.
    pub fn virt_to_phys(&self, vaddr: u64) -> Result<u64, VirtReadError> {
        if vaddr >= KERNEL_IMAGE_BASE {
            if let Some(base) = self.phys_base {
                return Ok((vaddr - KERNEL_IMAGE_BASE).wrapping_add(base));
            }
        }
        self.loads
            .iter()
            .find_map(|l| {
                let off = vaddr.checked_sub(l.vaddr)?;
                (off < l.memsz).then(|| l.paddr.wrapping_add(off))
            })
            .ok_or(VirtReadError::Unmapped { vaddr })
    }

    /// Where the old kernel's physical address `paddr` can be read now, checking that it is
    /// inside a PT_LOAD, together with the bytes left in that PT_LOAD from there.
    fn source_of(&self, vaddr: u64, paddr: u64) -> Result<(u64, u64), VirtReadError> {
        self.loads
            .iter()
            .find_map(|l| {
                let off = paddr.checked_sub(l.paddr)?;
                (off < l.memsz).then(|| (l.source.wrapping_add(off), l.memsz - off))
            })
            .ok_or(VirtReadError::OutsideLoads { vaddr, paddr })
    }

    /// Reads `buf.len()` bytes of the old kernel's virtual memory at `vaddr`.
    pub fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<(), VirtReadError> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if len > 0 && vaddr.checked_add(len - 1).is_none() {
            return Err(VirtReadError::Wraps { vaddr });
        }
        let mut done = 0usize;
        while done < buf.len() {
            let va = vaddr + u64::try_from(done).unwrap_or(u64::MAX);
            let in_page = PAGE - va % PAGE;
            let pa = self.virt_to_phys(va)?;
            let (src, left_in_load) = self.source_of(va, pa)?;
            let room = in_page.min(left_in_load);
            let n = usize::try_from(room)
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            self.mem.read(src, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Reads a little-endian `u64` at `vaddr`.
    pub fn read_u64(&self, vaddr: u64) -> Result<u64, VirtReadError> {
        let mut b = [0u8; 8];
        self.read(vaddr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian `u32` at `vaddr`.
    pub fn read_u32(&self, vaddr: u64) -> Result<u32, VirtReadError> {
        let mut b = [0u8; 4];
        self.read(vaddr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minicap_physmem::{MultiMem, SliceMem};

    const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;

    fn load(paddr: u64, memsz: u64, vaddr: u64, source: u64) -> LoadSegment {
        LoadSegment {
            paddr,
            vaddr,
            memsz,
            source,
            flags: 7,
        }
    }

    #[test]
    fn kernel_image_uses_phys_base_and_direct_map_uses_loads() {
        let low: Vec<u8> = (0..0x2000u32)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let high: Vec<u8> = (0..0x3000u32)
            .map(|i| u8::try_from(i % 13).unwrap())
            .collect();
        let regions = [
            SliceMem::new(0x10_0000, &low),
            SliceMem::new(0x20_0000, &high),
        ];
        let mem = MultiMem::new(&regions);
        let loads = [
            load(0x10_0000, 0x2000, DIRECT_MAP + 0x10_0000, 0x10_0000),
            load(0x20_0000, 0x3000, DIRECT_MAP + 0x20_0000, 0x20_0000),
        ];
        // phys_base negative: image VA 0xffffffff80300000 + (-0x100000) -> 0x200000.
        let om = OldMemory::new(&mem, &loads, Some((-0x10_0000i64) as u64));
        assert_eq!(
            om.virt_to_phys(KERNEL_IMAGE_BASE + 0x30_0000),
            Ok(0x20_0000)
        );
        let mut b = [0u8; 4];
        om.read(KERNEL_IMAGE_BASE + 0x30_0001, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        om.read(DIRECT_MAP + 0x10_0002, &mut b).unwrap();
        assert_eq!(b, [2, 3, 4, 5]);
        // A read crossing from the first PT_LOAD into a hole fails.
        let mut big = [0u8; 16];
        assert!(matches!(
            om.read(DIRECT_MAP + 0x10_1ff8, &mut big),
            Err(VirtReadError::Unmapped { .. })
        ));
        // Image address translating outside every PT_LOAD.
        assert_eq!(
            om.read(KERNEL_IMAGE_BASE, &mut b),
            Err(VirtReadError::OutsideLoads {
                vaddr: KERNEL_IMAGE_BASE,
                paddr: (-0x10_0000i64) as u64
            })
        );
        assert_eq!(
            om.read(u64::MAX - 1, &mut b),
            Err(VirtReadError::Wraps {
                vaddr: u64::MAX - 1
            })
        );
    }

    #[test]
    fn backup_region_is_read_from_its_source_and_pages_are_split() {
        // PT_LOAD for paddr 0x0..0x2000 whose bytes live at 0x50_0000 (kexec-tools backup).
        let backup: Vec<u8> = (0..0x2000u32)
            .map(|i| u8::try_from(i / 0x1000).unwrap() + 7)
            .collect();
        let regions = [SliceMem::new(0x50_0000, &backup)];
        let mem = MultiMem::new(&regions);
        let loads = [load(0, 0x2000, DIRECT_MAP, 0x50_0000)];
        let om = OldMemory::new(&mem, &loads, None);
        let mut b = [0u8; 4];
        om.read(DIRECT_MAP + 0xffe, &mut b).unwrap();
        assert_eq!(b, [7, 7, 8, 8]);
        // Without phys_base an image address needs a PT_LOAD.
        assert_eq!(
            om.virt_to_phys(KERNEL_IMAGE_BASE + 5),
            Err(VirtReadError::Unmapped {
                vaddr: KERNEL_IMAGE_BASE + 5
            })
        );
    }
}
