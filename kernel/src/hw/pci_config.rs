//! PCI configuration space access behind `Platform::pci_read32`.
//!
//! Segment 0 goes through configuration mechanism #1 (ports 0xcf8/0xcfc):
//! present on every PC chipset, it needs no ACPI tables or MMIO mapping, so
//! it works before any mapping and on machines without an MCFG, and it is
//! what minicap has always used there. Other segments have no port access:
//! they go through the ECAM windows the MCFG names, once [`reach_segment`]
//! has mapped them (`super::ecam`). A function on a segment or bus nothing
//! reaches reads as absent (all ones) and ignores writes, as a missing
//! function does.

use super::ecam;
pub use super::ecam::EcamError;
use super::port::{inl, outl};
use minicap_drivers::pci::{PciAddress, PciSegment, PciSegments};
use spin::Mutex;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// The address/data pair must not be interleaved.
static LOCK: Mutex<()> = Mutex::new(());

fn address(f: PciAddress, offset: u16) -> u32 {
    0x8000_0000
        | (u32::from(f.bus) << 16)
        | (u32::from(f.device & 0x1f) << 11)
        | (u32::from(f.function & 7) << 8)
        | u32::from(offset & 0xfc)
}

/// Read a configuration dword (offset < 256 on segment 0, < 4096 on the
/// others).
pub fn read32(f: PciAddress, offset: u16) -> u32 {
    if f.segment != 0 {
        return ecam::read32(f, offset).unwrap_or(u32::MAX);
    }
    let _guard = LOCK.lock();
    outl(CONFIG_ADDRESS, address(f, offset));
    inl(CONFIG_DATA)
}

/// Write a configuration dword (offset < 256 on segment 0, < 4096 on the
/// others).
pub fn write32(f: PciAddress, offset: u16, value: u32) {
    if f.segment != 0 {
        ecam::write32(f, offset, value);
        return;
    }
    let _guard = LOCK.lock();
    outl(CONFIG_ADDRESS, address(f, offset));
    outl(CONFIG_DATA, value);
}

/// What [`reach_segment`] did with an MCFG allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Segment 0: its buses are reached through the ports already.
    ThroughPorts,
    /// Mapped: its buses are reached from now on.
    Mapped,
}

/// Reach `buses` of a segment through the ECAM window whose bus 0 would be
/// at `base` (an MCFG allocation). Segment 0 keeps the ports.
pub fn reach_segment(buses: PciSegment, base: u64) -> Result<Reach, EcamError> {
    if buses.segment == 0 {
        return Ok(Reach::ThroughPorts);
    }
    ecam::add_window(buses, base).map(|()| Reach::Mapped)
}

/// Every segment (and its buses) configuration access reaches: segment 0,
/// every bus, then the ECAM windows in the order they were mapped.
pub fn segments() -> PciSegments {
    let mut all = PciSegments::LEGACY;
    for &window in ecam::reached().all() {
        all.add(window);
    }
    all
}
