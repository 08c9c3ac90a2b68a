//! One ATA disk on an AHCI port, driven by polling: READ/WRITE DMA EXT
//! with the PRDT pointing straight at the memory being written, FLUSH
//! CACHE EXT, and SATA error recovery.
//!
//! **One command at a time.** AHCI lets software queue non-queued
//! commands in several slots: the HBA runs them one after the other and,
//! when one fails, halts with its PxCI bit still set and PxCMD.CCS naming
//! it (AHCI 1.3.1 §5.3.2, §6.2.2.1). QEMU's HBA before 8.2 (7.2 included)
//! instead clears PxCI of a failed command like that of a good one and
//! goes on with the next (`ahci_cmd_done`), so with several queued a
//! failure could not be tied to its command and offset. NCQ (WRITE FPDMA
//! QUEUED with PxSACT) has the same problem in another form: the failed
//! tag is known only from READ LOG EXT page 10h (Linux
//! `ata_eh_analyze_ncq_error`). So minicap issues one command at a time, in
//! slot 0, and `max_in_flight()` is 1: whatever PxIS or the task file
//! report belongs to that command, however the HBA reports it.
//! `start_write` still returns while the disk works, so the caller hashes
//! the data meanwhile and starts the next write as soon as this one ends;
//! large commands ([`DEFAULT_REQUEST_BYTES`]) keep those gaps few.
//!
//! A command that fails with PxIS.TFES or a host error is recovered as
//! AHCI 1.3.1 §6.2.2.1 says ([`Port::recover`]) and reported with its
//! offset; the disk stays usable. A command that does not complete in time
//! stops the port (and, if it will not stop, bus mastering of the HBA),
//! after which the disk takes no more commands, like virtio-blk.

use super::error::{AhciError, Operation};
use super::hba::{high32, low32};
use super::identify::{Identity, WORDS};
use super::port::Port;
use super::registers::{cap, is, tfd, PX_CI, PX_IS};
use super::structures::{
    ata, H2dFis, COMMAND_LIST_AT, COMMAND_TABLE_AT, FIS_DW0, FIS_DW1, FIS_DW2, FIS_DW3, FIS_DW4,
    HEADER_CFL_H2D, HEADER_CTBA, HEADER_CTBAU, HEADER_FLAGS, HEADER_PRDBC, HEADER_PRDTL_SHIFT,
    HEADER_WRITE, IDENTIFY_AT, IDENTIFY_BYTES, PRDT_AT, PRDT_ENTRIES, PRD_BYTES, PRD_DBA, PRD_DBAU,
    PRD_DBC, PRD_MAX_BYTES, PRD_RESERVED, TABLE_CFIS,
};
use crate::access::Dma;
use crate::pci::{self, PciAddress};
use crate::{BlockDevice, Deadline, Platform};
use core::fmt;
use core::sync::atomic::{fence, Ordering};

/// Default upper bound for one command: 2 MiB, the request size that
/// measured fastest for virtio-blk under QEMU TCG with the image in the
/// host's page cache (QEMU's AHCI disk writes through the same block
/// layer). Not measured for AHCI itself yet: [`AhciDisk::set_request_limit`]
/// changes it (WRITE DMA EXT allows up to 65535 sectors here).
pub const DEFAULT_REQUEST_BYTES: u64 = 2 << 20;
/// Sectors one READ/WRITE DMA EXT may carry without using the "0 means
/// 65536" encoding.
const MAX_SECTORS_PER_COMMAND: u64 = 0xffff;
/// Linux's default command timeout (`SD_TIMEOUT`).
const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// A flush may have a whole cache to write.
const FLUSH_TIMEOUT_MS: u64 = 60_000;

/// A command's data: a physically contiguous range of memory.
#[derive(Clone, Copy, Debug)]
struct Data {
    phys: u64,
    len: u64,
    /// Host to device (a write).
    to_device: bool,
}

/// A command issued in slot 0 and not finished.
#[derive(Clone, Copy, Debug)]
struct Pending {
    op: Operation,
    offset: u64,
    timeout_ms: u64,
}

