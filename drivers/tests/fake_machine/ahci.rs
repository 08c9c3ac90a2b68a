//! A fake AHCI HBA (AHCI 1.3.1) on the fake PCI bus, with ATA disks and
//! ATAPI devices on its ports, for the AHCI driver's host tests.
//!
//! It implements what the driver uses, strictly: generic host control
//! (CAP, GHC with AE/HR/IE, PI, VS, CAP2, BOHC with a BIOS that lets go
//! late or never), and per port CLB/FB, PxIS (write 1 to clear), PxIE,
//! PxCMD (ST/CR, FRE/FR, CLO, SUD), PxTFD, PxSIG, PxSSTS/PxSCTL
//! (COMRESET, held at least 1 ms), PxSERR and PxCI. Issued commands are
//! parsed from the command list and table in fake memory; the PRDT is
//! walked to move data between memory and the disk. Disks answer IDENTIFY
//! DEVICE (512- or 4096-byte logical sectors), READ/WRITE DMA EXT and
//! FLUSH CACHE (EXT).
//!
//! Like a real HBA (and QEMU), a port reports its device's signature and
//! task file only once FIS reception is on. Whatever the AHCI or ATA specs
//! forbid is recorded as a *violation*; every test ends with
//! [`AhciMachine::assert_clean`].
//!
//! A machine may start *dirty*, as a crashed kernel leaves it: bus
//! mastering on, GHC.IE and PxIE set, port 0 running with a command issued
//! from a command list in memory minicap never allocated. Should that
//! command ever run (the port running with bus mastering on), it is a
//! violation.

use super::platform::{Core, DeviceModel, Fake};
use super::{idx, key, mask, ConfigSpace, Sparse};
use minicap_drivers::access::Width;
use minicap_drivers::pci::PciAddress;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// Where the HBA sits (q35's built-in one is at 00:1f.2).
pub const AHCI_FN: PciAddress = PciAddress::new(0, 0x1f, 2);
/// BAR 5 (ABAR): 32-bit memory.
pub const ABAR_BASE: u64 = 0xfebf_0000;
pub const ABAR_LEN: u64 = 0x2000;
/// Where the crashed kernel's command list and FIS area were.
pub const STALE_CLB: u64 = 0x0dea_0000;
pub const STALE_FB: u64 = 0x0dea_0400;

pub const PCI_BUS_MASTER: u16 = 1 << 2;
pub const PCI_MEMORY: u16 = 1 << 1;

// GHC.
const GHC_HR: u32 = 1 << 0;
const GHC_IE: u32 = 1 << 1;
const GHC_AE: u32 = 1 << 31;
// BOHC.
const BOHC_BOS: u32 = 1 << 0;
const BOHC_OOS: u32 = 1 << 1;
const BOHC_OOC: u32 = 1 << 3;
const BOHC_BB: u32 = 1 << 4;
// PxCMD.
const ST: u32 = 1 << 0;
const SUD: u32 = 1 << 1;
const CLO: u32 = 1 << 3;
const FRE: u32 = 1 << 4;
const FR: u32 = 1 << 14;
const CR: u32 = 1 << 15;
/// Bits of PxCMD software may write here (ST, SUD, POD, CLO, FRE, ICC).
const CMD_WRITABLE: u32 = 0xf000_001f;
// PxIS.
pub const IS_DHRS: u32 = 1 << 0;
pub const IS_PSS: u32 = 1 << 1;
pub const IS_TFES: u32 = 1 << 30;
pub const IS_HBFS: u32 = 1 << 29;
/// PxSERR.DIAG.X: device exchanged (set by a COMRESET here).
const SERR_DIAG_X: u32 = 1 << 26;
// Task file.
pub const STATUS_OK: u8 = 0x50; // DRDY | DSC
pub const STATUS_ERR: u8 = 0x51; // DRDY | DSC | ERR
pub const ERROR_ABORT: u8 = 0x04;
pub const ERROR_IDNF: u8 = 0x10;
pub const ERROR_UNC: u8 = 0x40;
const TFD_RESET: u32 = 0x7f;
const TFD_BSY: u32 = 0x80;

pub const SIG_ATA: u32 = 0x0000_0101;
pub const SIG_ATAPI: u32 = 0xeb14_0101;

// ATA commands.
pub const READ_DMA_EXT: u8 = 0x25;
pub const WRITE_DMA_EXT: u8 = 0x35;
pub const FLUSH_CACHE: u8 = 0xe7;
pub const FLUSH_CACHE_EXT: u8 = 0xea;
pub const IDENTIFY_DEVICE: u8 = 0xec;

/// An ATA disk.
#[derive(Clone, Debug)]
pub struct DiskConfig {
    pub sectors: u64,
    pub sector_size: u32,
    pub lba48: bool,
    pub flush_ext: bool,
    pub model: String,
    /// Word 255 carries a checksum (0xA5 signature).
    pub checksum: bool,
    /// The checksum is wrong.
    pub bad_checksum: bool,
    /// After a reset the link reports DET = 1 (device present, no PHY
    /// communication) until a COMRESET.
    pub needs_comreset: bool,
    /// BSY stays set this long after the link comes up.
    pub busy_ms: u64,
}

impl DiskConfig {
    pub fn new(sectors: u64, sector_size: u32) -> Self {
        Self {
            sectors,
            sector_size,
            lba48: true,
            flush_ext: true,
            model: "MINICAP FAKE DISK".into(),
            checksum: true,
            bad_checksum: false,
            needs_comreset: false,
            busy_ms: 0,
        }
    }
}

