//! The virtio-blk driver, unchanged, against a fake PCI virtio-blk device.

mod fake_machine;
mod support;

use fake_machine::*;
use minicap_drivers::virtio::{
    Operation, VirtioBlk, VirtioBlkError, MAX_IN_FLIGHT, MAX_REQUEST_BYTES,
};
use minicap_drivers::BlockDevice;
use support::*;

/// The two interfaces; the transitional device is covered where it matters.
const MODES: [Mode; 2] = [Mode::Modern, Mode::Legacy];

type Blk<'m> = VirtioBlk<'m, FakeMachine>;

fn open(m: &FakeMachine) -> Blk<'_> {
    expect_up("init", m, VirtioBlk::new(m, VIRTIO_FN))
}

fn open_err(m: &FakeMachine) -> VirtioBlkError {
    expect_refused(VirtioBlk::new(m, VIRTIO_FN))
}

fn machine(mode: Mode) -> FakeMachine {
    FakeMachine::new(FakeConfig::for_mode(mode))
}

/// The write-then-read-back round trip (`check_roundtrip`) on the
/// virtio-blk disk.
#[track_caller]
fn roundtrip(m: &FakeMachine, dev: &mut Blk<'_>, offset: u64, len: u64, src: u64, dst: u64) {
    check_roundtrip(m, m, dev, offset, len, src, dst);
}

/// Every request the device saw covers consecutive sectors from `offset`,
/// with consecutive memory from `phys`, and within the driver's limits.
fn check_requests(
    requests: &[Completed],
    kind: u32,
    offset: u64,
    phys: u64,
    len: u64,
    max_transfer: u64,
) {
    let mut pos = 0;
    for r in requests {
        assert_eq!(r.kind, kind);
        assert_eq!(r.status, BLK_OK);
        assert_eq!(r.sector * 512, offset + pos, "request sector");
        assert!(
            r.bytes() <= max_transfer,
            "request larger than max_transfer"
        );
        let mut addr = phys + pos;
        for &(a, l) in &r.segments {
            assert_eq!(a, addr, "segment address");
            addr += u64::from(l);
        }
        pos += r.bytes();
    }
    assert_eq!(pos, len, "bytes moved");
}

// ----- initialisation -----

#[test]
fn init_reads_capacity_and_negotiates() {
    for mode in [Mode::Modern, Mode::Transitional, Mode::Legacy] {
        let m = machine(mode);
        let dev = open(&m);
        assert_eq!(dev.capacity(), 64 * MIB, "{mode:?}");
        assert_eq!(dev.sector_size(), 512);
        assert_eq!(dev.is_modern(), mode != Mode::Legacy, "{mode:?}");
        assert_eq!(dev.pci_address(), VIRTIO_FN);
        // Only what the driver implements; never EVENT_IDX.
        let mut expected = F_SIZE_MAX | F_SEG_MAX | F_FLUSH | F_BLK_SIZE | F_INDIRECT_DESC;
        if mode != Mode::Legacy {
            expected |= F_VERSION_1;
        }
        assert_eq!(m.driver_features(), expected, "{mode:?}");
        let mut status = S_ACKNOWLEDGE | S_DRIVER | S_DRIVER_OK;
        if mode != Mode::Legacy {
            status |= S_FEATURES_OK;
        }
        assert_eq!(m.status(), status, "{mode:?}");
        assert!(m.queue_enabled());
        assert!(m.resets() >= 1, "the device is reset first");
        // The first thing done is a command write that turns bus mastering
        // off; it comes back on only after the reset.
        let events = m.events();
        assert!(
            matches!(events.first(), Some(Event::Command(c)) if c & CMD_BUS_MASTER == 0),
            "{mode:?}: {:?}",
            events.first()
        );
        let first_status = events.iter().find_map(|e| match e {
            Event::Status(s) => Some(*s),
            _ => None,
        });
        assert_eq!(first_status, Some(0), "first status write is a reset");
        let reset_at = events.iter().position(|e| *e == Event::Status(0));
        let master_at = events
            .iter()
            .position(|e| matches!(e, Event::Command(c) if c & CMD_BUS_MASTER != 0));
        assert!(
            reset_at.is_some() && master_at > reset_at,
            "{mode:?}: bus mastering enabled before the reset"
        );
        m.assert_clean();
    }
}

#[test]
fn init_takes_the_function_over() {
    for mode in [Mode::Modern, Mode::Transitional, Mode::Legacy] {
        let m = machine(mode);
        assert!(m.msix_enabled() && m.msi_enabled());
        let _dev = open(&m);
        let cmd = m.command();
        assert_ne!(cmd & CMD_BUS_MASTER, 0, "bus mastering on");
        assert_ne!(cmd & CMD_INTX_DISABLE, 0, "INTx off");
        assert_ne!(cmd & CMD_MEMORY, 0, "memory decoding on");
        if mode == Mode::Legacy {
            assert_ne!(cmd & CMD_IO, 0, "I/O decoding on");
        }
        assert!(!m.msix_enabled(), "MSI-X off");
        assert_eq!(m.msix_control(), 1, "MSI-X table size kept");
        assert!(!m.msi_enabled(), "MSI off");
        m.assert_clean();
    }
}

#[test]
fn modern_init_maps_registers_and_uses_no_ports() {
    let m = machine(Mode::Transitional);
    let _dev = open(&m);
    assert_eq!(
        m.port_accesses(),
        0,
        "a transitional device is driven via MMIO"
    );
    let mapped = m.mapped();
    for region in [COMMON_OFF, NOTIFY_OFF, DEVICE_OFF] {
        assert!(
            mapped.iter().any(|&(a, _)| a == MMIO_BASE + region),
            "{region:#x} mapped: {mapped:x?}"
        );
    }
    m.assert_clean();
}

#[test]
fn legacy_init_uses_no_mmio() {
    let m = machine(Mode::Legacy);
    let mut dev = open(&m);
    roundtrip(&m, &mut dev, 0, 4096, BUF, BUF2);
    assert_eq!(m.mmio_accesses(), 0);
    assert!(m.port_accesses() > 0);
    m.assert_clean();
}

#[test]
fn init_resets_a_device_left_running() {
    for mode in MODES {
        let cfg = FakeConfig {
            initial_status: S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
            initial_command: CMD_MEMORY | CMD_IO | CMD_BUS_MASTER,
            ..FakeConfig::for_mode(mode)
        };
        let m = FakeMachine::new(cfg);
        assert_eq!(m.queue_rings().0, STALE_RINGS);
        let mut dev = open(&m);
        let events = m.events();
        let reset = events.iter().position(|e| *e == Event::Reset);
        let first_notify = events.iter().position(|e| *e == Event::Notify);
        assert!(reset.is_some(), "{mode:?}: device reset");
        assert_eq!(first_notify, None, "{mode:?}: no request before init");
        let (desc, _, _) = m.queue_rings();
        assert_ne!(desc, STALE_RINGS, "{mode:?}: fresh rings");
        roundtrip(&m, &mut dev, 512, 512, BUF, BUF2);
        m.assert_clean();
    }
}

