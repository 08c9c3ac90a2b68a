//! PCI configuration space helpers on top of [`Platform::pci_read32`].

use crate::Platform;
use core::fmt;

/// Bus/device/function of a PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciAddress {
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub device: u8,
    /// Function number (0..8).
    pub function: u8,
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Command register bits we use.
pub mod command {
    /// Respond to I/O space accesses.
    pub const IO_SPACE: u16 = 1 << 0;
    /// Respond to memory space accesses.
    pub const MEMORY_SPACE: u16 = 1 << 1;
    /// May master the bus (DMA).
    pub const BUS_MASTER: u16 = 1 << 2;
    /// Legacy INTx disabled.
    pub const INTX_DISABLE: u16 = 1 << 10;
}

const CAP_ID_MSI: u8 = 0x05;
const CAP_ID_MSIX: u8 = 0x11;

/// One function found by [`enumerate`].
#[derive(Clone, Copy, Debug)]
pub struct PciFunction {
    /// Where it is.
    pub address: PciAddress,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
}

/// Read a 16-bit field.
pub fn read16<P: Platform + ?Sized>(p: &P, f: PciAddress, offset: u16) -> u16 {
    let word = p.pci_read32(f, offset & !3);
    let shift = u32::from(offset & 2) * 8;
    ((word >> shift) & 0xffff) as u16
}

/// Read an 8-bit field.
pub fn read8<P: Platform + ?Sized>(p: &P, f: PciAddress, offset: u16) -> u8 {
    let word = p.pci_read32(f, offset & !3);
    let shift = u32::from(offset & 3) * 8;
    ((word >> shift) & 0xff) as u8
}

/// Write a 16-bit field (read-modify-write of the containing dword).
pub fn write16<P: Platform + ?Sized>(p: &P, f: PciAddress, offset: u16, value: u16) {
    let aligned = offset & !3;
    let shift = u32::from(offset & 2) * 8;
    let mut word = p.pci_read32(f, aligned);
    word &= !(0xffff << shift);
    word |= u32::from(value) << shift;
    p.pci_write32(f, aligned, word);
}

/// Call `visit` for every present function on every bus (brute force: it is
/// cheap, finds functions behind any bridge the firmware configured, and does
/// not depend on the bridge topology being sane after a crash).
pub fn enumerate<P: Platform + ?Sized>(p: &P, mut visit: impl FnMut(PciFunction)) {
    for bus in 0..=255u8 {
        for device in 0..32u8 {
            let f0 = PciAddress {
                bus,
                device,
                function: 0,
            };
            let id = p.pci_read32(f0, 0);
            if id & 0xffff == 0xffff {
                continue;
            }
            let multifunction = read8(p, f0, 0x0e) & 0x80 != 0;
            let functions = if multifunction { 8 } else { 1 };
            for function in 0..functions {
                let address = PciAddress {
                    bus,
                    device,
                    function,
                };
                let id = p.pci_read32(address, 0);
                if id & 0xffff == 0xffff {
                    continue;
                }
                visit(PciFunction {
                    address,
                    vendor: (id & 0xffff) as u16,
                    device: (id >> 16) as u16,
                });
            }
        }
    }
}

/// Iterate the capability list: calls `visit(cap_id, cap_offset)`.
pub fn for_each_capability<P: Platform + ?Sized>(
    p: &P,
    f: PciAddress,
    mut visit: impl FnMut(u8, u16),
) {
    let status = read16(p, f, 0x06);
    if status & (1 << 4) == 0 {
        return;
    }
    let mut offset = u16::from(read8(p, f, 0x34) & 0xfc);
    // A config space has room for at most 48 capabilities: bound the walk so a
    // corrupt (looping) list cannot hang us.
    for _ in 0..48 {
        if offset < 0x40 {
            return;
        }
        let id = read8(p, f, offset);
        let next = u16::from(read8(p, f, offset + 1) & 0xfc);
        visit(id, offset);
        offset = next;
    }
}

/// A decoded base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// Memory space at this physical address.
    Memory(u64),
    /// I/O space at this port.
    Io(u16),
    /// Not implemented or unassigned.
    None,
}

/// Decode BAR `index` (0..6).
pub fn bar<P: Platform + ?Sized>(p: &P, f: PciAddress, index: u8) -> Bar {
    if index > 5 {
        return Bar::None;
    }
    let reg = 0x10 + u16::from(index) * 4;
    let low = p.pci_read32(f, reg);
    if low & 1 == 1 {
        let port = low & 0xffff_fffc;
        return match u16::try_from(port) {
            Ok(0) | Err(_) => Bar::None,
            Ok(port) => Bar::Io(port),
        };
    }
    let kind = (low >> 1) & 3;
    let mut addr = u64::from(low & 0xffff_fff0);
    if kind == 2 && index < 5 {
        addr |= u64::from(p.pci_read32(f, reg + 4)) << 32;
    }
    if addr == 0 {
        Bar::None
    } else {
        Bar::Memory(addr)
    }
}

/// Take the function over for polled use, before its reset: memory and I/O
/// decoding on (to reach its registers), bus mastering OFF (the crashed
/// kernel may have left requests in flight; until the device is reset it
/// must not finish them into memory), INTx off, MSI and MSI-X off (they
/// point at the crashed kernel's vectors; a polled driver wants none).
/// Call [`enable_bus_master`] once the device is reset.
pub fn take_over<P: Platform + ?Sized>(p: &P, f: PciAddress) {
    let mut cmd = read16(p, f, 0x04);
    cmd |= command::IO_SPACE | command::MEMORY_SPACE | command::INTX_DISABLE;
    cmd &= !command::BUS_MASTER;
    write16(p, f, 0x04, cmd);
    for_each_capability(p, f, |id, offset| match id {
        CAP_ID_MSI => {
            let control = read16(p, f, offset + 2);
            write16(p, f, offset + 2, control & !1);
        }
        CAP_ID_MSIX => {
            let control = read16(p, f, offset + 2);
            write16(p, f, offset + 2, control & !(1 << 15));
        }
        _ => {}
    });
}

/// Let the (reset) function master the bus again.
pub fn enable_bus_master<P: Platform + ?Sized>(p: &P, f: PciAddress) {
    let cmd = read16(p, f, 0x04);
    write16(p, f, 0x04, cmd | command::BUS_MASTER);
}

/// Stop the function from mastering the bus (used when a driver gives up on a
/// device, so it cannot keep scribbling on memory).
pub fn stop_bus_master<P: Platform + ?Sized>(p: &P, f: PciAddress) {
    let cmd = read16(p, f, 0x04);
    write16(p, f, 0x04, cmd & !command::BUS_MASTER);
}
