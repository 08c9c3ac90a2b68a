//! The triage text: what a person needs first after a crash, written to the device before the
//! memory image so that it survives a device that fails or fills up later.
//!
//! [`render_triage`] renders, into a caller-given buffer (the device's triage area,
//! [`TRIAGE_CAPACITY`](minicap_dumpheader::TRIAGE_CAPACITY) bytes) and without allocating:
//!
//! 1. a heading: `minicap triage`, the crashed kernel's release (VMCOREINFO `OSRELEASE`), the
//!    crash time (`CRASHTIME`), how many CPUs saved their registers, and which one panicked;
//! 2. the registers of every CPU, from the `NT_PRSTATUS` notes of the ELF core headers (the
//!    `struct user_regs_struct` that `crash_save_cpu()` stored, in its order, and the pid of the
//!    task that ran there), the panic CPU first;
//! 3. a line `--- kernel log ---` ([`LOG_MARKER`]) and the crashed kernel's log exactly as
//!    `makedumpfile --dump-dmesg` prints it (makedumpfile `dump_dmesg()`, read from the printk
//!    buffer in old memory through VMCOREINFO by `minicap-printk`).
//!
//! **The panic CPU.** The kernel tags every log record with its caller: a task id, or a CPU
//! number when printed outside task context (`printk_info.caller_id`, bit 31). The task that
//! wrote the log's last record announcing the crash (`Kernel panic - not syncing`, `Oops`,
//! `BUG:`, `sysrq: Trigger a crash`, or an oops header `divide error: 0000 [#1]`) is the one
//! that crashed, and its pid is the `pr_pid`
//! that `crash_save_cpu()` stored for the CPU it ran on. A CPU caller names the CPU directly
//! (the notes are in CPU order, as kexec-tools and `kexec_file` build them, so CPU n is note n
//! when every CPU saved its registers). When no record or no single CPU matches, the heading
//! says so.
//!
//! **Bounds.** The registers take at most half the buffer (the panic CPU first, so it is
//! always there); the log gets the rest. If the log does not fit, the oldest whole records are
//! dropped and a line right after the marker says how many bytes of it were dropped: the end of
//! the log, where the crash is, is what matters. The log is walked again rather than kept (once
//! to measure it and find the panic record, once more to count what is dropped when it does
//! not fit, once to write it), so memory stays constant whatever its size.

mod out;
mod panic_cpu;

use core::fmt::{self, Write};
use core::ops::ControlFlow;

use minicap_dumpheader::UtcTime;
use minicap_elfcore::{CoreHeaders, PrStatus};
use minicap_physmem::PhysMem;
use minicap_printk::{for_each_log_record, DmesgFormat, LogLayout, PrintkError, Record};
use minicap_vmcoreinfo::{OldMemory, VmcoreInfo};

use out::{Counter, TextOut};
pub use panic_cpu::{PanicCpu, PANIC_MARKERS};

/// The line that opens the log section.
pub const LOG_MARKER: &str = "--- kernel log ---\n";

/// Room kept for the "bytes dropped" line when the log does not fit.
const DROPPED_LINE_MAX: usize = 128;

/// Why the triage text has no (or no complete) log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriageLogError {
    /// The ELF core headers carry no VMCOREINFO note, so the log cannot be found.
    NoVmcoreinfo,
    /// The printk buffer cannot be read: VMCOREINFO lacks its symbols or gives sizes that make
    /// no sense, or old memory does not hold it.
    Printk(PrintkError),
}

impl fmt::Display for TriageLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoVmcoreinfo => f.write_str("the ELF core headers have no VMCOREINFO note"),
            Self::Printk(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for TriageLogError {}

impl From<PrintkError> for TriageLogError {
    fn from(e: PrintkError) -> Self {
        Self::Printk(e)
    }
}

/// What [`render_triage`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriageSummary {
    /// Bytes of text at the start of the buffer (the header's `triage_length`).
    pub len: usize,
    /// Log records written to the text.
    pub records: u64,
    /// Damaged records skipped by the log reader.
    pub damaged: u64,
    /// Bytes of the oldest log records left out because the buffer was full.
    pub dropped_bytes: u64,
    /// Whether the log could be read.
    pub log: Result<(), TriageLogError>,
    /// Index into `CoreHeaders::cpus` of the CPU that panicked, if identified.
    pub panic_cpu: Option<usize>,
}

