//! Taking an AHCI HBA over from whatever the crashed kernel (or the BIOS)
//! left running, and finding its disks.
//!
//! [`AhciHba::take_over`] follows AHCI 1.3.1 §10 (and Linux
//! `ahci_reset_controller`, `ahci_port_init`; SeaBIOS `ahci_port_setup`):
//!
//! 1. PCI: memory decoding on, bus mastering OFF until the HBA is reset
//!    (a port may still be running the crashed kernel's commands), MSI off.
//! 2. GHC.AE = 1, and the BIOS/OS handoff if CAP2.BOH (§10.6): set
//!    BOHC.OOS, wait 25 ms for BOS to clear, 2 s more while BIOS Busy.
//! 3. HBA reset: GHC.HR = 1, wait ≤ 1 s for it to clear; AE again. This
//!    stops every port and (without staggered spin-up) COMRESETs them.
//! 4. Bus mastering on. Per implemented port: check it stopped, give it a
//!    command list and FIS area in a fresh DMA page, interrupts off, errors
//!    cleared, FIS reception on, powered and spun up. The D2H FIS a disk
//!    sends once FIS reception is on sets PxTFD and PxSIG (QEMU sends it
//!    only then).
//! 5. Wait (all ports at once) for the links; COMRESET ports whose device
//!    is present but not talking (DET = 1); wait for BSY and DRQ to clear.
//!    A port with PxSIG 0x101 holds an ATA disk.
//!
//! GHC.IE and every PxIE stay 0: minicap polls.

use super::disk::AhciDisk;
use super::error::AhciError;
use super::port::{Port, READY_TIMEOUT_MS};
use super::registers::{
    bohc, cap, cap2, det, ghc, tfd, HbaRegs, PortRegs, ABAR, BOHC, CAP, CAP2, GHC, PI, PORTS_AT,
    PORT_STRIDE, PX_CLB, PX_CLBU, PX_FB, PX_FBU, PX_SIG, SIGNATURE_ATA, VS,
};
use super::structures::{COMMAND_LIST_AT, PORT_PAGE_BYTES, RECEIVED_FIS_AT};
use crate::access::{Dma, Registers};
use crate::pci::{self, PciAddress};
use crate::{poll_until, Platform};
use core::fmt;

/// The spec's bound for the HBA reset (AHCI §10.4.3; Linux waits 1 s).
const HBA_RESET_TIMEOUT_MS: u64 = 1_000;
/// The BIOS must release the HBA within 25 ms unless it says it is busy
/// (AHCI §10.6)...
const HANDOFF_TIMEOUT_MS: u64 = 25;
/// ... in which case it gets 2 s (FreeBSD waits the same).
const HANDOFF_BUSY_TIMEOUT_MS: u64 = 2_000;
/// How long the links get to come up after the reset (SeaBIOS: 10 ms).
const LINK_TIMEOUT_MS: u64 = 20;
/// AHCI 1.2: the first version with CAP2 and BOHC.
const VERSION_1_2: u32 = 0x0001_0200;
/// Most ports an HBA has.
pub const MAX_PORTS: u8 = 32;

/// What the takeover found on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// Not in PI.
    NotImplemented,
    /// No link (PxSSTS.DET, 0 when nothing is attached).
    NoLink {
        /// PxSSTS.DET.
        detection: u8,
    },
    /// A link, but the device stayed busy.
    NotReady {
        /// PxTFD.
        task_file: u32,
    },
    /// A device that is not an ATA disk (ATAPI 0xEB140101, port multiplier
    /// 0x96690101, ...).
    NotDisk {
        /// PxSIG.
        signature: u32,
    },
    /// An ATA disk, ready to open.
    Disk,
    /// An ATA disk handed to an [`AhciDisk`].
    Opened,
}

/// How the BIOS/OS handoff went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// The HBA has no BOHC (AHCI < 1.2 or CAP2.BOH = 0; QEMU).
    NotSupported,
    /// The BIOS released the HBA.
    Released,
    /// The BIOS kept it past the deadline; minicap reset it anyway.
    Forced,
}

