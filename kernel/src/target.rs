//! Finding the dump device: the virtio-blk device whose first sector holds a
//! minicap header (written by `minicap format`) with the requested id. Every
//! candidate is reset before use (the crashed kernel may have left requests
//! in flight); none but the chosen one is ever written.

use crate::failure::{DeviceName, Failure};
use crate::hw::dma::DmaBuffer;
use crate::hw::platform::Machine;
use crate::say;
use crate::writer::block_size_supported;
use minicap_drivers::pci::{self, PciAddress};
use minicap_drivers::virtio::{is_virtio_blk, VirtioBlk};
use minicap_drivers::{BlockDevice, Platform};
use minicap_dumpheader::{DeviceIdHex, DumpHeader, HeaderError, HEADER_LEN};
use minicap_physmem::{PAGE_BYTES, PAGE_SIZE};

/// Virtio-blk functions considered (and let through a translating IOMMU).
pub const MAX_VIRTIO_DEVICES: usize = 16;

/// The chosen device and the header found on it.
pub struct Target<'m> {
    /// The device, initialised.
    pub device: VirtioBlk<'m, Machine>,
    /// Its minicap header as found.
    pub header: DumpHeader,
    /// "virtio-blk 00:04.0 (modern), 2048 MiB".
    pub name: DeviceName,
}

/// The virtio-blk functions on the PCI bus, in scan order: the candidates
/// for the dump device (and the only devices the IOMMU takeover lets through).
pub struct Candidates {
    list: [PciAddress; MAX_VIRTIO_DEVICES],
    count: usize,
}

impl Candidates {
    /// Scan every bus.
    pub fn scan(machine: &Machine) -> Self {
        let mut found = Self {
            list: [PciAddress {
                bus: 0,
                device: 0,
                function: 0,
            }; MAX_VIRTIO_DEVICES],
            count: 0,
        };
        pci::enumerate(machine, |f| {
            if is_virtio_blk(f.vendor, f.device) && found.count < MAX_VIRTIO_DEVICES {
                found.list[found.count] = f.address;
                found.count += 1;
            }
        });
        found
    }

    /// The functions found.
    pub fn all(&self) -> &[PciAddress] {
        &self.list[..self.count]
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
        return Err(Failure::NoDevice);
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
    for &address in candidates.all() {
        let device = match VirtioBlk::new(machine, address) {
            Ok(d) => d,
            Err(e) => {
                say!("virtio-blk {address}: unusable: {e}");
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

/// Read the device's first sector and decode the minicap header in it.
fn identify<'m>(mut device: VirtioBlk<'m, Machine>, buffer: &DmaBuffer) -> Option<Target<'m>> {
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
