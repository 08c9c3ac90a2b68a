//! The AHCI driver against a fake AHCI HBA with ATA disks.

mod fake_machine;
mod support;

use fake_machine::ahci::*;
use fake_machine::ConfigSpace;
use minicap_drivers::ahci::{
    is_ahci, AhciDisk, AhciError, AhciHba, Handoff, IdentifyError, Operation, PortState,
    DEFAULT_REQUEST_BYTES,
};
use minicap_drivers::pci::PciAddress;
use minicap_drivers::BlockDevice;
use support::*;

type Disk<'m> = AhciDisk<'m, AhciMachine>;

fn take_over(m: &AhciMachine) -> AhciHba<'_, AhciMachine> {
    expect_up("takeover", m, AhciHba::take_over(m, AHCI_FN))
}

fn open_port(m: &AhciMachine, port: u8) -> Disk<'_> {
    let mut hba = take_over(m);
    expect_up("open", m, hba.open(port))
}

/// A machine with one 512-byte-sector disk on port 0.
fn machine() -> AhciMachine {
    AhciMachine::new(AhciConfig::one_disk(512))
}

fn open(m: &AhciMachine) -> Disk<'_> {
    open_port(m, 0)
}

/// The write-then-read-back round trip (`check_roundtrip`) on the disk of
/// `disk`'s port.
#[track_caller]
fn roundtrip(m: &AhciMachine, disk: &mut Disk<'_>, offset: u64, len: u64, src: u64, dst: u64) {
    let port = AhciPort(m, disk.port());
    check_roundtrip(m, &port, disk, offset, len, src, dst);
}

/// The commands cover consecutive sectors from `offset` and consecutive
/// memory from `phys`, each within the driver's limits.
fn check_transfers(
    cmds: &[AtaCommand],
    command: u8,
    sector: u64,
    offset: u64,
    phys: u64,
    len: u64,
    limit: u64,
) {
    let mut pos = 0;
    for c in cmds {
        assert_eq!(c.command, command);
        assert_eq!(c.lba * sector, offset + pos, "command LBA");
        assert_eq!(u64::from(c.count) * sector, c.bytes(), "count matches PRDs");
        assert!(c.bytes() <= limit, "command larger than the limit");
        let mut addr = phys + pos;
        for &(a, l) in &c.prds {
            assert_eq!(a, addr, "PRD address");
            assert!(l <= 4 * MIB, "PRD longer than 4 MiB");
            addr += l;
        }
        pos += c.bytes();
    }
    assert_eq!(pos, len, "bytes moved");
}

// ----- detection and takeover -----

#[test]
fn class_code_identifies_ahci() {
    let m = machine();
    assert!(is_ahci(&m, AHCI_FN));
    let ide = PciAddress::new(0, 2, 0);
    let mut space = ConfigSpace::new(0x8086, 0x7010);
    space.set8(0x09, 0x80); // IDE prog-if
    space.set8(0x0a, 0x01);
    space.set8(0x0b, 0x01);
    m.add_function(ide, space);
    assert!(!is_ahci(&m, ide));
    m.assert_clean();
}

#[test]
fn takeover_lists_disks_only() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.ports[2] = Attached::Atapi;
    cfg.ports[3] = Attached::Disk(DiskConfig::new(1 << 20, 4096));
    cfg.implemented = Some(0b101111);
    let m = AhciMachine::new(cfg);
    let hba = take_over(&m);
    assert_eq!(hba.disks().collect::<Vec<_>>(), [0, 3]);
    assert_eq!(hba.state(0), PortState::Disk);
    assert_eq!(hba.state(1), PortState::NoLink { detection: 0 });
    assert_eq!(
        hba.state(2),
        PortState::NotDisk {
            signature: SIG_ATAPI
        }
    );
    assert_eq!(hba.state(4), PortState::NotImplemented);
    assert_eq!(hba.handoff(), Handoff::NotSupported);
    assert_eq!(m.hba_resets(), 1);
    // AHCI 1.0 has no BOHC: it must not be touched.
    assert_eq!(m.bohc_accesses(), 0);
    // Empty ports cost the link wait, not a COMRESET wait.
    assert!(m.now() < 100_000, "takeover took {} µs", m.now());
    assert!(!m
        .events()
        .iter()
        .any(|e| matches!(e, AhciEvent::Comreset(_))));
    m.assert_clean();
}