/// A port the takeover set up and no disk has taken yet.
struct Prepared<P: Platform + ?Sized> {
    port: Port<P>,
    page: Dma<P>,
}

/// An AHCI HBA, reset and scanned.
pub struct AhciHba<'p, P: Platform + ?Sized> {
    platform: &'p P,
    function: PciAddress,
    regs: Registers<P, HbaRegs>,
    capabilities: u32,
    version: u32,
    handoff: Handoff,
    states: [PortState; MAX_PORTS as usize],
    prepared: [Option<Prepared<P>>; MAX_PORTS as usize],
}

impl<'p, P: Platform + ?Sized> AhciHba<'p, P> {
    /// Take the HBA at `function` over: handoff, reset, and set up every
    /// implemented port (see the module doc). The disks found are listed by
    /// [`AhciHba::disks`] and opened with [`AhciHba::open`].
    pub fn take_over(platform: &'p P, function: PciAddress) -> Result<Self, AhciError> {
        pci::take_over(platform, function);
        let regs: Registers<P, HbaRegs> = Registers::map(
            platform,
            function,
            ABAR,
            0,
            core::mem::size_of::<HbaRegs>() as u64,
        )
        .ok_or(AhciError::NoRegisters)?;
        let mut hba = Self {
            platform,
            function,
            capabilities: 0,
            version: 0,
            handoff: Handoff::NotSupported,
            states: [PortState::NotImplemented; MAX_PORTS as usize],
            prepared: core::array::from_fn(|_| None),
            regs,
        };
        match hba.reset_and_scan() {
            Ok(()) => Ok(hba),
            Err(e) => {
                // Whatever state it is in, it must not reach memory.
                pci::stop_bus_master(platform, function);
                Err(e)
            }
        }
    }

    fn reset_and_scan(&mut self) -> Result<(), AhciError> {
        let p = self.platform;
        if self.regs.read(p, CAP) == u32::MAX {
            return Err(AhciError::NotResponding);
        }
        // AE before any other AHCI register (§3.1.2); IE stays 0.
        self.regs.write(p, GHC, ghc::AE);
        self.version = self.regs.read(p, VS);
        if self.version >= VERSION_1_2 && self.regs.read(p, CAP2) & cap2::BOH != 0 {
            self.handoff = self.bios_handoff();
        }
        self.regs.write(p, GHC, ghc::AE | ghc::HR);
        if !poll_until(p, HBA_RESET_TIMEOUT_MS, || {
            self.regs.read(p, GHC) & ghc::HR == 0
        }) {
            return Err(AhciError::ResetTimeout);
        }
        self.regs.write(p, GHC, ghc::AE);
        // CAP as the reset left it (firmware may set some of its bits
        // once, and a reset may restore them).
        self.capabilities = self.regs.read(p, CAP);
        let mut implemented = self.regs.read(p, PI);
        if implemented == 0 {
            // Some HBAs leave PI to the firmware: take CAP.NP (Linux does).
            implemented = u32::MAX >> (32 - cap::ports(self.capabilities));
        }
        let mut stopped: [Option<Port<P>>; MAX_PORTS as usize] = core::array::from_fn(|_| None);
        for (number, slot) in stopped.iter_mut().enumerate() {
            if implemented & (1 << number) != 0 {
                *slot = Some(self.stopped_port(number)?);
            }
        }
        // Nothing of the crashed kernel's is running any more.
        pci::enable_bus_master(p, self.function);
        for (number, port) in stopped.into_iter().enumerate() {
            if let Some(port) = port {
                self.prepare_port(number, port)?;
            }
        }
        self.find_disks();
        Ok(())
    }

