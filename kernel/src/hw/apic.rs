//! Local APIC and IO-APIC: every interrupt source masked.
//!
//! The crashed kernel leaves the crashing CPU's local APIC in "virtual wire"
//! mode (LINT0 = ExtINT, LINT1 = NMI, software-enabled) and may have left it
//! in x2APIC mode; IO-APIC entries may still route the 8259. minicap polls,
//! so it masks everything; NMIs that still arrive are counted and ignored.

use super::cpu::{rdmsr, wrmsr};
use super::mmio::MmioRegion;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_BSP: u64 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
/// The xAPIC register page.
const XAPIC_BYTES: u64 = 0x1000;
/// IO-APIC: IOREGSEL at 0x00, IOWIN at 0x10.
const IOAPIC_BYTES: u64 = 0x20;
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;

/// xAPIC register offsets (x2APIC MSR = 0x800 + offset / 16).
mod reg {
    pub const ID: u32 = 0x20;
    pub const VERSION: u32 = 0x30;
    pub const LVT_CMCI: u32 = 0x2f0;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_THERMAL: u32 = 0x330;
    pub const LVT_PERF: u32 = 0x340;
    pub const LVT_LINT0: u32 = 0x350;
    pub const LVT_LINT1: u32 = 0x360;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
}

/// What was found and done.
pub struct LocalApicReport {
    pub enabled: bool,
    pub x2apic: bool,
    pub bsp: bool,
    pub id: u32,
    /// Highest LVT index (how many optional LVT entries exist).
    pub max_lvt: u32,
}

enum Access {
    X(MmioRegion),
    X2,
}

impl Access {
    fn read(&self, offset: u32) -> u32 {
        match self {
            Access::X(regs) => regs.read32(u64::from(offset)),
            // SAFETY: x2APIC mode is on, and only registers listed in `reg`
            // (which exist in every x2APIC) are read.
            Access::X2 => (unsafe { rdmsr(0x800 + offset / 16) } & 0xffff_ffff) as u32,
        }
    }
    fn write(&self, offset: u32, value: u32) {
        match self {
            Access::X(regs) => regs.write32(u64::from(offset), value),
            // SAFETY: as for `read`; LVT and timer registers accept these values.
            Access::X2 => unsafe { wrmsr(0x800 + offset / 16, u64::from(value)) },
        }
    }
}

/// Mask every local vector table entry and stop the APIC timer.
pub fn mask_local_apic() -> LocalApicReport {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU.
    let base_msr = unsafe { rdmsr(IA32_APIC_BASE) };
    let enabled = base_msr & APIC_BASE_ENABLE != 0;
    let x2apic = base_msr & APIC_BASE_X2APIC != 0;
    let bsp = base_msr & APIC_BASE_BSP != 0;
    if !enabled {
        return LocalApicReport {
            enabled,
            x2apic,
            bsp,
            id: 0,
            max_lvt: 0,
        };
    }
    let access = if x2apic {
        Access::X2
    } else {
        match MmioRegion::claim(base_msr & 0x000f_ffff_ffff_f000, XAPIC_BYTES) {
            Some(regs) => Access::X(regs),
            // Its page cannot be mapped as registers: leave it alone.
            None => {
                return LocalApicReport {
                    enabled,
                    x2apic,
                    bsp,
                    id: 0,
                    max_lvt: 0,
                }
            }
        }
    };
    let version = access.read(reg::VERSION);
    let max_lvt = (version >> 16) & 0xff;
    let id = if x2apic {
        access.read(reg::ID)
    } else {
        access.read(reg::ID) >> 24
    };
    access.write(reg::TIMER_INITIAL, 0);
    let mut lvts = [
        reg::LVT_TIMER,
        reg::LVT_LINT0,
        reg::LVT_LINT1,
        reg::LVT_ERROR,
        0,
        0,
        0,
    ];
    let mut count = 4;
    // Entries beyond the four architectural ones exist only if MAXLVT says so
    // (touching a missing one in x2APIC mode is a #GP).
    if max_lvt >= 4 {
        lvts[count] = reg::LVT_PERF;
        count += 1;
    }
    if max_lvt >= 5 {
        lvts[count] = reg::LVT_THERMAL;
        count += 1;
    }
    if max_lvt >= 6 {
        lvts[count] = reg::LVT_CMCI;
        count += 1;
    }
    for &lvt in &lvts[..count] {
        let value = access.read(lvt);
        access.write(lvt, value | LVT_MASKED);
    }
    LocalApicReport {
        enabled,
        x2apic,
        bsp,
        id,
        max_lvt,
    }
}

/// Mask every redirection entry of the IO-APIC at `base` (from the MADT);
/// returns how many (0 if its registers cannot be claimed).
pub fn mask_io_apic(base: u64) -> u32 {
    let Some(regs) = MmioRegion::claim(base, IOAPIC_BYTES) else {
        return 0;
    };
    let select = |index: u32| regs.write32(IOREGSEL, index);
    select(1);
    let version = regs.read32(IOWIN);
    if version == 0xffff_ffff {
        return 0; // nothing there
    }
    let entries = ((version >> 16) & 0xff) + 1;
    for entry in 0..entries {
        let low = 0x10 + entry * 2;
        select(low);
        let value = regs.read32(IOWIN);
        select(low);
        regs.write32(IOWIN, value | LVT_MASKED);
    }
    entries
}
