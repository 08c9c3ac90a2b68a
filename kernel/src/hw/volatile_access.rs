//! One volatile access of a given width: the single place that turns a
//! checked address into a load or store, shared by device registers
//! (`mmio`) and DMA memory (`dma`), which do their own bounds checks.

use minicap_drivers::access::Width;

/// Volatile read of `width` at `addr`, zero-extended.
///
/// # Safety
/// `addr` is mapped (VA == PA), aligned to `width`, and the `width` bytes
/// there are device registers or memory no Rust reference covers for the
/// duration of the access.
pub(super) unsafe fn read(addr: u64, width: Width) -> u64 {
    // SAFETY: the caller's contract.
    unsafe {
        match width {
            Width::U8 => u64::from(core::ptr::read_volatile(addr as *const u8)),
            Width::U16 => u64::from(core::ptr::read_volatile(addr as *const u16)),
            Width::U32 => u64::from(core::ptr::read_volatile(addr as *const u32)),
            Width::U64 => core::ptr::read_volatile(addr as *const u64),
        }
    }
}

/// Volatile write of the low `width` bytes of `value` at `addr`.
///
/// # Safety
/// As for [`read`], and no Rust reference covers those bytes at all while
/// the write happens.
#[allow(clippy::cast_possible_truncation)] // the width selects the bits
pub(super) unsafe fn write(addr: u64, width: Width, value: u64) {
    // SAFETY: the caller's contract.
    unsafe {
        match width {
            Width::U8 => core::ptr::write_volatile(addr as *mut u8, value as u8),
            Width::U16 => core::ptr::write_volatile(addr as *mut u16, value as u16),
            Width::U32 => core::ptr::write_volatile(addr as *mut u32, value as u32),
            Width::U64 => core::ptr::write_volatile(addr as *mut u64, value),
        }
    }
}