/// What is attached to a port.
#[derive(Clone, Debug)]
pub enum Attached {
    Nothing,
    Disk(DiskConfig),
    /// An ATAPI device (a CD-ROM): not a disk.
    Atapi,
}

/// How the machine is built.
#[derive(Clone, Debug)]
pub struct AhciConfig {
    /// One entry per port (CAP.NP = len − 1).
    pub ports: Vec<Attached>,
    /// PI (None: every port).
    pub implemented: Option<u32>,
    pub s64a: bool,
    pub sclo: bool,
    /// Staggered spin-up: links stay down until PxCMD.SUD.
    pub sss: bool,
    /// Command slots (CAP.NCS + 1).
    pub slots: u32,
    /// VS; 1.2 and later have CAP2/BOHC.
    pub version: u32,
    /// CAP2.BOH.
    pub boh: bool,
    /// The BIOS owns the HBA (BOHC.BOS) at start ...
    pub bios_owned: bool,
    /// ... and lets go this long after OOS is set (None: never).
    pub bios_release_ms: Option<u64>,
    pub dma_base: u64,
    pub dma_limit: u64,
    /// Left as a crashed kernel leaves it (module doc).
    pub dirty: bool,
    pub map_mmio_ok: bool,
}

impl AhciConfig {
    /// One 64 MiB disk with 512-byte sectors on port 0 of a 6-port HBA,
    /// like QEMU's ich9-ahci with one ide-hd.
    pub fn one_disk(sector_size: u32) -> Self {
        let sectors = (64 << 20) / u64::from(sector_size);
        let mut ports = vec![Attached::Nothing; 6];
        ports[0] = Attached::Disk(DiskConfig::new(sectors, sector_size));
        Self {
            ports,
            implemented: None,
            s64a: true,
            sclo: false,
            sss: false,
            slots: 32,
            version: 0x0001_0000,
            boh: false,
            bios_owned: false,
            bios_release_ms: None,
            dma_base: 0x0100_0000,
            dma_limit: 16 << 20,
            dirty: false,
            map_mmio_ok: true,
        }
    }
}

/// When issued commands complete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Completion {
    /// When PxCI is written.
    #[default]
    AtIssue,
    /// On the n-th read of the port's PxCI or PxIS after issue.
    AfterPolls(u32),
    /// Never (the command hangs).
    Never,
}

/// Failure injection, changeable at any time.
#[derive(Default)]
pub struct AhciKnobs {
    pub completion: Cell<Completion>,
    /// The command with this sequence number (0: the first issued on any
    /// port) ends with this ATA status and error.
    pub fail_command: Cell<Option<(u64, u8, u8)>>,
    /// The command with this sequence number ends with a host bus fatal
    /// error.
    pub host_error_command: Cell<Option<u64>>,
    /// A failed command's PxCI bit clears and the port goes on, as QEMU's
    /// HBA did before 8.2 (7.2 included) instead of keeping PxCI set and
    /// halting (AHCI §6.2.2.1).
    pub clear_ci_on_error: Cell<bool>,
    /// PxCMD.CR and FR never clear.
    pub stop_stuck: Cell<bool>,
    /// GHC.HR never clears.
    pub reset_stuck: Cell<bool>,
}

/// A command the HBA ran (or failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtaCommand {
    pub seq: u64,
    pub port: u8,
    pub command: u8,
    pub lba: u64,
    /// The count field (0 means 65536 for READ/WRITE DMA EXT).
    pub count: u32,
    /// Header W bit.
    pub write: bool,
    /// PRDs: (address, bytes).
    pub prds: Vec<(u64, u64)>,
    /// ATA status it ended with (None: a host error).
    pub status: Option<u8>,
}

impl AtaCommand {
    pub fn bytes(&self) -> u64 {
        self.prds.iter().map(|&(_, l)| l).sum()
    }
}

/// Things that happened, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AhciEvent {
    /// PCI command register after a write.
    PciCommand(u16),
    /// The HBA reset (GHC.HR).
    HbaReset,
    /// A COMRESET on this port.
    Comreset(u8),
    /// OOS set in BOHC.
    OsOwnershipRequested,
}

#[derive(Clone, Copy, Debug)]
struct Issued {
    seq: u64,
    slot: u32,
    polls: u32,
}

#[derive(Clone, Debug)]
struct FakePort {
    attached: Attached,
    clb: u64,
    fb: u64,
    is: u32,
    ie: u32,
    cmd: u32,
    tfd: u32,
    sig: u32,
    det: u32,
    sctl: u32,
    serr: u32,
    ci: u32,
    /// The device's first D2H FIS went out (needs FRE).
    fis_sent: bool,
    /// BSY until this time (µs).
    busy_until: u64,
    /// When PxSCTL.DET was set to 1.
    comreset_since: Option<u64>,
    /// A COMRESET happened since the last HBA reset.
    comreset_done: bool,
    pending: Option<Issued>,
    /// After an error the port processes nothing until ST is cleared.
    halted: bool,
    /// A command the crashed kernel issued (dirty start).
    stale: bool,
}

impl FakePort {
    fn new(attached: Attached) -> Self {
        Self {
            attached,
            clb: 0,
            fb: 0,
            is: 0,
            ie: 0,
            cmd: 0,
            tfd: TFD_RESET,
            sig: u32::MAX,
            det: 0,
            sctl: 0,
            serr: 0,
            ci: 0,
            fis_sent: false,
            busy_until: 0,
            comreset_since: None,
            comreset_done: false,
            pending: None,
            halted: false,
            stale: false,
        }
    }

    fn disk(&self) -> Option<&DiskConfig> {
        match &self.attached {
            Attached::Disk(d) => Some(d),
            _ => None,
        }
    }

