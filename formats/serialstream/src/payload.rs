//! The payloads of the Start, Data and End frames (all numbers little-endian).
//!
//! | Start | offset | size |
//! |---|---|---|
//! | stream version ([`crate::VERSION`]) | 0 | 2 |
//! | file format ([`StreamFormat`]) | 2 | 1 |
//! | reserved, 0 | 3 | 1 |
//! | page size | 4 | 4 |
//! | crash time (VMCOREINFO `CRASHTIME`, seconds since 1970; 0 unknown) | 8 | 8 |
//! | planned file size (0: known only at the end) | 16 | 8 |
//!
//! | End | offset | size |
//! |---|---|---|
//! | result ([`EndResult`]) | 0 | 1 |
//! | reserved, 0 | 1 | 3 |
//! | failure code (the dump header's codes, `minicap info`; 0 when complete) | 4 | 4 |
//! | file size | 8 | 8 |
//! | Data frames sent | 16 | 8 |
//! | XXH64 of the Data payloads | 24 | 8 |
//! | failure message, UTF-8, at most [`END_MESSAGE_MAX`] bytes | 32 | rest |

use core::fmt;

/// Length of a Start payload.
pub const START_LEN: usize = 24;
/// Length of an End payload without its message.
pub const END_FIXED_LEN: usize = 32;
/// Longest failure message an End frame carries.
pub const END_MESSAGE_MAX: usize = 256;

/// A payload that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    /// Shorter than its fixed part.
    TooShort {
        /// The frame's kind.
        kind: &'static str,
        /// Its length.
        len: usize,
    },
    /// A stream version this decoder does not know.
    UnknownVersion(u16),
    /// A file format code this decoder does not know.
    UnknownFormat(u8),
    /// An End result code this decoder does not know.
    UnknownResult(u8),
    /// The End message is not UTF-8 or is too long.
    BadMessage,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { kind, len } => write!(f, "a {kind} payload of only {len} bytes"),
            Self::UnknownVersion(v) => write!(f, "stream version {v} (this tool reads 1)"),
            Self::UnknownFormat(c) => write!(f, "unknown file format code {c}"),
            Self::UnknownResult(c) => write!(f, "unknown end result code {c}"),
            Self::BadMessage => f.write_str("an end message that is not short UTF-8"),
        }
    }
}

impl core::error::Error for PayloadError {}

/// The file the Data frames build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// makedumpfile's kdump-compressed format.
    KdumpCompressed,
    /// An ELF vmcore.
    ElfVmcore,
}

impl StreamFormat {
    fn code(self) -> u8 {
        match self {
            Self::KdumpCompressed => 1,
            Self::ElfVmcore => 2,
        }
    }

    /// Its name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KdumpCompressed => "kdump-compressed",
            Self::ElfVmcore => "ELF vmcore",
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// The Start frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// The file.
    pub format: StreamFormat,
    /// The dumped kernel's page size.
    pub page_size: u32,
    /// VMCOREINFO `CRASHTIME` (0 unknown).
    pub crash_time: u64,
    /// The file's size if known before it is written, else 0.
    pub planned_size: u64,
}

impl Start {
    /// Its bytes.
    pub fn encode(&self) -> [u8; START_LEN] {
        let mut b = [0u8; START_LEN];
        b[0..2].copy_from_slice(&crate::VERSION.to_le_bytes());
        b[2] = self.format.code();
        b[4..8].copy_from_slice(&self.page_size.to_le_bytes());
        b[8..16].copy_from_slice(&self.crash_time.to_le_bytes());
        b[16..24].copy_from_slice(&self.planned_size.to_le_bytes());
        b
    }

    /// Reads a Start payload.
    pub fn decode(b: &[u8]) -> Result<Self, PayloadError> {
        if b.len() < START_LEN {
            return Err(PayloadError::TooShort {
                kind: "start",
                len: b.len(),
            });
        }
        let version = u16_at(b, 0);
        if version != crate::VERSION {
            return Err(PayloadError::UnknownVersion(version));
        }
        let format = [StreamFormat::KdumpCompressed, StreamFormat::ElfVmcore]
            .into_iter()
            .find(|f| f.code() == b[2])
            .ok_or(PayloadError::UnknownFormat(b[2]))?;
        Ok(Self {
            format,
            page_size: u32_at(b, 4),
            crash_time: u64_at(b, 8),
            planned_size: u64_at(b, 16),
        })
    }
}

/// A Data frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a> {
    /// Where the bytes go in the file.
    pub offset: u64,
    /// The bytes.
    pub bytes: &'a [u8],
}

impl<'a> Data<'a> {
    /// Reads a Data payload.
    pub fn decode(b: &'a [u8]) -> Result<Self, PayloadError> {
        if b.len() < 8 {
            return Err(PayloadError::TooShort {
                kind: "data",
                len: b.len(),
            });
        }
        Ok(Self {
            offset: u64_at(b, 0),
            bytes: &b[8..],
        })
    }
}

/// How the capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndResult {
    /// The file is whole.
    Complete,
    /// The capture failed; the file is what was sent before.
    Failed,
}

/// The End frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End<'a> {
    /// Complete or failed.
    pub result: EndResult,
    /// The failure's code (0 when complete).
    pub failure_code: u32,
    /// The file's size.
    pub file_size: u64,
    /// Data frames sent.
    pub data_records: u64,
    /// XXH64 (seed 0) of the Data payloads in order.
    pub data_xxh64: u64,
    /// The failure's message (empty when complete).
    pub message: &'a str,
}

impl End<'_> {
    /// Its bytes in `out` (the message cut to [`END_MESSAGE_MAX`] at a character boundary);
    /// returns the length.
    pub fn encode(&self, out: &mut [u8; END_FIXED_LEN + END_MESSAGE_MAX]) -> usize {
        out[0] = match self.result {
            EndResult::Complete => 0,
            EndResult::Failed => 1,
        };
        out[1..4].fill(0);
        out[4..8].copy_from_slice(&self.failure_code.to_le_bytes());
        out[8..16].copy_from_slice(&self.file_size.to_le_bytes());
        out[16..24].copy_from_slice(&self.data_records.to_le_bytes());
        out[24..32].copy_from_slice(&self.data_xxh64.to_le_bytes());
        let mut n = self.message.len().min(END_MESSAGE_MAX);
        while !self.message.is_char_boundary(n) {
            n -= 1;
        }
        out[END_FIXED_LEN..END_FIXED_LEN + n].copy_from_slice(&self.message.as_bytes()[..n]);
        END_FIXED_LEN + n
    }
}

impl<'a> End<'a> {
    /// Reads an End payload.
    pub fn decode(b: &'a [u8]) -> Result<Self, PayloadError> {
        if b.len() < END_FIXED_LEN {
            return Err(PayloadError::TooShort {
                kind: "end",
                len: b.len(),
            });
        }
        let result = match b[0] {
            0 => EndResult::Complete,
            1 => EndResult::Failed,
            other => return Err(PayloadError::UnknownResult(other)),
        };
        let message = &b[END_FIXED_LEN..];
        if message.len() > END_MESSAGE_MAX {
            return Err(PayloadError::BadMessage);
        }
        Ok(Self {
            result,
            failure_code: u32_at(b, 4),
            file_size: u64_at(b, 8),
            data_records: u64_at(b, 16),
            data_xxh64: u64_at(b, 24),
            message: core::str::from_utf8(message).map_err(|_| PayloadError::BadMessage)?,
        })
    }
}
