//! Device registers in memory space, as typed bounded regions.
//!
//! A region is handed out only by `claim`, which maps it uncached and
//! refuses a range that touches RAM (mapped write-back) or overlaps a
//! region still held: two live regions never alias, and no region aliases
//! memory Rust or the dump uses. Every access is checked against the
//! region's bounds and alignment. Dropping a region gives its range back.
//! (The pattern drivers follow on top of this is in
//! `minicap_drivers::access`.)

use super::paging;
use minicap_drivers::access::{in_bounds, Region, Width};
use spin::Mutex;

/// Live regions, as (start, end); at most this many at once.
const MAX_REGIONS: usize = 64;
static CLAIMED: Mutex<[Option<(u64, u64)>; MAX_REGIONS]> = Mutex::new([None; MAX_REGIONS]);

/// A claimed, uncached range of device registers.
#[derive(Debug)]
pub struct MmioRegion {
    base: u64,
    len: u64,
}

impl MmioRegion {
    /// Map [base, base + len) uncached and claim it; None if it is empty,
    /// touches RAM, overlaps a live region, or cannot be mapped.
    pub(in crate::hw) fn claim(base: u64, len: u64) -> Option<Self> {
        let end = base.checked_add(len)?;
        if len == 0 {
            return None;
        }
        let mut claimed = CLAIMED.lock();
        if claimed
            .iter()
            .flatten()
            .any(|&(start, stop)| base < stop && start < end)
        {
            return None;
        }
        if !paging::map_mmio(base, len) {
            return None;
        }
        let slot = claimed.iter_mut().find(|slot| slot.is_none())?;
        *slot = Some((base, end));
        Some(Self { base, len })
    }

    /// Whether [addr, addr + len) overlaps a live region.
    /// (If the list is locked, by code an exception interrupted, the answer
    /// is yes: the caller refuses the read rather than waiting forever.)
    pub(in crate::hw) fn any_overlaps(addr: u64, len: u64) -> bool {
        let end = addr.saturating_add(len);
        CLAIMED.try_lock().is_none_or(|claimed| {
            claimed
                .iter()
                .flatten()
                .any(|&(start, stop)| addr < stop && start < end)
        })
    }

    /// The address of an access, after the bounds check.
    fn at(&self, offset: u64, width: Width) -> u64 {
        assert!(
            in_bounds(self.len, offset, width),
            "register access of {} bytes at offset {offset:#x} outside the region {:#x}+{:#x}",
            width.bytes(),
            self.base,
            self.len
        );
        self.base + offset
    }

    /// Volatile read of `width` at `offset`.
    pub fn read(&self, offset: u64, width: Width) -> u64 {
        let addr = self.at(offset, width);
        // SAFETY: `addr` lies inside this region (checked), which `claim`
        // mapped uncached at VA == PA; it holds device registers, not memory
        // any Rust object lives in (RAM is refused); the access is aligned.
        unsafe { super::volatile_access::read(addr, width) }
    }

    /// Volatile write of `width` (the low bits of `value`) at `offset`.
    pub fn write(&self, offset: u64, width: Width, value: u64) {
        let addr = self.at(offset, width);
        // SAFETY: as for `read`.
        unsafe { super::volatile_access::write(addr, width, value) }
    }

    /// 32-bit read.
    #[allow(clippy::cast_possible_truncation)] // a 32-bit access
    pub fn read32(&self, offset: u64) -> u32 {
        self.read(offset, Width::U32) as u32
    }

    /// 32-bit write.
    pub fn write32(&self, offset: u64, value: u32) {
        self.write(offset, Width::U32, u64::from(value))
    }

    /// 64-bit read.
    pub fn read64(&self, offset: u64) -> u64 {
        self.read(offset, Width::U64)
    }

    /// 64-bit write.
    pub fn write64(&self, offset: u64, value: u64) {
        self.write(offset, Width::U64, value)
    }
}

impl Region for MmioRegion {
    fn len(&self) -> u64 {
        self.len
    }
}

impl Drop for MmioRegion {
    fn drop(&mut self) {
        let mut claimed = CLAIMED.lock();
        if let Some(slot) = claimed
            .iter_mut()
            .find(|slot| **slot == Some((self.base, self.base + self.len)))
        {
            *slot = None;
        }
    }
}
