//! VT-d table building against the fake machine's DMA memory: the tables
//! are read back from memory and walked the way the unit walks them.

mod fake_machine;

use fake_machine::*;
use minicap_drivers::pci::PciAddress;
use minicap_drivers::vtd::{
    build_tables, choose_mode, span, Capabilities, Mode, TableError, DOMAIN_ID,
    MAX_IDENTITY_TABLE_PAGES, SL_PAGE_SIZE, SL_READ, SL_WRITE, TT_PASS_THROUGH,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

fn at(bus: u8, device: u8, function: u8) -> PciAddress {
    PciAddress::new(bus, device, function)
}

fn caps(sagaw: u8, large_pages: u8, pass_through: bool) -> Capabilities {
    Capabilities {
        sagaw,
        mgaw_bits: 48,
        large_pages,
        pass_through,
        coherent: true,
    }
}

/// A machine with room for a few thousand table pages.
fn machine() -> FakeMachine {
    FakeMachine::bare(FakeConfig {
        dma_limit: 64 << 20,
        ..FakeConfig::modern()
    })
}

fn read64(m: &FakeMachine, addr: u64) -> u64 {
    u64::from_le_bytes(m.mem_read(addr, 8).try_into().expect("8 bytes"))
}

/// (low, high) of entry `index` of a root or context table.
fn entry128(m: &FakeMachine, table: u64, index: u64) -> (u64, u64) {
    (
        read64(m, table + 16 * index),
        read64(m, table + 16 * index + 8),
    )
}

/// The context entry the unit finds for `f`, if present.
fn context_of(m: &FakeMachine, root: u64, f: PciAddress) -> Option<(u64, u64)> {
    let (root_low, _) = entry128(m, root, u64::from(f.bus));
    if root_low & 1 == 0 {
        return None;
    }
    let devfn = u64::from(f.device) << 3 | u64::from(f.function);
    let (low, high) = entry128(m, root_low & ADDRESS, devfn);
    (low & 1 != 0).then_some((low, high))
}

/// Walk second-level tables (`levels` deep) for `addr`: the physical
/// address and the level of the leaf that maps it.
fn translate(m: &FakeMachine, table: u64, levels: u32, addr: u64) -> Option<(u64, u32)> {
    let mut table = table;
    let mut level = levels;
    loop {
        let index = (addr >> (12 + 9 * (level - 1))) & 511;
        let entry = read64(m, table + 8 * index);
        if entry & (SL_READ | SL_WRITE) != SL_READ | SL_WRITE {
            return None;
        }
        if level == 1 || entry & SL_PAGE_SIZE != 0 {
            let page = span(level);
            return Some(((entry & ADDRESS & !(page - 1)) + addr % page, level));
        }
        table = entry & ADDRESS;
        level -= 1;
    }
}

#[test]
fn capabilities_decode_cap_and_ecap() {
    // SAGAW 39 and 48 bits, MGAW 48, SLLPS 2 MiB and 1 GiB; ECAP.PT, not C.
    let cap = (0b0_0110 << 8) | (47 << 16) | (0b11 << 34);
    let ecap = 1 << 6;
    assert_eq!(
        Capabilities::from_registers(cap, ecap),
        Capabilities {
            sagaw: 0b0_0110,
            mgaw_bits: 48,
            large_pages: 0b11,
            pass_through: true,
            coherent: false,
        }
    );
    assert!(Capabilities::from_registers(0, 1).coherent);
}

#[test]
fn pass_through_entries_for_the_allowed_devices_only() {
    let m = machine();
    let unit = caps(0b0_0110, 0, true);
    let mode = choose_mode(&unit, 8 * GIB).expect("pass-through");
    assert_eq!(mode, Mode::PassThrough { aw: 2 }, "the widest AGAW");
    let allowed = [at(0, 3, 0), at(0, 4, 2), at(2, 0, 0)];
    let tables = build_tables(&m, &unit, mode, 0, &allowed).expect("tables");
    assert_eq!(tables.pages, 3, "root and one context table per bus");
    let root = tables.root().device_address();
    assert_eq!(root % 4096, 0);
    for bus in 0..=255u8 {
        let present = entry128(&m, root, u64::from(bus)).0 & 1 != 0;
        assert_eq!(present, bus == 0 || bus == 2, "bus {bus}");
        for device in 0..32 {
            for function in 0..8 {
                let f = at(bus, device, function);
                match context_of(&m, root, f) {
                    Some((low, high)) => {
                        assert!(allowed.contains(&f), "{f} let through");
                        assert_eq!(low, TT_PASS_THROUGH | 1);
                        assert_eq!(high, 2 | DOMAIN_ID << 8);
                    }
                    None => assert!(!allowed.contains(&f), "{f} blocked"),
                }
            }
        }
    }
    assert!(m.dma_flushes().is_empty(), "a coherent unit needs no flush");
    m.assert_clean();
}

#[test]
fn identity_map_covers_zero_to_top() {
    let m = machine();
    // 39-bit (3-level) tables only, 2 MiB pages, no pass-through.
    let unit = caps(0b0_0010, 0b01, false);
    let top = 3 * GIB + 5 * MIB + 4096;
    let mode = choose_mode(&unit, top).expect("identity");
    let rounded = 3 * GIB + 6 * MIB;
    assert_eq!(
        mode,
        Mode::Identity {
            aw: 1,
            levels: 3,
            leaf: 2,
            top: rounded
        }
    );
    let device = at(0, 1, 0);
    let tables = build_tables(&m, &unit, mode, 0, &[device]).expect("tables");
    let root = tables.root().device_address();
    let (low, high) = context_of(&m, root, device).expect("allowed");
    assert_eq!(low & 0xf, 1, "present, translation type 00b");
    assert_eq!(high, 1 | DOMAIN_ID << 8);
    let second_level = low & ADDRESS;
    for addr in [
        0,
        4096,
        2 * MIB - 1,
        2 * MIB,
        GIB + 12345,
        top - 1,
        rounded - 1,
    ] {
        assert_eq!(
            translate(&m, second_level, 3, addr),
            Some((addr, 2)),
            "{addr:#x}"
        );
    }
    // Every 2 MiB page of [0, top) and nothing beyond it.
    let mut page = 0;
    while page < rounded + 8 * MIB {
        let mapped = translate(&m, second_level, 3, page);
        if page < rounded {
            assert_eq!(mapped, Some((page, 2)), "{page:#x}");
        } else {
            assert_eq!(mapped, None, "{page:#x} beyond the top");
        }
        page += 2 * MIB;
    }
    assert_eq!(translate(&m, second_level, 3, 512 * GIB - 1), None);
    // Root, context table, one level-3 table and four level-2 tables.
    assert_eq!(tables.pages, 1 + 1 + 1 + 4);
    m.assert_clean();
}

#[test]
fn large_pages_when_the_unit_supports_them() {
    let top = 2 * GIB + 4096;
    for (large_pages, leaf, pages) in [
        (0b11, 3, 1 + 1 + 1),
        (0b10, 3, 1 + 1 + 1),
        (0b01, 2, 1 + 1 + 1 + 3),
        (0b00, 1, 1 + 1 + 1 + 3 + 2 * 512 + 1),
    ] {
        let m = machine();
        let unit = caps(0b0_0010, large_pages, false);
        let mode = choose_mode(&unit, top).expect("identity");
        let Mode::Identity { leaf: got, .. } = mode else {
            panic!("{mode:?}");
        };
        assert_eq!(got, leaf, "SLLPS {large_pages:#b}");
        let device = at(0, 2, 0);
        let tables = build_tables(&m, &unit, mode, 0, &[device]).expect("tables");
        assert_eq!(tables.pages, pages, "SLLPS {large_pages:#b}");
        let root = tables.root().device_address();
        let second_level = context_of(&m, root, device).expect("allowed").0 & ADDRESS;
        for addr in [0, GIB - 1, GIB, 2 * GIB, top - 1] {
            assert_eq!(
                translate(&m, second_level, 3, addr),
                Some((addr, leaf)),
                "SLLPS {large_pages:#b}: {addr:#x}"
            );
        }
        m.assert_clean();
    }
    // 1 GiB pages need at least three levels: a 30-bit (2-level) unit
    // falls back to 2 MiB.
    let unit = caps(0b0_0001, 0b11, false);
    assert_eq!(
        choose_mode(&unit, GIB),
        Ok(Mode::Identity {
            aw: 0,
            levels: 2,
            leaf: 2,
            top: GIB
        })
    );
}

#[test]
fn the_smallest_width_that_covers_the_dump() {
    let unit = caps(0b0_0110, 0b01, false);
    let Ok(Mode::Identity { aw, levels, .. }) = choose_mode(&unit, 4 * GIB) else {
        panic!("identity");
    };
    assert_eq!((aw, levels), (1, 3), "39 bits cover 4 GiB");
    let Ok(Mode::Identity { aw, levels, .. }) = choose_mode(&unit, 1 << 40) else {
        panic!("identity");
    };
    assert_eq!((aw, levels), (2, 4), "1 TiB needs 48 bits");
}

#[test]
fn table_page_budget_exceeded_is_an_error() {
    let unit = caps(0b0_0010, 0, false);
    // 4 KiB pages: one leaf table per 2 MiB.
    let budget = MAX_IDENTITY_TABLE_PAGES * 2 * MIB;
    assert!(matches!(
        choose_mode(&unit, budget),
        Ok(Mode::Identity { leaf: 1, .. })
    ));
    assert_eq!(
        choose_mode(&unit, budget + 1),
        Err(TableError::TooManyTablePages)
    );
    assert_eq!(
        TableError::TooManyTablePages.to_string(),
        "no pass-through (ECAP.PT) and an identity map of the dump needs too many table pages"
    );
}

#[test]
fn units_that_cannot_cover_the_dump() {
    assert_eq!(
        choose_mode(&caps(0, 0, true), GIB),
        Err(TableError::NoAddressWidth)
    );
    assert_eq!(
        choose_mode(&caps(0b0_0001, 0b01, false), 2 * GIB),
        Err(TableError::NoWidthCoversDump)
    );
    let narrow = Capabilities {
        mgaw_bits: 32,
        ..caps(0b0_0010, 0b01, false)
    };
    assert_eq!(
        choose_mode(&narrow, 8 * GIB),
        Err(TableError::DumpAboveWidth)
    );
    assert!(choose_mode(&narrow, 4 * GIB).is_ok());
    // With pass-through the top does not matter.
    assert!(choose_mode(&caps(0b0_0001, 0, true), 1 << 50).is_ok());
}

#[test]
fn non_coherent_units_get_every_table_page_flushed() {
    let m = machine();
    let unit = Capabilities {
        coherent: false,
        ..caps(0b0_0010, 0b01, false)
    };
    let mode = choose_mode(&unit, 4 * MIB).expect("identity");
    let tables = build_tables(&m, &unit, mode, 0, &[at(0, 1, 0), at(1, 1, 0)]).expect("tables");
    let flushed = m.dma_flushes();
    assert_eq!(flushed.len() as u64, tables.pages, "every page once");
    assert_eq!(
        flushed.last(),
        Some(&tables.root().device_address()),
        "the root last, after the tables it points to"
    );
    m.assert_clean();
}

#[test]
fn out_of_memory_for_tables() {
    let m = FakeMachine::bare(FakeConfig {
        dma_limit: 3 * 4096,
        ..FakeConfig::modern()
    });
    let unit = caps(0b0_0010, 0, false);
    let mode = choose_mode(&unit, 16 * MIB).expect("identity");
    assert!(matches!(
        build_tables(&m, &unit, mode, 0, &[at(0, 1, 0)]),
        Err(TableError::OutOfMemory)
    ));
    m.assert_clean();
}

#[test]
fn a_device_behind_a_pcie_to_pci_bridge_is_let_through_with_its_aliases() {
    use minicap_drivers::dma_alias::{Bridge, BridgeKind, Bridges};
    // 00:1c.0 root port → bus 1: 01:00.0 PCIe-to-PCI bridge → bus 2:
    // 02:03.0 conventional bridge → bus 3: the disk 03:04.0.
    let bridges = Bridges::from_list(&[
        Bridge {
            address: at(0, 0x1c, 0),
            secondary_bus: 1,
            kind: BridgeKind::PciePort,
        },
        Bridge {
            address: at(1, 0, 0),
            secondary_bus: 2,
            kind: BridgeKind::PcieToPci,
        },
        Bridge {
            address: at(2, 3, 0),
            secondary_bus: 3,
            kind: BridgeKind::OwnId,
        },
    ]);
    let disk = at(3, 4, 0);
    let requesters = bridges.requester_ids(&[disk, at(0, 3, 0)]);
    let m = machine();
    let unit = caps(0b0_0100, 0, true);
    let mode = choose_mode(&unit, 8 * GIB).expect("pass-through");
    let tables = build_tables(&m, &unit, mode, 0, requesters.all()).expect("tables");
    let root = tables.root().device_address();
    // The disk's own ID, the conventional bridge's ID and (2, 00.0), the
    // ID the PCIe-to-PCI bridge gives requests it takes over.
    for f in [disk, at(2, 3, 0), at(2, 0, 0), at(0, 3, 0)] {
        assert!(context_of(&m, root, f).is_some(), "{f} let through");
    }
    // Not the root port or the PCIe-to-PCI bridge's own ID (01:00.0), nor
    // a neighbour of the disk.
    for f in [at(0, 0x1c, 0), at(1, 0, 0), at(3, 4, 1), at(2, 3, 1)] {
        assert!(context_of(&m, root, f).is_none(), "{f} blocked");
    }
    m.assert_clean();
}

#[test]
fn a_units_tables_let_through_the_disks_of_its_own_segment_only() {
    // A disk at 0001:00:03.0 and another at 0000:00:04.0. Tables are
    // indexed by bus/devfn only: the segment-1 unit must not get an entry
    // for 00:04.0 (that would let 0001:00:04.0 through), nor the segment-0
    // unit one for 00:03.0.
    let on_segment_1 = PciAddress {
        segment: 1,
        ..at(0, 3, 0)
    };
    let allowed = [on_segment_1, at(0, 4, 0)];
    let m = machine();
    let unit = caps(0b0_0100, 0, true);
    let mode = choose_mode(&unit, 8 * GIB).expect("pass-through");
    let segment_1 = build_tables(&m, &unit, mode, 1, &allowed).expect("tables");
    let root = segment_1.root().device_address();
    assert!(context_of(&m, root, at(0, 3, 0)).is_some());
    assert!(context_of(&m, root, at(0, 4, 0)).is_none());
    let segment_0 = build_tables(&m, &unit, mode, 0, &allowed).expect("tables");
    let root = segment_0.root().device_address();
    assert!(context_of(&m, root, at(0, 4, 0)).is_some());
    assert!(context_of(&m, root, at(0, 3, 0)).is_none());
    // A unit of a segment without disks: a root table with nothing
    // present, so all its DMA is blocked.
    let segment_2 = build_tables(&m, &unit, mode, 2, &allowed).expect("tables");
    let root = segment_2.root().device_address();
    for bus in 0..=255u8 {
        assert_eq!(entry128(&m, root, u64::from(bus)).0 & 1, 0, "bus {bus}");
    }
    m.assert_clean();
}

#[test]
fn a_disk_on_segment_1_is_let_through_on_that_segments_unit_only() {
    use minicap_drivers::dma_alias::Bridges;
    use minicap_drivers::pci::{self, PciSegment, PciSegments};
    let on_1 = |bus, device, function| PciAddress {
        segment: 1,
        ..at(bus, device, function)
    };
    // Segment 1 (buses 0-7 in its ECAM window): a PCIe-to-PCI bridge
    // 0001:00:1e.0 → bus 3, a disk 0001:03:02.0 behind it. Segment 0 has a
    // function at the disk's numbers, which must stay blocked.
    let m = machine();
    let mut reached = PciSegments::LEGACY;
    assert!(reached.add(PciSegment {
        segment: 1,
        first_bus: 0,
        last_bus: 7
    }));
    m.set_segments(reached);
    let mut bridge = ConfigSpace::new(0x8086, 0x244e);
    bridge.set8(0x0e, 0x01);
    bridge.set8(0x19, 3);
    bridge.add_capability(0x40, 0x10, &(7u16 << 4 | 2).to_le_bytes());
    m.add_function(on_1(0, 0x1e, 0), bridge);
    m.add_function(on_1(3, 2, 0), ConfigSpace::new(0x1b36, 0x0010));
    m.add_function(at(3, 2, 0), ConfigSpace::new(0x8086, 0x10d3));
    // The candidates as the kernel finds them: by the scan of every segment.
    let mut disks = Vec::new();
    pci::enumerate(&m, |f| {
        if f.vendor == 0x1b36 {
            disks.push(f.address);
        }
    });
    assert_eq!(disks, vec![on_1(3, 2, 0)]);
    let requesters = Bridges::scan(&m).requester_ids(&disks);
    assert_eq!(requesters.all(), &[on_1(3, 2, 0), on_1(3, 0, 0)]);

    let unit = caps(0b0_0100, 0, true);
    let mode = choose_mode(&unit, 8 * GIB).expect("pass-through");
    let segment_1 = build_tables(&m, &unit, mode, 1, requesters.all()).expect("tables");
    let root = segment_1.root().device_address();
    assert!(context_of(&m, root, at(3, 2, 0)).is_some(), "the disk");
    assert!(context_of(&m, root, at(3, 0, 0)).is_some(), "its alias");
    assert!(context_of(&m, root, at(0, 0x1e, 0)).is_none());
    let segment_0 = build_tables(&m, &unit, mode, 0, requesters.all()).expect("tables");
    let root = segment_0.root().device_address();
    for bus in 0..=255u8 {
        assert_eq!(entry128(&m, root, u64::from(bus)).0 & 1, 0, "bus {bus}");
    }
    m.assert_clean();
}
