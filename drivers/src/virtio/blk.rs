//! Polled virtio-blk (virtio 1.2 §5.2) with several requests in flight.
//!
//! Each request in flight has a *slot*: a DMA page with its header, its
//! status byte and (when the device accepted VIRTIO_F_INDIRECT_DESC) its
//! indirect descriptor table, and a fixed range of ring descriptors (one
//! with an indirect table, header + data + status without). Slots are used
//! in turn and finished first in, first out; the device may complete them
//! in any order, and a completion names its slot by its head descriptor.

use super::queue::{Buffer, QueueError, SplitQueue, DESCRIPTOR_BYTES};
use super::status;
use super::transport::{blk_config, Transport, TransportError};
use crate::access::{Dma, Field};
use crate::inflight::{InFlight, Pipeline};
use crate::pci::{self, PciAddress};
use crate::{field, BlockDevice, Deadline, Platform};
use core::fmt;

const FEATURE_SIZE_MAX: u64 = 1 << 1;
const FEATURE_SEG_MAX: u64 = 1 << 2;
const FEATURE_RO: u64 = 1 << 5;
const FEATURE_BLK_SIZE: u64 = 1 << 6;
const FEATURE_FLUSH: u64 = 1 << 9;
/// VIRTIO_F_INDIRECT_DESC: a request may be one ring descriptor pointing at
/// a table of descriptors (virtio 1.2 §2.7.5.3).
const FEATURE_INDIRECT_DESC: u64 = 1 << 28;
const FEATURE_VERSION_1: u64 = 1 << 32;
/// VIRTIO_F_ACCESS_PLATFORM: the device's DMA goes through the platform's
/// IOMMU. minicap makes that an identity (pass-through) path, so accepting
/// it changes nothing for us; a device that offers it may refuse a driver
/// that does not accept it (QEMU `iommu_platform=on` does).
const FEATURE_ACCESS_PLATFORM: u64 = 1 << 33;

/// Largest logical block size supported: minicap writes in 4 KiB units.
const MAX_BLOCK: u32 = 4096;

const REQ_IN: u32 = 0;
const REQ_OUT: u32 = 1;
const REQ_FLUSH: u32 = 4;

/// A request slot's DMA page: the request header and status byte (virtio
/// 1.2 §5.2.6) — the header is the first descriptor of the request, the
/// status byte the last — and from [`TABLE_AT`] its indirect table.
#[repr(C)]
struct Request {
    kind: u32,     // 0
    reserved: u32, // 4
    sector: u64,   // 8
    status: u8,    // 16
}
/// Bytes of DMA memory per slot.
const SLOT_BYTES: usize = 4096;
/// Where the indirect table starts in a slot (16-byte aligned, §2.7.5.3).
const TABLE_AT: u64 = 32;
const _: () = assert!(core::mem::size_of::<Request>() as u64 <= TABLE_AT);
/// Entries of a slot's indirect table: header, up to 252 data, status.
#[allow(clippy::cast_possible_truncation)]
const TABLE_ENTRIES: usize = (SLOT_BYTES - TABLE_AT as usize) / DESCRIPTOR_BYTES as usize;

/// Where slot `slot`'s page starts in the slots' DMA memory.
fn slot_page(slot: usize) -> u64 {
    (SLOT_BYTES * slot) as u64
}
const REQUEST_KIND: Field<Request, u32> = field!(Request, kind);
const REQUEST_RESERVED: Field<Request, u32> = field!(Request, reserved);
const REQUEST_SECTOR: Field<Request, u64> = field!(Request, sector);
const REQUEST_STATUS: Field<Request, u8> = field!(Request, status);
/// The header is what precedes the status byte (16 bytes).
#[allow(clippy::cast_possible_truncation)]
const HEADER_BYTES: u32 = REQUEST_STATUS.offset() as u32;

const STATUS_OK: u8 = 0;
/// Written into the status byte before submitting: a device that completes
/// without writing it is caught.
const STATUS_UNSET: u8 = 0xff;

