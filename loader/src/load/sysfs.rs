//! The sysfs files a crash-kernel loader reads, their formats as the kernel prints them, and
//! errors that name the file and the fix.
//!
//! | file | kernel format | kexec-tools reader |
//! |---|---|---|
//! | `/sys/kernel/kexec_crash_size` | `%zu\n` (bytes reserved for the crash kernel) | — |
//! | `/sys/kernel/kexec_crash_loaded`, `/sys/kernel/kexec_loaded` | `%d\n` (0 or 1) | — |
//! | `/sys/devices/system/cpu/possible` | a CPU list, `0-3,8\n` | `sysconf(_SC_NPROCESSORS_CONF)` |
//! | `/sys/devices/system/cpu/cpuN/crash_notes` | `%llx\n` (physical address, no `0x`) | `get_crash_notes_per_cpu()` |
//! | `/sys/devices/system/cpu/cpuN/crash_notes_size` | `%zu\n` | the same; 1024 (`MAX_NOTE_BYTES`) when absent |
//! | `/sys/kernel/vmcoreinfo` | `%pa %x\n`: `0x`-prefixed address, size in hex **without** `0x` | `get_kernel_vmcoreinfo()` (`%llx %llx`) |
//!
//! A possible CPU without a `cpuN` directory (a hot-plug slot never populated) has no
//! `crash_notes` file: it is skipped, as kexec-tools skips it ("CPU is not physically
//! present"), because no such CPU can save registers at the crash.

use std::fmt;
use std::io;
use std::path::PathBuf;

use minicap_elfcore::NoteBuffer;

/// Paths, relative to the file system root.
pub const KEXEC_CRASH_SIZE: &str = "sys/kernel/kexec_crash_size";
/// See the module table.
pub const KEXEC_CRASH_LOADED: &str = "sys/kernel/kexec_crash_loaded";
/// See the module table.
pub const KEXEC_LOADED: &str = "sys/kernel/kexec_loaded";
/// See the module table.
pub const CPU_POSSIBLE: &str = "sys/devices/system/cpu/possible";
/// See the module table.
pub const VMCOREINFO: &str = "sys/kernel/vmcoreinfo";
/// `/proc/sys/kernel/kexec_load_disabled`: 1 once set, until reboot.
pub const KEXEC_LOAD_DISABLED: &str = "proc/sys/kernel/kexec_load_disabled";

/// `/sys/kernel/security/lockdown` (securityfs): the modes, the active one in brackets.
pub const LOCKDOWN: &str = "sys/kernel/security/lockdown";

/// kexec-tools' size for a `crash_notes` buffer whose size file is missing (kernels before
/// 4.7 have no `crash_notes_size`).
pub const DEFAULT_NOTE_BYTES: u64 = 1024;

/// The most CPUs accepted from a CPU list (Linux `NR_CPUS` is at most 8192).
const MAX_CPUS: u32 = 8192;

/// What is wrong with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The file does not exist.
    Missing,
    /// It exists but could not be read.
    Unreadable(io::ErrorKind),
    /// Its content is not in the kernel's format.
    Malformed(String),
}

/// A file that could not be used, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsError {
    /// The file, as an absolute path under the root read.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: Problem,
}

impl SysfsError {
    /// What to do, from the file's role.
    fn fix(&self) -> &'static str {
        let path = self.path.to_string_lossy();
        match self.problem {
            Problem::Malformed(_) => "is this a Linux /sys mounted at /sys?",
            Problem::Unreadable(io::ErrorKind::PermissionDenied) => "run minicap as root",
            Problem::Unreadable(_) => "check that sysfs and procfs are mounted",
            Problem::Missing if path.ends_with("kexec_crash_size") => {
                "this kernel has no crash-kernel support: it needs CONFIG_KEXEC and \
                 CONFIG_CRASH_DUMP (and sysfs mounted at /sys)"
            }
            Problem::Missing if path.contains("crash_notes") => {
                "this kernel saves no CPU state at a crash: it needs CONFIG_CRASH_DUMP"
            }
            Problem::Missing if path.ends_with("vmcoreinfo") => {
                "this kernel exports no VMCOREINFO: it needs CONFIG_VMCORE_INFO \
                 (CONFIG_CRASH_CORE before 6.9)"
            }
            Problem::Missing => "mount sysfs at /sys and procfs at /proc",
        }
    }
}

