//! IOMMU registers: Intel VT-d remapping units and AMD-Vi units. Every
//! access goes through a claimed `MmioRegion`; this file needs no `unsafe`.
//! The policy (which devices get what) is in `crate::iommu`, the tables and
//! the AMD-Vi takeover sequence are in `minicap_drivers::{vtd, amdvi}`.
//!
//! VT-d register layout (Intel VT-d specification, chapter 11): VER 0x0,
//! CAP 0x8, ECAP 0x10, GCMD 0x18, GSTS 0x1C, RTADDR 0x20, CCMD 0x28, FSTS
//! 0x34, FECTL 0x38, IQH 0x80, IQT 0x88; the IOTLB invalidate register at
//! ECAP.IRO * 16 + 8. AMD-Vi: the 64-bit registers
//! `minicap_drivers::amdvi::Register` names, in a window of at least
//! 16 KiB (the command and status registers are at 0x2000 and up).

use super::dma::DmaBuffer;
use super::mmio::MmioRegion;
use super::platform::Machine;
use core::fmt;
use minicap_drivers::amdvi::{self, AmdViRegisters, Register};
use minicap_drivers::poll_until;
use minicap_drivers::vtd::Capabilities;

const VER: u64 = 0x00;
const CAP: u64 = 0x08;
const ECAP: u64 = 0x10;
const GCMD: u64 = 0x18;
const GSTS: u64 = 0x1c;
const RTADDR: u64 = 0x20;
const CCMD: u64 = 0x28;
const FSTS: u64 = 0x34;
const FECTL: u64 = 0x38;
const IQH: u64 = 0x80;
const IQT: u64 = 0x88;

/// GCMD command bits and the matching GSTS status bits.
pub mod status {
    /// Translation enable / status.
    pub const TE: u32 = 1 << 31;
    /// Set root table pointer / root table pointer status.
    pub const RTP: u32 = 1 << 30;
    /// Write buffer flush / status.
    pub const WBF: u32 = 1 << 27;
    /// Queued invalidation enable / status.
    pub const QI: u32 = 1 << 26;
    /// Interrupt remapping enable / status.
    pub const IR: u32 = 1 << 25;
}

/// GSTS bits that mirror persistent GCMD settings (TE, EAFL, QIE, IRE, CFI
/// and reserved bits): writing `(GSTS & PERSISTENT) | command` issues one
/// command without changing the others (VT-d spec, GCMD register
/// description). The one-shot bits SRTP, SFL, WBF and SIRTP are cleared.
const PERSISTENT: u32 = 0x96ff_ffff;

const CAP_RWBF: u64 = 1 << 4;
const CAP_DWD: u64 = 1 << 54;
const CAP_DRD: u64 = 1 << 55;
const ECAP_QI: u64 = 1 << 1;

const CCMD_ICC: u64 = 1 << 63;
const CCMD_GLOBAL: u64 = 1 << 61;
const CCMD_CAIG_SHIFT: u32 = 59;
const IOTLB_IVT: u64 = 1 << 63;
const IOTLB_GLOBAL: u64 = 1 << 60;
const IOTLB_IAIG_SHIFT: u32 = 57;
const IOTLB_DR: u64 = 1 << 49;
const IOTLB_DW: u64 = 1 << 48;
const FECTL_IM: u32 = 1 << 31;

/// How long one register operation may take. Hardware finishes in
/// microseconds; Linux allows 10 s (DMAR_OPERATION_TIMEOUT).
pub const OPERATION_TIMEOUT_MS: u64 = 1000;
/// How long the invalidation queue gets to drain before it is disabled.
const QUEUE_DRAIN_MS: u64 = 100;

/// A register operation on a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// GCMD.QIE cleared.
    DisablingQueuedInvalidation,
    /// GCMD.WBF.
    WriteBufferFlush,
    /// GCMD.SRTP.
    SettingRootTable,
    /// CCMD global invalidation.
    ContextCacheInvalidation,
    /// IOTLB global invalidation.
    IotlbInvalidation,
    /// GCMD.TE set.
    EnablingTranslation,
    /// GCMD.TE cleared.
    DisablingTranslation,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DisablingQueuedInvalidation => "disabling queued invalidation",
            Self::WriteBufferFlush => "write buffer flush",
            Self::SettingRootTable => "setting the root table pointer",
            Self::ContextCacheInvalidation => "the context-cache invalidation",
            Self::IotlbInvalidation => "the IOTLB invalidation",
            Self::EnablingTranslation => "enabling translation",
            Self::DisablingTranslation => "disabling translation",
        })
    }
}

