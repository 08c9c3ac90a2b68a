//! The 16550 UARTs: the console on COM1 (the one output that works from the first
//! instruction of Rust to the last) and the line the dump streams on
//! (`minicap.target=serial`; COM1 too unless `minicap.serial=` names another COM port).
//!
//! Both go through one typed register block ([`Uart16550`], the registers of the 8250/16550
//! data sheet, at port offsets 0 to 7) in a bounded [`PortRange`]: nothing here names a port
//! number but the base it was given. Every wait for the transmitter is bounded; a UART
//! that stops draining is marked stalled and never waited for again.
//!
//! Programming (Linux `serial8250_do_set_termios()` does the same steps): interrupts off,
//! divisor latch 1 (115200 baud from the standard 1.8432 MHz clock: the fastest a PC UART
//! allows), 8 data bits, no parity, 1 stop bit, FIFOs on and cleared, DTR and RTS up.
//! Sending: wait until the transmit holding register is empty (LSR.THRE: the 16-byte FIFO
//! has drained), then write up to 16 bytes at once.
//!
//! Not the `uart_16550` crate: its only non-blocking send checks LSR before every byte,
//! twice the port accesses per byte of a FIFO burst, and the dump stream is bound by
//! exactly that cost (port I/O is what an emulated or real UART charges for).

use super::port::PortRange;
use super::tsc;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use minicap_drivers::access::{Field, Width};
use minicap_drivers::field;
use spin::Mutex;

/// COM1's base: the console.
pub const COM1: u16 = 0x3f8;

/// The registers, at port offsets from the base (with LCR.DLAB = 0; with DLAB = 1 offsets
/// 0 and 1 are the divisor latch's low and high bytes).
#[repr(C)]
#[allow(dead_code)] // a layout: only its fields' offsets are used
struct Uart16550 {
    data: u8,             // 0: THR (write) / RBR (read); DLL with DLAB
    interrupt_enable: u8, // 1: IER; DLM with DLAB
    fifo_control: u8,     // 2: FCR (write) / IIR (read)
    line_control: u8,     // 3: LCR
    modem_control: u8,    // 4: MCR
    line_status: u8,      // 5: LSR
    modem_status: u8,     // 6: MSR
    scratch: u8,          // 7: SCR
}
const _: () = assert!(core::mem::size_of::<Uart16550>() == 8);

const DATA: Field<Uart16550, u8> = field!(Uart16550, data);
const DIVISOR_LOW: Field<Uart16550, u8> = field!(Uart16550, data);
const DIVISOR_HIGH: Field<Uart16550, u8> = field!(Uart16550, interrupt_enable);
const INTERRUPT_ENABLE: Field<Uart16550, u8> = field!(Uart16550, interrupt_enable);
const FIFO_CONTROL: Field<Uart16550, u8> = field!(Uart16550, fifo_control);
const LINE_CONTROL: Field<Uart16550, u8> = field!(Uart16550, line_control);
const MODEM_CONTROL: Field<Uart16550, u8> = field!(Uart16550, modem_control);
const LINE_STATUS: Field<Uart16550, u8> = field!(Uart16550, line_status);
const SCRATCH: Field<Uart16550, u8> = field!(Uart16550, scratch);

/// LCR: divisor latch access.
const LCR_DLAB: u8 = 0x80;
/// LCR: 8 data bits, no parity, 1 stop bit.
const LCR_8N1: u8 = 0x03;
/// FCR: FIFOs on, both cleared, receive trigger at 14 bytes.
const FCR_ENABLE_CLEAR: u8 = 0xc7;
/// MCR: DTR and RTS.
const MCR_DTR_RTS: u8 = 0x03;
/// LSR: the transmit holding register (and FIFO) is empty.
const LSR_THRE: u8 = 0x20;
/// Bytes the transmit FIFO holds.
pub const FIFO_BYTES: usize = 16;
/// Divisor of the 115200 baud base clock: 1, the fastest.
const DIVISOR: u16 = 1;
/// Bits per byte on the line (start, 8 data, stop): 115200 baud carries 11520 bytes/s.
pub const LINE_BYTES_PER_SECOND: u64 = 115_200 / 10;

