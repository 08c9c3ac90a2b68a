//! Console output: every line minicap prints starts with "minicap: ", so a
//! log that mixes the crashed kernel's messages and ours stays readable and
//! greppable (the QEMU test keys on "minicap: RESULT:").

use crate::hw::serial;
use core::fmt::{self, Write};

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        serial::write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Print one prefixed line.
pub fn line(args: fmt::Arguments<'_>) {
    let mut out = Serial;
    let _ = out.write_str("minicap: ");
    let _ = out.write_fmt(args);
    let _ = out.write_str("\n");
}

/// `say!("...", args)`: print one "minicap: " line on the serial console.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::line(format_args!($($arg)*)) };
}

/// Bytes as a human-readable size ("512 MiB", "3.5 GiB").
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

/// A fixed-capacity string for building messages without a heap.
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

    /// The text written so far (truncated at capacity, on a char boundary).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.bytes[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or(""),
        }
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
