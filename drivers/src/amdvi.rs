//! Taking an AMD-Vi IOMMU over after a crash (AMD I/O Virtualization
//! Technology (IOMMU) Specification, 48882, chapters 2 and 3; the order of
//! Linux `drivers/iommu/amd/init.c`, `early_enable_iommu()`: disable,
//! device table, command buffer, enable, then flush every cache).
//!
//! The unit gets minicap's own device table, in which every device ID is
//! valid and blocked except the allowed ones:
//! - blocked: V = 1, TV = 1, Mode = 0, IR = IW = 0 (Linux's blocked DTE,
//!   `clear_dte_entry()`): the unit target-aborts its DMA;
//! - allowed: V = 1, TV = 1, Mode = 0, IR = IW = 1 (Linux's identity
//!   domain, `PAGE_MODE_NONE`): its DMA reaches physical memory
//!   untranslated, as VT-d pass-through does;
//! - every entry also has IV = 1 with IntCtl = 00b and no pass bits, so the
//!   unit aborts the interrupts of every device: minicap takes none.
//!
//! Device table entries are 256 bits (four u64): word 0 bit 0 V, bit 1 TV,
//! bits 11:9 Mode, bit 61 IR, bit 62 IW; word 2 bit 0 IV, bits 61:60
//! IntCtl. The table has [`DEVICE_TABLE_ENTRIES`] entries (every 16-bit
//! device ID, 2 MiB), so no requester ID falls outside it.
//!
//! The takeover, in the order the unit requires:
//! 1. build the device table and a command buffer (before anything stops);
//! 2. clear IommuEn, CmdBufEn, EventLogEn and the log interrupt enables,
//!    and wait (bounded) until the status register says the command buffer
//!    and the logs have stopped; from here until step 5 the unit passes DMA
//!    untranslated (the window is measured and reported);
//! 3. clear the exclusion range (with ExEn and Allow set, it lets every
//!    device reach its range untranslated, a hole in the blocking);
//! 4. device table base (size field: 4 KiB pages - 1), command buffer base
//!    (ComLen = log2 entries), command head and tail 0;
//! 5. CmdBufEn, then IommuEn;
//! 6. flush the unit's cached device table entries through the command
//!    buffer: INVALIDATE_IOMMU_ALL if EFR.IASup, else INVALIDATE_DEVTAB_ENTRY
//!    for every device ID, then COMPLETION_WAIT with a store to memory that
//!    is polled (bounded). Nothing is translated (Mode 0 everywhere), so no
//!    IOTLB entry is used.
//!
//! The event log stays off: minicap reads no events. Pure logic over
//! [`AmdViRegisters`] and the platform's DMA memory, tested on the host;
//! the kernel's hardware layer maps the registers.

use crate::access::Dma;
use crate::dma_alias::RequesterIds;
use crate::pci::PciAddress;
use crate::{poll_until, Platform};
use core::fmt;

/// Entries of minicap's device table: every 16-bit device ID.
pub const DEVICE_TABLE_ENTRIES: u32 = 1 << 16;
/// Bytes of one device table entry.
pub const DTE_BYTES: u64 = 32;
/// log2 of the command buffer's entries (256, 4 KiB: the smallest ComLen).
pub const COMMAND_ENTRIES_LOG2: u64 = 8;
const COMMAND_BYTES: u64 = 16;
const RING_BYTES: u64 = COMMAND_BYTES << COMMAND_ENTRIES_LOG2;
const PAGE_BYTES: u64 = 4096;
/// Command head/tail registers: the byte offset in bits 18:4.
const RING_OFFSET_MASK: u64 = 0x7fff0;
/// Most device IDs let through per unit.
pub const MAX_ALLOWED_IDS: usize = 128;
/// How long the unit gets to stop, fetch commands or complete a wait.
/// Hardware takes microseconds; Linux waits up to 100 ms for a
/// COMPLETION_WAIT (`LOOP_TIMEOUT`).
pub const OPERATION_TIMEOUT_MS: u64 = 1000;