#[test]
fn capacity_above_32_bits_of_sectors() {
    for mode in MODES {
        let sectors = 0x2_0000_0001;
        let m = FakeMachine::new(FakeConfig {
            capacity_sectors: sectors,
            ..FakeConfig::for_mode(mode)
        });
        let mut dev = open(&m);
        assert_eq!(dev.capacity(), sectors * 512, "{mode:?}");
        roundtrip(&m, &mut dev, (sectors - 8) * 512, 8 * 512, BUF + 0x40, BUF2);
        roundtrip(&m, &mut dev, 0x1_0000_0000 * 512, 4096, BUF, BUF2);
        m.assert_clean();
    }
}

#[test]
fn capacity_read_retries_across_config_changes() {
    let m = machine(Mode::Modern);
    // Capacity flips between 64 MiB and 0x1_0000_0800 sectors three times
    // while the driver reads it: a torn read would mix the halves.
    m.knobs.config_flaps.set(3);
    m.knobs.flap_capacity.set(0x1_0000_0800);
    let dev = open(&m);
    assert_eq!(dev.capacity(), 0x1_0000_0800 * 512);
    m.assert_clean();
}

#[test]
fn describe_names_the_device() {
    for (mode, kind) in [(Mode::Modern, "modern"), (Mode::Legacy, "legacy")] {
        let m = machine(mode);
        let dev = open(&m);
        let mut s = String::new();
        dev.describe(&mut s).unwrap();
        assert_eq!(s, format!("virtio-blk 00:03.0 ({kind}), 64 MiB"));
    }
}

// ----- data path -----

#[test]
fn write_then_read_back() {
    for mode in [Mode::Modern, Mode::Transitional, Mode::Legacy] {
        let m = machine(mode);
        let mut dev = open(&m);
        let cap = dev.capacity();
        let cases = [
            (0, 512, BUF, BUF2),
            (7 * 512, 4096, BUF + 0x200, BUF2 + 0x200),
            (MIB + 512, 3 * 4096 + 512, BUF + 0xe00, BUF2 + 0x10),
            (5 * MIB, 128 << 10, BUF + 0x801, BUF2 + 0xfff),
            (9 * MIB - 512, 300 * 512, BUF + 0x3_0000, BUF2 + 0x123),
            (cap - 1024, 1024, BUF + 0x40, BUF2 + 0x40),
        ];
        for (offset, len, src, dst) in cases {
            roundtrip(&m, &mut dev, offset, len, src, dst);
        }
        m.assert_clean();
    }
}

#[test]
fn large_transfers_split_into_device_sized_requests() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        // size_max 128 KiB × 126 segments, capped per request.
        assert_eq!(dev.max_transfer(), MAX_REQUEST_BYTES, "{mode:?}");
        let len = 2 * MAX_REQUEST_BYTES + MAX_REQUEST_BYTES / 4;
        let offset = 3 * 512;
        let src = BUF + 0x300;
        let data = pattern(9, len_usize(len));
        m.mem_write(src, &data);
        dev.write(offset, src, len).unwrap();
        let writes = m.requests();
        assert_eq!(
            writes.len(),
            3,
            "{mode:?}: two whole requests and a quarter"
        );
        check_requests(&writes, T_OUT, offset, src, len, dev.max_transfer());
        assert_eq!(
            writes[0].segments.len() as u64,
            MAX_REQUEST_BYTES / (128 << 10),
            "multi-segment request"
        );
        assert!(writes[0].segments.iter().all(|&(_, l)| l == 128 << 10));
        assert_same(&m.disk_read(offset, len_usize(len)), &data, "disk");

        let dst = BUF2 + 0x10;
        dev.read(offset, dst, len).unwrap();
        let reads = &m.requests()[3..];
        check_requests(reads, T_IN, offset, dst, len, dev.max_transfer());
        assert_same(&m.mem_read(dst, len_usize(len)), &data, "read back");
        m.assert_clean();
    }
}

#[test]
fn device_segment_limits_are_honoured() {
    // size_max not a multiple of the page size, few segments.
    for mode in MODES {
        let m = FakeMachine::new(FakeConfig {
            size_max: 100_000,
            seg_max: 4,
            ..FakeConfig::for_mode(mode)
        });
        let mut dev = open(&m);
        assert_eq!(dev.max_transfer(), 4 * 98_304, "{mode:?}");
        let len = MIB + 512;
        roundtrip(&m, &mut dev, 4096, len, BUF + 0x200, BUF2);
        let writes: Vec<_> = m
            .requests()
            .into_iter()
            .filter(|r| r.kind == T_OUT)
            .collect();
        assert_eq!(writes.len(), 3, "{mode:?}");
        check_requests(&writes, T_OUT, 4096, BUF + 0x200, len, dev.max_transfer());
        m.assert_clean();
    }
}

#[test]
fn small_size_max_is_honoured() {
    // A size_max below one page must still bound every segment.
    for mode in MODES {
        let m = FakeMachine::new(FakeConfig {
            size_max: 2048,
            ..FakeConfig::for_mode(mode)
        });
        let mut dev = open(&m);
        roundtrip(&m, &mut dev, 0, 64 << 10, BUF, BUF2);
        assert!(m
            .requests()
            .iter()
            .all(|r| r.segments.iter().all(|&(_, l)| l <= 2048)));
        m.assert_clean();
    }
}

#[test]
fn without_size_and_segment_limits() {
    for mode in MODES {
        let mut cfg = FakeConfig::for_mode(mode);
        cfg.features &= !(F_SIZE_MAX | F_SEG_MAX);
        let m = FakeMachine::new(cfg);
        let mut dev = open(&m);
        // 1 MiB segments; the request cap still applies.
        assert_eq!(dev.max_transfer(), MAX_REQUEST_BYTES);
        roundtrip(
            &m,
            &mut dev,
            0,
            3 * MAX_REQUEST_BYTES / 2,
            BUF + 0x600,
            BUF2,
        );
        let first = &m.requests()[0];
        assert_eq!(first.segments.len() as u64, MAX_REQUEST_BYTES / MIB);
        assert!(first.segments.iter().all(|&(_, l)| u64::from(l) == MIB));
        m.assert_clean();
    }
}