impl fmt::Display for SysfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            Problem::Missing => write!(f, "{path} does not exist")?,
            Problem::Unreadable(kind) => {
                write!(f, "cannot read {path}: {}", io::Error::from(*kind))?
            }
            Problem::Malformed(text) => {
                write!(f, "{path} holds {text:?}, not the kernel's format")?
            }
        }
        write!(f, " ({})", self.fix())
    }
}

impl std::error::Error for SysfsError {}

/// The files under a root directory: `/` for the running system, a directory of recorded files
/// in the tests.
#[derive(Debug, Clone)]
pub struct SystemFiles {
    root: PathBuf,
}

impl SystemFiles {
    /// The files under `root` (`root/sys/kernel/...`).
    pub fn under(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Absolute path of `relative`.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The text of `relative`.
    pub fn read(&self, relative: &str) -> Result<String, SysfsError> {
        let path = self.path(relative);
        std::fs::read_to_string(&path).map_err(|e| SysfsError {
            problem: match e.kind() {
                io::ErrorKind::NotFound => Problem::Missing,
                kind => Problem::Unreadable(kind),
            },
            path,
        })
    }

    /// The text of `relative`, `None` if it does not exist.
    pub fn read_optional(&self, relative: &str) -> Result<Option<String>, SysfsError> {
        match self.read(relative) {
            Err(SysfsError {
                problem: Problem::Missing,
                ..
            }) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Reads `relative` and parses it with `parse`; a parse failure names the file.
    pub fn parse<T>(
        &self,
        relative: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, SysfsError> {
        let text = self.read(relative)?;
        parse(&text).ok_or_else(|| malformed(self.path(relative), &text))
    }
}

fn malformed(path: PathBuf, text: &str) -> SysfsError {
    SysfsError {
        path,
        problem: Problem::Malformed(text.trim_end().chars().take(80).collect()),
    }
}

/// The kexec state the kernel reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashState {
    /// Bytes reserved by `crashkernel=` (0: no reservation).
    pub crash_size: u64,
    /// A crash kernel is loaded.
    pub crash_loaded: bool,
    /// A kernel for a normal `kexec -e` reboot is loaded.
    pub kexec_loaded: bool,
    /// `kexec_load_disabled` is set: no load is possible until reboot (`None`: file absent).
    pub load_disabled: Option<bool>,
}

/// Reads the kexec state.
pub fn read_crash_state(files: &SystemFiles) -> Result<CrashState, SysfsError> {
    Ok(CrashState {
        crash_size: files.parse(KEXEC_CRASH_SIZE, parse_decimal)?,
        crash_loaded: files.parse(KEXEC_CRASH_LOADED, parse_flag)?,
        kexec_loaded: files.parse(KEXEC_LOADED, parse_flag)?,
        load_disabled: match files.read_optional(KEXEC_LOAD_DISABLED)? {
            None => None,
            Some(text) => Some(
                parse_flag(&text)
                    .ok_or_else(|| malformed(files.path(KEXEC_LOAD_DISABLED), &text))?,
            ),
        },
    })
}

/// One CPU's `crash_notes` buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuNotes {
    /// The CPU number.
    pub cpu: u32,
    /// Its buffer.
    pub buffer: NoteBuffer,
}

/// The `crash_notes` buffer of every possible CPU that has one, in CPU order.
pub fn read_cpu_notes(files: &SystemFiles) -> Result<Vec<CpuNotes>, SysfsError> {
    let cpus = files.parse(CPU_POSSIBLE, parse_cpu_list)?;
    let mut out = Vec::with_capacity(cpus.len());
    for cpu in cpus {
        let notes = format!("sys/devices/system/cpu/cpu{cpu}/crash_notes");
        let Some(text) = files.read_optional(&notes)? else {
            if files
                .path(&format!("sys/devices/system/cpu/cpu{cpu}"))
                .exists()
            {
                // The CPU is there but the kernel has no crash_notes: not a crash kernel host.
                return Err(SysfsError {
                    path: files.path(&notes),
                    problem: Problem::Missing,
                });
            }
            continue;
        };
        let addr = parse_hex(&text).ok_or_else(|| malformed(files.path(&notes), &text))?;
        let size_file = format!("{notes}_size");
        let size = match files.read_optional(&size_file)? {
            None => DEFAULT_NOTE_BYTES,
            Some(text) => parse_decimal(&text)
                .filter(|&s| s > 0)
                .ok_or_else(|| malformed(files.path(&size_file), &text))?,
        };
        out.push(CpuNotes {
            cpu,
            buffer: NoteBuffer { addr, size },
        });
    }
    Ok(out)
}

/// The VMCOREINFO note buffer.
pub fn read_vmcoreinfo(files: &SystemFiles) -> Result<NoteBuffer, SysfsError> {
    files.parse(VMCOREINFO, parse_vmcoreinfo)
}

/// The active lockdown mode, `None` for `[none]`: the file lists every mode with the active
/// one in brackets, `none [integrity] confidentiality`.
pub fn parse_lockdown(text: &str) -> Option<Option<String>> {
    let active = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))?;
    Some((active != "none").then(|| active.to_owned()))
}