    fn has_device(&self) -> bool {
        !matches!(self.attached, Attached::Nothing)
    }
}

#[derive(Default)]
struct AhciLog {
    events: Vec<AhciEvent>,
    commands: Vec<AtaCommand>,
    flushes: u32,
    issued: u64,
    hba_resets: u32,
    bohc_accesses: u32,
}

struct Hba {
    ghc: u32,
    bohc: u32,
    /// When OOS was set (µs).
    oos_since: Option<u64>,
    ports: Vec<FakePort>,
}

/// The AHCI machine: the shared fake platform around [`Ahci`].
pub type AhciMachine = Fake<Ahci>;

impl AhciMachine {
    pub fn new(cfg: AhciConfig) -> Self {
        Fake(Ahci::new(cfg))
    }
}

/// The HBA model with its disks.
pub struct Ahci {
    core: Core,
    cfg: AhciConfig,
    pub knobs: AhciKnobs,
    disks: RefCell<BTreeMap<u8, Sparse>>,
    hba: RefCell<Hba>,
    log: RefCell<AhciLog>,
}

impl Ahci {
    fn new(cfg: AhciConfig) -> Self {
        assert!(!cfg.ports.is_empty() && cfg.ports.len() <= 32);
        let knobs = AhciKnobs::default();
        let mut space = ConfigSpace::new(0x8086, 0x2922);
        space.set8(0x09, 0x01); // prog-if: AHCI 1.0
        space.set8(0x0a, 0x06); // SATA
        space.set8(0x0b, 0x01); // mass storage
        space.set32(0x24, u32::try_from(ABAR_BASE).unwrap());
        let ports = cfg.ports.iter().cloned().map(FakePort::new).collect();
        let mut hba = Hba {
            ghc: 0,
            bohc: 0,
            oos_since: None,
            ports,
        };
        if cfg.bios_owned {
            hba.bohc = BOHC_BOS;
        }
        let m = Self {
            core: Core::new(cfg.dma_base, cfg.dma_limit, 100),
            knobs,
            disks: RefCell::default(),
            hba: RefCell::new(hba),
            log: RefCell::default(),
            cfg,
        };
        {
            let mut hba = m.hba.borrow_mut();
            for port in &mut hba.ports {
                m.link_reset(port, true);
            }
        }
        if m.cfg.dirty {
            space.set16(0x04, PCI_MEMORY | PCI_BUS_MASTER);
            let mut hba = m.hba.borrow_mut();
            hba.ghc = GHC_AE | GHC_IE;
            let port = &mut hba.ports[0];
            port.clb = STALE_CLB;
            port.fb = STALE_FB;
            port.cmd = ST | CR | FRE | FR;
            port.ie = u32::MAX;
            port.is = IS_TFES | IS_DHRS;
            port.serr = SERR_DIAG_X;
            port.fis_sent = true;
            port.tfd = u32::from(STATUS_OK) | TFD_BSY;
            port.sig = SIG_ATA;
            port.ci = 1;
            port.stale = true;
            port.pending = Some(Issued {
                seq: u64::MAX,
                slot: 0,
                polls: 0,
            });
        }
        m.core.pci.borrow_mut().insert(key(AHCI_FN), space);
        m
    }

    // ----- observations -----

    pub fn events(&self) -> Vec<AhciEvent> {
        self.log.borrow().events.clone()
    }

    pub fn commands(&self) -> Vec<AtaCommand> {
        self.log.borrow().commands.clone()
    }

    /// Data commands (READ/WRITE DMA EXT) only.
    pub fn transfers(&self) -> Vec<AtaCommand> {
        self.commands()
            .into_iter()
            .filter(|c| c.command == READ_DMA_EXT || c.command == WRITE_DMA_EXT)
            .collect()
    }

    pub fn flushes(&self) -> u32 {
        self.log.borrow().flushes
    }

    pub fn hba_resets(&self) -> u32 {
        self.log.borrow().hba_resets
    }

    pub fn bohc_accesses(&self) -> u32 {
        self.log.borrow().bohc_accesses
    }

    pub fn pci_command(&self) -> u16 {
        self.core.command(AHCI_FN)
    }

    pub fn bus_master(&self) -> bool {
        self.pci_command() & PCI_BUS_MASTER != 0
    }

    pub fn ghc(&self) -> u32 {
        self.hba.borrow().ghc
    }

    pub fn bohc(&self) -> u32 {
        self.hba.borrow().bohc
    }

    pub fn port_cmd(&self, port: u8) -> u32 {
        self.hba.borrow().ports[usize::from(port)].cmd
    }

    pub fn port_ie(&self, port: u8) -> u32 {
        self.hba.borrow().ports[usize::from(port)].ie
    }

    /// The device on `port` turns busy for `ms` milliseconds.
    pub fn set_busy(&self, port: u8, ms: u64) {
        let until = self.time() + ms * 1000;
        self.hba.borrow_mut().ports[usize::from(port)].busy_until = until;
    }

    /// A command is issued and not completed on `port`.
    pub fn outstanding(&self, port: u8) -> bool {
        self.hba.borrow().ports[usize::from(port)].pending.is_some()
    }

    // ----- memory and disks -----

    pub fn disk_read(&self, port: u8, offset: u64, len: usize) -> Vec<u8> {
        self.disks
            .borrow()
            .get(&port)
            .map_or_else(|| vec![0; len], |d| d.get(offset, len))
    }

    pub fn disk_write(&self, port: u8, offset: u64, data: &[u8]) {
        self.disks
            .borrow_mut()
            .entry(port)
            .or_default()
            .write(offset, data);
    }