#[test]
fn queue_size_follows_the_device() {
    // Modern: the driver may pick a smaller size (at most 256).
    let m = FakeMachine::new(FakeConfig {
        queue_max: 1024,
        ..FakeConfig::modern()
    });
    let _dev = open(&m);
    assert_eq!(m.queue_size(), 256);
    m.assert_clean();

    // Small queues limit the segments per request (queue size - 2).
    for mode in MODES {
        let m = FakeMachine::new(FakeConfig {
            queue_max: 4,
            ..FakeConfig::for_mode(mode)
        });
        let mut dev = open(&m);
        assert_eq!(m.queue_size(), 4);
        assert_eq!(dev.max_transfer(), 2 * (128 << 10), "{mode:?}");
        roundtrip(&m, &mut dev, 512, 600 << 10, BUF + 0x200, BUF2);
        assert!(m.requests().iter().all(|r| r.segments.len() <= 2));
        m.assert_clean();
    }

    // Legacy: the size is fixed by the device, and so is the ring layout.
    let m = FakeMachine::new(FakeConfig {
        queue_max: 1024,
        ..FakeConfig::legacy()
    });
    let mut dev = open(&m);
    let (desc, avail, used) = m.queue_rings();
    assert_eq!(avail, desc + 16 * 1024);
    assert_eq!(used, desc + 5 * 4096);
    roundtrip(&m, &mut dev, 0, 8192, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn tiny_queues_are_refused() {
    for mode in MODES {
        for size in [1, 2] {
            let m = FakeMachine::new(FakeConfig {
                queue_max: size,
                ..FakeConfig::for_mode(mode)
            });
            assert_eq!(open_err(&m), VirtioBlkError::NoQueue, "{mode:?} {size}");
            assert_eq!(m.status(), 0);
            m.assert_clean();
        }
    }
}

#[test]
fn ring_indices_wrap() {
    let m = FakeMachine::new(FakeConfig {
        queue_max: 16,
        ..FakeConfig::modern()
    });
    let mut dev = open(&m);
    let n: u64 = 65_536 + 100;
    for i in 0..n {
        let offset = (i % 1024) * 512;
        m.mem_write(BUF, &i.to_le_bytes());
        dev.write(offset, BUF, 512).unwrap();
    }
    assert_eq!(m.request_count(), usize::try_from(n).unwrap());
    let last = n - 1;
    assert_eq!(m.disk_read((last % 1024) * 512, 8), last.to_le_bytes());
    roundtrip(&m, &mut dev, 0, 4096, BUF, BUF2);
    m.assert_clean();
}

// ----- flush -----

#[test]
fn flush_sends_flush_when_offered() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        dev.flush().unwrap();
        let requests = m.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].kind, T_FLUSH);
        assert_eq!(requests[0].sector, 0);
        assert!(requests[0].segments.is_empty());
        assert_eq!(m.flushes(), 1);
        m.assert_clean();
    }
}

#[test]
fn flush_is_a_no_op_without_the_feature() {
    for mode in MODES {
        let mut cfg = FakeConfig::for_mode(mode);
        cfg.features &= !F_FLUSH;
        let m = FakeMachine::new(cfg);
        let mut dev = open(&m);
        let notifies = m.notifies();
        dev.flush().unwrap();
        assert_eq!(m.notifies(), notifies);
        assert_eq!(m.request_count(), 0);
        m.assert_clean();
    }
}

// ----- bad requests -----

#[test]
fn bad_requests_do_not_touch_the_device() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        let cap = dev.capacity();
        let notifies = m.notifies();
        let bad = [
            (1, 512),
            (0, 511),
            (512, 513),
            (0, 0),
            (cap, 512),
            (cap - 512, 1024),
            (0, cap + 512),
            (u64::MAX - 511, 512),
            (512, u64::MAX - 511),
        ];
        for (offset, len) in bad {
            let want = VirtioBlkError::BadRequest { offset, len };
            assert_eq!(dev.write(offset, BUF, len), Err(want), "{mode:?}");
            assert_eq!(dev.read(offset, BUF, len), Err(want), "{mode:?}");
        }
        assert_eq!(m.notifies(), notifies);
        assert_eq!(m.request_count(), 0);
        // And the device is still fine.
        roundtrip(&m, &mut dev, cap - 512, 512, BUF, BUF2);
        m.assert_clean();
    }
}

// ----- failures -----

#[test]
fn timeout_resets_the_device() {
    for mode in MODES {
        for write in [true, false] {
            let m = machine(mode);
            let mut dev = open(&m);
            m.disk_fill(0, MIB, 0x11);
            m.mem_write(BUF, &pattern(1, 4096));
            m.knobs.never_complete.set(true);
            let t0 = m.now();
            let resets = m.resets();
            let result = if write {
                dev.write(8192, BUF, 4096)
            } else {
                dev.read(8192, BUF, 4096)
            };
            let op = if write {
                Operation::Write
            } else {
                Operation::Read
            };
            assert_eq!(
                result,
                Err(VirtioBlkError::Timeout { op, offset: 8192 }),
                "{mode:?}"
            );
            assert!(m.now() - t0 >= 30_000_000, "waited the request timeout");
            assert_eq!(m.status(), 0, "{mode:?}: device reset after the timeout");
            assert_eq!(m.resets(), resets + 1);
            assert!(!m.queue_enabled());
            assert_filled(&m.disk_read(0, 1 << 20), 0x11, "disk untouched");
            m.assert_clean();
        }
    }
}

#[test]
fn timeout_reports_the_failing_chunk() {
    let m = machine(Mode::Modern);
    let mut dev = open(&m);
    m.knobs.stall_after.set(Some(1));
    assert_eq!(
        dev.write(512, BUF, 2 * MAX_REQUEST_BYTES + MAX_REQUEST_BYTES / 4),
        Err(VirtioBlkError::Timeout {
            op: Operation::Write,
            offset: 512 + MAX_REQUEST_BYTES
        })
    );
    assert_eq!(m.request_count(), 1);
    assert_eq!(m.status(), 0);
    m.assert_clean();
}

#[test]
fn flush_timeout() {
    let m = machine(Mode::Legacy);
    let mut dev = open(&m);
    m.knobs.never_complete.set(true);
    let t0 = m.now();
    assert_eq!(
        dev.flush(),
        Err(VirtioBlkError::Timeout {
            op: Operation::Flush,
            offset: 0
        })
    );
    assert!(m.now() - t0 >= 60_000_000);
    assert_eq!(m.status(), 0);
    m.assert_clean();
}

#[test]
fn timeout_with_a_stuck_reset_stops_bus_mastering() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        m.knobs.never_complete.set(true);
        m.knobs.reset_stuck.set(true);
        assert!(matches!(
            dev.read(0, BUF, 512),
            Err(VirtioBlkError::Timeout { .. })
        ));
        assert_ne!(m.status(), 0, "the fake device ignored the reset");
        assert_eq!(
            m.command() & CMD_BUS_MASTER,
            0,
            "{mode:?}: a device that may still complete the request must not master the bus"
        );
        m.assert_clean();
    }
}

#[test]
fn io_errors_carry_the_status() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        m.disk_fill(0, MIB, 0x22);
        m.knobs.fail_status.set(Some(BLK_IOERR));
        assert_eq!(
            dev.write(4096, BUF, 4096),
            Err(VirtioBlkError::Io {
                op: Operation::Write,
                offset: 4096,
                status: BLK_IOERR
            }),
            "{mode:?}"
        );
        assert_filled(&m.disk_read(0, 1 << 20), 0x22, "disk untouched");
        m.knobs.fail_status.set(Some(BLK_UNSUPP));
        assert_eq!(
            dev.read(512, BUF, 512),
            Err(VirtioBlkError::Io {
                op: Operation::Read,
                offset: 512,
                status: BLK_UNSUPP
            })
        );
        assert_eq!(
            dev.flush(),
            Err(VirtioBlkError::Io {
                op: Operation::Flush,
                offset: 0,
                status: BLK_UNSUPP
            })
        );
        // An error status does not break the device.
        m.knobs.fail_status.set(None);
        roundtrip(&m, &mut dev, 4096, 4096, BUF, BUF2);
        m.assert_clean();
    }
}

