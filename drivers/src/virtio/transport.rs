//! The two ways to reach a virtio device's registers over PCI.
//!
//! *Modern* (virtio 1.x §4.1.4): vendor capabilities point at structures in
//! memory BARs. *Legacy* (virtio 0.9.5, still offered by transitional
//! devices): one I/O BAR with a fixed layout.

use super::status;
use crate::access::{Field, Ports, Registers};
use crate::pci::{self, Bar, PciAddress};
use crate::{poll_until, Platform};

const CAP_ID_VENDOR: u8 = 0x09;
const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_DEVICE: u8 = 4;

/// virtio_pci_common_cfg (virtio 1.2 §4.1.4.3). The 64-bit ring addresses
/// are written as two 32-bit halves (§4.1.3.1 allows drivers to).
#[repr(C)]
pub(crate) struct CommonCfg {
    device_feature_select: u32, // 0x00
    device_feature: u32,        // 0x04
    driver_feature_select: u32, // 0x08
    driver_feature: u32,        // 0x0c
    msix_config: u16,           // 0x10
    num_queues: u16,            // 0x12
    device_status: u8,          // 0x14
    config_generation: u8,      // 0x15
    queue_select: u16,          // 0x16
    queue_size: u16,            // 0x18
    queue_msix_vector: u16,     // 0x1a
    queue_enable: u16,          // 0x1c
    queue_notify_off: u16,      // 0x1e
    queue_desc: Split64,        // 0x20
    queue_driver: Split64,      // 0x28
    queue_device: Split64,      // 0x30
}
const _: () = assert!(core::mem::size_of::<CommonCfg>() == 0x38);

/// A 64-bit register written as two 32-bit halves.
#[repr(C)]
pub(crate) struct Split64 {
    low: u32,  // +0
    high: u32, // +4
}

mod common {
    use super::{CommonCfg, Split64};
    use crate::access::Field;
    use crate::field;
    pub const DEVICE_FEATURE_SELECT: Field<CommonCfg, u32> =
        field!(CommonCfg, device_feature_select);
    pub const DEVICE_FEATURE: Field<CommonCfg, u32> = field!(CommonCfg, device_feature);
    pub const DRIVER_FEATURE_SELECT: Field<CommonCfg, u32> =
        field!(CommonCfg, driver_feature_select);
    pub const DRIVER_FEATURE: Field<CommonCfg, u32> = field!(CommonCfg, driver_feature);
    pub const MSIX_CONFIG: Field<CommonCfg, u16> = field!(CommonCfg, msix_config);
    pub const DEVICE_STATUS: Field<CommonCfg, u8> = field!(CommonCfg, device_status);
    pub const CONFIG_GENERATION: Field<CommonCfg, u8> = field!(CommonCfg, config_generation);
    pub const QUEUE_SELECT: Field<CommonCfg, u16> = field!(CommonCfg, queue_select);
    pub const QUEUE_SIZE: Field<CommonCfg, u16> = field!(CommonCfg, queue_size);
    pub const QUEUE_MSIX_VECTOR: Field<CommonCfg, u16> = field!(CommonCfg, queue_msix_vector);
    pub const QUEUE_ENABLE: Field<CommonCfg, u16> = field!(CommonCfg, queue_enable);
    pub const QUEUE_NOTIFY_OFF: Field<CommonCfg, u16> = field!(CommonCfg, queue_notify_off);
    pub const QUEUE_DESC: Field<CommonCfg, Split64> = field!(CommonCfg, queue_desc);
    pub const QUEUE_DRIVER: Field<CommonCfg, Split64> = field!(CommonCfg, queue_driver);
    pub const QUEUE_DEVICE: Field<CommonCfg, Split64> = field!(CommonCfg, queue_device);
    pub const LOW: Field<Split64, u32> = field!(Split64, low);
    pub const HIGH: Field<Split64, u32> = field!(Split64, high);
}

/// The notification area: 16-bit doorbells at `queue_notify_off ×
/// notify_off_multiplier` (virtio 1.2 §4.1.4.4); its size is the
/// capability's length.
pub(crate) struct NotifyArea;

