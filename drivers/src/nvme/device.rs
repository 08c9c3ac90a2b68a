//! The block device: one namespace through one I/O queue pair, several
//! commands in flight.
//!
//! Each command in flight has a *slot*: its command identifier is the
//! slot's number, and the slot owns one DMA page for the command's PRP
//! list. Slots are used in turn and finished first in, first out; the
//! controller may complete them in any order, and a completion names its
//! slot by its command identifier.

use super::controller::Controller;
use super::error::{AdminCommand, NvmeError, Operation};
use super::identify::{self, LbaFormat, MODEL_BYTES};
use super::queue::{Command, QueuePair};
use super::registers::{PAGE_BYTES, PAGE_SIZE};
use super::status::CompletionStatus;
use crate::access::Dma;
use crate::inflight::{InFlight, Pipeline};
use crate::pci::{self, PciAddress};
use crate::{BlockDevice, Deadline, Platform};
use core::fmt;

/// Upper bound for one command (MDTS may allow less). As for virtio-blk,
/// where 2 MiB requests measured fastest under QEMU; it is also what one
/// PRP list page can describe from any starting offset (see below).
pub const MAX_REQUEST_BYTES: u64 = 2 << 20;
/// Upper bound for the commands in flight at once. Not measured on NVMe
/// (no QEMU run yet); twice virtio-blk's, as NVMe controllers are built
/// for deeper queues and a PRP list page per slot costs only 4 KiB.
pub const MAX_IN_FLIGHT: usize = 8;
/// Entries of the I/O queues (the controller may allow fewer, CAP.MQES):
/// more than the slots, so that a controller that reports its
/// submission queue head late never makes the queue look full.
pub const IO_QUEUE_ENTRIES: u16 = 16;
const _: () = assert!(IO_QUEUE_ENTRIES as usize >= 2 * MAX_IN_FLIGHT);
/// The I/O queue pair's identifier.
const IO_QUEUE_ID: u16 = 1;
/// How long a read or write may take (Linux `io_timeout`, 30 s).
const IO_TIMEOUT_MS: u64 = 30_000;
/// How long a flush may take (as virtio-blk's: a write cache of several
/// GiB may need long to drain).
const FLUSH_TIMEOUT_MS: u64 = 60_000;

/// NVM command set opcodes (NVMe 1.4 ch. 6).
const FLUSH: u8 = 0x00;
const WRITE: u8 = 0x01;
const READ: u8 = 0x02;

/// PRP entries in one list page (8 bytes each).
const PRP_LIST_ENTRIES: u64 = PAGE_BYTES / 8;
// A command of MAX_REQUEST_BYTES starting anywhere in a page touches at
// most MAX_REQUEST_BYTES / page + 1 pages: PRP1 covers the first, one list
// page the rest, so a list never needs a chained second page.
const _: () = assert!(MAX_REQUEST_BYTES / PAGE_BYTES <= PRP_LIST_ENTRIES);
/// Logical block sizes minicap writes: 512 to 4096 bytes (LBADS 9..=12).
const BLOCK_SHIFTS: core::ops::RangeInclusive<u8> = 9..=12;

/// A command in flight: what is needed to finish it.
#[derive(Clone, Copy, Debug)]
struct Pending {
    op: Operation,
    offset: u64,
    timeout_ms: u64,
    /// The controller's status, once it completed the command.
    status: Option<CompletionStatus>,
}

/// An NVMe namespace taken over for polled use.
pub struct Nvme<'p, P: Platform + ?Sized> {
    platform: &'p P,
    function: PciAddress,
    controller: Controller<P>,
    io: QueuePair<P>,
    nsid: u32,
    /// log2 of the logical block size.
    block_shift: u8,
    /// Size in bytes.
    capacity: u64,
    /// Bytes one command moves at most (whole blocks).
    max_transfer: u64,
    /// The controller has a volatile write cache: FLUSH is needed.
    volatile_cache: bool,
    model: [u8; MODEL_BYTES],
    /// One PRP list page per slot.
    prp_lists: Dma<P>,
    /// The commands in flight; the slot names the command identifier and
    /// the PRP list page.
    commands: InFlight<Pending, MAX_IN_FLIGHT>,
    /// Set once the controller was disabled after a failure: every further
    /// command fails at once.
    broken: bool,
}