#[test]
fn io_error_in_a_later_chunk() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        m.knobs.fail_status.set(Some(BLK_IOERR));
        m.knobs.fail_after.set(2);
        assert_eq!(
            dev.read(0, BUF, 2 * MAX_REQUEST_BYTES + MAX_REQUEST_BYTES / 4),
            Err(VirtioBlkError::Io {
                op: Operation::Read,
                offset: 2 * MAX_REQUEST_BYTES,
                status: BLK_IOERR
            })
        );
        assert_eq!(m.request_count(), 3);
        m.assert_clean();
    }
}

#[test]
fn missing_status_byte_is_an_error() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        m.knobs.skip_status_write.set(true);
        assert_eq!(
            dev.write(0, BUF, 512),
            Err(VirtioBlkError::Io {
                op: Operation::Write,
                offset: 0,
                status: 0xff
            })
        );
        m.assert_clean();
    }
}

#[test]
fn needs_reset_is_reported() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        m.knobs.needs_reset_on_complete.set(true);
        let Err(VirtioBlkError::DeviceBroken(status)) = dev.write(0, BUF, 512) else {
            panic!("{mode:?}: expected DeviceBroken");
        };
        assert_ne!(status & S_NEEDS_RESET, 0);
        m.assert_clean();
    }
}

#[test]
fn reset_timeout_stops_bus_mastering() {
    for mode in MODES {
        let m = FakeMachine::new(FakeConfig {
            initial_status: S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
            initial_command: CMD_MEMORY | CMD_IO | CMD_BUS_MASTER,
            ..FakeConfig::for_mode(mode)
        });
        m.knobs.reset_stuck.set(true);
        let t0 = m.now();
        assert_eq!(open_err(&m), VirtioBlkError::ResetTimeout, "{mode:?}");
        assert!(m.now() - t0 >= 1_000_000, "waited the reset timeout");
        assert_eq!(m.command() & CMD_BUS_MASTER, 0, "bus mastering off");
        assert_eq!(m.notifies(), 0);
        m.assert_clean();
    }
}

/// After a failed init the device is reset and may not master the bus.
#[track_caller]
fn assert_given_up(m: &FakeMachine) {
    assert_eq!(m.status(), 0, "device left reset");
    assert_eq!(m.command() & CMD_BUS_MASTER, 0, "bus mastering off");
    assert_eq!(m.notifies(), 0);
}

#[test]
fn read_only_devices_are_refused() {
    for mode in MODES {
        let mut cfg = FakeConfig::for_mode(mode);
        cfg.features |= F_RO;
        let m = FakeMachine::new(cfg);
        assert_eq!(open_err(&m), VirtioBlkError::ReadOnly, "{mode:?}");
        assert!(m
            .events()
            .iter()
            .any(|e| matches!(e, Event::Status(s) if s & S_FAILED != 0)));
        assert_given_up(&m);
        m.assert_clean();
    }
}

#[test]
fn feature_negotiation_failures() {
    for mode in [Mode::Modern, Mode::Transitional] {
        // The device insists on a feature the driver does not implement
        // (VIRTIO_F_RING_PACKED).
        let packed = 1u64 << 34;
        let mut cfg = FakeConfig::for_mode(mode);
        cfg.features |= packed;
        cfg.required_features = packed;
        let m = FakeMachine::new(cfg);
        assert_eq!(open_err(&m), VirtioBlkError::FeaturesRejected, "{mode:?}");
        assert_eq!(m.features_rejected(), 1);
        assert_eq!(m.driver_features() & packed, 0);
        assert_given_up(&m);
        m.assert_clean();

        // A modern interface without VIRTIO_F_VERSION_1.
        let mut cfg = FakeConfig::for_mode(mode);
        cfg.features &= !F_VERSION_1;
        let m = FakeMachine::new(cfg);
        assert_eq!(open_err(&m), VirtioBlkError::FeaturesRejected, "{mode:?}");
        assert_given_up(&m);
        m.assert_clean();
    }
}

#[test]
fn missing_queue() {
    for mode in MODES {
        let m = FakeMachine::new(FakeConfig {
            queue_max: 0,
            ..FakeConfig::for_mode(mode)
        });
        assert_eq!(open_err(&m), VirtioBlkError::NoQueue, "{mode:?}");
        assert_given_up(&m);
        m.assert_clean();
    }
}

#[test]
fn out_of_dma_memory() {
    for mode in MODES {
        for limit in [0, 8192] {
            let m = FakeMachine::new(FakeConfig {
                dma_limit: limit,
                ..FakeConfig::for_mode(mode)
            });
            assert_eq!(open_err(&m), VirtioBlkError::NoMemory, "{mode:?} {limit}");
            assert_given_up(&m);
            m.assert_clean();
        }
    }
}

