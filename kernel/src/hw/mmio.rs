//! Volatile access to physical memory through the identity map: device
//! registers (mapped uncached) and DMA rings (write-back RAM).
//!
//! Every address handed to these functions must be mapped by the current
//! page tables; `paging` guarantees that for RAM we planned, MMIO ranges we
//! mapped with `map_mmio`, and the first 4 GiB.

/// Volatile read of a `T` at physical address `addr`.
fn read<T: Copy>(addr: u64) -> T {
    // SAFETY: identity map (VA == PA) covers `addr` (module contract);
    // volatile because device registers have side effects.
    unsafe { core::ptr::read_volatile(addr as *const T) }
}

/// Volatile write of a `T` at physical address `addr`.
fn write<T: Copy>(addr: u64, value: T) {
    // SAFETY: as for `read`; the callers write only device registers and
    // DMA memory allocated for the device.
    unsafe { core::ptr::write_volatile(addr as *mut T, value) }
}

pub fn read8(addr: u64) -> u8 {
    read(addr)
}
pub fn read16(addr: u64) -> u16 {
    read(addr)
}
pub fn read32(addr: u64) -> u32 {
    read(addr)
}
pub fn read64(addr: u64) -> u64 {
    read(addr)
}
pub fn write8(addr: u64, value: u8) {
    write(addr, value)
}
pub fn write16(addr: u64, value: u16) {
    write(addr, value)
}
pub fn write32(addr: u64, value: u32) {
    write(addr, value)
}
pub fn write64(addr: u64, value: u64) {
    write(addr, value)
}
