//! Text without a heap: bounded strings for messages built before there is
//! one, and human-readable sizes.

use core::fmt::{self, Write};

/// A fixed-capacity string for building messages without a heap. Text past
/// the capacity is dropped (on a character boundary).
#[derive(Clone, Copy)]
pub struct FixedString<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> FixedString<N> {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    /// `value` rendered with `Display`, truncated to the capacity.
    pub fn display(value: impl fmt::Display) -> Self {
        let mut s = Self::new();
        let _ = write!(s, "{value}");
        s
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.bytes[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl<const N: usize> Default for FixedString<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for FixedString<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

impl<const N: usize> fmt::Display for FixedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for FixedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Bytes as a human-readable size ("512 KiB", "3.5 GiB").
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: u64 = 1 << 10;
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        let b = self.0;
        if b >= GIB {
            write!(f, "{}.{} GiB", b / GIB, (b % GIB) * 10 / GIB)
        } else if b >= MIB {
            write!(f, "{}.{} MiB", b / MIB, (b % MIB) * 10 / MIB)
        } else if b >= KIB {
            write!(f, "{} KiB", b / KIB)
        } else {
            write!(f, "{b} B")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_string_truncates_on_a_char_boundary() {
        let mut s = FixedString::<5>::new();
        s.write_str("ab€€").unwrap();
        assert_eq!(s.as_str(), "ab€");
        assert_eq!(FixedString::<8>::display(42).as_str(), "42");
    }

    #[test]
    fn sizes() {
        assert_eq!(Size(512).to_string(), "512 B");
        assert_eq!(Size(4096).to_string(), "4 KiB");
        assert_eq!(Size(3 << 20 | 1 << 19).to_string(), "3.5 MiB");
        assert_eq!(Size(1 << 30).to_string(), "1.0 GiB");
    }
}