#[test]
fn legacy_queue_must_be_below_16_tib() {
    let m = FakeMachine::new(FakeConfig {
        dma_base: 1 << 44,
        ..FakeConfig::legacy()
    });
    assert_eq!(open_err(&m), VirtioBlkError::QueueNotAddressable);
    assert_given_up(&m);
    m.assert_clean();

    // The modern interface takes 64-bit ring addresses.
    let m = FakeMachine::new(FakeConfig {
        dma_base: 1 << 44,
        ..FakeConfig::modern()
    });
    let mut dev = open(&m);
    assert_eq!(m.queue_rings().0, 1 << 44);
    roundtrip(&m, &mut dev, 0, 4096, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn unmappable_registers() {
    let m = FakeMachine::new(FakeConfig {
        map_mmio_ok: false,
        ..FakeConfig::modern()
    });
    assert_eq!(
        open_err(&m),
        VirtioBlkError::Unmappable(MMIO_BASE + COMMON_OFF)
    );
    assert_eq!(m.command() & CMD_BUS_MASTER, 0, "bus mastering off");
    assert_eq!(m.mmio_accesses(), 0);
    m.assert_clean();
}

#[test]
fn a_doorbell_outside_the_notification_area_is_refused() {
    // Queue 0's doorbell is at 5 × 4 = 20: an area of 20 bytes ends there.
    let m = FakeMachine::new(FakeConfig {
        notify_len: 20,
        ..FakeConfig::modern()
    });
    assert_eq!(open_err(&m), VirtioBlkError::NoDoorbell);
    assert!(!m.queue_enabled(), "the queue was not enabled");
    assert_eq!(m.notifies(), 0);
    assert_eq!(m.command() & CMD_BUS_MASTER, 0, "bus mastering off");
    m.assert_clean();
}

#[test]
fn register_windows_are_the_capabilities_and_nothing_else() {
    let m = machine(Mode::Modern);
    let mut dev = open(&m);
    roundtrip(&m, &mut dev, 0, 4096, BUF, BUF2);
    let mut mapped = m.mapped();
    mapped.sort_unstable();
    assert_eq!(
        mapped,
        vec![
            (MMIO_BASE + COMMON_OFF, u64::from(COMMON_LEN)),
            (MMIO_BASE + DEVICE_OFF, u64::from(DEVICE_LEN)),
            (MMIO_BASE + NOTIFY_OFF, u64::from(NOTIFY_LEN)),
        ],
        "the ISR capability is not used"
    );
    m.assert_clean();
}

#[test]
fn no_registers() {
    let m = FakeMachine::new(FakeConfig {
        io_bar: false,
        ..FakeConfig::legacy()
    });
    assert_eq!(open_err(&m), VirtioBlkError::NoRegisters);
    assert_eq!(m.command() & CMD_BUS_MASTER, 0, "bus mastering off");
    m.assert_clean();
}

#[test]
fn errors_display() {
    let errors = [
        VirtioBlkError::NoRegisters,
        VirtioBlkError::Unmappable(0x1000),
        VirtioBlkError::ResetTimeout,
        VirtioBlkError::FeaturesRejected,
        VirtioBlkError::ReadOnly,
        VirtioBlkError::NoQueue,
        VirtioBlkError::NoMemory,
        VirtioBlkError::QueueNotAddressable,
        VirtioBlkError::NoDoorbell,
        VirtioBlkError::Timeout {
            op: Operation::Write,
            offset: 0x200,
        },
        VirtioBlkError::Io {
            op: Operation::Read,
            offset: 0x400,
            status: 1,
        },
        VirtioBlkError::DeviceBroken(0x40),
        VirtioBlkError::BadRequest {
            offset: 1,
            len: 512,
        },
    ];
    for e in errors {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        VirtioBlkError::Io {
            op: Operation::Read,
            offset: 0x400,
            status: 1
        }
        .to_string(),
        "read at byte 0x400 failed with virtio status 1"
    );
}

#[test]
fn start_write_then_wait() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        let data = pattern(7, 3 * 4096);
        m.mem_write(BUF + 0x100, &data);
        dev.start_write(MIB, BUF + 0x100, 3 * 4096).unwrap();
        dev.wait().unwrap();
        assert_same(&m.disk_read(MIB, data.len()), &data, "started write landed");
        // Waiting with nothing outstanding is fine.
        dev.wait().unwrap();
        // Two in flight; flush finishes both.
        dev.start_write(0, BUF + 0x100, 4096).unwrap();
        dev.start_write(4096, BUF + 0x100, 4096).unwrap();
        dev.flush().unwrap();
        assert_same(
            &m.disk_read(4096, 4096),
            &data[..4096],
            "second write landed",
        );
        m.assert_clean();
    }
}

#[test]
fn start_write_reports_errors_at_wait() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        m.knobs.fail_status.set(Some(BLK_IOERR));
        dev.start_write(4096, BUF, 4096).unwrap();
        assert_eq!(
            dev.wait(),
            Err(VirtioBlkError::Io {
                op: Operation::Write,
                offset: 4096,
                status: BLK_IOERR
            }),
            "{mode:?}"
        );
        m.assert_clean();
    }
}

#[test]
fn start_write_refuses_what_one_request_cannot_carry() {
    let m = machine(Mode::Modern);
    let mut dev = open(&m);
    let too_big = dev.max_transfer() + 4096;
    assert_eq!(
        dev.start_write(0, BUF, too_big),
        Err(VirtioBlkError::BadRequest {
            offset: 0,
            len: too_big
        })
    );
    assert_eq!(m.request_count(), 0);
}

#[test]
fn after_a_timeout_the_device_is_unusable() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        m.knobs.never_complete.set(true);
        dev.start_write(0, BUF, 4096).unwrap();
        assert!(matches!(dev.wait(), Err(VirtioBlkError::Timeout { .. })));
        m.knobs.never_complete.set(false);
        let notifies = m.notifies();
        // No request reaches the (reset) device any more.
        assert_eq!(dev.write(0, BUF, 512), Err(VirtioBlkError::Unusable));
        assert_eq!(dev.read(0, BUF, 512), Err(VirtioBlkError::Unusable));
        assert_eq!(m.notifies(), notifies, "{mode:?}: no notification");
        m.assert_clean();
    }
}

#[test]
fn dropping_the_driver_resets_the_device_and_stops_dma() {
    for mode in MODES {
        let m = machine(mode);
        let resets = {
            let mut dev = open(&m);
            dev.write(0, BUF, 4096).unwrap();
            m.resets()
        };
        assert_eq!(m.resets(), resets + 1, "{mode:?}: reset on drop");
        assert_eq!(m.status(), 0);
        assert_eq!(
            m.command() & CMD_BUS_MASTER,
            0,
            "{mode:?}: bus mastering off"
        );
        m.assert_clean();
    }
}

#[test]
fn access_platform_is_accepted_on_modern_devices() {
    // A device behind an IOMMU (QEMU iommu_platform=on) insists on
    // VIRTIO_F_ACCESS_PLATFORM; minicap makes that path an identity map.
    for mode in [Mode::Modern, Mode::Transitional] {
        let mut cfg = FakeConfig::for_mode(mode);
        cfg.features |= F_ACCESS_PLATFORM;
        cfg.required_features = F_ACCESS_PLATFORM;
        let m = FakeMachine::new(cfg);
        let mut dev = open(&m);
        assert_ne!(m.driver_features() & F_ACCESS_PLATFORM, 0, "{mode:?}");
        roundtrip(&m, &mut dev, 0, 4096, BUF, BUF2);
        m.assert_clean();
    }
}

#[test]
fn four_kib_logical_blocks() {
    for mode in MODES {
        let mut cfg = FakeConfig::for_mode(mode);
        cfg.blk_size = 4096;
        let m = FakeMachine::new(cfg);
        let mut dev = open(&m);
        assert_eq!(dev.sector_size(), 4096, "{mode:?}");
        let mut name = String::new();
        dev.describe(&mut name).unwrap();
        assert!(name.contains("4096-byte blocks"), "{name}");
        // Whole blocks work...
        roundtrip(&m, &mut dev, 8192, 3 * 4096, BUF, BUF2);
        // ...anything smaller is refused before it reaches the device.
        let requests = m.request_count();
        for (offset, len) in [(0, 512), (512, 4096), (4096, 4096 + 512)] {
            assert_eq!(
                dev.write(offset, BUF, len),
                Err(VirtioBlkError::BadRequest { offset, len }),
                "{mode:?}"
            );
        }
        assert_eq!(m.request_count(), requests);
        m.assert_clean();
    }
}

#[test]
fn odd_logical_block_sizes_are_refused() {
    for blk_size in [256, 1000, 8192] {
        let mut cfg = FakeConfig::for_mode(Mode::Modern);
        cfg.blk_size = blk_size;
        let m = FakeMachine::new(cfg);
        assert_eq!(open_err(&m), VirtioBlkError::UnsupportedBlockSize(blk_size));
        assert_given_up(&m);
    }
}

