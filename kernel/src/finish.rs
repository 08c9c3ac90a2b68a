//! The last step: reboot, halt or power off, as `minicap.after=` says.

use crate::hw::{cpu, phys::IdentityMem, power};
use crate::say;
use minicap_bootinfo::cmdline::AfterDump;
use spin::Once;

/// Where ACPI keeps its tables (from boot_params), for the power-off path.
pub static RSDP_HINT: Once<u64> = Once::new();

/// Leave the machine.
pub fn leave(after: AfterDump) -> ! {
    match after {
        AfterDump::Reboot => {
            say!("rebooting");
            power::reboot()
        }
        AfterDump::Halt => {
            say!("halting (the machine stays stopped; reset it by hand)");
            cpu::halt_forever()
        }
        AfterDump::Poweroff => {
            let hint = RSDP_HINT.get().copied().unwrap_or(0);
            if let Some(acpi) = minicap_acpi::discover(&IdentityMem, hint) {
                if let (Some(pm1a), Some((a, b))) = (acpi.pm1a_control, acpi.s5_sleep_types) {
                    let ports_ok = power::is_pm1_control_port(pm1a)
                        && acpi.pm1b_control.is_none_or(power::is_pm1_control_port);
                    if ports_ok {
                        say!("powering off");
                        power::acpi_poweroff(pm1a, acpi.pm1b_control, a, b);
                    } else {
                        say!("the FADT's PM1 control port {pm1a:#x} is not plausible; not written");
                    }
                }
            }
            say!("power-off failed (no usable ACPI \\_S5); halting instead");
            cpu::halt_forever()
        }
    }
}
