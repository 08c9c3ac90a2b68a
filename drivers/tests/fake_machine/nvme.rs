//! A fake NVMe controller (NVMe 1.4) in the shared fake platform: a PCI
//! function with the controller registers in BAR 0, admin and I/O queue
//! pairs in the machine's memory, PRP walking, completions with phase
//! tags, and one namespace on a sparse in-memory disk.
//!
//! Like the virtio-blk machine it is strict: whatever the driver does that
//! the specification (or sense) forbids is recorded as a *violation*, and
//! every test ends with [`FakeNvme::assert_clean`]. It can be found as the
//! crashed kernel left it: enabled, bus mastering on, with commands
//! pending in queues at old addresses — they "run" (and are recorded as a
//! violation) if the driver lets the controller master the bus before
//! disabling it.
//!
//! I/O commands may stay in flight: the controller takes them when the
//! tail doorbell rings and completes them then ([`Completion::AtSubmit`]),
//! when the driver next reads the completion queue (in order or newest
//! first), or when the test says ([`FakeNvme::complete_held`]). While a
//! command is in flight its PRP list belongs to the controller: it is
//! walked again at completion and must not have changed.

pub use super::held::Completion;
use super::held::{Held, Numbered};
use super::platform::{Core, DeviceModel, Fake};
use super::{idx, mask, ConfigSpace, Sparse, PAGE};
use minicap_drivers::access::Width;
use minicap_drivers::pci::PciAddress;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// Where the NVMe function sits.
pub const NVME_FN: PciAddress = PciAddress::new(0, 4, 0);
/// BAR 0/1 (64-bit memory): the controller registers.
pub const BAR0: u64 = 0xfe80_0000;
pub const BAR_LEN: u64 = 0x4000;
/// Capability offset of MSI-X in the function's config space.
pub const CAP_MSIX: u16 = 0x40;

// PCI command bits.
pub const CMD_MEMORY: u16 = 1 << 1;
pub const CMD_BUS_MASTER: u16 = 1 << 2;
pub const CMD_INTX_DISABLE: u16 = 1 << 10;

// Register offsets.
const CAP_LOW: u64 = 0x00;
const CAP_HIGH: u64 = 0x04;
const VS: u64 = 0x08;
const INTMS: u64 = 0x0c;
const INTMC: u64 = 0x10;
const CC: u64 = 0x14;
const CSTS: u64 = 0x1c;
const NSSR: u64 = 0x20;
const AQA: u64 = 0x24;
const ASQ_LOW: u64 = 0x28;
const ASQ_HIGH: u64 = 0x2c;
const ACQ_LOW: u64 = 0x30;
const ACQ_HIGH: u64 = 0x34;
const DOORBELLS: u64 = 0x1000;

pub const CC_EN: u32 = 1;
pub const CSTS_RDY: u32 = 1;
pub const CSTS_CFS: u32 = 2;

// Opcodes.
pub const ADMIN_CREATE_SQ: u8 = 0x01;
pub const ADMIN_CREATE_CQ: u8 = 0x05;
pub const ADMIN_IDENTIFY: u8 = 0x06;
pub const ADMIN_SET_FEATURES: u8 = 0x09;
pub const IO_FLUSH: u8 = 0x00;
pub const IO_WRITE: u8 = 0x01;
pub const IO_READ: u8 = 0x02;

// Status (SCT, SC).
pub const SUCCESS: (u8, u8) = (0, 0);
pub const INVALID_OPCODE: (u8, u8) = (0, 0x01);
pub const INVALID_FIELD: (u8, u8) = (0, 0x02);
pub const INVALID_NAMESPACE: (u8, u8) = (0, 0x0b);
pub const PRP_OFFSET_INVALID: (u8, u8) = (0, 0x13);
pub const LBA_OUT_OF_RANGE: (u8, u8) = (0, 0x80);
pub const INVALID_QUEUE_ID: (u8, u8) = (1, 0x01);
pub const INVALID_QUEUE_SIZE: (u8, u8) = (1, 0x02);
pub const COMPLETION_QUEUE_INVALID: (u8, u8) = (1, 0x00);
pub const WRITE_FAULT: (u8, u8) = (2, 0x80);

/// Where the "crashed kernel" left its queues (and where its pending
/// commands would complete to).
pub const STALE_ADMIN_SQ: u64 = 0x0bad_0000;
pub const STALE_ADMIN_CQ: u64 = 0x0bad_1000;
pub const STALE_IO_CQ: u64 = 0x0bad_2000;
/// What the crashed kernel's pending writes would write from (and the
/// disk range they would hit).
pub const STALE_DATA: u64 = 0x0bad_8000;
pub const STALE_LBA: u64 = 8;

/// How the machine is built.
#[derive(Clone, Debug)]
pub struct NvmeConfig {
    /// LBADS of the namespace's format in use (9: 512 B, 12: 4 KiB).
    pub block_shift: u8,
    /// NSZE.
    pub blocks: u64,
    /// MDTS (0: no limit), in minimum pages.
    pub mdts: u8,
    /// CAP.MQES (0's based).
    pub mqes: u16,
    /// CAP.TO, 500 ms units.
    pub timeout_units: u8,
    /// CAP.DSTRD.
    pub dstrd: u8,
    /// CAP.MPSMIN / MPSMAX.
    pub mpsmin: u8,
    pub mpsmax: u8,
    /// CAP.CSS bit 0.
    pub nvm_command_set: bool,
    /// Identify VWC bit 0.
    pub volatile_cache: bool,
    /// VS.
    pub version: u32,
    /// The active namespace.
    pub nsid: u32,
    /// Identify NN.
    pub namespaces: u32,
    /// Whether IDENTIFY CNS 02h is supported.
    pub active_list: bool,
    /// The format's metadata bytes per block and FLBAS bit 4.
    pub metadata_bytes: u16,
    pub metadata_interleaved: bool,
    /// FLBAS points beyond NLBAF.
    pub bad_format_index: bool,
    /// Identify SQES / CQES.
    pub sqes: u8,
    pub cqes: u8,
    /// Identify MN.
    pub model: &'static str,
    /// Found as the crashed kernel left it: enabled and ready, bus
    /// mastering on, two writes pending in I/O queue 1.
    pub left_running: bool,
    /// Found enabled but not yet ready (RDY follows after some reads).
    pub left_enabling: bool,
    /// Found with CSTS.CFS set (and enabled).
    pub left_fatal: bool,
    pub initial_command: u16,
    pub msix_enabled: bool,
    pub dma_base: u64,
    pub dma_limit: u64,
}

