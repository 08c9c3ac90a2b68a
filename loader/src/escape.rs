//! Making text read from a device safe to print on a terminal.
//!
//! Strings on a dump device (the crashed kernel's OSRELEASE, the writer, the failure message, the
//! stored console log) come from a machine that just crashed, or from a disk anyone could have
//! written. Printed raw, an escape sequence among them would drive the terminal: move the
//! cursor, rewrite earlier lines, set the window title, or worse on some terminals. So every
//! control character is shown as `\xNN` instead: C0 controls (including ESC and carriage
//! return), DEL, and C1 controls (U+0080..U+009F, which some terminals obey like ESC
//! sequences), as the bytes of their UTF-8 encoding. Bytes that are not valid UTF-8 are shown the
//! same way, so nothing stored is hidden.

use std::fmt::Write;

/// Which harmless layout characters stay as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// A one-line field: every control character is escaped, newline and tab too.
    Nothing,
    /// Multi-line text (the console log): newline and tab are kept.
    NewlineAndTab,
}

/// `bytes` with every control character and invalid UTF-8 byte shown as `\xNN`.
pub fn escape(bytes: &[u8], keep: Keep) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let kept = keep == Keep::NewlineAndTab && (c == '\n' || c == '\t');
            if c.is_control() && !kept {
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    push_hex(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            push_hex(&mut out, b);
        }
    }
    out
}

/// A NUL-padded header field, up to its first NUL, escaped for one line.
pub fn field(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    escape(&bytes[..end], Keep::Nothing)
}

fn push_hex(out: &mut String, b: u8) {
    // Writing to a String cannot fail.
    let _ = write!(out, "\\x{b:02x}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        let text = "6.8.0-minicap-test: virtio-blk I/O error at sector 4242 (ü, 日本)";
        assert_eq!(escape(text.as_bytes(), Keep::Nothing), text);
        assert_eq!(escape(b"a\nb\tc\n", Keep::NewlineAndTab), "a\nb\tc\n");
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(
            escape(b"\x1b]0;pwned\x07\x1b[2J", Keep::Nothing),
            "\\x1b]0;pwned\\x07\\x1b[2J"
        );
        assert_eq!(escape(b"a\nb\tc\r", Keep::Nothing), "a\\x0ab\\x09c\\x0d");
        assert_eq!(escape(b"a\r\nb\x7f", Keep::NewlineAndTab), "a\\x0d\nb\\x7f");
        // U+009B, the one-character CSI, and a lone 0x9b byte (invalid UTF-8).
        assert_eq!(
            escape("x\u{9b}31m".as_bytes(), Keep::Nothing),
            "x\\xc2\\x9b31m"
        );
        assert_eq!(escape(b"x\x9b31m\xff", Keep::Nothing), "x\\x9b31m\\xff");
        assert_eq!(escape(b"\0", Keep::NewlineAndTab), "\\x00");
    }

    #[test]
    fn fields_stop_at_the_first_nul() {
        assert_eq!(field(b"abc\0\x1bjunk"), "abc");
        assert_eq!(field(b"\x1b[31mred"), "\\x1b[31mred");
        assert_eq!(field(b""), "");
    }
}
