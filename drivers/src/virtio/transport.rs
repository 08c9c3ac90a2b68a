//! The two ways to reach a virtio device's registers over PCI.
//!
//! *Modern* (virtio 1.x §4.1.4): vendor capabilities point at structures in
//! memory BARs. *Legacy* (virtio 0.9.5, still offered by transitional
//! devices): one I/O BAR with a fixed layout.

use super::status;
use crate::pci::{self, Bar, PciAddress};
use crate::{poll_until, Platform};

const CAP_ID_VENDOR: u8 = 0x09;
const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_ISR: u8 = 3;
const CFG_DEVICE: u8 = 4;

/// virtio_pci_common_cfg field offsets (virtio 1.2 §4.1.4.3).
mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0c;
    pub const MSIX_CONFIG: u64 = 0x10;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const CONFIG_GENERATION: u64 = 0x15;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
    pub const QUEUE_ENABLE: u64 = 0x1c;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;
}

/// Legacy I/O register offsets (virtio 1.2 §4.1.4.10).
mod legacy {
    pub const DEVICE_FEATURES: u16 = 0;
    pub const GUEST_FEATURES: u16 = 4;
    pub const QUEUE_ADDRESS: u16 = 8;
    pub const QUEUE_SIZE: u16 = 12;
    pub const QUEUE_SELECT: u16 = 14;
    pub const QUEUE_NOTIFY: u16 = 16;
    pub const DEVICE_STATUS: u16 = 18;
    /// Device-specific configuration, with MSI-X disabled (we disable it).
    pub const DEVICE_CONFIG: u16 = 20;
}

/// "No MSI-X vector" for the modern interface.
const NO_VECTOR: u16 = 0xffff;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Transport {
    Modern {
        common: u64,
        notify_base: u64,
        notify_multiplier: u32,
        device_config: u64,
    },
    Legacy {
        io: u16,
    },
}

/// Why a transport could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransportError {
    NoRegisters,
    Unmappable(u64),
}

/// Where one queue's rings live, as the device must be told.
pub(crate) struct QueueAddresses {
    pub size: u16,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
}

impl Transport {
    /// Find the registers of `f`: the modern capabilities if present, else
    /// the legacy I/O BAR 0.
    pub fn discover<P: Platform + ?Sized>(p: &P, f: PciAddress) -> Result<Self, TransportError> {
        let mut common = None;
        let mut notify = None;
        let mut device = None;
        let mut isr = None;
        pci::for_each_capability(p, f, |id, offset| {
            if id != CAP_ID_VENDOR {
                return;
            }
            let cfg_type = pci::read8(p, f, offset + 3);
            let bar_index = pci::read8(p, f, offset + 4);
            let bar_offset = p.pci_read32(f, offset + 8);
            let length = p.pci_read32(f, offset + 12);
            let Bar::Memory(base) = pci::bar(p, f, bar_index) else {
                return;
            };
            let addr = base + u64::from(bar_offset);
            let region = (addr, u64::from(length));
            match cfg_type {
                CFG_COMMON if common.is_none() => common = Some(region),
                CFG_NOTIFY if notify.is_none() => {
                    let multiplier = p.pci_read32(f, offset + 16);
                    notify = Some((region, multiplier));
                }
                CFG_DEVICE if device.is_none() => device = Some(region),
                CFG_ISR if isr.is_none() => isr = Some(region),
                _ => {}
            }
        });
        if let (Some(common), Some((notify, multiplier)), Some(device)) = (common, notify, device) {
            for (addr, len) in [common, notify, device] {
                if !p.map_mmio(addr, len.max(4)) {
                    return Err(TransportError::Unmappable(addr));
                }
            }
            return Ok(Transport::Modern {
                common: common.0,
                notify_base: notify.0,
                notify_multiplier: multiplier,
                device_config: device.0,
            });
        }
        match pci::bar(p, f, 0) {
            Bar::Io(io) => Ok(Transport::Legacy { io }),
            _ => Err(TransportError::NoRegisters),
        }
    }

    pub fn is_modern(&self) -> bool {
        matches!(self, Transport::Modern { .. })
    }

    pub fn status<P: Platform + ?Sized>(&self, p: &P) -> u8 {
        match *self {
            Transport::Modern { common, .. } => p.read8(common + common::DEVICE_STATUS),
            Transport::Legacy { io } => p.inb(io + legacy::DEVICE_STATUS),
        }
    }

    pub fn set_status<P: Platform + ?Sized>(&self, p: &P, value: u8) {
        match *self {
            Transport::Modern { common, .. } => p.write8(common + common::DEVICE_STATUS, value),
            Transport::Legacy { io } => p.outb(io + legacy::DEVICE_STATUS, value),
        }
    }

    pub fn add_status<P: Platform + ?Sized>(&self, p: &P, bits: u8) {
        let current = self.status(p);
        self.set_status(p, current | bits);
    }

    /// Reset the device and wait until it says so. This is what stops any
    /// DMA the crashed kernel's driver left in flight.
    pub fn reset<P: Platform + ?Sized>(&self, p: &P, timeout_ms: u64) -> bool {
        self.set_status(p, 0);
        poll_until(p, timeout_ms, || self.status(p) == 0)
    }

    pub fn device_features<P: Platform + ?Sized>(&self, p: &P) -> u64 {
        match *self {
            Transport::Modern { common, .. } => {
                p.write32(common + common::DEVICE_FEATURE_SELECT, 0);
                let low = p.read32(common + common::DEVICE_FEATURE);
                p.write32(common + common::DEVICE_FEATURE_SELECT, 1);
                let high = p.read32(common + common::DEVICE_FEATURE);
                u64::from(low) | (u64::from(high) << 32)
            }
            Transport::Legacy { io } => u64::from(p.inl(io + legacy::DEVICE_FEATURES)),
        }
    }

