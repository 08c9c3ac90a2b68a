//! PCI helpers against the fake configuration space.

mod fake_machine;

use fake_machine::*;
use minicap_drivers::pci::{self, Bar, PciAddress, PciSegment, PciSegments};
use minicap_drivers::virtio::{is_virtio_blk, VIRTIO_VENDOR};
use minicap_drivers::Platform;

fn at(bus: u8, device: u8, function: u8) -> PciAddress {
    PciAddress::new(bus, device, function)
}

fn bare() -> FakeMachine {
    FakeMachine::bare(FakeConfig::modern())
}

fn multifunction(vendor: u16, device: u16) -> ConfigSpace {
    let mut c = ConfigSpace::new(vendor, device);
    c.set8(0x0e, 0x80);
    c
}

#[test]
fn enumerate_finds_present_functions_only() {
    let m = FakeMachine::new(FakeConfig::modern());
    // A multi-function device with a hole at function 1.
    m.add_function(at(0, 5, 0), multifunction(0x8086, 0x1234));
    m.add_function(at(0, 5, 2), ConfigSpace::new(0x8086, 0x1235));
    m.add_function(at(0, 5, 7), ConfigSpace::new(0x8086, 0x1237));
    // A single-function device that (like some real ones) answers on every
    // function number: only function 0 counts.
    m.add_function(at(0, 7, 0), ConfigSpace::new(0x10ec, 0x8139));
    m.add_function(at(0, 7, 1), ConfigSpace::new(0x10ec, 0x8139));
    // A function 0 that is absent: the device is skipped even if a
    // function behind it answers.
    m.add_function(at(0, 9, 1), ConfigSpace::new(0x1b36, 0x0001));
    // Something on a high bus.
    m.add_function(at(0xfe, 0x1f, 0), ConfigSpace::new(VIRTIO_VENDOR, 0x1001));

    let mut found = Vec::new();
    pci::enumerate(&m, |f| found.push((f.address, f.vendor, f.device)));
    assert_eq!(
        found,
        vec![
            (at(0, 3, 0), VIRTIO_VENDOR, 0x1042),
            (at(0, 5, 0), 0x8086, 0x1234),
            (at(0, 5, 2), 0x8086, 0x1235),
            (at(0, 5, 7), 0x8086, 0x1237),
            (at(0, 7, 0), 0x10ec, 0x8139),
            (at(0xfe, 0x1f, 0), VIRTIO_VENDOR, 0x1001),
        ]
    );
    m.assert_clean();
}

#[test]
fn enumerate_on_an_empty_bus() {
    let m = bare();
    let mut count = 0;
    pci::enumerate(&m, |_| count += 1);
    assert_eq!(count, 0);
}

#[test]
fn virtio_blk_ids() {
    assert!(is_virtio_blk(0x1af4, 0x1001));
    assert!(is_virtio_blk(0x1af4, 0x1042));
    assert!(!is_virtio_blk(0x1af4, 0x1000), "virtio-net");
    assert!(!is_virtio_blk(0x1af4, 0x1041), "modern virtio-net");
    assert!(!is_virtio_blk(0x8086, 0x1001));
}