/// virtio-blk addresses the disk in 512-byte sectors, whatever its block size.
const SECTOR: u64 = 512;
/// Upper bound for one request. Measured under QEMU TCG (write path only,
/// issue 7): with the disk image in the host's page cache 2 MiB requests
/// ran at about three times the speed of 4 MiB ones (and 16 or 64 MiB were
/// slower still); on tmpfs 2 and 4 MiB were alike, 1 MiB a little slower.
pub const MAX_REQUEST_BYTES: u64 = 2 << 20;
/// Upper bound for the requests in flight at once (the queue may allow
/// fewer). Under QEMU TCG 2 to 4 measured a little faster than 1, and 8 no
/// faster than 4; a real disk gains more from a queue.
pub const MAX_IN_FLIGHT: usize = 4;
/// Descriptors the queue is asked for (QEMU offers 256).
const QUEUE_SIZE: u16 = 256;
/// Upper bound for one descriptor when the device sets no size_max.
const DEFAULT_SEGMENT_BYTES: u64 = 1 << 20;
const RESET_TIMEOUT_MS: u64 = 1_000;
const REQUEST_TIMEOUT_MS: u64 = 30_000;
const FLUSH_TIMEOUT_MS: u64 = 60_000;

pub use crate::Operation;

/// Everything that can go wrong with a virtio-blk device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtioBlkError {
    /// Neither modern capabilities nor a legacy I/O BAR.
    NoRegisters,
    /// A register region could not be mapped.
    Unmappable(u64),
    /// The device did not come out of reset.
    ResetTimeout,
    /// The device refused the features we can live with.
    FeaturesRejected,
    /// The device is read-only.
    ReadOnly,
    /// Request queue 0 is missing.
    NoQueue,
    /// No DMA memory for the queue or request headers.
    NoMemory,
    /// The queue memory lies above what a legacy device can address.
    QueueNotAddressable,
    /// The device's doorbell for the queue lies outside its notification
    /// area.
    NoDoorbell,
    /// A request did not complete in time.
    Timeout {
        /// Which operation.
        op: Operation,
        /// Byte offset on the device.
        offset: u64,
    },
    /// The device reported an error status for a request.
    Io {
        /// Which operation.
        op: Operation,
        /// Byte offset on the device.
        offset: u64,
        /// The virtio status byte.
        status: u8,
    },
    /// The device flagged DEVICE_NEEDS_RESET or FAILED.
    DeviceBroken(u8),
    /// The device's logical block size is not a power of two between 512
    /// and 4096.
    UnsupportedBlockSize(u32),
    /// The device was reset after a timeout (or would not reset) and can
    /// take no more requests.
    Unusable,
    /// A request outside the device or not sector aligned.
    BadRequest {
        /// Byte offset on the device.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// `start_write` with `max_in_flight()` writes already outstanding
    /// (a caller bug: nothing was submitted).
    TooManyInFlight,
    /// The device returned a descriptor that was not in flight; it was
    /// reset and can take no more requests.
    BadCompletion(u32),
}

impl fmt::Display for VirtioBlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoRegisters => write!(f, "no virtio registers (no capabilities, no I/O BAR)"),
            Self::Unmappable(a) => write!(f, "cannot map registers at {a:#x}"),
            Self::ResetTimeout => write!(
                f,
                "device did not finish its reset within {RESET_TIMEOUT_MS} ms"
            ),
            Self::FeaturesRejected => write!(f, "device rejected the negotiated features"),
            Self::ReadOnly => write!(f, "device is read-only"),
            Self::NoQueue => write!(f, "device has no request queue"),
            Self::NoMemory => write!(f, "out of DMA memory"),
            Self::QueueNotAddressable => {
                write!(f, "queue memory not addressable by a legacy device")
            }
            Self::NoDoorbell => write!(
                f,
                "the queue's notification address lies outside the notification area"
            ),
            Self::Timeout { op, offset } => {
                write!(f, "{op} at byte {offset:#x} timed out")
            }
            Self::Io { op, offset, status } => {
                write!(
                    f,
                    "{op} at byte {offset:#x} failed with virtio status {status}"
                )
            }
            Self::DeviceBroken(s) => write!(f, "device status {s:#x} says it needs a reset"),
            Self::Unusable => write!(f, "device was reset after an earlier timeout"),
            Self::UnsupportedBlockSize(b) => {
                write!(
                    f,
                    "logical block size {b} is not supported (512 to {MAX_BLOCK})"
                )
            }
            Self::BadRequest { offset, len } => {
                write!(
                    f,
                    "request of {len} bytes at {offset:#x} is outside the device or unaligned"
                )
            }
            Self::TooManyInFlight => write!(f, "too many writes in flight"),
            Self::BadCompletion(id) => write!(
                f,
                "device completed descriptor {id}, which was not in flight; device reset"
            ),
        }
    }
}

impl From<TransportError> for VirtioBlkError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::NoRegisters => Self::NoRegisters,
            TransportError::Unmappable(a) => Self::Unmappable(a),
        }
    }
}