/// What `initialise` found and set up.
struct Setup<P: Platform + ?Sized> {
    io: QueuePair<P>,
    nsid: u32,
    format: LbaFormat,
    blocks: u64,
    max_transfer: u64,
    volatile_cache: bool,
    model: [u8; MODEL_BYTES],
    prp_lists: Dma<P>,
    slot_count: usize,
}

impl<'p, P: Platform + ?Sized> Nvme<'p, P> {
    /// Reset and initialise the NVMe controller at `function` and take its
    /// first active namespace.
    pub fn new(platform: &'p P, function: PciAddress) -> Result<Self, NvmeError> {
        // Bus mastering off until the controller is disabled.
        pci::take_over(platform, function);
        let mut controller = Controller::start(platform, function)?;
        match Self::initialise(platform, &mut controller) {
            Ok(setup) => Ok(Self {
                platform,
                function,
                controller,
                io: setup.io,
                nsid: setup.nsid,
                block_shift: setup.format.data_shift,
                capacity: setup.blocks << setup.format.data_shift,
                max_transfer: setup.max_transfer,
                volatile_cache: setup.volatile_cache,
                model: setup.model,
                prp_lists: setup.prp_lists,
                commands: InFlight::new(setup.slot_count),
                broken: false,
            }),
            Err(e) => {
                controller.stop(platform);
                pci::stop_bus_master(platform, function);
                Err(e)
            }
        }
    }

    /// IDENTIFY the controller and its first active namespace, check that
    /// minicap can write it, and create the I/O queue pair.
    fn initialise(p: &P, controller: &mut Controller<P>) -> Result<Setup<P>, NvmeError> {
        let page_bytes = PAGE_SIZE;
        let page = Dma::alloc(p, identify::DATA_BYTES, page_bytes).ok_or(NvmeError::NoMemory)?;
        let at = page.device_address();
        controller.admin(
            p,
            AdminCommand::IdentifyController,
            &identify::controller_command(at),
        )?;
        let data = identify::controller_data(p, &page);
        if !identify::entry_size_allowed(data.sq_entry_sizes, 6)
            || !identify::entry_size_allowed(data.cq_entry_sizes, 4)
        {
            return Err(NvmeError::UnsupportedEntrySize);
        }
        if data.namespaces == 0 {
            return Err(NvmeError::NoNamespace);
        }
        let nsid = Self::first_active_namespace(p, controller, &page)?;
        controller.admin(
            p,
            AdminCommand::IdentifyNamespace(nsid),
            &identify::namespace_command(at, nsid),
        )?;
        let namespace = identify::namespace_data(p, &page);
        if namespace.blocks == 0 {
            return Err(NvmeError::NamespaceInactive(nsid));
        }
        let format = namespace.format.ok_or(NvmeError::BadFormatIndex(nsid))?;
        if format.metadata_bytes != 0 {
            return Err(NvmeError::MetadataFormat {
                nsid,
                metadata_bytes: format.metadata_bytes,
                interleaved: namespace.metadata_interleaved,
            });
        }
        if !BLOCK_SHIFTS.contains(&format.data_shift) {
            return Err(NvmeError::UnsupportedBlockSize(format.data_shift));
        }
        // The namespace's size in bytes must fit in a u64.
        if namespace.blocks.leading_zeros() < u32::from(format.data_shift) {
            return Err(NvmeError::NamespaceInactive(nsid));
        }

        // MDTS is in units of the minimum page (4 KiB here, `start` checked).
        let mdts_bytes = if data.mdts == 0 {
            u64::MAX
        } else {
            1u64.checked_shl(12 + u32::from(data.mdts))
                .unwrap_or(u64::MAX)
        };
        let block = 1u64 << format.data_shift;
        // At least a block: the minimum page (4 KiB) is one or more blocks.
        let max_transfer = mdts_bytes.min(MAX_REQUEST_BYTES) / block * block;

        let caps = controller.capabilities();
        let entries = u32::from(IO_QUEUE_ENTRIES).min(caps.max_queue_entries());
        // MQES is at least 1 (two entries); a queue of one entry is full.
        let entries = u16::try_from(entries.max(2)).unwrap_or(IO_QUEUE_ENTRIES);
        let io = QueuePair::new(p, IO_QUEUE_ID, entries).ok_or(NvmeError::NoMemory)?;
        let slot_count = (usize::from(entries) - 1).min(MAX_IN_FLIGHT);
        let prp_lists =
            Dma::alloc(p, slot_count * page_bytes, page_bytes).ok_or(NvmeError::NoMemory)?;
        controller.create_io_queues(p, &io)?;
        Ok(Setup {
            io,
            nsid,
            format,
            blocks: namespace.blocks,
            max_transfer,
            volatile_cache: data.volatile_cache,
            model: data.model,
            prp_lists,
            slot_count,
        })
    }

