//! Finding the dump device: the disk whose first logical block holds a
//! minicap header (written by `minicap format`) with the requested id.
//!
//! The candidates are the PCI functions of every kind `minicap.target=`
//! selects (virtio-blk, NVMe, AHCI: [`DiskKind`]), in bus scan order, on
//! every PCI segment: segment 0 through the configuration ports, every
//! other segment the ACPI MCFG lists through its ECAM window, on the buses
//! the MCFG gives it ([`reach_pci_segments`]); a
//! virtio-blk function or NVMe controller is one disk, an AHCI HBA one disk
//! per port holding an ATA disk, in port order (`function`). Every disk is
//! reset by its driver before use (the crashed kernel may have left
//! requests in flight; an HBA is reset once for all its ports) and its
//! header read; none but the chosen one is ever written, and a disk without
//! a valid header carrying the requested id is left alone. Which driver
//! runs underneath is hidden behind [`DumpDisk`], so the writer and this
//! search are the same for all kinds.

mod disk;
mod function;

pub use disk::{DiskKind, DumpDisk};

use disk::DumpDiskError;
use function::{DiskPlace, FunctionDisks};

use crate::console::FixedString;
use crate::failure::{DeviceName, Failure};
use crate::hw::dma::DmaBuffer;
use crate::hw::pci_config::{self, Reach};
use crate::hw::platform::Machine;
use crate::say;
use crate::writer::block_size_supported;
use core::fmt::Write as _;
use minicap_acpi::Mcfg;
use minicap_bootinfo::cmdline::DumpTarget;
use minicap_drivers::pci::{self, PciAddress, PciSegment};
use minicap_drivers::{BlockDevice, Platform};
use minicap_dumpheader::{DeviceIdHex, DumpHeader, HeaderError, HEADER_LEN};
use minicap_physmem::{PAGE_BYTES, PAGE_SIZE};

/// Functions considered (and let through a translating IOMMU), all kinds
/// together; an AHCI HBA is one, however many ports it has.
pub const MAX_CANDIDATES: usize = 16;

/// The chosen device and the header found on it.
pub struct Target<'m> {
    /// The device, initialised.
    pub device: DumpDisk<'m>,
    /// Its minicap header as found.
    pub header: DumpHeader,
    /// "virtio-blk 00:04.0 (modern), 2048 MiB",
    /// "NVMe 00:03.0 (QEMU NVMe Ctrl, namespace 1), 2048 MiB",
    /// "AHCI 00:1f.2 port 1 (QEMU HARDDISK), 2048 MiB".
    pub name: DeviceName,
}

/// The disks on the PCI bus of the kinds `minicap.target=` selects, in scan
/// order: the candidates for the dump device (and the only devices the
/// IOMMU takeover lets through).
pub struct Candidates {
    addresses: [PciAddress; MAX_CANDIDATES],
    kinds: [DiskKind; MAX_CANDIDATES],
    count: usize,
    /// The kinds asked for.
    target: DumpTarget,
}

impl Candidates {
    /// Scan every bus of every segment (segment 0, and those of `mcfg`,
    /// reached first) for disks of the kinds `target` selects. Disks of
    /// other kinds, and any beyond [`MAX_CANDIDATES`], are said and left
    /// alone.
    pub fn scan(machine: &Machine, mcfg: Option<&Mcfg>, target: DumpTarget) -> Self {
        reach_pci_segments(mcfg);
        let mut found = Self {
            addresses: [PciAddress::new(0, 0, 0); MAX_CANDIDATES],
            kinds: [DiskKind::VirtioBlk; MAX_CANDIDATES],
            count: 0,
            target,
        };
        pci::enumerate(machine, |f| {
            let Some(kind) = DiskKind::of(machine, &f) else {
                return;
            };
            let address = f.address;
            if !kind.selected_by(target) {
                say!("{kind} {address}: not a candidate (minicap.target={target}); left alone");
            } else if found.count == MAX_CANDIDATES {
                say!(
                    "{kind} {address}: more than {MAX_CANDIDATES} candidate functions; left alone"
                );
            } else {
                found.addresses[found.count] = address;
                found.kinds[found.count] = kind;
                found.count += 1;
            }
        });
        found.report(target);
        found
    }

