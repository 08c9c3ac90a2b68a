//! Polled drivers for the minicap capture kernel.
//!
//! The drivers never touch hardware themselves: every register access, port
//! access, PCI configuration access, DMA allocation and clock read goes
//! through [`Platform`], which the kernel's hardware-access layer implements
//! (and host tests implement with fakes). That keeps this crate free of
//! `unsafe` and lets the driver logic run under `cargo test`.
//!
//! There are no interrupts in a capture kernel: every driver polls, and every
//! poll has a deadline ([`Deadline`]).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod pci;
pub mod virtio;

use core::fmt;

/// Everything a driver needs from the machine.
///
/// Memory accessors take *physical* addresses. The capture kernel runs on an
/// identity map, so DMA memory and MMIO registers are reached at their
/// physical addresses; implementations must use volatile accesses.
pub trait Platform {
    /// Volatile 8-bit read of MMIO or DMA memory.
    fn read8(&self, addr: u64) -> u8;
    /// Volatile 16-bit read.
    fn read16(&self, addr: u64) -> u16;
    /// Volatile 32-bit read.
    fn read32(&self, addr: u64) -> u32;
    /// Volatile 8-bit write.
    fn write8(&self, addr: u64, value: u8);
    /// Volatile 16-bit write.
    fn write16(&self, addr: u64, value: u16);
    /// Volatile 32-bit write.
    fn write32(&self, addr: u64, value: u32);
    /// Volatile 64-bit write (used for DMA memory only).
    fn write64(&self, addr: u64, value: u64);

    /// Port input, 8 bits.
    fn inb(&self, port: u16) -> u8;
    /// Port input, 16 bits.
    fn inw(&self, port: u16) -> u16;
    /// Port input, 32 bits.
    fn inl(&self, port: u16) -> u32;
    /// Port output, 8 bits.
    fn outb(&self, port: u16, value: u8);
    /// Port output, 16 bits.
    fn outw(&self, port: u16, value: u16);
    /// Port output, 32 bits.
    fn outl(&self, port: u16, value: u32);

    /// Read a 32-bit register of a PCI function's configuration space.
    fn pci_read32(&self, function: pci::PciAddress, offset: u16) -> u32;
    /// Write a 32-bit register of a PCI function's configuration space.
    fn pci_write32(&self, function: pci::PciAddress, offset: u16, value: u32);

    /// Allocate zeroed memory that devices can reach by DMA at the returned
    /// physical address (never freed: a capture kernel runs once).
    fn dma_alloc(&self, size: usize, align: usize) -> Option<u64>;

    /// Make sure a physical range (a device's registers) is mapped uncached
    /// before the driver touches it.
    fn map_mmio(&self, addr: u64, len: u64) -> bool;

    /// A monotonic clock in microseconds (calibrated TSC, no interrupts).
    fn now_us(&self) -> u64;
}

/// A point in time after which a polled wait gives up.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    end_us: u64,
}

impl Deadline {
    /// A deadline `ms` milliseconds from now.
    pub fn after_ms<P: Platform + ?Sized>(platform: &P, ms: u64) -> Self {
        Self {
            end_us: platform.now_us().saturating_add(ms.saturating_mul(1000)),
        }
    }

    /// Whether the deadline has passed.
    pub fn expired<P: Platform + ?Sized>(&self, platform: &P) -> bool {
        platform.now_us() >= self.end_us
    }
}

/// Poll `done` until it returns true or `timeout_ms` elapses.
pub fn poll_until<P: Platform + ?Sized>(
    platform: &P,
    timeout_ms: u64,
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = Deadline::after_ms(platform, timeout_ms);
    loop {
        if done() {
            return true;
        }
        if deadline.expired(platform) {
            return done();
        }
        core::hint::spin_loop();
    }
}

/// A block device as the capture kernel uses it: byte offsets, lengths that
/// are multiples of the sector size, data moved by DMA from or to physical
/// memory (the crashed kernel's memory is written straight from where it is).
pub trait BlockDevice {
    /// The driver's own error type.
    type Error: fmt::Display;

    /// Size of the device in bytes.
    fn capacity(&self) -> u64;
    /// Logical sector size in bytes; offsets and lengths are multiples of it.
    fn sector_size(&self) -> u32;
    /// Largest number of bytes one `write`/`read` call moves efficiently.
    fn max_transfer(&self) -> u64;
    /// Read `len` bytes at byte `offset` into physical memory at `phys`.
    fn read(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), Self::Error>;
    /// Write `len` bytes from physical memory at `phys` to byte `offset`.
    fn write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), Self::Error>;
    /// Start writing `len` bytes (at most `max_transfer()`) from `phys` to
    /// `offset` and return while the device works, so the caller can use the
    /// CPU meanwhile (minicap hashes the same bytes). At most one write is
    /// outstanding: the next request, `wait` or `flush` finishes it first.
    /// The memory must stay unchanged until then.
    fn start_write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), Self::Error> {
        self.write(offset, phys, len)
    }
    /// Wait for the write `start_write` began, and report its outcome.
    fn wait(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Make every completed write durable (finishing any outstanding one).
    fn flush(&mut self) -> Result<(), Self::Error>;
    /// A short human-readable description ("virtio-blk 00:04.0 modern").
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result;
}
