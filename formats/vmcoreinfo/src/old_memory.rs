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
    /// The old page tables do not map the address (an entry without the present bit).
    NotPresent {
        /// The virtual address.
        vaddr: u64,
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
            Self::NotPresent { vaddr } => {
                write!(f, "the old page tables do not map {vaddr:#x}")
            }
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

/// Present bit of a page-table entry.
const PTE_PRESENT: u64 = 1;
/// Page-size bit: a PUD entry maps 1 GiB, a PMD entry 2 MiB.
const PTE_PSE: u64 = 1 << 7;
/// Physical-address bits of an entry (makedumpfile `ENTRY_MASK`).
const ENTRY_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The old kernel's x86_64 page tables (makedumpfile `__vtop4_x86_64()`), for the addresses
/// no PT_LOAD maps, such as `vmemmap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageTables {
    /// Physical address of the top-level table.
    pub root: u64,
    /// Five levels (`NUMBER(pgtable_l5_enabled)` = 1) or four.
    pub five_level: bool,
    /// Physical-address bits of an entry, without the SME encryption bit.
    pub entry_mask: u64,
}

impl PageTables {
    /// The kernel's own tables: `SYMBOL(init_top_pgt)` (`init_level4_pgt` before 4.13), a
    /// kernel-image address translated with `NUMBER(phys_base)`; `NUMBER(pgtable_l5_enabled)`
    /// (absent means 4 levels) and `NUMBER(sme_mask)` (absent means 0).
    pub fn from_vmcoreinfo(v: &crate::VmcoreInfo<'_>) -> Option<Self> {
        let top = v
            .symbol("init_top_pgt")
            .or_else(|| v.symbol("init_level4_pgt"))?;
        let root = top
            .checked_sub(KERNEL_IMAGE_BASE)?
            .wrapping_add(v.phys_base()?);
        let sme = v.number("sme_mask").unwrap_or(0) as u64;
        Some(Self {
            root,
            five_level: v.number("pgtable_l5_enabled").unwrap_or(0) != 0,
            entry_mask: ENTRY_MASK & !sme,
        })
    }
}

/// The old kernel's memory as seen through its virtual addresses.
#[derive(Debug, Clone, Copy)]
pub struct OldMemory<'a, M: ?Sized> {
    mem: &'a M,
    loads: &'a [LoadSegment],
    phys_base: Option<u64>,
    tables: Option<PageTables>,
}

impl<'a, M: PhysMem + ?Sized> OldMemory<'a, M> {
    /// `loads` are the PT_LOADs of the ELF core headers; `phys_base` is
    /// [`crate::VmcoreInfo::phys_base`] (None if VMCOREINFO lacks it).
    pub fn new(mem: &'a M, loads: &'a [LoadSegment], phys_base: Option<u64>) -> Self {
        Self {
            mem,
            loads,
            phys_base,
            tables: None,
        }
    }

    /// Also translates, through the old page tables, what neither the kernel-image rule nor
    /// a PT_LOAD maps.
    pub fn with_page_tables(self, tables: PageTables) -> Self {
        Self {
            tables: Some(tables),
            ..self
        }
    }

    /// The physical address of `vaddr` in the old kernel.
    pub fn virt_to_phys(&self, vaddr: u64) -> Result<u64, VirtReadError> {
        if vaddr >= KERNEL_IMAGE_BASE {
            if let Some(base) = self.phys_base {
                return Ok((vaddr - KERNEL_IMAGE_BASE).wrapping_add(base));
            }
        }
        let by_load = self.loads.iter().find_map(|l| {
            let off = vaddr.checked_sub(l.vaddr)?;
            (off < l.memsz).then(|| l.paddr.wrapping_add(off))
        });
        match (by_load, &self.tables) {
            (Some(paddr), _) => Ok(paddr),
            (None, Some(tables)) => self.walk(tables, vaddr),
            (None, None) => Err(VirtReadError::Unmapped { vaddr }),
        }
    }

