//! Polled NVMe (NVM Express Base 1.4) for one namespace of one controller.
//!
//! The crashed kernel left the controller enabled, its queues in memory
//! minicap may reuse and commands possibly in flight. So the driver, like
//! Linux `nvme_disable_ctrl()` / `nvme_enable_ctrl()` and SeaBIOS
//! `nvme_controller_enable()`, first stops it: bus mastering off, CC.EN
//! cleared and CSTS.RDY awaited within the controller's own bound (CAP.TO
//! × 500 ms). Only then may it master the bus again, with fresh admin
//! queues in the capture kernel's DMA memory. Then (§7.6.1): IDENTIFY the
//! controller (MDTS, volatile write cache) and the first active namespace
//! (size, LBA format), ask for one I/O queue pair (Set Features, Number of
//! Queues, as Linux `nvme_set_queue_count()`), create its completion and
//! submission queues with interrupts disabled, and mask the pin/MSI vectors
//! (INTMS) — nothing interrupts, everything is polled with phase tags and a
//! deadline.
//!
//! Data moves straight from (or to) the crashed kernel's memory: each
//! command describes it with PRP entries (§4.3): PRP1 with the in-page
//! offset, PRP2 the second page or a PRP list in the request slot's own
//! DMA page. Several writes are in flight at once; they finish first in,
//! first out as [`crate::BlockDevice`] requires, whatever order the
//! controller completes them in.
//!
//! A controller is a candidate when its PCI class code is 01h/08h/02h
//! (mass storage, non-volatile memory, NVM Express): [`is_nvme`].
//!
//! Limits, each refused with its own [`NvmeError`]: memory pages of 4 KiB
//! (CAP.MPSMIN must allow it), logical blocks of 512 to 4096 bytes, no
//! metadata in the namespace's format (interleaved metadata would sit
//! between the dump's bytes; a separate buffer would need a metadata
//! pointer and protection information for every command). Only the first
//! active namespace is used.

mod controller;
mod device;
mod error;
mod identify;
mod queue;
mod registers;
mod status;

pub use device::{Nvme, IO_QUEUE_ENTRIES, MAX_IN_FLIGHT, MAX_REQUEST_BYTES};
pub use error::{AdminCommand, NvmeError, Operation};
pub use status::CompletionStatus;

use crate::pci::PciAddress;
use crate::Platform;

/// PCI base class of mass storage controllers.
pub const CLASS_MASS_STORAGE: u8 = 0x01;
/// PCI subclass of non-volatile memory controllers.
pub const SUBCLASS_NON_VOLATILE_MEMORY: u8 = 0x08;
/// Programming interface of an NVM Express controller (as opposed to
/// NVMHCI, 01h).
pub const PROG_IF_NVM_EXPRESS: u8 = 0x02;

/// Whether a class/subclass/programming interface triple is NVM Express.
pub fn is_nvme_class(class: u8, subclass: u8, prog_if: u8) -> bool {
    class == CLASS_MASS_STORAGE
        && subclass == SUBCLASS_NON_VOLATILE_MEMORY
        && prog_if == PROG_IF_NVM_EXPRESS
}

/// Whether the PCI function at `function` is an NVMe controller (its class
/// code register, configuration offset 09h–0Bh).
pub fn is_nvme<P: Platform + ?Sized>(p: &P, function: PciAddress) -> bool {
    let class_register = p.pci_read32(function, 0x08);
    let [_revision, prog_if, subclass, class] = class_register.to_le_bytes();
    class_register != u32::MAX && is_nvme_class(class, subclass, prog_if)
}
