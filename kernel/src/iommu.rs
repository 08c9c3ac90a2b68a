//! The IOMMU after a crash.
//!
//! The panicking kernel does not shut its IOMMU down (formats.md §5.2 point
//! 9): a VT-d unit keeps translating every device's DMA through the old
//! kernel's tables, so the dump device, which minicap points at raw physical
//! addresses, faults. Turning translation off is not an answer on its own:
//! a device still busy with the old kernel's addresses would then write to
//! raw physical memory, the memory being dumped or minicap's own heap.
//!
//! So every unit with translation on gets minicap's own root table, in which
//! only the virtio-blk devices minicap may use are present (pass-through if
//! the unit supports it, else an identity map of everything the dump reads
//! and minicap's memory); every other device's context entry is not present
//! and its DMA is blocked. All virtio-blk devices are let through, not just
//! the dump device: `target::find` resets and reads every candidate to find
//! the prepared one, and they are the only devices minicap drives. Their bus
//! mastering is switched off first, so none of them can finish an old
//! request through the new (identity) path before its driver reset.
//!
//! Units with translation off are left alone. AMD-Vi units (IVRS) are only
//! reported.

use crate::acpi::{self, AcpiInfo, Drhd};
use crate::console::FixedString;
use crate::failure::Failure;
use crate::hw::iommu::{self as vtd, status, VtdError, VtdUnit};
use crate::hw::platform::Machine;
use crate::hw::{heap, tsc};
use crate::say;
use crate::target::{Candidates, MAX_VIRTIO_DEVICES};
use core::fmt::Write;
use core::ops::Range;
use minicap_drivers::pci::{self, PciAddress};
use minicap_elfcore::CoreHeaders;

/// Domain id of minicap's one domain (0 is reserved when CAP.CM is set).
const DOMAIN_ID: u64 = 1;
/// Upper bound on identity second-level table pages per unit (4 KiB each).
const MAX_IDENTITY_TABLE_PAGES: u64 = 2048;

const PRESENT: u64 = 1 << 0;
/// Context entry translation type 10b: pass-through.
const TT_PASS_THROUGH: u64 = 2 << 2;
/// Context entry translation type 00b: second-level tables, untranslated
/// requests only.
const TT_SECOND_LEVEL: u64 = 0;
const SL_READ: u64 = 1 << 0;
const SL_WRITE: u64 = 1 << 1;
const SL_PAGE_SIZE: u64 = 1 << 7;
const PAGE_BYTES: usize = 4096;

/// How a unit's allowed devices reach memory.
#[derive(Clone, Copy)]
enum Mode {
    /// Context entries of type pass-through.
    PassThrough { aw: u64 },
    /// Second-level identity tables covering [0, top).
    Identity {
        aw: u64,
        levels: u32,
        leaf: u32,
        top: u64,
    },
}

/// Take over every VT-d unit that translates (see the module comment).
/// `core` and `heap` tell what the dump device must reach if a unit cannot
/// do pass-through. Fails only when a unit does not carry out a command
/// (then its state is unknown and nothing is written).
pub fn take_over(
    acpi: Option<&AcpiInfo>,
    candidates: &Candidates,
    core: &CoreHeaders,
    heap: &Range<u64>,
) -> Result<(), Failure> {
    let Some(acpi) = acpi else {
        say!("IOMMU: no ACPI tables found; assuming there is no IOMMU");
        return Ok(());
    };
    for &base in &acpi.amd_iommus[..acpi.amd_iommu_count] {
        let state = match vtd::amd_vi_enabled(base) {
            Some(true) => "translation ON: the dump device's DMA will likely fault",
            Some(false) => "translation off",
            None => "registers unreadable",
        };
        say!("warning: AMD-Vi IOMMU at {base:#x}: {state}; minicap does not handle AMD-Vi yet");
    }
    let units = &acpi.drhd[..acpi.drhd_count];
    if units.is_empty() {
        if acpi.amd_iommu_count == 0 {
            say!(
                "IOMMU: {}",
                if acpi.dmar_present {
                    "DMAR table lists no remapping unit"
                } else {
                    "none (no DMAR or IVRS table)"
                }
            );
        }
        return Ok(());
    }
    if acpi.drhd_dropped > 0 {
        say!(
            "warning: IOMMU: {} more VT-d unit(s) than minicap records ({}); they are left as they are",
            acpi.drhd_dropped,
            acpi::MAX_DRHD
        );
    }
    let top = dma_top(core, heap);
    let mut stopped = false;
    for unit in units {
        let vtd = match VtdUnit::open(unit.base, unit.register_bytes()) {
            Ok(vtd) => vtd,
            Err(e) => {
                // Nothing minicap can do with it; if it translates for the
                // dump device, the device's first request will fail.
                say!(
                    "warning: IOMMU: VT-d unit {:#x} ({}): {e}; left alone",
                    unit.base,
                    Scope(unit)
                );
                continue;
            }
        };
        let before = vtd.status();
        let faults = vtd.fault_status();
        if before & status::TE == 0 {
            say!(
                "IOMMU: VT-d unit {:#x} ({}, version {}.{}): translation off; left alone",
                unit.base,
                Scope(unit),
                (vtd.version >> 4) & 0xf,
                vtd.version & 0xf
            );
            continue;
        }
        if !stopped {
            // No stale request of theirs may complete through the new path
            // before their driver has reset them (the driver switches bus
            // mastering back on after the reset).
            for &f in candidates.all() {
                pci::stop_bus_master(&Machine, f);
            }
            stopped = true;
        }
        take_over_unit(unit, &vtd, before, faults, candidates, top)
            .map_err(|e| Failure::iommu(unit.base, e))?;
    }
    Ok(())
}