    /// The first active namespace: the first entry of the active namespace
    /// list, or namespace 1 from a controller that has no such list (it
    /// came with NVMe 1.1; Linux falls back the same way).
    fn first_active_namespace(
        p: &P,
        controller: &mut Controller<P>,
        page: &Dma<P>,
    ) -> Result<u32, NvmeError> {
        const NVME_1_1: u32 = 0x0001_0100;
        if controller.version(p) < NVME_1_1 {
            return Ok(1);
        }
        let list = identify::active_namespaces_command(page.device_address());
        match controller.admin(p, AdminCommand::IdentifyActiveNamespaces, &list) {
            Ok(_) => identify::first_active(p, page).ok_or(NvmeError::NoNamespace),
            Err(NvmeError::AdminFailed { .. }) => Ok(1),
            Err(e) => Err(e),
        }
    }

    /// Where the controller is.
    pub fn pci_address(&self) -> PciAddress {
        self.function
    }

    /// The namespace in use.
    pub fn namespace(&self) -> u32 {
        self.nsid
    }

    /// Whether the controller reported a volatile write cache (FLUSH sent).
    pub fn has_volatile_cache(&self) -> bool {
        self.volatile_cache
    }

    fn check_range(&self, offset: u64, len: u64, phys: u64) -> Result<(), NvmeError> {
        let block = 1u64 << self.block_shift;
        let aligned = offset.is_multiple_of(block) && len.is_multiple_of(block) && len > 0;
        let inside = offset
            .checked_add(len)
            .is_some_and(|end| end <= self.capacity);
        if !(aligned && inside) {
            return Err(NvmeError::BadRequest { offset, len });
        }
        if !phys.is_multiple_of(4) {
            return Err(NvmeError::UnalignedMemory(phys));
        }
        Ok(())
    }

    /// The PRP entries for `len` bytes at `phys` (NVMe 1.4 §4.3): PRP1 is
    /// the first byte (with its offset in its page); PRP2 the second page,
    /// or, when more pages follow, slot `slot`'s PRP list of them.
    fn map_data(&self, slot: usize, phys: u64, len: u64) -> (u64, u64) {
        let in_first_page = PAGE_BYTES - phys % PAGE_BYTES;
        if len <= in_first_page {
            return (phys, 0);
        }
        let second_page = phys + in_first_page;
        let rest = len - in_first_page;
        if rest <= PAGE_BYTES {
            return (phys, second_page);
        }
        let list = PAGE_BYTES * slot as u64;
        for i in 0..rest.div_ceil(PAGE_BYTES) {
            self.prp_lists
                .write_at(self.platform, list + 8 * i, second_page + i * PAGE_BYTES);
        }
        (phys, self.prp_lists.device_address() + list)
    }

