//! Which CPU panicked: the task that wrote the log's last crash record, matched against the
//! `pr_pid` of each CPU's `NT_PRSTATUS` note (see the module docs of [`super`]).

use core::fmt;

use minicap_elfcore::PrStatus;

/// Texts that announce a crash in a log record (`panic()`, `oops_begin()`/`die()`,
/// `BUG()`/`report_bug()` and friends, `sysrq_handle_crash()`).
pub const PANIC_MARKERS: [&str; 4] = [
    "Kernel panic - not syncing",
    "Oops",
    "BUG:",
    "sysrq: Trigger a crash",
];

/// `printk_info.caller_id` bit 31: the low bits are a CPU number, not a task id.
const CALLER_IS_CPU: u32 = 0x8000_0000;

/// How [`crash_marker`] names a record that holds a die header (see [`has_die_header`]).
pub const DIE_HEADER: &str = "<trap>: <code> [#<n>]";

/// The first of [`PANIC_MARKERS`] that `text` contains, else [`DIE_HEADER`] if it holds one.
pub(super) fn crash_marker(text: &[u8]) -> Option<&'static str> {
    PANIC_MARKERS
        .into_iter()
        .find(|m| text.windows(m.len()).any(|window| window == m.as_bytes()))
        .or_else(|| has_die_header(text).then_some(DIE_HEADER))
}

/// Whether `text` holds the header `die()` prints for every oops, `"%s: %04lx [#%d]"`
/// (`divide error: 0000 [#1]`, `general protection fault, ...: 0000 [#1]`, `invalid opcode:
/// 0000 [#1]` after a `BUG()`). Only the first oops of a crash says "Oops"; these say nothing
/// else a marker would match, and with `panic_on_oops` the crash kernel runs before any "Kernel
/// panic" line. The header is printed under `die_lock`, so with two CPUs oopsing at once only
/// the CPU that goes on to the crash kernel prints it (the `kernel BUG at` line before it is
/// printed by both, which is why that line is not a marker).
fn has_die_header(text: &[u8]) -> bool {
    const TAIL: &[u8] = b" [#";
    // ": " + 4 hex digits + " [#" + a digit.
    text.windows(2 + 4 + TAIL.len() + 1).any(|w| {
        w.starts_with(b": ")
            && w[2..6].iter().all(u8::is_ascii_hexdigit)
            && &w[6..9] == TAIL
            && w[9].is_ascii_digit()
    })
}

/// The outcome of looking for the panic CPU; its `Display` is the heading's `panic cpu:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicCpu {
    /// The log could not be read.
    NoLog,
    /// No record of the log announces a crash.
    NoCrashRecord,
    /// The crash record carries no caller id (VMCOREINFO exports no `printk_info.caller_id`).
    NoCaller {
        /// The marker the record contains.
        marker: &'static str,
    },
    /// Exactly one CPU ran the task that wrote the crash record.
    ByTask {
        /// Index into the CPUs' notes.
        index: usize,
        /// The task's pid.
        pid: u32,
        /// The marker the record contains.
        marker: &'static str,
    },
    /// The crash record was written outside task context on this CPU.
    ByCpu {
        /// Index into the CPUs' notes (the CPU number).
        index: usize,
        /// The marker the record contains.
        marker: &'static str,
    },
    /// No CPU, or several, ran the task that wrote the crash record.
    TaskNotUnique {
        /// The task's pid.
        pid: u32,
        /// How many CPUs ran it.
        cpus: usize,
        /// The marker the record contains.
        marker: &'static str,
    },
    /// The crash record names a CPU that saved no registers.
    CpuWithoutNote {
        /// The CPU number.
        cpu: u32,
        /// The marker the record contains.
        marker: &'static str,
    },
}

impl PanicCpu {
    /// Matches the last crash record's caller (`None`: the log has no crash record) with the
    /// CPUs' notes.
    pub(super) fn identify(
        last_crash: Option<(Option<u32>, &'static str)>,
        cpus: &[PrStatus],
    ) -> Self {
        let Some((caller, marker)) = last_crash else {
            return Self::NoCrashRecord;
        };
        let Some(caller) = caller else {
            return Self::NoCaller { marker };
        };
        let id = caller & !CALLER_IS_CPU;
        if caller & CALLER_IS_CPU != 0 {
            return match usize::try_from(id) {
                Ok(index) if index < cpus.len() => Self::ByCpu { index, marker },
                _ => Self::CpuWithoutNote { cpu: id, marker },
            };
        }
        let mut ran = cpus.iter().enumerate().filter(|(_, c)| c.pid == id);
        match (ran.next(), ran.count()) {
            (Some((index, _)), 0) => Self::ByTask {
                index,
                pid: id,
                marker,
            },
            (first, more) => Self::TaskNotUnique {
                pid: id,
                cpus: usize::from(first.is_some()) + more,
                marker,
            },
        }
    }

    /// Index into the CPUs' notes of the panic CPU, if identified.
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::ByTask { index, .. } | Self::ByCpu { index, .. } => Some(*index),
            _ => None,
        }
    }
}

