//! Polled virtio-blk (virtio 1.2 §5.2).

use super::queue::{Buffer, QueueError, SplitQueue};
use super::status;
use super::transport::{blk_config, Transport, TransportError};
use crate::access::{Dma, Field};
use crate::pci::{self, PciAddress};
use crate::{field, poll_until, BlockDevice, Platform};
use core::fmt;

const FEATURE_SIZE_MAX: u64 = 1 << 1;
const FEATURE_SEG_MAX: u64 = 1 << 2;
const FEATURE_RO: u64 = 1 << 5;
const FEATURE_BLK_SIZE: u64 = 1 << 6;
const FEATURE_FLUSH: u64 = 1 << 9;
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

/// A request's header and status byte (virtio 1.2 §5.2.6), in one DMA
/// page: the header is the first descriptor, the status byte the last.
#[repr(C)]
struct Request {
    kind: u32,     // 0
    reserved: u32, // 4
    sector: u64,   // 8
    status: u8,    // 16
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
/// Upper bound for one request; large requests keep a polled driver fast.
const MAX_REQUEST_BYTES: u64 = 4 << 20;
/// Upper bound for one descriptor when the device sets no size_max.
const DEFAULT_SEGMENT_BYTES: u64 = 1 << 20;
const RESET_TIMEOUT_MS: u64 = 1_000;
const REQUEST_TIMEOUT_MS: u64 = 30_000;
const FLUSH_TIMEOUT_MS: u64 = 60_000;
/// Data descriptors per request (plus header and status).
const MAX_DATA_SEGMENTS: usize = 32;

/// What a request was doing (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Reading from the disk.
    Read,
    /// Writing to the disk.
    Write,
    /// Making written data durable.
    Flush,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Flush => "flush",
        })
    }
}

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
    /// Logical block size: offsets and lengths are multiples of it.
    block_size: u32,
    /// The request header and status byte.
    request: Dma<P>,
    /// The request the device is working on, if any.
    pending: Option<Pending>,
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
    block_size: u32,
    request: Dma<P>,
}