    /// Post one command in the next slot, which must be free, without
    /// waiting. `data` is (phys, len) for reads and writes.
    fn submit(
        &mut self,
        op: Operation,
        offset: u64,
        data: Option<(u64, u64)>,
        timeout_ms: u64,
    ) -> Result<(), NvmeError> {
        if self.broken {
            return Err(NvmeError::Unusable);
        }
        let Some(slot) = self.commands.next_slot().filter(|_| !self.io.is_full()) else {
            return Err(NvmeError::TooManyInFlight);
        };
        let mut command = Command {
            opcode: match op {
                Operation::Read => READ,
                Operation::Write => WRITE,
                Operation::Flush => FLUSH,
            },
            nsid: self.nsid,
            ..Command::default()
        };
        if let Some((phys, len)) = data {
            let (prp1, prp2) = self.map_data(slot, phys, len);
            let first_block = offset >> self.block_shift;
            // At most MAX_REQUEST_BYTES / 512 blocks: NLB (0's based) fits
            // its 16 bits.
            let blocks = u32::try_from(len >> self.block_shift).unwrap_or(0);
            command.prp1 = prp1;
            command.prp2 = prp2;
            command.cdw10 = (first_block & 0xffff_ffff) as u32;
            command.cdw11 = (first_block >> 32) as u32;
            command.cdw12 = blocks - 1;
        }
        // slot < MAX_IN_FLIGHT: the command identifier names the slot.
        let id = u16::try_from(slot).unwrap_or(u16::MAX);
        self.io
            .submit(self.platform, self.controller.doorbells(), id, &command);
        let taken = self.commands.push(Pending {
            op,
            offset,
            timeout_ms,
            status: None,
        });
        debug_assert_eq!(taken, Some(slot));
        Ok(())
    }

    /// Record the status of every command the controller completed. A
    /// completion of a command not in flight (or a bad queue head) is a
    /// broken controller: the identifier.
    fn collect_completions(&mut self) -> Result<(), u16> {
        loop {
            let done = match self
                .io
                .next_completion(self.platform, self.controller.doorbells())
            {
                Ok(Some(done)) => done,
                Ok(None) => return Ok(()),
                Err(bad) => return Err(bad.0),
            };
            match self.commands.in_flight_mut(usize::from(done.command_id)) {
                Some(command) if command.status.is_none() => {
                    command.status = Some(done.status);
                }
                _ => return Err(done.command_id),
            }
        }
    }

    /// Stop a controller that failed: disable it so it cannot complete
    /// anything later into memory we may reuse (or cut off its DMA if it
    /// will not disable). It takes no more commands.
    fn give_up(&mut self) {
        self.broken = true;
        self.controller.stop(self.platform);
    }

    /// Move `len` bytes between the namespace at `offset` and memory at
    /// `phys`, in commands of at most `max_transfer()` bytes, as many in
    /// flight as there are slots; returns when all are done.
    fn transfer(
        &mut self,
        op: Operation,
        offset: u64,
        phys: u64,
        len: u64,
    ) -> Result<(), NvmeError> {
        self.check_range(offset, len, phys)?;
        self.transfer_chunks(op, offset, phys, len, self.max_transfer)
    }
}

