//! The controller's memory registers in BAR 0 (NVMe 1.4 §3.1): the
//! property block at 00h and the doorbells from 1000h.
//!
//! Every access is 32 bits wide: the 64-bit registers (CAP, ASQ, ACQ) are
//! read and written as two halves, low first, as Linux `lo_hi_readq()` /
//! `lo_hi_writeq()` do where 64-bit MMIO is not atomic. CAP is read-only,
//! and ASQ/ACQ are written only while the controller is disabled, so the
//! halves cannot tear.

use crate::access::{Field, Registers};
use crate::pci::PciAddress;
use crate::{field, Platform};

/// The controller property block (NVMe 1.4 §3.1), up to ACQ.
#[repr(C)]
pub(crate) struct ControllerRegisters {
    cap: Split64,  // 0x00 Controller Capabilities
    vs: u32,       // 0x08 Version
    intms: u32,    // 0x0c Interrupt Mask Set
    intmc: u32,    // 0x10 Interrupt Mask Clear
    cc: u32,       // 0x14 Controller Configuration
    reserved: u32, // 0x18
    csts: u32,     // 0x1c Controller Status
    nssr: u32,     // 0x20 NVM Subsystem Reset
    aqa: u32,      // 0x24 Admin Queue Attributes
    asq: Split64,  // 0x28 Admin Submission Queue Base Address
    acq: Split64,  // 0x30 Admin Completion Queue Base Address
}
const _: () = assert!(core::mem::size_of::<ControllerRegisters>() == 0x38);

/// A 64-bit register accessed as two 32-bit halves.
#[repr(C)]
pub(crate) struct Split64 {
    low: u32,  // +0
    high: u32, // +4
}

const CAP: Field<ControllerRegisters, Split64> = field!(ControllerRegisters, cap);
const VS: Field<ControllerRegisters, u32> = field!(ControllerRegisters, vs);
const INTMS: Field<ControllerRegisters, u32> = field!(ControllerRegisters, intms);
const CC: Field<ControllerRegisters, u32> = field!(ControllerRegisters, cc);
const CSTS: Field<ControllerRegisters, u32> = field!(ControllerRegisters, csts);
const AQA: Field<ControllerRegisters, u32> = field!(ControllerRegisters, aqa);
const ASQ: Field<ControllerRegisters, Split64> = field!(ControllerRegisters, asq);
const ACQ: Field<ControllerRegisters, Split64> = field!(ControllerRegisters, acq);
const LOW: Field<Split64, u32> = field!(Split64, low);
const HIGH: Field<Split64, u32> = field!(Split64, high);

/// CC fields (§3.1.5).
pub(crate) mod cc {
    /// EN: enable.
    pub const ENABLE: u32 = 1 << 0;
    /// IOSQES: I/O submission queue entry size, log2 (64 bytes).
    pub const IO_SQ_ENTRY_SIZE_64: u32 = 6 << 16;
    /// IOCQES: I/O completion queue entry size, log2 (16 bytes).
    pub const IO_CQ_ENTRY_SIZE_16: u32 = 4 << 20;
    /// What minicap enables with: CSS 0 (NVM command set), MPS 0 (4 KiB
    /// memory pages), AMS 0 (round robin), no shutdown notification, and
    /// the NVM command set's entry sizes (0x0046_0001 with EN).
    pub const CONFIGURATION: u32 = IO_SQ_ENTRY_SIZE_64 | IO_CQ_ENTRY_SIZE_16;
}

/// CSTS fields (§3.1.6).
pub(crate) mod csts {
    /// RDY: ready to process commands (follows CC.EN).
    pub const READY: u32 = 1 << 0;
    /// CFS: controller fatal status; only a reset recovers.
    pub const FATAL: u32 = 1 << 1;
    /// What a read returns when the function no longer answers (master
    /// abort on the bus): no real CSTS has every bit set.
    pub const NOT_RESPONDING: u32 = u32::MAX;
}

/// The memory page size minicap uses (CC.MPS = 0): PRP entries, queue
/// bases and IDENTIFY buffers are in these units.
pub(crate) const PAGE_BYTES: u64 = 4096;
/// [`PAGE_BYTES`] for allocation sizes.
pub(crate) const PAGE_SIZE: usize = 4096;

/// CAP, decoded (§3.1.1).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Capabilities(u64);

impl Capabilities {
    /// Entries an I/O queue may have at most (MQES is 0's based).
    pub fn max_queue_entries(self) -> u32 {
        (self.0 & 0xffff) as u32 + 1
    }

    /// TO: worst-case time for CSTS.RDY to follow CC.EN, in 500 ms units;
    /// at least one unit, so that a controller reporting 0 is still given
    /// a moment.
    pub fn ready_timeout_ms(self) -> u64 {
        ((self.0 >> 24) & 0xff).max(1) * 500
    }

