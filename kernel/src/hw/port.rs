//! Port I/O.

use x86_64::instructions::port::Port;

/// Read a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    // SAFETY: port reads in minicap target legacy PC devices (PIT, PIC, PCI
    // configuration, keyboard controller) or ports a PCI BAR assigned to a
    // device we drive; none of them can corrupt memory.
    unsafe { Port::<u8>::new(port).read() }
}

/// Read 16 bits from an I/O port.
pub fn inw(port: u16) -> u16 {
    // SAFETY: as for `inb`.
    unsafe { Port::<u16>::new(port).read() }
}

/// Read 32 bits from an I/O port.
pub fn inl(port: u16) -> u32 {
    // SAFETY: as for `inb`.
    unsafe { Port::<u32>::new(port).read() }
}

/// Write a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: as for `inb`; writes program devices minicap owns after the
    // crash (no device can DMA because of a port write we make without
    // having reset it first).
    unsafe { Port::<u8>::new(port).write(value) }
}

/// Write 16 bits to an I/O port.
pub fn outw(port: u16, value: u16) {
    // SAFETY: as for `outb`.
    unsafe { Port::<u16>::new(port).write(value) }
}

/// Write 32 bits to an I/O port.
pub fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe { Port::<u32>::new(port).write(value) }
}
