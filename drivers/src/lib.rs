//! Polled drivers for the minicap capture kernel.
//!
//! The drivers never touch hardware themselves: every register access, port
//! access, PCI configuration access, DMA allocation and clock read goes
//! through [`Platform`], which the kernel's hardware-access layer implements
//! (and host tests implement with fakes). That keeps this crate free of
//! `unsafe` and lets the driver logic run under `cargo test`; and because a
//! driver only ever holds typed, bounded regions the platform handed out
//! ([`access`]), it cannot reach memory that is not its device's.
//!
//! There are no interrupts in a capture kernel: every driver polls, and every
//! poll has a deadline ([`Deadline`]).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod access;
pub mod ahci;
pub mod amdvi;
pub mod dma_alias;
mod inflight;
pub mod nvme;
pub mod pci;
pub mod virtio;
pub mod vtd;

use core::fmt;

/// Everything a driver needs from the machine.
///
/// A driver reaches hardware only through regions the platform hands out
/// (see [`access`] for the pattern): register windows inside a PCI
/// function's BARs, I/O port ranges of an I/O BAR, and DMA allocations.
/// The raw accessors below take such a region and an offset inside it;
/// every implementation checks the offset with [`access::in_bounds`] (the
/// kernel stops on a violation, the test machine records it). Drivers use
/// the typed wrappers [`access::Registers`], [`access::Ports`] and
/// [`access::Dma`] instead of calling them directly.
pub trait Platform {
    /// A mapped window of memory-space registers.
    type Mmio: access::Region;
    /// A range of I/O ports.
    type Ports: access::Region;
    /// Memory a device reaches by DMA.
    type Dma: access::DmaRegion;

    /// Map `len` bytes at `offset` inside memory BAR `bar` of `function`
    /// uncached and hand them out (None: not a memory BAR, the range
    /// overlaps RAM or a region already handed out, or cannot be mapped).
    fn map_registers(
        &self,
        function: pci::PciAddress,
        bar: u8,
        offset: u64,
        len: u64,
    ) -> Option<Self::Mmio>;
    /// Volatile read of `width` at `offset` in `region`.
    fn mmio_read(&self, region: &Self::Mmio, offset: u64, width: access::Width) -> u64;
    /// Volatile write of `width` at `offset` in `region`.
    fn mmio_write(&self, region: &Self::Mmio, offset: u64, width: access::Width, value: u64);

    /// Claim the first `len` ports of I/O BAR `bar` of `function`.
    fn claim_ports(&self, function: pci::PciAddress, bar: u8, len: u16) -> Option<Self::Ports>;
    /// Port input of `width` at `offset` in `ports`.
    fn port_read(&self, ports: &Self::Ports, offset: u64, width: access::Width) -> u64;
    /// Port output of `width` at `offset` in `ports`.
    fn port_write(&self, ports: &Self::Ports, offset: u64, width: access::Width, value: u64);

    /// The PCI segments (and their buses) `pci_read32`/`pci_write32`
    /// reach; a function elsewhere reads as absent.
    fn pci_segments(&self) -> pci::PciSegments;
    /// Read a 32-bit register of a PCI function's configuration space.
    fn pci_read32(&self, function: pci::PciAddress, offset: u16) -> u32;
    /// Write a 32-bit register of a PCI function's configuration space.
    fn pci_write32(&self, function: pci::PciAddress, offset: u16, value: u32);

    /// Allocate zeroed memory that devices can reach by DMA (never freed:
    /// a capture kernel runs once).
    fn dma_alloc(&self, size: usize, align: usize) -> Option<Self::Dma>;
    /// Volatile read of `width` at `offset` in `dma`.
    fn dma_read(&self, dma: &Self::Dma, offset: u64, width: access::Width) -> u64;
    /// Volatile write of `width` at `offset` in `dma`.
    fn dma_write(&self, dma: &Self::Dma, offset: u64, width: access::Width, value: u64);
    /// Copy `out.len()` bytes at `offset` of `dma` into `out`.
    fn dma_read_bytes(&self, dma: &Self::Dma, offset: u64, out: &mut [u8]);
    /// Push the CPU caches of `dma` out to memory (for devices that do not
    /// snoop them).
    fn dma_flush(&self, dma: &Self::Dma);

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

/// What a [`BlockDevice`] request was doing, for the drivers' error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Reading from the device.
    Read,
    /// Writing to the device.
    Write,
    /// Making written data durable.
    Flush,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Flush => "flush",
        })
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
    /// How many writes begun with [`BlockDevice::start_write`] may be
    /// outstanding at once (1: one at a time).
    fn max_in_flight(&self) -> usize {
        1
    }
    /// Read `len` bytes at byte `offset` into physical memory at `phys`.
    /// Every outstanding write is finished first.
    fn read(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), Self::Error>;
    /// Write `len` bytes from physical memory at `phys` to byte `offset`.
    /// Every outstanding write is finished first.
    fn write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), Self::Error>;
    /// Begin writing `len` bytes (at most `max_transfer()`) from `phys` to
    /// `offset` and return while the device works, so the caller can use the
    /// CPU meanwhile (minicap hashes the same bytes). It may be called while
    /// fewer than `max_in_flight()` writes are outstanding; with that many
    /// outstanding it returns an error without submitting (a caller bug, not
    /// a device failure). The memory must stay unchanged until the write
    /// completes.
    fn start_write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), Self::Error> {
        self.write(offset, phys, len)
    }
    /// Wait for the OLDEST outstanding write (first in, first out) and
    /// report its outcome; with none outstanding, Ok(()).
    fn wait(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// First finish every outstanding write (reporting the first error),
    /// then make every completed write durable.
    fn flush(&mut self) -> Result<(), Self::Error>;
    /// A short human-readable description ("virtio-blk 00:04.0 modern").
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result;
}