/// The unit's registers minicap uses (each 64 bits; spec section 3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// Device table base address and size.
    DeviceTableBase = 0x0000,
    /// Command buffer base address and length.
    CommandBufferBase = 0x0008,
    /// Control.
    Control = 0x0018,
    /// Exclusion range base (bit 0 ExEn, bit 1 Allow).
    ExclusionBase = 0x0020,
    /// Exclusion range limit.
    ExclusionLimit = 0x0028,
    /// Extended feature register.
    ExtendedFeatures = 0x0030,
    /// Command buffer head pointer.
    CommandHead = 0x2000,
    /// Command buffer tail pointer.
    CommandTail = 0x2008,
    /// Status.
    Status = 0x2020,
}

impl Register {
    /// Offset in the unit's register window.
    pub const fn offset(self) -> u64 {
        self as u64
    }
}

/// 64-bit access to a unit's registers (the kernel's hardware layer; a
/// fake unit in the host tests).
pub trait AmdViRegisters {
    /// Read `register`.
    fn read(&self, register: Register) -> u64;
    /// Write `register`.
    fn write(&self, register: Register, value: u64);
}

/// Control register bits.
pub mod control {
    /// IommuEn: translation and protection on.
    pub const IOMMU_EN: u64 = 1 << 0;
    /// EventLogEn.
    pub const EVENT_LOG_EN: u64 = 1 << 2;
    /// EventIntEn.
    pub const EVENT_INT_EN: u64 = 1 << 3;
    /// ComWaitIntEn.
    pub const COM_WAIT_INT_EN: u64 = 1 << 4;
    /// CmdBufEn.
    pub const CMD_BUF_EN: u64 = 1 << 12;
    /// PPRLogEn.
    pub const PPR_LOG_EN: u64 = 1 << 13;
    /// PPRIntEn.
    pub const PPR_INT_EN: u64 = 1 << 14;
    /// GALogEn.
    pub const GA_LOG_EN: u64 = 1 << 28;
    /// GAIntEn.
    pub const GA_INT_EN: u64 = 1 << 29;
    /// Everything step 2 clears: the unit, its command buffer, its logs and
    /// their interrupts (minicap takes none).
    pub const STOP: u64 = IOMMU_EN
        | EVENT_LOG_EN
        | EVENT_INT_EN
        | COM_WAIT_INT_EN
        | CMD_BUF_EN
        | PPR_LOG_EN
        | PPR_INT_EN
        | GA_LOG_EN
        | GA_INT_EN;
}

/// Status register bits.
pub mod status {
    /// EventLogRun.
    pub const EVENT_LOG_RUN: u64 = 1 << 3;
    /// CmdBufRun.
    pub const CMD_BUF_RUN: u64 = 1 << 4;
    /// PprLogRun.
    pub const PPR_LOG_RUN: u64 = 1 << 7;
    /// GALogRun.
    pub const GA_LOG_RUN: u64 = 1 << 8;
    /// Everything that must read 0 once the unit has stopped.
    pub const RUNNING: u64 = EVENT_LOG_RUN | CMD_BUF_RUN | PPR_LOG_RUN | GA_LOG_RUN;
}

/// Extended feature register: IASup, INVALIDATE_IOMMU_ALL supported.
pub const EFR_IA_SUP: u64 = 1 << 6;

/// Device table entry bits.
pub mod dte {
    /// Word 0: V, the entry is valid (else DMA passes untranslated).
    pub const VALID: u64 = 1 << 0;
    /// Word 0: TV, the translation fields are valid.
    pub const TRANSLATION_VALID: u64 = 1 << 1;
    /// Word 0: Mode (bits 11:9); 0: no translation, IR/IW decide.
    pub const MODE_SHIFT: u32 = 9;
    /// Word 0: IR, reads allowed.
    pub const READ: u64 = 1 << 61;
    /// Word 0: IW, writes allowed.
    pub const WRITE: u64 = 1 << 62;
    /// Word 2: IV, the interrupt fields are valid.
    pub const INTERRUPT_VALID: u64 = 1 << 0;
    /// Word 2: IntCtl (bits 61:60); 00b: fixed and arbitrated interrupts
    /// are target-aborted.
    pub const INT_CTL_SHIFT: u32 = 60;