    /// Bytes between two doorbells: 4 << DSTRD.
    pub fn doorbell_stride(self) -> u64 {
        4 << ((self.0 >> 32) & 0xf)
    }

    /// CSS bit 0 (CAP bit 37): the NVM command set is supported.
    pub fn nvm_command_set(self) -> bool {
        self.0 & (1 << 37) != 0
    }

    /// Smallest memory page the controller supports: 2^(12 + MPSMIN).
    pub fn min_page_bytes(self) -> u64 {
        1 << (12 + ((self.0 >> 48) & 0xf))
    }

    /// Largest memory page the controller supports: 2^(12 + MPSMAX).
    pub fn max_page_bytes(self) -> u64 {
        1 << (12 + ((self.0 >> 52) & 0xf))
    }
}

/// The property block of one controller.
pub(crate) struct Properties<P: Platform + ?Sized> {
    regs: Registers<P, ControllerRegisters>,
}

impl<P: Platform + ?Sized> Properties<P> {
    /// Map the property block at the start of BAR 0.
    pub fn map(p: &P, function: PciAddress) -> Option<Self> {
        let len = core::mem::size_of::<ControllerRegisters>() as u64;
        Some(Self {
            regs: Registers::map(p, function, 0, 0, len)?,
        })
    }

    /// CAP; None if the function does not answer (every bit set).
    pub fn capabilities(&self, p: &P) -> Option<Capabilities> {
        let low = self.regs.read(p, CAP.then(LOW));
        let high = self.regs.read(p, CAP.then(HIGH));
        let raw = u64::from(high) << 32 | u64::from(low);
        (raw != u64::MAX).then_some(Capabilities(raw))
    }

    /// VS: major 31:16, minor 15:8, tertiary 7:0.
    pub fn version(&self, p: &P) -> u32 {
        self.regs.read(p, VS)
    }

    pub fn configuration(&self, p: &P) -> u32 {
        self.regs.read(p, CC)
    }

    pub fn set_configuration(&self, p: &P, value: u32) {
        self.regs.write(p, CC, value)
    }

    pub fn status(&self, p: &P) -> u32 {
        self.regs.read(p, CSTS)
    }

    /// Mask every pin-based and MSI vector (INTMS; meaningful because MSI-X
    /// is off, which `pci::take_over` sees to).
    pub fn mask_interrupts(&self, p: &P) {
        self.regs.write(p, INTMS, u32::MAX)
    }

    /// AQA, ASQ and ACQ: the admin queues' sizes and bases (only while the
    /// controller is disabled).
    pub fn set_admin_queues(&self, p: &P, entries: u16, submissions: u64, completions: u64) {
        let last = u32::from(entries) - 1;
        self.regs.write(p, AQA, last << 16 | last);
        for (register, address) in [(ASQ, submissions), (ACQ, completions)] {
            self.regs
                .write(p, register.then(LOW), (address & 0xffff_ffff) as u32);
            self.regs
                .write(p, register.then(HIGH), (address >> 32) as u32);
        }
    }
}

/// The doorbell registers (§3.1.24–3.1.25): queue `y`'s submission tail at
/// 1000h + 2y × stride, its completion head right after. Laid out at run
/// time (the stride is CAP.DSTRD's), so this is only a name for the region.
pub(crate) struct DoorbellArea;

/// The doorbells of the admin queue pair and of I/O queue pair 1.
pub(crate) struct Doorbells<P: Platform + ?Sized> {
    regs: Registers<P, DoorbellArea>,
    stride: u64,
}

/// Where the doorbells start in BAR 0.
const DOORBELLS_AT: u64 = 0x1000;
/// Queue pairs minicap rings: the admin pair (0) and one I/O pair (1).
const QUEUE_PAIRS: u64 = 2;

impl<P: Platform + ?Sized> Doorbells<P> {
    /// Map the doorbells of queue pairs 0 and 1.
    pub fn map(p: &P, function: PciAddress, caps: Capabilities) -> Option<Self> {
        let stride = caps.doorbell_stride();
        let regs = Registers::map(p, function, 0, DOORBELLS_AT, 2 * QUEUE_PAIRS * stride)?;
        Some(Self { regs, stride })
    }

    /// Tell the controller queue `queue`'s new submission tail.
    pub fn submission_tail(&self, p: &P, queue: u16, tail: u16) {
        let at = 2 * u64::from(queue) * self.stride;
        self.regs.write_at(p, at, u32::from(tail))
    }

    /// Tell the controller queue `queue`'s new completion head.
    pub fn completion_head(&self, p: &P, queue: u16, head: u16) {
        let at = (2 * u64::from(queue) + 1) * self.stride;
        self.regs.write_at(p, at, u32::from(head))
    }
}