impl NvmeConfig {
    /// A QEMU-like controller: 512-byte blocks, 64 MiB, MDTS 7 (512 KiB),
    /// CAP.TO 15 (7.5 s), a volatile write cache, namespace 1.
    pub fn qemu() -> Self {
        Self {
            block_shift: 9,
            blocks: 64 << 11,
            mdts: 7,
            mqes: 0x7ff,
            timeout_units: 15,
            dstrd: 0,
            mpsmin: 0,
            mpsmax: 4,
            nvm_command_set: true,
            volatile_cache: true,
            version: 0x0001_0400,
            nsid: 1,
            namespaces: 256,
            active_list: true,
            metadata_bytes: 0,
            metadata_interleaved: false,
            bad_format_index: false,
            sqes: 0x66,
            cqes: 0x44,
            model: "QEMU NVMe Ctrl",
            left_running: false,
            left_enabling: false,
            left_fatal: false,
            initial_command: 0,
            msix_enabled: true,
            dma_base: 0x0100_0000,
            dma_limit: 16 << 20,
        }
    }

    /// The same with 4096-byte blocks.
    pub fn qemu_4k() -> Self {
        Self {
            block_shift: 12,
            blocks: 64 << 8,
            ..Self::qemu()
        }
    }

    /// Bytes of one logical block.
    pub fn block_bytes(&self) -> u64 {
        1 << self.block_shift
    }

    fn cap(&self) -> u64 {
        u64::from(self.mqes)
            | 1 << 16 // CQR: queues must be physically contiguous
            | u64::from(self.timeout_units) << 24
            | u64::from(self.dstrd & 0xf) << 32
            | u64::from(self.nvm_command_set) << 37
            | u64::from(self.mpsmin & 0xf) << 48
            | u64::from(self.mpsmax & 0xf) << 52
    }

    fn stride(&self) -> u64 {
        4 << self.dstrd
    }
}

/// Failure injection, changeable at any time.
#[derive(Default)]
pub struct Knobs {
    pub completion: Cell<Completion>,
    /// The I/O command with this sequence number (0: the first taken)
    /// completes with this status instead of running.
    pub fail_io: Cell<Option<(u64, (u8, u8))>>,
    /// Admin commands with this opcode complete with this status.
    pub fail_admin: Cell<Option<(u8, (u8, u8))>>,
    /// The I/O command with this sequence number never completes.
    pub lose_io: Cell<Option<u64>>,
    /// Taking the I/O command with this sequence number sets CSTS.CFS; a
    /// fatal controller completes nothing.
    pub fatal_at_io: Cell<Option<u64>>,
    /// Admin commands never complete.
    pub admin_silent: Cell<bool>,
    /// CSTS.RDY never clears after CC.EN is cleared.
    pub disable_stuck: Cell<bool>,
    /// CSTS.RDY never sets after CC.EN is set.
    pub enable_stuck: Cell<bool>,
    /// Enabling sets CSTS.CFS instead of RDY.
    pub fatal_on_enable: Cell<bool>,
    /// CSTS reads before RDY follows a change of CC.EN.
    pub ready_delay_reads: Cell<u32>,
    /// Completions name this command identifier instead (None: correct).
    pub wrong_command_id: Cell<Option<u16>>,
    /// The function has left the bus: register reads return all ones and
    /// writes go nowhere.
    pub gone: Cell<bool>,
}

/// An I/O command the controller ran (or failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoRecord {
    /// Order in which the controller took it.
    pub seq: u64,
    pub opcode: u8,
    pub command_id: u16,
    pub slba: u64,
    pub blocks: u32,
    /// Data pages: (physical address, bytes).
    pub segments: Vec<(u64, u64)>,
    /// PRP list pages walked.
    pub list_pages: usize,
    pub status: (u8, u8),
}

impl IoRecord {
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.1).sum()
    }
}

/// Things that happened, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// PCI command register after a write to it.
    Command(u16),
    /// Value written to CC.
    Cc(u32),
    /// The controller reset (CC.EN 1 → 0 took effect: queues dropped).
    Reset,
    /// CSTS.RDY changed to this.
    Ready(bool),
    /// An admin command taken: opcode, CDW10.
    Admin(u8, u32),
}

#[derive(Clone, Copy, Debug)]
struct Sq {
    base: u64,
    entries: u16,
    cqid: u16,
    head: u16,
    tail: u16,
}

#[derive(Clone, Copy, Debug)]
struct Cq {
    base: u64,
    entries: u16,
    /// Where the next completion goes.
    tail: u16,
    /// The host's head, from its doorbell.
    head: u16,
    /// The phase tag written in this pass.
    phase: u16,
    interrupts: bool,
}

/// A submission queue entry as fetched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sqe {
    opcode: u8,
    flags: u8,
    command_id: u16,
    nsid: u32,
    mptr: u64,
    prp1: u64,
    prp2: u64,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
}

/// The data a command's PRPs describe.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Walk {
    segments: Vec<(u64, u64)>,
    list_pages: usize,
}

#[derive(Clone, Debug)]
struct InFlight {
    seq: u64,
    sqid: u16,
    sqe: Sqe,
    /// The PRP walk at fetch time (reads and writes).
    walk: Option<Walk>,
}

impl Numbered for InFlight {
    fn seq(&self) -> u64 {
        self.seq
    }
}

struct Controller {
    cc: u32,
    ready: bool,
    fatal: bool,
    /// CSTS reads left before RDY follows CC.EN.
    transition_reads: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    intms: u32,
    sqs: BTreeMap<u16, Sq>,
    cqs: BTreeMap<u16, Cq>,
    /// The crashed kernel's commands are still pending.
    stale_commands: bool,
    queue_count_set: bool,
    /// When (fake clock, µs) CC.EN was last set.
    enabled_at: u64,
}

#[derive(Default)]
struct Log {
    events: Vec<Event>,
    io: Vec<IoRecord>,
    resets: u32,
    flushes: u32,
    doorbells: u32,
}

/// The NVMe machine: the shared fake platform around [`Nvme`].
pub type FakeNvme = Fake<Nvme>;

