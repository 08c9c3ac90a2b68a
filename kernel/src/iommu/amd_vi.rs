//! AMD-Vi units (IVRS): take over every unit that translates with a device
//! table in which only the requester IDs of the candidates its IVHD lists
//! (and the aliases the IVRS names for them) reach memory, untranslated;
//! say what was done.
//! The sequence and its bounded waits are `minicap_drivers::amdvi::take_over`.

use super::{AllowedDevices, IommuError, UnitError};
use crate::console::FixedString;
use crate::hw::iommu::AmdViUnit;
use crate::hw::platform::Machine;
use crate::say;
use core::fmt::{self, Write};
use minicap_acpi::{self as acpi, AcpiInfo};
use minicap_drivers::amdvi::{
    self, AllowedIds, AmdViRegisters, Flush, Register, DEVICE_TABLE_ENTRIES,
};

/// Take over every AMD-Vi unit the IVRS lists that translates.
pub(super) fn take_over_all(
    acpi: &AcpiInfo,
    allowed: &mut AllowedDevices<'_>,
) -> Result<(), IommuError> {
    if acpi.amd_iommus_dropped > 0 {
        say!(
            "warning: IOMMU: {} more AMD-Vi unit(s) than minicap records ({}); they are left as they are",
            acpi.amd_iommus_dropped,
            acpi::MAX_AMD_IOMMUS
        );
    }
    for ivhd in &acpi.amd_vi_units[..acpi.amd_iommu_count] {
        let Some(unit) = AmdViUnit::open(ivhd.base) else {
            // If it translates for the dump device, the device's first
            // request will fail.
            say!(
                "warning: IOMMU: AMD-Vi unit {:#x} ({}): its registers cannot be mapped or read; left alone",
                ivhd.base,
                Scope(ivhd)
            );
            continue;
        };
        if !unit.enabled() {
            say!(
                "IOMMU: AMD-Vi unit {:#x} ({}): translation off; left alone",
                ivhd.base,
                Scope(ivhd)
            );
            continue;
        }
        take_over_unit(ivhd, &unit, allowed)?;
    }
    Ok(())
}

fn take_over_unit(
    ivhd: &acpi::AmdViUnit,
    unit: &AmdViUnit,
    allowed: &mut AllowedDevices<'_>,
) -> Result<(), IommuError> {
    // The candidates of its segment its IVHD lists (all of them if its
    // entries were not all read), with every requester ID their DMA can
    // carry.
    let requesters =
        allowed.requesters(|_, f| f.segment == ivhd.segment && ivhd.may_serve(amdvi::device_id(f)));
    let ids = AllowedIds::new(&requesters, ivhd.segment, |id| ivhd.alias_of(id));
    // The IVRS image of the extended features (IVHD types 0x11 and 0x40)
    // is what Linux trusts; a type 0x10 block has none, and the register
    // reads 0 on a unit without one (so each entry is flushed on its own).
    let efr = if ivhd.efr_image != 0 {
        ivhd.efr_image
    } else {
        unit.read(Register::ExtendedFeatures)
    };
    let done =
        amdvi::take_over(&Machine, unit, DEVICE_TABLE_ENTRIES, &ids, efr).map_err(|error| {
            IommuError {
                base: ivhd.base,
                error: UnitError::AmdVi(error),
            }
        })?;
    let mut through = FixedString::<200>::new();
    if ids.all().is_empty() {
        let _ = write!(through, " no device");
    }
    for &id in ids.all() {
        let _ = write!(through, " {}", DeviceId(id));
    }
    say!(
        "IOMMU: AMD-Vi unit {:#x} ({}): translation was on{}; own device table ({} entries), untranslated DMA for{}; all other DMA and every interrupt blocked; unit off for {} us while it was switched; caches flushed ({}); translation {}",
        ivhd.base,
        Scope(ivhd),
        if done.exclusion_was_on {
            ", exclusion range on (cleared)"
        } else {
            ""
        },
        done.entries,
        through.as_str(),
        done.window_us,
        match done.flush {
            Flush::All => "INVALIDATE_IOMMU_ALL",
            Flush::EachEntry(_) => "INVALIDATE_DEVTAB_ENTRY for every entry",
        },
        if unit.enabled() { "on" } else { "OFF" }
    );
    if ids.dropped > 0 {
        say!(
            "warning: IOMMU: AMD-Vi unit {:#x}: {} requester ID(s) beyond what minicap records; DMA with them stays blocked",
            ivhd.base,
            ids.dropped
        );
    }
    if ivhd.entries_stopped || ivhd.aliases_dropped > 0 {
        say!(
            "warning: IOMMU: AMD-Vi unit {:#x}: not every IVRS device entry was read; an alias listed among them stays blocked",
            ivhd.base
        );
    }
    Ok(())
}

/// A device ID as bus:device.function.
struct DeviceId(u16);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [bus, devfn] = self.0.to_be_bytes();
        write!(f, "{bus:02x}:{:02x}.{}", devfn >> 3, devfn & 7)
    }
}

/// "segment 0, IOMMU 00:00.2, IVHD type 0x40".
struct Scope<'a>(&'a acpi::AmdViUnit);

impl fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {}, IOMMU {}, IVHD type {:#x}",
            self.0.segment,
            DeviceId(self.0.device_id),
            self.0.block_type
        )
    }
}