    /// No disk at all: the dump streams on a serial line (`minicap.target=serial`), so no
    /// disk is touched and none is let through the IOMMU.
    pub fn none() -> Self {
        say!("minicap.target=serial: no disk is looked at");
        Self {
            addresses: [PciAddress::new(0, 0, 0); MAX_CANDIDATES],
            kinds: [DiskKind::VirtioBlk; MAX_CANDIDATES],
            count: 0,
            target: DumpTarget::Any,
        }
    }

    /// One line: what the scan found.
    fn report(&self, target: DumpTarget) {
        let mut list = FixedString::<200>::new();
        for (i, (address, kind)) in self.iter().enumerate() {
            let _ = write!(list, "{}{kind} {address}", if i > 0 { ", " } else { "" });
        }
        if self.count == 0 {
            let _ = list.write_str("none");
        }
        say!(
            "dump disk candidates (minicap.target={target}): {}",
            list.as_str()
        );
    }

    /// The functions found.
    pub fn all(&self) -> &[PciAddress] {
        &self.addresses[..self.count]
    }

    /// The functions found, each with its kind.
    fn iter(&self) -> impl Iterator<Item = (PciAddress, DiskKind)> + '_ {
        self.all().iter().copied().zip(self.kinds.iter().copied())
    }
}

/// Map the ECAM window of every segment other than 0 the MCFG lists, so the
/// scan (and the IOMMU's bridge scan) reach its buses; say each, and every
/// allocation refused.
fn reach_pci_segments(mcfg: Option<&Mcfg>) {
    let Some(mcfg) = mcfg else {
        return; // No MCFG: segment 0 only, through the ports.
    };
    if let Some(error) = mcfg.first_error {
        say!(
            "warning: PCI: {error} ({} refused in all); disks there are not found unless on segment 0 (reached through the ports)",
            mcfg.refused
        );
    }
    if mcfg.dropped > 0 {
        say!(
            "warning: PCI: {} MCFG allocation(s) beyond what minicap records; a disk there is not found",
            mcfg.dropped
        );
    }
    for a in mcfg.all() {
        let buses = PciSegment {
            segment: a.segment,
            first_bus: a.start_bus,
            last_bus: a.end_bus,
        };
        let how = pci_config::reach_segment(buses, a.base);
        let (segment, first, last) = (a.segment, a.start_bus, a.end_bus);
        match how {
            Ok(Reach::ThroughPorts) => {}
            Ok(Reach::Mapped) => say!(
                "PCI: segment {segment:04x} buses {first:02x}-{last:02x}: ECAM at {:#x}",
                a.window_start()
            ),
            Err(e) => say!(
                "warning: PCI: segment {segment:04x} buses {first:02x}-{last:02x}: ECAM at {:#x} not used: {e}; a disk there is not found",
                a.window_start()
            ),
        }
    }
}

/// Pick the dump device among the disks of the `candidates`.
pub fn find<'m>(
    machine: &'m Machine,
    candidates: &Candidates,
    wanted: Option<[u8; 16]>,
) -> Result<Target<'m>, Failure> {
    let no_device = Failure::NoDevice {
        target: candidates.target,
    };
    if candidates.count == 0 {
        return Err(no_device);
    }
    let buffer = machine
        .dma_alloc(PAGE_BYTES, PAGE_BYTES)
        .ok_or(Failure::OutOfMemory {
            what: "a read buffer",
        })?;
    let mut search = Search {
        wanted,
        buffer: &buffer,
        chosen: None,
        disks: 0,
        prepared: 0,
        unsupported: None,
    };
    for (address, kind) in candidates.iter() {
        let mut disks = match FunctionDisks::take_over(machine, address, kind) {
            Ok(disks) => disks,
            Err(e) => {
                say!("{kind} {address}: unusable: {e}; left alone");
                // Its disks, if any, are unknown: not "no disk".
                search.disks += 1;
                continue;
            }
        };
        while let Some((place, opened)) = disks.next() {
            search.consider(place, opened)?;
        }
    }
    let Search {
        chosen,
        disks,
        prepared,
        unsupported,
        ..
    } = search;
    if disks == 0 {
        // Only AHCI HBAs, none with a disk.
        return Err(no_device);
    }
    chosen.ok_or(match (unsupported, prepared, wanted) {
        (Some((device, block_size)), _, _) => Failure::UnsupportedBlockSize { device, block_size },
        (None, _, Some(wanted)) if prepared > 0 => Failure::DeviceIdMismatch { wanted },
        _ => Failure::NoPreparedDevice { count: disks },
    })
}