impl From<QueueError> for VirtioBlkError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NotAvailable => Self::NoQueue,
            QueueError::NoMemory => Self::NoMemory,
            QueueError::NotAddressable => Self::QueueNotAddressable,
            QueueError::NoDoorbell => Self::NoDoorbell,
        }
    }
}

/// A virtio-blk device taken over for polled use.
pub struct VirtioBlk<'p, P: Platform + ?Sized> {
    platform: &'p P,
    function: PciAddress,
    transport: Transport<P>,
    queue: SplitQueue<P>,
    capacity: u64,
    segment_bytes: u64,
    max_segments: usize,
    flush: bool,
    /// Whether requests go through indirect tables.
    indirect: bool,
    /// Logical block size: offsets and lengths are multiples of it.
    block_size: u32,
    /// The slots' pages, `SLOT_BYTES` each.
    slots: Dma<P>,
    /// Ring descriptors per slot: slot `i` owns `i × stride ..`.
    stride: u16,
    /// The requests in flight, one slot (page and descriptors) each.
    requests: InFlight<Pending, MAX_IN_FLIGHT>,
    /// Set once the device was reset after a timeout (or would not reset):
    /// its queue is gone, so every further request fails at once.
    broken: bool,
}

/// What `initialise` found and set up.
struct Setup<P: Platform + ?Sized> {
    queue: SplitQueue<P>,
    capacity: u64,
    segment_bytes: u64,
    max_segments: usize,
    flush: bool,
    indirect: bool,
    block_size: u32,
    slots: Dma<P>,
    slot_count: usize,
    stride: u16,
}

/// A submitted request: what is needed to finish it.
#[derive(Clone, Copy, Debug)]
struct Pending {
    op: Operation,
    offset: u64,
    timeout_ms: u64,
    /// The device has returned it.
    done: bool,
}

impl<'p, P: Platform + ?Sized> VirtioBlk<'p, P> {
    /// Reset and initialise the virtio-blk device at `function`.
    pub fn new(platform: &'p P, function: PciAddress) -> Result<Self, VirtioBlkError> {
        pci::take_over(platform, function);
        let transport = match Transport::discover(platform, function) {
            Ok(transport) => transport,
            Err(e) => {
                // We cannot reset it; take_over left bus mastering off.
                return Err(e.into());
            }
        };
        // Reset first: the crashed kernel's driver may have left requests in
        // flight, and only a reset stops the device from finishing them.
        if !transport.reset(platform, RESET_TIMEOUT_MS) {
            // Bus mastering stays off (take_over): it cannot DMA any more.
            return Err(VirtioBlkError::ResetTimeout);
        }
        pci::enable_bus_master(platform, function);
        match Self::initialise(platform, &transport) {
            Ok(setup) => Ok(Self {
                platform,
                function,
                transport,
                queue: setup.queue,
                capacity: setup.capacity,
                segment_bytes: setup.segment_bytes,
                max_segments: setup.max_segments,
                flush: setup.flush,
                indirect: setup.indirect,
                block_size: setup.block_size,
                slots: setup.slots,
                stride: setup.stride,
                requests: InFlight::new(setup.slot_count),
                broken: false,
            }),
            Err(e) => {
                // The driver must not clear status bits (virtio 1.2 §2.1.2):
                // add FAILED to what is there.
                transport.add_status(platform, status::FAILED);
                transport.reset(platform, RESET_TIMEOUT_MS);
                pci::stop_bus_master(platform, function);
                Err(e)
            }
        }
    }