    /// BIOS/OS handoff (§10.6): ask for ownership, give the BIOS 25 ms,
    /// or 2 s while it says it is busy.
    fn bios_handoff(&self) -> Handoff {
        let p = self.platform;
        let control = self.regs.read(p, BOHC);
        if control & bohc::BOS == 0 {
            return Handoff::Released;
        }
        // OOC is write-1-to-clear: leave it alone.
        self.regs.write(p, BOHC, (control & !bohc::OOC) | bohc::OOS);
        let released = || self.regs.read(p, BOHC) & bohc::BOS == 0;
        if poll_until(p, HANDOFF_TIMEOUT_MS, released) {
            return Handoff::Released;
        }
        if self.regs.read(p, BOHC) & bohc::BB != 0
            && poll_until(p, HANDOFF_BUSY_TIMEOUT_MS, released)
        {
            return Handoff::Released;
        }
        Handoff::Forced
    }

    /// Port `number`'s registers, the port stopped. The reset stopped it;
    /// one that still runs is not to be trusted with a new command list,
    /// nor its HBA with the bus.
    fn stopped_port(&self, number: usize) -> Result<Port<P>, AhciError> {
        let p = self.platform;
        let label = u8::try_from(number).unwrap_or(u8::MAX);
        let regs: Registers<P, PortRegs> = Registers::map(
            p,
            self.function,
            ABAR,
            PORTS_AT + PORT_STRIDE * number as u64,
            PORT_STRIDE,
        )
        .ok_or(AhciError::NoRegisters)?;
        let port = Port::new(regs, label);
        if !port.stop(p) {
            return Err(AhciError::PortStuck { port: label });
        }
        Ok(port)
    }

    /// Step 4 of the module doc for the stopped port `number`.
    fn prepare_port(&mut self, number: usize, port: Port<P>) -> Result<(), AhciError> {
        let p = self.platform;
        let page = Dma::alloc(p, PORT_PAGE_BYTES, PORT_PAGE_BYTES).ok_or(AhciError::NoMemory)?;
        let base = page.device_address();
        let s64a = self.capabilities & cap::S64A != 0;
        if !s64a && base + PORT_PAGE_BYTES as u64 > 1 << 32 {
            return Err(AhciError::NotAddressable { address: base });
        }
        let list = base + COMMAND_LIST_AT;
        let fis = base + RECEIVED_FIS_AT;
        let r = port.regs();
        r.write(p, PX_CLB, low32(list));
        r.write(p, PX_FB, low32(fis));
        // The upper halves exist only with 64-bit addressing.
        if s64a {
            r.write(p, PX_CLBU, high32(list));
            r.write(p, PX_FBU, high32(fis));
        }
        port.quiesce(p);
        port.power_up(p);
        self.prepared[number] = Some(Prepared { port, page });
        Ok(())
    }

    /// Step 5 of the module doc, all ports at once.
    fn find_disks(&mut self) {
        let p = self.platform;
        let ports = || {
            self.prepared
                .iter()
                .flatten()
                .map(|prepared| &prepared.port)
        };
        // Done early once every port has a link (or an offline PHY); an
        // empty port (DET 0) costs the whole, short, wait.
        let settled = |d: u32| d == det::PRESENT || d == det::OFFLINE;
        poll_until(p, LINK_TIMEOUT_MS, || {
            ports().all(|q| settled(q.detection(p)))
        });
        // A device is there but the link did not come up: COMRESET it.
        // (DET 0 is not worth one: the reset just sent it one.)
        for port in ports().filter(|q| q.detection(p) == det::PRESENT_NO_PHY) {
            port.comreset(p);
        }
        // SError from link bring-up blocks PxTFD updates: clear it.
        for port in ports().filter(|q| q.detection(p) == det::PRESENT) {
            port.clear_errors(p);
        }
        poll_until(p, READY_TIMEOUT_MS, || {
            ports()
                .filter(|q| q.detection(p) == det::PRESENT)
                .all(|q| q.ready(p))
        });
        let mut states = [PortState::NotImplemented; MAX_PORTS as usize];
        for port in ports() {
            let detection = port.detection(p);
            states[usize::from(port.number())] = if detection != det::PRESENT {
                PortState::NoLink {
                    detection: u8::try_from(detection).unwrap_or(0),
                }
            } else if !port.ready(p) {
                PortState::NotReady {
                    task_file: port.task_file(p),
                }
            } else {
                match port.regs().read(p, PX_SIG) {
                    SIGNATURE_ATA => PortState::Disk,
                    signature => PortState::NotDisk { signature },
                }
            };
        }
        self.states = states;
    }