#[test]
fn takeover_from_a_dirty_state_resets_before_bus_mastering() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.dirty = true;
    let m = AhciMachine::new(cfg);
    assert!(m.bus_master() && m.outstanding(0));
    let mut disk = open(&m);
    // The fake records a violation if the stale command could have run.
    m.assert_clean();
    let events = m.events();
    let reset = events
        .iter()
        .position(|e| *e == AhciEvent::HbaReset)
        .unwrap();
    let first_off = events
        .iter()
        .position(|e| matches!(e, AhciEvent::PciCommand(c) if c & PCI_BUS_MASTER == 0))
        .unwrap();
    let first_on = events
        .iter()
        .position(|e| matches!(e, AhciEvent::PciCommand(c) if c & PCI_BUS_MASTER != 0))
        .unwrap();
    assert!(first_off < reset && reset < first_on, "{events:?}");
    assert_eq!(m.ghc() & 2, 0, "GHC.IE");
    assert_eq!(m.port_ie(0), 0);
    roundtrip(&m, &mut disk, 0, 8192, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn bios_handoff_waits_for_the_bios() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.version = 0x0001_0300;
    cfg.boh = true;
    cfg.bios_owned = true;
    cfg.bios_release_ms = Some(300);
    let m = AhciMachine::new(cfg);
    let hba = take_over(&m);
    assert_eq!(hba.handoff(), Handoff::Released);
    assert_eq!(m.bohc() & 1, 0, "BOS");
    let events = m.events();
    let asked = events
        .iter()
        .position(|e| *e == AhciEvent::OsOwnershipRequested)
        .unwrap();
    let reset = events
        .iter()
        .position(|e| *e == AhciEvent::HbaReset)
        .unwrap();
    assert!(asked < reset);
    assert_eq!(hba.disks().count(), 1);
    m.assert_clean();
}

#[test]
fn bios_that_never_lets_go_is_overridden_after_two_seconds() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.version = 0x0001_0300;
    cfg.boh = true;
    cfg.bios_owned = true;
    cfg.bios_release_ms = None;
    let m = AhciMachine::new(cfg);
    let hba = take_over(&m);
    assert_eq!(hba.handoff(), Handoff::Forced);
    assert!(
        m.now() >= 2_000_000 && m.now() < 3_000_000,
        "{} µs",
        m.now()
    );
    assert_eq!(hba.disks().count(), 1);
    m.assert_clean();
}

#[test]
fn hba_reset_timeout_leaves_bus_mastering_off() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.dirty = true;
    let m = AhciMachine::new(cfg);
    m.knobs.reset_stuck.set(true);
    let err = AhciHba::take_over(&m, AHCI_FN).err().unwrap();
    assert_eq!(err, AhciError::ResetTimeout);
    assert!(!m.bus_master());
    assert!(m.now() >= 1_000_000 && m.now() < 1_100_000);
    m.assert_clean();
}

#[test]
fn a_port_that_will_not_stop_fails_the_takeover() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.dirty = true;
    let m = AhciMachine::new(cfg);
    // Port 0 keeps running the crashed kernel's command through the reset.
    m.knobs.stop_stuck.set(true);
    let err = AhciHba::take_over(&m, AHCI_FN).err().unwrap();
    assert_eq!(err, AhciError::PortStuck { port: 0 });
    assert_eq!(
        err.to_string(),
        "port 0 did not stop within 500 ms; bus mastering off"
    );
    // Bus mastering was never turned back on (the fake would object).
    assert!(!m.bus_master());
    m.assert_clean();
}