    pub fn disk_fill(&self, port: u8, offset: u64, len: u64, value: u8) {
        self.disks
            .borrow_mut()
            .entry(port)
            .or_default()
            .fill(offset, len, value);
    }

    // ----- internals -----

    fn violation(&self, what: String) {
        self.core.violation(what);
    }

    fn event(&self, e: AhciEvent) {
        self.log.borrow_mut().events.push(e);
    }

    fn time(&self) -> u64 {
        self.core.clock.get()
    }

    /// The link after a reset or COMRESET: down, task file and signature
    /// unknown until the device's first D2H FIS.
    fn link_reset(&self, port: &mut FakePort, by_hba: bool) {
        port.tfd = TFD_RESET;
        port.sig = u32::MAX;
        port.fis_sent = false;
        port.pending = None;
        port.ci = 0;
        port.halted = false;
        port.stale = false;
        port.det = 0;
        if !port.has_device() {
            return;
        }
        let needs_comreset = port.disk().is_some_and(|d| d.needs_comreset);
        if by_hba && (self.cfg.sss && port.cmd & SUD == 0) {
            return;
        }
        port.det = if needs_comreset && !port.comreset_done {
            1
        } else {
            3
        };
        port.busy_until = self.time() + port.disk().map_or(0, |d| d.busy_ms) * 1000;
        self.send_initial_fis(port);
    }

    /// The device's first D2H FIS: sets PxTFD and PxSIG, if FIS reception
    /// is on and the link up.
    fn send_initial_fis(&self, port: &mut FakePort) {
        if port.fis_sent || port.cmd & FRE == 0 || port.det != 3 || port.serr & SERR_DIAG_X != 0 {
            return;
        }
        port.fis_sent = true;
        port.tfd = u32::from(STATUS_OK);
        port.sig = match port.attached {
            Attached::Disk(_) => SIG_ATA,
            Attached::Atapi => SIG_ATAPI,
            Attached::Nothing => u32::MAX,
        };
    }

    fn task_file(&self, port: &FakePort) -> u32 {
        if port.fis_sent && self.time() < port.busy_until {
            port.tfd | TFD_BSY
        } else {
            port.tfd
        }
    }

    fn hba_reset(&self) {
        self.log.borrow_mut().hba_resets += 1;
        self.event(AhciEvent::HbaReset);
        let mut hba = self.hba.borrow_mut();
        hba.ghc = 0;
        let stuck = self.knobs.stop_stuck.get();
        for port in &mut hba.ports {
            if stuck && port.cmd & (ST | CR) != 0 {
                // A port that ignores even the HBA reset, with whatever
                // it was running.
                continue;
            }
            port.cmd = 0;
            port.is = 0;
            port.ie = 0;
            port.serr = 0;
            port.sctl = 0;
            port.comreset_done = false;
            self.link_reset(port, true);
        }
    }

    fn bus_master_on(&self) {
        // A port left running by the crashed kernel now reaches memory.
        let hba = self.hba.borrow();
        for (n, port) in hba.ports.iter().enumerate() {
            if port.stale && port.cmd & ST != 0 && port.ci != 0 {
                self.violation(format!(
                    "bus mastering enabled while port {n} still runs the crashed kernel's command \
                     (command list at {STALE_CLB:#x})"
                ));
            }
        }
    }

    fn read_register(&self, off: u64) -> u32 {
        let ports = self.cfg.ports.len() as u64;
        match off {
            0x00 => self.cap(),
            0x04 => self.hba.borrow().ghc,
            0x08 => 0,
            0x0c => self.implemented(),
            0x10 => self.cfg.version,
            0x24 if self.cfg.version >= 0x0001_0200 => u32::from(self.cfg.boh),
            0x28 if self.cfg.version >= 0x0001_0200 => {
                self.log.borrow_mut().bohc_accesses += 1;
                self.update_bios();
                self.hba.borrow().bohc
            }
            o if (0x100..0x100 + 0x80 * ports).contains(&o) => {
                let n = usize::try_from((o - 0x100) / 0x80).unwrap();
                self.port_read(n, (o - 0x100) % 0x80)
            }
            o => {
                self.violation(format!("read of AHCI register at {o:#x}"));
                0
            }
        }
    }

    fn cap(&self) -> u32 {
        let np = u32::try_from(self.cfg.ports.len() - 1).unwrap();
        let mut cap = np | (self.cfg.slots - 1) << 8 | 1 << 30; // SNCQ
        if self.cfg.s64a {
            cap |= 1 << 31;
        }
        if self.cfg.sss {
            cap |= 1 << 27;
        }
        if self.cfg.sclo {
            cap |= 1 << 24;
        }
        cap
    }

    fn implemented(&self) -> u32 {
        self.cfg
            .implemented
            .unwrap_or(u32::MAX >> (32 - self.cfg.ports.len()))
    }

    fn update_bios(&self) {
        let mut hba = self.hba.borrow_mut();
        let Some(since) = hba.oos_since else {
            return;
        };
        if hba.bohc & BOHC_BOS == 0 {
            return;
        }
        match self.cfg.bios_release_ms {
            Some(ms) if self.time() >= since + ms * 1000 => {
                hba.bohc &= !(BOHC_BOS | BOHC_BB);
                hba.bohc |= BOHC_OOC;
            }
            // A BIOS that takes longer than 25 ms says it is busy.
            Some(ms) if ms > 25 => hba.bohc |= BOHC_BB,
            None => hba.bohc |= BOHC_BB,
            _ => {}
        }
    }

