//! The IOMMU after a crash.
//!
//! The panicking kernel does not shut its IOMMU down (docs/entry-contract.md,
//! "What the panicking kernel did", point 5): a VT-d or AMD-Vi unit keeps
//! translating every device's DMA through the old kernel's tables, so the
//! dump device, which minicap points at raw physical addresses, faults.
//! Turning translation off is not an answer on its own: a device still busy
//! with the old kernel's addresses would then write to raw physical memory,
//! the memory being dumped or minicap's own heap.
//!
//! So every unit with translation on gets minicap's own tables, in which
//! only the disks minicap may use (the dump disk candidates, virtio-blk,
//! NVMe and AHCI, of the kinds `minicap.target=` selects; an AHCI HBA is
//! one function for all its ports) reach memory, and every other device's
//! DMA is blocked:
//! - VT-d: a root table in which only they have a (present) context entry,
//!   pass-through if the unit supports it, else an identity map of
//!   everything the dump reads and minicap's memory (`minicap_drivers::vtd`);
//! - AMD-Vi: a device table in which every device ID is valid and blocked
//!   except theirs, which reach memory untranslated
//!   (`minicap_drivers::amdvi`, the sequence and its bounded waits).
//!
//! All candidates are let through, not just the dump device: `target::find`
//! resets and reads every candidate to find the prepared one, and they are
//! the only devices minicap drives. Each is let through with every
//! requester ID its DMA can carry: its own, those the bridges above it
//! substitute (`minicap_drivers::dma_alias`, Linux
//! `pci_for_each_dma_alias()`) and, on AMD-Vi, the alias the IVRS names.
//! Their bus mastering is switched off first, so none of them can finish
//! an old request through the new path before its driver reset.
//!
//! Candidates are found on every PCI segment the platform reaches (segment
//! 0 through the legacy configuration ports, the others through the ECAM
//! windows the MCFG lists: `crate::hw::pci_config`). Each unit serves one
//! segment, and its tables are indexed by bus/device/function alone, so a
//! candidate is let through only on units of its own segment. A VT-d
//! candidate is let through on the unit that serves it only: the DRHD of
//! its segment whose device scope names it or a bridge above it, else the
//! segment's INCLUDE_PCI_ALL unit (Linux `dmar_find_matched_drhd_unit()`);
//! an AMD-Vi unit lets through the candidates of its segment its IVHD
//! device entries list. A unit of a segment without candidates lets no
//! device through (all its DMA is blocked).
//!
//! Units with translation off are left alone, as they are: their devices
//! already reach raw memory. This module decides and reports,
//! `hw::iommu` maps the registers.

mod amd_vi;

use crate::console::FixedString;
use crate::hw::iommu::{status, VtdError, VtdUnit};
use crate::hw::platform::Machine;
use crate::hw::tsc;
use crate::say;
use crate::target::Candidates;
use core::fmt::{self, Write};
use core::ops::Range;
use minicap_acpi::{self as acpi, AcpiInfo, DeviceScope, Drhd};
use minicap_drivers::amdvi::AmdViError;
use minicap_drivers::dma_alias::{Bridges, RequesterIds};
use minicap_drivers::pci::{self, PciAddress};
use minicap_drivers::vtd::{build_tables, choose_mode, Mode};
use minicap_elfcore::CoreHeaders;

/// What a unit did not do.
#[derive(Debug, Clone, Copy)]
pub enum UnitError {
    /// A VT-d unit.
    Vtd(VtdError),
    /// An AMD-Vi unit.
    AmdVi(AmdViError),
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vtd(e) => write!(f, "VT-d: {e}"),
            Self::AmdVi(e) => write!(f, "AMD-Vi: {e}"),
        }
    }
}

/// A unit did not carry out a command: its state is unknown, so nothing
/// may be written.
#[derive(Debug, Clone, Copy)]
pub struct IommuError {
    /// The unit's register base.
    pub base: u64,
    /// What it did not do.
    pub error: UnitError,
}

impl fmt::Display for IommuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IOMMU: unit at {:#x}: {}", self.base, self.error)
    }
}

/// The devices the units let through, prepared once for all units: the
/// candidates' bus mastering stopped and the bridges found (a scan of
/// every bus, done only if some unit is taken over).
struct AllowedDevices<'a> {
    candidates: &'a Candidates,
    bridges: Option<Bridges>,
}

impl<'a> AllowedDevices<'a> {
    fn new(candidates: &'a Candidates) -> Self {
        Self {
            candidates,
            bridges: None,
        }
    }