    /// Negotiate, set up the queue and read the configuration.
    fn initialise(p: &'p P, transport: &Transport<P>) -> Result<Setup<P>, VirtioBlkError> {
        transport.add_status(p, status::ACKNOWLEDGE | status::DRIVER);
        let offered = transport.device_features(p);
        if offered & FEATURE_RO != 0 {
            return Err(VirtioBlkError::ReadOnly);
        }
        let mut wanted = FEATURE_SIZE_MAX
            | FEATURE_SEG_MAX
            | FEATURE_FLUSH
            | FEATURE_BLK_SIZE
            | FEATURE_INDIRECT_DESC;
        if transport.is_modern() {
            wanted |= FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM;
        }
        let accepted = offered & wanted;
        transport.set_driver_features(p, accepted);
        if !transport.confirm_features(p) {
            return Err(VirtioBlkError::FeaturesRejected);
        }
        let indirect = accepted & FEATURE_INDIRECT_DESC != 0;
        let queue = SplitQueue::new(p, transport, 0, QUEUE_SIZE)?;
        // A request needs a header, at least one data and a status
        // descriptor: smaller queues cannot carry one (not even through an
        // indirect table, which may be no longer than the queue).
        let size = usize::from(queue.size());
        if size < 3 {
            return Err(VirtioBlkError::NoQueue);
        }
        // With indirect tables a request takes one ring descriptor, else
        // at least three.
        let per_request = if indirect { 1 } else { 3 };
        let slot_count = (size / per_request).clamp(1, MAX_IN_FLIGHT);
        let stride = size / slot_count;
        let slots = Dma::alloc(p, slot_count * SLOT_BYTES, 4096).ok_or(VirtioBlkError::NoMemory)?;
        transport.add_status(p, status::DRIVER_OK);

        let capacity = transport
            .config64(p, blk_config::CAPACITY_LOW, blk_config::CAPACITY_HIGH)
            .saturating_mul(SECTOR);
        // Requests must be whole logical blocks (512 unless the device says
        // otherwise, e.g. 4096 on a 4Kn disk).
        let block_size = if accepted & FEATURE_BLK_SIZE != 0 {
            transport.config32(p, blk_config::BLK_SIZE)
        } else {
            512
        };
        if !block_size.is_power_of_two() || !(512..=MAX_BLOCK).contains(&block_size) {
            return Err(VirtioBlkError::UnsupportedBlockSize(block_size));
        }
        let mut segment_bytes = DEFAULT_SEGMENT_BYTES;
        if accepted & FEATURE_SIZE_MAX != 0 {
            let size_max = u64::from(transport.config32(p, blk_config::SIZE_MAX));
            if size_max >= 4096 {
                segment_bytes = segment_bytes.min(size_max & !4095);
            } else if size_max >= SECTOR {
                segment_bytes = size_max & !(SECTOR - 1);
            }
        }
        // Header and status take two descriptors of the chain.
        let chain_limit = if indirect {
            TABLE_ENTRIES.min(size)
        } else {
            stride
        };
        let mut max_segments = chain_limit - 2;
        if accepted & FEATURE_SEG_MAX != 0 {
            let seg_max = transport.config32(p, blk_config::SEG_MAX);
            if let Ok(seg_max) = usize::try_from(seg_max) {
                if seg_max > 0 {
                    max_segments = max_segments.min(seg_max);
                }
            }
        }
        if segment_bytes * (max_segments as u64) < u64::from(block_size) {
            // One request could not carry a whole logical block.
            return Err(VirtioBlkError::UnsupportedBlockSize(block_size));
        }
        Ok(Setup {
            queue,
            capacity,
            segment_bytes,
            max_segments,
            flush: accepted & FEATURE_FLUSH != 0,
            indirect,
            block_size,
            slots,
            slot_count,
            stride: u16::try_from(stride).unwrap_or(u16::MAX),
        })
    }

    /// Where the device is.
    pub fn pci_address(&self) -> PciAddress {
        self.function
    }