    fn write_register(&self, off: u64, value: u32) {
        let ports = self.cfg.ports.len() as u64;
        match off {
            0x04 => {
                if value & GHC_IE != 0 {
                    self.violation("GHC.IE set: interrupts enabled".into());
                }
                if value & GHC_HR != 0 {
                    if self.knobs.reset_stuck.get() {
                        self.hba.borrow_mut().ghc |= GHC_HR;
                    } else {
                        self.hba_reset();
                    }
                } else {
                    self.hba.borrow_mut().ghc = value & (GHC_AE | GHC_IE);
                }
            }
            0x28 if self.cfg.version >= 0x0001_0200 && self.cfg.boh => {
                self.log.borrow_mut().bohc_accesses += 1;
                let mut hba = self.hba.borrow_mut();
                if value & BOHC_OOC != 0 {
                    hba.bohc &= !BOHC_OOC;
                }
                if value & BOHC_OOS != 0 && hba.bohc & BOHC_OOS == 0 {
                    hba.bohc |= BOHC_OOS;
                    hba.oos_since = Some(self.time());
                    drop(hba);
                    self.event(AhciEvent::OsOwnershipRequested);
                }
            }
            o if (0x100..0x100 + 0x80 * ports).contains(&o) => {
                let n = usize::try_from((o - 0x100) / 0x80).unwrap();
                self.port_write(n, (o - 0x100) % 0x80, value);
            }
            o => self.violation(format!("write of {value:#x} to AHCI register at {o:#x}")),
        }
    }

    fn port_access_ok(&self, n: usize) -> bool {
        if self.implemented() & (1 << n) == 0 {
            self.violation(format!("access to port {n}, which is not implemented"));
            return false;
        }
        if self.hba.borrow().ghc & GHC_AE == 0 {
            self.violation(format!("access to port {n} with GHC.AE = 0"));
        }
        true
    }

    fn port_read(&self, n: usize, reg: u64) -> u32 {
        if !self.port_access_ok(n) {
            return 0;
        }
        if reg == 0x10 || reg == 0x38 {
            self.polled(n);
        }
        let hba = self.hba.borrow();
        let port = &hba.ports[n];
        match reg {
            0x00 => u32::try_from(port.clb & 0xffff_ffff).unwrap(),
            0x04 => u32::try_from(port.clb >> 32).unwrap(),
            0x08 => u32::try_from(port.fb & 0xffff_ffff).unwrap(),
            0x0c => u32::try_from(port.fb >> 32).unwrap(),
            0x10 => port.is,
            0x14 => port.ie,
            0x18 => port.cmd,
            0x20 => self.task_file(port),
            0x24 => port.sig,
            0x28 => {
                if port.det == 3 {
                    0x113 // IPM active, Gen 1, DET 3
                } else {
                    port.det
                }
            }
            0x2c => port.sctl,
            0x30 => port.serr,
            0x34 => 0,
            0x38 => port.ci,
            r => {
                drop(hba);
                self.violation(format!("read of port {n} register {r:#x}"));
                0
            }
        }
    }

    fn port_write(&self, n: usize, reg: u64, value: u32) {
        if !self.port_access_ok(n) {
            return;
        }
        let mut problems = Vec::new();
        let mut issue = false;
        {
            let mut hba = self.hba.borrow_mut();
            let port = &mut hba.ports[n];
            let running = port.cmd & (ST | CR) != 0;
            let receiving = port.cmd & (FRE | FR) != 0;
            let set_low = |a: &mut u64, v: u32| *a = (*a & !0xffff_ffff) | u64::from(v);
            let set_high = |a: &mut u64, v: u32| *a = (*a & 0xffff_ffff) | u64::from(v) << 32;
            match reg {
                0x00 | 0x04 if running => {
                    problems.push(format!("port {n}: PxCLB written while running"));
                }
                0x08 | 0x0c if receiving => {
                    problems.push(format!("port {n}: PxFB written while receiving FISes"));
                }
                0x04 | 0x0c if value != 0 && !self.cfg.s64a => {
                    problems.push(format!(
                        "port {n}: upper address register {reg:#x} written without S64A"
                    ));
                }
                0x00 => {
                    if !value.is_multiple_of(1024) {
                        problems.push(format!("port {n}: PxCLB {value:#x} not 1 KiB aligned"));
                    }
                    set_low(&mut port.clb, value);
                }
                0x04 => set_high(&mut port.clb, value),
                0x08 => {
                    if !value.is_multiple_of(256) {
                        problems.push(format!("port {n}: PxFB {value:#x} not 256 B aligned"));
                    }
                    set_low(&mut port.fb, value);
                }
                0x0c => set_high(&mut port.fb, value),
                0x10 => port.is &= !value,
                0x14 => {
                    if value != 0 {
                        problems.push(format!("port {n}: PxIE = {value:#x}"));
                    }
                    port.ie = value;
                }
                0x18 => self.write_port_command(n, port, value, &mut problems),
                0x2c => {
                    let det = value & 0xf;
                    if det == 1 {
                        if port.cmd & ST != 0 {
                            problems.push(format!("port {n}: COMRESET while PxCMD.ST = 1"));
                        }
                        port.comreset_since = Some(self.time());
                        port.det = 0;
                        port.pending = None;
                        port.ci = 0;
                    } else if det == 0 {
                        if let Some(since) = port.comreset_since.take() {
                            if self.time() < since + 1000 {
                                problems.push(format!(
                                    "port {n}: COMRESET held {} µs, less than 1 ms",
                                    self.time() - since
                                ));
                            }
                            port.comreset_done = true;
                            // DIAG.X (device exchanged): until software
                            // clears it, the device's FIS does not update
                            // PxTFD and PxSIG.
                            port.serr |= SERR_DIAG_X;
                            self.link_reset(port, false);
                            self.event(AhciEvent::Comreset(u8::try_from(n).unwrap()));
                        }
                    }
                    port.sctl = value;
                }
                0x30 => {
                    port.serr &= !value;
                    self.send_initial_fis(port);
                }
                0x34 => {
                    if value != 0 {
                        problems.push(format!("port {n}: PxSACT written (NCQ)"));
                    }
                }
                0x38 => {
                    if port.cmd & ST == 0 {
                        problems.push(format!("port {n}: PxCI written with ST = 0"));
                    } else if value == 0 || value.count_ones() != 1 {
                        problems.push(format!("port {n}: PxCI written with {value:#x}"));
                    } else if value.trailing_zeros() >= self.cfg.slots {
                        problems.push(format!("port {n}: slot beyond CAP.NCS issued"));
                    } else if port.pending.is_some() || port.ci != 0 {
                        problems.push(format!(
                            "port {n}: a second non-queued command issued while one is outstanding"
                        ));
                    } else {
                        port.ci |= value;
                        issue = true;
                    }
                }
                r => problems.push(format!("port {n}: write of {value:#x} to register {r:#x}")),
            }
        }
        for p in problems {
            self.violation(p);
        }
        if issue {
            self.issue(n);
        }
    }

