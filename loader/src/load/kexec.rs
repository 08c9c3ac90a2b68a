//! The kexec system calls for a crash kernel, and their errors with the fix in the message.
//!
//! `long kexec_load(unsigned long entry, unsigned long nr_segments,
//! struct kexec_segment *segments, unsigned long flags)`, syscall 246 on x86_64, with
//! `KEXEC_ON_CRASH | KEXEC_ARCH_X86_64`. Each `struct kexec_segment` is
//! `{ const void *buf; size_t bufsz; const void *mem; size_t memsz; }`; the kernel copies
//! `bufsz` bytes to physical `mem` and zeroes the rest of `memsz` when the crash kernel is
//! loaded (Linux `kimage_load_crash_segment()`). `nr_segments` 0 unloads the crash kernel
//! (what `kexec -p -u` does).
//!
//! `long kexec_file_load(int kernel_fd, int initrd_fd, unsigned long cmdline_len,
//! const char *cmdline, unsigned long flags)`, syscall 320 on x86_64, with
//! `KEXEC_FILE_ON_CRASH | KEXEC_FILE_NO_INITRAMFS` (`initrd_fd` is then ignored) and
//! `cmdline_len` counting the NUL: the kernel reads the bzImage itself, checks its signature
//! when it must, builds boot_params, the e820 map and the ELF core headers, adds
//! `elfcorehdr=` to the command line and places its own purgatory. With `KEXEC_FILE_UNLOAD`
//! it unloads, and it does so under lockdown, where `kexec_load` is refused even for that.
//!
//! The calls are made directly (`syscall` instruction): the loader links no C library
//! wrapper for them.

use std::fmt;

use super::plan::Segment;

/// `__NR_kexec_load` on x86_64.
const SYS_KEXEC_LOAD: u64 = 246;
/// `__NR_kexec_file_load` on x86_64.
const SYS_KEXEC_FILE_LOAD: u64 = 320;
/// `KEXEC_FILE_UNLOAD`.
const KEXEC_FILE_UNLOAD: u64 = 0x1;
/// `KEXEC_FILE_ON_CRASH`.
const KEXEC_FILE_ON_CRASH: u64 = 0x2;
/// `KEXEC_FILE_NO_INITRAMFS`.
const KEXEC_FILE_NO_INITRAMFS: u64 = 0x4;
/// `__NR_geteuid` on x86_64.
const SYS_GETEUID: u64 = 107;
/// Load into the crash region, to run on panic.
const KEXEC_ON_CRASH: u64 = 0x0000_0001;
/// `KEXEC_ARCH_X86_64`: EM_X86_64 (62) in bits 16..31.
const KEXEC_ARCH_X86_64: u64 = 62 << 16;

const EPERM: i64 = 1;
const EBUSY: i64 = 16;
const EINVAL: i64 = 22;
const EADDRNOTAVAIL: i64 = 99;
const ENOSYS: i64 = 38;

/// Why the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KexecError {
    /// EPERM as a user without root.
    NotRoot {
        /// The effective user id.
        euid: u64,
    },
    /// EPERM as root: lockdown, or `kexec_load_disabled` set since it was read.
    Refused,
    /// EBUSY: the crash kernel is in use (being loaded by another process, or running).
    Busy(String),
    /// EINVAL or EADDRNOTAVAIL: the kernel disagrees with a segment.
    BadSegments {
        /// The errno.
        errno: i64,
        /// The segment list.
        segments: String,
    },
    /// Any other errno.
    Other {
        /// The errno.
        errno: i64,
        /// The segment list.
        segments: String,
    },
}

impl fmt::Display for KexecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRoot { euid } => write!(
                f,
                "kexec_load: not permitted for user {euid}: loading a crash kernel needs \
                 root (CAP_SYS_BOOT); run `sudo minicap load ...`"
            ),
            Self::Refused => f.write_str(
                "kexec_load: not permitted although running as root: either \
                 /proc/sys/kernel/kexec_load_disabled is 1 (it stays set until reboot: boot \
                 without whatever sets it, then load before it is set), or the kernel is locked \
                 down, where kexec_load is refused and only kexec_file_load with a signed \
                 bzImage is accepted (`minicap load --image minicap.bzImage`, signed with \
                 sbsign: see \"Loading under Secure Boot\" in minicap's README)",
            ),
            Self::Busy(segments) => write!(
                f,
                "kexec_load: busy (another process is loading a crash kernel, or one is \
                 running): retry once it has finished. Segments:\n{segments}"
            ),
            Self::BadSegments { errno, segments } => write!(
                f,
                "kexec_load: the kernel refused the segments (errno {errno}: a segment \
                 outside the crash region, not page-aligned, or overlapping; a bug in the \
                 plan, please report it with this list). Segments:\n{segments}"
            ),
            Self::Other { errno, segments } => write!(
                f,
                "kexec_load failed with {}. Segments:\n{segments}",
                std::io::Error::from_raw_os_error(i32::try_from(*errno).unwrap_or(0))
            ),
        }
    }
}