impl FakeNvme {
    pub fn new(cfg: NvmeConfig) -> Self {
        Fake(Nvme::new(cfg))
    }
}

/// The controller model with its namespace's disk.
pub struct Nvme {
    core: Core,
    cfg: NvmeConfig,
    pub knobs: Knobs,
    disk: RefCell<Sparse>,
    ctrl: RefCell<Controller>,
    log: RefCell<Log>,
    in_flight: Held<InFlight>,
}

impl Nvme {
    fn new(cfg: NvmeConfig) -> Self {
        let knobs = Knobs::default();
        let mut ctrl = Controller {
            cc: 0,
            ready: false,
            fatal: false,
            transition_reads: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            intms: 0,
            sqs: BTreeMap::new(),
            cqs: BTreeMap::new(),
            stale_commands: false,
            queue_count_set: false,
            enabled_at: 0,
        };
        if cfg.left_running || cfg.left_enabling || cfg.left_fatal {
            ctrl.cc = 0x0046_0001;
            ctrl.ready = cfg.left_running;
            ctrl.fatal = cfg.left_fatal;
            ctrl.transition_reads = if cfg.left_enabling { 3 } else { 0 };
            ctrl.aqa = 0x001f_001f;
            ctrl.asq = STALE_ADMIN_SQ;
            ctrl.acq = STALE_ADMIN_CQ;
            ctrl.stale_commands = cfg.left_running;
            ctrl.cqs.insert(
                1,
                Cq {
                    base: STALE_IO_CQ,
                    entries: 64,
                    tail: 5,
                    head: 5,
                    phase: 1,
                    interrupts: true,
                },
            );
        }
        let core = Core::new(cfg.dma_base, cfg.dma_limit, 1000);
        core.pci
            .borrow_mut()
            .insert(super::key(NVME_FN), nvme_config_space(&cfg));
        core.mem.borrow_mut().fill(STALE_DATA, 2 * PAGE, 0xee);
        Self {
            core,
            cfg,
            knobs,
            disk: RefCell::default(),
            ctrl: RefCell::new(ctrl),
            log: RefCell::default(),
            in_flight: Held::default(),
        }
    }

    pub fn config(&self) -> &NvmeConfig {
        &self.cfg
    }

    // ----- observations -----

    pub fn events(&self) -> Vec<Event> {
        self.log.borrow().events.clone()
    }

    pub fn io(&self) -> Vec<IoRecord> {
        self.log.borrow().io.clone()
    }

    pub fn writes(&self) -> Vec<IoRecord> {
        self.io()
            .into_iter()
            .filter(|r| r.opcode == IO_WRITE)
            .collect()
    }

    pub fn resets(&self) -> u32 {
        self.log.borrow().resets
    }

    pub fn flushes(&self) -> u32 {
        self.log.borrow().flushes
    }

    pub fn doorbells(&self) -> u32 {
        self.log.borrow().doorbells
    }

