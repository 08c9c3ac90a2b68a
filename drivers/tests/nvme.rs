//! The NVMe driver against a fake NVMe controller.

mod fake_machine;
mod support;

use fake_machine::nvme::*;
use minicap_drivers::nvme::{
    is_nvme, is_nvme_class, AdminCommand, CompletionStatus, Nvme, NvmeError, Operation,
    IO_QUEUE_ENTRIES, MAX_IN_FLIGHT, MAX_REQUEST_BYTES,
};
use minicap_drivers::pci::PciAddress;
use minicap_drivers::BlockDevice;
use support::*;

/// CAP.TO of the QEMU-like controller: 15 × 500 ms.
const CAP_TO_MS: u64 = 7_500;

type Dev<'m> = Nvme<'m, FakeNvme>;

fn open(m: &FakeNvme) -> Dev<'_> {
    expect_up("init", m, Nvme::new(m, NVME_FN))
}

fn open_err(m: &FakeNvme) -> NvmeError {
    expect_refused(Nvme::new(m, NVME_FN))
}

fn machine() -> FakeNvme {
    FakeNvme::new(NvmeConfig::qemu())
}

/// The write-then-read-back round trip (`check_roundtrip`) on the
/// namespace.
#[track_caller]
fn roundtrip(m: &FakeNvme, dev: &mut Dev<'_>, offset: u64, len: u64, src: u64, dst: u64) {
    check_roundtrip(m, m, dev, offset, len, src, dst);
}

fn describe(dev: &Dev<'_>) -> String {
    let mut s = String::new();
    dev.describe(&mut s).expect("describe");
    s
}

fn assert_given_up(m: &FakeNvme) {
    assert!(!m.enabled(), "controller left enabled");
    assert_eq!(m.command() & CMD_BUS_MASTER, 0, "bus mastering left on");
}

// ----- detection -----

#[test]
fn nvme_functions_are_recognised_by_class_code() {
    let m = machine();
    assert!(is_nvme(&m, NVME_FN));
    let absent = PciAddress::new(0, 5, 0);
    assert!(!is_nvme(&m, absent));
    assert!(is_nvme_class(0x01, 0x08, 0x02));
    assert!(
        !is_nvme_class(0x01, 0x08, 0x01),
        "NVMHCI is not NVM Express"
    );
    assert!(!is_nvme_class(0x01, 0x06, 0x01), "AHCI");
    m.assert_clean();
}

// ----- bring-up -----

#[test]
fn identify_gives_capacity_block_size_and_limits() {
    for (cfg, block) in [(NvmeConfig::qemu(), 512u32), (NvmeConfig::qemu_4k(), 4096)] {
        let m = FakeNvme::new(cfg);
        let dev = open(&m);
        assert_eq!(dev.capacity(), 64 * MIB);
        assert_eq!(dev.sector_size(), block);
        // MDTS 7 with 4 KiB minimum pages: 512 KiB.
        assert_eq!(dev.max_transfer(), 512 * KIB);
        assert_eq!(dev.max_in_flight(), MAX_IN_FLIGHT);
        assert_eq!(dev.namespace(), 1);
        assert!(dev.has_volatile_cache());
        let name = describe(&dev);
        let want = if block == 512 {
            "NVMe 00:04.0 (QEMU NVMe Ctrl, namespace 1), 64 MiB".to_string()
        } else {
            "NVMe 00:04.0 (QEMU NVMe Ctrl, namespace 1, 4096-byte blocks), 64 MiB".to_string()
        };
        assert_eq!(name, want);
        m.assert_clean();
    }
}

