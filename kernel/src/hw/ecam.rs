//! PCI Express enhanced configuration access (ECAM): the configuration
//! space of the buses of a PCI segment, memory-mapped at the window the
//! ACPI MCFG names (PCI Express base specification, "Enhanced
//! Configuration Access Mechanism"; Linux `pci_mmcfg_read()` in
//! `arch/x86/pci/mmconfig_64.c`). Bus `b`, device `d`, function `f` has
//! 4 KiB at `window + ((b - first bus) << 20 | d << 15 | f << 12)`.
//!
//! Each window is an `MmioRegion` (mapped uncached, refused if it touches
//! RAM or another claimed region, so an MCFG base pointing at memory
//! cannot make configuration writes land in it) held for the rest of the
//! run, so no access here needs `unsafe`: the region checks every offset.
//! Only segments other than 0 are reached this way (`super::pci_config`).

use super::mmio::MmioRegion;
use core::fmt;
use minicap_drivers::pci::{PciAddress, PciSegment, PciSegments, MAX_PCI_SEGMENTS};
use spin::Mutex;

/// Bytes of one bus's configuration space in a window.
const BUS_BYTES: u64 = 1 << 20;
/// Bytes of one function's configuration space.
const FUNCTION_BYTES: u16 = 4096;

/// One mapped window.
struct Window {
    buses: PciSegment,
    region: MmioRegion,
}

impl Window {
    /// Offset of `f`'s configuration dword `offset` in the window, if `f`
    /// is on its buses and `offset` inside the 4 KiB of a function.
    fn offset_of(&self, f: PciAddress, offset: u16) -> Option<u64> {
        if !self.buses.holds(f) || offset >= FUNCTION_BYTES {
            return None;
        }
        let bus = u64::from(f.bus - self.buses.first_bus);
        Some(
            (bus * BUS_BYTES)
                | (u64::from(f.device & 0x1f) << 15)
                | (u64::from(f.function & 7) << 12)
                | u64::from(offset & !3),
        )
    }
}

/// The windows mapped so far, and the segments they reach.
struct Windows {
    list: [Option<Window>; MAX_PCI_SEGMENTS],
    reached: PciSegments,
}

static WINDOWS: Mutex<Windows> = Mutex::new(Windows {
    list: [const { None }; MAX_PCI_SEGMENTS],
    reached: PciSegments::NONE,
});

/// Why a window was not mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcamError {
    /// Its buses overlap a window of the same segment mapped before.
    Overlaps,
    /// More windows than minicap records.
    TooMany,
    /// The range touches RAM or a claimed region, or cannot be mapped.
    NotMappable,
}

impl fmt::Display for EcamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Overlaps => "its buses overlap another window of the segment",
            Self::TooMany => "more ECAM windows than minicap records",
            Self::NotMappable => {
                "the range touches RAM or claimed registers, or cannot be mapped uncached"
            }
        })
    }
}

/// Map the window of `buses` whose bus 0 would be at `base` (the MCFG's
/// base address; the window itself starts at bus `buses.first_bus`).
pub fn add_window(buses: PciSegment, base: u64) -> Result<(), EcamError> {
    let mut windows = WINDOWS.lock();
    let slot = windows
        .list
        .iter()
        .position(Option::is_none)
        .ok_or(EcamError::TooMany)?;
    let mut reached = windows.reached;
    if !reached.add(buses) {
        return Err(EcamError::Overlaps);
    }
    let first = u64::from(buses.first_bus) * BUS_BYTES;
    let bytes = (u64::from(buses.last_bus) - u64::from(buses.first_bus) + 1) * BUS_BYTES;
    let start = base.checked_add(first).ok_or(EcamError::NotMappable)?;
    let region = MmioRegion::claim(start, bytes).ok_or(EcamError::NotMappable)?;
    windows.list[slot] = Some(Window { buses, region });
    windows.reached = reached;
    Ok(())
}

/// The segments (and buses) the windows reach.
pub fn reached() -> PciSegments {
    WINDOWS.lock().reached
}

/// Read configuration dword `offset` of `f`; None if no window holds it.
pub fn read32(f: PciAddress, offset: u16) -> Option<u32> {
    let windows = WINDOWS.lock();
    windows.list.iter().flatten().find_map(|w| {
        let at = w.offset_of(f, offset)?;
        Some(w.region.read32(at))
    })
}

/// Write configuration dword `offset` of `f`; false if no window holds it.
pub fn write32(f: PciAddress, offset: u16, value: u32) -> bool {
    let windows = WINDOWS.lock();
    for w in windows.list.iter().flatten() {
        if let Some(at) = w.offset_of(f, offset) {
            w.region.write32(at, value);
            return true;
        }
    }
    false
}