#[test]
fn a_link_without_phy_communication_gets_a_comreset() {
    let mut cfg = AhciConfig::one_disk(512);
    if let Attached::Disk(d) = &mut cfg.ports[0] {
        d.needs_comreset = true;
    }
    let m = AhciMachine::new(cfg);
    let mut disk = open(&m);
    assert_eq!(
        m.events()
            .iter()
            .filter(|e| matches!(e, AhciEvent::Comreset(0)))
            .count(),
        1
    );
    roundtrip(&m, &mut disk, 4096, 4096, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn a_disk_busy_at_open_is_refused() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.ports[1] = Attached::Disk(DiskConfig::new(1 << 17, 512));
    let m = AhciMachine::new(cfg);
    let mut hba = take_over(&m);
    m.set_busy(0, 1000);
    let err = hba.open(0).err().unwrap();
    assert_eq!(
        err,
        AhciError::NotReady {
            port: 0,
            task_file: 0xd0
        }
    );
    assert_eq!(
        err.to_string(),
        "port 0: link down or device busy (ATA status 0xd0)"
    );
    assert_eq!(m.port_cmd(0) & 0xc011, 0, "port stopped");
    // The other disk is unaffected.
    let ports: Vec<u8> = hba.disks().collect();
    for port in hba.disks() {
        hba.open(port).unwrap();
    }
    assert_eq!(ports, [1]);
    m.assert_clean();
}

#[test]
fn port_states_display() {
    let cases = [
        (PortState::NoLink { detection: 0 }, "nothing attached"),
        (PortState::NoLink { detection: 1 }, "no link (DET 1)"),
        (
            PortState::NotDisk {
                signature: SIG_ATAPI,
            },
            "not an ATA disk (signature 0xeb140101)",
        ),
        (
            PortState::NotReady { task_file: 0x80 },
            "device stayed busy (status 0x80)",
        ),
        (PortState::Disk, "ATA disk"),
    ];
    for (state, want) in cases {
        assert_eq!(state.to_string(), want);
    }
}

#[test]
fn staggered_spin_up_ports_are_spun_up() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.sss = true;
    let m = AhciMachine::new(cfg);
    let hba = take_over(&m);
    assert_eq!(hba.disks().collect::<Vec<_>>(), [0]);
    m.assert_clean();
}

#[test]
fn a_disk_busy_after_reset_is_waited_for() {
    let mut cfg = AhciConfig::one_disk(512);
    if let Attached::Disk(d) = &mut cfg.ports[0] {
        d.busy_ms = 3_000;
    }
    let m = AhciMachine::new(cfg);
    let hba = take_over(&m);
    assert_eq!(hba.state(0), PortState::Disk);
    assert!(m.now() >= 3_000_000);
    m.assert_clean();
}

#[test]
fn a_disk_that_stays_busy_is_not_ready_after_31_seconds() {
    let mut cfg = AhciConfig::one_disk(512);
    if let Attached::Disk(d) = &mut cfg.ports[0] {
        d.busy_ms = 100_000;
    }
    let m = AhciMachine::new(cfg);
    m.set_clock_step_us(1000);
    let mut hba = take_over(&m);
    assert!(matches!(hba.state(0), PortState::NotReady { task_file } if task_file & 0x80 != 0));
    assert!(m.now() >= 31_000_000 && m.now() < 32_000_000);
    assert_eq!(hba.open(0).err(), Some(AhciError::NoDisk { port: 0 }));
    m.assert_clean();
}

#[test]
fn dma_memory_above_4_gib_needs_64_bit_addressing() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.s64a = false;
    cfg.dma_base = 0x1_0000_0000;
    let m = AhciMachine::new(cfg);
    let err = AhciHba::take_over(&m, AHCI_FN).err().unwrap();
    assert!(matches!(err, AhciError::NotAddressable { .. }), "{err:?}");
    assert!(!m.bus_master());
    m.assert_clean();
}

#[test]
fn a_32_bit_hba_refuses_data_above_4_gib() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.s64a = false;
    let m = AhciMachine::new(cfg);
    let mut disk = open(&m);
    let err = disk.write(0, 0x1_0000_0000, 4096).unwrap_err();
    assert_eq!(
        err,
        AhciError::NotAddressable {
            address: 0x1_0000_0000
        }
    );
    roundtrip(&m, &mut disk, 0, 4096, BUF, BUF2);
    m.assert_clean();
}

// ----- IDENTIFY -----

#[test]
fn identify_512_byte_sectors() {
    let m = machine();
    let disk = open(&m);
    assert_eq!(disk.capacity(), 64 * MIB);
    assert_eq!(disk.sector_size(), 512);
    assert_eq!(disk.max_in_flight(), 1);
    assert_eq!(disk.max_transfer(), DEFAULT_REQUEST_BYTES);
    assert_eq!(disk.identity().model(), "MINICAP FAKE DISK");
    let mut s = String::new();
    disk.describe(&mut s).unwrap();
    assert_eq!(s, "AHCI 00:1f.2 port 0 (MINICAP FAKE DISK), 64 MiB");
    let identify = &m.commands()[0];
    assert_eq!(identify.command, IDENTIFY_DEVICE);
    assert!(!identify.write);
    m.assert_clean();
}