    /// A device whose DMA and interrupts are blocked.
    pub const BLOCKED: [u64; 4] = [VALID | TRANSLATION_VALID, 0, INTERRUPT_VALID, 0];
    /// A device whose DMA reaches memory untranslated (interrupts blocked).
    pub const UNTRANSLATED: [u64; 4] = [
        VALID | TRANSLATION_VALID | READ | WRITE,
        0,
        INTERRUPT_VALID,
        0,
    ];
}

/// One 128-bit command (opcode in bits 63:60 of the first word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command(pub [u64; 2]);

const OPCODE_SHIFT: u32 = 60;
/// COMPLETION_WAIT opcode.
pub const OP_COMPLETION_WAIT: u64 = 0x1;
/// INVALIDATE_DEVTAB_ENTRY opcode.
pub const OP_INVALIDATE_DEVTAB_ENTRY: u64 = 0x2;
/// INVALIDATE_IOMMU_ALL opcode.
pub const OP_INVALIDATE_IOMMU_ALL: u64 = 0x8;
/// COMPLETION_WAIT S bit: store the data to the address when done.
pub const COMPLETION_WAIT_STORE: u64 = 1 << 0;

impl Command {
    /// COMPLETION_WAIT: when every earlier command is done, store `data` at
    /// `address` (8-byte aligned; bits 51:3 in the first word).
    pub fn completion_wait(address: u64, data: u64) -> Self {
        Self([
            (address & 0x000f_ffff_ffff_fff8)
                | COMPLETION_WAIT_STORE
                | OP_COMPLETION_WAIT << OPCODE_SHIFT,
            data,
        ])
    }

    /// INVALIDATE_DEVTAB_ENTRY for `device_id` (bits 15:0).
    pub fn invalidate_device_entry(device_id: u16) -> Self {
        Self([
            u64::from(device_id) | OP_INVALIDATE_DEVTAB_ENTRY << OPCODE_SHIFT,
            0,
        ])
    }

    /// INVALIDATE_IOMMU_ALL: every cache of the unit.
    pub fn invalidate_all() -> Self {
        Self([OP_INVALIDATE_IOMMU_ALL << OPCODE_SHIFT, 0])
    }

    /// The opcode.
    pub fn opcode(&self) -> u64 {
        self.0[0] >> OPCODE_SHIFT
    }
}

/// The segment-local device ID of a function: bus << 8 | device << 3 |
/// function.
pub fn device_id(f: PciAddress) -> u16 {
    u16::from(f.bus) << 8 | u16::from(f.device & 0x1f) << 3 | u16::from(f.function & 7)
}

/// The device IDs a unit lets through.
#[derive(Clone, Copy, Debug)]
pub struct AllowedIds {
    ids: [u16; MAX_ALLOWED_IDS],
    count: usize,
    /// IDs beyond [`MAX_ALLOWED_IDS`] (their DMA stays blocked).
    pub dropped: usize,
}

impl AllowedIds {
    /// The requester IDs of the allowed functions of PCI `segment` (their
    /// own and their bridges' aliases) plus the alias the IVRS names for
    /// each (`ivrs_alias`), as Linux gives an aliased device's DTE to its
    /// alias. A unit's device IDs are segment-local: functions of other
    /// segments are left out, or the function with the same numbers on
    /// this unit's segment would be let through instead.
    pub fn new(
        requesters: &RequesterIds,
        segment: u16,
        ivrs_alias: impl Fn(u16) -> Option<u16>,
    ) -> Self {
        let mut allowed = Self {
            ids: [0; MAX_ALLOWED_IDS],
            count: 0,
            dropped: requesters.dropped,
        };
        for &f in requesters.all().iter().filter(|f| f.segment == segment) {
            let id = device_id(f);
            allowed.add(id);
            if let Some(alias) = ivrs_alias(id) {
                allowed.add(alias);
            }
        }
        allowed
    }

