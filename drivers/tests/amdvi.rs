//! AMD-Vi takeover against a strict fake unit: the device table and the
//! commands are read back from the fake machine's memory the way the unit
//! reads them.

mod fake_machine;

use fake_machine::*;
use minicap_drivers::amdvi::{
    self, command_buffer_register, control, device_id, device_table_register, dte, status,
    AllowedIds, AmdViError, AmdViRegisters, Command, Flush, Register, DTE_BYTES, EFR_IA_SUP,
    OP_COMPLETION_WAIT, OP_INVALIDATE_DEVTAB_ENTRY, OP_INVALIDATE_IOMMU_ALL,
};
use minicap_drivers::dma_alias::{Bridges, RequesterIds};
use minicap_drivers::pci::PciAddress;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Entries of the device table in these tests (the kernel's is 65536).
const ENTRIES: u32 = 4096;
/// Control bits the crashed kernel set that minicap must keep: Coherent
/// (10) and InvTimeout = 1 s (7 in bits 7:5).
const KEPT: u64 = 1 << 10 | 7 << 5;

fn at(bus: u8, device: u8, function: u8) -> PciAddress {
    PciAddress::new(bus, device, function)
}

fn machine() -> FakeMachine {
    FakeMachine::bare(FakeConfig {
        dma_limit: 64 << 20,
        ..FakeConfig::modern()
    })
}

#[derive(Default)]
struct UnitState {
    regs: BTreeMap<u64, u64>,
    /// Commands executed, in order.
    executed: Vec<Command>,
    /// The device table base when IommuEn was last set.
    enabled_with_table: Option<u64>,
    violations: Vec<String>,
}

/// A fake AMD-Vi unit: executes commands when the tail moves, keeps the
/// status run bits in step with the control register, and records every
/// spec violation minicap commits.
struct FakeUnit<'m> {
    m: &'m FakeMachine,
    state: RefCell<UnitState>,
    /// Failure injection: the command buffer keeps running after CmdBufEn
    /// is cleared.
    never_stops: bool,
    /// Failure injection: no command is ever fetched.
    ignores_commands: bool,
}

impl<'m> FakeUnit<'m> {
    fn new(m: &'m FakeMachine, control_before: u64, efr: u64) -> Self {
        let unit = Self {
            m,
            state: RefCell::default(),
            never_stops: false,
            ignores_commands: false,
        };
        {
            let mut s = unit.state.borrow_mut();
            s.regs.insert(Register::Control.offset(), control_before);
            s.regs.insert(Register::ExtendedFeatures.offset(), efr);
            // The crashed kernel's tables and an exclusion range (ExEn, Allow).
            s.regs
                .insert(Register::DeviceTableBase.offset(), 0x7000_0000 | 0x1ff);
            s.regs
                .insert(Register::ExclusionBase.offset(), 0x8000_0000 | 3);
            s.regs
                .insert(Register::ExclusionLimit.offset(), 0x9000_0000);
            s.regs.insert(Register::CommandHead.offset(), 0x40);
            s.regs.insert(Register::CommandTail.offset(), 0x40);
        }
        unit.update_status();
        unit
    }

    fn reg(&self, r: Register) -> u64 {
        self.state
            .borrow()
            .regs
            .get(&r.offset())
            .copied()
            .unwrap_or(0)
    }

    fn control(&self) -> u64 {
        self.reg(Register::Control)
    }

    fn update_status(&self) {
        let c = self.control();
        let mut run = 0;
        if c & control::CMD_BUF_EN != 0 && c & control::IOMMU_EN != 0 || self.never_stops {
            run |= status::CMD_BUF_RUN;
        }
        if c & control::EVENT_LOG_EN != 0 && c & control::IOMMU_EN != 0 {
            run |= status::EVENT_LOG_RUN;
        }
        self.state
            .borrow_mut()
            .regs
            .insert(Register::Status.offset(), run);
    }

    fn violation(&self, what: String) {
        self.state.borrow_mut().violations.push(what);
    }

    fn read64(&self, addr: u64) -> u64 {
        u64::from_le_bytes(self.m.mem_read(addr, 8).try_into().expect("8 bytes"))
    }