/// The highest physical address the dump device must reach: every range the
/// dump reads, minicap's heap (queues, buffers) and image.
fn dma_top(core: &CoreHeaders, heap: &Range<u64>) -> u64 {
    let (_, image_end) = crate::hw::image_range();
    core.loads
        .iter()
        .flat_map(|l| {
            [
                l.paddr.saturating_add(l.memsz),
                l.source.saturating_add(l.memsz),
            ]
        })
        .fold(heap.end.max(image_end), u64::max)
}

/// Why a unit's translation was turned off instead (printed loudly).
struct Fallback(&'static str);

fn take_over_unit(
    unit: &Drhd,
    vtd: &VtdUnit,
    before: u32,
    faults: u32,
    devices: &Candidates,
    top: u64,
) -> Result<(), VtdError> {
    let mut done = FixedString::<320>::new();
    // Only segment 0 is scanned (through the legacy configuration ports);
    // a unit of another segment lets no device through.
    let allowed = if unit.segment == 0 {
        devices.all()
    } else {
        &[]
    };
    if before & status::QI != 0 {
        let drained = vtd.disable_queued_invalidation()?;
        let _ = write!(
            done,
            "queued invalidation disabled{}; ",
            if drained {
                ""
            } else {
                " (queue had not drained)"
            }
        );
    }
    vtd.mask_fault_events();
    match choose_mode(vtd, top).and_then(|mode| build_tables(vtd, mode, allowed).map(|r| (mode, r)))
    {
        Ok((mode, root)) => {
            // The translation table mode (legacy/scalable) may change only
            // while translation is off (as Linux notes for kdump). minicap
            // writes legacy tables; a unit in scalable (or abort-DMA) mode
            // is switched with translation off for the few register
            // operations that takes, instead of for the whole dump.
            let old_mode = vtd.table_mode();
            let switch_started = (old_mode != 0).then(|| {
                let started = tsc::now_us();
                vtd.disable_translation().map(|()| started)
            });
            let switch_started = switch_started.transpose()?;
            vtd.flush_write_buffer()?;
            vtd.set_root_table(root)?;
            vtd.invalidate_context_cache()?;
            vtd.invalidate_iotlb()?;
            if let Some(started) = switch_started {
                vtd.enable_translation()?;
                let _ = write!(
                    done,
                    "{} mode switched to legacy with translation off for {} us; ",
                    if old_mode == 1 {
                        "scalable"
                    } else {
                        "abort-DMA"
                    },
                    tsc::now_us().saturating_sub(started)
                );
            }
            let _ = match mode {
                Mode::PassThrough { .. } => write!(done, "own root table, pass-through for "),
                Mode::Identity { top, .. } => {
                    write!(done, "own root table, identity map of [0, {top:#x}) for ")
                }
            };
            if allowed.is_empty() {
                let _ = write!(done, "no device");
            }
            for (i, f) in allowed.iter().enumerate() {
                let _ = write!(done, "{}{f}", if i > 0 { " " } else { "" });
            }
            let _ = write!(done, "; all other DMA blocked");
        }
        Err(Fallback(why)) => {
            vtd.disable_translation()?;
            say!("WARNING: IOMMU: VT-d unit {:#x}: {why}", unit.base);
            say!(
                "WARNING: IOMMU: translation DISABLED on {:#x}: every device behind it now reaches raw physical memory; a device still busy with the crashed kernel's DMA addresses may corrupt the dump or minicap",
                unit.base
            );
            let _ = write!(done, "translation disabled (see the warning above)");
        }
    }
    let after = vtd.status();
    say!(
        "IOMMU: VT-d unit {:#x} ({}, version {}.{}): translation was on{}{}; {}; translation {}",
        unit.base,
        Scope(unit),
        (vtd.version >> 4) & 0xf,
        vtd.version & 0xf,
        if before & status::IR != 0 {
            ", interrupt remapping on (left on: minicap takes no interrupts)"
        } else {
            ""
        },
        FaultNote(faults),
        done.as_str(),
        if after & status::TE != 0 { "on" } else { "off" }
    );
    Ok(())
}

/// "segment 0, all devices" / "segment 0, listed devices".
struct Scope<'a>(&'a Drhd);

impl core::fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let which = if self.0.flags & Drhd::INCLUDE_PCI_ALL != 0 {
            "all devices"
        } else {
            "listed devices"
        };
        write!(f, "segment {}, {which}", self.0.segment)
    }
}