/// Renders the triage text of the crash that `core` describes into `out` (see the module
/// docs); old memory is read through `mem` at the old kernel's physical addresses.
pub fn render_triage<M: PhysMem + ?Sized>(
    mem: &M,
    core: &CoreHeaders,
    out: &mut [u8],
) -> TriageSummary {
    let info = core.vmcoreinfo_text().map(VmcoreInfo::new);
    let old = OldMemory::new(mem, &core.loads, info.and_then(|i| i.phys_base()));
    let dmesg = DmesgFormat::default();

    // Pass 1: the log's size and its last crash record, before anything is written.
    let scan = info
        .ok_or(TriageLogError::NoVmcoreinfo)
        .and_then(|i| Ok(LogLayout::from_vmcoreinfo(&i)?))
        .and_then(|layout| {
            let mut measure = LogMeasure::default();
            for_each_log_record(&old, &layout, |rec| {
                measure.add(&dmesg, rec);
                ControlFlow::Continue(())
            })?;
            Ok((layout, measure))
        });
    let panic = match &scan {
        Ok((_, m)) => PanicCpu::identify(m.last_crash, &core.cpus),
        Err(_) => PanicCpu::NoLog,
    };

    let mut text = TextOut::new(out);
    write_heading(&mut text, core, info.as_ref(), &panic);
    write_registers(&mut text, &core.cpus, panic.index());
    let _ = text.write_str(LOG_MARKER);

    let mut summary = TriageSummary {
        len: 0,
        records: 0,
        damaged: 0,
        dropped_bytes: 0,
        log: Ok(()),
        panic_cpu: panic.index(),
    };
    match scan {
        Err(e) => {
            let _ = writeln!(text, "[minicap: no kernel log: {e}]");
            summary.log = Err(e);
        }
        Ok((layout, measure)) => {
            let log = LogWriter {
                old: &old,
                layout: &layout,
                dmesg,
            };
            let written = log.write(&mut text, measure.bytes);
            summary.records = written.records;
            summary.damaged = written.damaged;
            summary.dropped_bytes = written.dropped;
            summary.log = written.error.map_or(Ok(()), Err);
        }
    }
    summary.len = text.len();
    summary
}

/// Passes 2 and 3: writing the log, the newest part of it if it does not fit.
struct LogWriter<'a, 'm, M: PhysMem + ?Sized> {
    old: &'a OldMemory<'m, M>,
    layout: &'a LogLayout,
    dmesg: DmesgFormat,
}

/// What [`LogWriter::write`] did.
struct LogWritten {
    records: u64,
    damaged: u64,
    dropped: u64,
    error: Option<TriageLogError>,
}

impl<M: PhysMem + ?Sized> LogWriter<'_, '_, M> {
    /// Writes the log (`total` bytes in all) into what is left of `text`. If it does not fit,
    /// the oldest whole records are left out and a line says how many bytes they held.
    fn write(&self, text: &mut TextOut<'_>, total: u64) -> LogWritten {
        let mut error = None;
        let room = u64::try_from(text.room()).unwrap_or(u64::MAX);
        let mut dropped = 0u64;
        if total > room {
            let budget = room.saturating_sub(DROPPED_LINE_MAX as u64);
            match self.oldest_records_over(total - budget) {
                Ok(bytes) => dropped = bytes,
                Err(e) => error = Some(e),
            }
            let _ = writeln!(
                text,
                "[minicap: the oldest {dropped} bytes of the log did not fit and are left out]"
            );
        }
        let (mut skipped, mut records) = (0u64, 0u64);
        let walked = for_each_log_record(self.old, self.layout, |rec| {
            if skipped < dropped {
                skipped += record_len(&self.dmesg, rec);
                return ControlFlow::Continue(());
            }
            if self.dmesg.write(rec, text).is_err() {
                return ControlFlow::Break(());
            }
            records += 1;
            ControlFlow::Continue(())
        });
        let damaged = match walked {
            Ok(walk) => walk.damaged,
            Err(e) => {
                error = Some(e.into());
                0
            }
        };
        LogWritten {
            records,
            damaged,
            dropped,
            error,
        }
    }