impl fmt::Display for PanicCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLog => f.write_str("not identified (no kernel log)"),
            Self::NoCrashRecord => f.write_str(
                "not identified (no log record says \"Kernel panic\", \"Oops\", \"BUG:\" or \
                 \"sysrq: Trigger a crash\", nor holds an oops header \"<trap>: <code> [#<n>]\")",
            ),
            Self::NoCaller { marker } => write!(
                f,
                "not identified (the log's last \"{marker}\" record has no caller id)"
            ),
            Self::ByTask { index, pid, marker } => write!(
                f,
                "cpu {index}: it ran pid {pid}, which wrote the log's last \"{marker}\" record"
            ),
            Self::ByCpu { index, marker } => write!(
                f,
                "cpu {index}: it wrote the log's last \"{marker}\" record outside task context"
            ),
            Self::TaskNotUnique { pid, cpus, marker } => write!(
                f,
                "not identified: pid {pid} wrote the log's last \"{marker}\" record and {cpus} \
                 cpus ran it"
            ),
            Self::CpuWithoutNote { cpu, marker } => write!(
                f,
                "not identified: cpu {cpu} wrote the log's last \"{marker}\" record but saved \
                 no registers"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(pid: u32) -> PrStatus {
        PrStatus {
            pid,
            regs: [0; minicap_elfcore::REG_COUNT],
        }
    }

    #[test]
    fn markers_are_found_anywhere_in_the_text() {
        assert_eq!(
            crash_marker(b"Kernel panic - not syncing: sysrq triggered crash"),
            Some("Kernel panic - not syncing")
        );
        assert_eq!(
            crash_marker(b"sysrq: Trigger a crash"),
            Some("sysrq: Trigger a crash")
        );
        assert_eq!(crash_marker(b"x BUG: kernel NULL pointer"), Some("BUG:"));
        assert_eq!(crash_marker(b"Oops: 0002 [#1] SMP"), Some("Oops"));
        assert_eq!(crash_marker(b"BUG without colon, oops lower case"), None);
        // die()'s header without "Oops": the trap's name, the error code, the oops count.
        for header in [
            &b"divide error: 0000 [#1] PREEMPT SMP NOPTI"[..],
            b"general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP",
            b"invalid opcode: 0000 [#2] PREEMPT SMP NOPTI",
            b"stack segment: 0000 [#1]",
        ] {
            assert_eq!(crash_marker(header), Some(DIE_HEADER), "{header:?}");
        }
        // BUG()'s own line comes from both CPUs when two hit it: not a marker.
        assert_eq!(crash_marker(b"kernel BUG at drivers/x.c:12!"), None);
        for near_miss in [
            &b"error: 0000 [x1]"[..],
            b"error: 00g0 [#1]",
            b"error: 000 [#1]",
            b"error: 0000 [#",
            b"error 0000 [#1]",
        ] {
            assert_eq!(crash_marker(near_miss), None, "{near_miss:?}");
        }
        assert_eq!(crash_marker(b""), None);
    }

    #[test]
    fn task_caller_is_matched_with_the_pids() {
        let cpus = [cpu(0), cpu(1234), cpu(0)];
        let m = "Oops";
        assert_eq!(
            PanicCpu::identify(Some((Some(1234), m)), &cpus),
            PanicCpu::ByTask {
                index: 1,
                pid: 1234,
                marker: m
            }
        );
        assert_eq!(
            PanicCpu::identify(Some((Some(1234), m)), &cpus).index(),
            Some(1)
        );
        // The idle task runs on two CPUs: not a unique answer.
        assert_eq!(
            PanicCpu::identify(Some((Some(0), m)), &cpus),
            PanicCpu::TaskNotUnique {
                pid: 0,
                cpus: 2,
                marker: m
            }
        );
        assert_eq!(
            PanicCpu::identify(Some((Some(99), m)), &cpus),
            PanicCpu::TaskNotUnique {
                pid: 99,
                cpus: 0,
                marker: m
            }
        );
        assert_eq!(PanicCpu::identify(None, &cpus), PanicCpu::NoCrashRecord);
        assert_eq!(
            PanicCpu::identify(Some((None, m)), &cpus),
            PanicCpu::NoCaller { marker: m }
        );
    }

    #[test]
    fn cpu_caller_names_the_cpu() {
        let cpus = [cpu(7), cpu(8)];
        assert_eq!(
            PanicCpu::identify(Some((Some(0x8000_0001), "BUG:")), &cpus),
            PanicCpu::ByCpu {
                index: 1,
                marker: "BUG:"
            }
        );
        assert_eq!(
            PanicCpu::identify(Some((Some(0x8000_0002), "BUG:")), &cpus),
            PanicCpu::CpuWithoutNote {
                cpu: 2,
                marker: "BUG:"
            }
        );
    }

    #[test]
    fn every_outcome_reads_as_a_sentence() {
        let texts = [
            PanicCpu::NoLog.to_string(),
            PanicCpu::NoCrashRecord.to_string(),
            PanicCpu::ByTask {
                index: 1,
                pid: 5,
                marker: "Oops",
            }
            .to_string(),
        ];
        assert!(texts[0].contains("no kernel log"));
        assert!(texts[1].contains("no log record"));
        assert_eq!(
            texts[2],
            "cpu 1: it ran pid 5, which wrote the log's last \"Oops\" record"
        );
    }
}