/// What the search over every candidate's disks has found so far.
struct Search<'m, 'b> {
    /// `minicap.device=`.
    wanted: Option<[u8; 16]>,
    /// One page the headers are read into.
    buffer: &'b DmaBuffer,
    /// The prepared disk with the wanted id.
    chosen: Option<Target<'m>>,
    /// Disks looked at.
    disks: usize,
    /// Disks with a minicap header.
    prepared: usize,
    /// A disk minicap cannot write, which may be the one wanted: its
    /// header cannot even be read to tell.
    unsupported: Option<(DeviceName, u32)>,
}

impl<'m> Search<'m, '_> {
    /// Look at one disk, just opened (or not) by its driver: keep it if it
    /// is the dump device, else say why not and drop it.
    fn consider(
        &mut self,
        place: DiskPlace,
        opened: Result<DumpDisk<'m>, DumpDiskError>,
    ) -> Result<(), Failure> {
        self.disks += 1;
        let device = match opened {
            Ok(d) => d,
            Err(e) => {
                say!("{place}: unusable: {e}; left alone");
                if let Some(block_size) = e.refused_block_size() {
                    let mut name = DeviceName::new();
                    let _ = write!(name, "{place}");
                    self.unsupported = Some((name, block_size));
                }
                return Ok(());
            }
        };
        let block_size = device.sector_size();
        if !block_size_supported(block_size) {
            let mut name = DeviceName::new();
            let _ = device.describe(&mut name);
            say!(
                "{}: {block_size}-byte logical blocks, which minicap cannot write; left alone",
                name.as_str()
            );
            self.unsupported = Some((name, block_size));
            return Ok(());
        }
        let Some(candidate) = identify(device, self.buffer) else {
            return Ok(());
        };
        self.prepared += 1;
        if let Some(id) = self.wanted {
            if candidate.header.device_id != id {
                say!(
                    "{}: minicap device id {} is not the requested {}; left alone",
                    candidate.name.as_str(),
                    DeviceIdHex(&candidate.header.device_id),
                    DeviceIdHex(&id)
                );
                return Ok(());
            }
        }
        if self.chosen.is_some() {
            return Err(Failure::AmbiguousDevice);
        }
        self.chosen = Some(candidate);
        Ok(())
    }
}

/// Read the device's first block and decode the minicap header in it.
fn identify<'m>(mut device: DumpDisk<'m>, buffer: &DmaBuffer) -> Option<Target<'m>> {
    let mut name = DeviceName::new();
    let _ = device.describe(&mut name);
    // One 4 KiB block: a whole logical block on 512-byte and 4Kn disks.
    if let Err(e) = device.read(0, buffer.device_address(), PAGE_SIZE) {
        say!("{}: cannot read its first sector: {e}", name.as_str());
        return None;
    }
    let mut sector = [0u8; HEADER_LEN];
    buffer.read_bytes(0, &mut sector);
    match DumpHeader::decode(&sector) {
        Ok(header) => Some(Target {
            device,
            header,
            name,
        }),
        Err(e @ HeaderError::NotMinicap) => {
            say!("{}: {e}; left alone", name.as_str());
            None
        }
        Err(e) => {
            say!(
                "{}: not a minicap dump device (damaged header: {e}); left alone",
                name.as_str()
            );
            None
        }
    }
}