#[test]
fn init_takes_the_function_over_and_polls() {
    let m = FakeNvme::new(NvmeConfig {
        initial_command: CMD_BUS_MASTER,
        ..NvmeConfig::qemu()
    });
    let _dev = open(&m);
    assert!(!m.msix_enabled(), "MSI-X left on");
    let command = m.command();
    assert_ne!(command & CMD_MEMORY, 0);
    assert_ne!(command & CMD_BUS_MASTER, 0);
    assert_ne!(command & CMD_INTX_DISABLE, 0);
    assert_eq!(m.intms(), u32::MAX, "pin/MSI vectors not all masked");
    assert!(!m.io_interrupts(), "I/O completion queue raises interrupts");
    assert_eq!(m.cc(), 0x0046_0001);
    assert!(m.queue_count_set(), "Number of Queues not set first");
    assert_eq!(m.io_queue_entries(), IO_QUEUE_ENTRIES);
    // Every queue lives in the capture kernel's DMA memory.
    let (start, end) = m.dma_range();
    for base in m.queue_bases() {
        assert!(
            (start..end).contains(&base) && base % 4096 == 0,
            "queue at {base:#x}"
        );
    }
    let opcodes: Vec<u8> = m
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Admin(opcode, _) => Some(*opcode),
            _ => None,
        })
        .collect();
    assert_eq!(
        opcodes,
        [
            ADMIN_IDENTIFY,
            ADMIN_IDENTIFY,
            ADMIN_IDENTIFY,
            ADMIN_SET_FEATURES,
            ADMIN_CREATE_CQ,
            ADMIN_CREATE_SQ
        ]
    );
    m.assert_clean();
}