#[test]
fn identify_4096_byte_sectors() {
    let m = AhciMachine::new(AhciConfig::one_disk(4096));
    let disk = open(&m);
    assert_eq!(disk.capacity(), 64 * MIB);
    assert_eq!(disk.sector_size(), 4096);
    let mut s = String::new();
    disk.describe(&mut s).unwrap();
    assert_eq!(
        s,
        "AHCI 00:1f.2 port 0 (MINICAP FAKE DISK, 4096-byte sectors), 64 MiB"
    );
    m.assert_clean();
}

#[test]
fn identify_failures_stop_the_port() {
    for (tweak, want) in [
        (
            (|d: &mut DiskConfig| d.lba48 = false) as fn(&mut DiskConfig),
            IdentifyError::NoLba48,
        ),
        (
            |d: &mut DiskConfig| d.bad_checksum = true,
            IdentifyError::BadChecksum,
        ),
        (
            |d: &mut DiskConfig| d.sector_size = 8192,
            IdentifyError::SectorSize(8192),
        ),
    ] {
        let mut cfg = AhciConfig::one_disk(512);
        if let Attached::Disk(d) = &mut cfg.ports[0] {
            tweak(d);
        }
        let m = AhciMachine::new(cfg);
        let mut hba = take_over(&m);
        let err = hba.open(0).err().unwrap();
        assert_eq!(
            err,
            AhciError::Identify {
                port: 0,
                error: want
            }
        );
        assert_eq!(m.port_cmd(0) & 0xc011, 0, "port stopped");
        m.assert_clean();
    }
}

#[test]
fn ports_open_once_and_outlive_the_hba() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.ports[1] = Attached::Disk(DiskConfig::new(1 << 17, 512));
    let m = AhciMachine::new(cfg);
    let mut hba = take_over(&m);
    let mut first = hba.open(0).unwrap();
    assert_eq!(hba.open(0).err(), Some(AhciError::NoDisk { port: 0 }));
    assert_eq!(hba.open(2).err(), Some(AhciError::NoDisk { port: 2 }));
    assert_eq!(hba.disks().collect::<Vec<_>>(), [1]);
    drop(hba);
    // The unopened disk's port stopped; the opened one still works.
    assert_eq!(m.port_cmd(1) & 0xc011, 0);
    roundtrip(&m, &mut first, 0, 4096, BUF, BUF2);
    m.assert_clean();
}

// ----- data -----

#[test]
fn write_then_read_back_512() {
    let m = machine();
    let mut disk = open(&m);
    roundtrip(&m, &mut disk, 0, 512, BUF, BUF2);
    roundtrip(&m, &mut disk, 512 * 77, 512 * 9, BUF + 512, BUF2 + 1024);
    let end = disk.capacity();
    roundtrip(&m, &mut disk, end - 4096, 4096, BUF, BUF2);
    let cmds = m.transfers();
    assert_eq!(cmds[0].command, WRITE_DMA_EXT);
    assert!(cmds[0].write);
    assert_eq!(cmds[1].command, READ_DMA_EXT);
    assert!(!cmds[1].write);
    m.assert_clean();
}

#[test]
fn write_then_read_back_4096() {
    let m = AhciMachine::new(AhciConfig::one_disk(4096));
    let mut disk = open(&m);
    roundtrip(&m, &mut disk, 0, 4096, BUF, BUF2);
    roundtrip(&m, &mut disk, 4096 * 100, 4096 * 33, BUF, BUF2);
    let cmds = m.transfers();
    // LBAs and counts are in 4096-byte sectors.
    assert_eq!((cmds[2].lba, cmds[2].count), (100, 33));
    m.assert_clean();
}

#[test]
fn lba_above_32_bits() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.ports[0] = Attached::Disk(DiskConfig::new(3 << 32, 512));
    let m = AhciMachine::new(cfg);
    let mut disk = open(&m);
    assert_eq!(disk.capacity(), 3 << 41);
    let offset = (2 << 41) + 512 * 3;
    roundtrip(&m, &mut disk, offset, 1024, BUF, BUF2);
    assert_eq!(m.transfers()[0].lba, offset / 512);
    m.assert_clean();
}