/// How long the transmitter may take to drain a FIFO burst before the line counts as
/// stalled: 16 bytes take 1.4 ms at 115200 baud; a flow-controlled or slower line gets
/// far more than that.
const DRAIN_DEADLINE_US: u64 = 200_000;

/// How many times the console polls the line status for one burst before the TSC is
/// calibrated (a port read takes about a microsecond: several milliseconds in all).
const CONSOLE_POLLS: u32 = 20_000;

/// A 16550 at one base.
pub struct Uart {
    ports: PortRange,
    base: u16,
    stalled: bool,
}

/// Why bytes could not go out on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialError {
    /// No UART answers at the base (its scratch register does not keep a value).
    Absent {
        /// The base.
        base: u16,
    },
    /// The transmitter did not drain within [`DRAIN_DEADLINE_US`].
    Stalled {
        /// The base.
        base: u16,
        /// Bytes sent on the line before it stalled.
        sent: u64,
    },
}

impl fmt::Display for SerialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absent { base } => write!(f, "no 16550 UART answers at port {base:#x}"),
            Self::Stalled { base, sent } => write!(
                f,
                "the UART at port {base:#x} stopped sending after {sent} bytes (no room in its transmitter for {} ms)",
                DRAIN_DEADLINE_US / 1000
            ),
        }
    }
}

impl Uart {
    /// The UART at `base`, programmed; `None` if the ports cannot be named.
    fn open(base: u16) -> Option<Self> {
        let len = u16::try_from(core::mem::size_of::<Uart16550>()).ok()?;
        let uart = Self {
            ports: PortRange::new(base, len)?,
            base,
            stalled: false,
        };
        uart.program();
        Some(uart)
    }

    fn read(&self, field: Field<Uart16550, u8>) -> u8 {
        // An 8-bit field reads 8 bits.
        self.ports.read(field.offset(), Width::U8).to_le_bytes()[0]
    }

    fn write(&self, field: Field<Uart16550, u8>, value: u8) {
        self.ports
            .write(field.offset(), Width::U8, u64::from(value));
    }

    fn program(&self) {
        self.write(INTERRUPT_ENABLE, 0);
        self.write(LINE_CONTROL, LCR_DLAB);
        let [low, high] = DIVISOR.to_le_bytes();
        self.write(DIVISOR_LOW, low);
        self.write(DIVISOR_HIGH, high);
        self.write(LINE_CONTROL, LCR_8N1);
        self.write(FIFO_CONTROL, FCR_ENABLE_CLEAR);
        self.write(MODEM_CONTROL, MCR_DTR_RTS);
    }

    /// Whether a UART is there: its scratch register keeps what is written.
    fn answers(&self) -> bool {
        [0x5a, 0xa5].into_iter().all(|v| {
            self.write(SCRATCH, v);
            self.read(SCRATCH) == v
        })
    }

