//! The requester IDs a PCI function's DMA can reach an IOMMU with, after
//! the bridges between it and its root bus (Linux `pci_for_each_dma_alias()`
//! in `drivers/pci/search.c`).
//!
//! A request carries its function's own ID until a bridge takes it over.
//! Walking up from the function's bus to the root bus, each bridge above:
//! - a PCIe root port, upstream or downstream switch port (PCIe capability
//!   device/port type 4, 5, 6) forwards requests with their ID: nothing
//!   added;
//! - a PCIe-to-PCI/PCI-X bridge (type 7) may take requests over with the ID
//!   (its secondary bus, device 0, function 0);
//! - a PCI/PCI-X-to-PCIe bridge (type 8) and a conventional PCI-to-PCI
//!   bridge (no PCIe capability) use their own ID.
//!
//! Every ID met is a possible alias, and the IOMMU must let each through.
//! Linux's per-device quirks (`dma_alias_mask`, `PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS`,
//! `PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT`) are not known to minicap.
//!
//! The bridges are found by the same brute-force scan as the devices
//! ([`crate::pci::enumerate`]): a bus's parent is the bridge whose secondary
//! bus number it is; a bus no bridge leads to is a root bus. Each PCI
//! segment has buses of its own: a bridge is only ever the parent of a bus
//! of its segment, and an alias keeps the segment of the function. The walk
//! is bounded and stops at a bus seen before, so a corrupt topology cannot
//! loop it.

use crate::pci::{self, PciAddress};
use crate::Platform;

/// Most bridges recorded by [`Bridges::scan`].
pub const MAX_BRIDGES: usize = 64;
/// Most requester IDs recorded for a set of functions (each has its own
/// and one per bridge level that adds one).
pub const MAX_REQUESTER_IDS: usize = 64;

const HEADER_TYPE: u16 = 0x0e;
const HEADER_TYPE_BRIDGE: u8 = 1;
const SECONDARY_BUS: u16 = 0x19;
const CAP_ID_PCIE: u8 = 0x10;
const PCIE_FLAGS: u16 = 2;

/// How a bridge forwards requests from below (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BridgeKind {
    /// PCIe root port or switch port: requests keep their ID.
    PciePort,
    /// PCIe-to-PCI/PCI-X bridge: requests may carry (secondary bus, 00.0).
    PcieToPci,
    /// Conventional PCI-to-PCI bridge or PCI-to-PCIe bridge: requests may
    /// carry the bridge's own ID.
    OwnId,
}

/// One bridge: where it is, the bus below it, how it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bridge {
    /// The bridge function.
    pub address: PciAddress,
    /// Its secondary bus number.
    pub secondary_bus: u8,
    /// How it forwards requests.
    pub kind: BridgeKind,
}

/// The bridges of the machine.
#[derive(Clone, Copy, Debug)]
pub struct Bridges {
    found: [Option<Bridge>; MAX_BRIDGES],
    /// Bridges beyond [`MAX_BRIDGES`] (not recorded: the walk stops at a
    /// bus whose bridge is unknown, as at a root bus).
    pub dropped: usize,
}

impl Bridges {
    /// No bridges (every bus a root bus).
    pub const NONE: Self = Self {
        found: [None; MAX_BRIDGES],
        dropped: 0,
    };

    /// Record these bridges (tests, and [`Self::scan`]).
    pub fn from_list(list: &[Bridge]) -> Self {
        let mut bridges = Self::NONE;
        for &b in list {
            bridges.add(b);
        }
        bridges
    }