/// An invalidation a unit can refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// Of the context cache.
    ContextCache,
    /// Of the IOTLB.
    Iotlb,
}

impl fmt::Display for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ContextCache => "context-cache invalidation",
            Self::Iotlb => "IOTLB invalidation",
        })
    }
}

/// What went wrong with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VtdError {
    /// Its registers could not be mapped.
    Unmapped,
    /// Its registers read as all ones (no device there).
    Absent,
    /// An operation did not complete in time.
    Timeout(Operation),
    /// The unit completed an invalidation but reports it was not done.
    Rejected(Invalidation),
}

impl fmt::Display for VtdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unmapped => write!(f, "its registers cannot be mapped"),
            Self::Absent => write!(f, "its registers read as all ones (no unit there)"),
            Self::Timeout(what) => write!(
                f,
                "{what} did not complete within {OPERATION_TIMEOUT_MS} ms"
            ),
            Self::Rejected(what) => write!(f, "the unit did not perform the {what}"),
        }
    }
}

/// One VT-d DMA-remapping unit, its registers mapped.
pub struct VtdUnit {
    regs: MmioRegion,
    /// VER: major in bits 7:4, minor in bits 3:0.
    pub version: u32,
    /// CAP register.
    pub cap: u64,
    /// ECAP register.
    pub ecap: u64,
    iotlb: u64,
}

impl VtdUnit {
    /// Map the unit's registers (`register_bytes` from the DMAR, at least a
    /// page and enough to reach the IOTLB registers) and read its
    /// capabilities.
    pub fn open(base: u64, register_bytes: u64) -> Result<Self, VtdError> {
        let (version, cap, ecap) = {
            let first_page = MmioRegion::claim(base, 0x1000).ok_or(VtdError::Unmapped)?;
            (
                first_page.read32(VER),
                first_page.read64(CAP),
                first_page.read64(ECAP),
            )
        };
        if version == u32::MAX || cap == u64::MAX {
            return Err(VtdError::Absent);
        }
        let iotlb = ((ecap >> 8) & 0x3ff) * 16;
        let needed = register_bytes.max(iotlb + 16).max(0x1000);
        let regs = MmioRegion::claim(base, needed).ok_or(VtdError::Unmapped)?;
        Ok(Self {
            regs,
            version,
            cap,
            ecap,
            iotlb,
        })
    }

    /// GSTS.
    pub fn status(&self) -> u32 {
        self.regs.read32(GSTS)
    }

    /// FSTS (fault status).
    pub fn fault_status(&self) -> u32 {
        self.regs.read32(FSTS)
    }

    /// What the unit can do (CAP and ECAP decoded).
    pub fn capabilities(&self) -> Capabilities {
        Capabilities::from_registers(self.cap, self.ecap)
    }

    /// Issue a GCMD command (set `set`, clear `clear` among the persistent
    /// bits) and wait until GSTS satisfies `done`.
    fn command(
        &self,
        set: u32,
        clear: u32,
        what: Operation,
        done: impl Fn(u32) -> bool,
    ) -> Result<(), VtdError> {
        let command = ((self.status() & PERSISTENT) & !clear) | set;
        self.regs.write32(GCMD, command);
        if poll_until(&Machine, OPERATION_TIMEOUT_MS, || done(self.status())) {
            Ok(())
        } else {
            Err(VtdError::Timeout(what))
        }
    }

    /// Turn queued invalidation off so that the register-based invalidation
    /// works (a unit with QI enabled ignores CCMD/IOTLB commands). Gives the
    /// queue `QUEUE_DRAIN_MS` to drain first, as Linux does; returns whether
    /// it had drained.
    pub fn disable_queued_invalidation(&self) -> Result<bool, VtdError> {
        if self.ecap & ECAP_QI == 0 || self.status() & status::QI == 0 {
            return Ok(true);
        }
        let drained = poll_until(&Machine, QUEUE_DRAIN_MS, || {
            self.regs.read64(IQH) == self.regs.read64(IQT)
        });
        self.command(0, status::QI, Operation::DisablingQueuedInvalidation, |s| {
            s & status::QI == 0
        })?;
        Ok(drained)
    }

    /// Mask the fault event interrupt (it would go to the crashed kernel's
    /// vector; minicap takes no interrupts).
    pub fn mask_fault_events(&self) {
        self.regs.write32(FECTL, FECTL_IM);
    }