    fn add(&mut self, id: u16) {
        if self.all().contains(&id) {
            return;
        }
        if self.count < MAX_ALLOWED_IDS {
            self.ids[self.count] = id;
            self.count += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// The IDs, in the order added.
    pub fn all(&self) -> &[u16] {
        &self.ids[..self.count]
    }
}

/// What did not complete (or what was missing) during a takeover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmdViError {
    /// No DMA memory for the device table or the command buffer.
    OutOfMemory(&'static str),
    /// The command buffer or a log still ran this long after being
    /// disabled (status bits left set).
    DidNotStop {
        /// The status register at the deadline.
        status: u64,
    },
    /// The unit fetched no command from a full command buffer.
    CommandBufferStuck,
    /// The COMPLETION_WAIT store did not arrive.
    CompletionWaitTimeout,
}

impl fmt::Display for AmdViError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory(what) => write!(f, "out of memory for its {what}"),
            Self::DidNotStop { status } => write!(
                f,
                "its command buffer or logs did not stop within {OPERATION_TIMEOUT_MS} ms (status {status:#x})"
            ),
            Self::CommandBufferStuck => write!(
                f,
                "it fetched no command within {OPERATION_TIMEOUT_MS} ms"
            ),
            Self::CompletionWaitTimeout => write!(
                f,
                "its COMPLETION_WAIT did not complete within {OPERATION_TIMEOUT_MS} ms"
            ),
        }
    }
}

/// How the unit's cached device table entries were flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// One INVALIDATE_IOMMU_ALL (EFR.IASup).
    All,
    /// One INVALIDATE_DEVTAB_ENTRY per device table entry.
    EachEntry(u32),
}

/// What a takeover did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Takeover {
    /// The control register the crashed kernel left.
    pub control_before: u64,
    /// Microseconds from IommuEn cleared to IommuEn set again (DMA passed
    /// untranslated meanwhile).
    pub window_us: u64,
    /// Whether an exclusion range was enabled (and is now cleared).
    pub exclusion_was_on: bool,
    /// How the caches were flushed.
    pub flush: Flush,
    /// Device table entries (each blocked unless allowed).
    pub entries: u32,
}

/// minicap's device table: every entry blocked except `allowed`.
pub fn build_device_table<P: Platform + ?Sized>(
    p: &P,
    entries: u32,
    allowed: &[u16],
) -> Result<Dma<P>, AmdViError> {
    let bytes = u64::from(entries) * DTE_BYTES;
    let len = usize::try_from(bytes).map_err(|_| AmdViError::OutOfMemory("device table"))?;
    let table = Dma::alloc(p, len, 4096).ok_or(AmdViError::OutOfMemory("device table"))?;
    for id in 0..entries {
        let words = if u16::try_from(id).is_ok_and(|id| allowed.contains(&id)) {
            dte::UNTRANSLATED
        } else {
            dte::BLOCKED
        };
        let at = u64::from(id) * DTE_BYTES;
        // Word 0 (V) last, as a unit might read an entry while it is built.
        for (i, &word) in words.iter().enumerate().rev() {
            table.write_at(p, at + 8 * i as u64, word);
        }
    }
    table.flush(p);
    Ok(table)
}

/// The device table base register value: address, size in 4 KiB pages - 1.
pub fn device_table_register(address: u64, entries: u32) -> u64 {
    let pages = (u64::from(entries) * DTE_BYTES).div_ceil(PAGE_BYTES).max(1);
    (address & 0x000f_ffff_ffff_f000) | (pages - 1).min(0x1ff)
}

/// The command buffer base register value: address, ComLen in 59:56.
pub fn command_buffer_register(address: u64) -> u64 {
    (address & 0x000f_ffff_ffff_f000) | COMMAND_ENTRIES_LOG2 << 56
}

/// The command ring: minicap writes at the tail, the unit fetches at the
/// head.
struct CommandRing<'a, P: Platform + ?Sized, R: AmdViRegisters + ?Sized> {
    p: &'a P,
    regs: &'a R,
    ring: Dma<P>,
    store: Dma<P>,
    tail: u64,
    waits: u64,
}

impl<'a, P: Platform + ?Sized, R: AmdViRegisters + ?Sized> CommandRing<'a, P, R> {
    fn new(p: &'a P, regs: &'a R) -> Result<Self, AmdViError> {
        let len = usize::try_from(RING_BYTES).map_err(|_| AmdViError::OutOfMemory("commands"))?;
        Ok(Self {
            p,
            regs,
            ring: Dma::alloc(p, len, 4096).ok_or(AmdViError::OutOfMemory("command buffer"))?,
            store: Dma::alloc(p, 8, 8).ok_or(AmdViError::OutOfMemory("completion word"))?,
            tail: 0,
            waits: 0,
        })
    }

