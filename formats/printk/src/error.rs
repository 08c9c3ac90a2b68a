//! Errors of the printk ring reader.

use core::fmt;

use minicap_vmcoreinfo::VirtReadError;

/// Why the ring cannot be walked at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintkError {
    /// A VMCOREINFO key the lockless ring needs is missing or malformed (the kernel is older
    /// than 5.10, or the note is damaged). Holds the key.
    MissingKey(&'static str),
    /// A size or offset from VMCOREINFO makes no sense (a field outside its struct, a huge
    /// struct).
    BadLayout(&'static str),
    /// `desc_ring.count_bits` or `text_data_ring.size_bits` is out of range.
    BadRingSize {
        /// `count_bits` as read.
        count_bits: u32,
        /// `size_bits` as read.
        size_bits: u32,
    },
    /// The pre-5.10 log buffer's size or indices are impossible.
    BadLogBuffer {
        /// `log_buf_len`.
        size: u64,
        /// `log_first_idx`.
        first: u64,
        /// `log_next_idx`.
        next: u64,
    },
    /// The ring structure or its arrays cannot be read from old memory.
    Unreadable {
        /// Which part.
        what: &'static str,
        /// Why.
        error: VirtReadError,
    },
}

impl fmt::Display for PrintkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingKey(k) => write!(f, "VMCOREINFO lacks {k} (kernel older than 5.10?)"),
            Self::BadLayout(what) => write!(f, "VMCOREINFO layout makes no sense: {what}"),
            Self::BadRingSize {
                count_bits,
                size_bits,
            } => write!(
                f,
                "printk ring sizes out of range: count_bits {count_bits}, size_bits {size_bits}"
            ),
            Self::BadLogBuffer { size, first, next } => write!(
                f,
                "printk log_buf makes no sense: size {size:#x}, first {first:#x}, next {next:#x}"
            ),
            Self::Unreadable { what, error } => write!(f, "cannot read the printk {what}: {error}"),
        }
    }
}

impl core::error::Error for PrintkError {}

/// What was wrong with a skipped record (the first one is kept in [`crate::WalkSummary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordDamage {
    /// `head_id - tail_id` exceeds the number of descriptors.
    InconsistentIds {
        /// `tail_id` as read.
        tail_id: u64,
        /// `head_id` as read.
        head_id: u64,
    },
    /// The descriptor or info could not be read.
    UnreadableDescriptor {
        /// Record ID.
        id: u64,
    },
    /// The text block positions are not 8-byte aligned or leave no room for the block ID.
    BadTextPosition {
        /// Record ID.
        id: u64,
    },
    /// The text block does not start with the record's ID (overwritten text).
    BlockIdMismatch {
        /// Record ID.
        id: u64,
        /// The ID found in the block.
        found: u64,
    },
    /// The text could not be read.
    UnreadableText {
        /// Record ID.
        id: u64,
    },
    /// Pre-5.10 log: a record length that leaves the buffer or is shorter than its header,
    /// or two end markers in a row; the walk stops there.
    BadRecord {
        /// Byte index of the record.
        index: u64,
    },
    /// Pre-5.10 log: more records than the buffer can hold (a cycle); the walk stops.
    Cycle,
}

impl fmt::Display for RecordDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InconsistentIds { tail_id, head_id } => write!(
                f,
                "tail id {tail_id:#x} and head id {head_id:#x} are further apart than the ring"
            ),
            Self::UnreadableDescriptor { id } => write!(f, "record {id:#x}: descriptor unreadable"),
            Self::BadTextPosition { id } => write!(f, "record {id:#x}: bad text block position"),
            Self::BlockIdMismatch { id, found } => {
                write!(f, "record {id:#x}: text block belongs to {found:#x}")
            }
            Self::UnreadableText { id } => write!(f, "record {id:#x}: text unreadable"),
            Self::BadRecord { index } => write!(f, "log record at {index:#x}: bad length"),
            Self::Cycle => write!(f, "log records form a cycle"),
        }
    }
}
