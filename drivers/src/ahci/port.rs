//! One port's register block and the bounded steps AHCI 1.3.1 prescribes
//! for it: stop (§10.1.2), COMRESET (§10.4.2), start (§10.3.1), and the
//! recovery after a failed non-queued command (§6.2.2.1). Linux
//! `ahci_stop_engine`, `ahci_stop_fis_rx`, `ahci_start_engine`,
//! `ahci_kick_engine` and `sata_link_hardreset` do the same.

use super::registers::{cmd, det, tfd, PortRegs, PX_CMD, PX_IS, PX_SCTL, PX_SERR, PX_SSTS, PX_TFD};
use crate::access::Registers;
use crate::{poll_until, Deadline, Platform};

/// The spec's bound for PxCMD.CR / FR / CLO to clear (AHCI §10.1.2;
/// Linux "spec says 500 msecs").
pub const STOP_TIMEOUT_MS: u64 = 500;
/// How long COMRESET is held: the spec asks for at least 1 ms.
const COMRESET_HOLD_MS: u64 = 1;
/// How long the link may take to come back after a COMRESET.
pub const COMRESET_LINK_MS: u64 = 500;
/// How long a disk may stay busy after a reset: drive manuals give up to
/// 31 s from power-on or COMRESET to ready (SeaBIOS waits 32 s).
pub const READY_TIMEOUT_MS: u64 = 31_000;

/// A port's registers.
pub struct Port<P: Platform + ?Sized> {
    regs: Registers<P, PortRegs>,
    number: u8,
}

impl<P: Platform + ?Sized> Port<P> {
    pub fn new(regs: Registers<P, PortRegs>, number: u8) -> Self {
        Self { regs, number }
    }

    /// Its number on the HBA.
    pub fn number(&self) -> u8 {
        self.number
    }

    /// The registers.
    pub fn regs(&self) -> &Registers<P, PortRegs> {
        &self.regs
    }

    /// PxSSTS.DET.
    pub fn detection(&self, p: &P) -> u32 {
        self.regs.read(p, PX_SSTS) & det::MASK
    }

    /// PxTFD.
    pub fn task_file(&self, p: &P) -> u32 {
        self.regs.read(p, PX_TFD)
    }

    /// The device is neither busy nor waiting to move data.
    pub fn ready(&self, p: &P) -> bool {
        self.task_file(p) & (tfd::BSY | tfd::DRQ) == 0
    }

    /// Set and clear bits of PxCMD. ICC is written as 0 (no change)
    /// unless `set` holds one.
    fn update_command(&self, p: &P, set: u32, clear: u32) {
        let value = self.regs.read(p, PX_CMD) & !cmd::ICC_MASK;
        self.regs.write(p, PX_CMD, (value & !clear) | set);
    }

    /// Stop processing the command list: clear ST, wait for CR to clear.
    /// The HBA then also clears PxCI.
    pub fn stop_commands(&self, p: &P) -> bool {
        if self.regs.read(p, PX_CMD) & (cmd::ST | cmd::CR) == 0 {
            return true;
        }
        self.update_command(p, 0, cmd::ST);
        poll_until(p, STOP_TIMEOUT_MS, || {
            self.regs.read(p, PX_CMD) & cmd::CR == 0
        })
    }

    /// Stop the port entirely (commands, then FIS reception), so it no
    /// longer touches memory and its CLB/FB may be rewritten.
    pub fn stop(&self, p: &P) -> bool {
        if !self.stop_commands(p) {
            return false;
        }
        if self.regs.read(p, PX_CMD) & (cmd::FRE | cmd::FR) == 0 {
            return true;
        }
        self.update_command(p, 0, cmd::FRE);
        poll_until(p, STOP_TIMEOUT_MS, || {
            self.regs.read(p, PX_CMD) & cmd::FR == 0
        })
    }

    /// Interrupts off, stale interrupt status and SError cleared.
    pub fn quiesce(&self, p: &P) {
        self.regs.write(p, super::registers::PX_IE, 0);
        self.clear_errors(p);
    }

    /// Clear PxSERR and PxIS (both write-1-to-clear: write back what is
    /// there). SERR first: a set SERR.DIAG.X blocks PxTFD updates.
    pub fn clear_errors(&self, p: &P) {
        let serr = self.regs.read(p, PX_SERR);
        self.regs.write(p, PX_SERR, serr);
        let is = self.regs.read(p, PX_IS);
        self.regs.write(p, PX_IS, is);
    }

    /// Turn FIS reception on and power the device up and spin it up
    /// (SUD is what starts the link on a staggered spin-up HBA).
    pub fn power_up(&self, p: &P) {
        self.update_command(p, cmd::FRE | cmd::SUD | cmd::POD | cmd::ICC_ACTIVE, 0);
    }

    /// COMRESET (the port must be stopped): PxSCTL.DET = 1 for at least
    /// 1 ms, then 0. Returns once the link is up again or after
    /// `COMRESET_LINK_MS`; SError is cleared either way.
    pub fn comreset(&self, p: &P) -> bool {
        self.regs
            .write(p, PX_SCTL, det::NO_POWER_STATES | det::COMRESET);
        let hold = Deadline::after_ms(p, COMRESET_HOLD_MS);
        while !hold.expired(p) {
            core::hint::spin_loop();
        }
        self.regs.write(p, PX_SCTL, det::NO_POWER_STATES);
        let up = poll_until(p, COMRESET_LINK_MS, || self.detection(p) == det::PRESENT);
        self.clear_errors(p);
        up
    }

    /// Start processing the command list (FRE must be on, the device
    /// ready and the link up: AHCI §10.3.1).
    pub fn start(&self, p: &P) {
        self.update_command(p, cmd::ST, 0);
    }

    /// After a failed command (AHCI §6.2.2.1): stop, clear the errors,
    /// get the device out of BSY/DRQ (command list override if the HBA
    /// has it, else COMRESET), start again. False: the port would not
    /// recover and must be given up.
    pub fn recover(&self, p: &P, command_list_override: bool) -> bool {
        if !self.stop_commands(p) {
            return false;
        }
        self.clear_errors(p);
        if !self.ready(p) {
            let cleared = if command_list_override {
                self.update_command(p, cmd::CLO, 0);
                poll_until(p, STOP_TIMEOUT_MS, || {
                    self.regs.read(p, PX_CMD) & cmd::CLO == 0
                })
            } else {
                self.comreset(p) && poll_until(p, READY_TIMEOUT_MS, || self.ready(p))
            };
            if !cleared {
                return false;
            }
        }
        self.start(p);
        true
    }
}