impl std::error::Error for KexecError {}

/// The `struct kexec_segment` the kernel reads.
#[repr(C)]
struct KexecSegment {
    buf: *const u8,
    bufsz: usize,
    mem: usize,
    memsz: usize,
}

/// Loads `segments` as the crash kernel, to be entered at `entry` (the purgatory's).
pub fn load_crash_kernel(entry: u64, segments: &[Segment]) -> Result<(), KexecError> {
    let table: Vec<KexecSegment> = segments
        .iter()
        .map(|s| KexecSegment {
            buf: s.bytes.as_ptr(),
            bufsz: s.bytes.len(),
            mem: usize::try_from(s.addr).unwrap_or(usize::MAX),
            memsz: s.bytes.len(),
        })
        .collect();
    let result = kexec_load(entry, &table);
    classify(result, || describe_segments(segments))
}

/// Unloads the crash kernel (any loaded one, minicap's or kexec-tools', through either call):
/// `kexec_file_load` with `KEXEC_FILE_UNLOAD` first, since a locked-down kernel refuses
/// `kexec_load` even with no segments; `kexec_load` with no segments on a kernel without
/// `kexec_file_load` (ENOSYS).
pub fn unload_crash_kernel() -> Result<(), UnloadError> {
    let file = kexec_file_load(None, &[], KEXEC_FILE_UNLOAD | KEXEC_FILE_ON_CRASH);
    if file == -ENOSYS {
        return classify(kexec_load(0, &[]), String::new).map_err(|error| UnloadError {
            call: "kexec_load",
            error,
        });
    }
    classify(file, String::new).map_err(|error| UnloadError {
        call: "kexec_file_load",
        error,
    })
}

/// An unload refused, by the call that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnloadError {
    /// `kexec_file_load` or `kexec_load`.
    pub call: &'static str,
    /// Why.
    pub error: KexecError,
}

impl fmt::Display for UnloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The messages start with "kexec_load:"; name the call that was made.
        let text = self.error.to_string();
        let text = text.strip_prefix("kexec_load").unwrap_or(&text);
        write!(f, "unloading with {}{text}", self.call)
    }
}

impl std::error::Error for UnloadError {}

/// Loads the bzImage open as `image` as the crash kernel with `kexec_file_load`, minicap's
/// options as the command line: `Err(errno)` (positive) when the kernel refuses; what that
/// means is decided by the caller (`super::route`).
pub fn file_load_crash_kernel(image: &std::fs::File, options: &str) -> Result<(), i32> {
    use std::os::fd::AsRawFd;
    let mut cmdline = options.as_bytes().to_vec();
    cmdline.push(0);
    match kexec_file_load(
        Some(image.as_raw_fd()),
        &cmdline,
        KEXEC_FILE_ON_CRASH | KEXEC_FILE_NO_INITRAMFS,
    ) {
        n if n >= 0 => Ok(()),
        n => Err(i32::try_from(-n).unwrap_or(i32::MAX)),
    }
}

/// Whether the effective user is root (EPERM then means a refusal, not missing privilege).
pub fn running_as_root() -> bool {
    geteuid() == 0
}

/// Maps a return value to the error with its fix.
fn classify(result: i64, segments: impl Fn() -> String) -> Result<(), KexecError> {
    match -result {
        n if n <= 0 => Ok(()),
        EPERM => match geteuid() {
            0 => Err(KexecError::Refused),
            euid => Err(KexecError::NotRoot { euid }),
        },
        EBUSY => Err(KexecError::Busy(segments())),
        errno @ (EINVAL | EADDRNOTAVAIL) => Err(KexecError::BadSegments {
            errno,
            segments: segments(),
        }),
        errno => Err(KexecError::Other {
            errno,
            segments: segments(),
        }),
    }
}

/// One line per segment: address range, size, what it holds.
pub fn describe_segments(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| {
            format!(
                "  {:#014x}-{:#014x} {:>8} KiB  {}\n",
                s.addr,
                s.range().end - 1,
                s.len() / 1024,
                s.kind
            )
        })
        .collect()
}

