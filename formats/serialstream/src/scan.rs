//! Finding frames in received bytes: what is at the front of a buffer, and how many bytes
//! of it that accounts for. The receiver calls [`scan`] on the unconsumed bytes, drops the
//! length it returns, and repeats; it needs no memory of its own, so a corrupted frame
//! costs only that frame: scanning resumes right after its magic.

use crate::{crc32, Kind, HEADER_LEN, MAGIC, MAX_PAYLOAD, TRAILER_LEN};

/// A frame found whole, its CRC right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its kind.
    pub kind: Kind,
    /// Its sequence number.
    pub seq: u32,
    /// Its payload.
    pub payload: &'a [u8],
}

/// Why bytes that start with the magic are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The CRC does not match (the sequence number it claims may be wrong too).
    BadCrc,
    /// A kind, flags or length no frame has.
    BadHeader,
    /// The input ended inside the frame.
    Truncated,
}

impl Damage {
    /// Its name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadCrc => "CRC mismatch",
            Self::BadHeader => "impossible header",
            Self::Truncated => "cut short",
        }
    }
}

/// What is at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan<'a> {
    /// A frame of `len` bytes.
    Frame {
        /// The frame.
        frame: Frame<'a>,
        /// Its length in the buffer.
        len: usize,
    },
    /// `len` bytes that are not a frame: console text.
    Text {
        /// How many.
        len: usize,
    },
    /// A magic that does not start a good frame: `len` bytes (the magic) to skip.
    Damaged {
        /// Why.
        damage: Damage,
        /// The sequence number its header claims, if the header was there.
        claimed_seq: Option<u32>,
        /// Bytes to skip.
        len: usize,
    },
    /// Nothing can be said before more bytes arrive (never returned when `at_end`).
    NeedMore,
    /// The buffer is empty.
    Empty,
}

/// Where in `buf` a magic, or a prefix of one cut by the buffer's end, starts.
fn magic_candidate(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find(|&i| {
        let n = (buf.len() - i).min(MAGIC.len());
        buf[i..i + n] == MAGIC[..n]
    })
}

/// What is at the front of `buf`; `at_end`: no more bytes will come.
pub fn scan(buf: &[u8], at_end: bool) -> Scan<'_> {
    if buf.is_empty() {
        return Scan::Empty;
    }
    match magic_candidate(buf) {
        None => return Scan::Text { len: buf.len() },
        Some(0) => {}
        Some(at) => return Scan::Text { len: at },
    }
    let truncated = |claimed_seq| {
        if at_end {
            Scan::Damaged {
                damage: Damage::Truncated,
                claimed_seq,
                len: buf.len().min(MAGIC.len()),
            }
        } else {
            Scan::NeedMore
        }
    };
    if buf.len() < HEADER_LEN {
        // A magic prefix at the very end is text if nothing follows.
        if buf.len() < MAGIC.len() && at_end {
            return Scan::Text { len: buf.len() };
        }
        return truncated(None);
    }
    let seq = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let len = usize::from(u16::from_le_bytes([buf[6], buf[7]]));
    let kind = Kind::from_code(buf[4]);
    let Some(kind) = kind.filter(|_| buf[5] == 0 && len <= MAX_PAYLOAD) else {
        return Scan::Damaged {
            damage: Damage::BadHeader,
            claimed_seq: None,
            len: MAGIC.len(),
        };
    };
    let total = HEADER_LEN + len + TRAILER_LEN;
    if buf.len() < total {
        return truncated(Some(seq));
    }
    let end = HEADER_LEN + len;
    let stored = u32::from_le_bytes([buf[end], buf[end + 1], buf[end + 2], buf[end + 3]]);
    if crc32(&[&buf[4..end]]) != stored {
        return Scan::Damaged {
            damage: Damage::BadCrc,
            claimed_seq: Some(seq),
            len: MAGIC.len(),
        };
    }
    Scan::Frame {
        frame: Frame {
            kind,
            seq,
            payload: &buf[HEADER_LEN..end],
        },
        len: total,
    }
}