    fn write_port_command(
        &self,
        n: usize,
        port: &mut FakePort,
        value: u32,
        problems: &mut Vec<String>,
    ) {
        let old = port.cmd;
        let new = (old & !CMD_WRITABLE) | (value & CMD_WRITABLE);
        let stuck = self.knobs.stop_stuck.get();
        // FIS reception.
        if new & FRE != 0 && old & FRE == 0 {
            if port.fb == 0 {
                problems.push(format!("port {n}: FRE set without a FIS area"));
            }
            port.cmd |= FRE | FR;
            self.send_initial_fis(port);
        } else if new & FRE == 0 && old & FRE != 0 {
            if old & (ST | CR) != 0 {
                problems.push(format!("port {n}: FRE cleared while the port runs"));
            }
            port.cmd &= !FRE;
            if !stuck {
                port.cmd &= !FR;
            }
        }
        // Spin-up.
        if new & SUD != 0 && old & SUD == 0 {
            port.cmd |= SUD;
            if self.cfg.sss {
                self.link_reset(port, false);
            }
        }
        // Command list override.
        if new & CLO != 0 {
            if !self.cfg.sclo {
                problems.push(format!("port {n}: CLO set without CAP.SCLO"));
            } else if old & ST != 0 {
                problems.push(format!("port {n}: CLO set while ST = 1"));
            } else {
                port.tfd &= !(0x88);
                port.busy_until = 0;
            }
        }
        // Start / stop.
        if new & ST != 0 && old & ST == 0 {
            let tfd = self.task_file(port);
            if port.cmd & FRE == 0 {
                problems.push(format!("port {n}: ST set with FRE = 0"));
            }
            if tfd & 0x88 != 0 {
                problems.push(format!("port {n}: ST set with BSY/DRQ ({tfd:#x})"));
            }
            if port.det != 3 {
                problems.push(format!("port {n}: ST set with the link down"));
            }
            if port.clb == 0 {
                problems.push(format!("port {n}: ST set without a command list"));
            }
            port.cmd |= ST | CR;
        } else if new & ST == 0 && old & ST != 0 {
            port.cmd &= !ST;
            if !stuck {
                port.cmd &= !CR;
                port.ci = 0;
                port.pending = None;
                port.halted = false;
                port.stale = false;
            }
        }
        port.cmd = (port.cmd & !(0xf000_0006)) | (new & 0x0000_0006);
    }

    /// A read of PxCI or PxIS: commands waiting for polls may complete.
    fn polled(&self, n: usize) {
        let Completion::AfterPolls(wanted) = self.knobs.completion.get() else {
            return;
        };
        let due = {
            let mut hba = self.hba.borrow_mut();
            let port = &mut hba.ports[n];
            match port.pending.as_mut() {
                Some(issued) if !port.stale && !port.halted => {
                    issued.polls += 1;
                    issued.polls >= wanted
                }
                _ => false,
            }
        };
        if due {
            self.execute(n);
        }
    }

    fn issue(&self, n: usize) {
        let seq = {
            let mut log = self.log.borrow_mut();
            log.issued += 1;
            log.issued - 1
        };
        {
            let mut hba = self.hba.borrow_mut();
            if hba.ghc & GHC_IE != 0 {
                self.violation("command issued with GHC.IE set".into());
            }
            let port = &mut hba.ports[n];
            if port.ie != 0 {
                self.violation(format!("port {n}: command issued with PxIE set"));
            }
            port.pending = Some(Issued {
                seq,
                slot: port.ci.trailing_zeros(),
                polls: 0,
            });
        }
        if !self.bus_master() {
            self.violation(format!("port {n}: command issued with bus mastering off"));
            return;
        }
        if self.knobs.completion.get() == Completion::AtIssue {
            self.execute(n);
        }
    }

    // ----- the HBA's DMA -----

    fn dma_read(&self, addr: u64, len: usize) -> Vec<u8> {
        self.core.mem.borrow().get(addr, len)
    }