/// What is needed to finish a submitted request.
#[derive(Clone, Copy, Debug)]
struct Pending {
    op: Operation,
    offset: u64,
    timeout_ms: u64,
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
                block_size: setup.block_size,
                request: setup.request,
                pending: None,
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
        let mut wanted = FEATURE_SIZE_MAX | FEATURE_SEG_MAX | FEATURE_FLUSH | FEATURE_BLK_SIZE;
        if transport.is_modern() {
            wanted |= FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM;
        }
        let accepted = offered & wanted;
        transport.set_driver_features(p, accepted);
        if !transport.confirm_features(p) {
            return Err(VirtioBlkError::FeaturesRejected);
        }
        let queue = SplitQueue::new(p, transport, 0, 64)?;
        // A request needs a header, at least one data and a status
        // descriptor: smaller queues cannot carry one.
        if queue.size() < 3 {
            return Err(VirtioBlkError::NoQueue);
        }
        let request = Dma::alloc(p, 4096, 4096).ok_or(VirtioBlkError::NoMemory)?;
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
        let queue_limit = usize::from(queue.size()).saturating_sub(2).max(1);
        let mut max_segments = MAX_DATA_SEGMENTS.min(queue_limit);
        if accepted & FEATURE_SEG_MAX != 0 {
            let seg_max = transport.config32(p, blk_config::SEG_MAX);
            if let Ok(seg_max) = usize::try_from(seg_max) {
                if seg_max > 0 {
                    max_segments = max_segments.min(seg_max);
                }
            }
        }
        Ok(Setup {
            queue,
            capacity,
            segment_bytes,
            max_segments,
            flush: accepted & FEATURE_FLUSH != 0,
            block_size,
            request,
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

    /// Post one request (header, data buffers, status) without waiting.
    fn submit(
        &mut self,
        op: Operation,
        kind: u32,
        offset: u64,
        data: &[Buffer],
        timeout_ms: u64,
    ) -> Result<(), VirtioBlkError> {
        if self.broken {
            return Err(VirtioBlkError::Unusable);
        }
        // One request at a time: finish the previous one first.
        self.complete()?;
        let p = self.platform;
        let request = &self.request;
        request.write(p, 0, REQUEST_KIND, kind);
        request.write(p, 0, REQUEST_RESERVED, 0);
        request.write(p, 0, REQUEST_SECTOR, offset / SECTOR);
        request.write(p, 0, REQUEST_STATUS, STATUS_UNSET);
        let header_at = request.device_address();

        let mut chain = [Buffer {
            addr: 0,
            len: 0,
            device_writes: false,
        }; MAX_DATA_SEGMENTS + 2];
        chain[0] = Buffer {
            addr: header_at,
            len: HEADER_BYTES,
            device_writes: false,
        };
        chain[1..=data.len()].copy_from_slice(data);
        chain[data.len() + 1] = Buffer {
            addr: header_at + REQUEST_STATUS.offset(),
            len: 1,
            device_writes: true,
        };
        self.queue
            .submit(p, &self.transport, &chain[..data.len() + 2]);
        self.pending = Some(Pending {
            op,
            offset,
            timeout_ms,
        });
        Ok(())
    }

    /// Wait for the posted request, if any, and check its status.
    fn complete(&mut self) -> Result<(), VirtioBlkError> {
        let Some(Pending {
            op,
            offset,
            timeout_ms,
        }) = self.pending.take()
        else {
            return Ok(());
        };
        let p = self.platform;
        let queue = &mut self.queue;
        if !poll_until(p, timeout_ms, || queue.poll_used(p)) {
            // Stop the device so it cannot complete the request later, into
            // memory we may reuse; if it will not reset, cut off its DMA.
            self.broken = true;
            if !self.transport.reset(p, RESET_TIMEOUT_MS) {
                pci::stop_bus_master(p, self.function);
            }
            return Err(VirtioBlkError::Timeout { op, offset });
        }
        let device_status = self.transport.status(p);
        if device_status & (status::NEEDS_RESET | status::FAILED) != 0 {
            return Err(VirtioBlkError::DeviceBroken(device_status));
        }
        let result = self.request.read(p, 0, REQUEST_STATUS);
        if result != STATUS_OK {
            return Err(VirtioBlkError::Io {
                op,
                offset,
                status: result,
            });
        }
        Ok(())
    }

    /// Run one request and wait for it.
    fn run(
        &mut self,
        op: Operation,
        kind: u32,
        offset: u64,
        data: &[Buffer],
        timeout_ms: u64,
    ) -> Result<(), VirtioBlkError> {
        self.submit(op, kind, offset, data, timeout_ms)?;
        self.complete()
    }

    /// Split [phys, phys+len) into descriptors of at most `segment_bytes`.
    fn segments(
        &self,
        phys: u64,
        len: u64,
        device_writes: bool,
    ) -> ([Buffer; MAX_DATA_SEGMENTS], usize) {
        let mut segments = [Buffer {
            addr: 0,
            len: 0,
            device_writes: false,
        }; MAX_DATA_SEGMENTS];
        let mut count = 0;
        let mut filled = 0;
        while filled < len && count < MAX_DATA_SEGMENTS {
            let piece = (len - filled).min(self.segment_bytes);
            segments[count] = Buffer {
                addr: phys + filled,
                // segment_bytes is at most 1 MiB, so this never truncates.
                len: u32::try_from(piece).unwrap_or(u32::MAX),
                device_writes,
            };
            count += 1;
            filled += piece;
        }
        (segments, count)
    }

    /// Move `len` bytes between the disk at `offset` and memory at `phys`,
    /// in requests of at most `max_transfer()` bytes.
    fn transfer(
        &mut self,
        write: bool,
        offset: u64,
        phys: u64,
        len: u64,
    ) -> Result<(), VirtioBlkError> {
        self.check_range(offset, len)?;
        let request_bytes = self.max_transfer();
        let mut done = 0;
        while done < len {
            let chunk = (len - done).min(request_bytes);
            let (segments, count) = self.segments(phys + done, chunk, !write);
            let (op, kind) = if write {
                (Operation::Write, REQ_OUT)
            } else {
                (Operation::Read, REQ_IN)
            };
            self.run(
                op,
                kind,
                offset + done,
                &segments[..count],
                REQUEST_TIMEOUT_MS,
            )?;
            done += chunk;
        }
        Ok(())
    }
}

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
        by_segments.min(MAX_REQUEST_BYTES)
    }

    fn read(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), VirtioBlkError> {
        self.transfer(false, offset, phys, len)
    }

    fn write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), VirtioBlkError> {
        self.transfer(true, offset, phys, len)
    }

    fn start_write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), VirtioBlkError> {
        self.check_range(offset, len)?;
        if len > self.max_transfer() {
            return Err(VirtioBlkError::BadRequest { offset, len });
        }
        let (segments, count) = self.segments(phys, len, false);
        self.submit(
            Operation::Write,
            REQ_OUT,
            offset,
            &segments[..count],
            REQUEST_TIMEOUT_MS,
        )
    }

    fn wait(&mut self) -> Result<(), VirtioBlkError> {
        self.complete()
    }

    fn flush(&mut self) -> Result<(), VirtioBlkError> {
        if !self.flush {
            // Without VIRTIO_BLK_F_FLUSH the device promises write-through:
            // a completed write is durable.
            return self.complete();
        }
        self.run(Operation::Flush, REQ_FLUSH, 0, &[], FLUSH_TIMEOUT_MS)
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
        let _ = self.complete();
        self.transport.reset(self.platform, RESET_TIMEOUT_MS);
        pci::stop_bus_master(self.platform, self.function);
    }
}
