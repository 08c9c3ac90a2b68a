//! `elfcorehdr=[SIZE@]ADDR`: where the old kernel's ELF core header lies (docs/boot-params.md, "The command line").

use core::fmt;

use super::{memparse, params, MemparseError};

const KEY: &str = "elfcorehdr";

/// The parsed `elfcorehdr=` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfCoreHdrArg {
    /// Physical address of the ELF header.
    pub addr: u64,
    /// Size from the `SIZE@ADDR` form. Neither kexec-tools nor kexec_file writes it; without it
    /// the size comes from the header itself (`64 + e_phnum * 56`).
    pub size: Option<u64>,
}

/// A malformed `elfcorehdr` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfCoreHdrError<'a> {
    /// `elfcorehdr` without `=value`.
    MissingValue,
    /// The value is not `ADDR` or `SIZE@ADDR`.
    Malformed {
        /// The whole value as written.
        value: &'a str,
        /// The part where parsing stopped.
        at: &'a str,
        /// Why the number there was rejected, `None` for unexpected trailing text.
        reason: Option<MemparseError>,
    },
}

impl fmt::Display for ElfCoreHdrError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingValue => write!(f, "{KEY} given without a value"),
            Self::Malformed {
                value,
                at,
                reason: Some(reason),
            } => write!(f, "invalid {KEY}={value:?}: {reason} at {at:?}"),
            Self::Malformed {
                value,
                at,
                reason: None,
            } => write!(
                f,
                "invalid {KEY}={value:?}: unexpected {at:?} (expected ADDR or SIZE@ADDR)"
            ),
        }
    }
}

impl core::error::Error for ElfCoreHdrError<'_> {}

/// Finds `elfcorehdr=` in the kernel parameters of `cmdline` (those before `--`).
///
/// Accepts `ADDR` and `SIZE@ADDR`, each number in [`memparse`] syntax: kexec-tools writes
/// `elfcorehdr=261752K` (the address in KiB), the kernel's kexec_file path
/// `elfcorehdr=0x7f000000`. If the parameter appears several times the last one wins, as in
/// Linux. Stricter than Linux, every occurrence must be well formed, including earlier ones, and
/// trailing text after the address is an error: a guessed address would make the kernel dump
/// garbage. `Ok(None)` if there is no such parameter.
pub fn elfcorehdr(cmdline: &str) -> Result<Option<ElfCoreHdrArg>, ElfCoreHdrError<'_>> {
    let mut found = None;
    for param in params(cmdline).filter(|p| p.key == KEY) {
        let value = param.value.ok_or(ElfCoreHdrError::MissingValue)?;
        found = Some(parse_value(value)?);
    }
    Ok(found)
}

fn parse_value(value: &str) -> Result<ElfCoreHdrArg, ElfCoreHdrError<'_>> {
    let number = |at| number(value, at);
    let (first, rest) = number(value)?;
    let (arg, rest) = match rest.strip_prefix('@') {
        Some(addr_text) => {
            let (addr, rest) = number(addr_text)?;
            (
                ElfCoreHdrArg {
                    addr,
                    size: Some(first),
                },
                rest,
            )
        }
        None => (
            ElfCoreHdrArg {
                addr: first,
                size: None,
            },
            rest,
        ),
    };
    if !rest.is_empty() {
        return Err(ElfCoreHdrError::Malformed {
            value,
            at: rest,
            reason: None,
        });
    }
    Ok(arg)
}

/// One memparse number starting at `at`, a suffix of `value`.
fn number<'a>(value: &'a str, at: &'a str) -> Result<(u64, &'a str), ElfCoreHdrError<'a>> {
    memparse(at).map_err(|e| ElfCoreHdrError::Malformed {
        value,
        at,
        reason: Some(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: u64) -> Option<ElfCoreHdrArg> {
        Some(ElfCoreHdrArg {
            addr: a,
            size: None,
        })
    }

    #[test]
    fn kexec_tools_form() {
        let cl = "root=/dev/vda irqpoll nr_cpus=1 reset_devices elfcorehdr=261752K";
        assert_eq!(elfcorehdr(cl), Ok(addr(261_752 * 1024)));
    }

    #[test]
    fn kexec_file_form() {
        let cl = "elfcorehdr=0x7f000000 console=ttyS0";
        assert_eq!(elfcorehdr(cl), Ok(addr(0x7f00_0000)));
    }

    #[test]
    fn size_at_addr() {
        assert_eq!(
            elfcorehdr("elfcorehdr=16K@0x7f000000"),
            Ok(Some(ElfCoreHdrArg {
                addr: 0x7f00_0000,
                size: Some(16384)
            }))
        );
    }

    #[test]
    fn absent() {
        assert_eq!(elfcorehdr(""), Ok(None));
        assert_eq!(elfcorehdr("elfcorehdrx=1 xelfcorehdr=2"), Ok(None));
        // After "--" it belongs to init.
        assert_eq!(elfcorehdr("a -- elfcorehdr=0x1000"), Ok(None));
    }

    #[test]
    fn last_wins() {
        assert_eq!(
            elfcorehdr("elfcorehdr=0x1000 x elfcorehdr=0x2000"),
            Ok(addr(0x2000))
        );
        assert_eq!(elfcorehdr("elfcorehdr=\"0x3000\""), Ok(addr(0x3000)));
    }

    #[test]
    fn malformed() {
        assert_eq!(elfcorehdr("elfcorehdr"), Err(ElfCoreHdrError::MissingValue));
        assert_eq!(
            elfcorehdr("elfcorehdr="),
            Err(ElfCoreHdrError::Malformed {
                value: "",
                at: "",
                reason: Some(MemparseError::NoDigits)
            })
        );
        assert_eq!(
            elfcorehdr("elfcorehdr=0x1000xyz"),
            Err(ElfCoreHdrError::Malformed {
                value: "0x1000xyz",
                at: "xyz",
                reason: None
            })
        );
        assert_eq!(
            elfcorehdr("elfcorehdr=16K@"),
            Err(ElfCoreHdrError::Malformed {
                value: "16K@",
                at: "",
                reason: Some(MemparseError::NoDigits)
            })
        );
        assert_eq!(
            elfcorehdr("elfcorehdr=1@2@3"),
            Err(ElfCoreHdrError::Malformed {
                value: "1@2@3",
                at: "@3",
                reason: None
            })
        );
        assert_eq!(
            elfcorehdr("elfcorehdr=99999999999999999999"),
            Err(ElfCoreHdrError::Malformed {
                value: "99999999999999999999",
                at: "99999999999999999999",
                reason: Some(MemparseError::Overflow)
            })
        );
        // An earlier malformed occurrence is an error even if a later one is fine.
        assert!(elfcorehdr("elfcorehdr=zz elfcorehdr=0x1000").is_err());
    }

    #[test]
    fn error_text_names_value() {
        let e = elfcorehdr("elfcorehdr=0x1000xyz").unwrap_err().to_string();
        assert!(e.contains("elfcorehdr=\"0x1000xyz\""), "{e}");
        assert!(e.contains("\"xyz\""), "{e}");
        let e = elfcorehdr("elfcorehdr=abc").unwrap_err().to_string();
        assert!(e.contains("abc") && e.contains("expected a number"), "{e}");
        let e = elfcorehdr("elfcorehdr").unwrap_err().to_string();
        assert!(e.contains("without a value"), "{e}");
    }
}