#[test]
fn large_transfers_split_into_commands() {
    let m = machine();
    let mut disk = open(&m);
    let len = 5 * MIB + 4096;
    roundtrip(&m, &mut disk, MIB, len, BUF, BUF + 64 * MIB);
    let (writes, reads): (Vec<_>, Vec<_>) = m.transfers().into_iter().partition(|c| c.write);
    assert_eq!(writes.len(), 3);
    let limit = DEFAULT_REQUEST_BYTES;
    check_transfers(&writes, WRITE_DMA_EXT, 512, MIB, BUF, len, limit);
    check_transfers(&reads, READ_DMA_EXT, 512, MIB, BUF + 64 * MIB, len, limit);
    m.assert_clean();
}

#[test]
fn commands_longer_than_4_mib_take_several_prds() {
    let m = machine();
    let mut disk = open(&m);
    disk.set_request_limit(u64::MAX);
    // 65535 sectors: what one WRITE DMA EXT carries without the "0 means
    // 65536" encoding.
    let most = 65535 * 512;
    assert_eq!(disk.max_transfer(), most);
    let len = most + 512 * 3;
    roundtrip(&m, &mut disk, 0, len, BUF, BUF + 64 * MIB);
    let (writes, reads): (Vec<_>, Vec<_>) = m.transfers().into_iter().partition(|c| c.write);
    assert_eq!(writes.len(), 2);
    assert_eq!(writes[0].count, 65535);
    assert_eq!(writes[0].prds.len(), 8, "PRDs of at most 4 MiB");
    check_transfers(&writes, WRITE_DMA_EXT, 512, 0, BUF, len, most);
    check_transfers(&reads, READ_DMA_EXT, 512, 0, BUF + 64 * MIB, len, most);
    // A limit below a sector still allows one sector per command.
    disk.set_request_limit(100);
    assert_eq!(disk.max_transfer(), 512);
    m.assert_clean();
}

#[test]
fn missing_registers_or_memory_fail_the_takeover() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.map_mmio_ok = false;
    let m = AhciMachine::new(cfg);
    assert_eq!(
        AhciHba::take_over(&m, AHCI_FN).err(),
        Some(AhciError::NoRegisters)
    );
    assert!(!m.bus_master());
    m.assert_clean();

    let mut cfg = AhciConfig::one_disk(512);
    cfg.dma_limit = 3 * 4096;
    let m = AhciMachine::new(cfg);
    assert_eq!(
        AhciHba::take_over(&m, AHCI_FN).err(),
        Some(AhciError::NoMemory)
    );
    assert!(!m.bus_master());
    m.assert_clean();
}

#[test]
fn prds_cross_pages_without_splitting() {
    let m = machine();
    let mut disk = open(&m);
    // Memory that starts mid-page and spans five pages.
    roundtrip(&m, &mut disk, 8192, 5 * 4096, BUF + 0x600, BUF2 + 0x200);
    let cmds = m.transfers();
    assert_eq!(cmds[0].prds, [(BUF + 0x600, 5 * 4096)]);
    assert_eq!(cmds[1].prds, [(BUF2 + 0x200, 5 * 4096)]);
    m.assert_clean();
}

#[test]
fn bad_requests_do_not_reach_the_disk() {
    let m = AhciMachine::new(AhciConfig::one_disk(4096));
    let mut disk = open(&m);
    let cap = disk.capacity();
    for (offset, len, phys) in [
        (512, 4096, BUF),
        (0, 512, BUF),
        (0, 0, BUF),
        (cap - 4096, 8192, BUF),
        (u64::MAX - 4095, 4096, BUF),
        (0, 4096, BUF + 1),
    ] {
        assert_eq!(
            disk.write(offset, phys, len),
            Err(AhciError::BadRequest { offset, len })
        );
    }
    let too_long = disk.max_transfer() + 4096;
    assert!(matches!(
        disk.start_write(0, BUF, too_long),
        Err(AhciError::BadRequest { .. })
    ));
    assert!(m.transfers().is_empty());
    m.assert_clean();
}

// ----- in flight and flush -----

