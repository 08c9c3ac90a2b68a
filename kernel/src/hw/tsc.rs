//! Time without interrupts: the TSC, calibrated against the PIT by polling.

use super::cpu::rdtsc;
use super::port::{inb, outb};
use core::sync::atomic::{AtomicU64, Ordering};

const PIT_FREQUENCY_HZ: u64 = 1_193_182;
const PIT_CHANNEL2: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
const PORT_B: u16 = 0x61;
const CALIBRATION_MS: u64 = 20;
/// Used when the PIT does not answer: a deliberately high guess, so that
/// deadlines come out long rather than short.
const FALLBACK_TSC_KHZ: u64 = 4_000_000;
/// Give up on the PIT after this many TSC ticks.
const MAX_CALIBRATION_TICKS: u64 = 200_000_000;

static TSC_KHZ: AtomicU64 = AtomicU64::new(FALLBACK_TSC_KHZ);
static START: AtomicU64 = AtomicU64::new(0);

/// Result of the calibration.
pub struct Calibration {
    /// TSC ticks per millisecond.
    pub khz: u64,
    /// Whether the PIT answered (else the fallback is in use).
    pub measured: bool,
}

/// Measure the TSC frequency: let PIT channel 2 count down `CALIBRATION_MS`
/// in mode 0 and poll its output bit in port 0x61.
pub fn calibrate() -> Calibration {
    START.store(rdtsc(), Ordering::Relaxed);
    let count = PIT_FREQUENCY_HZ * CALIBRATION_MS / 1000; // fits in 16 bits
    let port_b = inb(PORT_B);
    // Gate on, speaker off.
    outb(PORT_B, (port_b & !0x02) | 0x01);
    // Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count), binary.
    outb(PIT_COMMAND, 0b1011_0000);
    outb(PIT_CHANNEL2, (count & 0xff) as u8);
    outb(PIT_CHANNEL2, ((count >> 8) & 0xff) as u8);
    let start = rdtsc();
    // There is no calibrated clock yet: bound the poll both by TSC ticks
    // (20 ms even at 10 GHz, 200 ms at 1 GHz) and by iterations (in case
    // the TSC does not tick).
    let mut measured = false;
    for _ in 0..50_000_000u64 {
        if inb(PORT_B) & 0x20 != 0 {
            measured = true;
            break;
        }
        if rdtsc().wrapping_sub(start) > MAX_CALIBRATION_TICKS {
            break;
        }
    }
    let ticks = rdtsc().wrapping_sub(start);
    outb(PORT_B, port_b);
    let khz = ticks / CALIBRATION_MS;
    // A TSC below 100 MHz or above 10 GHz is a broken measurement; a wrong
    // one would make every deadline too short or too long.
    if measured && (100_000..=10_000_000).contains(&khz) {
        TSC_KHZ.store(khz, Ordering::Relaxed);
        Calibration {
            khz,
            measured: true,
        }
    } else {
        Calibration {
            khz: FALLBACK_TSC_KHZ,
            measured: false,
        }
    }
}

/// Microseconds since calibration.
pub fn now_us() -> u64 {
    let ticks = rdtsc().wrapping_sub(START.load(Ordering::Relaxed));
    let khz = TSC_KHZ.load(Ordering::Relaxed).max(1);
    // ticks * 1000 / khz, without overflowing for long runs.
    u64::try_from(u128::from(ticks) * 1000 / u128::from(khz)).unwrap_or(u64::MAX)
}
