//! DMA requester IDs behind bridges (Linux `pci_for_each_dma_alias()`
//! rules), from bridges listed by hand and found in fake configuration
//! space.

mod fake_machine;

use fake_machine::*;
use minicap_drivers::dma_alias::{Bridge, BridgeKind, Bridges, MAX_REQUESTER_IDS};
use minicap_drivers::pci::{PciAddress, PciSegment, PciSegments};

fn at(bus: u8, device: u8, function: u8) -> PciAddress {
    PciAddress::new(bus, device, function)
}

fn bridge(address: PciAddress, secondary_bus: u8, kind: BridgeKind) -> Bridge {
    Bridge {
        address,
        secondary_bus,
        kind,
    }
}

/// Root port 00:1c.0 → bus 1: PCIe-to-PCI bridge 01:00.0 → bus 2:
/// conventional bridge 02:03.0 → bus 3; and a PCIe switch (upstream port
/// 00:1d.0 → bus 4, downstream port 04:00.0 → bus 5).
fn topology() -> Bridges {
    Bridges::from_list(&[
        bridge(at(0, 0x1c, 0), 1, BridgeKind::PciePort),
        bridge(at(1, 0, 0), 2, BridgeKind::PcieToPci),
        bridge(at(2, 3, 0), 3, BridgeKind::OwnId),
        bridge(at(0, 0x1d, 0), 4, BridgeKind::PciePort),
        bridge(at(4, 0, 0), 5, BridgeKind::PciePort),
    ])
}

#[test]
fn pcie_ports_add_nothing() {
    let b = topology();
    assert_eq!(b.requester_ids(&[at(0, 3, 0)]).all(), &[at(0, 3, 0)]);
    assert_eq!(b.requester_ids(&[at(5, 0, 0)]).all(), &[at(5, 0, 0)]);
}

#[test]
fn a_pcie_to_pci_bridge_adds_its_secondary_bus_and_a_pci_bridge_its_own_id() {
    let b = topology();
    // On the PCI bus right below the PCIe-to-PCI bridge: (2, 00.0).
    assert_eq!(
        b.requester_ids(&[at(2, 5, 1)]).all(),
        &[at(2, 5, 1), at(2, 0, 0)]
    );
    // One level further, behind a conventional bridge: its ID, then (2, 00.0).
    assert_eq!(
        b.requester_ids(&[at(3, 4, 1)]).all(),
        &[at(3, 4, 1), at(2, 3, 0), at(2, 0, 0)]
    );
    // Two functions behind the same bridges share the aliases once.
    assert_eq!(
        b.requester_ids(&[at(3, 4, 1), at(3, 4, 2), at(0, 3, 0)])
            .all(),
        &[
            at(3, 4, 1),
            at(2, 3, 0),
            at(2, 0, 0),
            at(3, 4, 2),
            at(0, 3, 0)
        ]
    );
}

#[test]
fn a_looping_topology_ends_and_the_set_is_bounded() {
    let looping = Bridges::from_list(&[
        bridge(at(1, 0, 0), 2, BridgeKind::OwnId),
        bridge(at(2, 0, 0), 1, BridgeKind::OwnId),
    ]);
    assert_eq!(
        looping.requester_ids(&[at(2, 5, 0)]).all(),
        &[at(2, 5, 0), at(1, 0, 0), at(2, 0, 0)]
    );
    let many: Vec<PciAddress> = (0..80u8).map(|d| at(0x10 + d / 32, d % 32, 0)).collect();
    let ids = Bridges::NONE.requester_ids(&many);
    assert_eq!(ids.all().len(), MAX_REQUESTER_IDS);
    assert_eq!(ids.dropped, 80 - MAX_REQUESTER_IDS);
}

fn bridge_config(secondary: u8, pcie_type: Option<u16>) -> ConfigSpace {
    let mut c = ConfigSpace::new(0x8086, 0x2448);
    c.set8(0x0e, 0x01);
    c.set8(0x19, secondary);
    c.set8(0x1a, secondary);
    if let Some(kind) = pcie_type {
        c.add_capability(0x40, 0x10, &(kind << 4 | 2).to_le_bytes());
    }
    c
}