/// The active lockdown mode, `None` when lockdown is off or securityfs does not show it.
pub fn read_lockdown(files: &SystemFiles) -> Result<Option<String>, SysfsError> {
    match files.read_optional(LOCKDOWN)? {
        None => Ok(None),
        Some(text) => parse_lockdown(&text).ok_or_else(|| malformed(files.path(LOCKDOWN), &text)),
    }
}

/// One decimal number and a newline (`%zu`, `%d`).
pub fn parse_decimal(text: &str) -> Option<u64> {
    text.trim_end().parse().ok()
}

/// `0` or `1`.
pub fn parse_flag(text: &str) -> Option<bool> {
    match text.trim_end() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// One hexadecimal number, with or without `0x` (`%llx`, `%pa`).
pub fn parse_hex(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.strip_prefix("0x").unwrap_or(text);
    u64::from_str_radix(digits, 16).ok()
}

/// `/sys/kernel/vmcoreinfo`: `0x<address> <size in hex>`; the size must be non-zero.
pub fn parse_vmcoreinfo(text: &str) -> Option<NoteBuffer> {
    let mut fields = text.split_whitespace();
    let addr = parse_hex(fields.next()?)?;
    let size = parse_hex(fields.next()?)?;
    (fields.next().is_none() && size > 0).then_some(NoteBuffer { addr, size })
}

/// A kernel CPU list (`0`, `0-3`, `0-3,8-11`, `0,2`), sorted and without repeats.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let one = part.parse::<u32>().ok()?;
                (one, one)
            }
        };
        if first > last || last >= MAX_CPUS {
            return None;
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::testfs::TestRoot;

    #[test]
    fn kernel_formats() {
        assert_eq!(parse_decimal("33554432\n"), Some(32 << 20));
        assert_eq!(parse_decimal("-1\n"), None);
        assert_eq!(parse_flag("1\n"), Some(true));
        assert_eq!(parse_flag("0\n"), Some(false));
        assert_eq!(parse_flag("2\n"), None);
        assert_eq!(parse_hex("3fc1a000\n"), Some(0x3fc1_a000));
        assert_eq!(parse_hex("0x3fc1a000"), Some(0x3fc1_a000));
        assert_eq!(parse_hex("g\n"), None);
        // Recorded on the development host: the size is 0x1024 = 4132 bytes
        // (VMCOREINFO_NOTE_SIZE), printed in hex without 0x.
        assert_eq!(
            parse_vmcoreinfo("0x0000000100c66000 1024\n"),
            Some(NoteBuffer {
                addr: 0x1_00c6_6000,
                size: 4132
            })
        );
        assert_eq!(parse_vmcoreinfo("0x1000\n"), None);
        assert_eq!(parse_vmcoreinfo("0x1000 0\n"), None);
        assert_eq!(parse_vmcoreinfo("0x1000 10 7\n"), None);
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(
            parse_cpu_list("0-2,8,10-11\n"),
            Some(vec![0, 1, 2, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("0-100000"), None);
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(
            parse_lockdown("[none] integrity confidentiality\n"),
            Some(None)
        );
        assert_eq!(
            parse_lockdown("none [integrity] confidentiality\n"),
            Some(Some("integrity".into()))
        );
        assert_eq!(parse_lockdown("none integrity\n"), None);
    }

    #[test]
    fn reads_a_recorded_tree() {
        let root = TestRoot::guest_2cpu();
        let files = root.files();
        assert_eq!(
            read_crash_state(&files).unwrap(),
            CrashState {
                crash_size: 32 << 20,
                crash_loaded: false,
                kexec_loaded: false,
                load_disabled: Some(false),
            }
        );
        let notes = read_cpu_notes(&files).unwrap();
        assert_eq!(notes.len(), 2);
        assert_eq!(
            notes[1],
            CpuNotes {
                cpu: 1,
                buffer: NoteBuffer {
                    addr: 0x3fd1_9e40,
                    size: 368
                }
            }
        );
        assert_eq!(read_vmcoreinfo(&files).unwrap().size, 4132);
    }

    #[test]
    fn absent_hotplug_slots_are_skipped_and_old_kernels_get_the_default_size() {
        let root = TestRoot::guest_2cpu();
        root.write(CPU_POSSIBLE, "0-3\n");
        root.remove("sys/devices/system/cpu/cpu0/crash_notes_size");
        let notes = read_cpu_notes(&root.files()).unwrap();
        assert_eq!(notes.iter().map(|n| n.cpu).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(notes[0].buffer.size, DEFAULT_NOTE_BYTES);
    }

    #[test]
    fn errors_name_the_file_and_the_fix() {
        let root = TestRoot::guest_2cpu();
        root.remove(KEXEC_CRASH_SIZE);
        let e = read_crash_state(&root.files()).unwrap_err();
        assert_eq!(e.problem, Problem::Missing);
        let text = e.to_string();
        assert!(
            text.contains("/sys/kernel/kexec_crash_size does not exist"),
            "{text}"
        );
        assert!(text.contains("CONFIG_CRASH_DUMP"), "{text}");

        let root = TestRoot::guest_2cpu();
        root.remove("sys/devices/system/cpu/cpu1/crash_notes");
        let e = read_cpu_notes(&root.files()).unwrap_err();
        assert!(e.path.ends_with("cpu1/crash_notes"));
        assert!(e.to_string().contains("saves no CPU state"), "{e}");

        let root = TestRoot::guest_2cpu();
        root.write("sys/devices/system/cpu/cpu0/crash_notes_size", "0\n");
        let e = read_cpu_notes(&root.files()).unwrap_err();
        assert_eq!(e.problem, Problem::Malformed("0".into()));
        assert!(
            e.to_string().contains("cpu0/crash_notes_size holds \"0\""),
            "{e}"
        );

        let root = TestRoot::guest_2cpu();
        root.write(VMCOREINFO, "garbage\n");
        let e = read_vmcoreinfo(&root.files()).unwrap_err();
        assert!(
            e.to_string().contains("vmcoreinfo holds \"garbage\""),
            "{e}"
        );
        root.remove(VMCOREINFO);
        let e = read_vmcoreinfo(&root.files()).unwrap_err();
        assert!(e.to_string().contains("CONFIG_VMCORE_INFO"), "{e}");
    }
}
