//! Building frames: the sequence numbers, the CRC, and the running count and XXH64 of the
//! Data payloads that the End frame carries.

use crate::{crc32, Kind, HEADER_LEN, MAGIC, MAX_FRAME, MAX_PAYLOAD};
use core::fmt;
use xxhash_rust::xxh64::Xxh64;

/// A frame that cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The payload is longer than [`MAX_PAYLOAD`].
    PayloadTooLong {
        /// Its length.
        len: usize,
    },
    /// Every sequence number was used (2^32 frames: 16 TiB of data).
    SequenceExhausted,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PayloadTooLong { len } => write!(
                f,
                "a stream frame payload of {len} bytes (at most {MAX_PAYLOAD})"
            ),
            Self::SequenceExhausted => f.write_str("the stream's sequence numbers are used up"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Numbers and seals the frames of one stream, in the order they are sent.
pub struct Encoder {
    next_seq: Option<u32>,
    data_records: u64,
    data_hash: Xxh64,
    frame: [u8; MAX_FRAME],
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// The encoder of a new stream (first sequence number 0).
    pub fn new() -> Self {
        Self {
            next_seq: Some(0),
            data_records: 0,
            data_hash: Xxh64::new(0),
            frame: [0; MAX_FRAME],
        }
    }

    /// The next frame, of `kind`, whose payload is the concatenation of `parts`: its bytes,
    /// to be sent whole before any other frame is built.
    pub fn frame(&mut self, kind: Kind, parts: &[&[u8]]) -> Result<&[u8], FrameError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let wire_len = u16::try_from(len)
            .ok()
            .filter(|_| len <= MAX_PAYLOAD)
            .ok_or(FrameError::PayloadTooLong { len })?;
        let seq = self.next_seq.ok_or(FrameError::SequenceExhausted)?;
        self.next_seq = seq.checked_add(1);
        let frame = &mut self.frame;
        frame[..4].copy_from_slice(&MAGIC);
        frame[4] = kind.code();
        frame[5] = 0;
        frame[6..8].copy_from_slice(&wire_len.to_le_bytes());
        frame[8..12].copy_from_slice(&seq.to_le_bytes());
        let mut at = HEADER_LEN;
        for part in parts {
            frame[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        if kind == Kind::Data {
            self.data_records += 1;
            self.data_hash.update(&frame[HEADER_LEN..at]);
        }
        let crc = crc32(&[&frame[4..at]]);
        frame[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        Ok(&self.frame[..at + 4])
    }

    /// Data frames built so far.
    pub fn data_records(&self) -> u64 {
        self.data_records
    }

    /// XXH64 of the Data payloads built so far, in order.
    pub fn data_xxh64(&self) -> u64 {
        self.data_hash.digest()
    }

    /// Frames built so far.
    pub fn frames(&self) -> u64 {
        self.next_seq.map_or(1 << 32, u64::from)
    }
}