    /// Where the HBA is.
    pub fn pci_address(&self) -> PciAddress {
        self.function
    }

    /// How the BIOS/OS handoff went.
    pub fn handoff(&self) -> Handoff {
        self.handoff
    }

    /// AHCI version (VS: major 31:16, minor 15:0 in BCD).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// What the takeover found on port `number`.
    pub fn state(&self, number: u8) -> PortState {
        self.states
            .get(usize::from(number))
            .copied()
            .unwrap_or(PortState::NotImplemented)
    }

    /// The ports holding an ATA disk not opened yet, lowest first. The set
    /// is a copy, so the HBA can open them while iterating:
    /// `for port in hba.disks() { let disk = hba.open(port); ... }`.
    pub fn disks(&self) -> PortSet {
        let mut bits = 0u32;
        for n in (0..MAX_PORTS).filter(|&n| self.state(n) == PortState::Disk) {
            bits |= 1 << n;
        }
        PortSet { bits }
    }

    /// Open the disk on port `number`: start the port, IDENTIFY it.
    /// The disk keeps its own port registers and memory, so it outlives
    /// the `AhciHba`.
    pub fn open(&mut self, number: u8) -> Result<AhciDisk<'p, P>, AhciError> {
        let index = usize::from(number);
        if self.state(number) != PortState::Disk {
            return Err(AhciError::NoDisk { port: number });
        }
        let Some(Prepared { port, page }) = self.prepared[index].take() else {
            return Err(AhciError::NoDisk { port: number });
        };
        self.states[index] = PortState::Opened;
        // The link or the disk may have changed since the scan; starting
        // the port needs both up and idle (AHCI §10.3.1).
        let p = self.platform;
        if port.detection(p) != det::PRESENT || !port.ready(p) {
            let task_file = port.task_file(p);
            port.stop(p);
            return Err(AhciError::NotReady {
                port: number,
                task_file,
            });
        }
        AhciDisk::open(self.platform, self.function, port, page, self.capabilities)
    }
}

impl<P: Platform + ?Sized> Drop for AhciHba<'_, P> {
    /// Ports no disk took stop receiving FISes. One that will not is left
    /// alone: it never ran a command of ours, and the FIS area it writes
    /// is its own page, which is never freed; cutting bus mastering would
    /// take the opened disks down with it.
    fn drop(&mut self) {
        for prepared in self.prepared.iter().flatten() {
            prepared.port.stop(self.platform);
        }
    }
}

/// A set of port numbers, iterated lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSet {
    bits: u32,
}

impl Iterator for PortSet {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        if self.bits == 0 {
            return None;
        }
        let lowest = self.bits.trailing_zeros();
        self.bits &= self.bits - 1;
        u8::try_from(lowest).ok()
    }
}

impl fmt::Display for PortState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotImplemented => write!(f, "not implemented"),
            Self::NoLink { detection: 0 } => write!(f, "nothing attached"),
            Self::NoLink { detection } => write!(f, "no link (DET {detection})"),
            Self::NotReady { task_file } => write!(
                f,
                "device stayed busy (status {:#04x})",
                tfd::status(task_file)
            ),
            Self::NotDisk { signature } => {
                write!(f, "not an ATA disk (signature {signature:#010x})")
            }
            Self::Disk => write!(f, "ATA disk"),
            Self::Opened => write!(f, "ATA disk, opened"),
        }
    }
}

/// Low half of a bus address.
pub(super) fn low32(address: u64) -> u32 {
    u32::try_from(address & 0xffff_ffff).unwrap_or(0)
}

/// High half of a bus address.
pub(super) fn high32(address: u64) -> u32 {
    u32::try_from(address >> 32).unwrap_or(0)
}