    /// Walks the old page tables down to the page that maps `vaddr`.
    fn walk(&self, tables: &PageTables, vaddr: u64) -> Result<u64, VirtReadError> {
        let shifts: &[u32] = if tables.five_level {
            &[48, 39, 30, 21, 12]
        } else {
            &[39, 30, 21, 12]
        };
        let mut table = tables.root;
        for &shift in shifts {
            let slot = table.wrapping_add(((vaddr >> shift) & 511) * 8);
            let (src, _) = self.source_of(vaddr, slot)?;
            let entry = self.mem.read_u64(src)?;
            if entry & PTE_PRESENT == 0 {
                return Err(VirtReadError::NotPresent { vaddr });
            }
            let frame = entry & tables.entry_mask;
            let leaf = shift == 12 || ((shift == 30 || shift == 21) && entry & PTE_PSE != 0);
            if leaf {
                let size = 1u64 << shift;
                return Ok((frame & !(size - 1)) | (vaddr & (size - 1)));
            }
            table = frame;
        }
        Err(VirtReadError::NotPresent { vaddr })
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

    /// Reads `buf.len()` bytes of the old kernel's physical memory at `paddr`, from where the
    /// PT_LOADs say those bytes are now (kexec-tools' backup region included). Every byte
    /// must be inside a PT_LOAD; the range may span adjacent ones.
    pub fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), VirtReadError> {
        let mut done = 0usize;
        while done < buf.len() {
            let pa = paddr
                .checked_add(u64::try_from(done).unwrap_or(u64::MAX))
                .ok_or(VirtReadError::Wraps { vaddr: paddr })?;
            let (src, left) = self.source_of(pa, pa)?;
            let n = usize::try_from(left)
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
        // Physical reads go to the backup copy too, and stop at the PT_LOAD's end.
        om.read_phys(0xffe, &mut b).unwrap();
        assert_eq!(b, [7, 7, 8, 8]);
        assert_eq!(
            om.read_phys(0x1ffe, &mut b),
            Err(VirtReadError::OutsideLoads {
                vaddr: 0x2000,
                paddr: 0x2000
            })
        );
        // Without phys_base an image address needs a PT_LOAD.
        assert_eq!(
            om.virt_to_phys(KERNEL_IMAGE_BASE + 5),
            Err(VirtReadError::Unmapped {
                vaddr: KERNEL_IMAGE_BASE + 5
            })
        );
    }

    /// Builds page tables in a fake RAM at 0..4 MiB (tables from 0x1000, data at 2 MiB) and
    /// translates through them.
    fn walk_case(five_level: bool) {
        let mut ram = vec![0u8; 4 << 20];
        let mut set = |table: u64, index: u64, entry: u64| {
            let at = usize::try_from(table + index * 8).unwrap();
            ram[at..at + 8].copy_from_slice(&entry.to_le_bytes());
        };
        const VMEMMAP: u64 = 0xffd4_0000_0000_0000;
        let va_4k = VMEMMAP + 0x1000; // 4 KiB page
        let va_2m = VMEMMAP + (1 << 21); // 2 MiB page
        let va_1g = VMEMMAP + (1 << 30); // 1 GiB page (maps to 0, holding everything)
        let idx = |va: u64, shift: u32| (va >> shift) & 511;
        let sme = 1u64 << 47;
        let (root, upper_shifts): (u64, &[u32]) = if five_level {
            (0x1000, &[48, 39])
        } else {
            (0x2000, &[39])
        };
        // Upper levels: one chain root -> ... -> PUD table at 0x3000.
        let mut table = root;
        for (n, &shift) in upper_shifts.iter().enumerate() {
            let next = if n + 1 == upper_shifts.len() {
                0x3000
            } else {
                0x2000
            };
            set(table, idx(VMEMMAP, shift), next | 1 | sme);
            table = next;
        }
        // PUD: entry 0 -> PMD at 0x4000; entry 1 -> 1 GiB page at 0.
        set(0x3000, idx(va_4k, 30), 0x4000 | 1);
        set(0x3000, idx(va_1g, 30), 0x80 | 1 | sme | (1 << 12));
        // PMD: entry 0 -> PTE table at 0x5000; entry 1 -> 2 MiB page at 2 MiB.
        set(0x4000, idx(va_4k, 21), 0x5000 | 1);
        set(0x4000, idx(va_2m, 21), 0x20_0000 | 0x80 | 1);
        // PTE: page 1 -> 0x30_1000; page 2 not present.
        set(0x5000, idx(va_4k, 12), 0x30_1000 | 1);
        set(0x5000, idx(va_4k + 0x1000, 12), 0x30_2000);
        ram[0x30_1008] = 0x5a;
        ram[0x20_0010] = 0x6b;

        let regions = [SliceMem::new(0, &ram)];
        let mem = MultiMem::new(&regions);
        let loads = [load(0, 4 << 20, DIRECT_MAP, 0)];
        let tables = PageTables {
            root,
            five_level,
            entry_mask: ENTRY_MASK & !sme,
        };
        let om = OldMemory::new(&mem, &loads, None).with_page_tables(tables);
        assert_eq!(om.virt_to_phys(va_4k + 8), Ok(0x30_1008));
        assert_eq!(om.virt_to_phys(va_2m + 0x10), Ok(0x20_0010));
        assert_eq!(om.virt_to_phys(va_1g + 0x30_1008), Ok(0x30_1008));
        let mut b = [0u8; 1];
        om.read(va_4k + 8, &mut b).unwrap();
        assert_eq!(b, [0x5a]);
        om.read(va_2m + 0x10, &mut b).unwrap();
        assert_eq!(b, [0x6b]);
        assert_eq!(
            om.virt_to_phys(va_4k + 0x1000),
            Err(VirtReadError::NotPresent {
                vaddr: va_4k + 0x1000
            })
        );
        // A read crossing from a mapped page into an unmapped one fails as a whole.
        let mut two = [0u8; 2];
        assert!(om.read(va_4k + 0xfff, &mut two).is_err());
        // The direct map still goes through the PT_LOAD.
        assert_eq!(om.virt_to_phys(DIRECT_MAP + 5), Ok(5));
        // Without tables, vmemmap is unmapped.
        let plain = OldMemory::new(&mem, &loads, None);
        assert_eq!(
            plain.virt_to_phys(va_4k),
            Err(VirtReadError::Unmapped { vaddr: va_4k })
        );
    }

    #[test]
    fn page_table_walk_four_levels() {
        walk_case(false);
    }

    #[test]
    fn page_table_walk_five_levels() {
        walk_case(true);
    }

    #[test]
    fn page_tables_from_vmcoreinfo() {
        let v = crate::VmcoreInfo::new(
            b"SYMBOL(init_top_pgt)=ffffffffadc10000\nNUMBER(phys_base)=-232783872\n\
NUMBER(pgtable_l5_enabled)=1\nNUMBER(sme_mask)=140737488355328\n",
        );
        let t = PageTables::from_vmcoreinfo(&v).unwrap();
        assert_eq!(t.root, 0x2dc1_0000 - 232_783_872);
        assert!(t.five_level);
        assert_eq!(t.entry_mask, ENTRY_MASK & !(1 << 47));
        let v = crate::VmcoreInfo::new(
            b"SYMBOL(init_level4_pgt)=ffffffff81000000\nNUMBER(phys_base)=0\n",
        );
        let t = PageTables::from_vmcoreinfo(&v).unwrap();
        assert_eq!(
            (t.root, t.five_level, t.entry_mask),
            (0x100_0000, false, ENTRY_MASK)
        );
        assert_eq!(
            PageTables::from_vmcoreinfo(&crate::VmcoreInfo::new(b"NUMBER(phys_base)=0\n")),
            None
        );
    }
}
