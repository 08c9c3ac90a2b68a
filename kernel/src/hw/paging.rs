//! minicap's own identity-mapped page tables (VA == PA everywhere).
//!
//! kexec hands over tables that map only the old kernel's RAM and live in
//! memory minicap wants to reuse. minicap builds its own: RAM and the crash
//! dump's ranges write-back, everything else (MMIO) uncached, with 1 GiB
//! pages where the CPU has them, 2 MiB or 4 KiB at the edges. The paging
//! depth follows the CPU: with CR4.LA57 set (it cannot be cleared in long
//! mode) the tables get a fifth level.

use super::{cpu, heap};
use core::sync::atomic::{fence, Ordering};
use spin::Mutex;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const CR4_LA57: u64 = 1 << 12;

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
use minicap_physmem::PAGE_SIZE as KIB4;

/// Paging depth of the running CPU (4 or 5).
pub fn levels() -> u32 {
    if cpu::cr4() & CR4_LA57 != 0 {
        5
    } else {
        4
    }
}

/// Whether the CPU supports 1 GiB pages (CPUID 0x80000001 EDX bit 26).
pub fn has_gigabyte_pages() -> bool {
    let (max_ext, _, _, _) = cpu::cpuid(0x8000_0000, 0);
    max_ext >= 0x8000_0001 && cpu::cpuid(0x8000_0001, 0).3 & (1 << 26) != 0
}

/// End of the lower canonical half: 128 TiB with 4 levels, 64 PiB with 5.
/// An identity map cannot reach physical addresses beyond it.
fn address_limit(levels: u32) -> u64 {
    1 << (12 + 9 * levels - 1)
}

fn shift_of(level: u32) -> u32 {
    12 + 9 * (level - 1)
}

fn read_entry(table: u64, index: u64) -> u64 {
    // SAFETY: `table` is a page-table page, identity-mapped by the tables in
    // use (page-table pages live in RAM that both the inherited and our own
    // tables map); index < 512.
    unsafe { core::ptr::read_volatile((table + index * 8) as *const u64) }
}

fn write_entry(table: u64, index: u64, value: u64) {
    // SAFETY: as for `read_entry`; the tables written are minicap's own.
    unsafe { core::ptr::write_volatile((table + index * 8) as *mut u64, value) }
}

/// Call `visit` with the physical address of every page-table page reachable
/// from the current CR3 (not the pages they map). Used to keep the inherited
/// tables out of the heap until we have switched away from them.
pub fn for_each_table_page(mut visit: impl FnMut(u64)) {
    fn walk(table: u64, level: u32, visit: &mut dyn FnMut(u64)) {
        visit(table);
        if level == 1 {
            return;
        }
        for index in 0..512 {
            let entry = read_entry(table, index);
            if entry & PRESENT == 0 || (level <= 3 && entry & HUGE != 0) {
                continue;
            }
            walk(entry & ADDRESS_MASK, level - 1, visit);
        }
    }
    walk(cpu::cr3() & ADDRESS_MASK, levels(), &mut visit);
}

/// How the tables at `root` (`levels` deep) map `addr`: None if not at all.
fn lookup(root: u64, levels: u32, addr: u64) -> Option<Caching> {
    let mut table = root;
    let mut level = levels;
    if addr >= address_limit(level) {
        return None;
    }
    loop {
        let entry = read_entry(table, (addr >> shift_of(level)) & 511);
        if entry & PRESENT == 0 {
            return None;
        }
        if level == 1 || (level <= 3 && entry & HUGE != 0) {
            return Some(if entry & CACHE_DISABLE != 0 {
                Caching::Uncached
            } else {
                Caching::WriteBack
            });
        }
        table = entry & ADDRESS_MASK;
        level -= 1;
    }
}

/// How the current page tables map `addr`: None if not at all.
pub fn caching_of(addr: u64) -> Option<Caching> {
    lookup(cpu::cr3() & ADDRESS_MASK, levels(), addr)
}

/// Whether `addr` is mapped by the current page tables.
pub fn is_mapped(addr: u64) -> bool {
    caching_of(addr).is_some()
}

/// Whether every page of [addr, addr + len) is mapped with `caching`.
pub fn range_is(addr: u64, len: u64, caching: Caching) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let mut page = addr & !(KIB4 - 1);
    while page < end {
        if caching_of(page) != Some(caching) {
            return false;
        }
        page += KIB4;
    }
    true
}

/// Cacheability of a mapped range.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Caching {
    /// RAM.
    WriteBack,
    /// Device registers.
    Uncached,
}

/// An identity map under construction (or in use).
pub struct IdentityMap {
    root: u64,
    levels: u32,
    gigabyte_pages: bool,
    /// Number of page-table pages used.
    pub table_pages: u64,
}

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy)]
pub struct OutOfFrames;

impl IdentityMap {
    /// Start an empty map; its table pages come from the heap (zeroed,
    /// never freed, owned by the map alone).
    pub fn new() -> Result<Self, OutOfFrames> {
        let root = heap::page_table_frame().ok_or(OutOfFrames)?;
        Ok(Self {
            root,
            levels: levels(),
            gigabyte_pages: has_gigabyte_pages(),
            table_pages: 1,
        })
    }