    /// Waits until the transmitter is empty, or `give_up()` says the wait is over (then
    /// the UART is marked stalled).
    fn wait_for_room(&mut self, mut give_up: impl FnMut() -> bool) -> bool {
        while self.read(LINE_STATUS) & LSR_THRE == 0 {
            if give_up() {
                self.stalled = true;
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }

    /// Sends `bytes` in FIFO bursts, each wait bounded by the TSC; on a stall, the bytes
    /// sent before it.
    fn send_timed(&mut self, bytes: &[u8]) -> Result<(), usize> {
        if self.stalled {
            return Err(0);
        }
        for (i, burst) in bytes.chunks(FIFO_BYTES).enumerate() {
            let deadline = tsc::now_us().saturating_add(DRAIN_DEADLINE_US);
            if !self.wait_for_room(|| tsc::now_us() > deadline) {
                return Err(i * FIFO_BYTES);
            }
            for &b in burst {
                self.write(DATA, b);
            }
        }
        Ok(())
    }

    /// Sends `bytes` in FIFO bursts, each wait a bounded number of polls (usable before
    /// the TSC is calibrated).
    fn send_polled(&mut self, bytes: &[u8]) -> bool {
        if self.stalled {
            return false;
        }
        for burst in bytes.chunks(FIFO_BYTES) {
            let mut polls = 0;
            if !self.wait_for_room(|| {
                polls += 1;
                polls > CONSOLE_POLLS
            }) {
                return false;
            }
            for &b in burst {
                self.write(DATA, b);
            }
        }
        true
    }
}

/// The console's UART.
static CONSOLE: Mutex<Option<Uart>> = Mutex::new(None);
/// The stream's UART when it is not the console's.
static STREAM: Mutex<Option<Uart>> = Mutex::new(None);

/// Set when the console's UART stopped draining: a broken console must not hang the
/// capture, so output stops (the log ring still has it).
static CONSOLE_STALLED: AtomicBool = AtomicBool::new(false);

/// Program COM1 for the console.
pub fn init() {
    *CONSOLE.lock() = Uart::open(COM1);
}

/// Write bytes on the console, turning "\n" into "\r\n" for terminals.
pub fn write_bytes(bytes: &[u8]) {
    if CONSOLE_STALLED.load(Ordering::Relaxed) {
        return;
    }
    let mut guard = CONSOLE.lock();
    let Some(uart) = guard.as_mut() else {
        return;
    };
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let ok = match line.strip_suffix(b"\n") {
            Some(text) => uart.send_polled(text) && uart.send_polled(b"\r\n"),
            None => uart.send_polled(line),
        };
        if !ok {
            CONSOLE_STALLED.store(true, Ordering::Relaxed);
            return;
        }
    }
}

/// The line the dump streams on: the console's UART or another one.
pub struct StreamLine {
    base: u16,
    shared_with_console: bool,
    sent: u64,
}

impl StreamLine {
    /// The UART at `base`, programmed (COM1 is the console's, already programmed).
    pub fn open(base: u16) -> Result<Self, SerialError> {
        if base == COM1 {
            let answers = CONSOLE.lock().as_ref().is_some_and(Uart::answers);
            if !answers {
                return Err(SerialError::Absent { base });
            }
            return Ok(Self {
                base,
                shared_with_console: true,
                sent: 0,
            });
        }
        let uart = Uart::open(base)
            .filter(Uart::answers)
            .ok_or(SerialError::Absent { base })?;
        *STREAM.lock() = Some(uart);
        Ok(Self {
            base,
            shared_with_console: false,
            sent: 0,
        })
    }

    /// The port base.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// Whether the console shares the line (its lines appear between frames).
    pub fn shared_with_console(&self) -> bool {
        self.shared_with_console
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Sends `bytes` whole: the port's lock is held throughout, so no console line cuts
    /// into them.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), SerialError> {
        let port = if self.shared_with_console {
            &CONSOLE
        } else {
            &STREAM
        };
        let mut guard = port.lock();
        let uart = guard
            .as_mut()
            .ok_or(SerialError::Absent { base: self.base })?;
        debug_assert_eq!(uart.base, self.base);
        match uart.send_timed(bytes) {
            Ok(()) => {
                self.sent += bytes.len() as u64;
                Ok(())
            }
            Err(done) => {
                self.sent += done as u64;
                if self.shared_with_console {
                    // The console would wait on the same dead transmitter.
                    CONSOLE_STALLED.store(true, Ordering::Relaxed);
                }
                Err(SerialError::Stalled {
                    base: self.base,
                    sent: self.sent,
                })
            }
        }
    }
}

/// Release the console lock unconditionally: the panic and exception paths
/// call this so that a fault while printing cannot deadlock the last words.
pub fn force_unlock() {
    if CONSOLE.is_locked() {
        // SAFETY: only used on paths that never return to the interrupted
        // holder (panic, fatal exception); there is a single CPU.
        unsafe { CONSOLE.force_unlock() };
    }
}