    /// Whether the modern interface is in use.
    pub fn is_modern(&self) -> bool {
        self.transport.is_modern()
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<(), VirtioBlkError> {
        let block = u64::from(self.block_size);
        let aligned = offset.is_multiple_of(block) && len.is_multiple_of(block) && len > 0;
        let inside = offset
            .checked_add(len)
            .is_some_and(|end| end <= self.capacity);
        if aligned && inside {
            Ok(())
        } else {
            Err(VirtioBlkError::BadRequest { offset, len })
        }
    }

    /// Post one request (header, `data`, status) in the next slot, which
    /// must be free, without waiting.
    fn submit(
        &mut self,
        op: Operation,
        kind: u32,
        offset: u64,
        data: Data,
        timeout_ms: u64,
    ) -> Result<(), VirtioBlkError> {
        if self.broken {
            return Err(VirtioBlkError::Unusable);
        }
        let Some(slot) = self.requests.next_slot() else {
            return Err(VirtioBlkError::TooManyInFlight);
        };
        let p = self.platform;
        let page = slot_page(slot);
        let request = &self.slots;
        request.write(p, page, REQUEST_KIND, kind);
        request.write(p, page, REQUEST_RESERVED, 0);
        request.write(p, page, REQUEST_SECTOR, offset / SECTOR);
        request.write(p, page, REQUEST_STATUS, STATUS_UNSET);
        let header_at = request.device_address() + page;
        let chain = Chain {
            header_at,
            data,
            segment_bytes: self.segment_bytes,
            next: 0,
            count: 2 + data.segments(self.segment_bytes),
        };
        debug_assert!(chain.count <= self.max_segments + 2);
        let head = self.head_of(slot);
        if self.indirect {
            self.queue.submit_indirect(
                p,
                &self.transport,
                head,
                &self.slots,
                page + TABLE_AT,
                chain,
            );
        } else {
            self.queue.submit(p, &self.transport, head, chain);
        }
        let taken = self.requests.push(Pending {
            op,
            offset,
            timeout_ms,
            done: false,
        });
        debug_assert_eq!(taken, Some(slot));
        Ok(())
    }

    /// The first ring descriptor of `slot`.
    fn head_of(&self, slot: usize) -> u16 {
        // slot < slot_count <= 8 and slot × stride < queue size.
        u16::try_from(slot).unwrap_or(0) * self.stride
    }

    /// Mark every request the device returned as done. A completion of a
    /// descriptor not in flight is a broken device: its id.
    fn collect_completions(&mut self) -> Result<(), u32> {
        while let Some(id) = self.queue.next_used(self.platform) {
            let stride = u32::from(self.stride);
            let slot = usize::try_from(id / stride).unwrap_or(usize::MAX);
            let request = if id.is_multiple_of(stride) {
                self.requests.in_flight_mut(slot)
            } else {
                None
            };
            match request {
                Some(request) if !request.done => request.done = true,
                _ => return Err(id),
            }
        }
        Ok(())
    }

    /// Stop a device that failed to complete a request: reset it so it
    /// cannot complete anything later, into memory we may reuse; if it will
    /// not reset, cut off its DMA. It takes no more requests.
    fn give_up(&mut self) {
        self.broken = true;
        if !self.transport.reset(self.platform, RESET_TIMEOUT_MS) {
            pci::stop_bus_master(self.platform, self.function);
        }
    }

    /// Move `len` bytes between the disk at `offset` and memory at `phys`,
    /// in requests of at most `max_transfer()` bytes, as many in flight as
    /// the device allows; returns when all are done.
    fn transfer(
        &mut self,
        op: Operation,
        offset: u64,
        phys: u64,
        len: u64,
    ) -> Result<(), VirtioBlkError> {
        self.check_range(offset, len)?;
        let request_bytes = self.max_transfer();
        self.transfer_chunks(op, offset, phys, len, request_bytes)
    }
}

impl<P: Platform + ?Sized> Pipeline for VirtioBlk<'_, P> {
    type Error = VirtioBlkError;
    type Op = Operation;

    fn idle(&self) -> bool {
        self.requests.is_empty()
    }

    fn has_free_slot(&self) -> bool {
        self.requests.has_free_slot()
    }

    fn complete_oldest(&mut self) -> Result<(), VirtioBlkError> {
        let Some((slot, request)) = self.requests.oldest() else {
            return Ok(());
        };
        if self.broken {
            // The device was reset with this request in flight.
            self.requests.retire_oldest();
            return Err(VirtioBlkError::Unusable);
        }
        let p = self.platform;
        let deadline = Deadline::after_ms(p, request.timeout_ms);
        let outcome = loop {
            // Checked before the deadline, so a completion that arrives
            // just at the deadline still counts.
            let expired = deadline.expired(p);
            if let Err(id) = self.collect_completions() {
                break Err(VirtioBlkError::BadCompletion(id));
            }
            if self.requests.get(slot).is_some_and(|r| r.done) {
                break Ok(());
            }
            if expired {
                break Err(VirtioBlkError::Timeout {
                    op: request.op,
                    offset: request.offset,
                });
            }
            core::hint::spin_loop();
        };
        self.requests.retire_oldest();
        if let Err(e) = outcome {
            self.give_up();
            return Err(e);
        }
        let device_status = self.transport.status(p);
        if device_status & (status::NEEDS_RESET | status::FAILED) != 0 {
            return Err(VirtioBlkError::DeviceBroken(device_status));
        }
        let result = self.slots.read(p, slot_page(slot), REQUEST_STATUS);
        if result != STATUS_OK {
            return Err(VirtioBlkError::Io {
                op: request.op,
                offset: request.offset,
                status: result,
            });
        }
        Ok(())
    }

