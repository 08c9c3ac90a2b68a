//! Either kind of log, chosen from VMCOREINFO like makedumpfile `dump_dmesg()` does.

use core::ops::ControlFlow;

use minicap_physmem::PhysMem;
use minicap_vmcoreinfo::{OldMemory, VmcoreInfo};

use crate::{for_each_legacy_record, for_each_record, LegacyLayout, PrintkError, Record};
use crate::{RingLayout, WalkSummary};

/// The crashed kernel's log: the lockless ring (5.10+, `SYMBOL(prb)` exported) or the
/// record buffer of 3.5 to 5.9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLayout {
    /// Linux 5.10 and later.
    Lockless(RingLayout),
    /// Linux 3.5 to 5.9.
    Legacy(LegacyLayout),
}

impl LogLayout {
    /// The lockless ring if VMCOREINFO has `SYMBOL(prb)`, else the older buffer.
    pub fn from_vmcoreinfo(v: &VmcoreInfo<'_>) -> Result<Self, PrintkError> {
        if v.symbol("prb").is_some() {
            RingLayout::from_vmcoreinfo(v).map(Self::Lockless)
        } else {
            LegacyLayout::from_vmcoreinfo(v).map(Self::Legacy)
        }
    }
}

/// Calls `visit` for every record of the log, oldest first.
pub fn for_each_log_record<M: PhysMem + ?Sized>(
    mem: &OldMemory<'_, M>,
    layout: &LogLayout,
    visit: impl FnMut(&Record<'_>) -> ControlFlow<()>,
) -> Result<WalkSummary, PrintkError> {
    match layout {
        LogLayout::Lockless(l) => for_each_record(mem, l, visit),
        LogLayout::Legacy(l) => for_each_legacy_record(mem, l, visit),
    }
}
