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

/// ACPI soft-off: write SLP_TYP|SLP_EN to the PM1 control block(s).
pub fn acpi_poweroff(
    pm1a_control: u16,
    pm1b_control: Option<u16>,
    sleep_type_a: u16,
    sleep_type_b: u16,
) {
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
