//! What can go wrong with an AHCI HBA or one of its disks.

use super::identify::IdentifyError;
use core::fmt;

/// What a command was doing (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// IDENTIFY DEVICE while opening the disk.
    Identify,
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
            Self::Identify => "IDENTIFY DEVICE",
            Self::Read => "read",
            Self::Write => "write",
            Self::Flush => "flush",
        })
    }
}

/// Everything that can go wrong with an AHCI HBA or disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AhciError {
    /// BAR 5 is not a memory BAR, or its registers could not be mapped.
    NoRegisters,
    /// The HBA's registers read as all ones (no device answers).
    NotResponding,
    /// GHC.HR stayed set: the HBA is hung (AHCI §10.4.3 allows 1 s).
    ResetTimeout,
    /// A port's command list or FIS receive engine did not stop within
    /// 500 ms (AHCI §10.1.2); bus mastering is off.
    PortStuck {
        /// The port.
        port: u8,
    },
    /// No DMA memory for a port's command list.
    NoMemory,
    /// Memory the HBA must reach lies above 4 GiB and the HBA has no
    /// 64-bit addressing (CAP.S64A = 0).
    NotAddressable {
        /// The address.
        address: u64,
    },
    /// `open` of a port without an ATA disk, or opened already.
    NoDisk {
        /// The port.
        port: u8,
    },
    /// At `open`, the port's link was down or its device busy.
    NotReady {
        /// The port.
        port: u8,
        /// PxTFD: ATA status 7:0, error 15:8.
        task_file: u32,
    },
    /// The disk's IDENTIFY data is unusable.
    Identify {
        /// The port.
        port: u8,
        /// Why.
        error: IdentifyError,
    },
    /// A command did not complete in time; the port was stopped.
    Timeout {
        /// Which operation.
        op: Operation,
        /// Byte offset on the disk.
        offset: u64,
    },
    /// The disk ended a command with ERR or DF in its status (PxIS.TFES).
    Device {
        /// Which operation.
        op: Operation,
        /// Byte offset on the disk.
        offset: u64,
        /// The ATA status byte (PxTFD 7:0).
        status: u8,
        /// The ATA error byte (PxTFD 15:8): e.g. 0x04 aborted, 0x10 ID not
        /// found, 0x40 uncorrectable.
        error: u8,
    },
    /// The HBA failed a command itself: a host bus (DMA) or interface
    /// error (PxIS.HBFS, HBDS or IFS).
    Host {
        /// Which operation.
        op: Operation,
        /// Byte offset on the disk.
        offset: u64,
        /// PxIS when it failed.
        interrupt_status: u32,
    },
    /// The port was stopped after a timeout or a failed recovery and
    /// takes no more commands.
    Unusable,
    /// A request outside the disk, not sector aligned, longer than
    /// `max_transfer()` for `start_write`, or at an odd memory address.
    BadRequest {
        /// Byte offset on the disk.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// `start_write` with a write already outstanding (a caller bug:
    /// nothing was submitted).
    TooManyInFlight,
}

impl fmt::Display for AhciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoRegisters => write!(f, "no AHCI registers (BAR 5)"),
            Self::NotResponding => write!(f, "AHCI registers read as all ones"),
            Self::ResetTimeout => write!(f, "HBA reset did not complete within 1 s"),
            Self::PortStuck { port } => {
                write!(
                    f,
                    "port {port} did not stop within 500 ms; bus mastering off"
                )
            }
            Self::NoMemory => write!(f, "out of DMA memory"),
            Self::NotAddressable { address } => write!(
                f,
                "address {address:#x} lies above 4 GiB and the HBA has 32-bit addressing only"
            ),
            Self::NoDisk { port } => write!(f, "port {port} has no ATA disk to open"),
            Self::NotReady { port, task_file } => write!(
                f,
                "port {port}: link down or device busy (ATA status {:#04x})",
                task_file & 0xff
            ),
            Self::Identify { port, error } => write!(f, "port {port}: {error}"),
            Self::Timeout { op, offset } => {
                write!(f, "{op} at byte {offset:#x} timed out; port stopped")
            }
            Self::Device {
                op,
                offset,
                status,
                error,
            } => write!(
                f,
                "{op} at byte {offset:#x} failed: ATA status {status:#04x}, error {error:#04x}"
            ),
            Self::Host {
                op,
                offset,
                interrupt_status,
            } => write!(
                f,
                "{op} at byte {offset:#x} failed in the HBA (PxIS {interrupt_status:#010x})"
            ),
            Self::Unusable => write!(f, "port was stopped after an earlier failure"),
            Self::BadRequest { offset, len } => write!(
                f,
                "request of {len} bytes at {offset:#x} is outside the disk, unaligned or too long"
            ),
            Self::TooManyInFlight => write!(f, "too many writes in flight"),
        }
    }
}