/// An ATA disk on an AHCI port.
pub struct AhciDisk<'p, P: Platform + ?Sized> {
    platform: &'p P,
    function: PciAddress,
    port: Port<P>,
    /// Command list, received FIS, slot 0's table, IDENTIFY buffer.
    page: Dma<P>,
    identity: Identity,
    addressing_64: bool,
    command_list_override: bool,
    pending: Option<Pending>,
    /// Upper bound for one command, in bytes.
    request_limit: u64,
    /// Set once the port was stopped after a timeout or failed recovery.
    broken: bool,
}

impl<'p, P: Platform + ?Sized> AhciDisk<'p, P> {
    /// Start the (stopped, ready) port and IDENTIFY its disk. Called by
    /// `AhciHba::open`.
    pub(super) fn open(
        platform: &'p P,
        function: PciAddress,
        port: Port<P>,
        page: Dma<P>,
        capabilities: u32,
    ) -> Result<Self, AhciError> {
        let number = port.number();
        let mut disk = Self {
            platform,
            function,
            port,
            page,
            identity: Identity::blank(),
            addressing_64: capabilities & cap::S64A != 0,
            command_list_override: capabilities & cap::SCLO != 0,
            pending: None,
            request_limit: DEFAULT_REQUEST_BYTES,
            broken: false,
        };
        disk.port.clear_errors(platform);
        disk.port.start(platform);
        let buffer = disk.page.device_address() + IDENTIFY_AT;
        let data = Data {
            phys: buffer,
            len: IDENTIFY_BYTES,
            to_device: false,
        };
        let fis = H2dFis::new(ata::IDENTIFY_DEVICE, 0, 0);
        disk.issue(Operation::Identify, 0, fis, Some(data), REQUEST_TIMEOUT_MS)?;
        disk.complete()?;
        let mut bytes = [0u8; WORDS * 2];
        disk.page.read_bytes(platform, IDENTIFY_AT, &mut bytes);
        disk.identity = Identity::parse(&bytes).map_err(|error| {
            disk.give_up();
            AhciError::Identify {
                port: number,
                error,
            }
        })?;
        Ok(disk)
    }

    /// The HBA this disk is on.
    pub fn pci_address(&self) -> PciAddress {
        self.function
    }

    /// Its port on the HBA.
    pub fn port(&self) -> u8 {
        self.port.number()
    }

    /// What IDENTIFY DEVICE said.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Let one command carry up to `bytes` (rounded down to whole sectors,
    /// at least one sector, at most what one command and its PRDT can
    /// carry): for measuring other request sizes.
    pub fn set_request_limit(&mut self, bytes: u64) {
        self.request_limit = bytes;
    }

    fn check_range(&self, offset: u64, phys: u64, len: u64) -> Result<(), AhciError> {
        let sector = u64::from(self.identity.sector_size);
        let aligned = offset.is_multiple_of(sector)
            && len.is_multiple_of(sector)
            && len > 0
            // PRD data addresses are word aligned (DBA bit 0 is reserved).
            && phys.is_multiple_of(2);
        let inside = offset
            .checked_add(len)
            .is_some_and(|end| end <= self.identity.capacity());
        if !(aligned && inside) {
            return Err(AhciError::BadRequest { offset, len });
        }
        let end = phys
            .checked_add(len)
            .ok_or(AhciError::BadRequest { offset, len })?;
        if !self.addressing_64 && end > 1 << 32 {
            return Err(AhciError::NotAddressable { address: phys });
        }
        Ok(())
    }