/// virtio-blk's device-specific configuration (virtio 1.2 §5.2.4), as far
/// as minicap reads it; 64-bit fields are read as two 32-bit halves.
#[repr(C)]
pub(crate) struct BlkConfig {
    capacity_low: u32,  // 0x00
    capacity_high: u32, // 0x04
    size_max: u32,      // 0x08
    seg_max: u32,       // 0x0c
    geometry: u32,      // 0x10
    blk_size: u32,      // 0x14
}
const _: () = assert!(core::mem::size_of::<BlkConfig>() == 24);

/// The fields of [`BlkConfig`] the driver reads.
pub(crate) mod blk_config {
    use super::BlkConfig;
    use crate::access::Field;
    use crate::field;
    pub const CAPACITY_LOW: Field<BlkConfig, u32> = field!(BlkConfig, capacity_low);
    pub const CAPACITY_HIGH: Field<BlkConfig, u32> = field!(BlkConfig, capacity_high);
    pub const SIZE_MAX: Field<BlkConfig, u32> = field!(BlkConfig, size_max);
    pub const SEG_MAX: Field<BlkConfig, u32> = field!(BlkConfig, seg_max);
    pub const BLK_SIZE: Field<BlkConfig, u32> = field!(BlkConfig, blk_size);
}

/// The legacy I/O register block (virtio 1.2 §4.1.4.10), with MSI-X
/// disabled (we disable it), so the device configuration follows at 20.
#[repr(C)]
pub(crate) struct LegacyRegs {
    device_features: u32, // 0
    guest_features: u32,  // 4
    queue_address: u32,   // 8
    queue_size: u16,      // 12
    queue_select: u16,    // 14
    queue_notify: u16,    // 16
    device_status: u8,    // 18
    isr_status: u8,       // 19
    config: BlkConfig,    // 20
}
const _: () = assert!(core::mem::size_of::<LegacyRegs>() == 44);

mod legacy {
    use super::{BlkConfig, LegacyRegs};
    use crate::access::Field;
    use crate::field;
    pub const DEVICE_FEATURES: Field<LegacyRegs, u32> = field!(LegacyRegs, device_features);
    pub const GUEST_FEATURES: Field<LegacyRegs, u32> = field!(LegacyRegs, guest_features);
    pub const QUEUE_ADDRESS: Field<LegacyRegs, u32> = field!(LegacyRegs, queue_address);
    pub const QUEUE_SIZE: Field<LegacyRegs, u16> = field!(LegacyRegs, queue_size);
    pub const QUEUE_SELECT: Field<LegacyRegs, u16> = field!(LegacyRegs, queue_select);
    pub const QUEUE_NOTIFY: Field<LegacyRegs, u16> = field!(LegacyRegs, queue_notify);
    pub const DEVICE_STATUS: Field<LegacyRegs, u8> = field!(LegacyRegs, device_status);
    pub const CONFIG: Field<LegacyRegs, BlkConfig> = field!(LegacyRegs, config);
}

/// "No MSI-X vector" for the modern interface.
const NO_VECTOR: u16 = 0xffff;

