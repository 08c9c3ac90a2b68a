//! Buffers that devices read or write by DMA.

use super::cpu;
use super::heap;
use minicap_drivers::access::{in_bounds, DmaRegion, Region, Width};

/// Zeroed memory from the heap that lives for the rest of the run and is
/// reached by devices at its physical address (identity map: its address).
/// The CPU reaches it only through the bounds-checked accessors here; its
/// address (`device_address`) is only for the device.
#[derive(Debug)]
pub struct DmaBuffer {
    addr: u64,
    len: usize,
}

impl DmaBuffer {
    /// Allocate `len` bytes aligned to `align`.
    pub fn new(len: usize, align: usize) -> Option<Self> {
        Some(Self {
            addr: heap::alloc_forever(len, align)?,
            len,
        })
    }

    /// Where the device finds the buffer; hand it only to the device.
    pub fn device_address(&self) -> u64 {
        self.addr
    }

    /// The address of an access, after the bounds check.
    fn at(&self, offset: u64, width: Width) -> u64 {
        assert!(
            in_bounds(self.len as u64, offset, width),
            "DMA access of {} bytes at offset {offset:#x} outside a buffer of {:#x} bytes",
            width.bytes(),
            self.len
        );
        self.addr + offset
    }

    /// Volatile read of `width` at `offset` (the device may write it).
    pub fn read(&self, offset: u64, width: Width) -> u64 {
        let addr = self.at(offset, width);
        // SAFETY: inside this buffer (checked), which the heap allocated for
        // it alone and never frees; aligned (checked); plain integers have
        // no invalid values, so whatever the device wrote is fine to read.
        unsafe { super::volatile_access::read(addr, width) }
    }

    /// Volatile write of `width` (the low bits of `value`) at `offset`.
    pub fn write(&self, offset: u64, width: Width, value: u64) {
        let addr = self.at(offset, width);
        // SAFETY: as for `read`; no Rust reference to the buffer's bytes
        // exists outside `with_bytes_mut`, which holds `&mut self`.
        unsafe { super::volatile_access::write(addr, width, value) }
    }

    /// Copy `out.len()` bytes at `offset` into `out`.
    #[allow(clippy::cast_possible_truncation)] // byte reads
    pub fn read_bytes(&self, offset: u64, out: &mut [u8]) {
        let fits = offset
            .checked_add(out.len() as u64)
            .is_some_and(|end| end <= self.len as u64);
        assert!(fits, "DMA read outside a buffer of {:#x} bytes", self.len);
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = self.read(offset + i as u64, Width::U8) as u8;
        }
    }

    /// Push the buffer out of the CPU caches (for a device that does not
    /// snoop them).
    pub fn flush(&self) {
        cpu::flush_cache_range(self.addr, self.len as u64);
    }

    /// Run `f` on the buffer's bytes.
    pub fn with_bytes_mut<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        // SAFETY: [addr, addr+len) was allocated for this buffer alone and is
        // never freed; `&mut self` makes this the only CPU access, and the
        // caller issues no DMA that uses it until `f` returns.
        let bytes = unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u8, self.len) };
        f(bytes)
    }
}

impl Region for DmaBuffer {
    fn len(&self) -> u64 {
        self.len as u64
    }
}

impl DmaRegion for DmaBuffer {
    fn device_address(&self) -> u64 {
        self.addr
    }
}
