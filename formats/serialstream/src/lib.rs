//! The stream minicap sends a dump in over a serial line (`minicap.target=serial`), and its
//! decoder (`minicap receive`).
//!
//! A serial line can only append, may drop or damage bytes, and is often shared with the
//! console. So the dump goes out as a sequence of self-checking frames between which any
//! other text may appear; the receiver finds frames by their magic, checks each one's CRC
//! and sequence number, and keeps the text in between aside as console output.
//!
//! # Frame
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `"MCSF"` |
//! | 4 | 1 | kind ([`Kind`]) |
//! | 5 | 1 | flags (0; a receiver rejects others) |
//! | 6 | 2 | payload length, little-endian, at most [`MAX_PAYLOAD`] |
//! | 8 | 4 | sequence number, little-endian: 0 for the first frame, +1 per frame |
//! | 12 | n | payload |
//! | 12 + n | 4 | CRC-32 (IEEE 802.3, as zlib's `crc32()`), little-endian, of bytes 4 to 12 + n |
//!
//! [`MAX_PAYLOAD`] is 4104 rather than a round 4096 so that one 4 KiB block of the file and
//! its 8-byte offset travel in one frame: the writers hand out whole blocks, and splitting
//! each in two would add a frame header per block.
//!
//! # Kinds, in stream order
//!
//! 1. [`Kind::Start`] once: [`Start`] (stream version, file format, page size, crash time,
//!    the file's planned size if known).
//! 2. [`Kind::Triage`], any number: the triage text (the crashed kernel's log and registers)
//!    in order, before any dump data, so that a stream cut short still explains the crash.
//! 3. [`Kind::Data`], any number: a little-endian `u64` file offset, then the bytes that go
//!    there: the same records as makedumpfile's flattened format (`write_buffer()`), so
//!    that a later record for the same offset replaces an earlier one (the writers rewrite a
//!    header block at the end).
//! 4. [`Kind::Log`], any number: the capture kernel's console log at the end.
//! 5. [`Kind::End`] once: [`End`] (complete or failed with the failure code and message,
//!    the file's size, the count of Data frames and the XXH64, seed 0, of every Data
//!    payload, offsets included, in stream order).
//!
//! A receiver that saw every sequence number from 0 to the End frame's, each frame's CRC
//! right, and the End frame's count and XXH64 matching what it got, has the file exactly:
//! the Data records applied in order to a file of the End frame's size (zeros where none
//! wrote).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod crc32;
mod encode;
mod payload;
mod scan;

pub use crc32::crc32;
pub use encode::{Encoder, FrameError};
pub use payload::{
    Data, End, EndResult, PayloadError, Start, StreamFormat, END_FIXED_LEN, END_MESSAGE_MAX,
    START_LEN,
};
pub use scan::{scan, Damage, Frame, Scan};

/// The first bytes of every frame.
pub const MAGIC: [u8; 4] = *b"MCSF";
/// Bytes before the payload: magic, kind, flags, length, sequence.
pub const HEADER_LEN: usize = 12;
/// Bytes after the payload: the CRC.
pub const TRAILER_LEN: usize = 4;
/// Largest payload: one 4 KiB block and its file offset.
pub const MAX_PAYLOAD: usize = 4096 + 8;
/// Largest frame.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD + TRAILER_LEN;
/// The stream version [`Start`] carries.
pub const VERSION: u16 = 1;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The stream's description.
    Start,
    /// A piece of the triage text.
    Triage,
    /// File bytes at an offset.
    Data,
    /// A piece of the console log.
    Log,
    /// The result and the checks.
    End,
}

impl Kind {
    /// The byte in the frame.
    pub fn code(self) -> u8 {
        match self {
            Self::Start => 1,
            Self::Triage => 2,
            Self::Data => 3,
            Self::Log => 4,
            Self::End => 5,
        }
    }

    /// The kind of a frame's byte, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        [Self::Start, Self::Triage, Self::Data, Self::Log, Self::End]
            .into_iter()
            .find(|k| k.code() == code)
    }

    /// Its name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Triage => "triage",
            Self::Data => "data",
            Self::Log => "log",
            Self::End => "end",
        }
    }
}

#[cfg(test)]
mod tests;