    /// Whether 1 GiB pages are in use.
    pub fn uses_gigabyte_pages(&self) -> bool {
        self.gigabyte_pages
    }

    /// Paging depth.
    pub fn depth(&self) -> u32 {
        self.levels
    }

    /// How this map maps `addr` (None: not at all).
    pub fn caching_of(&self, addr: u64) -> Option<Caching> {
        lookup(self.root, self.levels, addr)
    }

    /// Map [start, end) (4 KiB aligned) with the largest pages that fit.
    /// Addresses already mapped keep their mapping.
    pub fn map(&mut self, start: u64, end: u64, caching: Caching) -> Result<(), OutOfFrames> {
        let mut addr = start & !(KIB4 - 1);
        let end = end.div_ceil(KIB4) * KIB4;
        if end > address_limit(self.levels) {
            // Beyond what an identity map can reach with this paging depth.
            return Err(OutOfFrames);
        }
        while addr < end {
            let size = if self.gigabyte_pages && addr.is_multiple_of(GIB) && end - addr >= GIB {
                GIB
            } else if addr.is_multiple_of(MIB2) && end - addr >= MIB2 {
                MIB2
            } else {
                KIB4
            };
            self.map_page(addr, size, caching)?;
            addr += size;
        }
        Ok(())
    }

    fn map_page(&mut self, addr: u64, size: u64, caching: Caching) -> Result<(), OutOfFrames> {
        let leaf_level = match size {
            GIB => 3,
            MIB2 => 2,
            _ => 1,
        };
        let mut flags = PRESENT | WRITABLE;
        if caching == Caching::Uncached {
            flags |= WRITE_THROUGH | CACHE_DISABLE;
        }
        if leaf_level > 1 {
            flags |= HUGE;
        }
        let mut table = self.root;
        let mut level = self.levels;
        loop {
            let index = (addr >> shift_of(level)) & 511;
            let entry = read_entry(table, index);
            if level == leaf_level {
                if entry & PRESENT == 0 {
                    write_entry(table, index, addr | flags);
                }
                return Ok(());
            }
            if entry & PRESENT != 0 {
                if level <= 3 && entry & HUGE != 0 {
                    return Ok(()); // already covered by a larger page
                }
                table = entry & ADDRESS_MASK;
            } else {
                let frame = heap::page_table_frame().ok_or(OutOfFrames)?;
                self.table_pages += 1;
                write_entry(table, index, frame | PRESENT | WRITABLE);
                table = frame;
            }
            level -= 1;
        }
    }

    /// Switch the CPU to this map.
    ///
    /// # Safety
    /// The map must cover the running image, its stacks and data, the heap
    /// and every device or memory range still in use.
    pub unsafe fn activate(&self) {
        fence(Ordering::SeqCst);
        // SAFETY: the caller guarantees the map covers all live memory.
        unsafe { cpu::write_cr3(self.root) };
    }

    /// Reload CR3 so new entries are certainly seen.
    pub fn flush(&self) {
        // SAFETY: reloading the active root changes no mapping.
        unsafe { cpu::write_cr3(self.root) };
    }
}

/// The active map, once minicap has switched to it.
pub static ACTIVE: Mutex<Option<IdentityMap>> = Mutex::new(None);

/// Map a device's register range uncached where it is not mapped yet;
/// true if then every page of it is mapped uncached (a range that touches
/// RAM, which is mapped write-back, is refused: device registers never
/// alias memory Rust or the dump uses).
pub(super) fn map_mmio(addr: u64, len: u64) -> bool {
    let mut guard = ACTIVE.lock();
    let Some(map) = guard.as_mut() else {
        return false;
    };
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let mut page = addr & !(KIB4 - 1);
    let mut all_mapped = true;
    while page < end {
        if !is_mapped(page) {
            all_mapped = false;
            break;
        }
        page += KIB4;
    }
    if !all_mapped {
        if map.map(addr, end, Caching::Uncached).is_err() {
            return false;
        }
        map.flush();
    }
    range_is(addr, len, Caching::Uncached)
}

/// Switch to `map` and keep it as the active map for later MMIO mappings.
/// Stops (internal error, before switching) unless the map covers the
/// running image with its stacks and the whole heap, write-back.
pub fn activate_and_keep(map: IdentityMap) {
    let (image_start, image_end) = super::image_range();
    let heap = heap::range().unwrap_or(0..0);
    for range in [image_start..image_end, heap] {
        let mut page = range.start & !(KIB4 - 1);
        while page < range.end {
            assert!(
                map.caching_of(page) == Some(Caching::WriteBack),
                "own page tables do not map {page:#x} write-back"
            );
            page += KIB4;
        }
    }
    // SAFETY: just checked: the map covers the image (code, data, .bss with
    // the stacks) and the heap (which holds the page tables themselves),
    // write-back; every other range minicap still uses (the dump's memory,
    // the hand-over data, MMIO) is mapped by `memory::build_identity_map`.
    unsafe { map.activate() };
    *ACTIVE.lock() = Some(map);
}
