//! The hardware-access layer: the only part of minicap that contains
//! `unsafe`, and the lowest one: it calls nothing above it (the exception
//! stub hands exceptions to a handler the top registers at start-up).
//! Everything above it (parsing, planning, the capture state machine, the
//! drivers) goes through the safe functions here, and no safe function
//! reaches an arbitrary address: device registers, I/O ports and DMA memory
//! only through typed, bounded regions (`mmio::MmioRegion`,
//! `port::PortRange`, `dma::DmaBuffer`; the pattern drivers follow on top
//! is in `minicap_drivers::access`), old memory only where it is mapped as
//! RAM outside minicap's own image and heap (`phys`), the heap only over
//! RAM checked here (`heap_init::init_checked`).
#![allow(unsafe_code)]

pub mod apic;
pub mod cpu;
pub mod dma;
mod ecam;
mod entry;
pub mod heap;
pub mod heap_init;
pub mod iommu;
pub mod mmio;
pub mod paging;
pub mod pci_config;
pub mod phys;
pub mod pic;
pub mod platform;
pub mod port;
pub mod power;
pub mod serial;
pub mod tsc;
mod volatile_access;

pub use entry::set_exception_handler;

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Physical extent of the loaded image, .bss and stacks included.
pub fn image_range() -> (u64, u64) {
    // Only the addresses of the linker symbols are taken (no read).
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}