#[test]
fn start_write_returns_while_the_disk_works() {
    let m = machine();
    let mut disk = open(&m);
    m.knobs.completion.set(Completion::AfterPolls(3));
    let data = pattern(7, 8192);
    m.mem_write(BUF, &data);
    disk.start_write(4096, BUF, 8192).unwrap();
    assert!(m.outstanding(0));
    assert!(m.transfers().is_empty(), "not done yet");
    // One at a time: a second is refused and nothing is issued.
    assert_eq!(
        disk.start_write(16384, BUF, 4096),
        Err(AhciError::TooManyInFlight)
    );
    disk.wait().unwrap();
    assert!(!m.outstanding(0));
    assert_same(&m.disk_read(0, 4096, 8192), &data, "disk");
    // Nothing outstanding: wait is a no-op.
    disk.wait().unwrap();
    // write() and flush() finish an outstanding write first.
    disk.start_write(0, BUF, 4096).unwrap();
    disk.write(65536, BUF, 4096).unwrap();
    disk.start_write(0, BUF, 4096).unwrap();
    disk.flush().unwrap();
    let cmds: Vec<u8> = m.commands().iter().map(|c| c.command).collect();
    assert_eq!(
        cmds,
        [
            IDENTIFY_DEVICE,
            WRITE_DMA_EXT,
            WRITE_DMA_EXT,
            WRITE_DMA_EXT,
            WRITE_DMA_EXT,
            FLUSH_CACHE_EXT
        ]
    );
    m.assert_clean();
}

#[test]
fn flush_uses_flush_cache_ext_or_flush_cache() {
    let m = machine();
    let mut disk = open(&m);
    disk.flush().unwrap();
    assert_eq!(m.flushes(), 1);
    assert_eq!(m.commands().last().unwrap().command, FLUSH_CACHE_EXT);

    let mut cfg = AhciConfig::one_disk(512);
    if let Attached::Disk(d) = &mut cfg.ports[0] {
        d.flush_ext = false;
    }
    let m = AhciMachine::new(cfg);
    let mut disk = open(&m);
    disk.flush().unwrap();
    assert_eq!(m.flushes(), 1);
    assert_eq!(m.commands().last().unwrap().command, FLUSH_CACHE);
    m.assert_clean();
}

// ----- failures -----