    fn dma_u32(&self, addr: u64) -> u32 {
        let b = self.dma_read(addr, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Run the command pending on port `n`.
    fn execute(&self, n: usize) {
        let (issued, clb, fb, disk) = {
            let hba = self.hba.borrow();
            let port = &hba.ports[n];
            let Some(issued) = port.pending else {
                return;
            };
            (issued, port.clb, port.fb, port.disk().cloned())
        };
        let Some(disk) = disk else {
            self.violation(format!(
                "port {n}: command issued to a device that is not a disk"
            ));
            return;
        };
        let mut problems = Vec::new();
        let header = clb + 32 * u64::from(issued.slot);
        let flags = self.dma_u32(header);
        let ctba = u64::from(self.dma_u32(header + 8)) | u64::from(self.dma_u32(header + 12)) << 32;
        let cfl = flags & 0x1f;
        let write = flags & (1 << 6) != 0;
        let prdtl = flags >> 16;
        if cfl != 5 {
            problems.push(format!("CFL {cfl}, a register H2D FIS is 5 dwords"));
        }
        if flags & 0x0000_ffa0 != 0 {
            problems.push(format!("unexpected command header flags {flags:#x}"));
        }
        if ctba % 128 != 0 || ctba == 0 {
            problems.push(format!("command table at {ctba:#x}"));
        }
        if !self.cfg.s64a && ctba >> 32 != 0 {
            problems.push("command table above 4 GiB without S64A".into());
        }
        let fis = self.dma_read(ctba, 20);
        let command = fis[2];
        let lba = u64::from(fis[4])
            | u64::from(fis[5]) << 8
            | u64::from(fis[6]) << 16
            | u64::from(fis[8]) << 24
            | u64::from(fis[9]) << 32
            | u64::from(fis[10]) << 40;
        let count = u32::from(fis[12]) | u32::from(fis[13]) << 8;
        if fis[0] != 0x27 || fis[1] & 0x80 == 0 {
            problems.push(format!("FIS type {:#x} flags {:#x}", fis[0], fis[1]));
        }
        let mut prds = Vec::new();
        for i in 0..u64::from(prdtl) {
            let entry = ctba + 0x80 + 16 * i;
            let dba = u64::from(self.dma_u32(entry)) | u64::from(self.dma_u32(entry + 4)) << 32;
            let dbc = self.dma_u32(entry + 12);
            if dba & 1 != 0 {
                problems.push(format!("PRD {i}: address {dba:#x} not word aligned"));
            }
            if dbc & 1 == 0 {
                problems.push(format!("PRD {i}: odd byte count ({dbc:#x} + 1)"));
            }
            if dbc & 0x7fc0_0000 != 0 {
                problems.push(format!("PRD {i}: reserved bits in {dbc:#x}"));
            }
            if dbc & (1 << 31) != 0 {
                problems.push(format!("PRD {i}: interrupt bit set"));
            }
            if !self.cfg.s64a && dba >> 32 != 0 {
                problems.push(format!("PRD {i}: above 4 GiB without S64A"));
            }
            prds.push((dba, u64::from(dbc & 0x3f_ffff) + 1));
        }
        let total: u64 = prds.iter().map(|&(_, l)| l).sum();
        let sector = u64::from(disk.sector_size);
        let (mut status, mut error) = (STATUS_OK, 0u8);
        let mut pio = false;
        match command {
            IDENTIFY_DEVICE => {
                pio = true;
                if write || total != 512 {
                    problems.push(format!("IDENTIFY with W = {write}, {total} bytes"));
                }
                let data = identify_data(&disk);
                self.scatter(&prds, &data);
            }
            READ_DMA_EXT | WRITE_DMA_EXT => {
                if fis[7] & 0x40 == 0 {
                    problems.push(format!("device register {:#x} without LBA", fis[7]));
                }
                if write != (command == WRITE_DMA_EXT) {
                    problems.push(format!("command {command:#x} with W = {write}"));
                }
                let sectors = if count == 0 { 65536 } else { u64::from(count) };
                if sectors * sector != total {
                    problems.push(format!(
                        "{sectors} sectors of {sector} bytes but PRDs of {total} bytes"
                    ));
                }
                if !disk.lba48 {
                    (status, error) = (STATUS_ERR, ERROR_ABORT);
                } else if lba + sectors > disk.sectors {
                    (status, error) = (STATUS_ERR, ERROR_IDNF);
                } else if problems.is_empty()
                    && self
                        .knobs
                        .fail_command
                        .get()
                        .is_none_or(|f| f.0 != issued.seq)
                {
                    self.move_data(n, command == WRITE_DMA_EXT, lba * sector, &prds);
                }
            }
            FLUSH_CACHE | FLUSH_CACHE_EXT => {
                if prdtl != 0 || write {
                    problems.push(format!("flush with {prdtl} PRDs, W = {write}"));
                }
                if command == FLUSH_CACHE_EXT && !disk.flush_ext {
                    (status, error) = (STATUS_ERR, ERROR_ABORT);
                } else {
                    self.log.borrow_mut().flushes += 1;
                }
            }
            _ => (status, error) = (STATUS_ERR, ERROR_ABORT),
        }
        if let Some((seq, s, e)) = self.knobs.fail_command.get() {
            if seq == issued.seq {
                (status, error) = (s, e);
            }
        }
        let host_error = self.knobs.host_error_command.get() == Some(issued.seq);
        for p in problems {
            self.violation(format!("port {n}, command {command:#x}: {p}"));
        }
        self.log.borrow_mut().commands.push(AtaCommand {
            seq: issued.seq,
            port: u8::try_from(n).unwrap(),
            command,
            lba,
            count,
            write,
            prds,
            status: (!host_error).then_some(status),
        });
        let mut hba = self.hba.borrow_mut();
        let port = &mut hba.ports[n];
        if host_error {
            port.is |= IS_HBFS;
            port.halted = true;
            return;
        }
        port.tfd = u32::from(status) | u32::from(error) << 8;
        if status & 1 != 0 {
            port.is |= IS_TFES;
            if self.knobs.clear_ci_on_error.get() {
                port.ci &= !(1 << issued.slot);
                port.pending = None;
            } else {
                port.halted = true;
            }
            return;
        }
        // PRDBC, the D2H FIS, completion.
        drop(hba);
        let done = u32::try_from(total).unwrap_or(u32::MAX);
        self.core
            .mem
            .borrow_mut()
            .write(header + 4, &done.to_le_bytes());
        if fb != 0 {
            self.core
                .mem
                .borrow_mut()
                .write(fb + 0x40, &[0x34, 0x40, status, error]);
        }
        let mut hba = self.hba.borrow_mut();
        let port = &mut hba.ports[n];
        port.is |= if pio { IS_PSS } else { IS_DHRS };
        port.ci &= !(1 << issued.slot);
        port.pending = None;
    }

    fn scatter(&self, prds: &[(u64, u64)], data: &[u8]) {
        let mut at = 0usize;
        for &(addr, len) in prds {
            let n = idx(len).min(data.len() - at);
            self.core.mem.borrow_mut().write(addr, &data[at..at + n]);
            at += n;
        }
    }

    fn move_data(&self, n: usize, to_disk: bool, mut pos: u64, prds: &[(u64, u64)]) {
        let port = u8::try_from(n).unwrap();
        let mut disks = self.disks.borrow_mut();
        let disk = disks.entry(port).or_default();
        for &(addr, len) in prds {
            let mut buf = vec![0u8; idx(len)];
            if to_disk {
                self.core.mem.borrow().read(addr, &mut buf);
                disk.write(pos, &buf);
            } else {
                disk.read(pos, &mut buf);
                self.core.mem.borrow_mut().write(addr, &buf);
            }
            pos += len;
        }
    }

    fn mmio_ok(&self, addr: u64, width: Width) -> bool {
        if width != Width::U32 {
            self.violation(format!(
                "{}-byte AHCI register access at {addr:#x}",
                width.bytes()
            ));
            return false;
        }
        if !(ABAR_BASE..ABAR_BASE + ABAR_LEN).contains(&addr) {
            self.violation(format!("MMIO access at {addr:#x}, outside ABAR"));
            return false;
        }
        if self.pci_command() & PCI_MEMORY == 0 {
            self.violation(format!("MMIO access at {addr:#x} with memory decoding off"));
            return false;
        }
        true
    }
}

/// IDENTIFY DEVICE data for `disk` (ATA8-ACS words, as a disk fills them).
pub fn identify_data(disk: &DiskConfig) -> Vec<u8> {
    let mut w = [0u16; 256];
    let name = format!("{:<40}", disk.model);
    for i in 0..20 {
        let b = name.as_bytes();
        w[27 + i] = u16::from_be_bytes([b[2 * i], b[2 * i + 1]]);
    }
    w[49] = 0x0300; // LBA, DMA
    w[60] = u16::try_from(disk.sectors.min(0x0fff_ffff) & 0xffff).unwrap();
    w[61] = u16::try_from(disk.sectors.min(0x0fff_ffff) >> 16).unwrap();
    w[82] = 0x4000 | 1 << 5;
    w[83] = 0x4000 | u16::from(disk.lba48) << 10 | u16::from(disk.flush_ext) << 13;
    w[84] = 0x4000;
    w[85] = 1 << 5;
    w[86] = u16::from(disk.lba48) << 10 | u16::from(disk.flush_ext) << 13;
    w[87] = 0x4000;
    if disk.lba48 {
        for i in 0..4 {
            w[100 + i] = u16::try_from((disk.sectors >> (16 * i)) & 0xffff).unwrap();
        }
    }
    if disk.sector_size > 512 {
        w[106] = 0x5000;
        let words = disk.sector_size / 2;
        w[117] = u16::try_from(words & 0xffff).unwrap();
        w[118] = u16::try_from(words >> 16).unwrap();
    } else {
        w[106] = 0x4000;
    }
    let mut bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
    if disk.checksum {
        bytes[510] = 0xa5;
        let sum = bytes[..511].iter().fold(0u8, |s, &b| s.wrapping_add(b));
        bytes[511] = 0u8
            .wrapping_sub(sum)
            .wrapping_add(u8::from(disk.bad_checksum));
    }
    bytes
}

impl DeviceModel for Ahci {
    fn core(&self) -> &Core {
        &self.core
    }

    fn accept_window(
        &self,
        _function: PciAddress,
        _bar: u8,
        _offset: u64,
        addr: u64,
        len: u64,
    ) -> bool {
        if !self.cfg.map_mmio_ok {
            return false;
        }
        if addr < ABAR_BASE || addr + len > ABAR_BASE + ABAR_LEN {
            self.violation(format!("register window {addr:#x}+{len:#x} outside ABAR"));
        }
        if self.core.overlaps_mapped(addr, len) {
            self.violation(format!(
                "register window {addr:#x}+{len:#x} overlaps a live one"
            ));
            return false;
        }
        true
    }

    fn register_read(&self, addr: u64, width: Width) -> u64 {
        if !self.mmio_ok(addr, width) {
            return mask(width);
        }
        u64::from(self.read_register(addr - ABAR_BASE))
    }

    fn register_write(&self, addr: u64, width: Width, value: u64) {
        if !self.mmio_ok(addr, width) {
            return;
        }
        self.write_register(addr - ABAR_BASE, u32::try_from(value).unwrap());
    }

    fn command_written(&self, function: PciAddress, before: u16, after: u16) {
        if function == AHCI_FN {
            self.event(AhciEvent::PciCommand(after));
            if after & PCI_BUS_MASTER != 0 && before & PCI_BUS_MASTER == 0 {
                self.bus_master_on();
            }
        }
    }
}
