//! Linux `memparse()`: a number with an optional size suffix.

use core::fmt;

/// Why [`memparse`] rejected its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemparseError {
    /// The text does not start with a digit of the detected base.
    NoDigits,
    /// The number, or the number times its suffix, does not fit in 64 bits. (Linux silently
    /// wraps; an address that wrapped would make the kernel read the wrong memory.)
    Overflow,
}

impl fmt::Display for MemparseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDigits => f.write_str("expected a number"),
            Self::Overflow => f.write_str("number does not fit in 64 bits"),
        }
    }
}

impl core::error::Error for MemparseError {}

/// Parses a number like Linux `memparse()` and returns it with the unparsed rest of `s`.
///
/// The base is detected as by `simple_strtoull(s, _, 0)`: `0x`/`0X` followed by a hex digit
/// means hexadecimal, another leading `0` octal, anything else decimal. No sign and no leading
/// whitespace are accepted. One suffix `K`, `M`, `G`, `T`, `P` or `E` (either case) multiplies
/// by 2^10 .. 2^60. Unlike Linux, overflow is an error instead of wrapping.
///
/// `memparse("261752K")` is `Ok((268_034_048, ""))`; `memparse("0x1000@x")` is
/// `Ok((4096, "@x"))`; `memparse("08")` is `Ok((0, "8"))`, as in Linux.
pub fn memparse(s: &str) -> Result<(u64, &str), MemparseError> {
    let bytes = s.as_bytes();
    let (base, start) = match bytes {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16u32, 2usize),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let mut value: u64 = 0;
    let mut end = start;
    while let Some(digit) = bytes.get(end).and_then(|&b| char::from(b).to_digit(base)) {
        value = value
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(MemparseError::Overflow)?;
        end += 1;
    }
    if end == start {
        return Err(MemparseError::NoDigits);
    }
    let shift = match bytes.get(end) {
        Some(b'K' | b'k') => 10,
        Some(b'M' | b'm') => 20,
        Some(b'G' | b'g') => 30,
        Some(b'T' | b't') => 40,
        Some(b'P' | b'p') => 50,
        Some(b'E' | b'e') => 60,
        _ => 0,
    };
    if shift != 0 {
        if value > u64::MAX >> shift {
            return Err(MemparseError::Overflow);
        }
        value <<= shift;
        end += 1;
    }
    // `end` only ever advanced over ASCII bytes, so it is a char boundary.
    Ok((value, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_hex_octal() {
        assert_eq!(memparse("12345"), Ok((12345, "")));
        assert_eq!(memparse("0x7f000000"), Ok((0x7f00_0000, "")));
        assert_eq!(memparse("0XABCdef"), Ok((0xab_cdef, "")));
        assert_eq!(memparse("0755"), Ok((0o755, "")));
        assert_eq!(memparse("0"), Ok((0, "")));
        assert_eq!(memparse("00"), Ok((0, "")));
    }

    #[test]
    fn suffixes() {
        assert_eq!(memparse("261752K"), Ok((261_752 * 1024, "")));
        assert_eq!(memparse("1k"), Ok((1 << 10, "")));
        assert_eq!(memparse("3M"), Ok((3 << 20, "")));
        assert_eq!(memparse("3m"), Ok((3 << 20, "")));
        assert_eq!(memparse("2G"), Ok((2 << 30, "")));
        assert_eq!(memparse("2t"), Ok((2 << 40, "")));
        assert_eq!(memparse("1P"), Ok((1 << 50, "")));
        assert_eq!(memparse("15E"), Ok((15 << 60, "")));
        assert_eq!(memparse("0x10M"), Ok((16 << 20, "")));
        assert_eq!(memparse("010K"), Ok((8 << 10, "")));
        // Only one suffix is consumed.
        assert_eq!(memparse("1KK"), Ok((1024, "K")));
    }

    #[test]
    fn hex_digits_are_not_suffixes() {
        // 'e' is a hex digit, so "0x1e" is 30, not 1 EiB.
        assert_eq!(memparse("0x1e"), Ok((0x1e, "")));
    }

    #[test]
    fn rest_is_returned() {
        assert_eq!(memparse("16M@0x1000000"), Ok((16 << 20, "@0x1000000")));
        assert_eq!(memparse("12 ab"), Ok((12, " ab")));
        // Linux falls back to octal when "0x" is not followed by a hex digit.
        assert_eq!(memparse("0x"), Ok((0, "x")));
        assert_eq!(memparse("0xg"), Ok((0, "xg")));
        // '8' is not octal.
        assert_eq!(memparse("08"), Ok((0, "8")));
        assert_eq!(memparse("5ü"), Ok((5, "ü")));
    }

    #[test]
    fn no_digits() {
        for s in ["", "K", "x10", "-1", "+1", " 1", "@", "ü"] {
            assert_eq!(memparse(s), Err(MemparseError::NoDigits), "{s:?}");
        }
    }

    #[test]
    fn overflow() {
        assert_eq!(memparse("18446744073709551615"), Ok((u64::MAX, "")));
        assert_eq!(
            memparse("18446744073709551616"),
            Err(MemparseError::Overflow)
        );
        assert_eq!(memparse("0xffffffffffffffff"), Ok((u64::MAX, "")));
        assert_eq!(
            memparse("0x10000000000000000"),
            Err(MemparseError::Overflow)
        );
        assert_eq!(memparse("16E"), Err(MemparseError::Overflow));
        assert_eq!(memparse("16384P"), Err(MemparseError::Overflow));
        assert_eq!(memparse("16383P"), Ok((16383 << 50, "")));
        assert_eq!(memparse("0x40000000000000K"), Err(MemparseError::Overflow));
    }
}
