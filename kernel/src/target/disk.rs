//! The kinds of disk a dump can go to, behind one [`BlockDevice`]: the
//! dump writer (`minicap_capture::writer`) is generic over the trait, so
//! it sees a [`DumpDisk`] and never which driver runs underneath.
//!
//! A new kind is one variant in each of [`DiskKind`], [`DumpDisk`] and
//! [`DumpDiskError`], its PCI identity in [`DiskKind::of`], how its disks
//! are opened in `super::function`, its `minicap.target=` value in
//! [`DiskKind::selected_by`], and one arm in [`each_disk!`]; everything
//! else follows.

use crate::hw::platform::Machine;
use core::fmt;
use minicap_bootinfo::cmdline::DumpTarget;
use minicap_drivers::ahci::{self, AhciDisk, AhciError, IdentifyError};
use minicap_drivers::nvme::{self, Nvme, NvmeError};
use minicap_drivers::pci::PciFunction;
use minicap_drivers::virtio::{is_virtio_blk, VirtioBlk, VirtioBlkError};
use minicap_drivers::BlockDevice;

/// Which driver a PCI function needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskKind {
    /// A virtio-blk function (legacy, transitional or modern).
    VirtioBlk,
    /// An NVM Express controller (class 01h/08h/02h).
    Nvme,
    /// An AHCI HBA (class 01h/06h/01h): one function, a disk per port.
    Ahci,
}

impl DiskKind {
    /// The kind of disk `function` is, if minicap has a driver for it.
    pub fn of(machine: &Machine, function: &PciFunction) -> Option<Self> {
        if is_virtio_blk(function.vendor, function.device) {
            Some(Self::VirtioBlk)
        } else if nvme::is_nvme(machine, function.address) {
            Some(Self::Nvme)
        } else if ahci::is_ahci(machine, function.address) {
            Some(Self::Ahci)
        } else {
            None
        }
    }

    /// Whether `minicap.target=` lets minicap use disks of this kind.
    pub fn selected_by(self, target: DumpTarget) -> bool {
        match target {
            DumpTarget::Any => true,
            DumpTarget::VirtioBlk => self == Self::VirtioBlk,
            DumpTarget::Nvme => self == Self::Nvme,
            DumpTarget::Ahci => self == Self::Ahci,
        }
    }

    /// How messages name the kind (as the drivers' own descriptions begin).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VirtioBlk => "virtio-blk",
            Self::Nvme => "NVMe",
            Self::Ahci => "AHCI",
        }
    }
}

impl fmt::Display for DiskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A disk taken over by its driver: reset, initialised, polled.
pub enum DumpDisk<'m> {
    /// A virtio-blk disk.
    VirtioBlk(VirtioBlk<'m, Machine>),
    /// The first active namespace of an NVMe controller.
    Nvme(Nvme<'m, Machine>),
    /// An ATA disk on one port of an AHCI HBA.
    Ahci(AhciDisk<'m, Machine>),
}

/// A driver's error, kept typed; `Display` is the driver's own text.
#[derive(Clone, Copy, Debug)]
pub enum DumpDiskError {
    /// From the virtio-blk driver.
    VirtioBlk(VirtioBlkError),
    /// From the NVMe driver.
    Nvme(NvmeError),
    /// From the AHCI driver.
    Ahci(AhciError),
}

impl From<VirtioBlkError> for DumpDiskError {
    fn from(e: VirtioBlkError) -> Self {
        Self::VirtioBlk(e)
    }
}

impl From<NvmeError> for DumpDiskError {
    fn from(e: NvmeError) -> Self {
        Self::Nvme(e)
    }
}

impl From<AhciError> for DumpDiskError {
    fn from(e: AhciError) -> Self {
        Self::Ahci(e)
    }
}

impl fmt::Display for DumpDiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VirtioBlk(e) => e.fmt(f),
            Self::Nvme(e) => e.fmt(f),
            Self::Ahci(e) => e.fmt(f),
        }
    }
}

impl DumpDiskError {
    /// The logical block size a driver refused the disk for, if that is
    /// why it did (the virtio-blk driver accepts any size and leaves the
    /// check to [`crate::writer::block_size_supported`]).
    pub fn refused_block_size(&self) -> Option<u32> {
        match self {
            Self::Nvme(NvmeError::UnsupportedBlockSize(shift)) => {
                1u32.checked_shl(u32::from(*shift))
            }
            Self::Ahci(AhciError::Identify {
                error: IdentifyError::SectorSize(size),
                ..
            }) => Some(*size),
            _ => None,
        }
    }
}

/// `$body` with `$disk` bound to the driver inside `$self`, whichever it is.
macro_rules! each_disk {
    ($self:expr, $disk:ident => $body:expr) => {
        match $self {
            DumpDisk::VirtioBlk($disk) => $body,
            DumpDisk::Nvme($disk) => $body,
            DumpDisk::Ahci($disk) => $body,
        }
    };
}

impl BlockDevice for DumpDisk<'_> {
    type Error = DumpDiskError;

    fn capacity(&self) -> u64 {
        each_disk!(self, d => d.capacity())
    }

    fn sector_size(&self) -> u32 {
        each_disk!(self, d => d.sector_size())
    }

    fn max_transfer(&self) -> u64 {
        each_disk!(self, d => d.max_transfer())
    }

    fn max_in_flight(&self) -> usize {
        each_disk!(self, d => d.max_in_flight())
    }

    fn read(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), DumpDiskError> {
        each_disk!(self, d => Ok(d.read(offset, phys, len)?))
    }

    fn write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), DumpDiskError> {
        each_disk!(self, d => Ok(d.write(offset, phys, len)?))
    }

    fn start_write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), DumpDiskError> {
        each_disk!(self, d => Ok(d.start_write(offset, phys, len)?))
    }

    fn wait(&mut self) -> Result<(), DumpDiskError> {
        each_disk!(self, d => Ok(d.wait()?))
    }

    fn flush(&mut self) -> Result<(), DumpDiskError> {
        each_disk!(self, d => Ok(d.flush()?))
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        each_disk!(self, d => d.describe(out))
    }
}
