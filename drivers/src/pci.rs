//! PCI configuration space helpers on top of [`Platform::pci_read32`].
//!
//! A machine may have several PCI segment groups ("segments", "domains" in
//! Linux), each with its own 256 buses; [`Platform::pci_segments`] says
//! which ones (and which of their buses) the platform's configuration
//! access reaches, and [`enumerate`] walks them all.

use crate::Platform;
use core::fmt;

/// Segment/bus/device/function of a PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciAddress {
    /// PCI segment group (0 on machines with one).
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub device: u8,
    /// Function number (0..8).
    pub function: u8,
}

impl PciAddress {
    /// A function of segment 0 (the only one most machines have).
    pub const fn new(bus: u8, device: u8, function: u8) -> Self {
        Self {
            segment: 0,
            bus,
            device,
            function,
        }
    }
}

/// As `lspci` writes it: `00:1f.2` on segment 0, `0001:00:03.0` on others
/// (Linux's `0000:` prefix is left out for segment 0, as `lspci` without
/// `-D` does).
impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segment != 0 {
            write!(f, "{:04x}:", self.segment)?;
        }
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// The buses of one PCI segment the platform's configuration access
/// reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciSegment {
    /// Segment group number.
    pub segment: u16,
    /// First bus reached.
    pub first_bus: u8,
    /// Last bus reached.
    pub last_bus: u8,
}

impl PciSegment {
    /// Segment 0 through the legacy configuration ports: every bus.
    pub const LEGACY: Self = Self {
        segment: 0,
        first_bus: 0,
        last_bus: 255,
    };

    /// Whether `f` is on one of these buses.
    pub fn holds(&self, f: PciAddress) -> bool {
        f.segment == self.segment && (self.first_bus..=self.last_bus).contains(&f.bus)
    }
}

/// Most segments a platform lists.
pub const MAX_PCI_SEGMENTS: usize = 16;

/// The segments a platform reaches (see [`Platform::pci_segments`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciSegments {
    list: [PciSegment; MAX_PCI_SEGMENTS],
    count: usize,
}

impl PciSegments {
    /// Segment 0 only, every bus (machines without ECAM).
    pub const LEGACY: Self = Self {
        list: [PciSegment::LEGACY; MAX_PCI_SEGMENTS],
        count: 1,
    };

    /// No segment at all.
    pub const NONE: Self = Self {
        list: [PciSegment::LEGACY; MAX_PCI_SEGMENTS],
        count: 0,
    };

    /// Add `segment`'s buses (a segment may be listed more than once, with
    /// other buses each time); false (nothing added) if the list is full or
    /// some of these buses are listed already.
    pub fn add(&mut self, segment: PciSegment) -> bool {
        let overlaps = |s: &PciSegment| {
            s.segment == segment.segment
                && s.first_bus <= segment.last_bus
                && segment.first_bus <= s.last_bus
        };
        if self.count == MAX_PCI_SEGMENTS || self.all().iter().any(overlaps) {
            return false;
        }
        self.list[self.count] = segment;
        self.count += 1;
        true
    }

    /// The segments, in the order added.
    pub fn all(&self) -> &[PciSegment] {
        &self.list[..self.count]
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

/// Call `visit` for every present function on every bus of every segment
/// the platform reaches, segment by segment in the platform's order (brute
/// force: it is cheap, finds functions behind any bridge the firmware
/// configured, and does not depend on the bridge topology being sane after
/// a crash).
pub fn enumerate<P: Platform + ?Sized>(p: &P, mut visit: impl FnMut(PciFunction)) {
    for segment in p.pci_segments().all() {
        enumerate_segment(p, segment, &mut visit);
    }
}

fn enumerate_segment<P: Platform + ?Sized>(
    p: &P,
    segment: &PciSegment,
    visit: &mut impl FnMut(PciFunction),
) {
    for bus in segment.first_bus..=segment.last_bus {
        for device in 0..32u8 {
            let f0 = PciAddress {
                segment: segment.segment,
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
                let address = PciAddress { function, ..f0 };
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
