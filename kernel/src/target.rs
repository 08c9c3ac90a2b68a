//! Finding the dump device: the disk whose first logical block holds a
//! minicap header (written by `minicap format`) with the requested id.
//!
//! The candidates are the PCI functions of every kind `minicap.target=`
//! selects (virtio-blk, NVMe: [`DiskKind`]), in bus scan order. Every
//! candidate is reset by its driver before use (the crashed kernel may have
//! left requests in flight) and its header read; none but the chosen one is
//! ever written, and a disk without a valid header carrying the requested
//! id is left alone. Which driver runs underneath is hidden behind
//! [`DumpDisk`], so the writer and this search are the same for all kinds.

mod disk;

pub use disk::{DiskKind, DumpDisk};

use crate::console::FixedString;
use crate::failure::{DeviceName, Failure};
use crate::hw::dma::DmaBuffer;
use crate::hw::platform::Machine;
use crate::say;
use crate::writer::block_size_supported;
use core::fmt::Write as _;
use minicap_bootinfo::cmdline::DumpTarget;
use minicap_drivers::pci::{self, PciAddress};
use minicap_drivers::{BlockDevice, Platform};
use minicap_dumpheader::{DeviceIdHex, DumpHeader, HeaderError, HEADER_LEN};
use minicap_physmem::{PAGE_BYTES, PAGE_SIZE};

/// Disks considered (and let through a translating IOMMU), all kinds
/// together.
pub const MAX_CANDIDATES: usize = 16;

/// The chosen device and the header found on it.
pub struct Target<'m> {
    /// The device, initialised.
    pub device: DumpDisk<'m>,
    /// Its minicap header as found.
    pub header: DumpHeader,
    /// "virtio-blk 00:04.0 (modern), 2048 MiB",
    /// "NVMe 00:03.0 (QEMU NVMe Ctrl, namespace 1), 2048 MiB".
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
    /// Scan every bus for disks of the kinds `target` selects. Disks of
    /// other kinds, and any beyond [`MAX_CANDIDATES`], are said and left
    /// alone.
    pub fn scan(machine: &Machine, target: DumpTarget) -> Self {
        let mut found = Self {
            addresses: [PciAddress {
                bus: 0,
                device: 0,
                function: 0,
            }; MAX_CANDIDATES],
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
                say!("{kind} {address}: more than {MAX_CANDIDATES} disks; left alone");
            } else {
                found.addresses[found.count] = address;
                found.kinds[found.count] = kind;
                found.count += 1;
            }
        });
        found.report(target);
        found
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

/// Pick the dump device among the `candidates`.
pub fn find<'m>(
    machine: &'m Machine,
    candidates: &Candidates,
    wanted: Option<[u8; 16]>,
) -> Result<Target<'m>, Failure> {
    let count = candidates.count;
    if count == 0 {
        return Err(Failure::NoDevice {
            target: candidates.target,
        });
    }
    let buffer = machine
        .dma_alloc(PAGE_BYTES, PAGE_BYTES)
        .ok_or(Failure::OutOfMemory {
            what: "a read buffer",
        })?;
    let mut chosen: Option<Target<'_>> = None;
    let mut prepared = 0;
    // A device minicap cannot write may be the one wanted: its header
    // cannot even be read to tell.
    let mut unsupported: Option<(DeviceName, u32)> = None;
    for (address, kind) in candidates.iter() {
        let device = match DumpDisk::open(machine, address, kind) {
            Ok(d) => d,
            Err(e) => {
                say!("{kind} {address}: unusable: {e}; left alone");
                if let Some(block_size) = e.refused_block_size() {
                    let mut name = DeviceName::new();
                    let _ = write!(name, "{kind} {address}");
                    unsupported = Some((name, block_size));
                }
                continue;
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
            unsupported = Some((name, block_size));
            continue;
        }
        let Some(candidate) = identify(device, &buffer) else {
            continue;
        };
        prepared += 1;
        if let Some(id) = wanted {
            if candidate.header.device_id != id {
                say!(
                    "{}: minicap device id {} is not the requested {}; left alone",
                    candidate.name.as_str(),
                    DeviceIdHex(&candidate.header.device_id),
                    DeviceIdHex(&id)
                );
                continue;
            }
        }
        if chosen.is_some() {
            return Err(Failure::AmbiguousDevice);
        }
        chosen = Some(candidate);
    }
    chosen.ok_or(match (unsupported, prepared, wanted) {
        (Some((device, block_size)), _, _) => Failure::UnsupportedBlockSize { device, block_size },
        (None, _, Some(wanted)) if prepared > 0 => Failure::DeviceIdMismatch { wanted },
        _ => Failure::NoPreparedDevice { count },
    })
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