#[test]
fn a_controller_left_running_is_disabled_before_it_may_master_the_bus() {
    let m = FakeNvme::new(NvmeConfig {
        left_running: true,
        initial_command: CMD_MEMORY | CMD_BUS_MASTER,
        ..NvmeConfig::qemu()
    });
    m.knobs.ready_delay_reads.set(4);
    let mut dev = open(&m);
    assert_eq!(m.resets(), 1);
    let events = m.events();
    let position = |what: &dyn Fn(&Event) -> bool| {
        events
            .iter()
            .position(what)
            .unwrap_or_else(|| panic!("missing event in {events:?}"))
    };
    let master_off = position(&|e| matches!(e, Event::Command(c) if c & CMD_BUS_MASTER == 0));
    let disabled = position(&|e| matches!(e, Event::Cc(v) if v & CC_EN == 0));
    let not_ready = position(&|e| *e == Event::Ready(false));
    let master_on = position(&|e| matches!(e, Event::Command(c) if c & CMD_BUS_MASTER != 0));
    let enabled = position(&|e| matches!(e, Event::Cc(v) if v & CC_EN != 0));
    assert!(master_off < disabled, "{events:?}");
    assert!(disabled < not_ready && not_ready < master_on, "{events:?}");
    assert!(master_on < enabled, "{events:?}");
    // The crashed kernel's commands never ran: the disk and its old
    // completion queue are untouched.
    assert!(m.disk_read(STALE_LBA * 512, 8192).iter().all(|&b| b == 0));
    assert!(m.mem_read(STALE_IO_CQ, 4096).iter().all(|&b| b == 0));
    roundtrip(&m, &mut dev, 0, 64 * KIB, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn a_controller_found_enabling_gets_ready_before_it_is_disabled() {
    let m = FakeNvme::new(NvmeConfig {
        left_enabling: true,
        ..NvmeConfig::qemu()
    });
    let mut dev = open(&m);
    assert!(m.events().contains(&Event::Ready(true)));
    roundtrip(&m, &mut dev, 4096, 4096, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn a_controller_found_fatal_is_reset_and_used() {
    let m = FakeNvme::new(NvmeConfig {
        left_fatal: true,
        ..NvmeConfig::qemu()
    });
    let mut dev = open(&m);
    assert_eq!(m.resets(), 1);
    roundtrip(&m, &mut dev, 0, 8192, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn disabling_gives_up_after_cap_timeout() {
    let m = FakeNvme::new(NvmeConfig {
        left_running: true,
        ..NvmeConfig::qemu()
    });
    m.knobs.disable_stuck.set(true);
    let err = open_err(&m);
    assert_eq!(
        err,
        NvmeError::DisableTimeout {
            waited_ms: CAP_TO_MS
        }
    );
    let waited_us = m.now();
    assert!(
        (CAP_TO_MS * 1000..(CAP_TO_MS + 100) * 1000).contains(&waited_us),
        "waited {waited_us} us"
    );
    // Never allowed to master the bus: the old commands cannot run.
    assert!(!m
        .events()
        .iter()
        .any(|e| matches!(e, Event::Command(c) if c & CMD_BUS_MASTER != 0)));
    assert!(err.to_string().contains("7500 ms"), "{err}");
    m.assert_clean();
}

#[test]
fn a_short_cap_timeout_is_honoured() {
    let m = FakeNvme::new(NvmeConfig {
        left_running: true,
        timeout_units: 1,
        ..NvmeConfig::qemu()
    });
    m.knobs.disable_stuck.set(true);
    assert_eq!(open_err(&m), NvmeError::DisableTimeout { waited_ms: 500 });
    assert!(m.now() < 600_000, "waited {} us", m.now());
    m.assert_clean();
}

#[test]
fn enabling_gives_up_after_cap_timeout() {
    let m = machine();
    m.knobs.enable_stuck.set(true);
    assert_eq!(
        open_err(&m),
        NvmeError::EnableTimeout {
            waited_ms: CAP_TO_MS
        }
    );
    assert_given_up(&m);
    m.assert_clean();
}

#[test]
fn a_fatal_status_while_enabling_is_reported() {
    let m = machine();
    m.knobs.fatal_on_enable.set(true);
    assert_eq!(open_err(&m), NvmeError::ControllerFatal);
    assert_given_up(&m);
    m.assert_clean();
}

#[test]
fn an_admin_command_that_never_completes_times_out() {
    let m = machine();
    m.knobs.admin_silent.set(true);
    let before = m.now();
    let err = open_err(&m);
    assert_eq!(
        err,
        NvmeError::AdminTimeout {
            command: AdminCommand::IdentifyController
        }
    );
    let waited_ms = (m.now() - before) / 1000;
    assert!(
        (60_000..61_000).contains(&waited_ms),
        "waited {waited_ms} ms"
    );
    assert_given_up(&m);
    m.assert_clean();
}

#[test]
fn admin_failures_carry_the_status() {
    let m = machine();
    m.knobs
        .fail_admin
        .set(Some((ADMIN_CREATE_CQ, INVALID_QUEUE_SIZE)));
    let err = open_err(&m);
    assert_eq!(
        err,
        NvmeError::AdminFailed {
            command: AdminCommand::CreateCompletionQueue,
            status: CompletionStatus::new(1, 0x02),
        }
    );
    assert_eq!(
        err.to_string(),
        "CREATE I/O COMPLETION QUEUE failed: status code type 1 (command specific), \
         status code 0x02 (invalid queue size)"
    );
    assert_given_up(&m);
    m.assert_clean();
}

#[test]
fn a_refused_queue_count_is_tolerated() {
    let m = machine();
    m.knobs
        .fail_admin
        .set(Some((ADMIN_SET_FEATURES, INVALID_FIELD)));
    let mut dev = open(&m);
    roundtrip(&m, &mut dev, 0, 4096, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn capability_refusals() {
    let cases = [
        (
            NvmeConfig {
                nvm_command_set: false,
                ..NvmeConfig::qemu()
            },
            NvmeError::NoNvmCommandSet,
        ),
        (
            NvmeConfig {
                mpsmin: 1,
                ..NvmeConfig::qemu()
            },
            NvmeError::UnsupportedPageSize(8192),
        ),
        (
            NvmeConfig {
                sqes: 0x77,
                ..NvmeConfig::qemu()
            },
            NvmeError::UnsupportedEntrySize,
        ),
    ];
    for (cfg, want) in cases {
        let m = FakeNvme::new(cfg);
        assert_eq!(open_err(&m), want);
        assert_given_up(&m);
        m.assert_clean();
    }
}

#[test]
fn namespace_selection() {
    // The first NSID of the active list.
    let m = FakeNvme::new(NvmeConfig {
        nsid: 3,
        ..NvmeConfig::qemu()
    });
    let mut dev = open(&m);
    assert_eq!(dev.namespace(), 3);
    roundtrip(&m, &mut dev, 0, 4096, BUF, BUF2);
    m.assert_clean();

    // No active namespace list (IDENTIFY CNS 2 refused): namespace 1.
    let m = FakeNvme::new(NvmeConfig {
        active_list: false,
        ..NvmeConfig::qemu()
    });
    assert_eq!(open(&m).namespace(), 1);
    m.assert_clean();

    // An NVMe 1.0 controller is not asked for the list.
    let m = FakeNvme::new(NvmeConfig {
        version: 0x0001_0000,
        ..NvmeConfig::qemu()
    });
    assert_eq!(open(&m).namespace(), 1);
    let identifies = m
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Admin(ADMIN_IDENTIFY, _)))
        .count();
    assert_eq!(identifies, 2);
    m.assert_clean();
}

#[test]
fn namespace_refusals() {
    let cases = [
        (
            NvmeConfig {
                namespaces: 0,
                ..NvmeConfig::qemu()
            },
            NvmeError::NoNamespace,
        ),
        (
            NvmeConfig {
                nsid: 0,
                ..NvmeConfig::qemu()
            },
            NvmeError::NoNamespace,
        ),
        (
            NvmeConfig {
                blocks: 0,
                ..NvmeConfig::qemu()
            },
            NvmeError::NamespaceInactive(1),
        ),
        (
            NvmeConfig {
                bad_format_index: true,
                ..NvmeConfig::qemu()
            },
            NvmeError::BadFormatIndex(1),
        ),
        (
            NvmeConfig {
                block_shift: 13,
                ..NvmeConfig::qemu()
            },
            NvmeError::UnsupportedBlockSize(13),
        ),
        (
            NvmeConfig {
                metadata_bytes: 8,
                metadata_interleaved: true,
                ..NvmeConfig::qemu()
            },
            NvmeError::MetadataFormat {
                nsid: 1,
                metadata_bytes: 8,
                interleaved: true,
            },
        ),
        (
            NvmeConfig {
                metadata_bytes: 16,
                ..NvmeConfig::qemu_4k()
            },
            NvmeError::MetadataFormat {
                nsid: 1,
                metadata_bytes: 16,
                interleaved: false,
            },
        ),
    ];
    for (cfg, want) in cases {
        let m = FakeNvme::new(cfg);
        let err = open_err(&m);
        assert_eq!(err, want);
        assert_given_up(&m);
        m.assert_clean();
    }
    let message = NvmeError::MetadataFormat {
        nsid: 1,
        metadata_bytes: 8,
        interleaved: true,
    }
    .to_string();
    assert!(message.contains("8 metadata bytes per block (interleaved with the data)"));
}

#[test]
fn out_of_dma_memory() {
    // Admin queues (2 pages), IDENTIFY (1), I/O queues (2), PRP lists (8):
    // every shortfall is refused, with the controller stopped.
    for pages in [0, 1, 2, 3, 4, 5, 12] {
        let m = FakeNvme::new(NvmeConfig {
            dma_limit: pages * 4096,
            left_running: true,
            ..NvmeConfig::qemu()
        });
        assert_eq!(open_err(&m), NvmeError::NoMemory, "{pages} pages");
        assert_given_up(&m);
        m.assert_clean();
    }
    let m = FakeNvme::new(NvmeConfig {
        dma_limit: 13 * 4096,
        ..NvmeConfig::qemu()
    });
    open(&m);
    m.assert_clean();
}

// ----- I/O -----

#[test]
fn write_then_read_back_at_512_and_4096() {
    for cfg in [NvmeConfig::qemu(), NvmeConfig::qemu_4k()] {
        let block = cfg.block_bytes();
        let m = FakeNvme::new(cfg);
        let mut dev = open(&m);
        roundtrip(&m, &mut dev, 0, block, BUF, BUF2);
        roundtrip(&m, &mut dev, 7 * block, 3 * block, BUF + 0x10_0000, BUF2);
        // Memory that starts inside a page (dword aligned).
        roundtrip(&m, &mut dev, 64 * block, 16 * KIB, BUF + 0x204, BUF2 + 0x40);
        // More than one command's worth, across the end of the namespace.
        let len = 3 * MIB + 8 * block;
        let near_end = dev.capacity() - len;
        roundtrip(&m, &mut dev, near_end, len, BUF, BUF2);
        let blocks: Vec<u64> = m.io().iter().map(|r| r.slba).collect();
        assert!(blocks.contains(&(64 * MIB / block - len / block)));
        m.assert_clean();
    }
}

#[test]
fn block_addresses_follow_the_block_size() {
    let m = FakeNvme::new(NvmeConfig::qemu_4k());
    let mut dev = open(&m);
    m.mem_write(BUF, &pattern(1, 8192));
    dev.write(40 * 4096, BUF, 8192).expect("write");
    let w = &m.writes()[0];
    assert_eq!((w.slba, w.blocks), (40, 2));
    m.assert_clean();
}

#[test]
fn prp_entries_describe_the_pages() {
    let m = machine();
    let mut dev = open(&m);
    m.mem_write(BUF, &pattern(2, len_usize(MIB)));

    // Inside one page: PRP1 only.
    dev.write(0, BUF + 0x200, 0x400).expect("write");
    // Two pages from an offset: PRP1 and PRP2 direct.
    dev.write(0, BUF + 0x800, 4096).expect("write");
    // 256 KiB from an offset: PRP1 and a list of 64 pages.
    dev.write(0, BUF + 0x200, 256 * KIB).expect("write");
    let writes = m.writes();
    assert_eq!(writes[0].segments, [(BUF + 0x200, 0x400)]);
    assert_eq!(writes[0].list_pages, 0);
    assert_eq!(
        writes[1].segments,
        [(BUF + 0x800, 0x800), (BUF + 0x1000, 0x800)]
    );
    assert_eq!(writes[1].list_pages, 0);
    let big = &writes[2];
    assert_eq!(big.list_pages, 1);
    assert_eq!(big.segments.len(), 65);
    assert_eq!(big.segments[0], (BUF + 0x200, 0xe00));
    for (i, &(addr, len)) in big.segments[1..].iter().enumerate() {
        let want_len = if i == 63 { 0x200 } else { 4096 };
        assert_eq!((addr, len), (BUF + 4096 * (i as u64 + 1), want_len));
    }
    m.assert_clean();
}

#[test]
fn without_mdts_a_command_carries_max_request_bytes_through_one_list_page() {
    let m = FakeNvme::new(NvmeConfig {
        mdts: 0,
        ..NvmeConfig::qemu()
    });
    let mut dev = open(&m);
    assert_eq!(dev.max_transfer(), MAX_REQUEST_BYTES);
    // From an offset it touches 513 pages: PRP1 and a full list of 512.
    roundtrip(
        &m,
        &mut dev,
        0,
        MAX_REQUEST_BYTES,
        BUF + 0x600,
        BUF2 + 0x600,
    );
    let w = &m.writes()[0];
    assert_eq!(w.bytes(), MAX_REQUEST_BYTES);
    assert_eq!((w.segments.len(), w.list_pages), (513, 1));
    m.assert_clean();
}

#[test]
fn mdts_limits_every_command() {
    let m = FakeNvme::new(NvmeConfig {
        mdts: 2,
        ..NvmeConfig::qemu_4k()
    });
    let mut dev = open(&m);
    assert_eq!(dev.max_transfer(), 16 * KIB);
    roundtrip(&m, &mut dev, 0, 100 * KIB, BUF, BUF2);
    let sizes: Vec<u64> = m.writes().iter().map(IoRecord::bytes).collect();
    assert_eq!(
        sizes,
        [
            16 * KIB,
            16 * KIB,
            16 * KIB,
            16 * KIB,
            16 * KIB,
            16 * KIB,
            4 * KIB
        ]
    );
    assert_eq!(
        dev.start_write(0, BUF, 20 * KIB),
        Err(NvmeError::BadRequest {
            offset: 0,
            len: 20 * KIB
        })
    );
    m.assert_clean();
}

#[test]
fn several_writes_in_flight_finish_first_in_first_out() {
    let m = machine();
    m.knobs.completion.set(Completion::Held);
    let mut dev = open(&m);
    let n = dev.max_in_flight();
    let chunk = dev.max_transfer();
    let data = pattern(3, len_usize(chunk * n as u64));
    m.mem_write(BUF, &data);
    for i in 0..n as u64 {
        dev.start_write(i * chunk, BUF + i * chunk, chunk)
            .expect("start_write");
    }
    assert_eq!(m.in_flight(), n);
    assert_eq!(
        dev.start_write(0, BUF, 4096),
        Err(NvmeError::TooManyInFlight)
    );
    assert_eq!(m.in_flight(), n, "a refused write reached the controller");
    // The controller finishes them newest first.
    let newest_first: Vec<usize> = (0..n).rev().collect();
    m.complete_held(&newest_first);
    for _ in 0..n {
        dev.wait().expect("wait");
    }
    dev.wait().expect("nothing outstanding");
    assert_same(&m.disk_read(0, data.len()), &data, "disk");
    assert_eq!(m.max_in_flight(), n);
    m.assert_clean();
}

#[test]
fn out_of_order_errors_are_reported_by_the_command_that_failed() {
    let m = machine();
    m.knobs.completion.set(Completion::WhenPolledNewestFirst);
    m.knobs.fail_io.set(Some((1, WRITE_FAULT)));
    let mut dev = open(&m);
    m.mem_write(BUF, &pattern(4, 3 * 4096));
    for i in 0..3u64 {
        dev.start_write(i * 4096, BUF + i * 4096, 4096)
            .expect("start_write");
    }
    assert_eq!(dev.wait(), Ok(()));
    assert_eq!(
        dev.wait(),
        Err(NvmeError::Io {
            op: Operation::Write,
            offset: 4096,
            status: CompletionStatus::new(2, 0x80),
        })
    );
    assert_eq!(dev.wait(), Ok(()));
    // An I/O error does not make the controller unusable.
    roundtrip(&m, &mut dev, 0, 4096, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn an_error_in_a_later_command_names_its_offset() {
    let m = machine();
    m.knobs.fail_io.set(Some((2, WRITE_FAULT)));
    let mut dev = open(&m);
    let chunk = dev.max_transfer();
    let err = dev
        .write(MIB, BUF, 4 * chunk)
        .expect_err("injected failure");
    assert_eq!(
        err,
        NvmeError::Io {
            op: Operation::Write,
            offset: MIB + 2 * chunk,
            status: CompletionStatus::new(2, 0x80),
        }
    );
    assert_eq!(
        err.to_string(),
        "write at byte 0x200000 failed: status code type 2 (media and data integrity), \
         status code 0x80 (write fault)"
    );
    // Every command was finished: none left for a later wait.
    assert_eq!(m.io().len(), 4);
    dev.wait().expect("nothing outstanding");
    m.assert_clean();
}

#[test]
fn a_lost_write_times_out_and_the_controller_is_disabled() {
    let m = machine();
    m.knobs.lose_io.set(Some(1));
    let mut dev = open(&m);
    m.mem_write(BUF, &pattern(5, 2 * 4096));
    dev.start_write(0, BUF, 4096).expect("start_write");
    dev.start_write(4096, BUF + 4096, 4096)
        .expect("start_write");
    assert_eq!(dev.wait(), Ok(()));
    let before = m.now();
    assert_eq!(
        dev.wait(),
        Err(NvmeError::Timeout {
            op: Operation::Write,
            offset: 4096
        })
    );
    let waited_ms = (m.now() - before) / 1000;
    assert!(
        (30_000..31_000).contains(&waited_ms),
        "waited {waited_ms} ms"
    );
    assert!(!m.enabled(), "controller not disabled after the timeout");
    assert_eq!(m.resets(), 1);
    assert_eq!(dev.write(0, BUF, 4096), Err(NvmeError::Unusable));
    assert_eq!(dev.flush(), Err(NvmeError::Unusable));
    m.assert_clean();
}

#[test]
fn a_stuck_disable_after_a_timeout_stops_bus_mastering() {
    let m = machine();
    m.knobs.lose_io.set(Some(0));
    let mut dev = open(&m);
    m.knobs.disable_stuck.set(true);
    assert!(matches!(
        dev.write(0, BUF, 4096),
        Err(NvmeError::Timeout { .. })
    ));
    assert_eq!(m.command() & CMD_BUS_MASTER, 0);
    m.assert_clean();
}

#[test]
fn a_fatal_controller_is_noticed_before_the_deadline() {
    let m = machine();
    m.knobs.fatal_at_io.set(Some(0));
    let mut dev = open(&m);
    let before = m.now();
    assert_eq!(dev.write(0, BUF, 4096), Err(NvmeError::ControllerFatal));
    assert!(m.now() - before < 100_000, "waited {} us", m.now() - before);
    assert!(!m.enabled());
    assert_eq!(dev.write(0, BUF, 4096), Err(NvmeError::Unusable));
    m.assert_clean();
}

#[test]
fn a_function_that_left_the_bus_is_refused() {
    let m = machine();
    m.knobs.gone.set(true);
    assert_eq!(open_err(&m), NvmeError::NotResponding);
    assert_eq!(m.command() & CMD_BUS_MASTER, 0);
    m.assert_clean();
}

#[test]
fn a_function_that_leaves_the_bus_mid_write_is_noticed_and_cut_off() {
    let m = machine();
    m.knobs.completion.set(Completion::Held);
    let mut dev = open(&m);
    dev.start_write(0, BUF, 4096).expect("start_write");
    m.knobs.gone.set(true);
    let before = m.now();
    assert_eq!(dev.wait(), Err(NvmeError::NotResponding));
    // Noticed by the periodic CSTS check, not the 30 s deadline; the
    // attempt to disable it is bounded by CAP.TO, then its DMA is cut off.
    let waited_ms = (m.now() - before) / 1000;
    assert!(waited_ms < CAP_TO_MS + 100, "waited {waited_ms} ms");
    assert_eq!(m.command() & CMD_BUS_MASTER, 0);
    assert_eq!(dev.write(0, BUF, 4096), Err(NvmeError::Unusable));
    m.assert_clean();
}

#[test]
fn a_completion_for_a_command_not_in_flight_stops_the_controller() {
    let m = machine();
    let mut dev = open(&m);
    m.knobs.wrong_command_id.set(Some(5));
    assert_eq!(dev.write(0, BUF, 4096), Err(NvmeError::BadCompletion(5)));
    assert!(!m.enabled());
    assert_eq!(dev.read(0, BUF, 4096), Err(NvmeError::Unusable));
    m.assert_clean();
}

#[test]
fn flush_is_sent_only_with_a_volatile_write_cache() {
    let m = machine();
    let mut dev = open(&m);
    m.knobs.completion.set(Completion::Held);
    dev.start_write(0, BUF, 4096).expect("start_write");
    m.knobs.completion.set(Completion::WhenPolled);
    dev.flush().expect("flush");
    assert_eq!(m.flushes(), 1);
    let ops: Vec<u8> = m.io().iter().map(|r| r.opcode).collect();
    assert_eq!(
        ops,
        [IO_WRITE, IO_FLUSH],
        "the write finishes before the flush"
    );
    m.assert_clean();

    let m = FakeNvme::new(NvmeConfig {
        volatile_cache: false,
        ..NvmeConfig::qemu()
    });
    let mut dev = open(&m);
    assert!(!dev.has_volatile_cache());
    dev.write(0, BUF, 4096).expect("write");
    dev.flush().expect("flush");
    assert_eq!(m.flushes(), 0);
    m.assert_clean();
}

#[test]
fn flush_timeout_and_flush_errors() {
    let m = machine();
    let mut dev = open(&m);
    m.knobs.fail_io.set(Some((0, (0, 0x06))));
    let err = dev.flush().expect_err("injected failure");
    assert_eq!(
        err.to_string(),
        "flush at byte 0x0 failed: status code type 0 (generic), status code 0x06 (internal error)"
    );
    m.knobs.fail_io.set(None);
    m.knobs.lose_io.set(Some(1));
    let before = m.now();
    assert_eq!(
        dev.flush(),
        Err(NvmeError::Timeout {
            op: Operation::Flush,
            offset: 0
        })
    );
    let waited_ms = (m.now() - before) / 1000;
    assert!(
        (60_000..61_000).contains(&waited_ms),
        "waited {waited_ms} ms"
    );
    m.assert_clean();
}

#[test]
fn bad_requests_do_not_reach_the_controller() {
    let m = FakeNvme::new(NvmeConfig::qemu_4k());
    let mut dev = open(&m);
    let capacity = dev.capacity();
    let cases = [
        (512, 4096, BUF),
        (0, 512, BUF),
        (0, 0, BUF),
        (capacity - 4096, 8192, BUF),
        (u64::MAX - 4095, 8192, BUF),
    ];
    for (offset, len, phys) in cases {
        assert_eq!(
            dev.write(offset, phys, len),
            Err(NvmeError::BadRequest { offset, len })
        );
        assert_eq!(
            dev.start_write(offset, phys, len),
            Err(NvmeError::BadRequest { offset, len })
        );
    }
    assert_eq!(
        dev.read(0, BUF + 2, 4096),
        Err(NvmeError::UnalignedMemory(BUF + 2))
    );
    assert!(m.io().is_empty());
    m.assert_clean();
}

#[test]
fn small_queues_limit_the_writes_in_flight() {
    for (mqes, slots) in [(1u16, 1usize), (3, 3), (0x7ff, MAX_IN_FLIGHT)] {
        let m = FakeNvme::new(NvmeConfig {
            mqes,
            ..NvmeConfig::qemu()
        });
        m.knobs.completion.set(Completion::WhenPolled);
        let mut dev = open(&m);
        assert_eq!(dev.max_in_flight(), slots);
        m.mem_write(BUF, &pattern(6, 64 * 4096));
        for i in 0..64u64 {
            if i >= slots as u64 {
                dev.wait().expect("wait");
            }
            dev.start_write(i * 4096, BUF + i * 4096, 4096)
                .expect("start_write");
        }
        dev.flush().expect("flush");
        assert_same(
            &m.disk_read(0, 64 * 4096),
            &m.mem_read(BUF, 64 * 4096),
            "disk",
        );
        assert_eq!(m.max_in_flight(), slots);
        m.assert_clean();
    }
}

#[test]
fn queues_wrap_many_times() {
    let m = machine();
    let mut dev = open(&m);
    for i in 0..200u64 {
        roundtrip(&m, &mut dev, i * 512, 512, BUF + i * 512, BUF2);
    }
    assert_eq!(m.io().len(), 400);
    m.assert_clean();
}

#[test]
fn a_wide_doorbell_stride_is_followed() {
    let m = FakeNvme::new(NvmeConfig {
        dstrd: 3,
        ..NvmeConfig::qemu()
    });
    let mut dev = open(&m);
    roundtrip(&m, &mut dev, 0, 8192, BUF, BUF2);
    m.assert_clean();
}

#[test]
fn dropping_the_device_disables_the_controller() {
    let m = machine();
    {
        let mut dev = open(&m);
        m.knobs.completion.set(Completion::WhenPolled);
        dev.start_write(0, BUF, 4096).expect("start_write");
    }
    assert_eq!(m.writes().len(), 1, "the outstanding write was finished");
    assert_given_up(&m);
    m.assert_clean();
}

#[test]
fn status_codes_read_well() {
    let status = CompletionStatus::from_status_half(0x80 << 1 | 1 | 1 << 15);
    assert_eq!((status.code_type(), status.code()), (0, 0x80));
    assert!(status.do_not_retry());
    assert!(!status.is_success());
    assert_eq!(
        status.to_string(),
        "status code type 0 (generic), status code 0x80 (LBA out of range), do not retry"
    );
    assert_eq!(
        CompletionStatus::new(7, 0xc3).to_string(),
        "status code type 7 (vendor specific), status code 0xc3"
    );
    assert!(CompletionStatus::from_status_half(1).is_success());
}