#[test]
fn device_error_reports_the_failing_command_and_recovers() {
    let m = machine();
    let mut disk = open(&m);
    let chunk = disk.max_transfer();
    // Command 0 was IDENTIFY; 1 and 2 are the first two chunks.
    m.knobs.fail_command.set(Some((2, STATUS_ERR, ERROR_UNC)));
    let err = disk.write(4096, BUF, 3 * chunk).unwrap_err();
    let want = AhciError::Device {
        op: Operation::Write,
        offset: 4096 + chunk,
        status: STATUS_ERR,
        error: ERROR_UNC,
    };
    assert_eq!(err, want);
    assert_eq!(
        err.to_string(),
        format!(
            "write at byte {:#x} failed: ATA status 0x51, error 0x40",
            4096 + chunk
        )
    );
    // The third chunk was not sent.
    assert_eq!(m.transfers().len(), 2);
    // The port recovered (ST cleared and set again): the disk still works.
    roundtrip(&m, &mut disk, 0, 4096, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn errors_are_caught_when_the_hba_clears_pxci_on_error() {
    // QEMU 7.2's HBA completes a failed command like a good one (PxCI
    // cleared), with TFES and the ATA error in the task file.
    for completion in [Completion::AtIssue, Completion::AfterPolls(3)] {
        let m = machine();
        let mut disk = open(&m);
        m.knobs.clear_ci_on_error.set(true);
        m.knobs.completion.set(completion);
        m.knobs.fail_command.set(Some((2, STATUS_ERR, ERROR_UNC)));
        let chunk = disk.max_transfer();
        let err = disk.write(0, BUF, 3 * chunk).unwrap_err();
        assert_eq!(
            err,
            AhciError::Device {
                op: Operation::Write,
                offset: chunk,
                status: STATUS_ERR,
                error: ERROR_UNC
            }
        );
        roundtrip(&m, &mut disk, 0, 4096, BUF, BUF2);
        m.assert_clean();
    }
}

#[test]
fn errors_of_started_writes_come_from_wait() {
    let m = machine();
    let mut disk = open(&m);
    m.knobs.fail_command.set(Some((1, STATUS_ERR, ERROR_IDNF)));
    disk.start_write(8192, BUF, 4096).unwrap();
    assert_eq!(
        disk.wait(),
        Err(AhciError::Device {
            op: Operation::Write,
            offset: 8192,
            status: STATUS_ERR,
            error: ERROR_IDNF
        })
    );
    disk.flush().unwrap();
    m.assert_clean();
}

#[test]
fn recovery_uses_command_list_override_when_the_hba_has_it() {
    let mut cfg = AhciConfig::one_disk(512);
    cfg.sclo = true;
    let m = AhciMachine::new(cfg);
    let mut disk = open(&m);
    // A failure that leaves the device busy.
    m.knobs
        .fail_command
        .set(Some((1, STATUS_ERR | 0x80, ERROR_ABORT)));
    assert!(matches!(
        disk.write(0, BUF, 4096),
        Err(AhciError::Device { .. })
    ));
    roundtrip(&m, &mut disk, 0, 4096, BUF, BUF2);
    assert!(!m
        .events()
        .iter()
        .any(|e| matches!(e, AhciEvent::Comreset(_))));
    m.assert_clean();
}

#[test]
fn recovery_without_override_uses_comreset() {
    let m = machine();
    let mut disk = open(&m);
    m.knobs
        .fail_command
        .set(Some((1, STATUS_ERR | 0x80, ERROR_ABORT)));
    assert!(matches!(
        disk.write(0, BUF, 4096),
        Err(AhciError::Device { .. })
    ));
    assert!(m.events().contains(&AhciEvent::Comreset(0)));
    roundtrip(&m, &mut disk, 0, 4096, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn host_bus_errors_are_reported() {
    let m = machine();
    let mut disk = open(&m);
    m.knobs.host_error_command.set(Some(1));
    let err = disk.read(12288, BUF, 4096).unwrap_err();
    assert_eq!(
        err,
        AhciError::Host {
            op: Operation::Read,
            offset: 12288,
            interrupt_status: IS_HBFS
        }
    );
    roundtrip(&m, &mut disk, 0, 4096, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn timeout_stops_the_port_and_the_disk_is_unusable() {
    let m = machine();
    let mut disk = open(&m);
    m.knobs.completion.set(Completion::Never);
    m.set_clock_step_us(1000);
    disk.start_write(4096 * 5, BUF, 4096).unwrap();
    let start = m.now();
    assert_eq!(
        disk.wait(),
        Err(AhciError::Timeout {
            op: Operation::Write,
            offset: 4096 * 5
        })
    );
    let waited = m.now() - start;
    assert!((30_000_000..31_000_000).contains(&waited), "{waited} µs");
    assert_eq!(m.port_cmd(0) & 0xc011, 0, "port stopped");
    assert!(!m.outstanding(0));
    assert!(
        m.bus_master(),
        "the port stopped: the HBA may keep mastering"
    );
    assert_eq!(disk.write(0, BUF, 4096), Err(AhciError::Unusable));
    assert_eq!(disk.flush(), Err(AhciError::Unusable));
    m.assert_clean();
}

#[test]
fn flush_timeout() {
    let m = machine();
    let mut disk = open(&m);
    m.knobs.completion.set(Completion::Never);
    m.set_clock_step_us(1000);
    assert_eq!(
        disk.flush(),
        Err(AhciError::Timeout {
            op: Operation::Flush,
            offset: 0
        })
    );
    m.assert_clean();
}

#[test]
fn timeout_with_a_port_that_will_not_stop_cuts_bus_mastering() {
    let m = machine();
    let mut disk = open(&m);
    m.knobs.completion.set(Completion::Never);
    m.knobs.stop_stuck.set(true);
    m.set_clock_step_us(1000);
    assert!(matches!(
        disk.write(0, BUF, 4096),
        Err(AhciError::Timeout { .. })
    ));
    assert!(!m.bus_master());
    m.assert_clean();
}

#[test]
fn dropping_the_disk_stops_its_port() {
    let m = machine();
    let mut disk = open(&m);
    m.knobs.completion.set(Completion::AfterPolls(2));
    disk.start_write(0, BUF, 4096).unwrap();
    drop(disk);
    assert_eq!(m.port_cmd(0) & 0xc011, 0);
    assert_eq!(m.transfers().len(), 1, "the outstanding write was finished");
    assert!(m.bus_master());
    m.assert_clean();
}

#[test]
fn errors_display_their_details() {
    let cases = [
        (
            AhciError::Timeout {
                op: Operation::Write,
                offset: 0x1000,
            },
            "write at byte 0x1000 timed out; port stopped",
        ),
        (
            AhciError::Host {
                op: Operation::Flush,
                offset: 0,
                interrupt_status: 1 << 29,
            },
            "flush at byte 0x0 failed in the HBA (PxIS 0x20000000)",
        ),
        (
            AhciError::Identify {
                port: 2,
                error: IdentifyError::NoLba48,
            },
            "port 2: disk lacks 48-bit addressing",
        ),
    ];
    for (e, want) in cases {
        assert_eq!(e.to_string(), want);
    }
}
