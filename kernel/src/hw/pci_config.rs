//! PCI configuration mechanism #1 (ports 0xcf8/0xcfc): present on every PC
//! chipset and needs no ACPI tables or MMIO mapping.

use super::port::{inl, outl};
use minicap_drivers::pci::PciAddress;
use spin::Mutex;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// The address/data pair must not be interleaved.
static LOCK: Mutex<()> = Mutex::new(());

fn address(f: PciAddress, offset: u16) -> u32 {
    0x8000_0000
        | (u32::from(f.bus) << 16)
        | (u32::from(f.device & 0x1f) << 11)
        | (u32::from(f.function & 7) << 8)
        | u32::from(offset & 0xfc)
}

/// Read a configuration dword (offset < 256).
pub fn read32(f: PciAddress, offset: u16) -> u32 {
    let _guard = LOCK.lock();
    outl(CONFIG_ADDRESS, address(f, offset));
    inl(CONFIG_DATA)
}

/// Write a configuration dword (offset < 256).
pub fn write32(f: PciAddress, offset: u16, value: u32) {
    let _guard = LOCK.lock();
    outl(CONFIG_ADDRESS, address(f, offset));
    outl(CONFIG_DATA, value);
}
