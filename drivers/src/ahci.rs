//! Polled AHCI (Serial ATA AHCI 1.3.1) for ATA disks.
//!
//! Two steps, because one HBA may carry several disks and the kernel may
//! look at each:
//!
//! 1. [`AhciHba::take_over`] takes the HBA (PCI class 01h, subclass 06h,
//!    prog-if 01h: [`is_ahci`]) from whatever the crashed kernel left
//!    running: BIOS/OS handoff, HBA reset, AHCI enable, every port
//!    stopped and given fresh memory, links brought up, COMRESET where
//!    needed. [`AhciHba::disks`] lists the ports holding an ATA disk.
//! 2. [`AhciHba::open`] turns one of them into an [`AhciDisk`], a
//!    [`crate::BlockDevice`] with its own port registers and memory (it
//!    outlives the `AhciHba`).
//!
//! ```text
//! if ahci::is_ahci(platform, function) {
//!     let mut hba = AhciHba::take_over(platform, function)?;
//!     for port in hba.disks() {
//!         let disk = hba.open(port)?; // a BlockDevice
//!     }
//! } // hba dropped: ports no disk took stop receiving FISes
//! ```
//!
//! Layouts: [`registers`] (the HBA's and the ports' registers),
//! `structures` (command list, command table, PRD, Register H2D FIS).
//! Interrupts stay off (GHC.IE = 0, PxIE = 0); every wait is bounded.

mod disk;
mod error;
mod hba;
mod identify;
mod port;
pub mod registers;
mod structures;

pub use disk::{AhciDisk, DEFAULT_REQUEST_BYTES};
pub use error::{AhciError, Operation};
pub use hba::{AhciHba, Handoff, PortSet, PortState, MAX_PORTS};
pub use identify::{IdentifyError, Identity};

use crate::pci::PciAddress;
use crate::Platform;

/// PCI class code of an AHCI HBA: mass storage (01h), SATA (06h), AHCI
/// 1.0 programming interface (01h).
pub const CLASS_AHCI: [u8; 3] = [0x01, 0x06, 0x01];

/// Whether the PCI function at `function` is an AHCI HBA (class code
/// 01/06/01; the revision byte is ignored).
pub fn is_ahci<P: Platform + ?Sized>(platform: &P, function: PciAddress) -> bool {
    let [_revision, prog_if, subclass, class] = platform.pci_read32(function, 0x08).to_le_bytes();
    [class, subclass, prog_if] == CLASS_AHCI
}