/// The raw call: the kernel's return value (negative errno on failure).
fn kexec_load(entry: u64, segments: &[KexecSegment]) -> i64 {
    let ret: i64;
    // SAFETY: kexec_load only reads `segments.len()` `struct kexec_segment`s at the pointer
    // and `bufsz` bytes at each `buf`, all borrowed for the duration of the call; the
    // `syscall` instruction clobbers rcx and r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_KEXEC_LOAD as i64 => ret,
            in("rdi") entry,
            in("rsi") segments.len(),
            in("rdx") segments.as_ptr(),
            in("r10") KEXEC_ON_CRASH | KEXEC_ARCH_X86_64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

/// The raw call: the kernel's return value (negative errno on failure). `kernel` `None`
/// passes -1 (unloading reads no file); `cmdline` is passed whole, its NUL included, or as
/// NULL with length 0 when empty.
fn kexec_file_load(kernel: Option<std::os::fd::RawFd>, cmdline: &[u8], flags: u64) -> i64 {
    let ret: i64;
    let fd = i64::from(kernel.unwrap_or(-1));
    let cmdline_ptr = if cmdline.is_empty() {
        std::ptr::null()
    } else {
        cmdline.as_ptr()
    };
    // SAFETY: kexec_file_load reads `cmdline.len()` bytes at `cmdline_ptr` (borrowed for the
    // call, or NULL with length 0) and the file behind the descriptor (or none: -1); the
    // initrd descriptor is ignored with KEXEC_FILE_NO_INITRAMFS. The `syscall` instruction
    // clobbers rcx and r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_KEXEC_FILE_LOAD as i64 => ret,
            in("rdi") fd,
            in("rsi") -1i64,
            in("rdx") cmdline.len(),
            in("r10") cmdline_ptr,
            in("r8") flags,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

/// The effective user id (`geteuid(2)`, which cannot fail).
fn geteuid() -> u64 {
    let ret: u64;
    // SAFETY: geteuid takes no arguments and touches no memory.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_GETEUID => ret,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, nomem)
        );
    }
    ret
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::plan::SegmentKind;

    fn segments() -> Vec<Segment> {
        vec![Segment {
            kind: SegmentKind::Image,
            addr: 0x3d00_0000,
            bytes: vec![0; 0x2000],
        }]
    }

    #[test]
    fn errors_carry_the_fix_and_the_segments() {
        assert_eq!(classify(0, String::new), Ok(()));
        let list = || describe_segments(&segments());
        assert_eq!(
            list(),
            "  0x00003d000000-0x00003d001fff        8 KiB  minicap image\n"
        );
        let busy = classify(-EBUSY, list).unwrap_err();
        assert!(busy.to_string().contains("retry") && busy.to_string().contains("0x00003d000000"));
        let inval = classify(-EINVAL, list).unwrap_err();
        assert!(matches!(inval, KexecError::BadSegments { errno: 22, .. }));
        assert!(inval.to_string().contains("minicap image"), "{inval}");
        let other = classify(-12, list).unwrap_err();
        assert!(
            other.to_string().contains("Cannot allocate memory"),
            "{other}"
        );
        // EPERM depends on who runs the test: either message names its fix.
        let eperm = classify(-EPERM, list).unwrap_err().to_string();
        assert!(
            eperm.contains("needs root") || eperm.contains("kexec_load_disabled"),
            "{eperm}"
        );
        assert!(
            KexecError::Refused.to_string().contains("locked down"),
            "lockdown named"
        );
    }

    #[test]
    fn an_unload_error_names_the_call_made() {
        let e = UnloadError {
            call: "kexec_file_load",
            error: KexecError::Busy(String::new()),
        };
        assert!(
            e.to_string()
                .starts_with("unloading with kexec_file_load: busy"),
            "{e}"
        );
    }

    #[test]
    fn the_segment_struct_is_the_kernels() {
        assert_eq!(std::mem::size_of::<KexecSegment>(), 32);
        assert_eq!(KEXEC_ON_CRASH | KEXEC_ARCH_X86_64, 0x003e_0001);
        // Linux include/uapi/linux/kexec.h.
        assert_eq!(
            (
                KEXEC_FILE_UNLOAD,
                KEXEC_FILE_ON_CRASH,
                KEXEC_FILE_NO_INITRAMFS
            ),
            (1, 2, 4)
        );
    }
}