    /// Bytes of the oldest whole records that together hold at least `at_least` bytes.
    fn oldest_records_over(&self, at_least: u64) -> Result<u64, TriageLogError> {
        let mut bytes = 0u64;
        for_each_log_record(self.old, self.layout, |rec| {
            if bytes >= at_least {
                return ControlFlow::Break(());
            }
            bytes += record_len(&self.dmesg, rec);
            ControlFlow::Continue(())
        })?;
        Ok(bytes)
    }
}

/// The last `n` lines of the log section of a triage text (everything after [`LOG_MARKER`],
/// or the whole text if it has none), for the console.
pub fn last_lines(text: &[u8], n: usize) -> &[u8] {
    let marker = LOG_MARKER.as_bytes();
    let log = text
        .windows(marker.len())
        .position(|w| w == marker)
        .map_or(text, |at| &text[at + marker.len()..]);
    // A final newline ends the last line; it does not start another.
    let body = log.strip_suffix(b"\n").unwrap_or(log);
    if n == 0 {
        return &log[log.len()..];
    }
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return &log[i + 1..];
            }
        }
    }
    log
}

/// What pass 1 learns about the log.
#[derive(Default)]
struct LogMeasure {
    /// Bytes of the whole log as makedumpfile prints it.
    bytes: u64,
    /// Caller id of the last record announcing the crash, and that record's marker.
    last_crash: Option<(Option<u32>, &'static str)>,
}

impl LogMeasure {
    fn add(&mut self, dmesg: &DmesgFormat, rec: &Record<'_>) {
        self.bytes += record_len(dmesg, rec);
        if let Some(marker) = panic_cpu::crash_marker(rec.text) {
            self.last_crash = Some((rec.caller_id, marker));
        }
    }
}

/// Bytes `rec` takes in makedumpfile's format.
fn record_len(dmesg: &DmesgFormat, rec: &Record<'_>) -> u64 {
    let mut count = Counter::default();
    let _ = dmesg.write(rec, &mut count);
    count.bytes
}

fn write_heading(
    text: &mut TextOut<'_>,
    core: &CoreHeaders,
    info: Option<&VmcoreInfo<'_>>,
    panic: &PanicCpu,
) {
    let _ = writeln!(text, "minicap triage");
    let release = info.and_then(VmcoreInfo::osrelease).unwrap_or("unknown");
    let _ = writeln!(text, "kernel release: {release}");
    let crash_time = info
        .and_then(|i| i.value("CRASHTIME"))
        .and_then(|v| v.parse::<i64>().ok());
    match crash_time {
        Some(secs) => {
            let _ = writeln!(text, "crash time:     {} ({secs})", UtcTime(secs));
        }
        None => {
            let _ = writeln!(text, "crash time:     unknown");
        }
    }
    let _ = writeln!(
        text,
        "cpus:           {} saved their registers",
        core.cpus.len()
    );
    let _ = writeln!(text, "panic cpu:      {panic}");
}

fn write_registers(text: &mut TextOut<'_>, cpus: &[PrStatus], panic: Option<usize>) {
    // The panic CPU first, so that it is there even when the rest is cut.
    let order = panic
        .into_iter()
        .chain((0..cpus.len()).filter(|&i| Some(i) != panic));
    let limit = text.capacity() / 2;
    for (shown, i) in order.enumerate() {
        if text.len() + CPU_TEXT_MAX > limit {
            let _ = writeln!(
                text,
                "\n[minicap: registers of {} more cpus left out]",
                cpus.len() - shown
            );
            break;
        }
        let cpu = &cpus[i];
        let role = if Some(i) == panic { " (panic cpu)" } else { "" };
        let _ = writeln!(text, "\n--- cpu {i}{role}, pid {} ---", cpu.pid);
        // Three to a line, in `pr_reg` order.
        for (n, (name, value)) in cpu.named_regs().enumerate() {
            let end = if n % 3 == 2 || n + 1 == cpu.regs.len() {
                "\n"
            } else {
                ""
            };
            let _ = write!(text, "{name:>9} {value:016x}{end}");
        }
    }
    let _ = text.write_char('\n');
}

/// Upper bound on one CPU's register block (title, 27 registers, newlines).
const CPU_TEXT_MAX: usize = 64 + minicap_elfcore::REG_COUNT * 26 + 16;

#[cfg(test)]
mod tests;