    /// Fetch and execute every command from the head to the tail.
    fn run_commands(&self) {
        let c = self.control();
        if c & control::CMD_BUF_EN == 0 || c & control::IOMMU_EN == 0 || self.ignores_commands {
            return;
        }
        let base = self.reg(Register::CommandBufferBase);
        let ring = base & 0x000f_ffff_ffff_f000;
        let bytes = 16u64 << ((base >> 56) & 0xf);
        let tail = self.reg(Register::CommandTail);
        let mut head = self.reg(Register::CommandHead);
        while head != tail {
            let cmd = Command([self.read64(ring + head), self.read64(ring + head + 8)]);
            match cmd.opcode() {
                OP_COMPLETION_WAIT => {
                    if cmd.0[0] & amdvi::COMPLETION_WAIT_STORE != 0 {
                        let addr = cmd.0[0] & 0x000f_ffff_ffff_fff8;
                        self.m.mem_write(addr, &cmd.0[1].to_le_bytes());
                    }
                }
                OP_INVALIDATE_DEVTAB_ENTRY => {}
                OP_INVALIDATE_IOMMU_ALL => {
                    if self.reg(Register::ExtendedFeatures) & EFR_IA_SUP == 0 {
                        self.violation("INVALIDATE_IOMMU_ALL without EFR.IASup".into());
                    }
                }
                other => self.violation(format!("unknown command opcode {other:#x}")),
            }
            self.state.borrow_mut().executed.push(cmd);
            head = (head + 16) % bytes;
        }
        self.state
            .borrow_mut()
            .regs
            .insert(Register::CommandHead.offset(), head);
    }

    fn executed(&self) -> Vec<Command> {
        self.state.borrow().executed.clone()
    }

    fn assert_clean(&self) {
        assert_eq!(self.state.borrow().violations, Vec::<String>::new());
        self.m.assert_clean();
    }

    /// The device table entry the unit finds for `id`.
    fn dte(&self, id: u16) -> [u64; 4] {
        let table = self.reg(Register::DeviceTableBase) & 0x000f_ffff_ffff_f000;
        let at = table + u64::from(id) * DTE_BYTES;
        [0, 1, 2, 3].map(|i| self.read64(at + 8 * i))
    }
}

impl AmdViRegisters for FakeUnit<'_> {
    fn read(&self, register: Register) -> u64 {
        self.reg(register)
    }

    fn write(&self, register: Register, value: u64) {
        let c = self.control();
        let on = c & control::IOMMU_EN != 0;
        let cmd_on = c & control::CMD_BUF_EN != 0;
        match register {
            Register::DeviceTableBase | Register::ExclusionBase | Register::ExclusionLimit
                if on =>
            {
                self.violation(format!("{register:?} written with IommuEn set"));
            }
            Register::CommandBufferBase | Register::CommandHead if cmd_on => {
                self.violation(format!("{register:?} written with CmdBufEn set"));
            }
            Register::ExtendedFeatures | Register::Status => {
                self.violation(format!("{register:?} is read-only"));
            }
            _ => {}
        }
        if register == Register::Control && value & control::IOMMU_EN != 0 && !on {
            if self.reg(Register::Status) & status::RUNNING != 0 {
                self.violation("IommuEn set before the unit had stopped".into());
            }
            let table = self.reg(Register::DeviceTableBase);
            self.state.borrow_mut().enabled_with_table = Some(table);
        }
        self.state
            .borrow_mut()
            .regs
            .insert(register.offset(), value);
        match register {
            Register::Control => self.update_status(),
            Register::CommandTail => self.run_commands(),
            _ => {}
        }
    }
}

fn allowed(ids: &[PciAddress]) -> AllowedIds {
    let mut requesters = RequesterIds::EMPTY;
    for &f in ids {
        requesters.add(f);
    }
    AllowedIds::new(&requesters, 0, |_| None)
}

const RUNNING_BEFORE: u64 =
    control::IOMMU_EN | control::CMD_BUF_EN | control::EVENT_LOG_EN | control::EVENT_INT_EN;

