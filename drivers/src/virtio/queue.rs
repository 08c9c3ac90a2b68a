//! A split virtqueue (virtio 1.2 §2.7) used by one polling driver with one
//! request in flight at a time.
//!
//! Memory layout (one DMA allocation, valid for modern and legacy devices):
//! descriptor table at 0 (16 bytes × size), available ring right after it,
//! used ring at the next 4096-byte boundary (the legacy "QueueAlign").

use super::transport::{Notify, QueueAddresses, Transport};
use crate::Platform;
use core::sync::atomic::{fence, Ordering};

const DESC_SIZE: u64 = 16;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// One buffer of a request chain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Buffer {
    pub addr: u64,
    pub len: u32,
    /// The device writes into this buffer (a read from the disk, or a status byte).
    pub device_writes: bool,
}

pub(crate) struct SplitQueue {
    index: u16,
    size: u16,
    desc: u64,
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
}

impl SplitQueue {
    /// Allocate and enable queue `index` with at most `wanted` entries.
    pub fn new<P: Platform + ?Sized>(
        p: &P,
        transport: &Transport,
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
        let avail_offset = DESC_SIZE * n;
        let used_offset = align_up(avail_offset + 6 + 2 * n, 4096);
        let total = align_up(used_offset + 6 + 8 * n, 4096);
        let total = usize::try_from(total).map_err(|_| QueueError::NoMemory)?;
        let base = p.dma_alloc(total, 4096).ok_or(QueueError::NoMemory)?;
        let rings = QueueAddresses {
            size,
            desc: base,
            driver: base + avail_offset,
            device: base + used_offset,
        };
        // Polling only: ask the device not to interrupt us.
        p.write16(rings.driver, AVAIL_F_NO_INTERRUPT);
        let notify = transport
            .enable_queue(p, index, &rings)
            .ok_or(QueueError::NotAddressable)?;
        Ok(Self {
            index,
            size,
            desc: rings.desc,
            avail: rings.driver,
            used: rings.device,
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
    pub fn submit<P: Platform + ?Sized>(&mut self, p: &P, chain: &[Buffer]) {
        debug_assert!(!chain.is_empty() && chain.len() <= usize::from(self.size));
        let count = chain.len();
        for (i, buffer) in chain.iter().enumerate() {
            let slot = self.desc + DESC_SIZE * i as u64;
            let mut flags = 0;
            if i + 1 < count {
                flags |= DESC_F_NEXT;
            }
            if buffer.device_writes {
                flags |= DESC_F_WRITE;
            }
            let next = u16::try_from(i + 1).unwrap_or(0) % self.size;
            p.write64(slot, buffer.addr);
            p.write32(slot + 8, buffer.len);
            p.write16(slot + 12, flags);
            p.write16(slot + 14, next);
        }
        let ring_slot = u64::from(self.next_avail % self.size);
        p.write16(self.avail + 4 + 2 * ring_slot, 0);
        // The descriptors and the ring entry must be visible before the index.
        fence(Ordering::SeqCst);
        self.next_avail = self.next_avail.wrapping_add(1);
        p.write16(self.avail + 2, self.next_avail);
        // And the index before the notification.
        fence(Ordering::SeqCst);
        self.notify.kick(p, self.index);
    }

    /// Whether the device has returned the posted chain.
    pub fn poll_used<P: Platform + ?Sized>(&mut self, p: &P) -> bool {
        let used_idx = p.read16(self.used + 2);
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