    /// Build the command in slot 0 and issue it; returns at once.
    fn issue(
        &mut self,
        op: Operation,
        offset: u64,
        fis: H2dFis,
        data: Option<Data>,
        timeout_ms: u64,
    ) -> Result<(), AhciError> {
        if self.broken {
            return Err(AhciError::Unusable);
        }
        if self.pending.is_some() {
            return Err(AhciError::TooManyInFlight);
        }
        let p = self.platform;
        let page = &self.page;
        let table = page.device_address() + COMMAND_TABLE_AT;
        let cfis = COMMAND_TABLE_AT + TABLE_CFIS.offset();
        for (field, value) in [FIS_DW0, FIS_DW1, FIS_DW2, FIS_DW3, FIS_DW4]
            .into_iter()
            .zip(fis.dwords)
        {
            page.write(p, cfis, field, value);
        }
        let mut entries = 0u32;
        if let Some(data) = data {
            let mut done = 0;
            while done < data.len {
                let piece = (data.len - done).min(PRD_MAX_BYTES);
                let entry = COMMAND_TABLE_AT + PRDT_AT + PRD_BYTES * u64::from(entries);
                let address = data.phys + done;
                page.write(p, entry, PRD_DBA, low32(address));
                page.write(p, entry, PRD_DBAU, high32(address));
                page.write(p, entry, PRD_RESERVED, 0);
                // Byte count − 1, interrupt bit off; piece ≤ 4 MiB.
                page.write(p, entry, PRD_DBC, u32::try_from(piece - 1).unwrap_or(0));
                entries += 1;
                done += piece;
            }
        }
        debug_assert!(u64::from(entries) <= PRDT_ENTRIES);
        let mut flags = HEADER_CFL_H2D | entries << HEADER_PRDTL_SHIFT;
        if data.is_some_and(|d| d.to_device) {
            flags |= HEADER_WRITE;
        }
        page.write(p, COMMAND_LIST_AT, HEADER_FLAGS, flags);
        page.write(p, COMMAND_LIST_AT, HEADER_PRDBC, 0);
        page.write(p, COMMAND_LIST_AT, HEADER_CTBA, low32(table));
        page.write(p, COMMAND_LIST_AT, HEADER_CTBAU, high32(table));
        // Status left by an earlier command must not end this one.
        let stale = self.port.regs().read(p, PX_IS);
        self.port.regs().write(p, PX_IS, stale);
        // The table and header must be in memory before the HBA is told.
        page.flush(p);
        fence(Ordering::SeqCst);
        self.port.regs().write(p, PX_CI, 1);
        self.pending = Some(Pending {
            op,
            offset,
            timeout_ms,
        });
        Ok(())
    }

    /// Wait for the command in slot 0, if any, and check how it ended.
    fn complete(&mut self) -> Result<(), AhciError> {
        let Some(command) = self.pending.take() else {
            return Ok(());
        };
        if self.broken {
            return Err(AhciError::Unusable);
        }
        let p = self.platform;
        let regs = self.port.regs();
        let deadline = Deadline::after_ms(p, command.timeout_ms);
        let failed = loop {
            // Checked before the registers, so a completion that arrives
            // just at the deadline still counts.
            let expired = deadline.expired(p);
            let status = regs.read(p, PX_IS);
            if status & is::FAILED != 0 {
                break status;
            }
            if regs.read(p, PX_CI) & 1 == 0 {
                let task_file = self.port.task_file(p);
                if task_file & (tfd::ERR | tfd::DF) == 0 {
                    return Ok(());
                }
                // Completed with an error but no TFES (not per the spec,
                // but the status byte is what counts).
                break is::TFES;
            }
            if expired {
                self.give_up();
                return Err(AhciError::Timeout {
                    op: command.op,
                    offset: command.offset,
                });
            }
            core::hint::spin_loop();
        };
        let task_file = self.port.task_file(p);
        let error = if failed & is::TFES != 0 {
            AhciError::Device {
                op: command.op,
                offset: command.offset,
                status: tfd::status(task_file),
                error: tfd::error(task_file),
            }
        } else {
            AhciError::Host {
                op: command.op,
                offset: command.offset,
                interrupt_status: failed,
            }
        };
        if !self.port.recover(p, self.command_list_override) {
            self.give_up();
        }
        Err(error)
    }

    /// Stop a port that failed to complete a command, so it cannot finish
    /// it later into memory that may be reused; if it will not stop, cut
    /// the whole HBA off the bus. It takes no more commands.
    fn give_up(&mut self) {
        self.broken = true;
        self.pending = None;
        if !self.port.stop(self.platform) {
            pci::stop_bus_master(self.platform, self.function);
        }
    }