    fn add(&mut self, bridge: Bridge) {
        match self.found.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(bridge),
            None => self.dropped += 1,
        }
    }

    /// Find every PCI-to-PCI bridge (header type 1) on every bus of every
    /// segment.
    pub fn scan<P: Platform + ?Sized>(p: &P) -> Self {
        let mut bridges = Self::NONE;
        pci::enumerate(p, |f| {
            let f = f.address;
            if pci::read8(p, f, HEADER_TYPE) & 0x7f != HEADER_TYPE_BRIDGE {
                return;
            }
            let mut kind = BridgeKind::OwnId;
            pci::for_each_capability(p, f, |id, at| {
                if id == CAP_ID_PCIE {
                    kind = match (pci::read16(p, f, at + PCIE_FLAGS) >> 4) & 0xf {
                        4..=6 => BridgeKind::PciePort,
                        7 => BridgeKind::PcieToPci,
                        _ => BridgeKind::OwnId,
                    };
                }
            });
            bridges.add(Bridge {
                address: f,
                secondary_bus: pci::read8(p, f, SECONDARY_BUS),
                kind,
            });
        });
        bridges
    }

    /// The bridge of `segment` whose secondary bus is `bus`, if any.
    fn above(&self, segment: u16, bus: u8) -> Option<Bridge> {
        self.found
            .iter()
            .flatten()
            .find(|b| {
                b.address.segment == segment && b.secondary_bus == bus && b.address.bus != bus
            })
            .copied()
    }

    /// The function a path of `segment` names: from `start_bus`, each
    /// (device, function) but the last is a bridge whose secondary bus the
    /// next is on (an ACPI DMAR device scope). None if a bridge on the way
    /// is not known or the path is empty.
    pub fn path_end(&self, segment: u16, start_bus: u8, path: &[(u8, u8)]) -> Option<PciAddress> {
        let (&(device, function), bridges) = path.split_last()?;
        let mut bus = start_bus;
        for &(device, function) in bridges {
            let at = PciAddress {
                segment,
                bus,
                device,
                function,
            };
            bus = self
                .found
                .iter()
                .flatten()
                .find(|b| b.address == at)?
                .secondary_bus;
        }
        Some(PciAddress {
            segment,
            bus,
            device,
            function,
        })
    }

    /// Whether `function` is `target` or lies below the bridge `target`
    /// (Linux `dmar_pci_device_match()`: the device or a bridge above it).
    pub fn is_at_or_below(&self, function: PciAddress, target: PciAddress) -> bool {
        if function == target {
            return true;
        }
        if function.segment != target.segment {
            return false;
        }
        let mut visited = [false; 256];
        let mut bus = function.bus;
        while !visited[usize::from(bus)] {
            visited[usize::from(bus)] = true;
            let Some(bridge) = self.above(function.segment, bus) else {
                return false;
            };
            if bridge.address == target {
                return true;
            }
            bus = bridge.address.bus;
        }
        false
    }

    /// Every requester ID the DMA of any of `functions` can carry, each
    /// function's own first.
    pub fn requester_ids(&self, functions: &[PciAddress]) -> RequesterIds {
        let mut ids = RequesterIds::EMPTY;
        for &f in functions {
            self.add_dma_aliases(f, &mut ids);
        }
        ids
    }

    fn add_dma_aliases(&self, function: PciAddress, aliases: &mut RequesterIds) {
        aliases.add(function);
        let mut visited = [false; 256];
        let mut bus = function.bus;
        while !visited[usize::from(bus)] {
            visited[usize::from(bus)] = true;
            let Some(bridge) = self.above(function.segment, bus) else {
                break; // a root bus
            };
            match bridge.kind {
                BridgeKind::PciePort => {}
                BridgeKind::PcieToPci => aliases.add(PciAddress {
                    segment: function.segment,
                    bus: bridge.secondary_bus,
                    device: 0,
                    function: 0,
                }),
                BridgeKind::OwnId => aliases.add(bridge.address),
            }
            bus = bridge.address.bus;
        }
    }
}

/// A set of requester IDs (see [`Bridges::requester_ids`]).
#[derive(Clone, Copy, Debug)]
pub struct RequesterIds {
    ids: [PciAddress; MAX_REQUESTER_IDS],
    count: usize,
    /// IDs beyond [`MAX_REQUESTER_IDS`] (not recorded: DMA with them stays
    /// blocked).
    pub dropped: usize,
}

impl RequesterIds {
    /// No IDs.
    pub const EMPTY: Self = Self {
        ids: [PciAddress::new(0, 0, 0); MAX_REQUESTER_IDS],
        count: 0,
        dropped: 0,
    };

    /// Add `id` unless it is there already.
    pub fn add(&mut self, id: PciAddress) {
        if self.all().contains(&id) {
            return;
        }
        if self.count < MAX_REQUESTER_IDS {
            self.ids[self.count] = id;
            self.count += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// The IDs, in the order added.
    pub fn all(&self) -> &[PciAddress] {
        &self.ids[..self.count]
    }
}
