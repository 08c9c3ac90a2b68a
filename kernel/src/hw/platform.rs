//! The drivers' view of the machine, backed by the hardware-access layer.

use super::{heap, mmio, paging, pci_config, port, tsc};
use minicap_drivers::pci::PciAddress;
use minicap_drivers::Platform;

/// The machine minicap runs on.
pub struct Machine;

impl Platform for Machine {
    fn read8(&self, addr: u64) -> u8 {
        mmio::read8(addr)
    }
    fn read16(&self, addr: u64) -> u16 {
        mmio::read16(addr)
    }
    fn read32(&self, addr: u64) -> u32 {
        mmio::read32(addr)
    }
    fn write8(&self, addr: u64, value: u8) {
        mmio::write8(addr, value)
    }
    fn write16(&self, addr: u64, value: u16) {
        mmio::write16(addr, value)
    }
    fn write32(&self, addr: u64, value: u32) {
        mmio::write32(addr, value)
    }
    fn write64(&self, addr: u64, value: u64) {
        mmio::write64(addr, value)
    }
    fn inb(&self, p: u16) -> u8 {
        port::inb(p)
    }
    fn inw(&self, p: u16) -> u16 {
        port::inw(p)
    }
    fn inl(&self, p: u16) -> u32 {
        port::inl(p)
    }
    fn outb(&self, p: u16, value: u8) {
        port::outb(p, value)
    }
    fn outw(&self, p: u16, value: u16) {
        port::outw(p, value)
    }
    fn outl(&self, p: u16, value: u32) {
        port::outl(p, value)
    }
    fn pci_read32(&self, function: PciAddress, offset: u16) -> u32 {
        pci_config::read32(function, offset)
    }
    fn pci_write32(&self, function: PciAddress, offset: u16, value: u32) {
        pci_config::write32(function, offset, value)
    }
    fn dma_alloc(&self, size: usize, align: usize) -> Option<u64> {
        heap::alloc_forever(size, align)
    }
    fn map_mmio(&self, addr: u64, len: u64) -> bool {
        paging::map_mmio(addr, len)
    }
    fn now_us(&self) -> u64 {
        tsc::now_us()
    }
}