#[test]
fn takeover_blocks_every_device_but_the_allowed_ones() {
    let m = machine();
    let unit = FakeUnit::new(&m, RUNNING_BEFORE | KEPT, EFR_IA_SUP);
    let disk = at(0, 3, 0);
    let behind_bridge = at(2, 0, 0);
    let done = amdvi::take_over(
        &m,
        &unit,
        ENTRIES,
        &allowed(&[disk, behind_bridge]),
        EFR_IA_SUP,
    )
    .expect("takeover");
    unit.assert_clean();
    assert_eq!(done.control_before, RUNNING_BEFORE | KEPT);
    assert!(done.exclusion_was_on);
    assert_eq!(done.flush, Flush::All);
    assert_eq!(done.entries, ENTRIES);
    // On, with the command buffer; the event log and its interrupt off;
    // the bits minicap does not own kept.
    assert_eq!(
        unit.control(),
        control::IOMMU_EN | control::CMD_BUF_EN | KEPT
    );
    assert_eq!(unit.reg(Register::ExclusionBase), 0);
    assert_eq!(unit.reg(Register::DeviceTableBase) & 0x1ff, 31); // 128 KiB
    assert_eq!(
        unit.state.borrow().enabled_with_table,
        Some(unit.reg(Register::DeviceTableBase))
    );
    for id in 0..u16::try_from(ENTRIES).expect("small") {
        let expected = if id == device_id(disk) || id == device_id(behind_bridge) {
            dte::UNTRANSLATED
        } else {
            dte::BLOCKED
        };
        assert_eq!(unit.dte(id), expected, "device ID {id:#06x}");
    }
    let ops: Vec<u64> = unit.executed().iter().map(Command::opcode).collect();
    assert_eq!(ops, vec![OP_INVALIDATE_IOMMU_ALL, OP_COMPLETION_WAIT]);
}

#[test]
fn without_invalidate_all_every_entry_is_invalidated_through_a_wrapping_ring() {
    let m = machine();
    let unit = FakeUnit::new(&m, RUNNING_BEFORE, 0);
    let done = amdvi::take_over(&m, &unit, ENTRIES, &allowed(&[at(0, 3, 0)]), 0).expect("takeover");
    unit.assert_clean();
    assert_eq!(done.flush, Flush::EachEntry(ENTRIES));
    let executed = unit.executed();
    // 4096 invalidations through a 256-entry ring, then the wait.
    assert_eq!(executed.len(), 4097);
    for (id, cmd) in executed[..4096].iter().enumerate() {
        assert_eq!(
            *cmd,
            Command::invalidate_device_entry(u16::try_from(id).expect("small"))
        );
    }
    assert_eq!(executed[4096].opcode(), OP_COMPLETION_WAIT);
}

#[test]
fn a_unit_that_was_off_is_started_with_the_same_tables() {
    let m = machine();
    let unit = FakeUnit::new(&m, KEPT, EFR_IA_SUP);
    let done = amdvi::take_over(&m, &unit, ENTRIES, &allowed(&[at(0, 3, 0)]), EFR_IA_SUP)
        .expect("takeover");
    unit.assert_clean();
    assert!(done.control_before & control::IOMMU_EN == 0);
    assert_eq!(unit.dte(0x18), dte::UNTRANSLATED);
    assert_eq!(unit.dte(0x19), dte::BLOCKED);
}

#[test]
fn a_command_buffer_that_never_stops_fails_before_anything_is_changed() {
    let m = machine();
    let mut unit = FakeUnit::new(&m, RUNNING_BEFORE, EFR_IA_SUP);
    unit.never_stops = true;
    unit.update_status();
    let err = amdvi::take_over(&m, &unit, ENTRIES, &allowed(&[at(0, 3, 0)]), EFR_IA_SUP)
        .expect_err("the unit never stops");
    assert!(matches!(err, AmdViError::DidNotStop { status } if status & status::CMD_BUF_RUN != 0));
    // The old tables are still in place, the unit off.
    assert_eq!(unit.reg(Register::DeviceTableBase), 0x7000_0000 | 0x1ff);
    assert_eq!(unit.control() & control::IOMMU_EN, 0);
    assert!(err.to_string().contains("did not stop"), "{err}");
}

#[test]
fn a_unit_that_fetches_no_command_times_out_on_the_wait_or_the_full_ring() {
    for (efr, expected) in [
        (EFR_IA_SUP, AmdViError::CompletionWaitTimeout),
        (0, AmdViError::CommandBufferStuck),
    ] {
        let m = machine();
        let mut unit = FakeUnit::new(&m, RUNNING_BEFORE, efr);
        unit.ignores_commands = true;
        let err = amdvi::take_over(&m, &unit, ENTRIES, &allowed(&[at(0, 3, 0)]), efr)
            .expect_err("no command runs");
        assert_eq!(err, expected);
    }
}

