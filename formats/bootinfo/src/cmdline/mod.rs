//! The kernel command line (docs/boot-params.md).
//!
//! The capture kernel receives the command line kexec-tools or the kernel built for a Linux
//! crash kernel: `elfcorehdr=` (where the old kernel's ELF core header is), the user's
//! `--append` text, and Linux-only options it must skip. This module splits it exactly like
//! Linux's `next_arg()` ([`params`]), so that a quoted value or a `--` means the same to us as to
//! Linux, and parses the parameters minicap cares about.

use core::fmt;

mod elfcorehdr;
mod memparse;
mod options;

pub use elfcorehdr::{elfcorehdr, ElfCoreHdrArg, ElfCoreHdrError};
pub use memparse::{memparse, MemparseError};
pub use options::{
    AfterDump, Compress, DumpFormat, DumpTarget, Fallback, MinicapOptions, OptionError, Overwrite,
    SerialPortBase, Timeout, Transport, Verify, Warning, MAX_DUMP_LEVEL, OPTION_PREFIX,
};

/// The command line as text: the bytes up to the first NUL (or all of them), which must be
/// UTF-8.
///
/// A caller that prefers a truncated command line over none can fall back to the prefix
/// `bytes[..err.valid_up_to()]`, which is valid UTF-8.
pub fn from_bytes(bytes: &[u8]) -> Result<&str, core::str::Utf8Error> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end])
}

/// One `key` or `key=value` parameter, with the quotes Linux strips already removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// Text before the first `=` (the whole parameter if there is none).
    pub key: &'a str,
    /// Text after the first `=`, `None` for a bare `key`.
    pub value: Option<&'a str>,
}

impl fmt::Display for Param<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(v) => write!(f, "{}={}", self.key, v),
            None => f.write_str(self.key),
        }
    }
}

/// Iterator over the kernel parameters of a command line; see [`params`].
#[derive(Debug, Clone)]
pub struct Params<'a> {
    rest: &'a str,
}

/// Splits `cmdline` into parameters the way Linux's `parse_args()`/`next_arg()` does.
///
/// * Parameters are separated by whitespace (space, `\t`, `\n`, `\v`, `\f`, `\r`).
/// * A double quote toggles quoting, so whitespace inside quotes does not split:
///   `minicap.x="a b"` has the value `a b`. One pair of quotes around the value, or around the
///   whole parameter (`"key=a b"`), is removed; other quotes stay in the text.
/// * As in Linux, only a `=` after the first character separates key and value (`=x` is a key).
/// * A bare `--` ends the kernel parameters: what follows belongs to init and is not yielded.
/// * The text ends at a NUL, as the C string would.
pub fn params(cmdline: &str) -> Params<'_> {
    let end = cmdline.find('\0').unwrap_or(cmdline.len());
    Params {
        rest: &cmdline[..end],
    }
}

/// Linux `isspace()` for the ASCII range.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn skip_spaces(s: &str) -> &str {
    let n = s.bytes().take_while(|&b| is_space(b)).count();
    &s[n..]
}