// ----- several requests in flight -----

// The tests below keep up to four writes in flight, and expect requests
// of whole MiB.
const _: () = assert!(MAX_IN_FLIGHT >= 4 && MAX_REQUEST_BYTES.is_multiple_of(MIB));

/// A device whose requests carry at most 4 × 64 KiB.
fn small_requests(mode: Mode) -> FakeConfig {
    FakeConfig {
        size_max: 64 << 10,
        seg_max: 4,
        ..FakeConfig::for_mode(mode)
    }
}

/// Start `count` writes of `len` bytes, write `i` from `BUF + i × len` to
/// `offset + i × len`, each with its own data; returns the data.
fn start_writes(
    m: &FakeMachine,
    dev: &mut Blk<'_>,
    offset: u64,
    len: u64,
    count: usize,
) -> Vec<u8> {
    let n = len_usize(len);
    let data = pattern(offset ^ len, n * count);
    m.mem_write(BUF, &data);
    for i in 0..count as u64 {
        dev.start_write(offset + i * len, BUF + i * len, len)
            .unwrap_or_else(|e| panic!("start_write {i}: {e}"));
    }
    data
}

#[test]
fn in_flight_limit_follows_the_queue() {
    // (queue size, indirect offered, requests in flight, data segments)
    let cases = [
        (256, true, MAX_IN_FLIGHT, 126usize),
        (4, true, 4.min(MAX_IN_FLIGHT), 2),
        (256, false, MAX_IN_FLIGHT, 256 / MAX_IN_FLIGHT - 2),
        (
            16,
            false,
            5.min(MAX_IN_FLIGHT),
            16 / 5.min(MAX_IN_FLIGHT) - 2,
        ),
        (4, false, 1, 2),
    ];
    for mode in MODES {
        for (queue_max, indirect, in_flight, segments) in cases {
            let mut cfg = FakeConfig {
                queue_max,
                capacity_sectors: 1 << 22, // 2 GiB
                ..FakeConfig::for_mode(mode)
            };
            if !indirect {
                cfg.features &= !F_INDIRECT_DESC;
            }
            let m = FakeMachine::new(cfg);
            let mut dev = open(&m);
            let what = format!("{mode:?} queue {queue_max} indirect {indirect}");
            assert_eq!(dev.max_in_flight(), in_flight, "{what}");
            assert_eq!(
                dev.max_transfer(),
                (segments as u64 * (128 << 10)).min(MAX_REQUEST_BYTES),
                "{what}"
            );
            assert_eq!(m.driver_features() & F_INDIRECT_DESC != 0, indirect);
            m.knobs.completion.set(Completion::Held);
            // Requests as large as they go (from the same memory).
            let len = dev.max_transfer();
            for i in 0..in_flight as u64 {
                dev.start_write(i * len, BUF, len).unwrap();
            }
            assert_eq!(m.in_flight(), in_flight, "{what}");
            // One more is a caller bug: refused, nothing reaches the device.
            let notifies = m.notifies();
            assert_eq!(
                dev.start_write(0, BUF, 512),
                Err(VirtioBlkError::TooManyInFlight),
                "{what}"
            );
            assert_eq!(m.notifies(), notifies);
            m.complete_held(&(0..in_flight).rev().collect::<Vec<_>>());
            for _ in 0..in_flight {
                dev.wait().unwrap();
            }
            let requests = m.requests();
            // As many segments as the request needs (all it may have, unless
            // the request cap is lower).
            let needed = usize::try_from(len.div_ceil(128 << 10)).unwrap();
            assert!(needed <= segments, "{what}");
            assert!(
                requests.iter().all(|r| r.segments.len() == needed),
                "{what}"
            );
            assert_eq!(
                m.indirect_requests(),
                if indirect {
                    u32::try_from(in_flight).unwrap()
                } else {
                    0
                },
                "{what}"
            );
            m.assert_clean();
        }
    }
}

#[test]
fn writes_in_flight_at_every_depth_completed_in_any_order() {
    for mode in MODES {
        for depth in 1..=MAX_IN_FLIGHT {
            // Oldest first, newest first, and odd ones before even ones.
            let orders: [Vec<usize>; 3] = [
                (0..depth).collect(),
                (0..depth).rev().collect(),
                (0..depth)
                    .filter(|i| i % 2 == 1)
                    .chain((0..depth).filter(|i| i % 2 == 0))
                    .collect(),
            ];
            for order in orders {
                let m = machine(mode);
                let mut dev = open(&m);
                m.knobs.completion.set(Completion::Held);
                let len = 3 * 4096 + 512;
                let offset = 7 * 512;
                let data = start_writes(&m, &mut dev, offset, len, depth);
                assert_eq!(m.in_flight(), depth);
                // Nothing has landed yet.
                assert_filled(
                    &m.disk_read(offset, data.len()),
                    0,
                    "disk before completion",
                );
                m.complete_held(&order);
                for _ in 0..depth {
                    dev.wait().unwrap();
                }
                // With none outstanding, wait has nothing to report.
                dev.wait().unwrap();
                let seqs: Vec<u64> = m.requests().iter().map(|r| r.seq).collect();
                let want: Vec<u64> = order.iter().map(|&i| i as u64).collect();
                assert_eq!(seqs, want, "completion order");
                assert_same(&m.disk_read(offset, data.len()), &data, "disk");
                assert_eq!(m.max_in_flight(), depth);
                // The slots are free again: the same depth once more.
                m.knobs.completion.set(Completion::WhenPolledNewestFirst);
                start_writes(&m, &mut dev, offset, len, depth);
                for _ in 0..depth {
                    dev.wait().unwrap();
                }
                m.assert_clean();
            }
        }
    }
}

#[test]
fn blocking_transfers_keep_the_queue_full() {
    for mode in MODES {
        let m = FakeMachine::new(small_requests(mode));
        let mut dev = open(&m);
        m.knobs.completion.set(Completion::WhenPolledNewestFirst);
        let step = dev.max_transfer();
        let len = step * (MAX_IN_FLIGHT as u64 + 3) + 4096;
        roundtrip(&m, &mut dev, 512, len, BUF + 0x200, BUF2);
        assert_eq!(m.max_in_flight(), MAX_IN_FLIGHT, "{mode:?}");
        let writes: Vec<_> = m
            .requests()
            .into_iter()
            .filter(|r| r.kind == T_OUT)
            .collect();
        let mut by_seq = writes.clone();
        by_seq.sort_by_key(|r| r.seq);
        assert_ne!(writes, by_seq, "{mode:?}: completed out of order");
        check_requests(&by_seq, T_OUT, 512, BUF + 0x200, len, step);
        m.assert_clean();
    }
}