    /// Flush the unit's write buffers if it needs that (CAP.RWBF).
    pub fn flush_write_buffer(&self) -> Result<(), VtdError> {
        if self.cap & CAP_RWBF == 0 {
            return Ok(());
        }
        self.command(status::WBF, 0, Operation::WriteBufferFlush, |s| {
            s & status::WBF == 0
        })
    }

    /// RTADDR.TTM, the translation table mode in use: 0 legacy, 1 scalable,
    /// 3 abort-DMA.
    pub fn table_mode(&self) -> u64 {
        (self.regs.read64(RTADDR) >> 10) & 3
    }

    /// Point the unit at a legacy-mode root table page (RTADDR, then SRTP;
    /// wait for GSTS.RTPS). The other enables stay as they are.
    pub fn set_root_table(&self, root: &DmaBuffer) -> Result<(), VtdError> {
        // Bits 11:10 (translation table mode) = 00: legacy root entries.
        self.regs.write64(RTADDR, root.device_address() & !0xfff);
        self.command(status::RTP, 0, Operation::SettingRootTable, |s| {
            s & status::RTP != 0
        })
    }

    /// Global context-cache invalidation through CCMD.
    pub fn invalidate_context_cache(&self) -> Result<(), VtdError> {
        self.regs.write64(CCMD, CCMD_ICC | CCMD_GLOBAL);
        if !poll_until(&Machine, OPERATION_TIMEOUT_MS, || {
            self.regs.read64(CCMD) & CCMD_ICC == 0
        }) {
            return Err(VtdError::Timeout(Operation::ContextCacheInvalidation));
        }
        if (self.regs.read64(CCMD) >> CCMD_CAIG_SHIFT) & 3 == 0 {
            return Err(VtdError::Rejected(Invalidation::ContextCache));
        }
        Ok(())
    }

    /// Global IOTLB invalidation through the IOTLB register, draining reads
    /// and writes where the unit can.
    pub fn invalidate_iotlb(&self) -> Result<(), VtdError> {
        let reg = self.iotlb + 8;
        let mut command = IOTLB_IVT | IOTLB_GLOBAL;
        if self.cap & CAP_DRD != 0 {
            command |= IOTLB_DR;
        }
        if self.cap & CAP_DWD != 0 {
            command |= IOTLB_DW;
        }
        self.regs.write64(reg, command);
        if !poll_until(&Machine, OPERATION_TIMEOUT_MS, || {
            self.regs.read64(reg) & IOTLB_IVT == 0
        }) {
            return Err(VtdError::Timeout(Operation::IotlbInvalidation));
        }
        if (self.regs.read64(reg) >> IOTLB_IAIG_SHIFT) & 3 == 0 {
            return Err(VtdError::Rejected(Invalidation::Iotlb));
        }
        Ok(())
    }

    /// Turn DMA translation on.
    pub fn enable_translation(&self) -> Result<(), VtdError> {
        self.command(status::TE, 0, Operation::EnablingTranslation, |s| {
            s & status::TE != 0
        })
    }

    /// Turn DMA translation off.
    pub fn disable_translation(&self) -> Result<(), VtdError> {
        self.command(0, status::TE, Operation::DisablingTranslation, |s| {
            s & status::TE == 0
        })
    }
}

/// Bytes of an AMD-Vi unit's register window minicap maps (the registers
/// it uses end at the status register, 0x2020 + 8).
const AMD_VI_WINDOW: u64 = 0x4000;

/// One AMD-Vi IOMMU, its registers mapped.
pub struct AmdViUnit {
    regs: MmioRegion,
}

impl AmdViUnit {
    /// Map the unit's registers; None if they cannot be mapped or read as
    /// all ones (no unit there).
    pub fn open(base: u64) -> Option<Self> {
        if base & 0xfff != 0 {
            return None;
        }
        let regs = MmioRegion::claim(base, AMD_VI_WINDOW)?;
        let unit = Self { regs };
        (unit.read(Register::Control) != u64::MAX).then_some(unit)
    }

    /// Whether the unit translates (control register IommuEn).
    pub fn enabled(&self) -> bool {
        self.read(Register::Control) & amdvi::control::IOMMU_EN != 0
    }
}

impl AmdViRegisters for AmdViUnit {
    fn read(&self, register: Register) -> u64 {
        self.regs.read64(register.offset())
    }

    fn write(&self, register: Register, value: u64) {
        self.regs.write64(register.offset(), value);
    }
}