    pub fn max_in_flight(&self) -> usize {
        self.in_flight.most()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn command(&self) -> u16 {
        self.core.command(NVME_FN)
    }

    pub fn msix_enabled(&self) -> bool {
        self.core.pci.borrow()[&super::key(NVME_FN)].get16(CAP_MSIX + 2) & (1 << 15) != 0
    }

    pub fn cc(&self) -> u32 {
        self.ctrl.borrow().cc
    }

    pub fn intms(&self) -> u32 {
        self.ctrl.borrow().intms
    }

    pub fn enabled(&self) -> bool {
        self.ctrl.borrow().cc & CC_EN != 0
    }

    pub fn queue_count_set(&self) -> bool {
        self.ctrl.borrow().queue_count_set
    }

    /// Bases of the admin queues and I/O queue pair 1 (0 if absent).
    pub fn queue_bases(&self) -> [u64; 4] {
        let c = self.ctrl.borrow();
        [
            c.asq,
            c.acq,
            c.sqs.get(&1).map_or(0, |q| q.base),
            c.cqs.get(&1).map_or(0, |q| q.base),
        ]
    }

    /// Entries of I/O submission queue 1.
    pub fn io_queue_entries(&self) -> u16 {
        self.ctrl.borrow().sqs.get(&1).map_or(0, |q| q.entries)
    }

    /// Whether any I/O completion queue raises interrupts.
    pub fn io_interrupts(&self) -> bool {
        self.ctrl
            .borrow()
            .cqs
            .iter()
            .any(|(&id, q)| id != 0 && q.interrupts)
    }

    /// Set CSTS.CFS now (the controller hit a fatal error).
    pub fn set_fatal(&self) {
        self.ctrl.borrow_mut().fatal = true;
    }

    /// Complete the I/O commands in flight at these positions (0: the
    /// oldest now in flight), in this order.
    pub fn complete_held(&self, positions: &[usize]) {
        for command in self.in_flight.take_positions(positions) {
            self.complete_io(&command);
        }
    }

    // ----- memory and disk -----

    pub fn disk_write(&self, offset: u64, data: &[u8]) {
        self.disk.borrow_mut().write(offset, data);
    }

    pub fn disk_read(&self, offset: u64, len: usize) -> Vec<u8> {
        self.disk.borrow().get(offset, len)
    }

    pub fn disk_fill(&self, offset: u64, len: u64, value: u8) {
        self.disk.borrow_mut().fill(offset, len, value);
    }

    // ----- internals -----

    fn event(&self, e: Event) {
        self.log.borrow_mut().events.push(e);
    }

    fn bus_master(&self) -> bool {
        self.command() & CMD_BUS_MASTER != 0
    }

    /// The crashed kernel's commands run if the controller may master the
    /// bus before it was disabled: their data reaches the disk and their
    /// completions land in old memory.
    fn run_stale_commands_if_allowed(&self) {
        let runs = {
            let c = self.ctrl.borrow();
            c.stale_commands && c.cc & CC_EN != 0 && !c.fatal
        } && self.bus_master();
        if !runs {
            return;
        }
        self.ctrl.borrow_mut().stale_commands = false;
        self.core.violation(
            "the crashed kernel's pending commands ran: bus mastering was on before the \
             controller was disabled"
                .into(),
        );
        let data = self.core.mem.borrow().get(STALE_DATA, idx(2 * PAGE));
        self.disk
            .borrow_mut()
            .write(STALE_LBA * self.cfg.block_bytes(), &data);
        self.core
            .ram_write(STALE_IO_CQ + 5 * 16 + 12, 4, 0x0001_0007);
    }

    fn reset_controller(&self) {
        let mut c = self.ctrl.borrow_mut();
        c.sqs.clear();
        c.cqs.clear();
        c.stale_commands = false;
        c.fatal = false;
        c.intms = 0;
        c.queue_count_set = false;
        drop(c);
        self.in_flight.clear();
        self.log.borrow_mut().resets += 1;
        self.event(Event::Reset);
    }

    fn read_register(&self, off: u64) -> u32 {
        let cap = self.cfg.cap();
        match off {
            CAP_LOW => (cap & 0xffff_ffff) as u32,
            CAP_HIGH => (cap >> 32) as u32,
            VS => self.cfg.version,
            INTMS | INTMC => {
                self.check_intms_allowed();
                self.ctrl.borrow().intms
            }
            CC => self.ctrl.borrow().cc,
            CSTS => self.read_csts(),
            NSSR => 0,
            AQA => self.ctrl.borrow().aqa,
            ASQ_LOW => (self.ctrl.borrow().asq & 0xffff_ffff) as u32,
            ASQ_HIGH => (self.ctrl.borrow().asq >> 32) as u32,
            ACQ_LOW => (self.ctrl.borrow().acq & 0xffff_ffff) as u32,
            ACQ_HIGH => (self.ctrl.borrow().acq >> 32) as u32,
            _ => {
                self.core
                    .violation(format!("register read at BAR offset {off:#x}"));
                0
            }
        }
    }

    fn read_csts(&self) -> u32 {
        let mut c = self.ctrl.borrow_mut();
        let enabled = c.cc & CC_EN != 0;
        if c.ready != enabled && !c.fatal {
            let stuck = if enabled {
                self.knobs.enable_stuck.get()
            } else {
                self.knobs.disable_stuck.get()
            };
            if c.transition_reads > 0 {
                c.transition_reads -= 1;
            } else if !stuck {
                c.ready = enabled;
                drop(c);
                self.event(Event::Ready(enabled));
                c = self.ctrl.borrow_mut();
            }
        }
        u32::from(c.ready) | if c.fatal { CSTS_CFS } else { 0 }
    }

    fn check_intms_allowed(&self) {
        if self.msix_enabled() {
            self.core
                .violation("INTMS/INTMC accessed with MSI-X enabled (undefined)".into());
        }
    }

    fn write_register(&self, off: u64, value: u32) {
        let enabled = self.ctrl.borrow().cc & CC_EN != 0;
        let admin_setup = matches!(off, AQA | ASQ_LOW | ASQ_HIGH | ACQ_LOW | ACQ_HIGH);
        if admin_setup && enabled {
            self.core.violation(format!(
                "admin queue register {off:#x} written while the controller is enabled"
            ));
        }
        let set_low = |v: &mut u64| *v = (*v & !0xffff_ffff) | u64::from(value);
        let set_high = |v: &mut u64| *v = (*v & 0xffff_ffff) | u64::from(value) << 32;
        match off {
            INTMS => {
                self.check_intms_allowed();
                self.ctrl.borrow_mut().intms |= value;
            }
            INTMC => {
                self.check_intms_allowed();
                self.ctrl.borrow_mut().intms &= !value;
            }
            CC => self.write_cc(value),
            AQA => self.ctrl.borrow_mut().aqa = value,
            ASQ_LOW => set_low(&mut self.ctrl.borrow_mut().asq),
            ASQ_HIGH => set_high(&mut self.ctrl.borrow_mut().asq),
            ACQ_LOW => set_low(&mut self.ctrl.borrow_mut().acq),
            ACQ_HIGH => set_high(&mut self.ctrl.borrow_mut().acq),
            o if o >= DOORBELLS => self.write_doorbell(o - DOORBELLS, value),
            _ => self.core.violation(format!(
                "register write of {value:#x} at BAR offset {off:#x}"
            )),
        }
    }

    fn write_cc(&self, value: u32) {
        self.event(Event::Cc(value));
        let (old, ready) = {
            let c = self.ctrl.borrow();
            (c.cc, c.ready)
        };
        let was = old & CC_EN != 0;
        let now = value & CC_EN != 0;
        match (was, now) {
            (true, false) => {
                // Clearing EN before RDY follows is undefined, unless the
                // host has waited CAP.TO for it in vain.
                let waited_us = self.core.clock.get() - self.ctrl.borrow().enabled_at;
                let bound_us = u64::from(self.cfg.timeout_units) * 500_000;
                if !ready && !self.ctrl.borrow().fatal && waited_us < bound_us {
                    self.core.violation(format!(
                        "CC.EN cleared {waited_us} us after it was set, while the controller \
                         was still becoming ready"
                    ));
                }
                self.reset_controller();
                let mut c = self.ctrl.borrow_mut();
                c.cc = value;
                c.transition_reads = self.knobs.ready_delay_reads.get();
            }
            (false, true) => {
                self.check_enable(value);
                let mut c = self.ctrl.borrow_mut();
                c.cc = value;
                c.enabled_at = self.core.clock.get();
                c.transition_reads = self.knobs.ready_delay_reads.get();
                if self.knobs.fatal_on_enable.get() {
                    c.fatal = true;
                }
                let entries_sq = u16::try_from((c.aqa & 0xfff) + 1).unwrap_or(0);
                let entries_cq = u16::try_from(((c.aqa >> 16) & 0xfff) + 1).unwrap_or(0);
                let (asq, acq) = (c.asq, c.acq);
                c.cqs.insert(
                    0,
                    Cq {
                        base: acq,
                        entries: entries_cq,
                        tail: 0,
                        head: 0,
                        phase: 1,
                        interrupts: false,
                    },
                );
                c.sqs.insert(
                    0,
                    Sq {
                        base: asq,
                        entries: entries_sq,
                        cqid: 0,
                        head: 0,
                        tail: 0,
                    },
                );
            }
            (true, true) => {
                if value & !(3 << 14) != old & !(3 << 14) {
                    self.core.violation(format!(
                        "CC changed from {old:#x} to {value:#x} while enabled"
                    ));
                }
                self.ctrl.borrow_mut().cc = value;
            }
            (false, false) => self.ctrl.borrow_mut().cc = value,
        }
    }

    fn check_enable(&self, value: u32) {
        let c = self.ctrl.borrow();
        let mut problems = Vec::new();
        if c.ready {
            problems.push("CC.EN set while CSTS.RDY still reads 1".to_string());
        }
        let css = (value >> 4) & 7;
        let mps = (value >> 7) & 0xf;
        let ams = (value >> 11) & 7;
        let iosqes = (value >> 16) & 0xf;
        let iocqes = (value >> 20) & 0xf;
        if css != 0 || ams != 0 {
            problems.push(format!("CC.CSS {css} / AMS {ams}"));
        }
        if mps < u32::from(self.cfg.mpsmin) || mps > u32::from(self.cfg.mpsmax) {
            problems.push(format!("CC.MPS {mps} outside MPSMIN..MPSMAX"));
        }
        if iosqes != 6 || iocqes != 4 {
            problems.push(format!("CC.IOSQES {iosqes} / IOCQES {iocqes}"));
        }
        if c.aqa & 0xfff == 0 || (c.aqa >> 16) & 0xfff == 0 {
            problems.push(format!("AQA {:#x}: admin queues of one entry", c.aqa));
        }
        for (name, base) in [("ASQ", c.asq), ("ACQ", c.acq)] {
            if base == 0 || !base.is_multiple_of(PAGE) {
                problems.push(format!("{name} {base:#x} not a page address"));
            }
        }
        drop(c);
        for p in problems {
            self.core.violation(p);
        }
    }

    fn write_doorbell(&self, off: u64, value: u32) {
        self.log.borrow_mut().doorbells += 1;
        let stride = self.cfg.stride();
        if !off.is_multiple_of(stride) {
            self.core
                .violation(format!("doorbell write between doorbells at +{off:#x}"));
            return;
        }
        let index = off / stride;
        let qid = u16::try_from(index / 2).unwrap_or(u16::MAX);
        let completion = index % 2 == 1;
        {
            let c = self.ctrl.borrow();
            if c.cc & CC_EN == 0 || !c.ready {
                drop(c);
                self.core.violation(format!(
                    "doorbell {index} rung while the controller is not ready"
                ));
                return;
            }
            if c.fatal {
                return;
            }
        }
        if !self.bus_master() {
            self.core
                .violation(format!("doorbell {index} rung with bus mastering off"));
            return;
        }
        let Ok(value) = u16::try_from(value) else {
            self.core
                .violation(format!("doorbell {index} written with {value:#x}"));
            return;
        };
        if completion {
            self.completion_head(qid, value);
        } else {
            self.submission_tail(qid, value);
        }
    }

    fn completion_head(&self, qid: u16, head: u16) {
        let mut c = self.ctrl.borrow_mut();
        let Some(cq) = c.cqs.get_mut(&qid) else {
            drop(c);
            self.core
                .violation(format!("completion doorbell of missing queue {qid}"));
            return;
        };
        let entries = cq.entries;
        let posted = (cq.tail + entries - cq.head) % entries;
        let advanced = (head + entries - cq.head) % entries;
        if head >= entries || advanced > posted {
            let old = cq.head;
            let tail = cq.tail;
            drop(c);
            self.core.violation(format!(
                "completion queue {qid} head moved from {old} to {head} past the tail {tail}"
            ));
            return;
        }
        cq.head = head;
    }

    fn submission_tail(&self, qid: u16, tail: u16) {
        let sq = {
            let mut c = self.ctrl.borrow_mut();
            let Some(sq) = c.sqs.get_mut(&qid) else {
                drop(c);
                self.core
                    .violation(format!("submission doorbell of missing queue {qid}"));
                return;
            };
            if tail >= sq.entries {
                let entries = sq.entries;
                drop(c);
                self.core.violation(format!(
                    "submission queue {qid} tail {tail} >= {entries} entries"
                ));
                return;
            }
            sq.tail = tail;
            *sq
        };
        let mut head = sq.head;
        while head != sq.tail {
            let sqe = self.fetch(sq.base + 64 * u64::from(head));
            head = (head + 1) % sq.entries;
            if let Some(q) = self.ctrl.borrow_mut().sqs.get_mut(&qid) {
                q.head = head;
            }
            if qid == 0 {
                self.admin(sqe);
            } else {
                self.take_io(qid, sqe);
            }
        }
        if self.knobs.completion.get() == Completion::AtSubmit {
            self.complete_ready(false);
        }
    }

    fn ram_u32(&self, addr: u64) -> u32 {
        u32::try_from(self.core.ram_read(addr, 4)).expect("4 bytes")
    }

    fn fetch(&self, at: u64) -> Sqe {
        let dw0 = self.ram_u32(at);
        let [opcode, flags, id_low, id_high] = dw0.to_le_bytes();
        let sqe = Sqe {
            opcode,
            flags,
            command_id: u16::from_le_bytes([id_low, id_high]),
            nsid: self.ram_u32(at + 4),
            mptr: self.core.ram_read(at + 0x10, 8),
            prp1: self.core.ram_read(at + 0x18, 8),
            prp2: self.core.ram_read(at + 0x20, 8),
            cdw10: self.ram_u32(at + 0x28),
            cdw11: self.ram_u32(at + 0x2c),
            cdw12: self.ram_u32(at + 0x30),
        };
        if sqe.flags != 0 {
            self.core.violation(format!(
                "command {:#x} with FUSE/PSDT flags {:#x}",
                sqe.opcode, sqe.flags
            ));
        }
        if sqe.mptr != 0 {
            self.core
                .violation(format!("command {:#x} with a metadata pointer", sqe.opcode));
        }
        for dw in [0x08, 0x0c, 0x34, 0x38, 0x3c] {
            if self.core.ram_read(at + dw, 4) != 0 {
                self.core.violation(format!(
                    "command {:#x}: reserved/unused dword at {dw:#x} not zero",
                    sqe.opcode
                ));
            }
        }
        sqe
    }

    /// Post a completion for `command_id` of submission queue `sqid`.
    fn post(&self, sqid: u16, command_id: u16, status: (u8, u8), result: u32) {
        let mut c = self.ctrl.borrow_mut();
        let Some(sq) = c.sqs.get(&sqid).copied() else {
            return;
        };
        let Some(cq) = c.cqs.get_mut(&sq.cqid) else {
            return;
        };
        if (cq.tail + 1) % cq.entries == cq.head {
            drop(c);
            self.core.violation(format!(
                "completion queue {} overflows: the host let more commands out than it holds",
                sq.cqid
            ));
            return;
        }
        let at = cq.base + 16 * u64::from(cq.tail);
        let phase = cq.phase;
        cq.tail += 1;
        if cq.tail == cq.entries {
            cq.tail = 0;
            cq.phase ^= 1;
        }
        drop(c);
        let command_id = self.knobs.wrong_command_id.get().unwrap_or(command_id);
        let status_half =
            u64::from(phase) | u64::from(status.1) << 1 | u64::from(status.0 & 7) << 9;
        self.core.ram_write(at, 4, u64::from(result));
        self.core.ram_write(at + 4, 4, 0);
        self.core.ram_write(at + 8, 2, u64::from(sq.head));
        self.core.ram_write(at + 10, 2, u64::from(sqid));
        self.core.ram_write(at + 12, 2, u64::from(command_id));
        self.core.ram_write(at + 14, 2, status_half);
    }

    /// Walk the PRPs of a `len`-byte transfer (NVMe 1.4 §4.3).
    fn walk_prps(&self, prp1: u64, prp2: u64, len: u64) -> Result<Walk, String> {
        if !prp1.is_multiple_of(4) {
            return Err(format!("PRP1 {prp1:#x} not dword aligned"));
        }
        let first = len.min(PAGE - prp1 % PAGE);
        let mut walk = Walk {
            segments: vec![(prp1, first)],
            list_pages: 0,
        };
        let mut left = len - first;
        if left == 0 {
            return Ok(walk);
        }
        if left <= PAGE {
            if !prp2.is_multiple_of(PAGE) {
                return Err(format!("PRP2 {prp2:#x} has a page offset"));
            }
            walk.segments.push((prp2, left));
            return Ok(walk);
        }
        if !prp2.is_multiple_of(8) {
            return Err(format!("PRP list {prp2:#x} not qword aligned"));
        }
        let mut entry_at = prp2;
        walk.list_pages = 1;
        while left > 0 {
            let entry = self.core.ram_read(entry_at, 8);
            let last_in_page = entry_at % PAGE == PAGE - 8;
            if last_in_page && left > PAGE {
                // A pointer to the next list page.
                if !entry.is_multiple_of(8) {
                    return Err(format!("PRP list pointer {entry:#x} not qword aligned"));
                }
                entry_at = entry;
                walk.list_pages += 1;
                continue;
            }
            if !entry.is_multiple_of(PAGE) {
                return Err(format!("PRP list entry {entry:#x} has a page offset"));
            }
            let n = left.min(PAGE);
            walk.segments.push((entry, n));
            left -= n;
            entry_at += 8;
        }
        Ok(walk)
    }

    // ----- admin commands -----

    fn admin(&self, sqe: Sqe) {
        self.event(Event::Admin(sqe.opcode, sqe.cdw10));
        if self.knobs.admin_silent.get() {
            return;
        }
        let (status, result) = match self.knobs.fail_admin.get() {
            Some((opcode, status)) if opcode == sqe.opcode => (status, 0),
            _ => self.run_admin(&sqe),
        };
        self.post(0, sqe.command_id, status, result);
    }

    fn run_admin(&self, sqe: &Sqe) -> ((u8, u8), u32) {
        match sqe.opcode {
            ADMIN_IDENTIFY => {
                let data = match sqe.cdw10 & 0xff {
                    1 => self.identify_controller(),
                    0 if sqe.nsid == self.cfg.nsid => self.identify_namespace(),
                    0 if sqe.nsid >= 1 && sqe.nsid <= self.cfg.namespaces => vec![0; 4096],
                    0 => return (INVALID_NAMESPACE, 0),
                    2 if self.cfg.active_list => {
                        let mut list = vec![0u8; 4096];
                        if self.cfg.nsid > sqe.nsid && self.cfg.nsid != 0 {
                            list[..4].copy_from_slice(&self.cfg.nsid.to_le_bytes());
                        }
                        list
                    }
                    _ => return (INVALID_FIELD, 0),
                };
                match self.walk_prps(sqe.prp1, sqe.prp2, 4096) {
                    Ok(walk) => {
                        let mut done = 0;
                        for (addr, n) in walk.segments {
                            self.core
                                .mem
                                .borrow_mut()
                                .write(addr, &data[idx(done)..idx(done + n)]);
                            done += n;
                        }
                        (SUCCESS, 0)
                    }
                    Err(e) => {
                        self.core.violation(format!("IDENTIFY: {e}"));
                        (PRP_OFFSET_INVALID, 0)
                    }
                }
            }
            ADMIN_SET_FEATURES => {
                if sqe.cdw10 & 0xff == 7 {
                    let c = self.ctrl.borrow();
                    let created = c.sqs.len() > 1 || c.cqs.len() > 1;
                    drop(c);
                    if created {
                        self.core
                            .violation("Number of Queues set after creating I/O queues".into());
                    }
                    self.ctrl.borrow_mut().queue_count_set = true;
                    // Granted: what was asked for (0's based both halves).
                    (SUCCESS, sqe.cdw11)
                } else {
                    (INVALID_FIELD, 0)
                }
            }
            ADMIN_CREATE_CQ => self.create_cq(sqe),
            ADMIN_CREATE_SQ => self.create_sq(sqe),
            _ => (INVALID_OPCODE, 0),
        }
    }

    fn create_cq(&self, sqe: &Sqe) -> ((u8, u8), u32) {
        let qid = (sqe.cdw10 & 0xffff) as u16;
        let entries = (sqe.cdw10 >> 16) + 1;
        let contiguous = sqe.cdw11 & 1 != 0;
        let interrupts = sqe.cdw11 & 2 != 0;
        if interrupts {
            self.core.violation(format!(
                "I/O completion queue {qid} created with interrupts enabled"
            ));
        }
        let mut c = self.ctrl.borrow_mut();
        if qid == 0 || qid > 1 || c.cqs.contains_key(&qid) {
            return (INVALID_QUEUE_ID, 0);
        }
        if let Some(refused) = self.check_queue_memory(entries, contiguous, sqe.prp1) {
            return (refused, 0);
        }
        c.cqs.insert(
            qid,
            Cq {
                base: sqe.prp1,
                entries: u16::try_from(entries).expect("checked against MQES"),
                tail: 0,
                head: 0,
                phase: 1,
                interrupts,
            },
        );
        (SUCCESS, 0)
    }

    /// What Create I/O Completion/Submission Queue refuse alike: a size
    /// beyond CAP.MQES, a queue that is not physically contiguous, a base
    /// not page aligned (NVMe 1.4 §5.3, §5.4).
    fn check_queue_memory(&self, entries: u32, contiguous: bool, base: u64) -> Option<(u8, u8)> {
        if entries < 2 || entries > u32::from(self.cfg.mqes) + 1 {
            return Some(INVALID_QUEUE_SIZE);
        }
        if !contiguous {
            return Some(INVALID_FIELD);
        }
        if !base.is_multiple_of(PAGE) {
            return Some(PRP_OFFSET_INVALID);
        }
        None
    }

    fn create_sq(&self, sqe: &Sqe) -> ((u8, u8), u32) {
        let qid = (sqe.cdw10 & 0xffff) as u16;
        let entries = (sqe.cdw10 >> 16) + 1;
        let contiguous = sqe.cdw11 & 1 != 0;
        let cqid = (sqe.cdw11 >> 16) as u16;
        let mut c = self.ctrl.borrow_mut();
        if qid == 0 || qid > 1 || c.sqs.contains_key(&qid) {
            return (INVALID_QUEUE_ID, 0);
        }
        if cqid == 0 || !c.cqs.contains_key(&cqid) {
            return (COMPLETION_QUEUE_INVALID, 0);
        }
        if let Some(refused) = self.check_queue_memory(entries, contiguous, sqe.prp1) {
            return (refused, 0);
        }
        c.sqs.insert(
            qid,
            Sq {
                base: sqe.prp1,
                entries: u16::try_from(entries).expect("checked against MQES"),
                cqid,
                head: 0,
                tail: 0,
            },
        );
        (SUCCESS, 0)
    }

    fn identify_controller(&self) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        d[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        d[4..24].copy_from_slice(&[b'7'; 20]);
        let mut model = [b' '; 40];
        model[..self.cfg.model.len()].copy_from_slice(self.cfg.model.as_bytes());
        d[24..64].copy_from_slice(&model);
        d[77] = self.cfg.mdts;
        d[80..84].copy_from_slice(&self.cfg.version.to_le_bytes());
        d[512] = self.cfg.sqes;
        d[513] = self.cfg.cqes;
        d[516..520].copy_from_slice(&self.cfg.namespaces.to_le_bytes());
        d[525] = u8::from(self.cfg.volatile_cache);
        d
    }

    /// Formats: 0 = 512 B, 1 = 4096 B, 2 = the configured one (with its
    /// metadata), which FLBAS selects (or 5, beyond NLBAF).
    fn identify_namespace(&self) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        let blocks = self.cfg.blocks;
        d[0..8].copy_from_slice(&blocks.to_le_bytes());
        d[8..16].copy_from_slice(&blocks.to_le_bytes());
        d[16..24].copy_from_slice(&blocks.to_le_bytes());
        d[25] = 2; // NLBAF: three formats
        let index: u8 = if self.cfg.bad_format_index { 5 } else { 2 };
        d[26] = index
            | if self.cfg.metadata_interleaved {
                1 << 4
            } else {
                0
            };
        let format = |ms: u16, lbads: u8| u32::from(ms) | u32::from(lbads) << 16;
        let formats = [
            format(0, 9),
            format(0, 12),
            format(self.cfg.metadata_bytes, self.cfg.block_shift),
        ];
        for (i, f) in formats.iter().enumerate() {
            d[128 + 4 * i..132 + 4 * i].copy_from_slice(&f.to_le_bytes());
        }
        d
    }