/// ", faults logged (FSTS 0x..)" if the crashed kernel left logged faults.
struct FaultNote(u32);

impl core::fmt::Display for FaultNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 & 0xff != 0 {
            write!(f, ", faults logged (FSTS {:#x})", self.0)
        } else {
            Ok(())
        }
    }
}

/// Pass-through if the unit has it, else identity second-level tables.
fn choose_mode(vtd: &VtdUnit, top: u64) -> Result<Mode, Fallback> {
    let sagaw = vtd.sagaw();
    if sagaw == 0 {
        return Err(Fallback("CAP.SAGAW lists no address width"));
    }
    if vtd.pass_through() {
        // Pass-through context entries carry the largest supported AGAW.
        let aw = u64::from(7 - sagaw.leading_zeros().min(7));
        return Ok(Mode::PassThrough { aw });
    }
    // The smallest supported width n (30 + 9n bits, n + 2 levels) that
    // covers everything the device must reach.
    let aw = (0..5u32)
        .filter(|n| sagaw & (1 << n) != 0)
        .find(|n| 30 + 9 * n >= 64 || top <= 1u64 << (30 + 9 * n))
        .ok_or(Fallback(
            "no pass-through (ECAP.PT) and no address width covers the dump",
        ))?;
    if top > 1u64 << vtd.mgaw_bits().min(63) {
        return Err(Fallback(
            "no pass-through (ECAP.PT) and the dump lies above the unit's address width",
        ));
    }
    let levels = aw + 2;
    let large = vtd.large_pages();
    let leaf = if large & 2 != 0 && levels >= 3 {
        3 // 1 GiB
    } else if large & 1 != 0 {
        2 // 2 MiB
    } else {
        1 // 4 KiB
    };
    let leaf_tables = top.div_ceil(span(leaf) * 512);
    if leaf_tables > MAX_IDENTITY_TABLE_PAGES {
        return Err(Fallback(
            "no pass-through (ECAP.PT) and an identity map of the dump needs too many table pages",
        ));
    }
    Ok(Mode::Identity {
        aw: u64::from(aw),
        levels,
        leaf,
        top: top.div_ceil(span(leaf)) * span(leaf),
    })
}

/// Bytes one entry of a level-`level` table maps (level 1: 4 KiB).
fn span(level: u32) -> u64 {
    1u64 << (12 + 9 * (level - 1))
}

fn table_page() -> Result<u64, Fallback> {
    heap::alloc_forever(PAGE_BYTES, PAGE_BYTES).ok_or(Fallback("out of memory for IOMMU tables"))
}

/// Build the root table, context tables and (identity mode) second-level
/// tables; returns the root table's address.
fn build_tables(vtd: &VtdUnit, mode: Mode, allowed: &[PciAddress]) -> Result<u64, Fallback> {
    let root = table_page()?;
    let (low_bits, aw) = match mode {
        Mode::PassThrough { aw } => (TT_PASS_THROUGH, aw),
        Mode::Identity {
            aw,
            levels,
            leaf,
            top,
        } => {
            let tables = table_page()?;
            identity_table(vtd, tables, levels, leaf, 0, top)?;
            (tables | TT_SECOND_LEVEL, aw)
        }
    };
    let context_low = low_bits | PRESENT;
    let context_high = aw | (DOMAIN_ID << 8);
    // One context table per bus that has an allowed device.
    let mut buses: [(u8, u64); MAX_VIRTIO_DEVICES] = [(0, 0); MAX_VIRTIO_DEVICES];
    let mut bus_count = 0;
    for f in allowed {
        let table = match buses[..bus_count].iter().find(|(bus, _)| *bus == f.bus) {
            Some(&(_, table)) => table,
            None => {
                let table = table_page()?;
                vtd::write_entry128(root, usize::from(f.bus), table | PRESENT, 0);
                buses[bus_count] = (f.bus, table);
                bus_count += 1;
                table
            }
        };
        let devfn = usize::from(f.device) << 3 | usize::from(f.function);
        vtd::write_entry128(table, devfn, context_low, context_high);
    }
    if !vtd.coherent() {
        for &(_, table) in &buses[..bus_count] {
            vtd::flush_table(table);
        }
        vtd::flush_table(root);
    }
    Ok(root)
}

/// Fill the level-`level` table at `table`, which maps [base, base + 512 *
/// span(level)), with an identity map of [base, top) in `leaf`-level pages.
fn identity_table(
    vtd: &VtdUnit,
    table: u64,
    level: u32,
    leaf: u32,
    base: u64,
    top: u64,
) -> Result<(), Fallback> {
    for index in 0..512usize {
        let addr = base + index as u64 * span(level);
        if addr >= top {
            break;
        }
        let entry = if level == leaf {
            addr | SL_READ | SL_WRITE | if level > 1 { SL_PAGE_SIZE } else { 0 }
        } else {
            let next = table_page()?;
            identity_table(vtd, next, level - 1, leaf, addr, top)?;
            next | SL_READ | SL_WRITE
        };
        vtd::write_entry64(table, index, entry);
    }
    if !vtd.coherent() {
        vtd::flush_table(table);
    }
    Ok(())
}
