//! A split virtqueue (virtio 1.2 §2.7) used by one polling driver with one
//! request in flight at a time.
//!
//! Memory layout (one DMA allocation, valid for modern and legacy devices):
//! descriptor table at 0 (16 bytes × size), available ring right after it,
//! used ring at the next 4096-byte boundary (the legacy "QueueAlign").

use super::transport::{Notify, QueueAddresses, Transport};
use crate::access::{Dma, Field};
use crate::{field, Platform};
use core::mem::size_of;
use core::sync::atomic::{fence, Ordering};

/// One entry of the descriptor table (virtio 1.2 §2.7.5).
#[repr(C)]
struct Descriptor {
    addr: u64,  // 0
    len: u32,   // 8
    flags: u16, // 12
    next: u16,  // 14
}
const _: () = assert!(size_of::<Descriptor>() == 16);

/// The available ring's header (§2.7.6); `ring: [u16; size]` follows.
#[repr(C)]
struct AvailHeader {
    flags: u16, // 0
    idx: u16,   // 2
}

/// The used ring's header (§2.7.8); `ring: [UsedElem; size]` follows.
#[repr(C)]
struct UsedHeader {
    flags: u16, // 0
    idx: u16,   // 2
}

const DESC_ADDR: Field<Descriptor, u64> = field!(Descriptor, addr);
const DESC_LEN: Field<Descriptor, u32> = field!(Descriptor, len);
const DESC_FLAGS: Field<Descriptor, u16> = field!(Descriptor, flags);
const DESC_NEXT: Field<Descriptor, u16> = field!(Descriptor, next);
const AVAIL_FLAGS: Field<AvailHeader, u16> = field!(AvailHeader, flags);
const AVAIL_IDX: Field<AvailHeader, u16> = field!(AvailHeader, idx);
const USED_IDX: Field<UsedHeader, u16> = field!(UsedHeader, idx);

const DESC_SIZE: u64 = size_of::<Descriptor>() as u64;
const RING_HEADER: u64 = size_of::<AvailHeader>() as u64;
/// Size of one used-ring element (id: u32, len: u32).
const USED_ELEM: u64 = 8;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// One buffer of a request chain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Buffer {
    /// Where the device finds it (a DMA address or old memory).
    pub addr: u64,
    pub len: u32,
    /// The device writes into this buffer (a read from the disk, or a status byte).
    pub device_writes: bool,
}

pub(crate) struct SplitQueue<P: Platform + ?Sized> {
    index: u16,
    size: u16,
    rings: Dma<P>,
    /// Offsets of the rings inside `rings`.
    avail: u64,
    used: u64,
    notify: Notify,
    next_avail: u16,
    last_used: u16,
}

/// Why queue set-up failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueueError {
    NotAvailable,
    NoMemory,
    NotAddressable,
    NoDoorbell,
}

impl<P: Platform + ?Sized> SplitQueue<P> {
    /// Allocate and enable queue `index` with at most `wanted` entries.
    pub fn new(
        p: &P,
        transport: &Transport<P>,
        index: u16,
        wanted: u16,
    ) -> Result<Self, QueueError> {
        let max = transport.max_queue_size(p, index);
        if max == 0 {
            return Err(QueueError::NotAvailable);
        }
        let size = if transport.queue_size_is_fixed() {
            max
        } else {
            max.min(wanted)
        };
        let n = u64::from(size);
        let avail = DESC_SIZE * n;
        let used = align_up(avail + RING_HEADER + 2 + 2 * n, 4096);
        let total = align_up(used + RING_HEADER + 2 + USED_ELEM * n, 4096);
        let total = usize::try_from(total).map_err(|_| QueueError::NoMemory)?;
        let rings = Dma::alloc(p, total, 4096).ok_or(QueueError::NoMemory)?;
        let base = rings.device_address();
        let addresses = QueueAddresses {
            size,
            desc: base,
            driver: base + avail,
            device: base + used,
        };
        // Polling only: ask the device not to interrupt us.
        rings.write(p, avail, AVAIL_FLAGS, AVAIL_F_NO_INTERRUPT);
        let notify =
            transport
                .enable_queue(p, index, &addresses)
                .ok_or(if transport.is_modern() {
                    QueueError::NoDoorbell
                } else {
                    QueueError::NotAddressable
                })?;
        Ok(Self {
            index,
            size,
            rings,
            avail,
            used,
            notify,
            next_avail: 0,
            last_used: 0,
        })
    }

    /// Number of descriptors.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Post a chain of buffers (at most `size` of them) and notify the device.
    pub fn submit(&mut self, p: &P, transport: &Transport<P>, chain: &[Buffer]) {
        debug_assert!(!chain.is_empty() && chain.len() <= usize::from(self.size));
        let count = chain.len();
        for (i, buffer) in chain.iter().enumerate() {
            let slot = DESC_SIZE * i as u64;
            let mut flags = 0;
            if i + 1 < count {
                flags |= DESC_F_NEXT;
            }
            if buffer.device_writes {
                flags |= DESC_F_WRITE;
            }
            let next = u16::try_from(i + 1).unwrap_or(0) % self.size;
            self.rings.write(p, slot, DESC_ADDR, buffer.addr);
            self.rings.write(p, slot, DESC_LEN, buffer.len);
            self.rings.write(p, slot, DESC_FLAGS, flags);
            self.rings.write(p, slot, DESC_NEXT, next);
        }
        let ring_slot = u64::from(self.next_avail % self.size);
        self.rings
            .write_at::<u16>(p, self.avail + RING_HEADER + 2 * ring_slot, 0);
        // The descriptors and the ring entry must be visible before the index.
        fence(Ordering::SeqCst);
        self.next_avail = self.next_avail.wrapping_add(1);
        self.rings.write(p, self.avail, AVAIL_IDX, self.next_avail);
        // And the index before the notification.
        fence(Ordering::SeqCst);
        transport.notify(p, self.notify, self.index);
    }

    /// Whether the device has returned the posted chain.
    pub fn poll_used(&mut self, p: &P) -> bool {
        let used_idx = self.rings.read(p, self.used, USED_IDX);
        if used_idx == self.last_used {
            return false;
        }
        fence(Ordering::SeqCst);
        self.last_used = self.last_used.wrapping_add(1);
        true
    }
}

fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}