    pub fn set_driver_features<P: Platform + ?Sized>(&self, p: &P, features: u64) {
        match *self {
            Transport::Modern { common, .. } => {
                p.write32(common + common::DRIVER_FEATURE_SELECT, 0);
                p.write32(
                    common + common::DRIVER_FEATURE,
                    (features & 0xffff_ffff) as u32,
                );
                p.write32(common + common::DRIVER_FEATURE_SELECT, 1);
                p.write32(common + common::DRIVER_FEATURE, (features >> 32) as u32);
            }
            Transport::Legacy { io } => {
                p.outl(io + legacy::GUEST_FEATURES, (features & 0xffff_ffff) as u32)
            }
        }
    }

    /// Negotiate: modern devices must confirm FEATURES_OK.
    pub fn confirm_features<P: Platform + ?Sized>(&self, p: &P) -> bool {
        match self {
            Transport::Modern { .. } => {
                self.add_status(p, status::FEATURES_OK);
                self.status(p) & status::FEATURES_OK != 0
            }
            Transport::Legacy { .. } => true,
        }
    }

    /// The largest queue size the device offers for `queue` (0: no queue).
    pub fn max_queue_size<P: Platform + ?Sized>(&self, p: &P, queue: u16) -> u16 {
        match *self {
            Transport::Modern { common, .. } => {
                p.write16(common + common::QUEUE_SELECT, queue);
                p.read16(common + common::QUEUE_SIZE)
            }
            Transport::Legacy { io } => {
                p.outw(io + legacy::QUEUE_SELECT, queue);
                p.inw(io + legacy::QUEUE_SIZE)
            }
        }
    }

    /// Whether the queue size may be chosen by the driver (legacy: no).
    pub fn queue_size_is_fixed(&self) -> bool {
        !self.is_modern()
    }

    /// Tell the device where queue `queue`'s rings are and enable it.
    /// Returns the address to write to for notifications.
    pub fn enable_queue<P: Platform + ?Sized>(
        &self,
        p: &P,
        queue: u16,
        rings: &QueueAddresses,
    ) -> Option<Notify> {
        match *self {
            Transport::Modern {
                common,
                notify_base,
                notify_multiplier,
                ..
            } => {
                p.write16(common + common::MSIX_CONFIG, NO_VECTOR);
                p.write16(common + common::QUEUE_SELECT, queue);
                p.write16(common + common::QUEUE_SIZE, rings.size);
                p.write16(common + common::QUEUE_MSIX_VECTOR, NO_VECTOR);
                write64_split(p, common + common::QUEUE_DESC, rings.desc);
                write64_split(p, common + common::QUEUE_DRIVER, rings.driver);
                write64_split(p, common + common::QUEUE_DEVICE, rings.device);
                let notify_off = p.read16(common + common::QUEUE_NOTIFY_OFF);
                p.write16(common + common::QUEUE_ENABLE, 1);
                let addr = notify_base + u64::from(notify_off) * u64::from(notify_multiplier);
                Some(Notify::Mmio(addr))
            }
            Transport::Legacy { io } => {
                // Legacy devices take the page frame number of one contiguous
                // area laid out with 4096-byte alignment of the used ring.
                let pfn = u32::try_from(rings.desc >> 12).ok()?;
                p.outw(io + legacy::QUEUE_SELECT, queue);
                p.outl(io + legacy::QUEUE_ADDRESS, pfn);
                Some(Notify::Port(io + legacy::QUEUE_NOTIFY))
            }
        }
    }

    pub fn config_generation<P: Platform + ?Sized>(&self, p: &P) -> u8 {
        match *self {
            Transport::Modern { common, .. } => p.read8(common + common::CONFIG_GENERATION),
            Transport::Legacy { .. } => 0,
        }
    }

    /// Read a 32-bit field of the device-specific configuration.
    pub fn config32<P: Platform + ?Sized>(&self, p: &P, offset: u16) -> u32 {
        match *self {
            Transport::Modern { device_config, .. } => p.read32(device_config + u64::from(offset)),
            Transport::Legacy { io } => p.inl(io + legacy::DEVICE_CONFIG + offset),
        }
    }

    /// Read a 64-bit field consistently (retrying across config changes).
    pub fn config64<P: Platform + ?Sized>(&self, p: &P, offset: u16) -> u64 {
        for _ in 0..16 {
            let before = self.config_generation(p);
            let low = self.config32(p, offset);
            let high = self.config32(p, offset + 4);
            if self.config_generation(p) == before {
                return u64::from(low) | (u64::from(high) << 32);
            }
        }
        u64::from(self.config32(p, offset)) | (u64::from(self.config32(p, offset + 4)) << 32)
    }
}

fn write64_split<P: Platform + ?Sized>(p: &P, addr: u64, value: u64) {
    p.write32(addr, (value & 0xffff_ffff) as u32);
    p.write32(addr + 4, (value >> 32) as u32);
}

/// Where to kick the device.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Notify {
    Mmio(u64),
    Port(u16),
}

impl Notify {
    pub fn kick<P: Platform + ?Sized>(&self, p: &P, queue: u16) {
        match *self {
            Notify::Mmio(addr) => p.write16(addr, queue),
            Notify::Port(port) => p.outw(port, queue),
        }
    }
}