    // ----- I/O commands -----

    fn take_io(&self, sqid: u16, sqe: Sqe) {
        let seq = self.in_flight.next_seq();
        if self
            .in_flight
            .borrow()
            .iter()
            .any(|c| c.sqid == sqid && c.sqe.command_id == sqe.command_id)
        {
            self.core.violation(format!(
                "command identifier {} reused while in flight",
                sqe.command_id
            ));
        }
        if self.knobs.fatal_at_io.get() == Some(seq) {
            self.set_fatal();
        }
        let walk = if matches!(sqe.opcode, IO_READ | IO_WRITE) {
            let bytes = u64::from((sqe.cdw12 & 0xffff) + 1) << self.cfg.block_shift;
            self.walk_prps(sqe.prp1, sqe.prp2, bytes).ok()
        } else {
            None
        };
        self.in_flight.push(InFlight {
            seq,
            sqid,
            sqe,
            walk,
        });
    }

    /// The driver reads a completion queue: complete what the policy says.
    fn completion_queue_polled(&self) {
        if let Some(newest_first) = self.knobs.completion.get().on_poll() {
            self.complete_ready(newest_first);
        }
    }

    /// Complete every I/O command in flight (but a lost one).
    fn complete_ready(&self, newest_first: bool) {
        if self.ctrl.borrow().fatal {
            return;
        }
        let lost = self.knobs.lose_io.get();
        for command in self.in_flight.take_all_but(lost, newest_first) {
            self.complete_io(&command);
        }
    }