#[test]
fn the_ring_wraps_with_requests_in_flight() {
    for indirect in [true, false] {
        let mut cfg = FakeConfig {
            queue_max: 16,
            ..FakeConfig::modern()
        };
        if !indirect {
            cfg.features &= !F_INDIRECT_DESC;
        }
        let m = FakeMachine::new(cfg);
        let mut dev = open(&m);
        m.knobs.completion.set(Completion::WhenPolledNewestFirst);
        let depth = dev.max_in_flight();
        let rounds = 70_000 / depth;
        for round in 0..rounds {
            for i in 0..depth {
                let n = (round * depth + i) as u64;
                m.mem_write(BUF + 512 * i as u64, &n.to_le_bytes());
                dev.start_write((n % 1024) * 512, BUF + 512 * i as u64, 512)
                    .unwrap();
            }
            for _ in 0..depth {
                dev.wait().unwrap();
            }
        }
        let last = (rounds * depth - 1) as u64;
        assert_eq!(m.disk_read((last % 1024) * 512, 8), last.to_le_bytes());
        m.assert_clean();
    }
}

#[test]
fn a_failure_among_requests_in_flight() {
    for mode in MODES {
        for completion in [Completion::WhenPolled, Completion::WhenPolledNewestFirst] {
            let m = machine(mode);
            let mut dev = open(&m);
            m.knobs.completion.set(completion);
            let len = 8192;
            m.knobs.fail_request.set(Some((2, BLK_IOERR)));
            let data = start_writes(&m, &mut dev, 0, len, 4);
            let outcomes: Vec<_> = (0..4).map(|_| dev.wait()).collect();
            assert_eq!(
                outcomes,
                [
                    Ok(()),
                    Ok(()),
                    Err(VirtioBlkError::Io {
                        op: Operation::Write,
                        offset: 2 * len,
                        status: BLK_IOERR
                    }),
                    Ok(())
                ],
                "{mode:?} {completion:?}"
            );
            let n = len_usize(len);
            assert_filled(&m.disk_read(2 * len, n), 0, "the failed write");
            assert_same(&m.disk_read(3 * len, n), &data[3 * n..], "the later write");
            // An error status does not break the device.
            roundtrip(&m, &mut dev, 4096, 4096, BUF, BUF2);

            // flush reports the first error among those in flight, and
            // leaves none outstanding.
            let next_seq = m.requests().iter().map(|r| r.seq).max().unwrap() + 1;
            m.knobs.fail_request.set(Some((next_seq + 1, BLK_IOERR)));
            start_writes(&m, &mut dev, 0, len, 3);
            assert_eq!(
                dev.flush(),
                Err(VirtioBlkError::Io {
                    op: Operation::Write,
                    offset: len,
                    status: BLK_IOERR
                })
            );
            assert_eq!(m.in_flight(), 0);
            dev.wait().unwrap();
            m.assert_clean();
        }
    }
}

#[test]
fn a_request_in_flight_that_never_completes() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        m.knobs.completion.set(Completion::WhenPolledNewestFirst);
        m.knobs.lose_request.set(Some(1));
        let len = 4096;
        start_writes(&m, &mut dev, 0, len, 4);
        let resets = m.resets();
        assert_eq!(dev.wait(), Ok(()));
        let t0 = m.now();
        assert_eq!(
            dev.wait(),
            Err(VirtioBlkError::Timeout {
                op: Operation::Write,
                offset: len
            }),
            "{mode:?}"
        );
        assert!(m.now() - t0 >= 30_000_000, "waited the request timeout");
        assert_eq!(m.status(), 0, "{mode:?}: device reset after the timeout");
        assert_eq!(m.resets(), resets + 1);
        // The rest were in flight when the device was reset.
        assert_eq!(dev.wait(), Err(VirtioBlkError::Unusable));
        assert_eq!(dev.wait(), Err(VirtioBlkError::Unusable));
        dev.wait().unwrap();
        let notifies = m.notifies();
        assert_eq!(dev.start_write(0, BUF, 512), Err(VirtioBlkError::Unusable));
        assert_eq!(dev.write(0, BUF, 512), Err(VirtioBlkError::Unusable));
        assert_eq!(dev.flush(), Err(VirtioBlkError::Unusable));
        assert_eq!(m.notifies(), notifies);
        m.assert_clean();
    }

    // In a blocking write: the request that never completes is named.
    let m = FakeMachine::new(small_requests(Mode::Modern));
    let mut dev = open(&m);
    m.knobs.completion.set(Completion::WhenPolled);
    m.knobs.lose_request.set(Some(2));
    let step = dev.max_transfer();
    assert_eq!(
        dev.write(512, BUF, 6 * step),
        Err(VirtioBlkError::Timeout {
            op: Operation::Write,
            offset: 512 + 2 * step
        })
    );
    assert_eq!(m.in_flight(), 0, "reset");
    m.assert_clean();
}

#[test]
fn reads_and_flush_come_after_the_writes_in_flight() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        // Newest first: a read sent while the writes were in flight would
        // be done before them and see the old contents.
        m.knobs.completion.set(Completion::WhenPolledNewestFirst);
        m.disk_fill(0, MIB, 0x33);
        let len = 4096;
        let data = start_writes(&m, &mut dev, 0, len, 3);
        dev.read(0, BUF2, 3 * len).unwrap();
        assert_same(&m.mem_read(BUF2, data.len()), &data, "{mode:?}: read");
        for _ in 0..3 {
            dev.wait().unwrap();
        }
        start_writes(&m, &mut dev, 0, len, 3);
        dev.flush().unwrap();
        let requests = m.requests();
        let last = requests.last().unwrap();
        assert_eq!(last.kind, T_FLUSH, "{mode:?}: the flush is done last");
        assert_eq!(m.in_flight(), 0);
        m.assert_clean();
    }
}

#[test]
fn big_requests_are_split_by_seg_max_and_size_max() {
    // (size_max, seg_max, queue size); a segment takes whole pages.
    let cases = [
        (64 << 10, 10, 256),
        (100_000, 3, 256),
        (1 << 20, 1000, 64),
        (4096, 254, 256),
        (2048, 40, 256),
    ];
    for mode in MODES {
        for indirect in [true, false] {
            for (size_max, seg_max, queue_max) in cases {
                let mut cfg = FakeConfig {
                    size_max,
                    seg_max,
                    queue_max,
                    capacity_sectors: 1 << 20, // 512 MiB
                    ..FakeConfig::for_mode(mode)
                };
                if !indirect {
                    cfg.features &= !F_INDIRECT_DESC;
                }
                let m = FakeMachine::new(cfg);
                let mut dev = open(&m);
                let what =
                    format!("{mode:?} indirect {indirect} size_max {size_max} seg_max {seg_max}");
                // Without indirect tables a request has the ring
                // descriptors of its slot only.
                let stride = u64::from(queue_max) / dev.max_in_flight() as u64;
                let segments = if indirect {
                    u64::from(seg_max).min(u64::from(queue_max) - 2).min(252)
                } else {
                    u64::from(seg_max).min(stride - 2)
                };
                let segment_bytes = if size_max >= 4096 {
                    u64::from(size_max) / 4096 * 4096
                } else {
                    u64::from(size_max)
                };
                let want = (segments * segment_bytes).min(MAX_REQUEST_BYTES);
                assert_eq!(dev.max_transfer(), want, "{what}");
                m.knobs.completion.set(Completion::WhenPolledNewestFirst);
                let len = 3 * dev.max_transfer() + 8192;
                roundtrip(&m, &mut dev, 4096, len, BUF + 0x200, BUF2);
                let writes: Vec<_> = m
                    .requests()
                    .into_iter()
                    .filter(|r| r.kind == T_OUT)
                    .collect();
                let mut by_seq = writes.clone();
                by_seq.sort_by_key(|r| r.seq);
                check_requests(&by_seq, T_OUT, 4096, BUF + 0x200, len, dev.max_transfer());
                for r in &writes {
                    assert!(r.segments.len() as u64 <= segments, "{what}");
                    assert!(r.segments.iter().all(|&(_, l)| l <= size_max), "{what}");
                }
                m.assert_clean();
            }
        }
    }
}

