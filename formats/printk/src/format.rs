//! Printing a record the way `makedumpfile --dump-dmesg` does (makedumpfile `dump_record()`).

use core::fmt::{self, Write};

use crate::Record;

/// The `makedumpfile --dump-dmesg` text format of one record.
///
/// * Prefix `"[%5llu.%06lu] "`: seconds and microseconds of `ts_nsec` (truncated, not rounded).
/// * With [`DmesgFormat::caller`] (what makedumpfile prints since 1.7.5 when VMCOREINFO
///   exports `printk_info.caller_id`, and the console with `CONFIG_PRINTK_CALLER`) a second
///   column `"[%8s] "` holds `T<pid>` or `C<cpu>` (bit 31 of the caller ID selects CPU).
/// * Text: an embedded `\n` becomes a newline followed by as many spaces as the prefix is
///   wide; printable ASCII and the C `isspace` set (space, `\t`, `\n`, `\v`, `\f`, `\r`) are
///   copied; any other byte is written `\xNN`. makedumpfile formats that byte from a signed
///   `char`, so bytes 0x80..=0xff come out sign-extended (`\xffffffe9` for 0xe9); this is
///   mirrored so that the output matches it byte for byte.
/// * A newline ends the record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DmesgFormat {
    /// Print the caller column (if the record has a caller ID).
    pub caller: bool,
}

impl DmesgFormat {
    /// Writes `rec` as one (possibly multi-line) entry, newline included.
    pub fn write<W: Write>(&self, rec: &Record<'_>, out: &mut W) -> fmt::Result {
        let mut prefix = Counting { inner: out, n: 0 };
        let secs = rec.ts_nsec / 1_000_000_000;
        let micros = rec.ts_nsec % 1_000_000_000 / 1000;
        write!(prefix, "[{secs:5}.{micros:06}] ")?;
        if let (true, Some(caller)) = (self.caller, rec.caller_id) {
            let mut column = ShortText::default();
            let kind = if caller & 0x8000_0000 != 0 { 'C' } else { 'T' };
            write!(column, "{kind}{}", caller & 0x7fff_ffff)?;
            write!(prefix, "[{:>8}] ", column.as_str())?;
        }
        let indent = prefix.n;
        for &b in rec.text {
            match b {
                b'\n' => {
                    out.write_char('\n')?;
                    for _ in 0..indent {
                        out.write_char(' ')?;
                    }
                }
                0x20..=0x7e | b'\t' | 0x0b | 0x0c | b'\r' => out.write_char(char::from(b))?,
                0x80..=0xff => write!(out, "\\xffffff{b:02x}")?,
                _ => write!(out, "\\x{b:02x}")?,
            }
        }
        out.write_char('\n')
    }
}

/// A caller column (`T` or `C` and at most 10 digits) formatted without allocating.
#[derive(Default)]
struct ShortText {
    buf: [u8; 16],
    len: usize,
}

impl ShortText {
    fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Write for ShortText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Counts the bytes written through it (the prefix is ASCII, so bytes are columns).
struct Counting<'a, W> {
    inner: &'a mut W,
    n: usize,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.n += s.len();
        self.inner.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fmt: DmesgFormat, ts: u64, caller: Option<u32>, text: &[u8]) -> String {
        let rec = Record {
            id: 0,
            seq: 0,
            ts_nsec: ts,
            caller_id: caller,
            text,
        };
        let mut s = String::new();
        fmt.write(&rec, &mut s).unwrap();
        s
    }

    #[test]
    fn timestamp_prefix() {
        let f = DmesgFormat::default();
        assert_eq!(line(f, 0, None, b"Linux"), "[    0.000000] Linux\n");
        assert_eq!(line(f, 1_234_567_891, None, b"x"), "[    1.234567] x\n");
        assert_eq!(
            line(f, 123_456_000_999_999, None, b""),
            "[123456.000999] \n"
        );
    }

    #[test]
    fn escapes_and_indent() {
        let f = DmesgFormat::default();
        assert_eq!(
            line(f, 5_000_000_000, None, b"a\nb\tc\x01\x7f\xe9\r"),
            "[    5.000000] a\n               b\tc\\x01\\x7f\\xffffffe9\r\n"
        );
    }

    #[test]
    fn caller_column() {
        let f = DmesgFormat { caller: true };
        assert_eq!(
            line(f, 0, Some(1), b"m\nn"),
            "[    0.000000] [      T1] m\n                          n\n"
        );
        assert_eq!(
            line(f, 0, Some(0x8000_0003), b"m"),
            "[    0.000000] [      C3] m\n"
        );
        assert_eq!(
            line(f, 0, Some(123_456_789), b"m"),
            "[    0.000000] [T123456789] m\n"
        );
        // No caller ID known: no column.
        assert_eq!(line(f, 0, None, b"m"), "[    0.000000] m\n");
    }
}
