//! The 16550 serial console on COM1: the one output that works from the
//! first instruction of Rust to the last.

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

/// Write bytes, turning "\n" into "\r\n" for terminals.
pub fn write_bytes(bytes: &[u8]) {
    let mut guard = PORT.lock();
    if let Some(port) = guard.as_mut() {
        for &b in bytes {
            if b == b'\n' {
                port.send_raw(b'\r');
            }
            port.send_raw(b);
        }
    }
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