#[test]
fn a_completion_not_in_flight_breaks_the_device() {
    for mode in MODES {
        let m = machine(mode);
        let mut dev = open(&m);
        m.knobs.used_id_offset.set(1);
        dev.start_write(0, BUF, 4096).unwrap();
        let Err(VirtioBlkError::BadCompletion(id)) = dev.wait() else {
            panic!("{mode:?}: expected BadCompletion");
        };
        assert_eq!(id % 2, 1, "a descriptor that is no slot's head");
        assert_eq!(m.status(), 0, "{mode:?}: device reset");
        assert_eq!(dev.write(0, BUF, 512), Err(VirtioBlkError::Unusable));
        m.assert_clean();
    }
}

// ----- the fake device's own checks, against a rogue driver -----

/// Descriptor `index` of a table at `table`.
fn put_desc(m: &FakeMachine, table: u64, index: u64, addr: u64, len: u32, flags: u16, next: u16) {
    let mut d = Vec::new();
    d.extend_from_slice(&addr.to_le_bytes());
    d.extend_from_slice(&len.to_le_bytes());
    d.extend_from_slice(&flags.to_le_bytes());
    d.extend_from_slice(&next.to_le_bytes());
    m.mem_write(table + 16 * index, &d);
}

/// Make `head` available behind the driver's back and notify (legacy).
fn rogue_post(m: &FakeMachine, head: u16) {
    use minicap_drivers::access::Width;
    use minicap_drivers::Platform;
    let (_, avail, _) = m.queue_rings();
    let idx = u16::from_le_bytes(m.mem_read(avail + 2, 2).try_into().unwrap());
    let slot = u64::from(idx % m.queue_size());
    m.mem_write(avail + 4 + 2 * slot, &head.to_le_bytes());
    m.mem_write(avail + 2, &idx.wrapping_add(1).to_le_bytes());
    let ports = m.claim_ports(VIRTIO_FN, 0, 20).unwrap();
    m.port_write(&ports, 16, Width::U16, 0);
}

/// A write request of `segments` × `segment` bytes as an indirect table at
/// `table`: header at BUF, data from BUF + 4096, status after the header.
fn rogue_indirect_write(m: &FakeMachine, table: u64, segments: u16, segment: u32) -> (u64, u32) {
    m.mem_write(BUF, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    put_desc(m, table, 0, BUF, 16, 1, 1);
    for i in 0..segments {
        let addr = BUF + 4096 + u64::from(i) * u64::from(segment);
        put_desc(m, table, u64::from(i) + 1, addr, segment, 1, i + 2);
    }
    put_desc(m, table, u64::from(segments) + 1, BUF + 16, 1, 2, 0);
    (table, 16 * (u32::from(segments) + 2))
}

#[track_caller]
fn assert_violation(m: &FakeMachine, what: &str) {
    let v = m.violations();
    assert!(
        v.iter().any(|s| s.contains(what)),
        "no violation {what:?} among {v:?}"
    );
}

#[test]
fn the_fake_device_catches_indirect_tables_not_negotiated() {
    let mut cfg = FakeConfig::legacy();
    cfg.features &= !F_INDIRECT_DESC;
    let m = FakeMachine::new(cfg);
    let _dev = open(&m);
    let (desc, _, _) = m.queue_rings();
    let (table, len) = rogue_indirect_write(&m, BUF2, 2, 4096);
    put_desc(&m, desc, 0, table, len, 4, 0);
    rogue_post(&m, 0);
    assert_violation(&m, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
}

#[test]
fn the_fake_device_catches_segments_beyond_the_limits() {
    let m = FakeMachine::new(FakeConfig {
        size_max: 8192,
        seg_max: 3,
        ..FakeConfig::legacy()
    });
    let _dev = open(&m);
    let (desc, _, _) = m.queue_rings();
    let (table, len) = rogue_indirect_write(&m, BUF2, 4, 4096);
    put_desc(&m, desc, 0, table, len, 4, 0);
    rogue_post(&m, 0);
    assert_violation(&m, "4 data segments, seg_max 3");
    let (table, len) = rogue_indirect_write(&m, BUF2, 1, 16384);
    put_desc(&m, desc, 0, table, len, 4, 0);
    rogue_post(&m, 0);
    assert_violation(&m, "segment of 16384 bytes, size_max 8192");
}

#[test]
fn the_fake_device_catches_requests_touched_while_in_flight() {
    // A descriptor reused while its request is in flight.
    let m = machine(Mode::Legacy);
    let mut dev = open(&m);
    m.knobs.completion.set(Completion::Held);
    dev.start_write(0, BUF, 4096).unwrap();
    let (desc, _, _) = m.queue_rings();
    let head = m.mem_read(desc, 16);
    rogue_post(&m, 0);
    assert_violation(&m, "descriptor 0 reused while request 0 is in flight");
    assert_violation(&m, "overlaps request 0");

    // A request header changed before the device completed it.
    let m = machine(Mode::Legacy);
    let mut dev = open(&m);
    m.knobs.completion.set(Completion::Held);
    dev.start_write(0, BUF, 4096).unwrap();
    assert_eq!(m.mem_read(desc, 16), head, "same layout");
    let table = u64::from_le_bytes(head[..8].try_into().unwrap());
    let header = u64::from_le_bytes(m.mem_read(table, 8).try_into().unwrap());
    m.mem_write(header + 8, &7u64.to_le_bytes());
    m.complete_held(&[0]);
    assert_violation(&m, "request 0 (head 0) changed while in flight");
}

#[test]
fn devices_whose_requests_cannot_carry_a_block_are_refused() {
    // 4 KiB blocks, but at most 2 × 1 KiB per request.
    let mut cfg = FakeConfig::for_mode(Mode::Modern);
    cfg.blk_size = 4096;
    cfg.size_max = 1024;
    cfg.seg_max = 2;
    let m = FakeMachine::new(cfg);
    assert_eq!(open_err(&m), VirtioBlkError::UnsupportedBlockSize(4096));
    assert_given_up(&m);
    m.assert_clean();
}
