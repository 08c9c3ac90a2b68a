//! Buffers that devices read or write by DMA.

use super::heap;

/// Zeroed memory from the heap that lives for the rest of the run and is
/// reached by devices at its physical address (identity map: its address).
/// The CPU touches it only through `&mut self`, so never while the caller
/// has a request that uses it outstanding.
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

    /// Physical address, for the device.
    pub fn addr(&self) -> u64 {
        self.addr
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