    fn complete_io(&self, command: &InFlight) {
        let status = match self.knobs.fail_io.get() {
            Some((seq, status)) if seq == command.seq => {
                self.record(command, None, status);
                status
            }
            _ => self.run_io(command),
        };
        self.post(command.sqid, command.sqe.command_id, status, 0);
    }

    fn record(&self, command: &InFlight, walk: Option<&Walk>, status: (u8, u8)) {
        let sqe = &command.sqe;
        self.log.borrow_mut().io.push(IoRecord {
            seq: command.seq,
            opcode: sqe.opcode,
            command_id: sqe.command_id,
            slba: u64::from(sqe.cdw11) << 32 | u64::from(sqe.cdw10),
            blocks: (sqe.cdw12 & 0xffff) + 1,
            segments: walk.map(|w| w.segments.clone()).unwrap_or_default(),
            list_pages: walk.map_or(0, |w| w.list_pages),
            status,
        });
    }

    fn run_io(&self, command: &InFlight) -> (u8, u8) {
        let sqe = &command.sqe;
        if sqe.nsid != self.cfg.nsid {
            self.core
                .violation(format!("I/O command for namespace {}", sqe.nsid));
            self.record(command, None, INVALID_NAMESPACE);
            return INVALID_NAMESPACE;
        }
        match sqe.opcode {
            IO_FLUSH => {
                if sqe.prp1 != 0 || sqe.cdw10 != 0 || sqe.cdw12 != 0 {
                    self.core.violation("FLUSH with data fields set".into());
                }
                self.log.borrow_mut().flushes += 1;
                self.record(command, None, SUCCESS);
                SUCCESS
            }
            IO_READ | IO_WRITE => {
                if sqe.cdw12 & !0xffff != 0 {
                    self.core
                        .violation(format!("CDW12 flags {:#x}", sqe.cdw12 >> 16));
                }
                let slba = u64::from(sqe.cdw11) << 32 | u64::from(sqe.cdw10);
                let blocks = u64::from((sqe.cdw12 & 0xffff) + 1);
                let bytes = blocks << self.cfg.block_shift;
                let walk = match self.walk_prps(sqe.prp1, sqe.prp2, bytes) {
                    Ok(walk) => walk,
                    Err(e) => {
                        self.core.violation(format!("command {}: {e}", command.seq));
                        self.record(command, None, PRP_OFFSET_INVALID);
                        return PRP_OFFSET_INVALID;
                    }
                };
                if command.walk.as_ref() != Some(&walk) {
                    self.core.violation(format!(
                        "command {}: its PRP list changed while in flight",
                        command.seq
                    ));
                }
                if self.cfg.mdts != 0 && bytes > PAGE << self.cfg.mdts {
                    self.core.violation(format!(
                        "command {} moves {bytes} bytes, above MDTS {}",
                        command.seq, self.cfg.mdts
                    ));
                    self.record(command, Some(&walk), INVALID_FIELD);
                    return INVALID_FIELD;
                }
                if slba
                    .checked_add(blocks)
                    .is_none_or(|end| end > self.cfg.blocks)
                {
                    self.record(command, Some(&walk), LBA_OUT_OF_RANGE);
                    return LBA_OUT_OF_RANGE;
                }
                let mut pos = slba << self.cfg.block_shift;
                for &(addr, n) in &walk.segments {
                    let mut buf = vec![0u8; idx(n)];
                    if sqe.opcode == IO_READ {
                        self.disk.borrow().read(pos, &mut buf);
                        self.core.mem.borrow_mut().write(addr, &buf);
                    } else {
                        self.core.mem.borrow().read(addr, &mut buf);
                        self.disk.borrow_mut().write(pos, &buf);
                    }
                    pos += n;
                }
                self.record(command, Some(&walk), SUCCESS);
                SUCCESS
            }
            _ => {
                self.core.violation(format!("I/O opcode {:#x}", sqe.opcode));
                self.record(command, None, INVALID_OPCODE);
                INVALID_OPCODE
            }
        }
    }
}

