//! Virtio over PCI: the "modern" (virtio 1.x) and the legacy/transitional
//! interfaces, a split virtqueue driven by polling, and the block device.

mod blk;
mod queue;
mod transport;

pub use blk::{Operation, VirtioBlk, VirtioBlkError, MAX_IN_FLIGHT, MAX_REQUEST_BYTES};

/// PCI vendor of every virtio device.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Transitional (legacy-capable) virtio-blk device ID.
pub const BLK_DEVICE_TRANSITIONAL: u16 = 0x1001;
/// Modern-only virtio-blk device ID (0x1040 + device type 2).
pub const BLK_DEVICE_MODERN: u16 = 0x1042;

/// Whether a PCI function is a virtio block device.
pub fn is_virtio_blk(vendor: u16, device: u16) -> bool {
    vendor == VIRTIO_VENDOR && (device == BLK_DEVICE_TRANSITIONAL || device == BLK_DEVICE_MODERN)
}

/// Device status bits (virtio 1.2 §2.1).
pub(crate) mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const NEEDS_RESET: u8 = 64;
    pub const FAILED: u8 = 128;
}