#[test]
fn bar_decoding() {
    let m = bare();
    let f = at(0, 4, 0);
    let mut c = ConfigSpace::new(0x1234, 0x5678);
    c.set32(0x10, 0x0000_c041); // I/O at 0xc040 (bit 1 reserved)
    c.set32(0x14, 0xfebf_1008); // 32-bit prefetchable memory
    c.set32(0x18, 0x0000_000c); // 64-bit prefetchable, low half 0 ...
    c.set32(0x1c, 0x0000_0080); // ... high half: 0x80_0000_0000
    c.set32(0x20, 0); // unassigned
    c.set32(0x24, 0xfe00_0004); // 64-bit type in the last BAR: no high half
    m.add_function(f, c);
    assert_eq!(pci::bar(&m, f, 0), Bar::Io(0xc040));
    assert_eq!(pci::bar(&m, f, 1), Bar::Memory(0xfebf_1000));
    assert_eq!(pci::bar(&m, f, 2), Bar::Memory(0x80_0000_0000));
    assert_eq!(pci::bar(&m, f, 4), Bar::None);
    assert_eq!(pci::bar(&m, f, 5), Bar::Memory(0xfe00_0000));
    assert_eq!(pci::bar(&m, f, 6), Bar::None);

    let g = at(0, 6, 0);
    let mut c = ConfigSpace::new(0x1234, 0x5678);
    c.set32(0x10, 0x0001_0001); // I/O above 64 KiB: not usable on x86
    c.set32(0x14, 0x0000_0001); // I/O at port 0: unassigned
    c.set32(0x18, 0x0000_0004); // 64-bit ...
    c.set32(0x1c, 0x0000_0001); // ... entirely above 4 GiB
    c.set32(0x20, 0xfd00_0000); // 32-bit
    m.add_function(g, c);
    assert_eq!(pci::bar(&m, g, 0), Bar::None);
    assert_eq!(pci::bar(&m, g, 1), Bar::None);
    assert_eq!(pci::bar(&m, g, 2), Bar::Memory(0x1_0000_0000));
    assert_eq!(pci::bar(&m, g, 4), Bar::Memory(0xfd00_0000));
    m.assert_clean();
}

#[test]
fn bars_of_the_fake_virtio_device() {
    let m = FakeMachine::new(FakeConfig::transitional());
    assert_eq!(pci::bar(&m, VIRTIO_FN, 0), Bar::Io(IO_BASE));
    assert_eq!(pci::bar(&m, VIRTIO_FN, 1), Bar::Memory(u64::from(MSIX_BAR)));
    assert_eq!(pci::bar(&m, VIRTIO_FN, 4), Bar::Memory(MMIO_BASE));
}

fn capabilities(m: &FakeMachine, f: PciAddress) -> Vec<(u8, u16)> {
    let mut caps = Vec::new();
    pci::for_each_capability(m, f, |id, off| caps.push((id, off)));
    caps
}

#[test]
fn capability_walk() {
    let m = FakeMachine::new(FakeConfig::modern());
    assert_eq!(
        capabilities(&m, VIRTIO_FN),
        vec![
            (0x11, CAP_MSIX),
            (0x05, CAP_MSI),
            (0x09, CAP_COMMON),
            (0x09, CAP_ISR),
            (0x09, CAP_NOTIFY),
            (0x09, CAP_DEVICE),
        ]
    );
    let m = FakeMachine::new(FakeConfig::legacy());
    assert_eq!(
        capabilities(&m, VIRTIO_FN),
        vec![(0x11, CAP_MSIX), (0x05, CAP_MSI)]
    );
}

#[test]
fn capability_walk_needs_the_status_bit() {
    let m = bare();
    let f = at(0, 4, 0);
    let mut c = ConfigSpace::new(0x1234, 0x5678);
    c.set8(0x34, 0x40); // a pointer, but status bit 4 clear
    c.set8(0x40, 0x05);
    m.add_function(f, c);
    assert!(capabilities(&m, f).is_empty());
}

#[test]
fn capability_walk_terminates_on_loops() {
    let m = bare();

    // 0x40 -> 0x50 -> 0x40 -> ...
    let f = at(0, 4, 0);
    let mut c = ConfigSpace::new(0x1234, 0x5678);
    c.add_capability(0x40, 0x09, &[]);
    c.add_capability(0x50, 0x05, &[]);
    c.set8(0x51, 0x40);
    m.add_function(f, c);
    let caps = capabilities(&m, f);
    assert_eq!(caps.len(), 48, "bounded walk");
    assert_eq!(&caps[..3], &[(0x09, 0x40), (0x05, 0x50), (0x09, 0x40)]);

    // A capability pointing at itself, with the reserved low bits set.
    let g = at(0, 5, 0);
    let mut c = ConfigSpace::new(0x1234, 0x5678);
    c.add_capability(0xfc, 0x11, &[]);
    c.set8(0xfd, 0xff);
    m.add_function(g, c);
    let caps = capabilities(&m, g);
    assert_eq!(caps.len(), 48);
    assert!(caps.iter().all(|&c| c == (0x11, 0xfc)));

    // A next pointer into the header ends the walk.
    let h = at(0, 6, 0);
    let mut c = ConfigSpace::new(0x1234, 0x5678);
    c.add_capability(0x80, 0x01, &[]);
    c.set8(0x81, 0x3c);
    m.add_function(h, c);
    assert_eq!(capabilities(&m, h), vec![(0x01, 0x80)]);
    m.assert_clean();
}

