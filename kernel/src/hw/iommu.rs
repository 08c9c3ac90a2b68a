//! IOMMU registers: Intel VT-d remapping units (and a read-only look at
//! AMD-Vi units). Every access goes through `mmio`; this file needs no
//! `unsafe`. The policy (which devices get what) is in `crate::iommu`.
//!
//! Register layout (Intel VT-d specification, chapter 11): VER 0x0, CAP 0x8,
//! ECAP 0x10, GCMD 0x18, GSTS 0x1C, RTADDR 0x20, CCMD 0x28, FSTS 0x34,
//! FECTL 0x38, IQH 0x80, IQT 0x88; the IOTLB invalidate register at
//! ECAP.IRO * 16 + 8.

use super::platform::Machine;
use super::{cpu, mmio, paging};
use core::fmt;
use minicap_drivers::poll_until;

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
const ECAP_C: u64 = 1 << 0;
const ECAP_QI: u64 = 1 << 1;
const ECAP_PT: u64 = 1 << 6;

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

/// What went wrong with a unit.
#[derive(Debug, Clone, Copy)]
pub enum VtdError {
    /// Its registers could not be mapped.
    Unmapped,
    /// Its registers read as all ones (no device there).
    Absent,
    /// An operation did not complete in time.
    Timeout(&'static str),
    /// The unit completed an invalidation but reports it was not done.
    Rejected(&'static str),
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
    base: u64,
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
        if !paging::map_mmio(base, 0x1000) {
            return Err(VtdError::Unmapped);
        }
        let version = mmio::read32(base + VER);
        let cap = mmio::read64(base + CAP);
        let ecap = mmio::read64(base + ECAP);
        if version == u32::MAX || cap == u64::MAX {
            return Err(VtdError::Absent);
        }
        let iotlb = ((ecap >> 8) & 0x3ff) * 16;
        let needed = register_bytes.max(iotlb + 16).max(0x1000);
        if !paging::map_mmio(base, needed) {
            return Err(VtdError::Unmapped);
        }
        Ok(Self {
            base,
            version,
            cap,
            ecap,
            iotlb,
        })
    }

    /// GSTS.
    pub fn status(&self) -> u32 {
        mmio::read32(self.base + GSTS)
    }

    /// FSTS (fault status).
    pub fn fault_status(&self) -> u32 {
        mmio::read32(self.base + FSTS)
    }

    /// Whether the unit supports pass-through context entries (ECAP.PT).
    pub fn pass_through(&self) -> bool {
        self.ecap & ECAP_PT != 0
    }

    /// Whether its table walks snoop the CPU caches (ECAP.C); if not, the
    /// tables must be flushed from the caches before the unit reads them.
    pub fn coherent(&self) -> bool {
        self.ecap & ECAP_C != 0
    }

    /// CAP.SAGAW: supported adjusted guest address widths (bit n: the
    /// 30 + 9n bit, (n + 2)-level second-level table format).
    pub fn sagaw(&self) -> u8 {
        ((self.cap >> 8) & 0x1f) as u8
    }

    /// CAP.MGAW + 1: the widest guest address the unit translates.
    pub fn mgaw_bits(&self) -> u32 {
        ((self.cap >> 16) & 0x3f) as u32 + 1
    }

    /// CAP.SLLPS: bit 0 2 MiB, bit 1 1 GiB second-level pages.
    pub fn large_pages(&self) -> u8 {
        ((self.cap >> 34) & 0xf) as u8
    }

    /// Issue a GCMD command (set `set`, clear `clear` among the persistent
    /// bits) and wait until GSTS satisfies `done`.
    fn command(
        &self,
        set: u32,
        clear: u32,
        what: &'static str,
        done: impl Fn(u32) -> bool,
    ) -> Result<(), VtdError> {
        let command = ((self.status() & PERSISTENT) & !clear) | set;
        mmio::write32(self.base + GCMD, command);
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
            mmio::read64(self.base + IQH) == mmio::read64(self.base + IQT)
        });
        self.command(0, status::QI, "disabling queued invalidation", |s| {
            s & status::QI == 0
        })?;
        Ok(drained)
    }

    /// Mask the fault event interrupt (it would go to the crashed kernel's
    /// vector; minicap takes no interrupts).
    pub fn mask_fault_events(&self) {
        mmio::write32(self.base + FECTL, FECTL_IM);
    }

    /// Flush the unit's write buffers if it needs that (CAP.RWBF).
    pub fn flush_write_buffer(&self) -> Result<(), VtdError> {
        if self.cap & CAP_RWBF == 0 {
            return Ok(());
        }
        self.command(status::WBF, 0, "write buffer flush", |s| {
            s & status::WBF == 0
        })
    }

    /// RTADDR.TTM, the translation table mode in use: 0 legacy, 1 scalable,
    /// 3 abort-DMA.
    pub fn table_mode(&self) -> u64 {
        (mmio::read64(self.base + RTADDR) >> 10) & 3
    }

    /// Point the unit at a legacy-mode root table (RTADDR, then SRTP; wait
    /// for GSTS.RTPS). The other enables stay as they are.
    pub fn set_root_table(&self, root: u64) -> Result<(), VtdError> {
        // Bits 11:10 (translation table mode) = 00: legacy root entries.
        mmio::write64(self.base + RTADDR, root & !0xfff);
        self.command(status::RTP, 0, "setting the root table pointer", |s| {
            s & status::RTP != 0
        })
    }

    /// Global context-cache invalidation through CCMD.
    pub fn invalidate_context_cache(&self) -> Result<(), VtdError> {
        let reg = self.base + CCMD;
        mmio::write64(reg, CCMD_ICC | CCMD_GLOBAL);
        if !poll_until(&Machine, OPERATION_TIMEOUT_MS, || {
            mmio::read64(reg) & CCMD_ICC == 0
        }) {
            return Err(VtdError::Timeout("the context-cache invalidation"));
        }
        if (mmio::read64(reg) >> CCMD_CAIG_SHIFT) & 3 == 0 {
            return Err(VtdError::Rejected("context-cache invalidation"));
        }
        Ok(())
    }

    /// Global IOTLB invalidation through the IOTLB register, draining reads
    /// and writes where the unit can.
    pub fn invalidate_iotlb(&self) -> Result<(), VtdError> {
        let reg = self.base + self.iotlb + 8;
        let mut command = IOTLB_IVT | IOTLB_GLOBAL;
        if self.cap & CAP_DRD != 0 {
            command |= IOTLB_DR;
        }
        if self.cap & CAP_DWD != 0 {
            command |= IOTLB_DW;
        }
        mmio::write64(reg, command);
        if !poll_until(&Machine, OPERATION_TIMEOUT_MS, || {
            mmio::read64(reg) & IOTLB_IVT == 0
        }) {
            return Err(VtdError::Timeout("the IOTLB invalidation"));
        }
        if (mmio::read64(reg) >> IOTLB_IAIG_SHIFT) & 3 == 0 {
            return Err(VtdError::Rejected("IOTLB invalidation"));
        }
        Ok(())
    }

    /// Turn DMA translation on.
    pub fn enable_translation(&self) -> Result<(), VtdError> {
        self.command(status::TE, 0, "enabling translation", |s| {
            s & status::TE != 0
        })
    }

    /// Turn DMA translation off.
    pub fn disable_translation(&self) -> Result<(), VtdError> {
        self.command(0, status::TE, "disabling translation", |s| {
            s & status::TE == 0
        })
    }
}

/// Write the 128-bit entry `index` of a root or context table.
pub fn write_entry128(table: u64, index: usize, low: u64, high: u64) {
    let at = table + (index as u64) * 16;
    mmio::write64(at + 8, high);
    mmio::write64(at, low);
}

/// Write the 64-bit entry `index` of a second-level page table.
pub fn write_entry64(table: u64, index: usize, value: u64) {
    mmio::write64(table + (index as u64) * 8, value);
}

/// Push a table page out of the CPU caches (for a unit with ECAP.C = 0).
pub fn flush_table(page: u64) {
    cpu::flush_cache_range(page, 4096);
}

/// AMD-Vi: whether the unit at `base` translates (MMIO control register
/// 0x18, bit 0 IommuEn); None if its registers cannot be read.
pub fn amd_vi_enabled(base: u64) -> Option<bool> {
    if base & 0xfff != 0 || !paging::map_mmio(base, 0x1000) {
        return None;
    }
    let control = mmio::read64(base + 0x18);
    (control != u64::MAX).then_some(control & 1 != 0)
}