    /// Every requester ID of the candidates `serves` picks (given the
    /// bridges, to tell which unit is above a candidate).
    fn requesters(&mut self, serves: impl Fn(&Bridges, PciAddress) -> bool) -> RequesterIds {
        let candidates = self.candidates;
        let bridges = self.bridges.get_or_insert_with(|| {
            // No stale request of theirs may complete through the new path
            // before their driver has reset them (the driver switches bus
            // mastering back on after the reset).
            for &f in candidates.all() {
                pci::stop_bus_master(&Machine, f);
            }
            let bridges = Bridges::scan(&Machine);
            if bridges.dropped > 0 {
                say!(
                    "warning: IOMMU: {} bridge(s) beyond what minicap records; DMA a bridge among them gives its own ID stays blocked",
                    bridges.dropped
                );
            }
            bridges
        });
        let mut ids = RequesterIds::EMPTY;
        for &f in candidates.all().iter().filter(|&&f| serves(bridges, f)) {
            for &id in bridges.requester_ids(&[f]).all() {
                ids.add(id);
            }
        }
        if ids.dropped > 0 {
            say!(
                "warning: IOMMU: {} requester ID(s) beyond what minicap records; DMA with them stays blocked",
                ids.dropped
            );
        }
        ids
    }
}

/// Whether the VT-d unit `index` of `units` serves `f` (the unit of its
/// segment whose device scope names it or a bridge above it, else that
/// segment's INCLUDE_PCI_ALL unit).
fn vtd_unit_serves(units: &[Drhd], index: usize, bridges: &Bridges, f: PciAddress) -> bool {
    // Only units of f's segment are asked, so a scope's path is on it.
    let names_f = |scope: &DeviceScope| {
        bridges
            .path_end(f.segment, scope.start_bus, scope.path())
            .is_some_and(|target| bridges.is_at_or_below(f, target))
    };
    acpi::unit_serving(units, f.segment, names_f) == Some(index)
}

/// Take over every VT-d and AMD-Vi unit that translates (see the module
/// comment). `core` and `heap` tell what the dump device must reach if a
/// VT-d unit cannot do pass-through. Fails only when a unit does not carry
/// out a command (then its state is unknown and nothing is written).
pub fn take_over(
    acpi: Option<&AcpiInfo>,
    candidates: &Candidates,
    core: &CoreHeaders,
    heap: &Range<u64>,
) -> Result<(), IommuError> {
    let Some(acpi) = acpi else {
        say!("IOMMU: no ACPI tables found; assuming there is no IOMMU");
        return Ok(());
    };
    let units = &acpi.drhd[..acpi.drhd_count];
    if units.is_empty() && acpi.amd_iommu_count == 0 {
        say!(
            "IOMMU: {}",
            if acpi.dmar_present {
                "DMAR table lists no remapping unit"
            } else {
                "none (no DMAR or IVRS table)"
            }
        );
        return Ok(());
    }
    let mut allowed = AllowedDevices::new(candidates);
    amd_vi::take_over_all(acpi, &mut allowed)?;
    if acpi.drhd_dropped > 0 {
        say!(
            "warning: IOMMU: {} more VT-d unit(s) than minicap records ({}); they are left as they are",
            acpi.drhd_dropped,
            acpi::MAX_DRHD
        );
    }
    let top = dma_top(core, heap);
    for (index, unit) in units.iter().enumerate() {
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
        if unit.scopes.dropped > 0 && unit.flags & Drhd::INCLUDE_PCI_ALL == 0 {
            say!(
                "warning: IOMMU: VT-d unit {:#x}: {} device scope entries not read; a disk listed there is let through on the INCLUDE_PCI_ALL unit instead",
                unit.base,
                unit.scopes.dropped
            );
        }
        let requesters = allowed.requesters(|bridges, f| vtd_unit_serves(units, index, bridges, f));
        take_over_unit(unit, &vtd, before, faults, requesters.all(), top).map_err(|error| {
            IommuError {
                base: unit.base,
                error: UnitError::Vtd(error),
            }
        })?;
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

fn take_over_unit(
    unit: &Drhd,
    vtd: &VtdUnit,
    before: u32,
    faults: u32,
    allowed: &[PciAddress],
    top: u64,
) -> Result<(), VtdError> {
    let mut done = FixedString::<320>::new();
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
    let caps = vtd.capabilities();
    let tables = choose_mode(&caps, top).and_then(|mode| {
        build_tables(&Machine, &caps, mode, unit.segment, allowed).map(|t| (mode, t))
    });
    match tables {
        Ok((mode, tables)) => {
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
            vtd.set_root_table(tables.root().region())?;
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
        Err(why) => {
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