/// The NVMe function's configuration space.
fn nvme_config_space(cfg: &NvmeConfig) -> ConfigSpace {
    let mut c = ConfigSpace::new(0x1b36, 0x0010);
    c.set16(0x04, cfg.initial_command);
    c.set32(0x08, 0x0108_0202); // class 01h, subclass 08h, prog-if 02h, revision 2
    c.set32(0x10, u32::try_from(BAR0 & 0xffff_ffff).unwrap_or(0) | 0x4);
    c.set32(0x14, u32::try_from(BAR0 >> 32).unwrap_or(0));
    // MSI-X: 64 vectors, table and PBA in BAR 0 past the doorbells.
    let control: u16 = 63 | if cfg.msix_enabled { 1 << 15 } else { 0 };
    let mut msix = Vec::new();
    msix.extend_from_slice(&control.to_le_bytes());
    msix.extend_from_slice(&0x2000u32.to_le_bytes());
    msix.extend_from_slice(&0x3000u32.to_le_bytes());
    c.add_capability(CAP_MSIX, 0x11, &msix);
    c.set_writable(CAP_MSIX + 3, 0xc0);
    c
}

impl DeviceModel for Nvme {
    fn core(&self) -> &Core {
        &self.core
    }

    fn accept_window(
        &self,
        function: PciAddress,
        bar: u8,
        offset: u64,
        addr: u64,
        len: u64,
    ) -> bool {
        if function != NVME_FN || bar != 0 {
            self.core
                .violation(format!("map_registers of {function} BAR {bar}"));
            return false;
        }
        if offset.checked_add(len).is_none_or(|end| end > BAR_LEN) {
            self.core.violation(format!(
                "register window +{offset:#x}+{len:#x} beyond BAR 0"
            ));
            return false;
        }
        if self.core.overlaps_mapped(addr, len) {
            self.core.violation(format!(
                "register window {addr:#x}+{len:#x} overlaps another"
            ));
        }
        true
    }

