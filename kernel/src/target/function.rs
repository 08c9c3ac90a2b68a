//! The disks behind one candidate PCI function, opened one at a time.
//!
//! A virtio-blk function or an NVMe controller is one disk. An AHCI HBA is
//! one function with up to 32 ports: it is taken over once (reset, every
//! port given fresh memory, links brought up; `minicap_drivers::ahci`),
//! then each port holding an ATA disk is a disk of its own, named
//! "AHCI 00:1f.2 port 1". Ports without one are said once and never
//! written to; when the HBA is dropped, the ports no disk took stop
//! receiving FISes.

use super::disk::{DiskKind, DumpDisk, DumpDiskError};
use crate::console::FixedString;
use crate::hw::platform::Machine;
use core::fmt::{self, Write as _};
use minicap_drivers::ahci::{AhciHba, Handoff, PortSet, PortState, MAX_PORTS};
use minicap_drivers::nvme::Nvme;
use minicap_drivers::pci::PciAddress;
use minicap_drivers::virtio::VirtioBlk;

/// Where a disk is, before its driver can describe it: "virtio-blk
/// 00:01.0", "AHCI 00:1f.2 port 1".
#[derive(Clone, Copy, Debug)]
pub struct DiskPlace {
    /// The driver.
    pub kind: DiskKind,
    /// The PCI function.
    pub address: PciAddress,
    /// The AHCI port, for a disk on an HBA.
    pub port: Option<u8>,
}

impl fmt::Display for DiskPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.address)?;
        if let Some(port) = self.port {
            write!(f, " port {port}")?;
        }
        Ok(())
    }
}

/// A driver's reset and initialisation of a one-disk function.
type Open<'m> = fn(&'m Machine, PciAddress) -> Result<DumpDisk<'m>, DumpDiskError>;

/// The disks of one function not handed out yet.
#[allow(clippy::large_enum_variant)] // one at a time, on the stack: no gain from a Box
enum Remaining<'m> {
    /// virtio-blk or NVMe: how to open the function's disk, until it is.
    One(Option<Open<'m>>),
    /// An AHCI HBA, taken over, and its ports with an ATA disk.
    Ahci {
        hba: AhciHba<'m, Machine>,
        ports: PortSet,
    },
}

/// The disks behind one candidate function.
pub struct FunctionDisks<'m> {
    machine: &'m Machine,
    address: PciAddress,
    kind: DiskKind,
    remaining: Remaining<'m>,
}

impl<'m> FunctionDisks<'m> {
    /// Get the function at `address` ready to hand out its disks. An AHCI
    /// HBA is taken over here (and its ports reported); a virtio-blk or
    /// NVMe function is reset only when its disk is opened.
    pub fn take_over(
        machine: &'m Machine,
        address: PciAddress,
        kind: DiskKind,
    ) -> Result<Self, DumpDiskError> {
        let remaining = match kind {
            DiskKind::VirtioBlk => Remaining::One(Some(|machine, address| {
                Ok(DumpDisk::VirtioBlk(VirtioBlk::new(machine, address)?))
            })),
            DiskKind::Nvme => Remaining::One(Some(|machine, address| {
                Ok(DumpDisk::Nvme(Nvme::new(machine, address)?))
            })),
            DiskKind::Ahci => {
                let hba = AhciHba::take_over(machine, address)?;
                say_ports(&hba);
                Remaining::Ahci {
                    ports: hba.disks(),
                    hba,
                }
            }
        };
        Ok(Self {
            machine,
            address,
            kind,
            remaining,
        })
    }

    /// The next disk, reset and initialised by its driver (or why it could
    /// not be), with where it is; None when every disk was handed out.
    pub fn next(&mut self) -> Option<(DiskPlace, Result<DumpDisk<'m>, DumpDiskError>)> {
        let mut place = DiskPlace {
            kind: self.kind,
            address: self.address,
            port: None,
        };
        let opened = match &mut self.remaining {
            Remaining::One(open) => open.take()?(self.machine, self.address),
            Remaining::Ahci { hba, ports } => {
                let port = ports.next()?;
                place.port = Some(port);
                hba.open(port)
                    .map(DumpDisk::Ahci)
                    .map_err(DumpDiskError::from)
            }
        };
        Some((place, opened))
    }
}

/// One line: what the takeover found on each implemented port, equal
/// neighbours together ("AHCI 00:1f.2 (AHCI 1.0): ports 0-1: ATA disk;
/// ports 2-5: nothing attached").
fn say_ports(hba: &AhciHba<'_, Machine>) {
    let mut line = FixedString::<240>::new();
    // VS: major in 31:16, minor in 15:8 and 7:0, all BCD (1.3.1 = 0x10301).
    let version = hba.version();
    let _ = write!(
        line,
        "AHCI {} (AHCI {:x}.{:x}",
        hba.pci_address(),
        version >> 16,
        version >> 8 & 0xff
    );
    if version & 0xff != 0 {
        let _ = write!(line, ".{:x}", version & 0xff);
    }
    let _ = line.write_str(match hba.handoff() {
        Handoff::NotSupported => "",
        Handoff::Released => ", released by the BIOS",
        Handoff::Forced => ", not released by the BIOS in time: reset anyway",
    });
    let _ = line.write_str("):");
    let mut first = true;
    let mut number = 0u8;
    while number < MAX_PORTS {
        let state = hba.state(number);
        let mut last = number;
        while last + 1 < MAX_PORTS && hba.state(last + 1) == state {
            last += 1;
        }
        if state != PortState::NotImplemented {
            let _ = line.write_str(if first { " " } else { "; " });
            first = false;
            let _ = if last == number {
                write!(line, "port {number}: {state}")
            } else {
                write!(line, "ports {number}-{last}: {state}")
            };
        }
        number = last + 1;
    }
    if first {
        let _ = line.write_str(" no port implemented");
    }
    crate::say!("{}", line.as_str());
}
