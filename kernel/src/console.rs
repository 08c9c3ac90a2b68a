//! Console output: every line minicap prints starts with "minicap: ", so a
//! log that mixes the crashed kernel's messages and ours stays readable and
//! greppable (the QEMU test keys on "minicap: RESULT:").
//!
//! Every line also goes into an in-memory ring ([`copy_log`]) that the writer
//! stores on the dump device, so a machine without a serial console still
//! tells what happened (`minicap log DEVICE`).

use crate::hw::serial;
use core::fmt::{self, Write};
use minicap_capture::writer::LOG_BYTES;
use spin::Mutex;

/// The most recent `LOG_BYTES` bytes printed (older ones are overwritten).
struct Ring {
    bytes: [u8; LOG_BYTES],
    /// Index of the oldest byte.
    start: usize,
    len: usize,
}

static LOG: Mutex<Ring> = Mutex::new(Ring {
    bytes: [0; LOG_BYTES],
    start: 0,
    len: 0,
});

fn record(text: &str) {
    // A fault while recording must not deadlock the fault report: skip
    // recording rather than wait.
    let Some(mut ring) = LOG.try_lock() else {
        return;
    };
    for &b in text.as_bytes() {
        if ring.len < LOG_BYTES {
            let at = (ring.start + ring.len) % LOG_BYTES;
            ring.bytes[at] = b;
            ring.len += 1;
        } else {
            let at = ring.start;
            ring.bytes[at] = b;
            ring.start = (ring.start + 1) % LOG_BYTES;
        }
    }
}

/// Copy the log, oldest byte first, into `out`; returns the bytes copied.
pub fn copy_log(out: &mut [u8]) -> usize {
    let ring = LOG.lock();
    let n = ring.len.min(out.len());
    // The newest `n` bytes.
    let skip = ring.len - n;
    for (i, slot) in out[..n].iter_mut().enumerate() {
        *slot = ring.bytes[(ring.start + skip + i) % LOG_BYTES];
    }
    n
}

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        serial::write_bytes(s.as_bytes());
        record(s);
        Ok(())
    }
}

/// End whatever line the crashed kernel left unfinished on the console: another CPU stopped by
/// the crash NMI may have been mid-line, and minicap's first line would otherwise continue it
/// (and no longer start with "minicap: "). Not recorded in the stored log, which holds only
/// minicap's own lines.
pub fn begin() {
    serial::write_bytes(b"\n");
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

pub use minicap_capture::text::{FixedString, Size};
