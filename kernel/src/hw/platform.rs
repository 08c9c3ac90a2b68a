//! The drivers' view of the machine, backed by the hardware-access layer:
//! register windows are `MmioRegion`s inside a function's memory BAR, port
//! ranges are `PortRange`s of its I/O BAR, DMA memory is `DmaBuffer`s. A
//! driver names a BAR, never an address; the bounds of every access are
//! checked by those types.

use super::dma::DmaBuffer;
use super::mmio::MmioRegion;
use super::port::PortRange;
use super::{pci_config, tsc};
use minicap_drivers::access::Width;
use minicap_drivers::pci::{self, Bar, PciAddress};
use minicap_drivers::Platform;

/// The machine minicap runs on.
pub struct Machine;

impl Platform for Machine {
    type Mmio = MmioRegion;
    type Ports = PortRange;
    type Dma = DmaBuffer;

    fn map_registers(
        &self,
        function: PciAddress,
        bar: u8,
        offset: u64,
        len: u64,
    ) -> Option<MmioRegion> {
        let Bar::Memory(base) = pci::bar(self, function, bar) else {
            return None;
        };
        MmioRegion::claim(base.checked_add(offset)?, len)
    }
    fn mmio_read(&self, region: &MmioRegion, offset: u64, width: Width) -> u64 {
        region.read(offset, width)
    }
    fn mmio_write(&self, region: &MmioRegion, offset: u64, width: Width, value: u64) {
        region.write(offset, width, value)
    }

    fn claim_ports(&self, function: PciAddress, bar: u8, len: u16) -> Option<PortRange> {
        let Bar::Io(base) = pci::bar(self, function, bar) else {
            return None;
        };
        PortRange::new(base, len)
    }
    fn port_read(&self, ports: &PortRange, offset: u64, width: Width) -> u64 {
        ports.read(offset, width)
    }
    fn port_write(&self, ports: &PortRange, offset: u64, width: Width, value: u64) {
        ports.write(offset, width, value)
    }

    fn pci_segments(&self) -> pci::PciSegments {
        pci_config::segments()
    }
    fn pci_read32(&self, function: PciAddress, offset: u16) -> u32 {
        pci_config::read32(function, offset)
    }
    fn pci_write32(&self, function: PciAddress, offset: u16, value: u32) {
        pci_config::write32(function, offset, value)
    }

    fn dma_alloc(&self, size: usize, align: usize) -> Option<DmaBuffer> {
        DmaBuffer::new(size, align)
    }
    fn dma_read(&self, dma: &DmaBuffer, offset: u64, width: Width) -> u64 {
        dma.read(offset, width)
    }
    fn dma_write(&self, dma: &DmaBuffer, offset: u64, width: Width, value: u64) {
        dma.write(offset, width, value)
    }
    fn dma_read_bytes(&self, dma: &DmaBuffer, offset: u64, out: &mut [u8]) {
        dma.read_bytes(offset, out)
    }
    fn dma_flush(&self, dma: &DmaBuffer) {
        dma.flush()
    }

    fn now_us(&self) -> u64 {
        tsc::now_us()
    }
}