    fn head(&self) -> u64 {
        self.regs.read(Register::CommandHead) & RING_OFFSET_MASK
    }

    /// Hand the written commands to the unit.
    fn publish(&self) {
        self.ring.flush(self.p);
        self.regs.write(Register::CommandTail, self.tail);
    }

    fn push(&mut self, command: Command) -> Result<(), AmdViError> {
        let next = (self.tail + COMMAND_BYTES) % RING_BYTES;
        if self.head() == next {
            // Full: the unit must fetch before this slot is reused.
            self.publish();
            if !poll_until(self.p, OPERATION_TIMEOUT_MS, || self.head() != next) {
                return Err(AmdViError::CommandBufferStuck);
            }
        }
        self.ring.write_at(self.p, self.tail + 8, command.0[1]);
        self.ring.write_at(self.p, self.tail, command.0[0]);
        self.tail = next;
        Ok(())
    }

    /// COMPLETION_WAIT: returns once every command pushed so far is done.
    fn wait_for_completion(&mut self) -> Result<(), AmdViError> {
        self.waits += 1;
        let token = 0x4d43_0000_0000_0000 | self.waits;
        self.store.write_at(self.p, 0, 0u64);
        self.store.flush(self.p);
        self.push(Command::completion_wait(self.store.device_address(), token))?;
        self.publish();
        if poll_until(self.p, OPERATION_TIMEOUT_MS, || {
            self.store.read_at::<u64>(self.p, 0) == token
        }) {
            Ok(())
        } else {
            Err(AmdViError::CompletionWaitTimeout)
        }
    }
}

/// Take the unit over (see the module doc): every device ID in a table of
/// `entries` blocked except `allowed`. `efr` is the extended feature
/// register (the IVRS image where it has one).
pub fn take_over<P: Platform + ?Sized, R: AmdViRegisters + ?Sized>(
    p: &P,
    regs: &R,
    entries: u32,
    allowed: &AllowedIds,
    efr: u64,
) -> Result<Takeover, AmdViError> {
    // 1. Everything the unit will read, before it stops.
    let table = build_device_table(p, entries, allowed.all())?;
    let mut ring = CommandRing::new(p, regs)?;

    // 2. Stop.
    let control_before = regs.read(Register::Control);
    let stopped = control_before & !control::STOP;
    regs.write(Register::Control, stopped);
    let window_start = p.now_us();
    if !poll_until(p, OPERATION_TIMEOUT_MS, || {
        regs.read(Register::Status) & status::RUNNING == 0
    }) {
        return Err(AmdViError::DidNotStop {
            status: regs.read(Register::Status),
        });
    }

    // 3. No exclusion range.
    let exclusion_was_on = regs.read(Register::ExclusionBase) & 1 != 0;
    regs.write(Register::ExclusionBase, 0);
    regs.write(Register::ExclusionLimit, 0);

    // 4. minicap's tables.
    regs.write(
        Register::DeviceTableBase,
        device_table_register(table.device_address(), entries),
    );
    regs.write(
        Register::CommandBufferBase,
        command_buffer_register(ring.ring.device_address()),
    );
    regs.write(Register::CommandHead, 0);
    regs.write(Register::CommandTail, 0);

    // 5. On again.
    regs.write(Register::Control, stopped | control::CMD_BUF_EN);
    regs.write(
        Register::Control,
        stopped | control::CMD_BUF_EN | control::IOMMU_EN,
    );
    let window_us = p.now_us().saturating_sub(window_start);

    // 6. Forget what the unit cached from the old table.
    let flush = if efr & EFR_IA_SUP != 0 {
        ring.push(Command::invalidate_all())?;
        Flush::All
    } else {
        for id in 0..entries {
            ring.push(Command::invalidate_device_entry(
                u16::try_from(id).unwrap_or(u16::MAX),
            ))?;
        }
        Flush::EachEntry(entries)
    };
    ring.wait_for_completion()?;
    // The table and the ring stay where they are (DMA memory is never
    // freed): the unit reads them for the rest of the capture.
    Ok(Takeover {
        control_before,
        window_us,
        exclusion_was_on,
        flush,
        entries,
    })
}
