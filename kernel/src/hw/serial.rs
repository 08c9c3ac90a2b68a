//! The 16550 serial console on COM1: the one output that works from the
//! first instruction of Rust to the last.

use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;
use uart_16550::SerialPort;

const COM1: u16 = 0x3f8;

static PORT: Mutex<Option<SerialPort>> = Mutex::new(None);

/// Program COM1 (115200 8N1, FIFOs on, its interrupts off).
pub fn init() {
    // SAFETY: COM1's I/O ports belong to the standard PC serial port; nothing
    // else in minicap touches them.
    let mut port = unsafe { SerialPort::new(COM1) };
    port.init();
    *PORT.lock() = Some(port);
}

/// How many times to poll the line status for one byte. A byte takes 87 µs
/// at 115200 baud and a port read about a microsecond, so this is several
/// milliseconds: far more than a working UART needs. (It counts polls, not
/// time, because the console starts before the TSC is calibrated.)
const POLLS_PER_BYTE: u32 = 20_000;

/// Set when the UART stopped draining: a broken console must not hang the
/// capture, so output stops (the log ring on the dump device still has it).
static STALLED: AtomicBool = AtomicBool::new(false);

/// Write bytes, turning "\n" into "\r\n" for terminals.
pub fn write_bytes(bytes: &[u8]) {
    if STALLED.load(Ordering::Relaxed) {
        return;
    }
    let mut guard = PORT.lock();
    let Some(port) = guard.as_mut() else {
        return;
    };
    for &b in bytes {
        if b == b'\n' && !send(port, b'\r') {
            return;
        }
        if !send(port, b) {
            return;
        }
    }
}

/// Send one byte, polling the transmitter for at most `POLLS_PER_BYTE`.
fn send(port: &mut SerialPort, byte: u8) -> bool {
    for _ in 0..POLLS_PER_BYTE {
        if port.try_send_raw(byte).is_ok() {
            return true;
        }
        core::hint::spin_loop();
    }
    STALLED.store(true, Ordering::Relaxed);
    false
}

/// Release the console lock unconditionally: the panic and exception paths
/// call this so that a fault while printing cannot deadlock the last words.
pub fn force_unlock() {
    if PORT.is_locked() {
        // SAFETY: only used on paths that never return to the interrupted
        // holder (panic, fatal exception); there is a single CPU.
        unsafe { PORT.force_unlock() };
    }
}