#[test]
fn bridges_are_found_in_configuration_space() {
    let m = FakeMachine::bare(FakeConfig::modern());
    m.add_function(at(0, 0x1c, 0), bridge_config(1, Some(4)));
    m.add_function(at(1, 0, 0), bridge_config(2, Some(7)));
    m.add_function(at(2, 3, 0), bridge_config(3, None));
    m.add_function(at(0, 0x1e, 0), bridge_config(6, Some(8)));
    m.add_function(at(3, 4, 0), ConfigSpace::new(0x1af4, 0x1001));
    let found = Bridges::scan(&m);
    assert_eq!(found.dropped, 0);
    assert_eq!(
        found.requester_ids(&[at(3, 4, 0)]).all(),
        &[at(3, 4, 0), at(2, 3, 0), at(2, 0, 0)]
    );
    // A PCI-to-PCIe bridge (type 8) uses its own ID.
    assert_eq!(
        found.requester_ids(&[at(6, 1, 0)]).all(),
        &[at(6, 1, 0), at(0, 0x1e, 0)]
    );
    m.assert_clean();
}

#[test]
fn scope_paths_resolve_through_bridges_and_match_the_hierarchy_below() {
    let b = topology();
    // 00:1c.0 → bus 1, 01:00.0 → bus 2, then 02:03.0.
    assert_eq!(
        b.path_end(0, 0, &[(0x1c, 0), (0, 0), (3, 0)]),
        Some(at(2, 3, 0))
    );
    assert_eq!(b.path_end(0, 0, &[(2, 0)]), Some(at(0, 2, 0)));
    assert_eq!(
        b.path_end(0, 0, &[(0x1b, 0), (0, 0)]),
        None,
        "no bridge at 00:1b.0"
    );
    assert_eq!(b.path_end(0, 0, &[]), None);
    // Below the PCIe-to-PCI bridge: everything on buses 2 and 3.
    assert!(b.is_at_or_below(at(3, 4, 1), at(1, 0, 0)));
    assert!(b.is_at_or_below(at(2, 5, 0), at(1, 0, 0)));
    assert!(b.is_at_or_below(at(1, 0, 0), at(1, 0, 0)));
    assert!(
        !b.is_at_or_below(at(5, 0, 0), at(1, 0, 0)),
        "behind the switch"
    );
    assert!(
        !b.is_at_or_below(at(0, 3, 0), at(1, 0, 0)),
        "on the root bus"
    );
}

fn on(segment: u16, bus: u8, device: u8, function: u8) -> PciAddress {
    PciAddress {
        segment,
        ..at(bus, device, function)
    }
}

#[test]
fn each_segment_has_its_own_bridges_and_aliases() {
    let m = FakeMachine::bare(FakeConfig::modern());
    let mut reached = PciSegments::LEGACY;
    assert!(reached.add(PciSegment {
        segment: 1,
        first_bus: 0,
        last_bus: 0x0f
    }));
    m.set_segments(reached);
    // Segment 0: a PCIe root port 00:1c.0 → bus 2. Segment 1: a
    // PCIe-to-PCI bridge at the same numbers, 0001:00:1c.0 → bus 2.
    m.add_function(at(0, 0x1c, 0), bridge_config(2, Some(4)));
    m.add_function(on(1, 0, 0x1c, 0), bridge_config(2, Some(7)));
    let found = Bridges::scan(&m);
    m.assert_clean();
    // A disk on bus 2 of segment 1 may carry (0001:02, 00.0); its twin on
    // segment 0 is behind a root port and carries only its own ID.
    assert_eq!(
        found.requester_ids(&[on(1, 2, 5, 0)]).all(),
        &[on(1, 2, 5, 0), on(1, 2, 0, 0)]
    );
    assert_eq!(found.requester_ids(&[at(2, 5, 0)]).all(), &[at(2, 5, 0)]);
    // DMAR scope paths resolve through the bridges of their own segment.
    assert_eq!(
        found.path_end(1, 0, &[(0x1c, 0), (5, 0)]),
        Some(on(1, 2, 5, 0))
    );
    assert!(found.is_at_or_below(on(1, 2, 5, 0), on(1, 0, 0x1c, 0)));
    assert!(!found.is_at_or_below(on(1, 2, 5, 0), at(0, 0x1c, 0)));
    assert!(!found.is_at_or_below(at(2, 5, 0), on(1, 0, 0x1c, 0)));
}