    fn register_read(&self, addr: u64, width: Width) -> u64 {
        let off = addr - BAR0;
        if width != Width::U32 {
            self.core
                .violation(format!("{}-byte register read at {off:#x}", width.bytes()));
            return mask(width);
        }
        if self.command() & CMD_MEMORY == 0 {
            self.core
                .violation("register read with memory decoding off".into());
            return mask(width);
        }
        if self.knobs.gone.get() {
            return mask(width);
        }
        self.run_stale_commands_if_allowed();
        if off >= DOORBELLS {
            self.core.violation(format!("doorbell read at {off:#x}"));
            return 0;
        }
        u64::from(self.read_register(off))
    }

    fn register_write(&self, addr: u64, width: Width, value: u64) {
        let off = addr - BAR0;
        if width != Width::U32 {
            self.core
                .violation(format!("{}-byte register write at {off:#x}", width.bytes()));
            return;
        }
        if self.command() & CMD_MEMORY == 0 {
            self.core
                .violation("register write with memory decoding off".into());
            return;
        }
        if self.knobs.gone.get() {
            return;
        }
        self.run_stale_commands_if_allowed();
        self.write_register(off, u32::try_from(value).unwrap_or(u32::MAX));
    }

    fn command_written(&self, function: PciAddress, _before: u16, after: u16) {
        if function == NVME_FN {
            self.event(Event::Command(after));
            self.run_stale_commands_if_allowed();
        }
    }

    fn dma_reading(&self, addr: u64) {
        let polled = self
            .ctrl
            .borrow()
            .cqs
            .iter()
            .any(|(&id, q)| id != 0 && addr == q.base + 16 * u64::from(q.head) + 14);
        if polled {
            self.completion_queue_polled();
        }
    }
}
