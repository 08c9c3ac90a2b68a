//! The kernel's adapters for the dump writer (`minicap_capture::writer`,
//! host tested): DMA buffers from the heap, old memory through the identity
//! map, the console log, the TSC clock, the console.

use crate::console;
use crate::hw::{dma, phys, tsc};
use core::fmt;
pub use minicap_capture::writer::{block_size_supported, mib_per_s_x10, write_dump, Dump};
use minicap_capture::writer::{DmaBuffer, WriterEnv};
use minicap_physmem::PAGE_BYTES;

/// The machine as the writer sees it.
pub struct KernelEnv;

impl DmaBuffer for dma::DmaBuffer {
    fn addr(&self) -> u64 {
        dma::DmaBuffer::device_address(self)
    }

    fn with_bytes_mut<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        dma::DmaBuffer::with_bytes_mut(self, f)
    }
}

impl WriterEnv for KernelEnv {
    type Buffer = dma::DmaBuffer;

    fn dma_buffer(&mut self, len: usize) -> Option<dma::DmaBuffer> {
        dma::DmaBuffer::new(len, PAGE_BYTES)
    }

    fn with_old_memory(&mut self, addr: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> bool {
        phys::with_slice(addr, len, f).is_some()
    }

    fn copy_log(&mut self, out: &mut [u8]) -> usize {
        console::copy_log(out)
    }

    fn now_us(&mut self) -> u64 {
        tsc::now_us()
    }

    fn say(&mut self, line: fmt::Arguments<'_>) {
        console::line(line);
    }
}