    /// Read or write DMA EXT of `len` bytes at `offset`, issued, not waited.
    fn issue_transfer(
        &mut self,
        to_device: bool,
        offset: u64,
        phys: u64,
        len: u64,
    ) -> Result<(), AhciError> {
        let sector = u64::from(self.identity.sector_size);
        let (op, command) = if to_device {
            (Operation::Write, ata::WRITE_DMA_EXT)
        } else {
            (Operation::Read, ata::READ_DMA_EXT)
        };
        // len ≤ max_transfer(): at most 0xffff sectors.
        let count = u16::try_from(len / sector).unwrap_or(0);
        let fis = H2dFis::new(command, offset / sector, count);
        let data = Data {
            phys,
            len,
            to_device,
        };
        self.issue(op, offset, fis, Some(data), REQUEST_TIMEOUT_MS)
    }

    /// Move `len` bytes in commands of at most `max_transfer()` bytes.
    fn transfer(
        &mut self,
        to_device: bool,
        offset: u64,
        phys: u64,
        len: u64,
    ) -> Result<(), AhciError> {
        self.check_range(offset, phys, len)?;
        self.complete()?;
        let chunk_limit = self.max_transfer();
        let mut done = 0;
        while done < len {
            let chunk = (len - done).min(chunk_limit);
            self.issue_transfer(to_device, offset + done, phys + done, chunk)?;
            self.complete()?;
            done += chunk;
        }
        Ok(())
    }
}

impl<P: Platform + ?Sized> BlockDevice for AhciDisk<'_, P> {
    type Error = AhciError;

    fn capacity(&self) -> u64 {
        self.identity.capacity()
    }

    fn sector_size(&self) -> u32 {
        self.identity.sector_size
    }

    fn max_transfer(&self) -> u64 {
        let sector = u64::from(self.identity.sector_size);
        let by_count = MAX_SECTORS_PER_COMMAND * sector;
        let by_table = PRDT_ENTRIES * PRD_MAX_BYTES;
        (self.request_limit.min(by_count).min(by_table) / sector).max(1) * sector
    }

    fn max_in_flight(&self) -> usize {
        1
    }

    fn read(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), AhciError> {
        self.transfer(false, offset, phys, len)
    }

    fn write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), AhciError> {
        self.transfer(true, offset, phys, len)
    }

    fn start_write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), AhciError> {
        if self.broken {
            return Err(AhciError::Unusable);
        }
        if self.pending.is_some() {
            return Err(AhciError::TooManyInFlight);
        }
        self.check_range(offset, phys, len)?;
        if len > self.max_transfer() {
            return Err(AhciError::BadRequest { offset, len });
        }
        self.issue_transfer(true, offset, phys, len)
    }

    fn wait(&mut self) -> Result<(), AhciError> {
        self.complete()
    }

    fn flush(&mut self) -> Result<(), AhciError> {
        self.complete()?;
        let command = if self.identity.flush_ext {
            ata::FLUSH_CACHE_EXT
        } else {
            ata::FLUSH_CACHE
        };
        let fis = H2dFis::new(command, 0, 0);
        self.issue(Operation::Flush, 0, fis, None, FLUSH_TIMEOUT_MS)?;
        self.complete()
    }

    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(
            out,
            "AHCI {} port {} ({}",
            self.function,
            self.port.number(),
            self.identity.model()
        )?;
        if self.identity.sector_size != 512 {
            write!(out, ", {}-byte sectors", self.identity.sector_size)?;
        }
        write!(out, "), {} MiB", self.identity.capacity() >> 20)
    }
}

impl<P: Platform + ?Sized> Drop for AhciDisk<'_, P> {
    /// A disk minicap stops using has its port stopped, so nothing it was
    /// asked to do can reach memory later.
    fn drop(&mut self) {
        let _ = self.complete();
        if !self.port.stop(self.platform) {
            pci::stop_bus_master(self.platform, self.function);
        }
    }
}
