//! What can go wrong with an NVMe controller, each case with what a person
//! reading the capture log needs (the command, the byte offset, the
//! controller's status code).

use super::status::CompletionStatus;
use core::fmt;

pub use crate::Operation;

/// The admin commands the driver sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    /// IDENTIFY, controller data structure.
    IdentifyController,
    /// IDENTIFY, active namespace ID list.
    IdentifyActiveNamespaces,
    /// IDENTIFY, namespace data structure.
    IdentifyNamespace(u32),
    /// SET FEATURES, Number of Queues.
    SetQueueCount,
    /// CREATE I/O COMPLETION QUEUE.
    CreateCompletionQueue,
    /// CREATE I/O SUBMISSION QUEUE.
    CreateSubmissionQueue,
}

impl fmt::Display for AdminCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IdentifyController => f.write_str("IDENTIFY controller"),
            Self::IdentifyActiveNamespaces => f.write_str("IDENTIFY active namespace list"),
            Self::IdentifyNamespace(nsid) => write!(f, "IDENTIFY namespace {nsid}"),
            Self::SetQueueCount => f.write_str("SET FEATURES number of queues"),
            Self::CreateCompletionQueue => f.write_str("CREATE I/O COMPLETION QUEUE"),
            Self::CreateSubmissionQueue => f.write_str("CREATE I/O SUBMISSION QUEUE"),
        }
    }
}

/// Everything that can go wrong with an NVMe controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvmeError {
    /// BAR 0 is not a memory BAR or its registers cannot be mapped.
    NoRegisters,
    /// The registers read as all ones: the function does not answer.
    NotResponding,
    /// CAP says the NVM command set is not supported.
    NoNvmCommandSet,
    /// The controller's smallest memory page is larger than 4 KiB.
    UnsupportedPageSize(u64),
    /// CSTS.RDY did not clear within CAP.TO after CC.EN was cleared.
    DisableTimeout {
        /// The bound waited, in milliseconds.
        waited_ms: u64,
    },
    /// CSTS.RDY did not set within CAP.TO after CC.EN was set.
    EnableTimeout {
        /// The bound waited, in milliseconds.
        waited_ms: u64,
    },
    /// CSTS.CFS: the controller hit a fatal error; it was disabled.
    ControllerFatal,
    /// No DMA memory for the queues or buffers.
    NoMemory,
    /// The controller cannot use 64-byte submission or 16-byte completion
    /// queue entries (IDENTIFY SQES/CQES).
    UnsupportedEntrySize,
    /// An admin command failed.
    AdminFailed {
        /// Which command.
        command: AdminCommand,
        /// The controller's status.
        status: CompletionStatus,
    },
    /// An admin command did not complete in time; the controller was
    /// disabled.
    AdminTimeout {
        /// Which command.
        command: AdminCommand,
    },
    /// The controller has no active namespace.
    NoNamespace,
    /// The namespace reports size 0 (not active).
    NamespaceInactive(u32),
    /// The namespace's FLBAS names a format beyond its list.
    BadFormatIndex(u32),
    /// The namespace's blocks carry metadata, which minicap does not write.
    MetadataFormat {
        /// Namespace ID.
        nsid: u32,
        /// Metadata bytes per block.
        metadata_bytes: u16,
        /// Interleaved with the data (extended LBA) rather than separate.
        interleaved: bool,
    },
    /// The namespace's block size is not a power of two between 512 and
    /// 4096 bytes (2^n; the LBADS value).
    UnsupportedBlockSize(u8),
    /// An I/O command did not complete in time; the controller was
    /// disabled.
    Timeout {
        /// Which operation.
        op: Operation,
        /// Byte offset on the namespace.
        offset: u64,
    },
    /// An I/O command failed.
    Io {
        /// Which operation.
        op: Operation,
        /// Byte offset on the namespace.
        offset: u64,
        /// The controller's status.
        status: CompletionStatus,
    },
    /// The controller completed a command that was not in flight, or
    /// reported a queue head outside the queue; it was disabled.
    BadCompletion(u16),
    /// The controller was disabled after an earlier failure and takes no
    /// more commands.
    Unusable,
    /// A request outside the namespace, not block aligned, or longer than
    /// `max_transfer()` for `start_write`.
    BadRequest {
        /// Byte offset on the namespace.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// Memory for a transfer that is not 4-byte aligned (PRP entries must
    /// be dword aligned).
    UnalignedMemory(u64),
    /// `start_write` with `max_in_flight()` writes already outstanding (a
    /// caller bug: nothing was submitted).
    TooManyInFlight,
}

impl fmt::Display for NvmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoRegisters => f.write_str("BAR 0 holds no mappable controller registers"),
            Self::NotResponding => f.write_str("controller registers read as all ones"),
            Self::NoNvmCommandSet => f.write_str("controller does not support the NVM command set"),
            Self::UnsupportedPageSize(bytes) => write!(
                f,
                "controller's smallest memory page is {bytes} bytes (minicap uses 4096)"
            ),
            Self::DisableTimeout { waited_ms } => write!(
                f,
                "controller still ready {waited_ms} ms after being disabled (CAP.TO)"
            ),
            Self::EnableTimeout { waited_ms } => write!(
                f,
                "controller not ready {waited_ms} ms after being enabled (CAP.TO)"
            ),
            Self::ControllerFatal => {
                f.write_str("controller fatal status (CSTS.CFS); controller disabled")
            }
            Self::NoMemory => f.write_str("out of DMA memory"),
            Self::UnsupportedEntrySize => f.write_str(
                "controller does not take 64-byte submission / 16-byte completion entries",
            ),
            Self::AdminFailed { command, status } => write!(f, "{command} failed: {status}"),
            Self::AdminTimeout { command } => {
                write!(f, "{command} timed out; controller disabled")
            }
            Self::NoNamespace => f.write_str("controller has no active namespace"),
            Self::NamespaceInactive(nsid) => write!(f, "namespace {nsid} has size 0 (inactive)"),
            Self::BadFormatIndex(nsid) => write!(
                f,
                "namespace {nsid} uses an LBA format beyond its format list"
            ),
            Self::MetadataFormat {
                nsid,
                metadata_bytes,
                interleaved,
            } => write!(
                f,
                "namespace {nsid} is formatted with {metadata_bytes} metadata bytes per block \
                 ({}), which minicap does not write; reformat it without metadata",
                if interleaved {
                    "interleaved with the data"
                } else {
                    "in a separate buffer"
                }
            ),
            Self::UnsupportedBlockSize(shift) => write!(
                f,
                "logical block size 2^{shift} is not supported (512 to 4096 bytes)"
            ),
            Self::Timeout { op, offset } => {
                write!(f, "{op} at byte {offset:#x} timed out; controller disabled")
            }
            Self::Io { op, offset, status } => {
                write!(f, "{op} at byte {offset:#x} failed: {status}")
            }
            Self::BadCompletion(id) => write!(
                f,
                "controller completed command {id}, which was not in flight (or reported a bad \
                 queue head); controller disabled"
            ),
            Self::Unusable => f.write_str("controller was disabled after an earlier failure"),
            Self::BadRequest { offset, len } => write!(
                f,
                "request of {len} bytes at {offset:#x} is outside the namespace, unaligned \
                 or too long"
            ),
            Self::UnalignedMemory(phys) => {
                write!(f, "memory at {phys:#x} is not 4-byte aligned")
            }
            Self::TooManyInFlight => f.write_str("too many writes in flight"),
        }
    }
}