impl<P: Platform + ?Sized> Pipeline for Nvme<'_, P> {
    type Error = NvmeError;
    type Op = Operation;

    fn idle(&self) -> bool {
        self.commands.is_empty()
    }

    fn has_free_slot(&self) -> bool {
        self.commands.has_free_slot()
    }

    fn complete_oldest(&mut self) -> Result<(), NvmeError> {
        let Some((slot, command)) = self.commands.oldest() else {
            return Ok(());
        };
        if self.broken {
            // The controller was disabled with this command in flight.
            self.commands.retire_oldest();
            return Err(NvmeError::Unusable);
        }
        let p = self.platform;
        let deadline = Deadline::after_ms(p, command.timeout_ms);
        let mut next_health_check = 0;
        let outcome = loop {
            // Checked before the deadline, so a completion that arrives
            // just at the deadline still counts.
            let expired = deadline.expired(p);
            if let Err(id) = self.collect_completions() {
                break Err(NvmeError::BadCompletion(id));
            }
            if let Some(status) = self.commands.get(slot).and_then(|c| c.status) {
                break Ok(status);
            }
            if let Err(e) = self.controller.periodic_health(p, &mut next_health_check) {
                break Err(e);
            }
            if expired {
                break Err(NvmeError::Timeout {
                    op: command.op,
                    offset: command.offset,
                });
            }
            core::hint::spin_loop();
        };
        self.commands.retire_oldest();
        match outcome {
            Err(e) => {
                self.give_up();
                Err(e)
            }
            Ok(status) if status.is_success() => Ok(()),
            Ok(status) => Err(NvmeError::Io {
                op: command.op,
                offset: command.offset,
                status,
            }),
        }
    }

    fn submit_chunk(
        &mut self,
        op: Operation,
        offset: u64,
        phys: u64,
        len: u64,
    ) -> Result<(), NvmeError> {
        self.submit(op, offset, Some((phys, len)), IO_TIMEOUT_MS)
    }
}

impl<P: Platform + ?Sized> BlockDevice for Nvme<'_, P> {
    type Error = NvmeError;

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn sector_size(&self) -> u32 {
        1 << self.block_shift
    }

    fn max_transfer(&self) -> u64 {
        self.max_transfer
    }

    fn max_in_flight(&self) -> usize {
        self.commands.slot_count()
    }

    fn read(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), NvmeError> {
        self.transfer(Operation::Read, offset, phys, len)
    }

    fn write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), NvmeError> {
        self.transfer(Operation::Write, offset, phys, len)
    }

    fn start_write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), NvmeError> {
        if self.broken {
            return Err(NvmeError::Unusable);
        }
        self.check_range(offset, len, phys)?;
        if len > self.max_transfer {
            return Err(NvmeError::BadRequest { offset, len });
        }
        self.submit(Operation::Write, offset, Some((phys, len)), IO_TIMEOUT_MS)
    }

    fn wait(&mut self) -> Result<(), NvmeError> {
        self.complete_oldest()
    }

    fn flush(&mut self) -> Result<(), NvmeError> {
        self.complete_all()?;
        if !self.volatile_cache {
            // Without a volatile write cache a completed write is durable
            // (FLUSH would complete with no effect, NVMe 1.4 ch. 6).
            return Ok(());
        }
        self.submit(Operation::Flush, 0, None, FLUSH_TIMEOUT_MS)?;
        self.complete_oldest()
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "NVMe {} (", self.function)?;
        let model = self.model.trim_ascii();
        if !model.is_empty() {
            for &byte in model {
                // The controller's bytes: printable ASCII only.
                let shown = if byte.is_ascii_graphic() || byte == b' ' {
                    char::from(byte)
                } else {
                    '?'
                };
                out.write_char(shown)?;
            }
            out.write_str(", ")?;
        }
        write!(out, "namespace {}", self.nsid)?;
        if self.block_shift != 9 {
            write!(out, ", {}-byte blocks", 1u32 << self.block_shift)?;
        }
        write!(out, "), {} MiB", self.capacity >> 20)
    }
}

impl<P: Platform + ?Sized> Drop for Nvme<'_, P> {
    /// A controller minicap stops using is disabled and stops mastering
    /// the bus, so nothing it was asked to do can reach memory later.
    fn drop(&mut self) {
        let _ = self.complete_all();
        self.controller.disable(self.platform);
        pci::stop_bus_master(self.platform, self.function);
    }
}
