//! A split virtqueue (virtio 1.2 §2.7) used by one polling driver with
//! several requests in flight.
//!
//! Memory layout (one DMA allocation, valid for modern and legacy devices):
//! descriptor table at 0 (16 bytes × size), available ring right after it,
//! used ring at the next 4096-byte boundary (the legacy "QueueAlign").
//!
//! The queue does not hand out descriptors itself: the caller says which
//! descriptor a request starts at (each request slot of the block driver
//! owns a fixed range), so a completion's id names its slot directly.
//! A request is either a chain of ring descriptors, or one ring descriptor
//! pointing at an *indirect table* (§2.7.5.3) in the caller's DMA memory.

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

/// One element of the used ring (§2.7.8).
#[repr(C)]
struct UsedElem {
    id: u32,  // 0
    len: u32, // 4
}
const USED_ID: Field<UsedElem, u32> = field!(UsedElem, id);

const DESC_SIZE: u64 = size_of::<Descriptor>() as u64;
const RING_HEADER: u64 = size_of::<AvailHeader>() as u64;
/// Size of one entry of a descriptor table (the ring's or an indirect one).
pub(crate) const DESCRIPTOR_BYTES: u64 = DESC_SIZE;
const USED_ELEM: u64 = size_of::<UsedElem>() as u64;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
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

    /// Post `chain` as ring descriptors `first..first + chain.len()` and
    /// notify the device. The caller owns those descriptors (none of them
    /// is in flight) and `first + chain.len()` is at most `size`.
    pub fn submit(
        &mut self,
        p: &P,
        transport: &Transport<P>,
        first: u16,
        chain: impl ExactSizeIterator<Item = Buffer>,
    ) {
        let count = chain.len();
        debug_assert!(count > 0 && usize::from(first) + count <= usize::from(self.size));
        write_table(p, &self.rings, DESC_SIZE * u64::from(first), first, chain);
        self.post(p, transport, first);
    }

    /// Write `chain` into the indirect table at `table_at` in `table` (room
    /// for its length), post one ring descriptor `slot` pointing at it, and
    /// notify the device. Only for a device that accepted
    /// VIRTIO_F_INDIRECT_DESC; the chain is at most `size` buffers long.
    pub fn submit_indirect(
        &mut self,
        p: &P,
        transport: &Transport<P>,
        slot: u16,
        table: &Dma<P>,
        table_at: u64,
        chain: impl ExactSizeIterator<Item = Buffer>,
    ) {
        let count = chain.len();
        debug_assert!(count > 0 && count <= usize::from(self.size) && slot < self.size);
        write_table(p, table, table_at, 0, chain);
        let at = DESC_SIZE * u64::from(slot);
        self.rings
            .write(p, at, DESC_ADDR, table.device_address() + table_at);
        // count <= size <= 32768, so 16 × count fits.
        let table_bytes = u32::try_from(DESC_SIZE * count as u64).unwrap_or(u32::MAX);
        self.rings.write(p, at, DESC_LEN, table_bytes);
        self.rings.write(p, at, DESC_FLAGS, DESC_F_INDIRECT);
        self.rings.write(p, at, DESC_NEXT, 0);
        self.post(p, transport, slot);
    }

    /// Put `head` in the available ring, publish it and notify the device.
    fn post(&mut self, p: &P, transport: &Transport<P>, head: u16) {
        let ring_slot = u64::from(self.next_avail % self.size);
        self.rings
            .write_at::<u16>(p, self.avail + RING_HEADER + 2 * ring_slot, head);
        // The descriptors and the ring entry must be visible before the index.
        fence(Ordering::SeqCst);
        self.next_avail = self.next_avail.wrapping_add(1);
        self.rings.write(p, self.avail, AVAIL_IDX, self.next_avail);
        // And the index before the notification.
        fence(Ordering::SeqCst);
        transport.notify(p, self.notify, self.index);
    }

    /// The head descriptor of the next chain the device returned, if any
    /// (completions may come in any order).
    pub fn next_used(&mut self, p: &P) -> Option<u32> {
        let used_idx = self.rings.read(p, self.used, USED_IDX);
        if used_idx == self.last_used {
            return None;
        }
        // The element must be read after the index that publishes it.
        fence(Ordering::SeqCst);
        let slot = u64::from(self.last_used % self.size);
        let element = self.used + RING_HEADER + USED_ELEM * slot;
        let id = self.rings.read(p, element, USED_ID);
        self.last_used = self.last_used.wrapping_add(1);
        Some(id)
    }
}

/// Write `chain` as linked descriptors at `at` in `table`; the first is
/// descriptor `first` of that table (for the `next` links).
fn write_table<P: Platform + ?Sized>(
    p: &P,
    table: &Dma<P>,
    at: u64,
    first: u16,
    chain: impl ExactSizeIterator<Item = Buffer>,
) {
    let count = chain.len();
    for (i, buffer) in chain.enumerate() {
        let entry = at + DESC_SIZE * i as u64;
        let mut flags = 0;
        let mut next = 0;
        if i + 1 < count {
            flags |= DESC_F_NEXT;
            // The caller keeps the chain inside a table of at most 2^15.
            next = first.wrapping_add(u16::try_from(i + 1).unwrap_or(0));
        }
        if buffer.device_writes {
            flags |= DESC_F_WRITE;
        }
        table.write(p, entry, DESC_ADDR, buffer.addr);
        table.write(p, entry, DESC_LEN, buffer.len);
        table.write(p, entry, DESC_FLAGS, flags);
        table.write(p, entry, DESC_NEXT, next);
    }
}

fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}
