//! The kernel's adapters for the dump writer (`minicap_capture::writer`,
//! host tested): DMA buffers from the heap, old memory through the identity
//! map, the console log, the TSC clock (microseconds since entry, the
//! profile's clock), the console, and the serial line a stream goes out on.

use crate::console;
use crate::hw::serial::{SerialError, StreamLine};
use crate::hw::{cpu, dma, phys, tsc};
use core::fmt;
pub use minicap_capture::writer::{
    block_size_supported, mib_per_s_x10, stream_filtered_elf, stream_kdump, verification,
    write_dump, write_kdump_dump, Dump, KdumpDump, StreamTarget, Triage, Verified,
};
use minicap_capture::writer::{ByteOutput, DmaBuffer, WriterEnv};
use minicap_capture::TimeLimit;
use minicap_physmem::PAGE_BYTES;

/// The machine as the writer sees it.
pub struct KernelEnv {
    /// The clock: the TSC in microseconds since entry.
    pub clock: Clock,
    /// The bound on the whole capture (`minicap.timeout=`), on `clock`.
    pub time_limit: Option<TimeLimit>,
}

/// The TSC in microseconds since `minicap_main` was entered (the TSC's own
/// zero is set by its calibration, which comes after the take-over).
#[derive(Clone, Copy)]
pub struct Clock {
    calibrated_at_us: u64,
}

impl Clock {
    /// The clock of a run that entered at TSC value `entry_ticks`; call
    /// right after the TSC was calibrated at `khz`.
    pub fn since_entry(entry_ticks: u64, khz: u64) -> Self {
        let ticks = cpu::rdtsc().wrapping_sub(entry_ticks);
        let since_entry =
            u64::try_from(u128::from(ticks) * 1000 / u128::from(khz.max(1))).unwrap_or(u64::MAX);
        Self {
            calibrated_at_us: since_entry.saturating_sub(tsc::now_us()),
        }
    }

    /// Microseconds since entry.
    pub fn now_us(&self) -> u64 {
        tsc::now_us().saturating_add(self.calibrated_at_us)
    }
}

impl DmaBuffer for dma::DmaBuffer {
    fn addr(&self) -> u64 {
        dma::DmaBuffer::device_address(self)
    }

    fn with_bytes_mut<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        dma::DmaBuffer::with_bytes_mut(self, f)
    }
}

impl WriterEnv for KernelEnv {
    type Buffer = dma::DmaBuffer;

    fn dma_buffer(&mut self, len: usize) -> Option<dma::DmaBuffer> {
        dma::DmaBuffer::new(len, PAGE_BYTES)
    }

    fn with_old_memory(&mut self, addr: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> bool {
        phys::with_slice(addr, len, f).is_some()
    }

    fn copy_log(&mut self, out: &mut [u8]) -> usize {
        console::copy_log(out)
    }

    fn now_us(&mut self) -> u64 {
        self.clock.now_us()
    }

    fn say(&mut self, line: fmt::Arguments<'_>) {
        console::line(line);
    }

    fn time_limit(&self) -> Option<TimeLimit> {
        self.time_limit
    }
}

/// The UART the stream goes out on, as the stream writer's byte output.
pub struct SerialOutput(pub StreamLine);

impl ByteOutput for SerialOutput {
    type Error = SerialError;

    fn send(&mut self, bytes: &[u8]) -> Result<(), SerialError> {
        self.0.send(bytes)
    }
}