pub(crate) enum Transport<P: Platform + ?Sized> {
    Modern {
        common: Registers<P, CommonCfg>,
        notify: Registers<P, NotifyArea>,
        notify_multiplier: u32,
        device_config: Registers<P, BlkConfig>,
    },
    Legacy {
        io: Ports<P, LegacyRegs>,
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

/// Where a capability says a structure is: BAR, offset, length.
#[derive(Clone, Copy)]
struct Location {
    bar: u8,
    offset: u64,
    len: u64,
}

impl<P: Platform + ?Sized> Transport<P> {
    /// Find the registers of `f`: the modern capabilities if present, else
    /// the legacy I/O BAR 0.
    pub fn discover(p: &P, f: PciAddress) -> Result<Self, TransportError> {
        let mut common = None;
        let mut notify = None;
        let mut device = None;
        pci::for_each_capability(p, f, |id, offset| {
            if id != CAP_ID_VENDOR {
                return;
            }
            let cfg_type = pci::read8(p, f, offset + 3);
            let bar = pci::read8(p, f, offset + 4);
            let bar_offset = p.pci_read32(f, offset + 8);
            let length = p.pci_read32(f, offset + 12);
            if !matches!(pci::bar(p, f, bar), Bar::Memory(_)) {
                return;
            }
            let location = Location {
                bar,
                offset: u64::from(bar_offset),
                len: u64::from(length),
            };
            match cfg_type {
                CFG_COMMON if common.is_none() => common = Some(location),
                CFG_NOTIFY if notify.is_none() => {
                    let multiplier = p.pci_read32(f, offset + 16);
                    notify = Some((location, multiplier));
                }
                CFG_DEVICE if device.is_none() => device = Some(location),
                _ => {}
            }
        });
        if let (Some(common), Some((notify, notify_multiplier)), Some(device)) =
            (common, notify, device)
        {
            let unmappable = |at: Location| {
                let base = match pci::bar(p, f, at.bar) {
                    Bar::Memory(base) => base,
                    _ => 0,
                };
                TransportError::Unmappable(base + at.offset)
            };
            let common = Registers::map(p, f, common.bar, common.offset, common.len)
                .ok_or_else(|| unmappable(common))?;
            let notify = Registers::map(p, f, notify.bar, notify.offset, notify.len.max(2))
                .ok_or_else(|| unmappable(notify))?;
            let device_config = Registers::map(p, f, device.bar, device.offset, device.len)
                .ok_or_else(|| unmappable(device))?;
            return Ok(Transport::Modern {
                common,
                notify,
                notify_multiplier,
                device_config,
            });
        }
        match pci::bar(p, f, 0) {
            Bar::Io(_) => Ports::claim(p, f, 0)
                .map(|io| Transport::Legacy { io })
                .ok_or(TransportError::NoRegisters),
            _ => Err(TransportError::NoRegisters),
        }
    }

    pub fn is_modern(&self) -> bool {
        matches!(self, Transport::Modern { .. })
    }

    pub fn status(&self, p: &P) -> u8 {
        match self {
            Transport::Modern { common, .. } => common.read(p, common::DEVICE_STATUS),
            Transport::Legacy { io } => io.read(p, legacy::DEVICE_STATUS),
        }
    }

    pub fn set_status(&self, p: &P, value: u8) {
        match self {
            Transport::Modern { common, .. } => common.write(p, common::DEVICE_STATUS, value),
            Transport::Legacy { io } => io.write(p, legacy::DEVICE_STATUS, value),
        }
    }

    pub fn add_status(&self, p: &P, bits: u8) {
        let current = self.status(p);
        self.set_status(p, current | bits);
    }

    /// Reset the device and wait until it says so. This is what stops any
    /// DMA the crashed kernel's driver left in flight.
    pub fn reset(&self, p: &P, timeout_ms: u64) -> bool {
        self.set_status(p, 0);
        poll_until(p, timeout_ms, || self.status(p) == 0)
    }

    pub fn device_features(&self, p: &P) -> u64 {
        match self {
            Transport::Modern { common, .. } => {
                common.write(p, common::DEVICE_FEATURE_SELECT, 0);
                let low = common.read(p, common::DEVICE_FEATURE);
                common.write(p, common::DEVICE_FEATURE_SELECT, 1);
                let high = common.read(p, common::DEVICE_FEATURE);
                u64::from(low) | (u64::from(high) << 32)
            }
            Transport::Legacy { io } => u64::from(io.read(p, legacy::DEVICE_FEATURES)),
        }
    }

    pub fn set_driver_features(&self, p: &P, features: u64) {
        match self {
            Transport::Modern { common, .. } => {
                common.write(p, common::DRIVER_FEATURE_SELECT, 0);
                common.write(p, common::DRIVER_FEATURE, (features & 0xffff_ffff) as u32);
                common.write(p, common::DRIVER_FEATURE_SELECT, 1);
                common.write(p, common::DRIVER_FEATURE, (features >> 32) as u32);
            }
            Transport::Legacy { io } => {
                io.write(p, legacy::GUEST_FEATURES, (features & 0xffff_ffff) as u32)
            }
        }
    }

    /// Negotiate: modern devices must confirm FEATURES_OK.
    pub fn confirm_features(&self, p: &P) -> bool {
        match self {
            Transport::Modern { .. } => {
                self.add_status(p, status::FEATURES_OK);
                self.status(p) & status::FEATURES_OK != 0
            }
            Transport::Legacy { .. } => true,
        }
    }

    /// The largest queue size the device offers for `queue` (0: no queue).
    pub fn max_queue_size(&self, p: &P, queue: u16) -> u16 {
        match self {
            Transport::Modern { common, .. } => {
                common.write(p, common::QUEUE_SELECT, queue);
                common.read(p, common::QUEUE_SIZE)
            }
            Transport::Legacy { io } => {
                io.write(p, legacy::QUEUE_SELECT, queue);
                io.read(p, legacy::QUEUE_SIZE)
            }
        }
    }

    /// Whether the queue size may be chosen by the driver (legacy: no).
    pub fn queue_size_is_fixed(&self) -> bool {
        !self.is_modern()
    }

    /// Tell the device where queue `queue`'s rings are and enable it.
    /// Returns where to notify it, None if the device cannot take the
    /// rings (legacy: above 16 TiB) or its doorbell lies outside its
    /// notification area.
    pub fn enable_queue(&self, p: &P, queue: u16, rings: &QueueAddresses) -> Option<Notify> {
        match self {
            Transport::Modern {
                common,
                notify,
                notify_multiplier,
                ..
            } => {
                common.write(p, common::MSIX_CONFIG, NO_VECTOR);
                common.write(p, common::QUEUE_SELECT, queue);
                common.write(p, common::QUEUE_SIZE, rings.size);
                common.write(p, common::QUEUE_MSIX_VECTOR, NO_VECTOR);
                for (field, address) in [
                    (common::QUEUE_DESC, rings.desc),
                    (common::QUEUE_DRIVER, rings.driver),
                    (common::QUEUE_DEVICE, rings.device),
                ] {
                    common.write(p, field.then(common::LOW), (address & 0xffff_ffff) as u32);
                    common.write(p, field.then(common::HIGH), (address >> 32) as u32);
                }
                let notify_off = common.read(p, common::QUEUE_NOTIFY_OFF);
                let doorbell = u64::from(notify_off) * u64::from(*notify_multiplier);
                if !notify.contains::<u16>(doorbell) {
                    return None;
                }
                common.write(p, common::QUEUE_ENABLE, 1);
                Some(Notify::Mmio(doorbell))
            }
            Transport::Legacy { io } => {
                // Legacy devices take the page frame number of one contiguous
                // area laid out with 4096-byte alignment of the used ring.
                let pfn = u32::try_from(rings.desc >> 12).ok()?;
                io.write(p, legacy::QUEUE_SELECT, queue);
                io.write(p, legacy::QUEUE_ADDRESS, pfn);
                Some(Notify::Port)
            }
        }
    }

    pub fn config_generation(&self, p: &P) -> u8 {
        match self {
            Transport::Modern { common, .. } => common.read(p, common::CONFIG_GENERATION),
            Transport::Legacy { .. } => 0,
        }
    }

    /// Read a 32-bit field of the device-specific configuration.
    pub fn config32(&self, p: &P, field: Field<BlkConfig, u32>) -> u32 {
        match self {
            Transport::Modern { device_config, .. } => device_config.read(p, field),
            Transport::Legacy { io } => io.read(p, legacy::CONFIG.then(field)),
        }
    }

    /// Read a 64-bit field, given as its two halves, consistently
    /// (retrying across config changes).
    pub fn config64(&self, p: &P, low: Field<BlkConfig, u32>, high: Field<BlkConfig, u32>) -> u64 {
        let read = || u64::from(self.config32(p, low)) | (u64::from(self.config32(p, high)) << 32);
        for _ in 0..16 {
            let before = self.config_generation(p);
            let value = read();
            if self.config_generation(p) == before {
                return value;
            }
        }
        read()
    }

    /// Kick the device: queue `queue` has new buffers.
    pub fn notify(&self, p: &P, how: Notify, queue: u16) {
        match (self, how) {
            (Transport::Modern { notify, .. }, Notify::Mmio(doorbell)) => {
                notify.write_at(p, doorbell, queue)
            }
            (Transport::Legacy { io }, Notify::Port) => io.write(p, legacy::QUEUE_NOTIFY, queue),
            // `enable_queue` of this transport made `how`.
            _ => {}
        }
    }
}

/// Where to kick the device.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Notify {
    /// The doorbell at this offset of the notification area.
    Mmio(u64),
    /// The legacy QUEUE_NOTIFY port.
    Port,
}
