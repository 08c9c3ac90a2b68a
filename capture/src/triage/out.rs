//! Text into a fixed buffer, and a byte counter with the same interface.

use core::fmt;

/// Writes text into a caller-given buffer. Text past the end is cut (the buffer then stays
/// full) and the write reports [`fmt::Error`] so that a caller can stop early.
pub(super) struct TextOut<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> TextOut<'a> {
    pub(super) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Bytes written.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Size of the buffer.
    pub(super) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes still free.
    pub(super) fn room(&self) -> usize {
        self.buf.len() - self.len
    }
}

impl fmt::Write for TextOut<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let take = s.len().min(self.room());
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take == s.len() {
            Ok(())
        } else {
            Err(fmt::Error)
        }
    }
}

/// Counts the bytes written through it and keeps none.
#[derive(Default)]
pub(super) struct Counter {
    pub(super) bytes: u64,
}

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes += u64::try_from(s.len()).unwrap_or(u64::MAX);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn text_is_cut_at_the_end_of_the_buffer() {
        let mut buf = [0u8; 8];
        let mut out = TextOut::new(&mut buf);
        assert!(out.write_str("abc").is_ok());
        assert_eq!((out.len(), out.room(), out.capacity()), (3, 5, 8));
        assert!(out.write_str("defghij").is_err());
        assert_eq!(out.len(), 8);
        assert!(out.write_str("k").is_err());
        assert_eq!(&buf, b"abcdefgh");
        let mut count = Counter::default();
        write!(count, "{}-ab", 12).unwrap();
        assert_eq!(count.bytes, 5);
    }
}