#[test]
fn sub_dword_accessors() {
    let m = FakeMachine::new(FakeConfig::modern());
    assert_eq!(pci::read16(&m, VIRTIO_FN, 0x00), VIRTIO_VENDOR);
    assert_eq!(pci::read16(&m, VIRTIO_FN, 0x02), 0x1042);
    assert_eq!(pci::read8(&m, VIRTIO_FN, 0x08), 1, "revision");
    assert_eq!(pci::read8(&m, VIRTIO_FN, 0x0b), 0x01, "class");
    assert_eq!(pci::read16(&m, VIRTIO_FN, 0x2e), 2, "subsystem");
    // A 16-bit write leaves the other half of the dword alone.
    pci::write16(&m, VIRTIO_FN, 0x04, 0x0006);
    assert_eq!(pci::read16(&m, VIRTIO_FN, 0x04), 0x0006);
    assert_eq!(pci::read16(&m, VIRTIO_FN, 0x06), 0x0010, "status");
    pci::write16(&m, VIRTIO_FN, CAP_MSI + 2, 0x0001);
    assert_eq!(pci::read16(&m, VIRTIO_FN, CAP_MSI + 2), 0x0081);
    assert_eq!(pci::read8(&m, VIRTIO_FN, CAP_MSI), 0x05, "id kept");
    m.assert_clean();
}

#[test]
fn take_over_quiesces_then_bus_mastering_is_switched() {
    let m = FakeMachine::new(FakeConfig {
        // SERR enable (left as found) and bus mastering, as a crashed
        // kernel's driver leaves it.
        initial_command: (1 << 8) | CMD_BUS_MASTER,
        ..FakeConfig::modern()
    });
    assert!(m.msix_enabled() && m.msi_enabled());
    pci::take_over(&m, VIRTIO_FN);
    // Until the device is reset it must not master the bus.
    assert_eq!(
        m.command(),
        (1 << 8) | CMD_IO | CMD_MEMORY | CMD_INTX_DISABLE
    );
    assert!(!m.msix_enabled());
    assert!(!m.msi_enabled());
    pci::enable_bus_master(&m, VIRTIO_FN);
    assert_eq!(
        m.command(),
        (1 << 8) | CMD_IO | CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE
    );
    pci::stop_bus_master(&m, VIRTIO_FN);
    assert_eq!(
        m.command(),
        (1 << 8) | CMD_IO | CMD_MEMORY | CMD_INTX_DISABLE
    );
    // None of this touches anything but config space.
    assert_eq!(m.mmio_accesses() + m.port_accesses(), 0);
    m.assert_clean();
}

#[test]
fn absent_functions_read_all_ones() {
    let m = bare();
    assert_eq!(m.pci_read32(at(3, 4, 5), 0), u32::MAX);
    assert_eq!(pci::bar(&m, at(3, 4, 5), 0), Bar::None);
}

#[test]
fn regions_bound_every_access() {
    use minicap_drivers::access::{Region, Width};
    let m = FakeMachine::new(FakeConfig::transitional());
    let common = m
        .map_registers(VIRTIO_FN, 4, COMMON_OFF, u64::from(COMMON_LEN))
        .expect("memory BAR");
    assert_eq!(common.len(), u64::from(COMMON_LEN));
    assert_eq!(
        m.mmio_read(&common, u64::from(COMMON_LEN), Width::U8),
        0xff,
        "past the end: nothing read"
    );
    let dma = m.dma_alloc(16, 16).expect("memory");
    m.dma_write(&dma, 12, Width::U64, 1);
    let ports = m.claim_ports(VIRTIO_FN, 0, 20).expect("I/O BAR");
    m.port_write(&ports, 20, Width::U8, 0);
    assert!(m.claim_ports(VIRTIO_FN, 4, 20).is_none());
    assert_eq!(
        m.mmio_accesses() + m.port_accesses(),
        0,
        "none reached the device"
    );
    let violations = m.violations();
    assert_eq!(violations.len(), 4, "{violations:#?}");
    assert!(violations[..3]
        .iter()
        .all(|v| v.contains("outside its region")));
    assert!(violations[3].contains("not an I/O BAR"));
}

