//! Leaving the machine: reset, power off, halt.

use super::cpu;
use super::port::{inb, inw, outb, outw};

/// Reset the machine: the chipset reset register (0xcf9), then the keyboard
/// controller, then a triple fault. Each step is tried only if the one before
/// did not take effect.
pub fn reboot() -> ! {
    // PIIX/ICH reset control: SYS_RST then SYS_RST|RST_CPU for a hard reset.
    outb(0xcf9, 0x02);
    outb(0xcf9, 0x06);
    spin_a_while();
    // 8042: wait (bounded) for the input buffer to drain, then pulse reset.
    for _ in 0..100_000 {
        if inb(0x64) & 0x02 == 0 {
            break;
        }
    }
    outb(0x64, 0xfe);
    spin_a_while();
    cpu::triple_fault()
}

/// Whether `port` can be a PM1 control block: the FADT comes from memory
/// the crashed kernel could have damaged, so a port that belongs to the
/// legacy devices minicap itself drives (the 0x000-0x0ff ISA block with the
/// PICs, PIT and keyboard controller; COM1 at 0x3f8; PCI configuration and
/// reset at 0xcf8-0xcff) is refused rather than written.
pub fn is_pm1_control_port(port: u16) -> bool {
    port >= 0x100 && !(0x3f8..=0x3ff).contains(&port) && !(0xcf8..=0xcff).contains(&port)
}

/// ACPI soft-off: write SLP_TYP|SLP_EN to the PM1 control block(s). Returns
/// (without writing anything) if a port is not a plausible PM1 control port
/// (see [`is_pm1_control_port`]); otherwise returns only if the machine did
/// not switch off.
pub fn acpi_poweroff(
    pm1a_control: u16,
    pm1b_control: Option<u16>,
    sleep_type_a: u16,
    sleep_type_b: u16,
) {
    if !is_pm1_control_port(pm1a_control) || !pm1b_control.is_none_or(is_pm1_control_port) {
        return;
    }
    const SLP_EN: u16 = 1 << 13;
    const SLP_TYP: u16 = 7 << 10;
    // Read-modify-write: keep the other bits (SCI_EN and friends).
    let value = |port: u16, sleep_type: u16| {
        (inw(port) & !(SLP_TYP | SLP_EN)) | ((sleep_type << 10) & SLP_TYP) | SLP_EN
    };
    outw(pm1a_control, value(pm1a_control, sleep_type_a));
    if let Some(port) = pm1b_control {
        outw(port, value(port, sleep_type_b));
    }
    spin_a_while();
}

fn spin_a_while() {
    for _ in 0..10_000_000 {
        core::hint::spin_loop();
    }
}