#[test]
fn out_of_dma_memory_is_reported_before_the_unit_is_touched() {
    let m = FakeMachine::bare(FakeConfig {
        dma_limit: 64 << 10,
        ..FakeConfig::modern()
    });
    let unit = FakeUnit::new(&m, RUNNING_BEFORE, EFR_IA_SUP);
    let err = amdvi::take_over(&m, &unit, ENTRIES, &allowed(&[]), EFR_IA_SUP)
        .expect_err("128 KiB table in 64 KiB");
    assert_eq!(err, AmdViError::OutOfMemory("device table"));
    assert_eq!(unit.control(), RUNNING_BEFORE);
}

#[test]
fn allowed_ids_add_the_bridge_aliases_and_the_ivrs_alias_once() {
    // 03:04.1 behind a conventional bridge 02:03.0 behind a PCIe-to-PCI
    // bridge 01:00.0; the IVRS says 03:04.1 appears as 02:03.0 too.
    let bridges = Bridges::from_list(&[
        minicap_drivers::dma_alias::Bridge {
            address: at(0, 0x1c, 0),
            secondary_bus: 1,
            kind: minicap_drivers::dma_alias::BridgeKind::PciePort,
        },
        minicap_drivers::dma_alias::Bridge {
            address: at(1, 0, 0),
            secondary_bus: 2,
            kind: minicap_drivers::dma_alias::BridgeKind::PcieToPci,
        },
        minicap_drivers::dma_alias::Bridge {
            address: at(2, 3, 0),
            secondary_bus: 3,
            kind: minicap_drivers::dma_alias::BridgeKind::OwnId,
        },
    ]);
    let requesters = bridges.requester_ids(&[at(3, 4, 1)]);
    let ids = AllowedIds::new(&requesters, 0, |id| (id == 0x0321).then_some(0x0218));
    assert_eq!(ids.all(), &[0x0321, 0x0218, 0x0200]);
    assert_eq!(ids.dropped, 0);
}

#[test]
fn register_and_command_encodings() {
    assert_eq!(device_id(at(0x12, 0x1f, 7)), 0x12ff);
    assert_eq!(
        device_table_register(0x1234_5000, 65536),
        0x1234_5000 | 0x1ff
    );
    assert_eq!(device_table_register(0x1234_5000, 128), 0x1234_5000);
    assert_eq!(
        command_buffer_register(0x0008_0000_0000_1000),
        0x0008_0000_0000_1000 | 8 << 56
    );
    let wait = Command::completion_wait(0x000f_1234_5678_9ab8, 0xdead);
    assert_eq!(
        wait.0,
        [0x1000_0000_0000_0000 | 0x000f_1234_5678_9ab8 | 1, 0xdead]
    );
    assert_eq!(
        Command::invalidate_device_entry(0xbeef).0,
        [0x2000_0000_0000_beef, 0]
    );
    assert_eq!(Command::invalidate_all().0, [0x8000_0000_0000_0000, 0]);
    assert_eq!(dte::BLOCKED[0], 0b11);
    assert_eq!(dte::UNTRANSLATED[0], 0b11 | 3 << 61);
}

#[test]
fn a_unit_lets_through_the_device_ids_of_its_own_segment_only() {
    // Device IDs are segment-local: 0001:00:03.0 and 0000:00:03.0 are both
    // 0x0018; only the unit of the function's segment may list it.
    let mut requesters = RequesterIds::EMPTY;
    requesters.add(PciAddress {
        segment: 1,
        ..at(0, 3, 0)
    });
    requesters.add(at(0, 4, 0));
    let segment_1 = AllowedIds::new(&requesters, 1, |_| None);
    assert_eq!(segment_1.all(), &[0x0018]);
    let segment_0 = AllowedIds::new(&requesters, 0, |_| None);
    assert_eq!(segment_0.all(), &[0x0020]);
    assert!(AllowedIds::new(&requesters, 2, |_| None).all().is_empty());
}