fn on(segment: u16, bus: u8, device: u8, function: u8) -> PciAddress {
    PciAddress {
        segment,
        ..at(bus, device, function)
    }
}

fn segments(list: &[(u16, u8, u8)]) -> PciSegments {
    let mut all = PciSegments::NONE;
    for &(segment, first_bus, last_bus) in list {
        assert!(all.add(PciSegment {
            segment,
            first_bus,
            last_bus
        }));
    }
    all
}

#[test]
fn enumerate_walks_every_segment_on_its_buses_only() {
    let m = bare();
    // Segment 0 through the ports (every bus); segment 1 has buses
    // 0x80-0x81 in its ECAM window (as an MCFG allocation gives them).
    m.set_segments(segments(&[(0, 0, 255), (1, 0x80, 0x81)]));
    m.add_function(at(0, 3, 0), ConfigSpace::new(0x8086, 0x2922));
    // The same bus/device/function numbers on segment 1: another function.
    m.add_function(on(1, 0, 3, 0), ConfigSpace::new(0x1b36, 0x0010));
    m.add_function(on(1, 0x80, 0, 0), ConfigSpace::new(0x1b36, 0x0010));
    m.add_function(on(1, 0x81, 2, 0), multifunction(0x8086, 0x1234));
    m.add_function(on(1, 0x81, 2, 1), ConfigSpace::new(0x8086, 0x1235));
    // Outside what the platform reaches: never looked at.
    m.add_function(on(2, 0x80, 0, 0), ConfigSpace::new(0x1b36, 0x0010));

    let mut found = Vec::new();
    pci::enumerate(&m, |f| found.push((f.address, f.device)));
    assert_eq!(
        found,
        vec![
            (at(0, 3, 0), 0x2922),
            (on(1, 0x80, 0, 0), 0x0010),
            (on(1, 0x81, 2, 0), 0x1234),
            (on(1, 0x81, 2, 1), 0x1235),
        ]
    );
    // Not one configuration access outside the listed segments and buses.
    m.assert_clean();
}

#[test]
fn a_segment_listed_twice_with_other_buses_is_walked_on_both() {
    let m = bare();
    m.set_segments(segments(&[(0, 0, 255), (1, 0, 0), (1, 0x40, 0x40)]));
    m.add_function(on(1, 0, 1, 0), ConfigSpace::new(0x1b36, 0x0010));
    m.add_function(on(1, 0x40, 1, 0), ConfigSpace::new(0x1b36, 0x0010));
    let mut found = Vec::new();
    pci::enumerate(&m, |f| found.push(f.address));
    assert_eq!(found, vec![on(1, 0, 1, 0), on(1, 0x40, 1, 0)]);
    m.assert_clean();
    // Overlapping bus ranges of one segment are refused.
    let mut list = segments(&[(1, 0, 0x10)]);
    assert!(!list.add(PciSegment {
        segment: 1,
        first_bus: 0x10,
        last_bus: 0x20
    }));
    assert!(list.add(PciSegment {
        segment: 2,
        first_bus: 0x10,
        last_bus: 0x20
    }));
    assert_eq!(list.all().len(), 2);
}

#[test]
fn an_access_outside_the_reached_segments_is_caught() {
    let m = bare();
    assert_eq!(m.pci_segments(), PciSegments::LEGACY);
    assert_eq!(m.pci_read32(on(1, 0, 0, 0), 0), u32::MAX);
    assert_eq!(m.violations().len(), 1, "{:?}", m.violations());
}

#[test]
fn addresses_read_as_lspci_writes_them() {
    assert_eq!(at(0, 0x1f, 2).to_string(), "00:1f.2");
    assert_eq!(on(1, 0x80, 3, 0).to_string(), "0001:80:03.0");
    assert_eq!(on(0xabcd, 0, 0, 7).to_string(), "abcd:00:00.7");
}