impl<'a> Iterator for Params<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        let rest = skip_spaces(self.rest);
        let (quoted, args) = match rest.strip_prefix('"') {
            Some(inner) => (true, inner),
            None if rest.is_empty() => {
                self.rest = rest;
                return None;
            }
            None => (false, rest),
        };
        let bytes = args.as_bytes();
        let mut in_quote = quoted;
        let mut equals = 0;
        let mut i = 0;
        while i < bytes.len() {
            if is_space(bytes[i]) && !in_quote {
                break;
            }
            if equals == 0 && bytes[i] == b'=' {
                equals = i;
            }
            if bytes[i] == b'"' {
                in_quote = !in_quote;
            }
            i += 1;
        }
        // Every index used for slicing below is at an ASCII byte (space, '=', '"') or at the end
        // of the text, hence on a char boundary.
        let mut end = i;
        let param = if equals == 0 {
            if quoted && end > 0 && bytes[end - 1] == b'"' {
                end -= 1;
            }
            Param {
                key: &args[..end],
                value: None,
            }
        } else {
            let mut vstart = equals + 1;
            if bytes.get(vstart) == Some(&b'"') {
                vstart += 1;
                if bytes[end - 1] == b'"' {
                    end -= 1;
                }
            } else if quoted && bytes[end - 1] == b'"' {
                end -= 1;
            }
            // `k="` leaves the value start past its end: the value is empty, as in Linux.
            let value = if vstart <= end {
                &args[vstart..end]
            } else {
                ""
            };
            Param {
                key: &args[..equals],
                value: Some(value),
            }
        };
        self.rest = &args[i..];
        if param.value.is_none() && param.key == "--" {
            self.rest = "";
            return None;
        }
        Some(param)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<(&str, Option<&str>)> {
        params(s).map(|p| (p.key, p.value)).collect()
    }

    #[test]
    fn simple() {
        assert_eq!(
            split("  root=/dev/sda1 ro  irqpoll\tnr_cpus=1\n"),
            vec![
                ("root", Some("/dev/sda1")),
                ("ro", None),
                ("irqpoll", None),
                ("nr_cpus", Some("1")),
            ]
        );
        assert_eq!(split(""), vec![]);
        assert_eq!(split(" \t\r\n\x0b\x0c "), vec![]);
    }

    #[test]
    fn value_with_equals_and_empty_value() {
        assert_eq!(
            split("a=b=c d= e"),
            vec![("a", Some("b=c")), ("d", Some("")), ("e", None)]
        );
    }

    #[test]
    fn leading_equals_is_part_of_key() {
        // Linux's next_arg() only looks for '=' after the first character.
        assert_eq!(split("=x a"), vec![("=x", None), ("a", None)]);
    }

    #[test]
    fn quoted_value() {
        assert_eq!(
            split("minicap.x=\"a b\" y"),
            vec![("minicap.x", Some("a b")), ("y", None)]
        );
        // Unterminated quote runs to the end.
        assert_eq!(split("k=\"a b c"), vec![("k", Some("a b c"))]);
        // Empty quoted value.
        assert_eq!(split("k=\"\" z"), vec![("k", Some("")), ("z", None)]);
        // A lone quote as value.
        assert_eq!(split("k=\""), vec![("k", Some(""))]);
    }

    #[test]
    fn quoted_whole_param() {
        assert_eq!(
            split("\"minicap.x=a b\" y"),
            vec![("minicap.x", Some("a b")), ("y", None)]
        );
        assert_eq!(split("\"bare word\""), vec![("bare word", None)]);
        assert_eq!(split("\""), vec![("", None)]);
    }

    #[test]
    fn inner_quotes_stay() {
        // Quotes in the middle of a value only protect spaces; Linux keeps them.
        assert_eq!(split("k=a\"b c\"d"), vec![("k", Some("a\"b c\"d"))]);
    }

    #[test]
    fn double_dash_ends_kernel_params() {
        assert_eq!(split("a=1 -- elfcorehdr=0x1000 b"), vec![("a", Some("1"))]);
        assert_eq!(split("\"--\" x"), vec![]);
        // "--=x" or "---" are ordinary parameters.
        assert_eq!(
            split("--=x --- y"),
            vec![("--", Some("x")), ("---", None), ("y", None)]
        );
    }

    #[test]
    fn nul_ends_text() {
        assert_eq!(split("a b\0c d"), vec![("a", None), ("b", None)]);
    }

    #[test]
    fn utf8_is_kept() {
        assert_eq!(
            split("msg=\"grüße welt\" ü=ß"),
            vec![("msg", Some("grüße welt")), ("ü", Some("ß"))]
        );
    }

    #[test]
    fn display_param() {
        let p: Vec<String> = params("a=1 b").map(|p| p.to_string()).collect();
        assert_eq!(p, ["a=1", "b"]);
    }

    #[test]
    fn from_bytes_stops_at_nul() {
        assert_eq!(from_bytes(b"a b\0garbage\xff"), Ok("a b"));
        assert_eq!(from_bytes(b"no nul"), Ok("no nul"));
        assert_eq!(from_bytes(b""), Ok(""));
        let err = from_bytes(b"ok \xff bad").unwrap_err();
        assert_eq!(err.valid_up_to(), 3);
    }
}
