//! Port I/O. The functions that take a port number are for the hardware
//! layer itself (serial, PIT, PIC, PCI configuration, reset); a driver gets
//! a `PortRange`, the ports of one I/O BAR, and reaches only those.

use minicap_drivers::access::{in_bounds, Region, Width};
use x86_64::instructions::port::Port;

/// Read a byte from an I/O port.
pub(super) fn inb(port: u16) -> u8 {
    // SAFETY: port reads in minicap target legacy PC devices (PIT, PIC, PCI
    // configuration, keyboard controller) or ports a PCI BAR assigned to a
    // device we drive; none of them can corrupt memory.
    unsafe { Port::<u8>::new(port).read() }
}

/// Read 16 bits from an I/O port.
pub(super) fn inw(port: u16) -> u16 {
    // SAFETY: as for `inb`.
    unsafe { Port::<u16>::new(port).read() }
}

/// Read 32 bits from an I/O port.
pub(super) fn inl(port: u16) -> u32 {
    // SAFETY: as for `inb`.
    unsafe { Port::<u32>::new(port).read() }
}

/// Write a byte to an I/O port.
pub(super) fn outb(port: u16, value: u8) {
    // SAFETY: as for `inb`; writes program devices minicap owns after the
    // crash (no device can DMA because of a port write we make without
    // having reset it first).
    unsafe { Port::<u8>::new(port).write(value) }
}

/// Write 16 bits to an I/O port.
pub(super) fn outw(port: u16, value: u16) {
    // SAFETY: as for `outb`.
    unsafe { Port::<u16>::new(port).write(value) }
}

/// Write 32 bits to an I/O port.
pub(super) fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe { Port::<u32>::new(port).write(value) }
}

/// The ports of one device's I/O BAR, handed out by the platform.
#[derive(Debug)]
pub struct PortRange {
    base: u16,
    len: u16,
}

impl PortRange {
    /// The first `len` ports at `base` (from a decoded I/O BAR).
    pub(super) fn new(base: u16, len: u16) -> Option<Self> {
        base.checked_add(len)?;
        Some(Self { base, len })
    }

    fn port(&self, offset: u64, width: Width) -> u16 {
        assert!(
            in_bounds(u64::from(self.len), offset, width),
            "port access of {} bytes at offset {offset:#x} outside {:#x}+{:#x}",
            width.bytes(),
            self.base,
            self.len
        );
        // In bounds: offset < len <= u16::MAX - base.
        self.base + u16::try_from(offset).unwrap_or(0)
    }

    /// Port input of `width` at `offset` (port I/O has no 64-bit form: a
    /// 64-bit access reads two 32-bit halves).
    pub fn read(&self, offset: u64, width: Width) -> u64 {
        let port = self.port(offset, width);
        match width {
            Width::U8 => u64::from(inb(port)),
            Width::U16 => u64::from(inw(port)),
            Width::U32 => u64::from(inl(port)),
            Width::U64 => u64::from(inl(port)) | u64::from(inl(port + 4)) << 32,
        }
    }

    /// Port output of `width` at `offset`.
    #[allow(clippy::cast_possible_truncation)] // the width selects the bits
    pub fn write(&self, offset: u64, width: Width, value: u64) {
        let port = self.port(offset, width);
        match width {
            Width::U8 => outb(port, value as u8),
            Width::U16 => outw(port, value as u16),
            Width::U32 => outl(port, value as u32),
            Width::U64 => {
                outl(port, value as u32);
                outl(port + 4, (value >> 32) as u32);
            }
        }
    }
}

impl Region for PortRange {
    fn len(&self) -> u64 {
        u64::from(self.len)
    }
}