    fn submit_chunk(
        &mut self,
        op: Operation,
        offset: u64,
        phys: u64,
        len: u64,
    ) -> Result<(), VirtioBlkError> {
        let write = matches!(op, Operation::Write);
        let kind = if write { REQ_OUT } else { REQ_IN };
        let data = Data {
            phys,
            len,
            device_writes: !write,
        };
        self.submit(op, kind, offset, data, REQUEST_TIMEOUT_MS)
    }
}

/// The data of a request: a physically contiguous range.
#[derive(Clone, Copy, Debug)]
struct Data {
    phys: u64,
    len: u64,
    /// A read from the disk (the device writes memory).
    device_writes: bool,
}

impl Data {
    /// Descriptors needed for it with at most `segment_bytes` each.
    fn segments(&self, segment_bytes: u64) -> usize {
        usize::try_from(self.len.div_ceil(segment_bytes)).unwrap_or(usize::MAX)
    }
}

/// A request's descriptors: header, data in segments, status byte.
struct Chain {
    header_at: u64,
    data: Data,
    segment_bytes: u64,
    next: usize,
    count: usize,
}

impl Iterator for Chain {
    type Item = Buffer;

    fn next(&mut self) -> Option<Buffer> {
        let i = self.next;
        if i >= self.count {
            return None;
        }
        self.next += 1;
        Some(if i == 0 {
            Buffer {
                addr: self.header_at,
                len: HEADER_BYTES,
                device_writes: false,
            }
        } else if i + 1 == self.count {
            Buffer {
                addr: self.header_at + REQUEST_STATUS.offset(),
                len: 1,
                device_writes: true,
            }
        } else {
            let start = self.segment_bytes * (i as u64 - 1);
            let piece = (self.data.len - start).min(self.segment_bytes);
            Buffer {
                addr: self.data.phys + start,
                // segment_bytes is at most DEFAULT_SEGMENT_BYTES: no truncation.
                len: u32::try_from(piece).unwrap_or(u32::MAX),
                device_writes: self.data.device_writes,
            }
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Chain {}

impl<P: Platform + ?Sized> BlockDevice for VirtioBlk<'_, P> {
    type Error = VirtioBlkError;

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn sector_size(&self) -> u32 {
        self.block_size
    }

    fn max_transfer(&self) -> u64 {
        let by_segments = self.segment_bytes * self.max_segments as u64;
        // Whole logical blocks, so that every request is one.
        let block = u64::from(self.block_size);
        // At least one block: `initialise` refuses devices that cannot
        // carry one.
        by_segments.min(MAX_REQUEST_BYTES) / block * block
    }

    fn max_in_flight(&self) -> usize {
        self.requests.slot_count()
    }

    fn read(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), VirtioBlkError> {
        self.transfer(Operation::Read, offset, phys, len)
    }

    fn write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), VirtioBlkError> {
        self.transfer(Operation::Write, offset, phys, len)
    }

    fn start_write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), VirtioBlkError> {
        if self.broken {
            return Err(VirtioBlkError::Unusable);
        }
        self.check_range(offset, len)?;
        if len > self.max_transfer() {
            return Err(VirtioBlkError::BadRequest { offset, len });
        }
        let data = Data {
            phys,
            len,
            device_writes: false,
        };
        self.submit(Operation::Write, REQ_OUT, offset, data, REQUEST_TIMEOUT_MS)
    }

    fn wait(&mut self) -> Result<(), VirtioBlkError> {
        self.complete_oldest()
    }

    fn flush(&mut self) -> Result<(), VirtioBlkError> {
        self.complete_all()?;
        if !self.flush {
            // Without VIRTIO_BLK_F_FLUSH the device promises write-through:
            // a completed write is durable.
            return Ok(());
        }
        let none = Data {
            phys: 0,
            len: 0,
            device_writes: false,
        };
        self.submit(Operation::Flush, REQ_FLUSH, 0, none, FLUSH_TIMEOUT_MS)?;
        self.complete_oldest()
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(
            out,
            "virtio-blk {} ({}",
            self.function,
            if self.is_modern() { "modern" } else { "legacy" }
        )?;
        if self.block_size != 512 {
            write!(out, ", {}-byte blocks", self.block_size)?;
        }
        write!(out, "), {} MiB", self.capacity >> 20)
    }
}

impl<P: Platform + ?Sized> Drop for VirtioBlk<'_, P> {
    /// A device minicap stops using is reset and stops mastering the bus, so
    /// nothing it was asked to do can reach memory later.
    fn drop(&mut self) {
        let _ = self.complete_all();
        self.transport.reset(self.platform, RESET_TIMEOUT_MS);
        pci::stop_bus_master(self.platform, self.function);
    }
}
